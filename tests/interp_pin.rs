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

/// The shipped models `rels` (by path) and the synthetic SIMD-shaped and GRU/RNN ones
/// (by label).
fn shipped_and_synthetic(rels: &[&str]) -> Vec<(String, Program)> {
    let mut programs: Vec<(String, Program)> =
        rels.iter().map(|r| (r.to_string(), shipped(r))).collect();
    for s in synth_models(&SIMD_SHAPES).into_iter().chain(cell_models()) {
        programs.push((s.label.to_string(), s.model.program));
    }
    programs
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
    let programs = shipped_and_synthetic(&[
        "examples/charlm/charlm.irnn.json",
        "examples/gru_charlm/gru_charlm.irnn.json",
        "tests/models/tiny_tokens.irnn.json",
        "tests/models/tiny_rnn.irnn.json",
    ]);
    for (name, p) in &programs {
        let want = run(p, 2, 30, 5);
        let got = run_with(Interpreter::with_kernel(p, kernel), 2, 30, 5);
        assert!(want == got, "{name}: SIMD interpreter differs");
    }
}

/// Sequences stepped in lock step by one interpreter of several lanes
/// ([`Interpreter::with_lanes`], what `irnn run` and `irnn eval` do) give each sequence
/// the outputs of the portable one-lane interpreter on that sequence alone: 1, 2, 3, 5
/// and 8 lanes over 11 sequences (so the last group is short), on the portable kernel
/// and every SIMD kernel the CPU runs, with a reset between two rounds of every group.
#[test]
fn lock_step_lanes_match_one_sequence_at_a_time() {
    use irnn_runtime::simd::{Isa, Kernel};
    let programs = shipped_and_synthetic(&[
        "examples/charlm/charlm.irnn.json",
        "examples/gru_charlm/gru_charlm.irnn.json",
        "tests/models/tiny_tokens.irnn.json",
        "tests/models/tiny_features.irnn.json",
        "tests/models/tiny_rnn.irnn.json",
    ]);
    let kernels: Vec<Kernel> = Isa::ALL.into_iter().filter_map(Kernel::new).collect();
    eprintln!(
        "kernels: {:?}",
        kernels.iter().map(|k| k.isa()).collect::<Vec<_>>()
    );
    let (seqs, steps) = (11, 17);
    for (name, p) in &programs {
        // Per sequence and step, a token id (token models) or an int8 feature vector.
        let mut rng = Lcg(7);
        let mut tokens = vec![vec![0i64; steps]; seqs];
        let mut feats = vec![vec![Vec::new(); steps]; seqs];
        for q in 0..seqs {
            for s in 0..steps {
                match p.input {
                    InputIr::Tokens { vocab_size } => {
                        tokens[q][s] = (rng.next() as usize % vocab_size) as i64
                    }
                    InputIr::Features { size, .. } => {
                        feats[q][s] = (0..size).map(|_| rng.next() as u8 as i8).collect()
                    }
                }
            }
        }
        // One step of the sequences `group` of `it` (one lane each).
        let step = |it: &mut Interpreter<'_>, group: std::ops::Range<usize>, s: usize| match p.input
        {
            InputIr::Tokens { .. } => {
                let t: Vec<i64> = group.map(|q| tokens[q][s]).collect();
                it.step_tokens(&t).expect("token in range").to_vec()
            }
            InputIr::Features { .. } => {
                let x: Vec<i8> = group.flat_map(|q| feats[q][s].iter().copied()).collect();
                it.step_features_lanes(&x).expect("feature width").to_vec()
            }
        };
        let want: Vec<Vec<i32>> = (0..seqs)
            .map(|q| {
                let mut it = Interpreter::new(p);
                (0..steps)
                    .flat_map(|s| step(&mut it, q..q + 1, s))
                    .collect()
            })
            .collect();
        for &kernel in &kernels {
            for lanes in [1, 2, 3, 5, 8] {
                for first in (0..seqs).step_by(lanes) {
                    let group = first..(first + lanes).min(seqs);
                    let mut it = Interpreter::with_lanes(p, kernel, group.len());
                    assert_eq!(it.lanes(), group.len());
                    for round in 0..2 {
                        it.reset();
                        let mut got = vec![Vec::new(); group.len()];
                        for s in 0..steps {
                            let y = step(&mut it, group.clone(), s);
                            assert_eq!(y.len(), group.len() * p.output.size);
                            for (g, y) in got.iter_mut().zip(y.chunks_exact(p.output.size)) {
                                g.extend_from_slice(y);
                            }
                        }
                        for (g, q) in got.iter().zip(group.clone()) {
                            assert!(
                                *g == want[q],
                                "{name}: kernel {:?}, {lanes} lanes, round {round}: \
                                 sequence {q} differs",
                                kernel.isa()
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A token out of range in any lane fails the step before any lane steps, naming that
/// token; the lanes then carry on as if that step had not been asked for.
#[test]
fn lock_step_bad_token_steps_no_lane() {
    let p = shipped("tests/models/tiny_tokens.irnn.json");
    let InputIr::Tokens { vocab_size } = p.input else {
        panic!("a token model")
    };
    let mut it = Interpreter::with_lanes(&p, irnn_runtime::simd::Kernel::detect(), 3);
    let mut clean = Interpreter::with_lanes(&p, irnn_runtime::simd::Kernel::detect(), 3);
    it.step_tokens(&[1, 2, 3]).unwrap();
    clean.step_tokens(&[1, 2, 3]).unwrap();
    let bad = vocab_size as i64;
    let e = it.step_tokens(&[0, bad, -1]).unwrap_err();
    assert!(e.to_string().contains(&format!("token id {bad} ")), "{e}");
    let last = bad - 1;
    let a = it.step_tokens(&[last, 0, last - 1]).unwrap().to_vec();
    let b = clean.step_tokens(&[last, 0, last - 1]).unwrap().to_vec();
    assert_eq!(a, b);
}
