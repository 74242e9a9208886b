//! Generated C for the SIMD targets (`Target::Avx2`, `Target::Avx512Vnni`,
//! `Target::Neon`, `Target::NeonDotprod`), end to end.
//!
//! - *builds*: the C compiles with gcc and clang under the strict warning set, both
//!   with the instruction-set flags (SIMD kernels) and without them (portable fallback
//!   on the same packed weights). Compiling needs no CPU support, so this always runs.
//! - *bit-exact*: a harness runs synthetic models (sizes chosen to hit every tail of
//!   the kernels: row blocks not a multiple of 4, odd numbers of 4-column groups,
//!   columns not a multiple of 4) and the shipped char LM on its test data for
//!   several hundred steps, and its int32 outputs must equal the interpreter's, with
//!   the SIMD kernels and with the fallback. Weights of −128 (which the AVX2 sign trick
//!   cannot take, so those matrices use the portable kernel) are tested too.
//!
//! Tests that *run* x86 SIMD code are skipped, with a message, when this CPU lacks the
//! instruction set (under CI, only where the CPU's flags agree: `support::skip`);
//! nothing else is skipped.
//!
//! The AArch64 targets are cross-compiled with `aarch64-linux-gnu-gcc -static` and run
//! under `qemu-aarch64 -cpu max` (which has the dot-product extension): the NEON
//! kernels, neon-dotprod's `sdot` kernel, neon-dotprod's `smull` kernel (built without
//! `+dotprod`) and the portable kernel (`+nosimd`), plus the fallback on x86. A missing
//! cross compiler or qemu FAILS these tests with what to install (.ci/run installs
//! them); outside CI, `IRNN_SKIP_CROSS=1` skips them explicitly.

mod support;

use irnn_cli::bench::{target_flags, AVX_VNNI_FLAG};
use irnn_codegen::back::{generate, Fusion, GenOptions, GeneratedFile, Lang, Target, Unroll};
use irnn_codegen::graph::Graph;
use irnn_codegen::ir::{InputIr, Program};
use irnn_codegen::lower::lower;
use irnn_codegen::npy::{read_data, SeqData};
use irnn_codegen::synth::Rng;
use std::sync::OnceLock;
use support::c_harness::{
    assert_same, cc, cross_enabled, expected, run_c_with, write_files, Seq, Toolchain, STRICT,
};
use support::{cpu_has_avx_vnni, cpu_runs, cpu_runs_or_skip, repo_root, skip, Synth, SIMD_SHAPES};

/// The x86 instruction-set flags of a target (`irnn bench`'s); none for the ARM
/// targets, which this x86 gcc cannot take (they are cross-compiled separately).
fn isa_flags(target: Target) -> &'static [&'static str] {
    if target.is_arm() {
        &[]
    } else {
        target_flags(target)
    }
}

/// `true` (with a `SKIPPED` line) when this CPU cannot run `target`'s SIMD code; the
/// policy is `support::skip`'s.
fn skip_unless(target: Target, test: &str) -> bool {
    !cpu_runs_or_skip(
        target,
        &format!("{test} (only the run is skipped; builds and the fallback are tested elsewhere)"),
    )
}

const TARGETS: [Target; 2] = [Target::Avx2, Target::Avx512Vnni];

/// The AArch64 targets.
const ARM_TARGETS: [Target; 2] = [Target::Neon, Target::NeonDotprod];

/// Baseline Armv8-A: neon-dotprod's file compiles its `smull` kernel.
const ARMV8: &[&str] = &["-march=armv8-a"];

/// No Advanced SIMD: the portable kernel on the packed layout.
const NOSIMD: &[&str] = &["-march=armv8-a+nosimd"];

// ---------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------

fn synth_models() -> &'static [Synth] {
    static MODELS: OnceLock<Vec<Synth>> = OnceLock::new();
    MODELS.get_or_init(|| {
        // The LSTM shapes first (tests pick some by index), then GRU and RNN models.
        let mut models = support::synth_models(&SIMD_SHAPES);
        models.extend(support::cell_models());
        models
    })
}

fn charlm() -> Program {
    let path = repo_root().join("examples/charlm/charlm.irnn.json");
    lower(&Graph::load(&path).expect("the shipped charlm graph loads")).expect("lowers")
}

fn gen(program: &Program, target: Target) -> Vec<GeneratedFile> {
    gen_fused(program, target, Fusion::Auto)
}

fn gen_fused(program: &Program, target: Target, fusion: Fusion) -> Vec<GeneratedFile> {
    generate(
        program,
        &GenOptions {
            lang: Lang::C,
            target,
            unroll: Unroll::None,
            precision: Default::default(),
            fusion,
        },
    )
    .unwrap_or_else(|e| panic!("generating C for {} failed: {e}", target.name()))
}

/// Random in-range sequences; features include whole steps and single values at
/// −128 and 127 (|−128| = 128 is the corner of the sign trick and of `x + 128`).
fn random_seqs(program: &Program, seed: u64, lengths: &[usize]) -> Vec<Seq> {
    let mut rng = Rng::new(seed);
    lengths
        .iter()
        .map(|&len| match program.input {
            InputIr::Tokens { vocab_size } => Seq::Tokens(
                (0..len)
                    .map(|_| rng.below(vocab_size as u64) as i32)
                    .collect(),
            ),
            InputIr::Features { size, .. } => Seq::Features(
                (0..len)
                    .map(|_| {
                        let mode = rng.below(10);
                        (0..size)
                            .map(|_| match (mode, rng.below(8)) {
                                (0, _) | (_, 0) => -128,
                                (1, _) | (_, 1) => 127,
                                _ => (rng.below(256) as i32 - 128) as i8,
                            })
                            .collect()
                    })
                    .collect(),
            ),
        })
        .collect()
}

const LENGTHS: &[usize] = &[160, 0, 140, 1];

/// `files` (the C of `program` for `target`) built with `tc` and `flags` and run on
/// `seqs` gives `want`, the interpreter's outputs; `what` labels a failure.
#[allow(clippy::too_many_arguments)]
fn assert_runs_as(
    program: &Program,
    files: &[GeneratedFile],
    target: Target,
    tc: &Toolchain,
    flags: &[&str],
    seqs: &[Seq],
    want: &[Vec<i32>],
    what: &str,
) {
    let got = run_c_with(program, files, tc, flags, seqs);
    assert_same(
        &got,
        want,
        seqs,
        &format!(
            "{} ({}, {what}{} {})",
            program.name,
            target.name(),
            tc.label(),
            flags.join(" ")
        ),
    );
}

/// Random sequences of `lengths` through the generated C of `program` for `target`
/// (built with `tc` and `flags`) equal the interpreter.
fn check_with(
    program: &Program,
    target: Target,
    tc: &Toolchain,
    flags: &[&str],
    seed: u64,
    lengths: &[usize],
    what: &str,
) {
    let seqs = random_seqs(program, seed, lengths);
    let want = expected(program, &seqs);
    let files = gen(program, target);
    assert_runs_as(program, &files, target, tc, flags, &seqs, &want, what);
}

fn check(program: &Program, target: Target, cc_name: &'static str, flags: &[&str], seed: u64) {
    let tc = Toolchain::native(cc_name);
    check_with(program, target, &tc, flags, seed, LENGTHS, "");
}

