//! Generated C on emulated Cortex-M boards (QEMU system emulation, bare metal).
//!
//! 1. *bit-exact*: for every row of [`CONFIGS`] (a board and an irnn target), LSTM, GRU
//!    and Elman RNN models (token and feature input, one and two layers) are generated,
//!    built into firmware with `arm-none-eabi-gcc -O2` (`examples/cortex-m`'s startup
//!    code and linker scripts), run under `qemu-system-arm`, and every output of every
//!    step must equal `irnn_codegen::interp::Interpreter`'s; the compiled model object
//!    must be integer-only (no FP instruction, no soft-float, libm or heap reference).
//! 2. *the checks can fail*: [`support::cortex_m::integer_only`] rejects float code,
//!    soft-float and libm calls and `malloc` on every board; a nonzero exit, a fault and
//!    a hang are reported as such.
//! 3. *instruction counts*: the QEMU plugin's count is deterministic and grows linearly
//!    with the number of steps.
//! 4. *the example*: `examples/cortex-m`'s Makefile builds and runs the shipped GRU
//!    character model, whose printed outputs equal the interpreter's.
//!
//! Needs `gcc-arm-none-eabi`, `qemu-system-arm`, `make` and `gcc` (a missing one fails
//! the tests; outside CI, `IRNN_SKIP_CROSS=1` skips them).

mod support;

use irnn_codegen::back::{generate, GenOptions, Lang, Target, Unroll};
use irnn_codegen::graph::Graph;
use irnn_codegen::ir::{InputIr, Program};
use irnn_codegen::lower::lower;
use irnn_codegen::spec::Cell;
use irnn_codegen::synth::Rng;
use std::path::Path;
use std::sync::OnceLock;
use support::c_harness::{self, prefix, write_files, Seq};
use support::cortex_m::{
    self, build_bench_firmware, build_firmware, build_with_main, insns_per_step, integer_only,
    Board, AN385_M0, AN385_M3, AN386_M4, AN500_M7, AN547_M55, BOARDS,
};
use support::TestModel;

/// What runs where: each row builds the models' C for `target` and runs it on `board`:
/// every Cortex-M target on its board, and the generic C on an Armv7-M core.
const CONFIGS: &[(Board, Target)] = &[
    // The generic C (`scalar`) on an Armv7-M core without DSP, and the cortex-m4 C
    // there: its portable fallbacks (kernels, gate requantization) without the DSP.
    (AN385_M3, Target::Scalar),
    (AN385_M3, Target::CortexM4),
    (AN385_M0, Target::CortexM0),
    (AN386_M4, Target::CortexM4),
    (AN500_M7, Target::CortexM7),
    (AN547_M55, Target::CortexM55),
];

/// Each Cortex-M target's board is the one its row of the target table names, built
/// with the row's compiler flags.
#[test]
fn boards_match_the_target_table() {
    for (board, target) in CONFIGS.iter().filter(|(b, _)| b.cpu != "cortex-m3") {
        let info = target.info();
        if let irnn_codegen::back::targets::Runner::QemuSystemArm { machine } = info.runner {
            assert_eq!(board.machine, machine, "{}", info.name);
            let mut want: Vec<String> = info.cc_flags.iter().map(|s| s.to_string()).collect();
            let mut got = board.arch_flags();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{}", info.name);
        } else {
            assert_eq!(*target, Target::Scalar);
        }
    }
}

// ---------------------------------------------------------------------------------
// Models and inputs
// ---------------------------------------------------------------------------------

/// A model of the tests: a shipped tiny model or a synthetic one.
struct Model {
    label: &'static str,
    program: Program,
    /// Keeps a synthetic model's directory alive.
    _synth: Option<TestModel>,
}

