//! Generated C, end to end.
//!
//! 1. *builds*: the C of several synthetic models (token and feature input, odd sizes,
//!    one and two LSTM layers, every unroll mode) compiles with gcc and clang at
//!    `-std=c99 -Wall -Wextra -Werror -pedantic` (plus `-Wconversion` and friends) and
//!    contains no floating point, heap or libm.
//! 2. *bit-exact*: a small C harness runs the generated model over random sequences
//!    (state carried within a sequence, reset between sequences, `step` and `run` both
//!    used) and its int32 outputs must equal `irnn_codegen::interp::Interpreter`'s, for
//!    every unroll mode, with both compilers; also on the shipped models' data when those
//!    models exist.
//! 3. *sanitizers*: the same harness under `-fsanitize=address,undefined
//!    -fno-sanitize-recover=all`.
//! 4. *determinism and hostile names*: generating twice gives identical bytes, and a
//!    model whose name and layer names are hostile compiles and computes exactly what
//!    the plainly named model computes.
//!
//! gcc and clang are required: if either is missing the tests fail with a message
//! saying so (CI installs both).

mod support;

use irnn_codegen::back::{generate, GenError, GenOptions, GeneratedFile, Lang, Target, Unroll};
use irnn_codegen::graph::Graph;
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::{InputIr, LayerIr, Program};
use irnn_codegen::lower::lower;
use irnn_codegen::npy::{read_data, SeqData};
use irnn_codegen::synth::Rng;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use support::c_harness::{self, assert_same, build_harness, cc, prefix, write_files, Seq, STRICT};
use support::{charlm_paths, edit_lstm, features_paths, lstm, quantize_files, synth_model, Synth};

const MODES: [Unroll; 3] = [Unroll::None, Unroll::Inner, Unroll::Full];

const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
];

// ---------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------

/// The synthetic models, built once per test binary.
fn synth_models() -> &'static [Synth] {
    static MODELS: OnceLock<Vec<Synth>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let mut models = support::synth_models(&[
            // label, vocab, input, hidden, layers, outputs, seed
            ("tok_small", Some(20), 13, 7, 1, 5, 11),
            ("tok_deep", Some(37), 16, 12, 2, 11, 12),
            ("feat_small", None, 13, 7, 1, 3, 13),
            ("feat_deep", None, 9, 11, 2, 4, 14),
            ("feat_tiny", None, 3, 2, 1, 1, 15),
        ]);
        models.extend(support::cell_models());
        models
    })
}

fn synth(label: &str) -> &'static Synth {
    synth_models()
        .iter()
        .find(|s| s.label == label)
        .expect("known synthetic model")
}

fn opts(unroll: Unroll) -> GenOptions {
    GenOptions {
        lang: Lang::C,
        target: Target::Scalar,
        unroll,
        precision: Default::default(),
        fusion: Default::default(),
    }
}

fn gen(program: &Program, unroll: Unroll) -> Vec<GeneratedFile> {
    let files = generate(program, &opts(unroll))
        .unwrap_or_else(|e| panic!("generating C ({unroll:?}) failed: {e}"));
    assert_eq!(files.len(), 2, "expected NAME.h and NAME.c");
    files
}

// ---------------------------------------------------------------------------------
// Expected outputs from the interpreter
// ---------------------------------------------------------------------------------

/// The program with one more token id, `vocab`, whose embedding row is the zero-point
/// row: the documented semantics of an out-of-range id (docs/NUMERICS.md §7), which
/// `Interpreter::step_token` refuses to take directly.
fn with_zero_point_token(program: &Program) -> Program {
    let mut p = program.clone();
    let InputIr::Tokens { vocab_size } = p.input else {
        panic!("not a token model")
    };
    p.input = InputIr::Tokens {
        vocab_size: vocab_size + 1,
    };
    let Some(LayerIr::Embedding(e)) = p.layers.first_mut() else {
        panic!("token model without an embedding")
    };
    let zp = e.zero_point.clamp(-128, 127) as i8;
    e.vocab_size += 1;
    e.table.resize(e.table.len() + e.dim, zp);
    p
}