/// [`check`] under qemu: the C cross-compiled for AArch64.
fn check_arm(program: &Program, target: Target, flags: &[&str], seed: u64) {
    check_with(
        program,
        target,
        &Toolchain::AARCH64,
        flags,
        seed,
        LENGTHS,
        "",
    );
}

/// The assembly of a generated `.c` file from `cc_name` at `-O2` with `flags`.
fn asm_of(cc_name: &str, c: &std::path::Path, flags: &[&str], what: &str) -> String {
    let s = c.with_extension("s");
    let mut args: Vec<String> = STRICT.iter().map(|s| s.to_string()).collect();
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend([
        "-O2".into(),
        "-S".into(),
        c.display().to_string(),
        "-o".into(),
        s.display().to_string(),
    ]);
    cc(cc_name, &args, what);
    std::fs::read_to_string(&s).expect("read assembly")
}

/// Whether an instruction mnemonic occurs in AArch64 assembly.
fn has_insn(asm: &str, insn: &str) -> bool {
    asm.lines()
        .any(|l| l.split_whitespace().next() == Some(insn))
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn simd_c_builds_strict_with_and_without_isa_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    for target in TARGETS {
        for s in synth_models() {
            let files = gen(&s.model.program, target);
            let (_, c) = write_files(dir.path(), &files);
            let text = std::fs::read_to_string(&c).unwrap();
            assert!(text.contains("_q_mv_simd("), "{}: no SIMD kernel", s.label);
            let vnni: Vec<&str> = isa_flags(target)
                .iter()
                .copied()
                .chain([AVX_VNNI_FLAG])
                .collect();
            for cc_name in ["gcc", "clang"] {
                let mut builds = vec![&[][..], isa_flags(target)];
                if target == Target::Avx2 {
                    builds.push(&vnni);
                }
                for flags in builds {
                    let mut args: Vec<String> = STRICT.iter().map(|s| s.to_string()).collect();
                    args.extend(flags.iter().map(|s| s.to_string()));
                    args.extend([
                        "-O2".into(),
                        "-c".into(),
                        c.display().to_string(),
                        "-o".into(),
                        dir.path().join("m.o").display().to_string(),
                    ]);
                    cc(cc_name, &args, &format!("{} ({})", s.label, target.name()));
                }
            }
        }
    }
}

/// Rust takes the SIMD targets too (tests/gen_rust.rs runs them); unrolling is refused
/// for both languages (the SIMD targets have their own kernels).
#[test]
fn simd_targets_take_rust_and_refuse_unrolling() {
    let program = &synth_models()[2].model.program;
    for target in TARGETS.into_iter().chain(ARM_TARGETS) {
        let inner = generate(
            program,
            &GenOptions {
                lang: Lang::C,
                target,
                unroll: Unroll::Inner,
                precision: Default::default(),
                fusion: Default::default(),
            },
        );
        assert!(
            inner.is_err(),
            "inner unrolling for {} should be refused",
            target.name()
        );
    }
    for target in TARGETS {
        for lang in [Lang::Rust, Lang::C] {
            let ok = generate(
                program,
                &GenOptions {
                    lang,
                    target,
                    unroll: Unroll::None,
                    precision: Default::default(),
                    fusion: Default::default(),
                },
            );
            assert!(ok.is_ok(), "{lang:?} for {}: {:?}", target.name(), ok.err());
            let full = generate(
                program,
                &GenOptions {
                    lang,
                    target,
                    unroll: Unroll::Full,
                    precision: Default::default(),
                    fusion: Default::default(),
                },
            );
            assert!(
                full.is_err(),
                "full unrolling for {} should be refused",
                target.name()
            );
        }
    }
}

/// Every synthetic model with `target`'s SIMD kernels, alternating gcc and clang
/// (starting with `first_cc`), inputs seeded from `seed`.
fn synth_models_match(target: Target, test: &str, first_cc: usize, seed: u64) {
    if skip_unless(target, test) {
        return;
    }
    for (k, s) in synth_models().iter().enumerate() {
        let cc_name = ["gcc", "clang"][(k + first_cc) % 2];
        check(
            &s.model.program,
            target,
            cc_name,
            target_flags(target),
            seed + k as u64,
        );
    }
}

#[test]
fn avx2_c_matches_interpreter() {
    synth_models_match(Target::Avx2, "avx2_c_matches_interpreter", 0, 100);
}

/// The avx2 target's C compiled with `-mavxvnni`: every kernel (step and chunk) on
/// `vpdpbusd` ymm, x + 128 and the offset biases; the −128 model's matrix runs SIMD too.
#[test]
fn avx_vnni_c_matches_interpreter() {
    let flags: Vec<&str> = target_flags(Target::Avx2)
        .iter()
        .copied()
        .chain([AVX_VNNI_FLAG])
        .collect();
    // The AVX-VNNI kernels are what gets compiled (and only with the flag).
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, c) = write_files(
        dir.path(),
        &gen(&synth_models()[1].model.program, Target::Avx2),
    );
    for (with, extra) in [(true, &flags[..]), (false, target_flags(Target::Avx2))] {
        let text = asm_of("gcc", &c, extra, "avx2 C to assembly");
        assert_eq!(text.contains("vpdpbusd"), with, "vpdpbusd with {extra:?}");
        assert_eq!(
            !text.contains("vpmaddubsw"),
            with,
            "sign trick with {extra:?}"
        );
    }
    if !skip::needs_isa(
        "avx_vnni_c_matches_interpreter's runs",
        "avx-vnni",
        irnn_cli::bench::host_has_avx_vnni(),
    ) {
        return;
    }
    for (k, s) in synth_models().iter().enumerate() {
        let cc_name = ["gcc", "clang"][k % 2];
        check(
            &s.model.program,
            Target::Avx2,
            cc_name,
            &flags,
            250 + k as u64,
        );
    }
    check(
        &with_minus_128_weights(),
        Target::Avx2,
        "clang",
        &flags,
        450,
    );
    let program = charlm();
    let seqs = charlm_seqs();
    let want = expected(&program, &seqs);
    let files = gen(&program, Target::Avx2);
    assert_runs_as(
        &program,
        &files,
        Target::Avx2,
        &Toolchain::native("gcc"),
        &flags,
        &seqs,
        &want,
        "",
    );
}

#[test]
fn avx512vnni_c_matches_interpreter() {
    synth_models_match(
        Target::Avx512Vnni,
        "avx512vnni_c_matches_interpreter",
        1,
        200,
    );
}

/// Compiled without the instruction-set flags, the portable kernel on the packed
/// layout (and, for VNNI, the unfolded bias) must give the same outputs.
#[test]
fn simd_c_fallback_matches_interpreter() {
    for target in TARGETS {
        for (k, s) in synth_models().iter().enumerate().take(2) {
            check(
                &s.model.program,
                target,
                "gcc",
                &["-mno-avx2"],
                300 + k as u64,
            );
        }
    }
}

/// The shipped char LM's test data: 4 sequences of 64 token ids.
fn charlm_seqs() -> Vec<Seq> {
    let data =
        read_data(&repo_root().join("examples/charlm/data/test_small.npy")).expect("test data");
    let SeqData::Tokens { n, t, data } = data.data else {
        panic!("charlm test data are not token ids")
    };
    let seqs: Vec<Seq> = (0..n)
        .map(|s| Seq::Tokens(data[s * t..(s + 1) * t].iter().map(|&v| v as i32).collect()))
        .collect();
    assert!(seqs.iter().map(Seq::len).sum::<usize>() >= 200);
    seqs
}