fn shipped(label: &'static str, file: &str) -> Model {
    let path = support::repo_root().join("tests/models").join(file);
    let graph = Graph::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Model {
        label,
        program: lower(&graph).expect("lowers"),
        _synth: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn synth(
    label: &'static str,
    cell: Cell,
    vocab: Option<usize>,
    input: usize,
    hidden: usize,
    layers: usize,
    outputs: usize,
    seed: u64,
) -> Model {
    let m = support::synth_cell_model(cell, label, vocab, input, hidden, layers, outputs, seed);
    Model {
        label,
        program: m.program.clone(),
        _synth: Some(m),
    }
}

/// LSTM models: tokens (shipped, 1 layer), features (shipped, 2 layers: on the
/// Cortex-M targets one takes `_q_gate_prer`, the other `_q_gate_prem`) and features
/// (synthetic, 2 layers of 20).
fn lstm_models() -> &'static [Model] {
    static M: OnceLock<Vec<Model>> = OnceLock::new();
    M.get_or_init(|| {
        vec![
            shipped("tiny_tokens", "tiny_tokens.irnn.json"),
            shipped("tiny_features", "tiny_features.irnn.json"),
            synth("lstm_feat", Cell::Lstm, None, 9, 20, 2, 5, 61),
        ]
    })
}

/// GRU models: tokens (shipped) and features (synthetic, 2 layers of 20).
fn gru_models() -> &'static [Model] {
    static M: OnceLock<Vec<Model>> = OnceLock::new();
    M.get_or_init(|| {
        vec![
            shipped("tiny_gru", "tiny_gru.irnn.json"),
            synth("gru_feat", Cell::Gru, None, 9, 20, 2, 5, 62),
        ]
    })
}

/// Elman RNN models: ReLU (shipped, features) and tanh (synthetic, tokens).
fn rnn_models() -> &'static [Model] {
    static M: OnceLock<Vec<Model>> = OnceLock::new();
    M.get_or_init(|| {
        vec![
            shipped("tiny_rnn", "tiny_rnn.irnn.json"),
            synth(
                "rnn_tanh_tok",
                Cell::Rnn(irnn_codegen::spec::Nonlinearity::Tanh),
                Some(25),
                11,
                13,
                1,
                4,
                63,
            ),
        ]
    })
}

/// Random sequences of the given lengths: token ids in range, or features with -128
/// and 127 mixed in (whole steps and single values).
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
                        let mode = rng.below(8);
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

/// Sequence lengths: `step` (even sequences) and `run` (odd ones) both used, an empty
/// sequence, state carried over 12 steps.
const LENGTHS: &[usize] = &[12, 7, 0, 5];

fn gen_c(program: &Program, target: Target, dir: &Path) {
    let files = generate(
        program,
        &GenOptions {
            lang: Lang::C,
            target,
            unroll: Unroll::None,
            precision: Default::default(),
            fusion: Default::default(),
        },
    )
    .unwrap_or_else(|e| panic!("generating C for {} ({}): {e}", program.name, target.name()));
    write_files(dir, &files);
}

