//! The f32 counterpart (`--precision f32`), end to end.
//!
//! - C: every target's file compiles with gcc and clang under the strict warning set,
//!   with and without the instruction-set flags; on x86 the scalar, AVX2+FMA and
//!   AVX-512F builds (and their portable fallbacks) run several hundred steps of
//!   synthetic models whose shapes hit every tail (hidden widths not a multiple of 16,
//!   odd column counts, output rows not a multiple of the block) and of the char LM.
//!   NEON builds run under qemu-aarch64 when the cross compiler and qemu are installed.
//! - Rust: the generated module is compiled with `rustc -D warnings` (plain, and with
//!   `+avx2,+fma` when the CPU has them) into a small runner.
//! - Every run is compared with [`Reference`] (the same dequantized model in f64 with
//!   exact sigmoid/tanh): the largest logit difference must stay below `TOL` times the
//!   range of the reference logits (at least 1).
//! - The f32 model approximates the integer model: on the char LM's test data its
//!   top-1 prediction agrees with the interpreter's at ≥ 95 % of the steps.

mod support;

use irnn_cli::bench::target_flags;
use irnn_codegen::back::float::{F32Input, F32Program, Reference};
use irnn_codegen::back::{
    generate_f32, GenOptions, GeneratedFile, Lang, Precision, Target, Unroll,
};
use irnn_codegen::graph::Graph;
use irnn_codegen::npy::{read_data, SeqData};
use irnn_codegen::synth::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::c_harness::{
    cc, cortex_m_enabled, cross_enabled, Toolchain, ARM_NONE_EABI_CC, STRICT,
};
use support::{cell_models, cpu_runs, cpu_runs_or_skip, repo_root, synth_model, TestModel};

/// Allowed max |f32 − f64 reference| relative to the reference logits' range.
const TOL: f64 = 1e-5;

fn opts(lang: Lang, target: Target) -> GenOptions {
    GenOptions {
        lang,
        target,
        unroll: Unroll::None,
        precision: Precision::F32,
        fusion: Default::default(),
    }
}

/// One sequence of inputs: token ids (possibly out of range) or real features.
#[derive(Clone)]
enum Seq {
    Tokens(Vec<i32>),
    Features(Vec<f32>),
}

fn encode(seqs: &[Seq], width: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend((seqs.len() as i32).to_le_bytes());
    for s in seqs {
        match s {
            Seq::Tokens(t) => {
                b.extend((t.len() as i32).to_le_bytes());
                for v in t {
                    b.extend(v.to_le_bytes());
                }
            }
            Seq::Features(f) => {
                b.extend(((f.len() / width) as i32).to_le_bytes());
                for v in f {
                    b.extend(v.to_le_bytes());
                }
            }
        }
    }
    b
}

fn decode(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn reference(p: &F32Program, seqs: &[Seq]) -> Vec<f64> {
    let mut r = Reference::new(p);
    let mut out = Vec::new();
    for s in seqs {
        r.reset();
        match s {
            Seq::Tokens(t) => {
                for &tok in t {
                    let tok = usize::try_from(tok).unwrap_or(usize::MAX);
                    out.extend_from_slice(r.step_token(tok));
                }
            }
            Seq::Features(f) => {
                let w = match p.input {
                    F32Input::Features { size } => size,
                    F32Input::Tokens { .. } => unreachable!(),
                };
                for x in f.chunks_exact(w) {
                    out.extend_from_slice(r.step_features(x));
                }
            }
        }
    }
    out
}

/// Max |got − want| / max(1, range(want)); panics when above `TOL`.
fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    let lo = want.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = want.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let range = (hi - lo).max(1.0);
    let (mut worst, mut at) = (0f64, 0usize);
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (*g as f64 - w).abs();
        if d.is_nan() || d > worst {
            worst = if d.is_nan() { f64::INFINITY } else { d };
            at = k;
        }
    }
    eprintln!(
        "{what}: max |f32 - f64 reference| = {worst:.3e} (logit range {range:.3}, {:.2e} relative)",
        worst / range
    );
    assert!(
        worst <= TOL * range,
        "{what}: output {at}: {} vs reference {} (difference {worst:e} > {TOL} x range {range})",
        got[at],
        want[at]
    );
}