/// The shipped char LM (72 tokens, 2 LSTM layers) on its real test data, every
/// target, with the SIMD kernels (when the CPU has them) and the fallback.
#[test]
fn simd_c_matches_interpreter_on_charlm() {
    let program = charlm();
    let seqs = charlm_seqs();
    let want = expected(&program, &seqs);
    for target in TARGETS {
        let files = gen(&program, target);
        let mut runs: Vec<(&str, &[&str])> = vec![("clang", &[])];
        if !skip_unless(target, &format!("charlm with {}", target.name())) {
            runs.push(("gcc", isa_flags(target)));
        }
        for (cc_name, flags) in runs {
            let tc = Toolchain::native(cc_name);
            assert_runs_as(&program, &files, target, &tc, flags, &seqs, &want, "");
        }
    }
}

/// A synthetic model with weights of −128 (not produced by irnn's quantizer, but
/// valid in a graph) in W_hh of its first LSTM layer.
fn with_minus_128_weights() -> Program {
    let mut program = synth_models()[1].model.program.clone();
    // Only in W_hh of the first LSTM layer: the other matrices keep SIMD.
    let first = support::lstm_layers(&program)[0];
    support::edit_lstm(&mut program, first, |l| {
        for (k, w) in l.w_hh.iter_mut().enumerate() {
            if k % 5 == 0 {
                *w = -128;
            }
        }
    });
    program
}

/// AVX2 cannot use the sign trick on a matrix with −128 weights, so that matrix runs
/// the portable kernel; VNNI is exact for them. Both must match the interpreter.
#[test]
fn simd_c_handles_minus_128_weights() {
    let program = with_minus_128_weights();
    let c = &gen(&program, Target::Avx2)
        .into_iter()
        .find(|f| f.name.ends_with(".c"))
        .unwrap()
        .contents;
    // The portable kernel is compiled unconditionally (not only as the fallback); its
    // chunk version (W_ih has no −128) only as the fallback.
    assert!(
        c.contains("_q_mv_simd(")
            && !c.contains("_USE_SIMD\n/* Portable kernel on the packed layout")
            && c.contains(
                "_USE_SIMD\n#ifndef FEAT_MID_RUN_STEPWISE\n/* Portable kernel for n steps"
            ),
        "AVX2 C with a -128 weight"
    );
    for target in TARGETS {
        let flags = if cpu_runs(target) {
            isa_flags(target)
        } else {
            &[][..]
        };
        check(&program, target, "gcc", flags, 400);
    }
}

/// `irnn bench`'s library side: every target compiles, runs and reports a positive
/// time; the packed weights are at least the model's weights.
/// `irnn bench --lang rust`: the generated Rust of every target this CPU runs, int8 and
/// f32, built as a scratch crate against irnn-runtime and timed.
#[test]
fn bench_times_the_generated_rust() {
    use irnn_cli::bench::{bench, table, BenchOptions};
    use irnn_codegen::back::Precision;
    let model = &synth_models()[2].model;
    let f32_program =
        irnn_codegen::back::float::F32Program::from_graph(&Graph::load(&model.graph).unwrap())
            .unwrap();
    let targets: Vec<Target> = std::iter::once(Target::Scalar)
        .chain(TARGETS.into_iter().filter(|&t| cpu_runs(t)))
        .collect();
    let rows = bench(
        &model.program,
        Some(&f32_program),
        &BenchOptions {
            targets: targets.clone(),
            precisions: vec![Precision::Int8, Precision::F32],
            steps: 20,
            runs: 3,
            cc: "gcc".into(),
            lang: Lang::Rust,
            fusion: Default::default(),
        },
    )
    .expect("the Rust benchmark builds and runs");
    assert_eq!(rows.len(), 2 * targets.len());
    for r in &rows {
        assert!(r.us_per_step > 0.0 && r.best_us_per_step > 0.0, "{r:?}");
        // Sequence mode is timed for int8 only.
        assert_eq!(
            r.run_us_per_step.is_some(),
            r.precision == Precision::Int8,
            "{r:?}"
        );
        assert!(r.run_us_per_step.is_none_or(|v| v > 0.0), "{r:?}");
        check_clock(r);
        // The label names the kernel the model picked where it is not the target's own:
        // AVX-VNNI for avx2's int8 code on a CPU that has it.
        let picked_vnni =
            r.target == Target::Avx2 && r.precision == Precision::Int8 && cpu_has_avx_vnni();
        let want = if picked_vnni {
            "avx2 (avx-vnni kernel)".to_string()
        } else {
            r.target.name().to_string()
        };
        assert_eq!(r.label, want, "{r:?}");
    }
    let t = table(&model.program, &rows);
    assert!(
        t.contains("| scalar | f32 |") && t.contains("| - | - |"),
        "{t}"
    );
    // A target this CPU cannot run is refused with a clear error, not emulated.
    let arm = bench(
        &model.program,
        None,
        &BenchOptions {
            targets: vec![Target::Neon],
            precisions: vec![Precision::Int8],
            steps: 20,
            runs: 3,
            cc: "gcc".into(),
            lang: Lang::Rust,
            fusion: Default::default(),
        },
    );
    if !cpu_runs(Target::Neon) {
        let e = format!("{:#}", arm.expect_err("neon is not run on x86"));
        assert!(e.contains("neon does not run here"), "{e}");
    }
}

/// A bench row's clock and cycles: measured on x86-64 (a plausible core clock, and
/// cycles per step that are the time at that clock, within the spread of the runs),
/// absent elsewhere.
fn check_clock(r: &irnn_cli::bench::BenchRow) {
    if cfg!(target_arch = "x86_64") {
        let ghz = r.ghz.expect("the clock is measured on x86-64");
        assert!((0.4..8.0).contains(&ghz), "{r:?}");
        let cycles = r.cycles_per_step.expect("cycles per step on x86-64");
        let at_clock = r.us_per_step * ghz * 1e3;
        assert!(
            cycles > 0.0 && (0.25 * at_clock..4.0 * at_clock).contains(&cycles),
            "{r:?}"
        );
    } else {
        assert!(r.ghz.is_none() && r.cycles_per_step.is_none(), "{r:?}");
    }
}

#[test]
fn bench_times_every_target() {
    use irnn_cli::bench::{bench, table, weight_bytes, BenchOptions};
    let program = &synth_models()[2].model.program;
    let targets: Vec<Target> = std::iter::once(Target::Scalar)
        .chain(TARGETS.into_iter().filter(|&t| cpu_runs(t)))
        .collect();
    let rows = bench(
        program,
        None,
        &BenchOptions {
            targets: targets.clone(),
            precisions: vec![irnn_codegen::back::Precision::Int8],
            steps: 20,
            runs: 3,
            cc: "gcc".into(),
            lang: Lang::C,
            fusion: Default::default(),
        },
    )
    .expect("bench runs");
    // One row per target, and the avx2 C once more with AVX-VNNI where the CPU has it.
    let vnni_row = cpu_runs(Target::Avx2) && cpu_has_avx_vnni();
    assert_eq!(rows.len(), targets.len() + vnni_row as usize);
    assert_eq!(
        rows.iter()
            .any(|r| r.label == format!("avx2 {AVX_VNNI_FLAG}")),
        vnni_row
    );
    for r in &rows {
        assert!(
            r.us_per_step > 0.0 && r.text_bytes > 0 && r.rodata_bytes > 0,
            "{r:?}"
        );
        assert!(r.run_us_per_step.is_some_and(|v| v > 0.0), "{r:?}");
        check_clock(r);
        assert!(r.best_us_per_step > 0.0, "{r:?}");
        assert!(
            r.weight_bytes >= weight_bytes(program, Target::Scalar),
            "{r:?}"
        );
    }
    let t = table(program, &rows);
    assert!(
        t.contains("| scalar | int8 |") && t.contains("run µs/step") && t.contains("MAC/cycle"),
        "{t}"
    );
}