/// Every model on every configuration: outputs bit-exact with the interpreter, model
/// object integer-only.
fn check_models(models: &[Model], what: &str) {
    if !cortex_m::tools_or_skip(what) {
        return;
    }
    for (i, m) in models.iter().enumerate() {
        let seqs = random_seqs(&m.program, 1000 + i as u64, LENGTHS);
        let want: Vec<i32> = c_harness::expected(&m.program, &seqs)
            .into_iter()
            .flatten()
            .collect();
        for (board, target) in CONFIGS {
            let dir = tempfile::tempdir().expect("tempdir");
            gen_c(&m.program, *target, dir.path());
            let label = format!("{} ({} C on {})", m.label, target.name(), board.label());
            let fw = build_firmware(board, dir.path(), &prefix(&m.program), &seqs);
            let got = cortex_m::run(board, &fw.elf);
            assert_eq!(got.len(), want.len(), "{label}: number of outputs");
            let size = m.program.output.size;
            for (k, (g, w)) in got.chunks(size).zip(want.chunks(size)).enumerate() {
                assert_eq!(g, w, "{label}: step {k} (all sequences in order) differs");
            }
            integer_only(&fw.model_obj).unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn lstm_bit_exact_on_every_board() {
    check_models(lstm_models(), "cortex_m::lstm_bit_exact_on_every_board");
}

#[test]
fn gru_bit_exact_on_every_board() {
    check_models(gru_models(), "cortex_m::gru_bit_exact_on_every_board");
}

#[test]
fn rnn_bit_exact_on_every_board() {
    check_models(rnn_models(), "cortex_m::rnn_bit_exact_on_every_board");
}

/// Compiles C `src` for `board` (plus `flags`) into an object; returns its path.
fn compile(board: &Board, src: &str, flags: &[&str], dir: &Path, name: &str) -> std::path::PathBuf {
    let c = dir.join(format!("{name}.c"));
    let o = dir.join(format!("{name}.o"));
    std::fs::write(&c, src).expect("write");
    let mut args = board.arch_flags();
    // Freestanding, as the firmware: GCC's own <stdint.h>, no C library needed.
    args.push("-ffreestanding".into());
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend([
        "-O2".into(),
        "-c".into(),
        c.display().to_string(),
        "-o".into(),
    ]);
    args.push(o.display().to_string());
    c_harness::cc(cortex_m::CC, &args, name);
    o
}

#[test]
fn integer_only_rejects_float_libm_and_heap() {
    if !cortex_m::tools_or_skip("cortex_m::integer_only_rejects_float_libm_and_heap") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let int_src = "int f(const signed char *a, int n) { int s = 0, i; \
                   for (i = 0; i < n; ++i) s += a[i] * a[i]; return s; }\n";
    let float_src = "float f(float a, float b) { return a * b + (float)(int)a; }\n";
    let double_src = "double g(double a, double b) { return a / b; }\n";
    let libm_src = "float expf(float); int h(int x) { return (int)expf((float)x); }\n";
    let heap_src = "#include <stddef.h>\nvoid *malloc(size_t); void free(void *);\n\
                    int k(int n) { char *p = malloc((size_t)n); int r = p != 0; free(p); \
                    return r; }\n";
    for board in BOARDS {
        let b = board.label();
        let ok = compile(&board, int_src, &[], d, "int");
        integer_only(&ok).unwrap_or_else(|e| panic!("{b}: integer code rejected: {e}"));
        for (name, src, expect) in [
            ("float", float_src, "soft-float helper"),
            ("double", double_src, "__aeabi_d"),
            ("libm", libm_src, "expf"),
            ("heap", heap_src, "malloc"),
        ] {
            let o = compile(&board, src, &[], d, name);
            let err = integer_only(&o).expect_err(&format!("{b}: {name} code accepted"));
            // With the hard-float ABI the float code is FP instructions, not helpers.
            let expect = if board.float_abi == "hard" && (name == "float" || name == "double") {
                "floating-point data type"
            } else {
                expect
            };
            assert!(err.contains(expect), "{b}: {name}: {err}");
        }
    }
    // FPU instructions on the DSP cores (hard-float ABI), by their mnemonics.
    for board in [AN386_M4, AN500_M7] {
        let o = compile(&board, float_src, &["-mfloat-abi=hard"], d, "hard");
        let err = integer_only(&o).expect_err("hard-float code accepted");
        assert!(
            err.contains("vfma.f32") || err.contains("vmul.f32"),
            "{err}"
        );
        let o = compile(&board, double_src, &["-mfloat-abi=hard"], d, "hardd");
        let err = integer_only(&o).expect_err("double code accepted");
        assert!(
            err.contains("FP register use") || err.contains(".f64"),
            "{err}"
        );
    }
    // Helium: integer MVE passes, MVE float does not (objdump must decode MVE for it).
    let mve_int = "#include <arm_mve.h>\nint32_t f(const int8_t *a, const int8_t *b) \
                   { return vmladavq_s8(vld1q_s8(a), vld1q_s8(b)); }\n\
                   int32_t g(const int32_t *a) { int32x4_t v = vld1q_s32(a); \
                   return vgetq_lane_s32(v, 1) + vgetq_lane_s32(v, 3); }\n\
                   int32x4_t h(int32x4_t v, int32_t x) { return vsetq_lane_s32(x, v, 2); }\n";
    let o = compile(&AN547_M55, mve_int, &[], d, "mve_int");
    integer_only(&o).unwrap_or_else(|e| panic!("integer MVE rejected: {e}"));
    let asm = std::process::Command::new("arm-none-eabi-objdump")
        .args(["-d", "-marmv8.1-m.main"])
        .arg(&o)
        .output()
        .expect("objdump");
    let asm = String::from_utf8_lossy(&asm.stdout);
    assert!(asm.contains("vmov.32"), "no lane move to check:\n{asm}");
    let mve_float = "#include <arm_mve.h>\nvoid f(float32_t *a, const float32_t *b) \
                     { vst1q_f32(a, vaddq_f32(vld1q_f32(a), vld1q_f32(b))); }\n";
    let o = compile(&AN547_M55, mve_float, &[], d, "mve_float");
    let err = integer_only(&o).expect_err("MVE float code accepted");
    assert!(err.contains("vadd.f32"), "{err}");
}

/// A bare firmware `main` (with the tiny LSTM linked, unused) for the failure tests.
fn bare_firmware(board: &Board, main_src: &str) -> cortex_m::Firmware {
    let m = &lstm_models()[0];
    let dir = tempfile::tempdir().expect("tempdir");
    gen_c(&m.program, Target::Scalar, dir.path());
    let fw = build_with_main(board, dir.path(), &prefix(&m.program), main_src, "bare");
    // The generated files are compiled in; the directory may go.
    drop(dir);
    fw
}

#[test]
fn exit_status_fault_and_hang_are_reported() {
    if !cortex_m::tools_or_skip("cortex_m::exit_status_fault_and_hang_are_reported") {
        return;
    }
    let board = AN386_M4;
    let fw = bare_firmware(&board, "int main(void) { return 5; }\n");
    let out = cortex_m::run_qemu(&board, &fw.elf, &[], cortex_m::RUN_TIMEOUT).expect("exits");
    assert_eq!(out.status.code(), Some(5), "exit status: {}", out.text);
    let err = cortex_m::try_run(&board, &fw.elf).expect_err("exit status 5 accepted");
    assert!(err.contains("exit status: 5"), "{err}");

    // Exit 0 without the end marker: an incomplete output.
    let fw = bare_firmware(&board, "int main(void) { return 0; }\n");
    let err = cortex_m::try_run(&board, &fw.elf).expect_err("incomplete output accepted");
    assert!(err.contains("without finishing"), "{err}");

    // A fault: an undefined instruction; Armv6-M code on the M3 board too.
    for board in [AN385_M0, AN386_M4, AN547_M55] {
        let fw = bare_firmware(
            &board,
            "int main(void) { __asm__ volatile(\"udf #0\"); return 0; }\n",
        );
        let out = cortex_m::run_qemu(&board, &fw.elf, &[], cortex_m::RUN_TIMEOUT).expect("exits");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: {}",
            board.label(),
            out.text
        );
        assert!(
            out.text.contains("fault: exception 3"),
            "{}: {}",
            board.label(),
            out.text
        );
    }

    // A hang: run_qemu gives up after the timeout, and says so.
    let fw = bare_firmware(&board, "int main(void) { for (;;) { } }\n");
    let r = cortex_m::run_qemu(&board, &fw.elf, &[], std::time::Duration::from_secs(2));
    let msg = r.err().expect("a hung firmware was not reported");
    assert!(msg.contains("no exit after"), "{msg}");
}

#[test]
fn instruction_counts_are_deterministic_and_linear() {
    if !cortex_m::tools_or_skip("cortex_m::instruction_counts_are_deterministic_and_linear") {
        return;
    }
    let m = &lstm_models()[1];
    let seq = random_seqs(&m.program, 7, &[16]).remove(0);
    for board in [AN385_M0, AN386_M4, AN547_M55] {
        let dir = tempfile::tempdir().expect("tempdir");
        gen_c(&m.program, Target::Scalar, dir.path());
        let fw = build_bench_firmware(&board, dir.path(), &prefix(&m.program), &seq);
        let a = insns_per_step(&fw, 16);
        let b = insns_per_step(&fw, 16);
        assert_eq!(
            (a.with_steps, a.without),
            (b.with_steps, b.without),
            "{}: counts differ between identical runs",
            board.label()
        );
        let c = insns_per_step(&fw, 32);
        // Steps 17..32 cycle over the same 16 inputs: the same work again, up to the
        // data-dependent branches (activation table search, saturation) on a different
        // state: within 1%.
        let first = a.with_steps - a.without;
        let second = c.with_steps - a.with_steps;
        assert!(
            first.abs_diff(second) * 100 <= first,
            "{}: steps 1-16 took {first} instructions, steps 17-32 {second}",
            board.label()
        );
        eprintln!(
            "{} {}: {:.1} instructions per step ({} over {} steps)",
            board.label(),
            m.label,
            a.per_step(),
            first,
            a.steps
        );
        // Sanity: a step does at least one multiply–accumulate per weight.
        assert!(a.per_step() > 1000.0, "{}: {:?}", board.label(), a);
    }
}

#[test]
fn example_firmware_builds_runs_and_matches_interpreter() {
    let what = "cortex_m::example_firmware_builds_runs_and_matches_interpreter";
    let graph_path = support::repo_root().join("examples/gru_charlm/gru_charlm.irnn.json");
    if !cortex_m::tools_or_skip(what)
        || !support::skip::requires(what, "examples/gru_charlm", graph_path.is_file())
    {
        return;
    }
    let program = lower(&Graph::load(&graph_path).expect("graph loads")).expect("lowers");
    let board = AN386_M4;
    let build = tempfile::tempdir().expect("tempdir");
    // The generated C written beforehand where the Makefile's `irnn gen` step writes it,
    // with the step's stamp (newer than the model, so make keeps it): IRNN=false fails
    // the build should the Makefile want to run irnn.
    let gen = build.path().join("gen");
    std::fs::create_dir(&gen).expect("mkdir gen");
    gen_c(&program, Target::CortexM4, &gen);
    std::fs::write(gen.join("stamp"), "").expect("stamp");
    let out = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(cortex_m::example_dir())
        .arg(format!("BUILD={}", build.path().display()))
        .args([
            "IRNN=false",
            "BOARD=mps2-an386",
            "CPU=cortex-m4",
            "IRNN_TARGET=cortex-m4",
        ])
        .arg("run")
        .output()
        .expect("make runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "make run failed ({}):\n{text}",
        out.status
    );

    // The prompt of main.c through the model's 72-character vocabulary.
    let vocab = "\n !\"&'(),-.12:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~";
    let tokens: Vec<i32> = "ROMEO:\nBut soft"
        .chars()
        .map(|c| vocab.find(c).expect("prompt character in the vocabulary") as i32)
        .collect();
    let want = c_harness::expected(&program, &[Seq::Tokens(tokens.clone())]);
    for (t, w) in want.iter().enumerate() {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("step {t}:")))
            .unwrap_or_else(|| panic!("no output of step {t}:\n{text}"));
        let got: Vec<i32> = line
            .split_whitespace()
            .map(|v| v.parse().expect("integer output"))
            .collect();
        assert_eq!(&got, w, "example firmware, step {t}");
    }
    assert!(
        text.contains("---\nROMEO:\nBut soft"),
        "no generated text:\n{text}"
    );
    integer_only(&build.path().join("model.o")).expect("the example's model object");

    // Instructions per step of the shipped GRU on the M4: printed for the record.
    let seq = Seq::Tokens(tokens);
    let fw = build_bench_firmware(&board, &gen, &prefix(&program), &seq);
    let n = insns_per_step(&fw, 8);
    eprintln!(
        "gru_charlm (scalar C) on {}: {:.1} instructions per step",
        board.label(),
        n.per_step()
    );
}