fn random_seqs(p: &F32Program, n: usize, t: usize, seed: u64) -> Vec<Seq> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| match p.input {
            F32Input::Tokens { vocab_size } => Seq::Tokens(
                (0..t)
                    .map(|k| {
                        if k % 37 == 5 {
                            -1
                        } else if k % 41 == 7 {
                            vocab_size as i32
                        } else {
                            (rng.next_u64() % vocab_size as u64) as i32
                        }
                    })
                    .collect(),
            ),
            F32Input::Features { size } => Seq::Features(
                (0..t * size)
                    .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
                    .collect(),
            ),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// C
// ---------------------------------------------------------------------------------

const C_HARNESS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "@F@.h"

static int32_t read_i32(FILE *f)
{
    int32_t v = 0;
    if (fread(&v, sizeof v, 1, f) != 1) {
        exit(3);
    }
    return v;
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    int32_t n_seq, s, t;
    static @P@_state_t st;
    float y[@PU@_OUTPUT_SIZE];
    if (argc != 3) {
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) {
        return 2;
    }
    n_seq = read_i32(in);
    for (s = 0; s < n_seq; ++s) {
        const int32_t n = read_i32(in);
#ifdef @PU@_VOCAB_SIZE
        int32_t *x = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n + 1));
        const size_t w = 1;
#else
        float *x = (float *)malloc(sizeof(float) * (size_t)(n + 1) * @PU@_INPUT_SIZE);
        const size_t w = @PU@_INPUT_SIZE;
#endif
        float *ys = (float *)malloc(sizeof(float) * (size_t)(n + 1) * @PU@_OUTPUT_SIZE);
        if (fread(x, sizeof x[0] * w, (size_t)n, in) != (size_t)n) {
            return 3;
        }
        memset(&st, 0x5a, sizeof st);
        @P@_reset(&st);
        if (s % 2 == 0) {
            for (t = 0; t < n; ++t) {
#ifdef @PU@_VOCAB_SIZE
                @P@_step(&st, x[t], y);
#else
                @P@_step(&st, x + (size_t)t * w, y);
#endif
                fwrite(y, sizeof y, 1, out);
            }
        } else {
            @P@_run(&st, x, n, ys);
            fwrite(ys, sizeof(float) * @PU@_OUTPUT_SIZE, (size_t)n, out);
        }
        free(x);
        free(ys);
    }
    fclose(out);
    return 0;
}
"#;

fn write_files(dir: &Path, files: &[GeneratedFile]) -> PathBuf {
    let mut c = None;
    for f in files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.contents).expect("write");
        if f.name.ends_with(".c") {
            c = Some(path);
        }
    }
    c.expect("a .c file")
}

fn prefix(p: &F32Program) -> String {
    irnn_codegen::back::names::sanitize(&p.name)
}