// ---------------------------------------------------------------------------------
// AArch64: neon and neon-dotprod
// ---------------------------------------------------------------------------------

/// The NEON C compiles on x86 (gcc and clang, strict warnings) to the portable kernel,
/// which matches the interpreter.
#[test]
fn neon_c_fallback_builds_and_matches_on_x86() {
    let dir = tempfile::tempdir().expect("tempdir");
    for target in ARM_TARGETS {
        for s in synth_models() {
            let files = gen(&s.model.program, target);
            let (_, c) = write_files(dir.path(), &files);
            let text = std::fs::read_to_string(&c).unwrap();
            assert!(
                text.contains("#include <arm_neon.h>") && text.contains("vmull_high_s8("),
                "{}: no NEON kernel",
                s.label
            );
            assert_eq!(
                text.contains("vdotq_laneq_s32("),
                target == Target::NeonDotprod,
                "{}: sdot kernel only for neon-dotprod",
                s.label
            );
            for cc_name in ["gcc", "clang"] {
                let mut args: Vec<String> = STRICT.iter().map(|s| s.to_string()).collect();
                args.extend([
                    "-O2".into(),
                    "-c".into(),
                    c.display().to_string(),
                    "-o".into(),
                    dir.path().join("m.o").display().to_string(),
                ]);
                cc(cc_name, &args, &format!("{} ({})", s.label, target.name()));
            }
        }
        for (k, s) in synth_models().iter().enumerate().take(2) {
            check(&s.model.program, target, "gcc", &[], 500 + k as u64);
        }
    }
}

/// Cross-compiled under the strict warning set; the assembly shows that each build
/// compiled the intended kernel (sdot, smull/sadalp, or none).
#[test]
fn neon_c_builds_strict_for_aarch64() {
    if !cross_enabled("neon_c_builds_strict_for_aarch64") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for s in synth_models() {
        for target in ARM_TARGETS {
            let files = gen(&s.model.program, target);
            let (_, c) = write_files(dir.path(), &files);
            let mut builds: Vec<(&[&str], bool, bool)> = vec![(ARMV8, true, false)];
            if target == Target::NeonDotprod {
                builds.push((target_flags(target), false, true));
            }
            builds.push((NOSIMD, false, false));
            for (flags, smull, sdot) in builds {
                let what = format!("{} ({}, {})", s.label, target.name(), flags.join(" "));
                let asm = asm_of(Toolchain::AARCH64.cc, &c, flags, &what);
                assert_eq!(
                    has_insn(&asm, "sadalp") && has_insn(&asm, "smull2"),
                    smull,
                    "{what}: smull/sadalp kernel expected: {smull}"
                );
                assert_eq!(
                    has_insn(&asm, "sdot"),
                    sdot,
                    "{what}: sdot kernel expected: {sdot}"
                );
            }
        }
    }
}

/// Bit-exact under qemu: the NEON kernel, neon-dotprod's sdot kernel on every
/// synthetic model; neon-dotprod's smull kernel and the portable kernel on AArch64 on
/// two of them.
#[test]
fn neon_c_matches_interpreter_under_qemu() {
    if !cross_enabled("neon_c_matches_interpreter_under_qemu") {
        return;
    }
    for (k, s) in synth_models().iter().enumerate() {
        let p = &s.model.program;
        check_arm(p, Target::Neon, target_flags(Target::Neon), 600 + k as u64);
        let dotprod = target_flags(Target::NeonDotprod);
        check_arm(p, Target::NeonDotprod, dotprod, 610 + k as u64);
        if k < 2 {
            check_arm(p, Target::NeonDotprod, ARMV8, 620 + k as u64);
            check_arm(p, Target::Neon, NOSIMD, 630 + k as u64);
        }
    }
}

/// The LSTM written op by op (`--fusion none`) on the packed kernels of every SIMD
/// target: the two-layer synthetic LSTM natively on x86 (and with the fallback
/// kernels), and under qemu on AArch64.
#[test]
fn lstm_op_by_op_c_matches_interpreter_on_simd_targets() {
    let test = "lstm_op_by_op_c_matches_interpreter_on_simd_targets";
    let program = &synth_models()[1].model.program;
    let seqs = random_seqs(program, 40, LENGTHS);
    let want = expected(program, &seqs);
    let cross = cross_enabled(&format!("{test} (qemu part)"));
    for target in TARGETS.into_iter().chain(ARM_TARGETS) {
        let files = gen_fused(program, target, Fusion::None);
        let c: String = files.iter().map(|f| f.contents.as_str()).collect();
        assert!(
            c.contains("One step, op by op") && !c.contains("_w_ih") && c.contains("_q_mv_simd("),
            "{}: not op by op on the packed kernels",
            target.name()
        );
        // (toolchain, flags, what) of each build that runs here.
        let runs: Vec<(Toolchain, &[&str], &str)> = if target.is_arm() {
            let qemu = (Toolchain::AARCH64, target_flags(target), "op by op ");
            cross.then_some(qemu).into_iter().collect()
        } else {
            let mut runs = vec![(Toolchain::native("gcc"), &[][..], "op by op, fallback ")];
            if !skip_unless(target, test) {
                runs.push((Toolchain::native("gcc"), target_flags(target), "op by op "));
            }
            runs
        };
        for (tc, flags, what) in runs {
            assert_runs_as(program, &files, target, &tc, flags, &seqs, &want, what);
        }
    }
}

/// The shipped char LM under qemu (its test data plus two random sequences, 506 steps),
/// every AArch64 kernel, and the x86 fallback.
#[test]
fn neon_c_matches_interpreter_on_charlm() {
    let program = charlm();
    let mut seqs = charlm_seqs();
    seqs.extend(random_seqs(&program, 700, &[200, 50]));
    let want = expected(&program, &seqs);
    let cross = cross_enabled("neon_c_matches_interpreter_on_charlm (qemu part)");
    for target in ARM_TARGETS {
        let files = gen(&program, target);
        let gcc = Toolchain::native("gcc");
        assert_runs_as(
            &program,
            &files,
            target,
            &gcc,
            &[],
            &seqs,
            &want,
            "x86 fallback, ",
        );
        if !cross {
            continue;
        }
        let mut builds = vec![target_flags(target)];
        if target == Target::NeonDotprod {
            builds.push(ARMV8);
        }
        for flags in builds {
            let tc = Toolchain::AARCH64;
            assert_runs_as(&program, &files, target, &tc, flags, &seqs, &want, "");
        }
    }
}