#[test]
fn sizes_of_model_object_and_firmware() {
    if !cortex_m::tools_or_skip("cortex_m::sizes_of_model_object_and_firmware") {
        return;
    }
    let m = &gru_models()[1];
    let p = prefix(&m.program);
    let seqs = random_seqs(&m.program, 5, &[2]);
    for board in [AN385_M0, AN386_M4] {
        let b = board.label();
        let dir = tempfile::tempdir().expect("tempdir");
        gen_c(&m.program, Target::Scalar, dir.path());
        let fw = build_firmware(&board, dir.path(), &p, &seqs);
        let syms = cortex_m::symbol_sizes(&fw.model_obj);
        for f in ["step", "run", "reset"] {
            let name = format!("{p}_{f}");
            let s = syms.iter().find(|s| s.name == name);
            assert!(
                s.is_some_and(|s| s.kind == 'T' && s.size > 0),
                "{b}: no global function {name} with a size in {syms:?}"
            );
        }
        // -fdata-sections: one section per constant, so the constants' symbols add up to
        // the .rodata sections exactly (what a memory report can rely on), once the
        // aliases of merged identical constants are counted once.
        let sections = cortex_m::section_sizes(&fw.model_obj);
        let mut seen = std::collections::HashSet::new();
        let rodata_syms: u64 = syms
            .iter()
            .filter(|s| matches!(s.kind, 'r' | 'R'))
            .filter(|s| seen.insert((s.section.clone(), s.value)))
            .map(|s| s.size)
            .sum();
        let rodata_secs: u64 = sections
            .iter()
            .filter(|(n, _)| n.starts_with(".rodata"))
            .map(|(_, s)| s)
            .sum();
        assert!(rodata_syms > 0, "{b}: no constants in {syms:?}");
        assert_eq!(
            rodata_syms, rodata_secs,
            "{b}: constants vs .rodata sections\n{syms:?}\n{sections:?}"
        );
        let data: u64 = sections
            .iter()
            .filter(|(n, _)| n.starts_with(".data") || n.starts_with(".bss"))
            .map(|(_, s)| s)
            .sum();
        assert_eq!(
            data, 0,
            "{b}: the model object has mutable data: {sections:?}"
        );
        // The firmware: the model's state is main's static `state`.
        let elf_syms = cortex_m::symbol_sizes(&fw.elf);
        let state = elf_syms
            .iter()
            .find(|s| s.name == "state")
            .unwrap_or_else(|| panic!("{b}: no `state` in the firmware"));
        assert!(matches!(state.kind, 'b' | 'B'), "{b}: {state:?}");
        let elf_sections = cortex_m::section_sizes(&fw.elf);
        for s in [".text", ".rodata", ".bss"] {
            assert!(
                elf_sections.iter().any(|(n, size)| n == s && *size > 0),
                "{b}: no {s} in {elf_sections:?}"
            );
        }
    }
}

