//! Pins the reference interpreter's outputs: every shipped and synthetic model is run on
//! fixed inputs and a hash of all its int32 outputs is compared with the value recorded
//! before the op-level IR replaced the per-layer interpreter. A change to the integer
//! semantics of any layer fails here, whatever the back ends do.

mod support;

use irnn_codegen::graph::Graph;
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::{InputIr, Program};
use irnn_codegen::lower::lower;
use support::*;

/// FNV-1a over the little-endian bytes of every output.
fn fnv(outputs: &[i32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for v in outputs {
        for b in v.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A deterministic pseudo-random stream (64-bit LCG, high bits).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

/// Runs `seqs` sequences of `steps` steps from reset: random inputs, then two
/// sequences of extreme inputs (all −128 / all 127 features, or the first and last
/// token), and returns every output in order.
fn run(program: &Program, seqs: usize, steps: usize, seed: u64) -> Vec<i32> {
    run_with(Interpreter::new(program), seqs, steps, seed)
}

fn run_with(mut it: Interpreter<'_>, seqs: usize, steps: usize, seed: u64) -> Vec<i32> {
    let program = it.program();
    let mut rng = Lcg(seed);
    let mut out = Vec::new();
    for s in 0..seqs + 2 {
        it.reset();
        for _ in 0..steps {
            let y = match program.input {
                InputIr::Tokens { vocab_size } => {
                    let tok = match s {
                        _ if s == seqs => 0,
                        _ if s == seqs + 1 => vocab_size - 1,
                        _ => rng.next() as usize % vocab_size,
                    };
                    it.step_token(tok as i64).expect("token in range")
                }
                InputIr::Features { size, .. } => {
                    let x: Vec<i8> = (0..size)
                        .map(|_| match s {
                            _ if s == seqs => -128,
                            _ if s == seqs + 1 => 127,
                            _ => rng.next() as u8 as i8,
                        })
                        .collect();
                    it.step_features(&x).expect("feature width")
                }
            };
            out.extend_from_slice(y);
        }
    }
    out
}

fn shipped(rel: &str) -> Program {
    lower(&Graph::load(&repo_root().join(rel)).expect("graph loads")).expect("lowers")
}

#[test]
fn interpreter_outputs_are_pinned() {
    let mut got = Vec::new();
    for rel in [
        "examples/charlm/charlm.irnn.json",
        "examples/charlm/charlm_qat.irnn.json",
        "tests/models/tiny_tokens.irnn.json",
        "tests/models/tiny_features.irnn.json",
    ] {
        got.push((rel.to_string(), fnv(&run(&shipped(rel), 3, 40, 1))));
    }
    let (spec, calib, _, _) = features_paths();
    let dir = tempfile::tempdir().unwrap();
    let features = quantize_files(&spec, &calib, &dir.path().join("features.irnn.json"));
    got.push(("features".into(), fnv(&run(&features, 3, 50, 2))));
    for s in synth_models(&SIMD_SHAPES) {
        got.push((s.label.to_string(), fnv(&run(&s.model.program, 3, 30, 3))));
    }
    // Recorded with the per-layer interpreter (kernels::lstm_step) before the op IR.
    let want: &[(&str, u64)] = &[
        ("examples/charlm/charlm.irnn.json", 0xff21419ae5eb418d),
        ("examples/charlm/charlm_qat.irnn.json", 0x3aa20533150fbb52),
        ("tests/models/tiny_tokens.irnn.json", 0x6cc330b07b08fa16),
        ("tests/models/tiny_features.irnn.json", 0x4c7df87f40b96a54),
        ("features", 0x25c099d508bccc7c),
        ("tok_mid", 0x1739aac616ffb14d),
        ("feat_mid", 0xd99ccccb810f6658),
        ("feat_small", 0x61478de8b62e54f4),
        ("feat_wide", 0xc3b8f5f7e1facdb4),
    ];
    for (name, h) in &got {
        eprintln!("(\"{name}\", 0x{h:016x}),");
    }
    let got_ref: Vec<(&str, u64)> = got.iter().map(|(n, h)| (n.as_str(), *h)).collect();
    assert_eq!(got_ref, want);
}

/// The interpreter with the CPU's SIMD matrix kernel (what `irnn run` and `irnn eval`
/// use) gives the portable interpreter's outputs on every pinned model and on GRU/RNN.
#[test]
fn simd_interpreter_matches_portable() {
    let kernel = irnn_runtime::simd::Kernel::detect();
    eprintln!("kernel: {:?}", kernel.isa());
    // On a CPU without a SIMD kernel this would compare the portable path with itself:
    // skip it there (and fail under CI where the CPU's flags say it has one).
    use irnn_codegen::back::Target;
    let simd = [
        Target::Avx2,
        Target::Avx512Vnni,
        Target::Neon,
        Target::NeonDotprod,
    ]
    .into_iter()
    .any(|t| cpu_runs_or_skip(t, "simd_interpreter_matches_portable"));
    if !simd {
        return;
    }
    assert_ne!(kernel.isa(), irnn_runtime::simd::Isa::Portable);
    let mut programs: Vec<(String, Program)> = [
        "examples/charlm/charlm.irnn.json",
        "examples/gru_charlm/gru_charlm.irnn.json",
        "tests/models/tiny_tokens.irnn.json",
        "tests/models/tiny_rnn.irnn.json",
    ]
    .iter()
    .map(|r| (r.to_string(), shipped(r)))
    .collect();
    for s in synth_models(&SIMD_SHAPES).into_iter().chain(cell_models()) {
        programs.push((s.label.to_string(), s.model.program));
    }
    for (name, p) in &programs {
        let want = run(p, 2, 30, 5);
        let got = run_with(Interpreter::with_kernel(p, kernel), 2, 30, 5);
        assert!(want == got, "{name}: SIMD interpreter differs");
    }
}