/// −128 weights (smull is exact for every int8 pair; so is sdot) under qemu.
#[test]
fn neon_c_handles_minus_128_weights() {
    if !cross_enabled("neon_c_handles_minus_128_weights") {
        return;
    }
    let program = with_minus_128_weights();
    for target in ARM_TARGETS {
        check_arm(&program, target, target_flags(target), 800);
    }
    check_arm(&program, Target::NeonDotprod, ARMV8, 801);
}

/// `irnn bench` on the AArch64 targets from this (x86) host: cross-compiled, run under
/// qemu, flagged as emulated in the table.
#[test]
fn bench_runs_arm_targets_under_qemu() {
    use irnn_cli::bench::{bench, emulated, table, BenchOptions};
    if !cross_enabled("bench_runs_arm_targets_under_qemu") {
        return;
    }
    let program = &synth_models()[2].model.program;
    let rows = bench(
        program,
        None,
        &BenchOptions {
            targets: ARM_TARGETS.to_vec(),
            precisions: vec![irnn_codegen::back::Precision::Int8],
            steps: 20,
            runs: 3,
            cc: "gcc".into(),
            lang: Lang::C,
            fusion: Default::default(),
        },
    )
    .expect("bench runs the ARM targets");
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(
            r.us_per_step > 0.0 && r.text_bytes > 0 && r.rodata_bytes > 0,
            "{r:?}"
        );
    }
    let t = table(program, &rows);
    assert!(t.contains("| neon-dotprod | int8 |"), "{t}");
    if emulated(Target::Neon) {
        assert!(t.contains("meaningless"), "{t}");
    }
}

// ---------------------------------------------------------------------------------
// NAME_run in chunks (sequence mode)
// ---------------------------------------------------------------------------------

/// Lengths that hit every chunk tail of `NAME_run` (1, T − 1, T + 1, 3T + 5, 2T, and
/// a long one), each three times: the harness sends sequence `s` through `step`
/// (s % 3 == 0), one `run` (1), or `run` + 3 × `step` + `run` (2), so every length
/// goes through each mode.
fn chunk_lengths() -> Vec<usize> {
    let t = irnn_codegen::back::c::RUN_CHUNK;
    assert!(t >= 2);
    [1, t - 1, t + 1, 3 * t + 5, 2 * t, 200]
        .iter()
        .flat_map(|&l| [l, l, l])
        .collect()
}

/// `check` with the chunk lengths, natively or under qemu.
fn check_chunks(program: &Program, target: Target, tc: &Toolchain, flags: &[&str], seed: u64) {
    let lengths = chunk_lengths();
    assert!(lengths.iter().sum::<usize>() >= 600);
    check_with(
        program,
        target,
        tc,
        flags,
        seed,
        &lengths,
        "run in chunks, ",
    );
}

/// The batched `NAME_run` (and `step` after `run`, `run` after `step`) equals the
/// interpreter on every synthetic shape, with the x86 SIMD kernels (gcc and clang) and
/// the portable fallback; and the header states the chunk and its stack.
#[test]
fn run_in_chunks_matches_interpreter_x86() {
    let gcc = Toolchain::native("gcc");
    let clang = Toolchain::native("clang");
    for (k, s) in synth_models().iter().enumerate() {
        let p = &s.model.program;
        for target in TARGETS {
            let h = &gen(p, target)
                .into_iter()
                .find(|f| f.name.ends_with(".h"))
                .unwrap()
                .contents;
            assert!(
                h.contains(&format!(
                    "_RUN_CHUNK {}\n",
                    irnn_codegen::back::c::RUN_CHUNK
                )) && h.contains("_RUN_STACK_BYTES "),
                "{}: header without the chunk macros",
                s.label
            );
            let seed = 900 + 10 * k as u64;
            if cpu_runs(target) {
                let tc = if k % 2 == 0 { &gcc } else { &clang };
                check_chunks(p, target, tc, target_flags(target), seed);
            } else {
                skip_unless(target, "run_in_chunks_matches_interpreter_x86 (SIMD run)");
            }
            check_chunks(p, target, &gcc, &["-mno-avx2"], seed + 1);
        }
    }
    // −128 weights: AVX2 runs that matrix with the portable chunk kernel.
    let p = with_minus_128_weights();
    for target in TARGETS {
        let flags = if cpu_runs(target) {
            target_flags(target)
        } else {
            &[][..]
        };
        check_chunks(&p, target, &clang, flags, 950);
    }
}