/// The interpreter's outputs, one vector per step; out-of-range token ids are fed as
/// the zero-point token of [`with_zero_point_token`].
fn expected(program: &Program, seqs: &[Seq]) -> Vec<Vec<i32>> {
    let InputIr::Tokens { vocab_size } = program.input else {
        return c_harness::expected(program, seqs);
    };
    let vocab = vocab_size as i64;
    let mapped: Vec<Seq> = seqs
        .iter()
        .map(|s| match s {
            Seq::Tokens(tokens) => Seq::Tokens(
                tokens
                    .iter()
                    .map(|&t| {
                        let t = t as i64;
                        (if (0..vocab).contains(&t) { t } else { vocab }) as i32
                    })
                    .collect(),
            ),
            Seq::Features(_) => s.clone(),
        })
        .collect();
    c_harness::expected(&with_zero_point_token(program), &mapped)
}

/// Random sequences with hostile values mixed in: out-of-range token ids (negative,
/// `vocab`, `i32::MIN`, `i32::MAX`) or features at -128/127 (single values, and whole
/// steps), plus an empty sequence.
fn random_seqs(program: &Program, seed: u64, lengths: &[usize]) -> Vec<Seq> {
    let mut rng = Rng::new(seed);
    let mut seqs = Vec::new();
    for &len in lengths {
        let seq = match program.input {
            InputIr::Tokens { vocab_size } => {
                let v = vocab_size as i64;
                Seq::Tokens(
                    (0..len)
                        .map(|_| match rng.below(20) {
                            0 => [-1, v, v + 5, i32::MIN as i64, i32::MAX as i64]
                                [rng.below(5) as usize] as i32,
                            _ => rng.below(vocab_size as u64) as i32,
                        })
                        .collect(),
                )
            }
            InputIr::Features { size, .. } => Seq::Features(
                (0..len)
                    .map(|_| {
                        let mode = rng.below(10);
                        (0..size)
                            .map(|_| match mode {
                                0 => -128,
                                1 => 127,
                                _ => match rng.below(8) {
                                    0 => -128,
                                    1 => 127,
                                    _ => (rng.below(256) as i32 - 128) as i8,
                                },
                            })
                            .collect()
                    })
                    .collect(),
            ),
        };
        seqs.push(seq);
    }
    seqs
}

const LENGTHS: &[usize] = &[180, 0, 150, 170, 1];

fn check_bit_exact(program: &Program, unroll: Unroll, cc_name: &str, extra: &[&str], seed: u64) {
    check_files_bit_exact(program, &gen(program, unroll), unroll, cc_name, extra, seed);
}

/// [`check_bit_exact`] on given files (the C of `program`).
fn check_files_bit_exact(
    program: &Program,
    files: &[GeneratedFile],
    unroll: Unroll,
    cc_name: &str,
    extra: &[&str],
    seed: u64,
) {
    let harness = build_harness(files, program, cc_name, extra);
    let seqs = random_seqs(program, seed, LENGTHS);
    let got = harness.run(&seqs, program.output.size);
    let want = expected(program, &seqs);
    assert_same(
        &got,
        &want,
        &seqs,
        &format!(
            "{} ({unroll:?}, {cc_name} {})",
            program.name,
            extra.join(" ")
        ),
    );
}

// ---------------------------------------------------------------------------------
// Tier 1: builds
// ---------------------------------------------------------------------------------

/// `files` compile with gcc and clang under [`STRICT`] at -O2; `what` labels a failure.
fn builds_strict(files: &[GeneratedFile], what: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, c) = write_files(dir.path(), files);
    let obj = dir.path().join("model.o");
    let (c_s, o_s) = (c.display().to_string(), obj.display().to_string());
    for cc_name in ["gcc", "clang"] {
        let mut args: Vec<&str> = STRICT.to_vec();
        args.extend_from_slice(&["-O2", "-c", &c_s, "-o", &o_s]);
        cc(cc_name, &args, what);
    }
}