/// The instructions the Cortex-M kernels are built from run on the emulated boards with
/// this startup code: DSP (`SMLAD` on `SXTB16`-widened bytes) on the M4 and M7, Helium
/// (`VMLADAV` on int8 vectors; needs the FPU/MVE enabled at reset) on the M55. Each
/// firmware checks its result against plain C and exits 0 only when they agree.
#[test]
fn dsp_and_helium_instructions_run() {
    if !cortex_m::tools_or_skip("cortex_m::dsp_and_helium_instructions_run") {
        return;
    }
    let dsp = r#"
#include <arm_acle.h>
#include <stdint.h>
static volatile int32_t a = 0x7f80ff01, b = (int32_t)0x80017f02;
int main(void)
{
    /* Bytes, low to high: a = (1, -1, -128, 127), b = (2, 127, 1, -128). */
    int32_t x = a, y = b;
    int32_t x8 = (int32_t)((uint32_t)x >> 8 | (uint32_t)x << 24);
    int32_t y8 = (int32_t)((uint32_t)y >> 8 | (uint32_t)y << 24);
    int32_t got = __smlad(__sxtb16(x), __sxtb16(y), 1000);
    int32_t got_hi = __smlad(__sxtb16(x8), __sxtb16(y8), 0);
    int32_t want = 1000 + 1 * 2 + (-128) * 1;
    int32_t want_hi = (-1) * 127 + 127 * (-128);
    return got == want && got_hi == want_hi ? 0 : 1;
}
"#;
    for board in [AN386_M4, AN500_M7] {
        let fw = bare_firmware(&board, dsp);
        let out = cortex_m::run_qemu(&board, &fw.elf, &[], cortex_m::RUN_TIMEOUT).expect("exits");
        assert!(
            out.status.success(),
            "{}: {} {}",
            board.label(),
            out.status,
            out.text
        );
        let asm = std::process::Command::new("arm-none-eabi-objdump")
            .arg("-d")
            .arg(&fw.elf)
            .output()
            .expect("objdump");
        let asm = String::from_utf8_lossy(&asm.stdout);
        assert!(
            asm.contains("smlad") && asm.contains("sxtb16"),
            "{}: no DSP code",
            board.label()
        );
    }
    let mve = r#"
#include <arm_mve.h>
#include <stdint.h>
static int8_t a[32], b[32];
int main(void)
{
    int32_t i, got = 0, want = 0;
    for (i = 0; i < 32; ++i) {
        a[i] = (int8_t)(i * 37 - 128);
        b[i] = (int8_t)(127 - i * 29);
        want += a[i] * b[i];
    }
    for (i = 0; i < 32; i += 16) {
        got = vmladavaq_s8(got, vld1q_s8(a + i), vld1q_s8(b + i));
    }
    return got == want ? 0 : 1;
}
"#;
    let fw = bare_firmware(&AN547_M55, mve);
    let out = cortex_m::run_qemu(&AN547_M55, &fw.elf, &[], cortex_m::RUN_TIMEOUT).expect("exits");
    assert!(out.status.success(), "M55 MVE: {} {}", out.status, out.text);
}