/// Compiled with `-DNAME_RUN_STEPWISE`, `NAME_run` is a loop of `NAME_step` (same
/// results, no chunk buffers): the preprocessed file has no chunk functions with the
/// define and has them without it, and the outputs equal the interpreter's.
#[test]
fn run_stepwise_option_matches_interpreter() {
    let s = &synth_models()[1];
    let p = &s.model.program;
    let define = format!(
        "-D{}_RUN_STEPWISE",
        irnn_codegen::back::names::upper(&support::c_harness::prefix(p))
    );
    let files = gen(p, Target::Avx2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, c) = write_files(dir.path(), &files);
    let preprocessed = |extra: &[&str]| -> String {
        let out = std::process::Command::new(support::c_harness::compiler("gcc"))
            .args(["-E", "-P", "-I"])
            .arg(dir.path())
            .args(extra)
            .arg(&c)
            .output()
            .expect("gcc -E runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert!(
        preprocessed(&[]).contains("_chunk("),
        "{}: no chunk functions",
        s.label
    );
    assert!(
        !preprocessed(&[&define]).contains("_chunk("),
        "{}: chunk functions despite {define}",
        s.label
    );
    check_chunks(p, Target::Avx2, &Toolchain::native("gcc"), &[&define], 960);
}

/// The char LM (embedding first) on its test data and random sequences hitting every
/// chunk tail: x86 SIMD and fallback, and every AArch64 kernel under qemu.
#[test]
fn run_in_chunks_matches_interpreter_on_charlm() {
    let program = charlm();
    let mut seqs = charlm_seqs();
    seqs.extend(random_seqs(&program, 970, &chunk_lengths()));
    let want = expected(&program, &seqs);
    let mut builds: Vec<(Target, Toolchain, &[&str])> = Vec::new();
    for target in TARGETS {
        if cpu_runs(target) {
            builds.push((target, Toolchain::native("clang"), target_flags(target)));
        }
    }
    builds.push((Target::Avx512Vnni, Toolchain::native("gcc"), &[]));
    if cross_enabled("run_in_chunks_matches_interpreter_on_charlm (qemu part)") {
        builds.push((Target::Neon, Toolchain::AARCH64, target_flags(Target::Neon)));
        builds.push((
            Target::NeonDotprod,
            Toolchain::AARCH64,
            target_flags(Target::NeonDotprod),
        ));
        builds.push((Target::NeonDotprod, Toolchain::AARCH64, ARMV8));
        builds.push((Target::Neon, Toolchain::AARCH64, NOSIMD));
    }
    for (target, tc, flags) in builds {
        let files = gen(&program, target);
        assert_runs_as(
            &program,
            &files,
            target,
            &tc,
            flags,
            &seqs,
            &want,
            "run in chunks, ",
        );
    }
}

/// Every AArch64 kernel's chunk version under qemu on every synthetic shape.
#[test]
fn run_in_chunks_matches_interpreter_under_qemu() {
    if !cross_enabled("run_in_chunks_matches_interpreter_under_qemu") {
        return;
    }
    let tc = Toolchain::AARCH64;
    for (k, s) in synth_models().iter().enumerate() {
        let p = &s.model.program;
        let seed = 980 + 10 * k as u64;
        check_chunks(p, Target::Neon, &tc, target_flags(Target::Neon), seed);
        let dotprod = target_flags(Target::NeonDotprod);
        check_chunks(p, Target::NeonDotprod, &tc, dotprod, seed + 1);
        check_chunks(p, Target::NeonDotprod, &tc, ARMV8, seed + 2);
        check_chunks(p, Target::Neon, &tc, NOSIMD, seed + 3);
    }
    check_chunks(
        &with_minus_128_weights(),
        Target::NeonDotprod,
        &tc,
        target_flags(Target::NeonDotprod),
        999,
    );
}

// ---------------------------------------------------------------------------------
// PWL activations on whole arrays (`{p}_pwl{k}_n`), exhaustively
// ---------------------------------------------------------------------------------

/// Calls every table's array evaluator on all 65 536 int16 inputs (aligned, and once
/// more from the second element so that the 16-lane loop starts misaligned and ends in
/// the scalar tail) and writes the int16 results to stdout.
/// Builds the C program `main` (which includes a generated `.c` from its directory) at
/// `-O2` with `flags`, runs it and returns its standard output.
fn run_c_main(main: &std::path::Path, cc_name: &str, flags: &[&str], what: &str) -> Vec<u8> {
    let dir = main.parent().expect("the harness's directory");
    let exe = main.with_extension("bin");
    let mut args: Vec<String> = vec!["-O2".into(), "-I".into(), dir.display().to_string()];
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend([
        main.display().to_string(),
        "-o".into(),
        exe.display().to_string(),
    ]);
    cc(cc_name, &args, what);
    let out = std::process::Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const TABLE_HARNESS: &str = r#"
#include <stdio.h>
#include "@F@.c"

static int16_t x[65536], y[65536];

int main(void)
{
    int32_t i;
    for (i = 0; i < 65536; ++i) {
        x[i] = (int16_t)(i - 32768);
    }
@CALLS@    return 0;
}
"#;

/// How many tables' 32-input AVX-512 loops (symmetric tables) take each form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Forms16 {
    /// The piece arithmetic in 16-bit lanes.
    arith16: usize,
    /// The bucket search (`first16`, `next16`).
    bucket: usize,
    /// Of those, with 32 buckets (`first16` in one register).
    bucket32: usize,
    /// The binary search on 16-bit lanes.
    binary: usize,
}

/// `{p}_pwl{k}_n` of every used table equals `sat16(Pwl::eval)` on every int16 input,
/// compiled with `cc_name` and `flags`. Returns the forms of the tables' 32-input loops
/// (AVX-512).
fn check_tables_exhaustively(
    p: &Program,
    target: Target,
    cc_name: &str,
    flags: &[&str],
) -> Forms16 {
    let mut forms = Forms16::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, c) = write_files(dir.path(), &gen(p, target));
    let stem = c.file_stem().unwrap().to_str().unwrap().to_string();
    let prefix = support::c_harness::prefix(p);
    let tables: Vec<usize> = p.used_tables().into_iter().collect();
    // Every table here has at most 64 pieces, int32 piece arithmetic and at most one
    // start per bucket: each must take the AVX-512 register form, or the AVX2 gathers.
    let form = match target {
        Target::Avx512Vnni => Some(("_mm512_permutex2var_epi32", "AVX-512 register form")),
        Target::Avx2 => Some(("_mm256_i32gather_epi32", "AVX2 gather form")),
        _ => None,
    };
    if let Some((marker, what)) = form {
        let src = std::fs::read_to_string(&c).unwrap();
        for k in &tables {
            let body = src
                .split(&format!("{prefix}_pwl{k}_n("))
                .nth(1)
                .and_then(|rest| rest.split("\n}\n").next())
                .unwrap_or_else(|| panic!("no {prefix}_pwl{k}_n in the generated C"));
            assert!(body.contains(marker), "table {k} is not in the {what}");
            // Symmetric tables also get the 32-input loop with the search on 16-bit lanes.
            let symmetric = p.tables[*k].symmetry != irnn_codegen::ir::TableSymmetry::None;
            if target == Target::Avx512Vnni && symmetric {
                assert!(
                    body.contains("_mm512_abs_epi16"),
                    "table {k} has no 32-input loop"
                );
                forms.arith16 += body.contains("_mm512_mulhi_epu16") as usize;
                let bucket = body.contains("first16[");
                let binary = body.contains("_mm512_srli_epi16(iw, ");
                assert!(
                    bucket != binary,
                    "table {k}: one search, not {bucket} {binary}"
                );
                forms.bucket += bucket as usize;
                forms.bucket32 += body.contains("first16[32]") as usize;
                forms.binary += binary as usize;
            }
        }
    }
    let calls: String = tables
        .iter()
        .map(|k| {
            format!(
                "    {prefix}_pwl{k}_n(x, y, 65536);\n    fwrite(y, 2, 65536, stdout);\n    \
                 {prefix}_pwl{k}_n(x + 1, y, 65535);\n    fwrite(y, 2, 65535, stdout);\n"
            )
        })
        .collect();
    let main = dir.path().join("tables.c");
    std::fs::write(
        &main,
        TABLE_HARNESS
            .replace("@F@", &stem)
            .replace("@CALLS@", &calls),
    )
    .unwrap();
    let got: Vec<i16> = run_c_main(&main, cc_name, flags, "table harness")
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut want = Vec::new();
    for &k in &tables {
        let pwl = p.tables[k].as_pwl();
        let sat = |x: i32| pwl.eval(x).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        want.extend((-32768..=32767).map(sat));
        want.extend((-32767..=32767).map(sat));
    }
    assert_eq!(got.len(), want.len(), "{}: output length", target.name());
    if let Some(i) = got.iter().zip(&want).position(|(g, w)| g != w) {
        let per = 65536 + 65535;
        let (t, j) = (tables[i / per], i % per);
        let x = if j < 65536 {
            j as i32 - 32768
        } else {
            j as i32 - 65536 - 32767
        };
        panic!(
            "{} ({cc_name} {flags:?}): table {t} ({}) at x = {x}: C gives {}, Pwl::eval {}",
            target.name(),
            p.tables[t].short_name(),
            got[i],
            want[i]
        );
    }
    forms
}