#[test]
fn c_builds_with_gcc_and_clang() {
    for s in synth_models() {
        for unroll in MODES {
            let files = gen(&s.model.program, unroll);
            builds_strict(&files, &format!("{} ({unroll:?})", s.label));
        }
    }
}

/// Removes comments, string literals and character literals.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            let end = src[i + 2..]
                .find("*/")
                .map(|e| i + 2 + e + 2)
                .unwrap_or(b.len());
            out.push(' ');
            i = end;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' || b[i] == b'\'' {
            let quote = b[i];
            let start = i;
            i += 1;
            while i < b.len() && b[i] != quote {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            if src[..start].ends_with("#include ") {
                out.push_str(&src[start..i]);
            } else {
                out.push_str("\"\"");
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn identifiers(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
}

/// Checks a generated file: no floating point, heap, libm or VLAs, only the allowed
/// includes.
fn check_restricted(file: &GeneratedFile, own_header: &str) {
    let code = strip_comments(&file.contents);
    for banned in [
        "float", "double", "malloc", "calloc", "realloc", "free", "alloca", "printf", "sqrt",
        "exp", "tanh", "expf", "tanhf", "long",
    ] {
        assert!(
            identifiers(&code).all(|t| t != banned),
            "{}: uses `{banned}`",
            file.name
        );
    }
    assert!(!code.contains("math.h"), "{}: includes math.h", file.name);
    for line in code.lines().filter(|l| l.trim_start().starts_with('#')) {
        let directive = line.trim_start()[1..].trim_start();
        if let Some(inc) = directive.strip_prefix("include") {
            let inc = inc.trim();
            assert!(
                inc == "<stdint.h>" || inc == format!("\"{own_header}\""),
                "{}: unexpected include {inc}",
                file.name
            );
        }
    }
}

#[test]
fn c_has_no_float_heap_or_libm() {
    for s in synth_models() {
        for unroll in MODES {
            let files = gen(&s.model.program, unroll);
            let header = format!(
                "{}.h",
                irnn_codegen::back::names::file_stem(&prefix(&s.model.program))
            );
            for f in &files {
                check_restricted(f, &header);
                assert!(f.contents.contains(irnn_codegen::back::GENERATOR));
                assert!(f.contents.contains(&s.model.program.model_hash));
            }
        }
    }
}

#[test]
fn c_header_compiles_as_cpp_and_two_models_link_together() {
    let a = &synth("tok_small").model.program;
    let b = &synth("feat_small").model.program;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ha, ca) = write_files(dir.path(), &gen(a, Unroll::Inner));
    let (hb, cb) = write_files(dir.path(), &gen(b, Unroll::Full));
    // Both headers in one C++ translation unit (extern "C", no clashes).
    let cpp = dir.path().join("both.cpp");
    std::fs::write(
        &cpp,
        format!(
            "#include \"{}\"\n#include \"{}\"\n#include \"{}\"\nint main() {{ return 0; }}\n",
            ha.display(),
            hb.display(),
            ha.display()
        ),
    )
    .unwrap();
    let cpp_s = cpp.display().to_string();
    cc(
        "clang",
        &[
            "-x",
            "c++",
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            &cpp_s,
        ],
        "both headers as C++",
    );
    // Both models in one C program.
    let (pa, pb) = (prefix(a), prefix(b));
    let main = dir.path().join("main.c");
    std::fs::write(
        &main,
        format!(
            "#include \"{pa}.h\"\n#include \"{pb}.h\"\n\
             int main(void)\n{{\n    static {pa}_state_t sa;\n    static {pb}_state_t sb;\n\
             \x20   int8_t x[{PB}_INPUT_SIZE] = {{0}};\n    int32_t ya[{PA}_OUTPUT_SIZE];\n\
             \x20   int32_t yb[{PB}_OUTPUT_SIZE];\n    {pa}_reset(&sa);\n    {pb}_reset(&sb);\n\
             \x20   {pa}_step(&sa, 3, ya);\n    {pb}_step(&sb, x, yb);\n    return 0;\n}}\n",
            PA = irnn_codegen::back::names::upper(&pa),
            PB = irnn_codegen::back::names::upper(&pb),
        ),
    )
    .unwrap();
    let exe = dir.path().join("both");
    let (ca_s, cb_s, m_s, e_s) = (
        ca.display().to_string(),
        cb.display().to_string(),
        main.display().to_string(),
        exe.display().to_string(),
    );
    let inc = format!("-iquote{}", dir.path().display());
    for cc_name in ["gcc", "clang"] {
        let mut args: Vec<&str> = STRICT.to_vec();
        args.extend_from_slice(&[&inc, &ca_s, &cb_s, &m_s, "-o", &e_s]);
        cc(cc_name, &args, "two models in one program");
        let status = Command::new(&exe).status().expect("runs");
        assert!(status.success());
    }
    let _ = hb;
}

#[test]
fn c_full_unroll_refuses_large_layers() {
    let big = synth_model("big", None, 60, 60, 1, 2, 5);
    // 4·60·(60+60) = 28 800 weights > FULL_UNROLL_MAX_WEIGHTS.
    match generate(&big.program, &opts(Unroll::Full)) {
        Err(GenError::Layer { message, .. }) => {
            assert!(message.contains("full unrolling"), "{message}")
        }
        other => panic!("expected GenError::Layer, got {other:?}"),
    }
    for unroll in [Unroll::None, Unroll::Inner] {
        assert!(generate(&big.program, &opts(unroll)).is_ok());
    }
}

#[test]
fn c_refuses_malformed_programs_without_panicking() {
    let base = &synth("tok_deep").model.program;
    let mut cases: Vec<(&str, Program)> = Vec::new();
    let mut p = base.clone();
    edit_lstm(&mut p, 1, |l| {
        l.w_ih.pop();
    });
    cases.push(("short w_ih", p));
    let mut p = base.clone();
    edit_lstm(&mut p, 1, |l| l.gate_tables[2] = 999);
    cases.push(("bad table index", p));
    let mut p = base.clone();
    p.layers.pop();
    cases.push(("no final linear", p));
    let mut p = base.clone();
    p.layers.remove(0);
    cases.push(("token model without embedding", p));
    let mut p = base.clone();
    if let LayerIr::Linear(l) = p.layers.last_mut().unwrap() {
        l.bias[0] = i32::MAX - 10;
    }
    cases.push(("accumulator overflow", p));
    let mut p = base.clone();
    p.output.size += 1;
    cases.push(("output size", p));
    let mut p = base.clone();
    let t = p.tables.len();
    edit_lstm(&mut p, 1, |l| l.cell_table = t);
    p.tables.push(irnn_codegen::ir::PwlTable {
        starts: vec![],
        slopes: vec![],
        offsets: vec![],
        ..base.tables[0].clone()
    });
    cases.push(("empty table", p));
    for (what, p) in cases {
        for unroll in MODES {
            assert!(
                generate(&p, &opts(unroll)).is_err(),
                "{what} ({unroll:?}) was accepted"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Tier 2: bit-exact against the interpreter
// ---------------------------------------------------------------------------------

#[test]
fn c_matches_interpreter_on_synthetic_models() {
    for (k, s) in synth_models().iter().enumerate() {
        for (m, unroll) in MODES.iter().enumerate() {
            // Alternate the compilers so that every (compiler, mode) pair is covered.
            let cc_name = ["gcc", "clang"][(k + m) % 2];
            check_bit_exact(
                &s.model.program,
                *unroll,
                cc_name,
                &[],
                100 + (k * 3 + m) as u64,
            );
        }
    }
}

/// The out-of-range rule on its own: a sequence of only invalid ids must give, step by
/// step, the outputs of feeding the embedding's zero-point row.
#[test]
fn c_out_of_range_tokens_read_the_zero_point_row() {
    let program = &synth("tok_small").model.program;
    let InputIr::Tokens { vocab_size } = program.input else {
        unreachable!()
    };
    let v = vocab_size as i32;
    let bad = vec![-1, v, i32::MIN, i32::MAX, v + 1, -1000, v, v];
    let files = gen(program, Unroll::None);
    let harness = build_harness(&files, program, "gcc", &[]);
    let seqs = vec![Seq::Tokens(bad.clone()), Seq::Tokens(bad)];
    let got = harness.run(&seqs, program.output.size);
    // Expected: the interpreter on a program whose token `v` reads the zero-point row.
    let zp_program = with_zero_point_token(program);
    let mut it = Interpreter::new(&zp_program);
    let mut want = Vec::new();
    for s in &seqs {
        it.reset();
        for _ in 0..s.len() {
            want.push(it.step_token(v as i64).unwrap().to_vec());
        }
    }
    assert_same(&got, &want, &seqs, "out-of-range tokens");
    // And the interpreter itself refuses such ids (so the rule is the layer semantics).
    assert!(Interpreter::new(program).step_token(v as i64).is_err());
}

fn shipped_program(spec: &Path, calib: &Path, name: &str) -> Option<(tempfile::TempDir, Program)> {
    let present = spec.exists() && calib.exists();
    if !support::skip::requires(
        &format!("the C test of the shipped {name} model"),
        &spec.display().to_string(),
        present,
    ) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let program = quantize_files(spec, calib, &dir.path().join(format!("{name}.irnn.json")));
    Some((dir, program))
}

#[test]
fn c_matches_interpreter_on_charlm() {
    let (spec, calib, test) = charlm_paths();
    let Some((_dir, program)) = shipped_program(&spec, &calib, "charlm") else {
        return;
    };
    let data = read_data(&test).expect("test data");
    let SeqData::Tokens { n, t, data } = data.data else {
        panic!("charlm test data are not token ids")
    };
    let seqs: Vec<Seq> = (0..n.min(3))
        .map(|s| Seq::Tokens(data[s * t..(s + 1) * t].iter().map(|&v| v as i32).collect()))
        .collect();
    let want = expected(&program, &seqs);
    for (unroll, cc_name) in [(Unroll::None, "gcc"), (Unroll::Inner, "clang")] {
        let files = gen(&program, unroll);
        let harness = build_harness(&files, &program, cc_name, &[]);
        let got = harness.run(&seqs, program.output.size);
        assert_same(
            &got,
            &want,
            &seqs,
            &format!("charlm ({unroll:?}, {cc_name})"),
        );
    }
    assert!(matches!(
        generate(&program, &opts(Unroll::Full)),
        Err(GenError::Layer { .. })
    ));
}

#[test]
fn c_matches_interpreter_on_features_model() {
    let (spec, calib, test, _) = features_paths();
    let Some((_dir, program)) = shipped_program(&spec, &calib, "features") else {
        return;
    };
    let InputIr::Features {
        zero_point,
        scale_info,
        ..
    } = program.input
    else {
        panic!("the features model takes tokens")
    };
    let data = read_data(&test).expect("test data");
    let seqs: Vec<Seq> = match data.data {
        SeqData::FeaturesF32 { n, t, f, data } => (0..n.min(4))
            .map(|s| {
                Seq::Features(
                    (0..t)
                        .map(|k| {
                            let off = (s * t + k) * f;
                            data[off..off + f]
                                .iter()
                                .map(|&x| {
                                    irnn_cli::cli::quantize_feature(x, scale_info, zero_point)
                                })
                                .collect()
                        })
                        .collect(),
                )
            })
            .collect(),
        SeqData::FeaturesI8 { n, t, f, data } => (0..n.min(4))
            .map(|s| {
                Seq::Features(
                    data[s * t * f..(s + 1) * t * f]
                        .chunks(f)
                        .map(|c| c.to_vec())
                        .collect(),
                )
            })
            .collect(),
        SeqData::Tokens { .. } => panic!("the features test data are token ids"),
    };
    let want = expected(&program, &seqs);
    for unroll in MODES {
        let files = match generate(&program, &opts(unroll)) {
            Ok(f) => f,
            Err(GenError::Layer { .. }) if unroll == Unroll::Full => continue,
            Err(e) => panic!("{e}"),
        };
        let harness = build_harness(&files, &program, "gcc", &[]);
        let got = harness.run(&seqs, program.output.size);
        assert_same(&got, &want, &seqs, &format!("features ({unroll:?})"));
    }
}

/// Programs outside what calibration produces but inside what the interpreter defines:
/// an int8 linear layer in the middle and at the end, requant factors with positive
/// shifts (saturating), shifts beyond [-31, 31], multiplier extremes, and PWL tables
/// with unsorted starts, `frac_bits` 0 or above 62, and `out_min > out_max`. The C must
/// still match the interpreter bit for bit.
#[test]
fn c_matches_interpreter_on_unusual_numerics() {
    use irnn_codegen::ir::{LinearIr, LinearOutput};
    use irnn_runtime::Requant;
    let base = &synth("feat_small").model.program;
    let mut p = base.clone();
    p.name = "unusual".into();
    let mut rng = Rng::new(77);
    let lstm0 = lstm(&p, 0);
    let h = lstm0.hidden_size;
    let mut req = |k: usize| -> Requant {
        match k % 6 {
            0 => Requant {
                multiplier: i32::MAX,
                shift: 3,
            },
            1 => Requant {
                multiplier: 1 << 30,
                shift: 40,
            },
            2 => Requant {
                multiplier: 1 << 30,
                shift: -45,
            },
            3 => Requant {
                multiplier: (1 << 30) + rng.below(1 << 30) as i32,
                shift: -7,
            },
            4 => Requant {
                multiplier: 0,
                shift: 0,
            },
            _ => Requant {
                multiplier: (1 << 30) + rng.below(1 << 30) as i32,
                shift: 31,
            },
        }
    };
    let middle = LinearIr {
        name: "middle".into(),
        in_size: h,
        out_size: h,
        weight: (0..h * h).map(|k| ((k * 37) % 255) as i8 ^ 0x55).collect(),
        bias: (0..h).map(|k| k as i32 * 1000 - 3000).collect(),
        req: (0..h).map(&mut req).collect(),
        output: LinearOutput::I8 { zero_point: -9 },
    };
    p.layers.insert(1, LayerIr::Linear(middle));
    if let Some(LayerIr::Linear(head)) = p.layers.last_mut() {
        head.output = LinearOutput::I8 { zero_point: 5 };
        head.req = (0..head.out_size).map(|k| req(k + 2)).collect();
    }
    p.output.zero_point = 5;
    // Unusual tables: every table the LSTM uses gets one oddity.
    let used: Vec<usize> = lstm0
        .gate_tables
        .iter()
        .chain([&lstm0.cell_table])
        .copied()
        .collect();
    for (k, &t) in used.iter().enumerate() {
        let table = &mut p.tables[t];
        match k % 4 {
            0 => {
                let n = table.starts.len();
                if n > 3 {
                    table.starts.swap(1, n - 2);
                }
            }
            1 => table.frac_bits = 0,
            2 => table.frac_bits = 70,
            _ => std::mem::swap(&mut table.out_min, &mut table.out_max),
        }
    }
    for unroll in MODES {
        check_bit_exact(&p, unroll, "gcc", &[], 700);
    }
    check_bit_exact(&p, Unroll::Inner, "clang", SANITIZE, 701);
}

/// The LSTM models written op by op (`--fusion none`: no fused LSTM step) build
/// strict and match the interpreter, also under the sanitizers.
#[test]
fn lstm_op_by_op_matches_interpreter() {
    for (k, label) in ["tok_deep", "feat_small", "feat_tiny"]
        .into_iter()
        .enumerate()
    {
        let program = &synth(label).model.program;
        let opts = GenOptions {
            fusion: irnn_codegen::back::Fusion::None,
            ..opts(Unroll::None)
        };
        let files = generate(program, &opts).expect("generates");
        let c = &files[1].contents;
        assert!(
            c.contains("One step, op by op") && !c.contains("_w_ih"),
            "{label}: not written op by op"
        );
        builds_strict(&files, &format!("{label} op by op"));
        check_files_bit_exact(program, &files, Unroll::None, "gcc", &[], 750 + k as u64);
        if k == 0 {
            check_files_bit_exact(program, &files, Unroll::None, "clang", SANITIZE, 760);
        }
    }
}

// ---------------------------------------------------------------------------------
// Tier 3: sanitizers
// ---------------------------------------------------------------------------------

#[test]
fn c_is_clean_under_address_and_undefined_sanitizers() {
    // Full unrolling is sanitized on the small models only: instrumenting thousands of
    // straight-line multiply-adds makes the compile slow, and the arithmetic is the same.
    let cases = [
        ("tok_deep", Unroll::None, "gcc"),
        ("tok_deep", Unroll::Inner, "clang"),
        ("tok_small", Unroll::Full, "clang"),
        ("feat_deep", Unroll::None, "clang"),
        ("feat_deep", Unroll::Inner, "gcc"),
        ("feat_small", Unroll::Full, "clang"),
    ];
    for (k, (label, unroll, cc_name)) in cases.into_iter().enumerate() {
        check_bit_exact(
            &synth(label).model.program,
            unroll,
            cc_name,
            SANITIZE,
            500 + k as u64,
        );
    }
}

/// Saturating and extreme inputs, and a long run, under ASan and UBSan: whole sequences
/// at the int8 extremes (every feature 127, every feature -128, the two alternating;
/// the first, the last and out-of-range token ids), then 100,000 random steps in one
/// sequence. Every output of every step must equal the interpreter's: no drift between
/// the back ends however long the state runs (LSTM, GRU, Elman RNN).
#[test]
fn c_extreme_inputs_and_100k_steps_under_sanitizers() {
    for label in ["feat_deep", "tok_deep", "gru_feat", "rnn_relu"] {
        let program = &synth(label).model.program;
        let seqs: Vec<Seq> = match program.input {
            InputIr::Features { size, .. } => {
                let run = |f: &dyn Fn(usize) -> i8| {
                    Seq::Features((0..3000).map(|t| vec![f(t); size]).collect())
                };
                let mut v = vec![
                    run(&|_| 127),
                    run(&|_| -128),
                    run(&|t| if t % 2 == 0 { 127 } else { -128 }),
                ];
                v.extend(random_seqs(program, 77, &[100_000]));
                v
            }
            InputIr::Tokens { vocab_size } => {
                let last = vocab_size as i32 - 1;
                let run = |f: &dyn Fn(usize) -> i32| Seq::Tokens((0..3000).map(f).collect());
                let mut v = vec![
                    run(&|_| last),
                    run(&|_| 0),
                    run(&|t| if t % 2 == 0 { i32::MAX } else { i32::MIN }),
                ];
                v.extend(random_seqs(program, 78, &[100_000]));
                v
            }
        };
        let files = gen(program, Unroll::None);
        let harness = build_harness(&files, program, "gcc", SANITIZE);
        let got = harness.run(&seqs, program.output.size);
        let want = expected(program, &seqs);
        assert_same(
            &got,
            &want,
            &seqs,
            &format!("{label}, extreme inputs (gcc, sanitized)"),
        );
    }
}

// ---------------------------------------------------------------------------------
// Tier 4: determinism and hostile names
// ---------------------------------------------------------------------------------

#[test]
fn c_generation_is_deterministic() {
    for s in synth_models() {
        // A program lowered again from the same graph file.
        let again = lower(&Graph::load(&s.model.graph).expect("graph loads")).expect("lowers");
        for unroll in MODES {
            let a = gen(&s.model.program, unroll);
            let b = gen(&s.model.program, unroll);
            let c = gen(&again, unroll);
            assert_eq!(a, b, "{} ({unroll:?}): two runs differ", s.label);
            assert_eq!(a, c, "{} ({unroll:?}): re-lowered program differs", s.label);
        }
    }
}

const HOSTILE_MODEL_NAME: &str =
    "int */ #include <stdlib.h>\n#define x \"q\" ??/\n/* system(\"rm -rf /\"); // float double";

#[test]
fn c_hostile_names_are_inert() {
    for label in ["tok_deep", "feat_small"] {
        let plain = &synth(label).model;
        // Rename the model and every layer in the graph JSON, then load it again.
        let text = std::fs::read_to_string(&plain.graph).expect("read graph");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("graph JSON");
        json["name"] = HOSTILE_MODEL_NAME.into();
        let layer_names = [
            "struct */ {",
            "state",
            "q_srdhm",
            "pwl0",
            "x\"; #include <stdio.h>",
            "STRUCT */ {",
        ];
        for (k, layer) in json["layers"]
            .as_array_mut()
            .expect("layers")
            .iter_mut()
            .enumerate()
        {
            layer["name"] = layer_names[k % layer_names.len()].into();
        }
        let hostile_path = plain
            .graph
            .with_file_name(format!("{label}_hostile.irnn.json"));
        std::fs::write(&hostile_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        let hostile =
            lower(&Graph::load(&hostile_path).expect("hostile graph loads")).expect("lowers");
        assert_eq!(hostile.name, HOSTILE_MODEL_NAME);
        for unroll in MODES {
            let files = gen(&hostile, unroll);
            let p = prefix(&hostile);
            for f in &files {
                check_restricted(
                    f,
                    &format!("{}.h", irnn_codegen::back::names::file_stem(&p)),
                );
                let code = strip_comments(&f.contents);
                assert!(identifiers(&code).all(|t| t != "system"), "{}", f.name);
                assert!(!f.contents.contains("??"), "{}: trigraph", f.name);
            }
            // Compiles cleanly with both compilers.
            let dir = tempfile::tempdir().unwrap();
            let (_, c) = write_files(dir.path(), &files);
            let c_s = c.display().to_string();
            for cc_name in ["gcc", "clang"] {
                let mut args: Vec<&str> = STRICT.to_vec();
                args.extend_from_slice(&["-fsyntax-only", &c_s]);
                cc(
                    cc_name,
                    &args,
                    &format!("{label} with hostile names ({unroll:?})"),
                );
            }
            // Only names and comments differ from the plainly named model's C.
            let plain_files = gen(&plain.program, unroll);
            for (h, q) in files.iter().zip(&plain_files) {
                assert_eq!(
                    h.contents.lines().count(),
                    q.contents.lines().count(),
                    "{label} ({unroll:?}): {} and {} differ in shape",
                    h.name,
                    q.name
                );
            }
        }
        // Computes exactly what the plainly named model computes (the interpreter on the
        // plain program; the plain model's own C is checked by the other tests).
        let files = gen(&hostile, Unroll::Inner);
        let seqs = random_seqs(&plain.program, 900, &[120, 80]);
        let got = build_harness(&files, &hostile, "clang", &[]).run(&seqs, hostile.output.size);
        let want = expected(&plain.program, &seqs);
        assert_same(&got, &want, &seqs, &format!("{label} with hostile names"));
    }
}