/// Builds the C of `target` with `compiler` (`extra` flags) and runs it over `seqs`
/// (through `runner`, e.g. qemu, when given).
#[allow(clippy::too_many_arguments)]
fn run_c(
    p: &F32Program,
    graph: &Graph,
    target: Target,
    compiler: &str,
    extra: &[&str],
    runner: Option<&[&str]>,
    seqs: &[Seq],
    width: usize,
) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let files = generate_f32(graph, &opts(Lang::C, target)).expect("generates");
    let c = write_files(dir.path(), &files);
    let name = prefix(p);
    let h = dir.path().join("main.c");
    std::fs::write(
        &h,
        C_HARNESS
            .replace("@PU@", &irnn_codegen::back::names::upper(&name))
            .replace("@F@", &irnn_codegen::back::names::file_stem(&name))
            .replace("@P@", &name),
    )
    .unwrap();
    let exe = dir.path().join("run");
    let mut args: Vec<String> = ["-std=c99", "-O2"].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        c.display().to_string(),
        h.display().to_string(),
        "-o".into(),
        exe.display().to_string(),
    ]);
    cc(compiler, &args, &format!("the f32 harness ({target:?})"));
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    std::fs::write(&input, encode(seqs, width)).unwrap();
    let mut cmd = match runner {
        Some(r) => {
            let mut c = Command::new(r[0]);
            c.args(&r[1..]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let st = cmd.arg(&input).arg(&output).status().expect("runs");
    assert!(st.success(), "{target:?} {compiler}: harness failed: {st}");
    decode(&std::fs::read(&output).unwrap())
}

struct Case {
    model: TestModel,
    graph: Graph,
    p: F32Program,
}

/// The LSTM models come first ([`LSTM_CASES`] of them), then the GRU and RNN (tanh,
/// relu) models of [`cell_models`].
fn cases() -> Vec<Case> {
    [
        synth_model("f32_feat", None, 13, 21, 2, 7, 11),
        synth_model("f32_tok", Some(11), 9, 40, 1, 37, 12),
        synth_model("f32_wide", None, 40, 64, 1, 70, 13),
    ]
    .into_iter()
    .chain(cell_models().into_iter().map(|s| s.model))
    .map(|model| {
        let graph = Graph::load(&model.graph).expect("loads");
        let p = F32Program::from_graph(&graph).expect("dequantizes");
        Case { model, graph, p }
    })
    .collect()
}

/// How many of [`cases`] are LSTM models.
const LSTM_CASES: usize = 3;

/// One LSTM case (`lstm`) and every GRU/RNN case.
fn some_cases(lstm: usize) -> Vec<Case> {
    cases()
        .into_iter()
        .enumerate()
        .filter(|(k, _)| *k == lstm || *k >= LSTM_CASES)
        .map(|(_, c)| c)
        .collect()
}

fn width(p: &F32Program) -> usize {
    match p.input {
        F32Input::Features { size } => size,
        F32Input::Tokens { .. } => 1,
    }
}

#[test]
fn c_builds_strict_for_every_target() {
    for case in &some_cases(0) {
        c_builds_strict(case);
    }
}

fn c_builds_strict(case: &Case) {
    for target in Target::ALL {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_f32(&case.graph, &opts(Lang::C, target)).expect("generates");
        let c = write_files(dir.path(), &files);
        let obj = dir.path().join("m.o");
        let compilers: &[&str] = if target.is_arm() || target.is_cortex_m() {
            &[]
        } else {
            &["gcc", "clang"]
        };
        for compiler in compilers {
            for with_isa in [false, true] {
                let mut args: Vec<&str> = STRICT.to_vec();
                args.push("-O2");
                if with_isa {
                    args.extend(target_flags(target));
                }
                let (c, o) = (c.display().to_string(), obj.display().to_string());
                args.extend(["-c", &c, "-o", &o]);
                cc(compiler, &args, &format!("f32 C for {}", target.name()));
            }
        }
        if target.is_arm() && cross_enabled("f32 C strict build for AArch64") {
            let mut args: Vec<String> = STRICT.iter().map(|s| s.to_string()).collect();
            args.extend(["-O2", "-c"].map(String::from));
            args.push(c.display().to_string());
            args.extend(["-o".to_string(), obj.display().to_string()]);
            cc(Toolchain::AARCH64.cc, &args, "aarch64 gcc, f32 C");
        }
        if target.is_cortex_m() && cortex_m_enabled("f32 C strict build for Cortex-M") {
            let mut args: Vec<String> = STRICT.iter().map(|s| s.to_string()).collect();
            args.extend(target_flags(target).iter().map(|s| s.to_string()));
            args.extend(["-O2", "-c"].map(String::from));
            args.push(c.display().to_string());
            args.extend(["-o".to_string(), obj.display().to_string()]);
            cc(
                ARM_NONE_EABI_CC,
                &args,
                &format!("arm-none-eabi-gcc, f32 C, {}", target.name()),
            );
        }
    }
}

#[test]
fn c_matches_the_f64_reference() {
    for case in cases() {
        let seqs = random_seqs(&case.p, 3, 150, 99);
        let want = reference(&case.p, &seqs);
        for target in [Target::Scalar, Target::Avx2, Target::Avx512Vnni] {
            for compiler in ["gcc", "clang"] {
                // The portable fallback of every target runs everywhere; the SIMD
                // build where this CPU has the instruction set.
                let mut builds: Vec<(&[&str], &str)> = vec![(&[], "portable")];
                if target != Target::Scalar
                    && cpu_runs_or_skip(target, &format!("running {}", target.name()))
                {
                    builds.push((target_flags(target), "SIMD"));
                }
                for (flags, label) in builds {
                    let got = run_c(
                        &case.p,
                        &case.graph,
                        target,
                        compiler,
                        flags,
                        None,
                        &seqs,
                        width(&case.p),
                    );
                    assert_close(
                        &got,
                        &want,
                        &format!("{} C {} {compiler} ({label})", case.p.name, target.name()),
                    );
                }
            }
        }
        drop(case.model);
    }
}

#[test]
fn c_neon_under_qemu() {
    if !cross_enabled("c_neon_under_qemu") {
        return;
    }
    for case in some_cases(1) {
        let seqs = random_seqs(&case.p, 2, 120, 5);
        let want = reference(&case.p, &seqs);
        for target in [Target::Neon, Target::NeonDotprod] {
            let got = run_c(
                &case.p,
                &case.graph,
                target,
                "aarch64-linux-gnu-gcc",
                &["-static"],
                Some(&["qemu-aarch64", "-cpu", "max"]),
                &seqs,
                width(&case.p),
            );
            assert_close(
                &got,
                &want,
                &format!("{} C {} under qemu", case.p.name, target.name()),
            );
        }
    }
}

/// The char LM: the generated f32 C agrees with the f64 reference, and its top-1
/// predictions agree with the integer interpreter's at ≥ 95 % of the steps.
#[test]
fn charlm_f32_tracks_reference_and_integer_model() {
    tracks_reference_and_integer_model("examples/charlm/charlm.irnn.json", "charlm");
}

/// The same for the GRU char LM (same vocabulary and test data): checks the GRU's
/// float semantics against the integer model, independently of [`Reference`].
#[test]
fn gru_charlm_f32_tracks_reference_and_integer_model() {
    tracks_reference_and_integer_model("examples/gru_charlm/gru_charlm.irnn.json", "gru_charlm");
}

fn tracks_reference_and_integer_model(graph_path: &str, label: &str) {
    let root = repo_root();
    let json = root.join(graph_path);
    let graph = Graph::load(&json).expect("graph loads");
    let p = F32Program::from_graph(&graph).expect("dequantizes");
    let program = irnn_codegen::lower::lower(&graph).expect("lowers");
    // test_small.npy (4 x 64 steps) and the first two sequences of test.npy (2 x 256).
    let mut seqs: Vec<Seq> = Vec::new();
    for (file, max_seqs) in [("test_small.npy", usize::MAX), ("test.npy", 2)] {
        let data = read_data(&root.join("examples/charlm/data").join(file)).expect("data");
        let (n, t) = data.data.dims();
        let SeqData::Tokens { data: toks, .. } = &data.data else {
            panic!("token data expected")
        };
        seqs.extend(
            (0..n.min(max_seqs))
                .map(|s| Seq::Tokens(toks[s * t..(s + 1) * t].iter().map(|&v| v as i32).collect())),
        );
    }
    let steps: usize = seqs
        .iter()
        .map(|s| match s {
            Seq::Tokens(t) => t.len(),
            Seq::Features(_) => 0,
        })
        .sum();
    assert!(steps >= 300, "only {steps} steps of test data");
    let want = reference(&p, &seqs);
    let target = if cpu_runs(Target::Avx2) {
        Target::Avx2
    } else {
        Target::Scalar
    };
    let got = run_c(
        &p,
        &graph,
        target,
        "gcc",
        target_flags(target),
        None,
        &seqs,
        1,
    );
    assert_close(&got, &want, &format!("{label} C f32"));
    // Against the interpreter.
    let o = p.output_size;
    let mut it = irnn_codegen::interp::Interpreter::new(&program);
    let mut agree = 0usize;
    let mut k = 0usize;
    for s in &seqs {
        let Seq::Tokens(ts) = s else { unreachable!() };
        it.reset();
        for &tok in ts {
            let yi = it.step_token(tok as i64).expect("steps").to_vec();
            let yf = &got[k * o..(k + 1) * o];
            let am_i = (0..o).max_by_key(|&j| yi[j]).unwrap();
            let am_f = (0..o)
                .max_by(|&a, &b| yf[a].partial_cmp(&yf[b]).unwrap())
                .unwrap();
            agree += (am_i == am_f) as usize;
            k += 1;
        }
    }
    let rate = agree as f64 / k as f64;
    eprintln!(
        "{label}: f32 and int8 top-1 agree at {:.2} % of {k} steps",
        rate * 100.0
    );
    assert!(rate >= 0.95, "top-1 agreement {rate}");
}

// ---------------------------------------------------------------------------------
// Rust
// ---------------------------------------------------------------------------------

fn rust_main(p: &F32Program, module: &str) -> String {
    let (read, step) = match p.input {
        F32Input::Tokens { .. } => (
            "let x: Vec<u32> = (0..n).map(|_| rd_i32(&b, &mut at) as u32).collect();",
            "*m.step(*xi)",
        ),
        F32Input::Features { .. } => (
            "let x: Vec<[f32; m::INPUT_SIZE]> = (0..n).map(|_| { let mut v = [0f32; m::INPUT_SIZE]; for e in v.iter_mut() { *e = f32::from_bits(rd_i32(&b, &mut at) as u32); } v }).collect();",
            "*m.step(xi)",
        ),
    };
    format!(
        "mod m {{ include!({module:?}); }}
fn rd_i32(b: &[u8], at: &mut usize) -> i32 {{
    let v = i32::from_le_bytes([b[*at], b[*at + 1], b[*at + 2], b[*at + 3]]);
    *at += 4;
    v
}}
fn main() {{
    let args: Vec<String> = std::env::args().collect();
    let b = std::fs::read(&args[1]).unwrap();
    let mut at = 0;
    let mut out: Vec<u8> = Vec::new();
    let n_seq = rd_i32(&b, &mut at);
    let mut m = m::Model::new();
    for s in 0..n_seq {{
        let n = rd_i32(&b, &mut at) as usize;
        {read}
        m.reset();
        if s % 2 == 0 {{
            for xi in &x {{
                let y: [f32; m::OUTPUT_SIZE] = {step};
                for v in y {{ out.extend(v.to_le_bytes()); }}
            }}
        }} else {{
            let mut ys = vec![[0f32; m::OUTPUT_SIZE]; n];
            assert_eq!(m.run(&x, &mut ys), n);
            for y in ys {{ for v in y {{ out.extend(v.to_le_bytes()); }} }}
        }}
    }}
    std::fs::write(&args[2], out).unwrap();
}}
"
    )
}

#[test]
fn rust_matches_the_f64_reference() {
    for case in cases() {
        let seqs = random_seqs(&case.p, 3, 150, 7);
        let want = reference(&case.p, &seqs);
        let mut runs: Vec<(Target, &[&str])> = vec![
            (Target::Scalar, &[]),
            (Target::Avx2, &[]),
            (Target::Neon, &[]),
        ];
        if cpu_runs(Target::Avx2) {
            runs.push((Target::Avx2, &["-C", "target-feature=+avx2,+fma"]));
        }
        if cpu_runs(Target::Avx512Vnni) {
            runs.push((
                Target::Avx512Vnni,
                &["-C", "target-feature=+avx2,+fma,+avx512f"],
            ));
        }
        for (target, rflags) in runs {
            let dir = tempfile::tempdir().unwrap();
            let files = generate_f32(&case.graph, &opts(Lang::Rust, target)).expect("generates");
            assert_eq!(files.len(), 1);
            let module = dir.path().join(&files[0].name);
            std::fs::write(&module, &files[0].contents).unwrap();
            let main = dir.path().join("main.rs");
            std::fs::write(&main, rust_main(&case.p, &module.display().to_string())).unwrap();
            let exe = dir.path().join("run");
            let out = Command::new("rustc")
                .args(["--edition", "2021", "-O", "-D", "warnings"])
                .args(rflags)
                .arg(&main)
                .arg("-o")
                .arg(&exe)
                .output()
                .expect("rustc runs");
            assert!(
                out.status.success(),
                "rustc {target:?} {rflags:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let input = dir.path().join("in.bin");
            let output = dir.path().join("out.bin");
            std::fs::write(&input, encode(&seqs, width(&case.p))).unwrap();
            let st = Command::new(&exe)
                .arg(&input)
                .arg(&output)
                .status()
                .unwrap();
            assert!(st.success());
            let got = decode(&std::fs::read(&output).unwrap());
            assert_close(
                &got,
                &want,
                &format!("{} Rust {} {rflags:?}", case.p.name, target.name()),
            );
        }
    }
}

/// The integer entry point refuses f32 with a pointer to the graph-based one, and
/// unrolling is refused for f32.
#[test]
fn f32_options_are_checked() {
    let case = &cases()[0];
    let err = irnn_codegen::back::generate(&case.model.program, &opts(Lang::C, Target::Scalar))
        .unwrap_err()
        .to_string();
    assert!(err.contains("generate_f32"), "{err}");
    let mut o = opts(Lang::Rust, Target::Scalar);
    o.unroll = Unroll::Full;
    let err = generate_f32(&case.graph, &o).unwrap_err().to_string();
    assert!(err.contains("--unroll"), "{err}");
}

/// `irnn bench`'s library side with both precisions: one int8 and one f32 row per
/// target, f32 weights take 4 bytes each, and the table has the int8-vs-f32 column.
#[test]
fn bench_times_int8_and_f32() {
    use irnn_cli::bench::{bench, table, BenchOptions};
    let case = &cases()[0];
    let rows = bench(
        &case.model.program,
        Some(&case.p),
        &BenchOptions {
            targets: vec![Target::Scalar],
            precisions: vec![Precision::Int8, Precision::F32],
            steps: 20,
            runs: 3,
            cc: "gcc".into(),
            lang: Lang::C,
            fusion: Default::default(),
        },
    )
    .expect("bench runs");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].precision, Precision::F32);
    assert!(rows.iter().all(|r| r.us_per_step > 0.0 && r.text_bytes > 0));
    assert!(rows[1].weight_bytes >= 4 * case.p.weight_count());
    let t = table(&case.model.program, &rows);
    assert!(
        t.contains("int8 speed-up vs f32") && t.contains("| scalar | f32 |"),
        "{t}"
    );
    let err = bench(
        &case.model.program,
        None,
        &BenchOptions {
            targets: vec![Target::Scalar],
            precisions: vec![Precision::F32],
            steps: 20,
            runs: 3,
            cc: "gcc".into(),
            lang: Lang::C,
            fusion: Default::default(),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("dequantized"), "{err}");
}