/// Tables in every form the vector evaluator handles: the char LM's and the synthetic
/// models' (complement and odd symmetry, 46–64 pieces), the same with no symmetry (u
/// may be negative), only their last 22 pieces (the 32-entry register form; piece 0 then extends
/// down to 0), and output ranges that need the clamp.
fn table_programs() -> Vec<(String, Program)> {
    let mut out = vec![("charlm".to_string(), charlm())];
    out.push(("synth".into(), synth_models()[0].model.program.clone()));
    // No symmetry: the inputs cover the whole int16 range; starts spread over it
    // (first start -32768), slopes halved so that the int32 arithmetic still holds.
    let mut none = charlm();
    for t in &mut none.tables {
        t.symmetry = irnn_codegen::ir::TableSymmetry::None;
        for s in &mut t.starts {
            *s = 2 * *s - 32768;
        }
        for s in &mut t.slopes {
            *s /= 2;
        }
    }
    out.push(("charlm, no symmetry".into(), none));
    let mut short = charlm();
    for t in &mut short.tables {
        let skip = t.starts.len() - 22;
        t.starts.drain(..skip);
        t.slopes.drain(..skip);
        t.offsets.drain(..skip);
    }
    out.push(("charlm, last 22 pieces".into(), short));
    // Output ranges narrower than the pieces reach: the clamp must stay.
    let mut clamped = charlm();
    for t in &mut clamped.tables {
        t.out_min = t.out_min.max(-20000);
        t.out_max = t.out_max.min(20000);
    }
    out.push(("charlm, clamped to [-20000, 20000]".into(), clamped));
    // 40 starts crowded into 0..40 and the rest spread over 100..1000: no width of 64
    // buckets keeps both apart, so the 16-bit loop keeps the binary search (the AVX2
    // gathers still take buckets of one input).
    let mut crowded = charlm();
    for t in &mut crowded.tables {
        for (k, s) in t.starts.iter_mut().enumerate() {
            *s = if k < 40 {
                k as i32
            } else {
                100 + 39 * (k as i32 - 40)
            };
        }
    }
    out.push(("charlm, starts crowded".into(), crowded));
    // 32 constant pieces (distinct offsets, slope 0) starting every 1 024 inputs: 32
    // buckets of 1 024 with no step (the one-register `first` and `next` lookups).
    let mut even = charlm();
    for t in &mut even.tables {
        let skip = t.starts.len() - 32;
        t.offsets.drain(..skip);
        t.slopes = vec![0; 32];
        t.starts = (0..32).map(|k| k * 1024).collect();
    }
    out.push(("charlm, 32 evenly spaced starts".into(), even));
    out
}

#[test]
fn pwl_array_evaluators_match_the_runtime_on_every_int16() {
    let mut forms = Vec::new();
    for (label, p) in table_programs() {
        eprintln!("tables of {label}");
        for target in [Target::Scalar, Target::Avx2, Target::Avx512Vnni] {
            // Without instruction-set flags: the scalar loop of every target.
            check_tables_exhaustively(&p, target, "gcc", &[]);
        }
        if cpu_runs_or_skip(Target::Avx512Vnni, "the AVX-512 table evaluators") {
            for cc_name in ["gcc", "clang"] {
                let n = check_tables_exhaustively(
                    &p,
                    Target::Avx512Vnni,
                    cc_name,
                    isa_flags(Target::Avx512Vnni),
                );
                forms.push((label.clone(), n));
            }
        }
        if cpu_runs_or_skip(Target::Avx2, "the AVX2 table evaluators") {
            for cc_name in ["gcc", "clang"] {
                check_tables_exhaustively(&p, Target::Avx2, cc_name, isa_flags(Target::Avx2));
            }
        }
    }
    // The fitted symmetric tables (no clamp, shift 16) take the 16-bit piece arithmetic
    // and the bucket search; the clamped and the unsymmetric ones not the arithmetic,
    // crowded starts not the bucket search.
    if cpu_runs(Target::Avx512Vnni) {
        let f = |l: &str| forms.iter().find(|(k, _)| k == l).map(|&(_, f)| f).unwrap();
        for l in ["charlm", "synth"] {
            let f = f(l);
            assert!(
                f.arith16 > 0 && f.arith16 == f.bucket && f.binary == 0,
                "{l}: {f:?}"
            );
        }
        assert_eq!(f("charlm, no symmetry").arith16, 0);
        assert_eq!(f("charlm, clamped to [-20000, 20000]").arith16, 0);
        let c = f("charlm, starts crowded");
        assert!(c.binary > 0 && c.bucket == 0, "crowded: {c:?}");
        let e = f("charlm, 32 evenly spaced starts");
        assert!(e.bucket32 > 0 && e.binary == 0, "evenly spaced: {e:?}");
    }
}

// ---------------------------------------------------------------------------------
// AVX2: requantization in int32 lanes (`_q_req32`, `_q_gate_pre32`)
// ---------------------------------------------------------------------------------

const REQ32_HARNESS: &str = r#"
#include <stdio.h>
#include "@F@.c"

static const int32_t xs[] = { @XS@ };
static const int32_t ms[] = { @MS@ };

int main(void)
{
    size_t i, j;
    int32_t e;
    for (i = 0; i < sizeof xs / sizeof xs[0]; ++i) {
        for (j = 0; j < sizeof ms / sizeof ms[0]; ++j) {
            for (e = 0; e < 32; ++e) {
                int32_t v[2], X[16], M[16], E[16], H[16], k;
                for (k = 0; k < 16; k += 2) {
                    X[k] = xs[i];
                    M[k] = ms[j];
                    E[k] = e;
                    H[k] = (int32_t)((UINT32_C(1) << e) >> 1);
                    X[k + 1] = xs[(i + 1) % (sizeof xs / sizeof xs[0])];
                    M[k + 1] = ms[(j + 1) % (sizeof ms / sizeof ms[0])];
                    E[k + 1] = 31 - e;
                    H[k + 1] = (int32_t)((UINT32_C(1) << (31 - e)) >> 1);
                }
                (void)X;
                (void)M;
                (void)E;
                (void)H;
                @REQ@
                fwrite(v, 4, 2, stdout);
            }
        }
    }
    return 0;
}
"#;

/// How the requantization harness computes `v[0]` and `v[1]` (the even and odd lane of
/// the vector forms) from `xs[i]`, `ms[j]` and `e`.
const REQ32_CALL: &str =
    "v[0] = v[1] = @P@_q_req32(xs[i], ms[j], e, (int32_t)((UINT32_C(1) << e) >> 1));";
/// Even lanes hold the case `(xs[i], ms[j], e)`, odd lanes the case `(xs[i + 1],
/// ms[j + 1], 31 − e)` (indices wrapping), so a lane mix-up shows.
const REQV_512: &str = "{ int32_t t[16]; _mm512_storeu_si512((void *)t, @P@_q_req_v(_mm512_loadu_si512((const void *)X), _mm512_loadu_si512((const void *)M), _mm512_loadu_si512((const void *)E), _mm512_loadu_si512((const void *)H))); v[0] = t[14]; v[1] = t[15]; }";
const REQV_256: &str = "{ int32_t t[8]; _mm256_storeu_si256((__m256i *)(void *)t, @P@_q_req_v(_mm256_loadu_si256((const __m256i *)(const void *)X), _mm256_loadu_si256((const __m256i *)(const void *)M), _mm256_loadu_si256((const __m256i *)(const void *)E), _mm256_loadu_si256((const __m256i *)(const void *)H))); v[0] = t[6]; v[1] = t[7]; }";

/// `_q_req32` (the AVX2 target's int32 form of the branch-free requantization) and the
/// vector form `_q_req_v` of both x86 targets (even and odd lanes) equal
/// `Requant::apply` for every shift 0..=31 on the int32 extremes, rounding ties of both
/// signs and random values, with multipliers of both signs up to `±(2^31 − 1)` — the
/// vector form wherever its precondition holds (`srdhm(x, m) + 2^(e−1)` fits int32,
/// which the generator proves; most cases here meet it, the few near `2^31` are not
/// compared).
#[test]
fn req32_equals_requant_apply() {
    let p = charlm();
    for (target, call, needs_isa) in [
        (Target::Avx2, REQ32_CALL, false),
        (Target::Avx2, REQV_256, true),
        (Target::Avx512Vnni, REQV_512, true),
    ] {
        check_requant_form(&p, target, call, needs_isa);
    }
}

