//! The `pipeline` target: bytes → a small valid float model (1–3 recurrent layers of
//! any cell, token or feature input, widths up to 24, an output linear; random weights,
//! gains and calibration data) → `quantize` → graph files → `Graph::load` → `lower` →
//! the interpreter over random input sequences → the generated C (scalar with a random
//! unrolling, and half the time the host's SIMD target) built with gcc under ASan and
//! UBSan and run over the same sequences: every int32 output must equal the
//! interpreter's. The scalar Rust, and the C and Rust of one more target (int8 and f32)
//! must generate. Any failure after the float model loads is a finding (a panic),
//! except the clean refusals that `irnn quantize` reports as errors: a model
//! `quantize` cannot represent (`QuantizeError::Model`) and a graph `lower` refuses.
//!
//! One in four inputs leaves the output linear out: `quantize` must refuse that model
//! (it used to write a graph that does not load).
//!
//! Speed: gcc dominates (about a second a build with the sanitizers), so each input
//! builds one or two programs, and builds are cached by the hash of their sources: an
//! input that changes only the test sequences reuses the binary.

use super::Bytes;
use irnn_codegen::back::{self, Fusion, GenOptions, Lang, Precision, Target, Unroll};
use irnn_codegen::graph::{write_graph, Graph};
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::{InputIr, Program};
use irnn_codegen::lower::lower;
use irnn_codegen::npy::{DataFile, SeqData};
use irnn_codegen::pwl::FitMethod;
use irnn_codegen::quantize::{quantize, QuantizeError, QuantizeOptions, RangeMethod};
use irnn_codegen::spec::{Cell, FloatModel, Nonlinearity};
use irnn_codegen::synth::Rng;
use irnn_codegen::tensors::TensorWriter;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One decoded model and everything the check runs on it.
#[derive(Debug)]
pub struct Case {
    name: &'static str,
    vocab: Option<usize>,
    input: usize,
    /// (prefix, cell, hidden, gain, weight pattern).
    layers: Vec<(&'static str, Cell, usize, f64, u8)>,
    /// Output width of the final linear, if any.
    head: Option<usize>,
    seed: u64,
    calib: (usize, usize, f64),
    opts: QuantizeOptions,
    unroll: Unroll,
    simd: Option<Target>,
    /// Another target whose code must generate (not built).
    other: Target,
    /// Test sequences: lengths.
    seq_lens: Vec<usize>,
}

const NAMES: &[&str] = &["m", "q", "step", "Net-1", "state", "int", "main_x"];
const PREFIXES: &[&str] = &["rnn", "q", "pwl0", "lstm.cell", "step", "l", "run"];

/// Decodes a model description from fuzz bytes (never fails: every choice is mapped
/// into its valid range).
pub fn decode(data: &[u8]) -> Case {
    let mut b = Bytes(data);
    let name = b.pick(NAMES);
    let n_layers = b.range(1, 3);
    let vocab = if b.byte() & 1 == 0 {
        Some(b.range(1, 40))
    } else {
        None
    };
    let input = b.range(1, 24);
    let mut layers = Vec::new();
    for k in 0..n_layers {
        let cell = b.pick(&[
            Cell::Lstm,
            Cell::Gru,
            Cell::Rnn(Nonlinearity::Tanh),
            Cell::Rnn(Nonlinearity::Relu),
        ]);
        let hidden = b.range(1, 24);
        let gain = b.pick(&[0.05, 0.5, 1.0, 2.0, 4.0, 12.0]);
        let pattern = b.byte() % 4;
        // Distinct prefixes (tensor names must not collide).
        let prefix = PREFIXES[(b.byte() as usize + k) % PREFIXES.len()];
        let prefix = if layers.iter().any(|l: &(&str, _, _, _, _)| l.0 == prefix) {
            ["a", "b", "c"][k]
        } else {
            prefix
        };
        layers.push((prefix, cell, hidden, gain, pattern));
    }
    let head = if b.byte() % 4 != 0 {
        Some(b.range(1, 24))
    } else {
        None
    };
    let seed = b.u64();
    let calib = (
        b.range(1, 4),
        b.range(1, 32),
        b.pick(&[0.01, 0.3, 1.0, 5.0, 100.0]),
    );
    let range = match b.byte() % 3 {
        0 => RangeMethod::Percentile(b.pick(&[50.0, 90.0, 99.0, 99.99, 100.0])),
        _ => RangeMethod::MinMax,
    };
    let opts = QuantizeOptions {
        range,
        pwl_tolerance_lsb: b.pick(&[0.25, 0.5, 1.0, 2.0, 8.0, 64.0]),
        pwl_max_pieces: b.range(3, 256),
        pwl_method: b.pick(&[FitMethod::Sweep, FitMethod::Recursive, FitMethod::Uniform]),
        ..QuantizeOptions::default()
    };
    let unroll = b.pick(&[Unroll::None, Unroll::Inner, Unroll::Full]);
    let simd = host_simd(b.byte());
    let other = b.pick(&Target::ALL);
    let seq_lens = (0..b.range(1, 3)).map(|_| b.range(1, 40)).collect();
    Case {
        name,
        vocab,
        input,
        layers,
        head,
        seed,
        calib,
        opts,
        unroll,
        simd,
        other,
        seq_lens,
    }
}

/// A SIMD target this CPU runs, or none (half the time: one build per input is
/// faster), chosen by `b`.
fn host_simd(b: u8) -> Option<Target> {
    if b.is_multiple_of(2) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        let vnni = avx2
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        match (b % 4, avx2, vnni) {
            (3, _, true) => Some(Target::Avx512Vnni),
            (_, true, _) => Some(Target::Avx2),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Random weights of `n` values in `[-a, a)` with a pattern: dense, sparse (3 of 4
/// exactly zero), one outlier per 8 values (the rest tiny), or all equal.
fn weights(rng: &mut Rng, n: usize, a: f64, pattern: u8) -> Vec<f32> {
    (0..n)
        .map(|i| match pattern {
            1 if rng.below(4) != 0 => 0.0,
            2 if i % 8 != 0 => rng.sym(a * 0.01),
            3 => a as f32,
            _ => rng.sym(a),
        })
        .collect()
}

/// Writes the float spec and weights of `case` into `dir`; returns the spec path.
fn write_float(dir: &Path, c: &Case) -> PathBuf {
    let mut rng = Rng::new(c.seed);
    let mut w = TensorWriter::default();
    let mut layers = Vec::new();
    let mut width = c.input;
    let input = match c.vocab {
        Some(v) => {
            w.f32(
                "embed.weight",
                &[v, c.input],
                &weights(&mut rng, v * c.input, 1.0, 0),
            );
            layers.push(serde_json::json!({"op": "embedding", "prefix": "embed"}));
            serde_json::json!({"kind": "tokens", "vocab_size": v})
        }
        None => serde_json::json!({"kind": "features", "size": c.input}),
    };
    for &(prefix, cell, h, gain, pattern) in &c.layers {
        let g = cell.gates();
        let k = gain / (h as f64).sqrt();
        let mut put = |name: &str, shape: &[usize]| {
            let n = shape.iter().product();
            w.f32(
                &format!("{prefix}.{name}_l0"),
                shape,
                &weights(&mut rng, n, k, pattern),
            );
        };
        put("weight_ih", &[g * h, width]);
        put("weight_hh", &[g * h, h]);
        put("bias_ih", &[g * h]);
        put("bias_hh", &[g * h]);
        layers.push(match cell {
            Cell::Lstm => serde_json::json!({"op": "lstm", "prefix": prefix}),
            Cell::Gru => serde_json::json!({"op": "gru", "prefix": prefix}),
            Cell::Rnn(act) => {
                serde_json::json!({"op": "rnn", "prefix": prefix, "nonlinearity": act})
            }
        });
        width = h;
    }
    if let Some(o) = c.head {
        let k = 1.0 / (width as f64).sqrt();
        w.f32(
            "head.weight",
            &[o, width],
            &weights(&mut rng, o * width, k, 0),
        );
        w.f32("head.bias", &[o], &weights(&mut rng, o, k, 0));
        layers.push(serde_json::json!({"op": "linear", "prefix": "head"}));
    }
    let spec = serde_json::json!({
        "name": c.name,
        "weights": "float.safetensors",
        "input": input,
        "layers": layers,
    });
    std::fs::write(
        dir.join("float.safetensors"),
        w.to_bytes().expect("tensor bytes"),
    )
    .expect("write weights");
    let path = dir.join("float.json");
    std::fs::write(&path, spec.to_string()).expect("write spec");
    path
}

/// Random calibration data for `case`.
fn calib_data(c: &Case, rng: &mut Rng) -> DataFile {
    let (n, t, amp) = c.calib;
    let data = match c.vocab {
        Some(v) => SeqData::Tokens {
            n,
            t,
            data: (0..n * t).map(|_| rng.below(v as u64) as i64).collect(),
        },
        None => SeqData::FeaturesF32 {
            n,
            t,
            f: c.input,
            data: (0..n * t * c.input).map(|_| rng.sym(amp)).collect(),
        },
    };
    DataFile {
        data,
        single: false,
    }
}

/// One test sequence.
enum Seq {
    Tokens(Vec<i32>),
    Features(Vec<i8>),
}

fn test_seqs(program: &Program, c: &Case, rng: &mut Rng) -> Vec<Seq> {
    c.seq_lens
        .iter()
        .enumerate()
        .map(|(s, &len)| match program.input {
            InputIr::Tokens { vocab_size } => Seq::Tokens(
                (0..len)
                    .map(|_| rng.below(vocab_size as u64) as i32)
                    .collect(),
            ),
            InputIr::Features { size, .. } => Seq::Features(
                (0..len * size)
                    .map(|i| match s {
                        // The extremes, then random codes.
                        1 => [127i8, -128][i / size % 2],
                        _ => rng.below(256) as u8 as i8,
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// The interpreter's outputs of every step of every sequence, state reset per
/// sequence.
fn interpret(program: &Program, seqs: &[Seq]) -> Vec<i32> {
    let mut it = Interpreter::new(program);
    let mut out = Vec::new();
    for s in seqs {
        it.reset();
        match s {
            Seq::Tokens(t) => {
                for &x in t {
                    out.extend_from_slice(it.step_token(x as i64).expect("interpreter step"));
                }
            }
            Seq::Features(f) => {
                let size = match program.input {
                    InputIr::Features { size, .. } => size,
                    InputIr::Tokens { .. } => unreachable!(),
                };
                for x in f.chunks(size) {
                    out.extend_from_slice(it.step_features(x).expect("interpreter step"));
                }
            }
        }
    }
    out
}

/// The harness: reads from stdin `n_seq`, then per sequence `n_steps` and the inputs
/// (int32 token ids or int8 features); writes every step's int32 outputs to stdout.
/// Sequence `s` runs through `step` (s % 3 == 0), one `run` (s % 3 == 1), or `run`
/// over its first half and `step` over the rest; the state starts as garbage.
const HARNESS: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "@F@.h"
#ifdef @PU@_VOCAB_SIZE
typedef int32_t in_t;
#define IN_W 1
#else
typedef int8_t in_t;
#define IN_W @PU@_INPUT_SIZE
#endif
static void need(int ok) { if (!ok) { fputs("harness: bad input\n", stderr); exit(2); } }
int main(void) {
    int32_t n_seq, s, t, n;
    @P@_state_t *st = (@P@_state_t *)malloc(sizeof *st);
    need(st != NULL && fread(&n_seq, 4, 1, stdin) == 1);
    memset(st, 0xA5, sizeof *st);
    for (s = 0; s < n_seq; ++s) {
        in_t *x;
        int32_t *y;
        need(fread(&n, 4, 1, stdin) == 1 && n > 0);
        x = (in_t *)malloc((size_t)n * IN_W * sizeof(in_t));
        y = (int32_t *)malloc((size_t)n * @PU@_OUTPUT_SIZE * sizeof(int32_t));
        need(x != NULL && y != NULL);
        need(fread(x, sizeof(in_t) * IN_W, (size_t)n, stdin) == (size_t)n);
        @P@_reset(st);
        if (s % 3 == 1) {
            @P@_run(st, x, n, y);
        } else {
            int32_t a = s % 3 == 0 ? 0 : n / 2;
            @P@_run(st, x, a, y);
            for (t = a; t < n; ++t) {
#ifdef @PU@_VOCAB_SIZE
                @P@_step(st, x[t], y + (size_t)t * @PU@_OUTPUT_SIZE);
#else
                @P@_step(st, x + (size_t)t * IN_W, y + (size_t)t * @PU@_OUTPUT_SIZE);
#endif
            }
        }
        need(fwrite(y, 4, (size_t)n * @PU@_OUTPUT_SIZE, stdout) == (size_t)n * @PU@_OUTPUT_SIZE);
        free(x);
        free(y);
    }
    free(st);
    return fflush(stdout) == 0 ? 0 : 1;
}
"#;

fn encode(seqs: &[Seq], input_width: usize) -> Vec<u8> {
    let mut b = (seqs.len() as i32).to_le_bytes().to_vec();
    for s in seqs {
        match s {
            Seq::Tokens(t) => {
                b.extend_from_slice(&(t.len() as i32).to_le_bytes());
                t.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
            }
            Seq::Features(f) => {
                b.extend_from_slice(&((f.len() / input_width) as i32).to_le_bytes());
                b.extend(f.iter().map(|&v| v as u8));
            }
        }
    }
    b
}

/// Whether gcc builds and runs a program with `-fsanitize=address,undefined` here.
fn sanitizers_work() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let dir = super::scratch();
        let c = dir.join("probe.c");
        let exe = dir.join("probe");
        std::fs::write(&c, "int main(void) { return 0; }\n").expect("write probe");
        Command::new("gcc")
            .args(SANITIZE)
            .arg(&c)
            .arg("-o")
            .arg(&exe)
            .output()
            .is_ok_and(|o| o.status.success())
            && Command::new(&exe).status().is_ok_and(|s| s.success())
    })
}

const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// A harness build: already compiled (an earlier input generated the same sources), or
/// gcc running.
enum Build {
    Ready(PathBuf),
    Running(std::process::Child, PathBuf),
}

/// Compiled harnesses, one directory per hash of everything gcc was given: an input
/// that changes only the test sequences (or a model that generates the same C) is not
/// compiled again. At most `CACHE_MAX` are kept. The cache is on disk only: memory
/// kept across inputs would look like a leak to libFuzzer, which then runs the input
/// again to check.
fn cache_dir() -> PathBuf {
    super::scratch().join("pipeline-cache")
}

const CACHE_MAX: usize = 64;

/// Writes the generated C and the harness into a directory named by their hash and
/// starts gcc on them, unless that build is cached.
fn start_build(files: &[back::GeneratedFile], program: &Program, target: Target) -> Build {
    let p = back::names::sanitize(&program.name);
    let harness = HARNESS
        .replace("@PU@", &back::names::upper(&p))
        .replace("@F@", &back::names::file_stem(&p))
        .replace("@P@", &p);
    let mut args: Vec<&str> = vec!["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-g0"];
    args.extend_from_slice(target.info().cc_flags);
    if sanitizers_work() {
        args.extend_from_slice(SANITIZE);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&args, &harness).hash(&mut h);
    for f in files {
        (&f.name, &f.contents).hash(&mut h);
    }
    let dir = cache_dir().join(format!("{:016x}", h.finish()));
    let exe = dir.join("harness");
    if exe.is_file() {
        return Build::Ready(exe);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("build directory");
    let mut sources = Vec::new();
    for f in files {
        let p = dir.join(&f.name);
        std::fs::write(&p, &f.contents).expect("write generated file");
        if f.name.ends_with(".c") {
            sources.push(p);
        }
    }
    let harness_c = dir.join("harness_main.c");
    std::fs::write(&harness_c, harness).expect("write harness");
    let child = Command::new("gcc")
        .args(&args)
        .args(&sources)
        .arg(&harness_c)
        .arg("-o")
        .arg(&exe)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gcc runs");
    Build::Running(child, exe)
}

/// Waits for a build, runs the program on `input` (written to `input_path`) and
/// returns its outputs.
fn finish_run(build: Build, input_path: &Path, what: &str) -> Vec<i32> {
    let exe = match build {
        Build::Ready(exe) => exe,
        Build::Running(child, exe) => {
            let out = child.wait_with_output().expect("gcc finishes");
            assert!(
                out.status.success(),
                "{what}: gcc failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            exe
        }
    };
    let out = Command::new(&exe)
        .stdin(std::fs::File::open(input_path).expect("open harness input"))
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .output()
        .expect("harness runs");
    assert!(
        out.status.success(),
        "{what}: the compiled harness failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn gen(program: &Program, lang: Lang, target: Target, unroll: Unroll) -> Vec<back::GeneratedFile> {
    gen_fused(program, lang, target, unroll, Fusion::Auto)
}

fn gen_fused(
    program: &Program,
    lang: Lang,
    target: Target,
    unroll: Unroll,
    fusion: Fusion,
) -> Vec<back::GeneratedFile> {
    let opts = GenOptions {
        lang,
        target,
        unroll,
        precision: Precision::Int8,
        fusion,
    };
    back::generate(program, &opts)
        .unwrap_or_else(|e| panic!("generation failed ({opts:?}) on a valid model: {e}"))
}

/// Whether every layer is small enough for `Unroll::Full`.
fn fits_full_unroll(program: &Program) -> bool {
    // Generation itself says so: a layer too large is refused with `GenError::Layer`.
    let opts = GenOptions {
        lang: Lang::C,
        target: Target::Scalar,
        unroll: Unroll::Full,
        precision: Precision::Int8,
        fusion: Default::default(),
    };
    match back::generate(program, &opts) {
        Ok(_) => true,
        Err(back::GenError::Layer { message, .. }) if message.contains("unroll") => false,
        Err(e) => panic!("generation failed ({opts:?}) on a valid model: {e}"),
    }
}

/// How many inputs of this process got as far as comparing compiled C with the
/// interpreter (the rest were refused cleanly: the replay test checks that its seeds
/// are not all refusals).
pub static COMPARED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The whole pipeline on one decoded model (see the module documentation).
pub fn check(data: &[u8]) {
    let case = decode(data);
    let dir = super::scratch().join("pipeline");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::read_dir(cache_dir()).map_or(0, |d| d.count()) >= CACHE_MAX {
        let _ = std::fs::remove_dir_all(cache_dir());
    }
    std::fs::create_dir_all(&dir).expect("pipeline directory");
    let spec = write_float(&dir, &case);
    let model = FloatModel::load(&spec)
        .unwrap_or_else(|e| panic!("the generated float model does not load: {e}\n{case:?}"));
    let mut rng = Rng::new(case.seed ^ 0xC0FFEE);
    let calib = calib_data(&case, &mut rng);
    let graph_path = dir.join("model.irnn.json");
    let quantized = quantize(
        &model,
        &calib,
        &dir.join("calib.npy"),
        "model.irnn.safetensors",
        &case.opts,
    );
    if case.head.is_none() {
        // Not a valid model: a quantized graph ends in a linear layer. Quantizing one
        // used to write a graph that does not load (regressions/pipeline/); it must be
        // refused, naming the last layer.
        match quantized {
            Err(e)
                if e.to_string()
                    .contains("the last layer must be a linear layer") => {}
            Err(e) => panic!("a model without an output linear: wrong error: {e}"),
            Ok(_) => panic!("a model without an output linear was quantized\n{case:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let (file, tensors, _) = match quantized {
        Ok(q) => q,
        // What quantization cannot represent is refused with a message naming the layer
        // (for example a bias beyond the int32 grid of a row of zero or tiny weights, or
        // of an input whose calibrated range is nearly zero): a clean error, not a
        // finding.
        Err(QuantizeError::Model { .. }) => {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        Err(e) => panic!("quantize failed on a valid model: {e}\n{case:?}"),
    };
    write_graph(&graph_path, &file, &tensors).expect("write graph");
    let graph = Graph::load(&graph_path)
        .unwrap_or_else(|e| panic!("the quantized graph does not load: {e}\n{case:?}"));
    // `lower` refuses scale ratios beyond its shift range (degenerate calibrated
    // ranges can give them); `irnn quantize` lowers its staged graph and reports this
    // as an error before writing, so this is a clean refusal too, not a finding.
    let Ok(program) = lower(&graph) else {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let seqs = test_seqs(&program, &case, &mut rng);
    let want = interpret(&program, &seqs);
    let width = match program.input {
        InputIr::Features { size, .. } => size,
        InputIr::Tokens { .. } => 1,
    };
    let input = dir.join("in.bin");
    std::fs::write(&input, encode(&seqs, width)).expect("write harness input");

    // The C that runs here: scalar (random unrolling) and the host's SIMD target, built
    // in parallel.
    let unroll = if case.unroll == Unroll::Full && !fits_full_unroll(&program) {
        Unroll::Inner
    } else {
        case.unroll
    };
    let mut builds = Vec::new();
    let scalar = gen(&program, Lang::C, Target::Scalar, unroll);
    builds.push((
        format!("C scalar {unroll:?}"),
        start_build(&scalar, &program, Target::Scalar),
    ));
    if let Some(t) = case.simd {
        // Every recurrent layer op by op in one case of three (the scalar build's
        // unrolling picks it).
        let fusion = if unroll == Unroll::Inner {
            Fusion::None
        } else {
            Fusion::Auto
        };
        let files = gen_fused(&program, Lang::C, t, Unroll::None, fusion);
        builds.push((
            format!("C {t:?} {fusion:?}"),
            start_build(&files, &program, t),
        ));
    }

    // Meanwhile: one other target (chosen by the input) must generate, in both
    // languages, as the integer model and as its f32 counterpart.
    for lang in [Lang::C, Lang::Rust] {
        gen(&program, lang, case.other, Unroll::None);
        let opts = GenOptions {
            lang,
            target: case.other,
            unroll: Unroll::None,
            precision: Precision::F32,
            fusion: Default::default(),
        };
        if let Err(e) = back::generate_f32(&graph, &opts) {
            panic!("f32 generation failed ({opts:?}): {e}");
        }
    }
    gen(&program, Lang::Rust, Target::Scalar, unroll);

    for (what, build) in builds {
        let got = finish_run(build, &input, &what);
        assert_eq!(got.len(), want.len(), "{what}: output length");
        if got != want {
            let o = program.output.size;
            let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{what}: the compiled C differs from the interpreter at step {} (output {}): {} != {}\n{case:?}",
                first / o,
                first % o,
                got[first],
                want[first]
            );
        }
    }
    COMPARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&dir);
}