/// `irnn inspect --target` and the header's memory block (`back::memory`) against the
/// compiled objects: constants and state exactly (all constant symbols, merged aliases
/// included; the firmware's `state` object), code within the stated margin. On the
/// synthetic models: gcc folds the arrays of the 4-unit shipped ones into the code.
#[test]
fn memory_report_matches_the_compiled_object() {
    if !cortex_m::tools_or_skip("cortex_m::memory_report_matches_the_compiled_object") {
        return;
    }
    use irnn_codegen::back::memory::{report, CODE_MARGIN};
    for (board, target) in CONFIGS
        .iter()
        .filter(|(b, t)| t.is_cortex_m() && b.cpu != "cortex-m3")
    {
        let synthetic = lstm_models()
            .iter()
            .chain(gru_models())
            .chain(rnn_models())
            .filter(|m| m._synth.is_some());
        for m in synthetic {
            let label = format!("{} on {}", m.label, target.name());
            let p = prefix(&m.program);
            let dir = tempfile::tempdir().expect("tempdir");
            gen_c(&m.program, *target, dir.path());
            let header = std::fs::read_to_string(
                dir.path()
                    .join(format!("{}.h", irnn_codegen::back::names::file_stem(&p))),
            )
            .expect("header");
            let fw = build_firmware(board, dir.path(), &p, &random_seqs(&m.program, 3, &[1]));
            let r = report(&m.program, *target).expect("memory report");
            // The header carries the same figures.
            for line in r.lines(&p) {
                assert!(
                    header.contains(&line),
                    "{label}: {line:?} not in the header"
                );
            }
            // Every constant array is in the object with its size, but for small ones
            // gcc folded into the code (at most 64 bytes each).
            let source = std::fs::read_to_string(
                dir.path()
                    .join(format!("{}.c", irnn_codegen::back::names::file_stem(&p))),
            )
            .expect("source");
            let arrays = irnn_codegen::back::memory::const_arrays(&source);
            assert_eq!(
                arrays.iter().map(|(_, b)| b).sum::<usize>(),
                r.const_bytes,
                "{label}: constants"
            );
            let syms = cortex_m::symbol_sizes(&fw.model_obj);
            for (name, bytes) in &arrays {
                match syms.iter().find(|s| &s.name == name) {
                    Some(s) => assert_eq!(s.size, *bytes as u64, "{label}: {name}"),
                    None => assert!(*bytes <= 64, "{label}: {name} ({bytes} bytes) is missing"),
                }
            }
            let consts = syms.iter().filter(|s| matches!(s.kind, 'r' | 'R'));
            for s in consts {
                assert!(
                    arrays.iter().any(|(n, _)| n == &s.name),
                    "{label}: constant {} not in the report",
                    s.name
                );
            }
            let elf_syms = cortex_m::symbol_sizes(&fw.elf);
            let state = elf_syms.iter().find(|s| s.name == "state").expect("state");
            assert_eq!(state.size, r.state_bytes as u64, "{label}: state");
            let text: u64 = cortex_m::section_sizes(&fw.model_obj)
                .iter()
                .filter(|(n, _)| n.starts_with(".text"))
                .map(|(_, s)| s)
                .sum();
            let err = (r.code_bytes as f64 - text as f64).abs() / text as f64;
            assert!(
                err <= CODE_MARGIN,
                "{label}: code estimate {} vs {text} bytes compiled ({:.0}%)",
                r.code_bytes,
                100.0 * err
            );
        }
    }
}