fn check_requant_form(p: &Program, target: Target, call: &str, needs_isa: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = gen(p, target);
    let (_, c) = write_files(dir.path(), &files);
    let src = std::fs::read_to_string(&c).unwrap();
    assert!(
        src.contains("_q_gate_pre_v(")
            && (target != Target::Avx2 || src.contains("_q_gate_pre32(")),
        "the char LM's {} C must use the int32 and vector forms",
        target.name()
    );
    let mut rng = Rng::new(77);
    let mut xs: Vec<i32> = vec![i32::MIN, i32::MIN + 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3];
    xs.extend([
        1 << 30,
        i32::MAX - 1,
        i32::MAX,
        1 << 16,
        -(1 << 16),
        12345,
        -12345,
    ]);
    xs.extend((0..40).map(|_| rng.below(1 << 32) as u32 as i32));
    let mut ms: Vec<i32> = vec![1, -1, 1 << 30, -(1 << 30), i32::MAX, -i32::MAX, 1518500250];
    ms.extend(
        (0..9)
            .map(|_| rng.below(1 << 32) as u32 as i32)
            .filter(|&m| m != i32::MIN),
    );
    let list = |v: &[i32]| {
        v.iter()
            .map(|x| format!("(int32_t){x}LL"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stem = c.file_stem().unwrap().to_str().unwrap().to_string();
    let main = dir.path().join("req32.c");
    std::fs::write(
        &main,
        REQ32_HARNESS
            .replace("@F@", &stem)
            .replace("@REQ@", call)
            .replace("@P@", &support::c_harness::prefix(p))
            .replace("@XS@", &list(&xs))
            .replace("@MS@", &list(&ms)),
    )
    .unwrap();
    let apply = |x: i32, m: i32, e: i32| {
        irnn_runtime::Requant {
            multiplier: m,
            shift: -e,
        }
        .apply(x)
    };
    // The case of output value `v` (`x`, `m`, `e`): pairs for the cases `(i, j, e)` in
    // loop order; the vector forms' odd lanes hold the next case (REQV_512).
    let case = |v: usize| {
        let (lane, c) = (v % 2, v / 2);
        let (mut i, mut j, mut e) = (c / (32 * ms.len()), c / 32 % ms.len(), c % 32);
        if lane == 1 && needs_isa {
            (i, j, e) = ((i + 1) % xs.len(), (j + 1) % ms.len(), 31 - e);
        }
        (xs[i], ms[j], e as i32)
    };
    let want: Vec<i32> = (0..2 * 32 * xs.len() * ms.len())
        .map(|v| {
            let (x, m, e) = case(v);
            apply(x, m, e)
        })
        .collect();
    let mut builds: Vec<(&str, Vec<&str>)> = Vec::new();
    if !needs_isa {
        builds.extend([("gcc", vec![]), ("clang", vec![])]);
    }
    if cpu_runs(target) {
        builds.push(("gcc", isa_flags(target).to_vec()));
        builds.push(("clang", isa_flags(target).to_vec()));
    }
    for (cc_name, flags) in builds {
        let got: Vec<i32> = run_c_main(&main, cc_name, &flags, "req32 harness")
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(got.len(), want.len());
        // The vector form's precondition, per compared value (even lane: case i, j, e;
        // odd lane: the next case with 31 − e).
        let holds = |i: usize| {
            let (x, m, e) = case(i);
            let y = irnn_runtime::saturating_rounding_doubling_high_mul(x, m) as i64;
            !needs_isa || y + ((1i64 << e) >> 1) <= i32::MAX as i64
        };
        let skipped = (0..got.len()).filter(|&i| !holds(i)).count();
        assert!(
            skipped * 20 < got.len(),
            "{skipped} of {} cases skipped",
            got.len()
        );
        if let Some(i) = (0..got.len()).find(|&i| holds(i) && got[i] != want[i]) {
            let (lane, (x, m, e)) = (i % 2, case(i));
            panic!(
                "{} {cc_name} {flags:?}: `{call}` lane {lane} ({x}, {m}, e = {e}) = {}, \
                 Requant::apply = {}",
                target.name(),
                got[i],
                want[i]
            );
        }
    }
}

/// A layer whose gate sums are not provably within int32 (biases near 2^30 and a
/// multiplier of 2^31 − 1 on row 0) keeps the 64-bit form on AVX2, and still matches.
#[test]
fn avx2_keeps_64_bit_requantization_when_the_sum_may_overflow() {
    let mut p = charlm();
    let first = support::lstm_layers(&p)[0];
    let mut lstm = support::lstm(&p, first);
    let l = &mut lstm;
    assert!(
        irnn_codegen::back::lstm_gate_plan(l).sum_i32,
        "the char LM's layers fit"
    );
    // One term near 2^31 − 2^29 with shift −31: the sum of the two terms fits, but that
    // term plus its rounding constant 2^30 does not (the vector form adds it first).
    let (isz, hsz) = (l.input_size, l.hidden_size);
    let saved = (l.bias_x[0], l.bias_h[0], l.req_x[0]);
    let w_x: i32 = 128 * l.w_ih[..isz].iter().map(|&w| (w as i32).abs()).sum::<i32>();
    let w_h: i32 = 128 * l.w_hh[..hsz].iter().map(|&w| (w as i32).abs()).sum::<i32>();
    assert!(w_h < 1 << 27, "a small recurrent term");
    l.bias_x[0] = ((1i64 << 31) - (1 << 29)) as i32 - w_x;
    l.bias_h[0] = 0;
    l.req_x[0] = irnn_runtime::Requant {
        multiplier: i32::MAX,
        shift: -31,
    };
    assert!(
        !irnn_codegen::back::lstm_gate_plan(l).sum_i32,
        "term + 2^30 overflows"
    );
    l.req_x[0].shift = -29;
    assert!(
        irnn_codegen::back::lstm_gate_plan(l).sum_i32,
        "term + 2^28 fits"
    );
    (l.bias_x[0], l.bias_h[0], l.req_x[0]) = saved;
    l.bias_x[0] = 1 << 30;
    l.bias_h[0] = -(1 << 30);
    l.req_x[0] = irnn_runtime::Requant {
        multiplier: i32::MAX,
        shift: 0,
    };
    l.req_h[0] = irnn_runtime::Requant {
        multiplier: i32::MAX,
        shift: 0,
    };
    assert!(!irnn_codegen::back::lstm_gate_plan(l).sum_i32);
    p.layers[first] = lstm.into();
    let src: String = gen(&p, Target::Avx2)
        .iter()
        .map(|f| f.contents.clone())
        .collect();
    assert!(
        src.contains("_q_gate_pre_down("),
        "the first LSTM keeps the 64-bit form"
    );
    assert!(
        src.contains("_q_gate_pre32("),
        "the second LSTM still uses the int32 form"
    );
    if skip_unless(
        Target::Avx2,
        "avx2_keeps_64_bit_requantization_when_the_sum_may_overflow",
    ) {
        return;
    }
    check(&p, Target::Avx2, "clang", isa_flags(Target::Avx2), 91);
}