/// The generated Rust of the Cortex-M targets (the portable Rust: `core::arch::arm`'s
/// DSP intrinsics are unstable) builds as a `no_std` library for Armv7E-M and Armv6-M
/// (`thumbv7em-none-eabi`, `thumbv6m-none-eabi`), LSTM, GRU and RNN layers together.
#[test]
fn rust_builds_for_thumb_targets() {
    let triples = ["thumbv7em-none-eabi", "thumbv6m-none-eabi"];
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let missing: Vec<String> = triples
        .iter()
        .filter(|t| !Path::new(&sysroot).join("lib/rustlib").join(t).is_dir())
        .map(|t| format!("rustup target {t}"))
        .collect();
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    if !support::skip::cross_tools("cortex_m::rust_builds_for_thumb_targets", &missing) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let krate = dir.path();
    std::fs::create_dir_all(krate.join("src")).expect("mkdir");
    let mut lib = String::from("#![no_std]\n");
    let models = [
        (&lstm_models()[1], Target::CortexM4),
        (&gru_models()[1], Target::CortexM7),
        (&rnn_models()[1], Target::CortexM0),
        (&lstm_models()[0], Target::CortexM55),
    ];
    for (k, (m, target)) in models.iter().enumerate() {
        let opts = GenOptions {
            lang: Lang::Rust,
            target: *target,
            unroll: Unroll::None,
            precision: irnn_codegen::back::Precision::Int8,
            fusion: Default::default(),
        };
        let files = generate(&m.program, &opts).expect("generates Rust");
        assert!(
            !files[0].contents.contains("simd::"),
            "{}: the Cortex-M Rust uses no SIMD kernels",
            target.name()
        );
        std::fs::write(krate.join(format!("src/m{k}.rs")), &files[0].contents).expect("write");
        lib.push_str(&format!("pub mod m{k};\n"));
    }
    std::fs::write(krate.join("src/lib.rs"), lib).expect("write lib.rs");
    let runtime = support::repo_root().join("runtime");
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"thumb-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[dependencies]\nirnn-runtime = {{ path = {:?} }}\n\n\
             [workspace]\n",
            runtime.display().to_string()
        ),
    )
    .expect("write Cargo.toml");
    for triple in triples {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--offline",
                "--release",
                "--lib",
                "--target",
            ])
            .arg(triple)
            .arg("--manifest-path")
            .arg(krate.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", krate.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "the Cortex-M Rust does not build for {triple}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
