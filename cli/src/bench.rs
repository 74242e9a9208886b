//! `irnn bench`: time the generated C of a model, one step at a time.
//!
//! For each requested target the model's C is generated, compiled with the system C
//! compiler (`$CC`; default `clang` when installed, else `cc`) at `-O3` plus the target's instruction-set flags,
//! together with a small timing harness: deterministic random inputs, a warm-up, then
//! `runs` timed runs of `steps` calls of `NAME_step` each (state carried from step to
//! step, `clock_gettime(CLOCK_MONOTONIC)`), reporting the median µs per step and the
//! fastest run's (other tenants of a shared machine only ever add time). For
//! int8 it also times sequence mode: `runs` calls of `NAME_run` over the same `steps`
//! inputs laid out as one sequence (the batched input projections of the SIMD targets,
//! docs/ARCHITECTURE.md), reported as µs per step. Just before each timed run the
//! harness measures the core clock (a chain of dependent `imul`, x86-64 only), so the
//! table also gives cycles per step (each run's time at its own clock, median) and
//! multiply-accumulates per cycle: on a machine whose clock moves, cycles are the
//! figure to compare with per-cycle limits. The
//! object file of the model alone gives the code size (`.text`) and the constant data
//! (`.rodata`: weights, biases, multipliers, tables).
//!
//! The AArch64 targets (`neon`, `neon-dotprod`) run natively on an AArch64 host. On
//! any other host they are cross-compiled with `aarch64-linux-gnu-gcc -static` and run
//! under `qemu-aarch64 -cpu max`, with a warning: times under emulation say nothing
//! about the hardware (the sizes are still right).

use anyhow::{bail, Context, Result};
use irnn_codegen::back::float::F32Program;
use irnn_codegen::back::{generate, Fusion, GenOptions, Lang, Precision, Target, Unroll};
use irnn_codegen::ir::{InputIr, LayerIr, Program};
use std::path::Path;
use std::process::Command;

/// Optimization level of every benchmark build. `-O3` because it is what lets gcc
/// vectorize the LSTM tail (clang does at `-O2` too).
pub const OPT_LEVEL: &str = "-O3";

/// The compiler `irnn bench` uses: `$CC`, else `clang` when it runs, else `cc`.
pub fn default_cc() -> String {
    if let Ok(cc) = std::env::var("CC") {
        if !cc.trim().is_empty() {
            return cc;
        }
    }
    if tool_runs("clang") { "clang" } else { "cc" }.to_string()
}

/// Options of [`bench()`].
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Targets to time, in order.
    pub targets: Vec<Target>,
    /// Precisions to time for each target, in order (int8 and its f32 counterpart).
    pub precisions: Vec<Precision>,
    /// Steps per timed run.
    pub steps: usize,
    /// Timed runs (the median is reported).
    pub runs: usize,
    /// C compiler command (C only).
    pub cc: String,
    /// Language of the timed code: the generated C (compiled with `cc`) or the
    /// generated Rust (a scratch crate built with cargo against irnn-runtime).
    pub lang: Lang,
    /// Fusion of the int8 code (`Fusion::None` times the op-by-op code).
    pub fusion: Fusion,
}

/// One row of the result table.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// Target.
    pub target: Target,
    /// What the row ran, as the table shows it: the target's name, and for `avx2` on a
    /// CPU with AVX-VNNI which kernel (C: a second int8 row built with `-mavxvnni`;
    /// Rust: the kernel the runtime picked).
    pub label: String,
    /// Precision.
    pub precision: Precision,
    /// Median microseconds per step.
    pub us_per_step: f64,
    /// Fastest run's microseconds per step: on a shared machine other tenants only
    /// ever add time, so this is the steadier figure for the code itself.
    pub best_us_per_step: f64,
    /// Median microseconds per step of one `NAME_run` call over `steps` steps (int8 only).
    pub run_us_per_step: Option<f64>,
    /// Median core clock (GHz) measured just before each timed run, where the harness
    /// knows how (x86-64); `None` elsewhere.
    pub ghz: Option<f64>,
    /// Median over the timed runs of µs per step times that run's clock: core cycles
    /// per step, steadier than µs on a machine whose clock moves (`None` without a
    /// clock).
    pub cycles_per_step: Option<f64>,
    /// Bytes of weights as the kernels read them (packed and padded for SIMD targets),
    /// plus embedding tables: 1 byte a weight for int8, 4 for f32.
    pub weight_bytes: usize,
    /// `.text` bytes of the model's object file (C only; 0 for Rust).
    pub text_bytes: u64,
    /// `.rodata` bytes of the model's object file (C only; 0 for Rust).
    pub rodata_bytes: u64,
}

/// Compiler flags of a target.
pub fn target_flags(target: Target) -> &'static [&'static str] {
    target.info().cc_flags
}

/// The AArch64 cross compiler used for the ARM targets on other hosts.
pub const AARCH64_CC: &str = "aarch64-linux-gnu-gcc";

/// The emulator (and its arguments) that runs the cross-compiled benchmark.
pub const AARCH64_RUNNER: &[&str] = &["qemu-aarch64", "-cpu", "max"];

/// Whether `target` runs under emulation on this host (an ARM target off AArch64).
pub fn emulated(target: Target) -> bool {
    target.is_arm() && !cfg!(target_arch = "aarch64")
}

fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Bytes of int8 weights the kernels of `target` read.
pub fn weight_bytes(program: &Program, target: Target) -> usize {
    let packed =
        |rows: usize, cols: usize| irnn_codegen::back::pack::packed_bytes(rows, cols, target);
    program
        .layers
        .iter()
        .map(|l| match l {
            LayerIr::Embedding(e) => e.table.len(),
            _ => l.matrices().into_iter().map(|(r, c)| packed(r, c)).sum(),
        })
        .sum()
}

/// Multiply-accumulates of one step: every weight of every matrix once (embedding
/// lookups are free).
pub fn macs_per_step(program: &Program) -> usize {
    program.layers.iter().map(LayerIr::macs).sum()
}

const HARNESS: &str = r#"
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "@F@.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* The core clock in GHz, for cycles per step: a chain of dependent 64-bit imul (3
 * cycles each on every x86-64 core of the last decade), best of 3 short runs just
 * before each timed run, so that a clock that moves between runs is followed.
 * 0 where no such chain is known (the table then shows no cycles). */
#if defined(__x86_64__) && defined(__GNUC__)
static double clock_ghz(void)
{
    double best = 1e30;
    int r;
    for (r = 0; r < 3; ++r) {
        unsigned long long v = 3;
        long i;
        const double t0 = now_us();
        double dt;
        for (i = 0; i < 20000; ++i) {
            __asm__ volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0\n\t"
                             "imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0"
                             : "+r"(v));
        }
        dt = now_us() - t0;
        best = dt < best ? dt : best;
    }
    return 20000.0 * 8.0 * 3.0 / best / 1e3;
}
#else
static double clock_ghz(void)
{
    return 0.0;
}
#endif

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const long steps = argc > 1 ? atol(argv[1]) : 1000;
    const int runs = argc > 2 ? atoi(argv[2]) : 7;
    const int time_run = argc > 3 ? atoi(argv[3]) : 0;
    double step_us, best_us, run_us = -1.0, step_cycles, ghz;
    static @P@_state_t st;
    static @OT@ out[@PU@_OUTPUT_SIZE];
    static double times[101], cycles[101], clocks[101];
    unsigned int seed = 12345u;
    long k, t;
    int r;
    double check = 0.0;
#ifdef @PU@_VOCAB_SIZE
    int32_t *in = (int32_t *)malloc(sizeof(int32_t) * 4096);
    for (k = 0; k < 4096; ++k) {
        seed = seed * 1103515245u + 12345u;
        in[k] = (int32_t)((seed >> 8) % @PU@_VOCAB_SIZE);
    }
#define INPUT(t) in[(t) % 4096]
#else
    @IT@ *in = (@IT@ *)malloc(sizeof(@IT@) * (size_t)@PU@_INPUT_SIZE * 256);
    for (k = 0; k < (long)@PU@_INPUT_SIZE * 256; ++k) {
        seed = seed * 1103515245u + 12345u;
        in[k] = (@IT@)(((int)((seed >> 8) & 255u) - 128) @SCALE@);
    }
#define INPUT(t) (in + ((t) % 256) * @PU@_INPUT_SIZE)
#endif
    if (runs < 1 || runs > 101 || steps < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    @P@_reset(&st);
    for (t = 0; t < steps / 4 + 1; ++t) { /* warm-up */
        @P@_step(&st, INPUT(t), out);
        check += (double)out[0];
    }
    for (r = 0; r < runs; ++r) {
        double t0;
        clocks[r] = clock_ghz();
        t0 = now_us();
        for (t = 0; t < steps; ++t) {
            @P@_step(&st, INPUT(t), out);
        }
        times[r] = (now_us() - t0) / (double)steps;
        cycles[r] = times[r] * clocks[r] * 1e3;
        check += (double)out[0];
    }
    qsort(times, (size_t)runs, sizeof times[0], cmp);
    qsort(cycles, (size_t)runs, sizeof cycles[0], cmp);
    qsort(clocks, (size_t)runs, sizeof clocks[0], cmp);
    step_us = times[runs / 2];
    best_us = times[0];
    step_cycles = cycles[runs / 2];
    ghz = clocks[runs / 2];
    if (time_run) { /* sequence mode: one NAME_run over all steps */
#ifdef @PU@_VOCAB_SIZE
        int32_t *seq = (int32_t *)malloc(sizeof(int32_t) * (size_t)steps);
        for (t = 0; t < steps; ++t) {
            seq[t] = INPUT(t);
        }
#else
        @IT@ *seq = (@IT@ *)malloc(sizeof(@IT@) * (size_t)steps * @PU@_INPUT_SIZE);
        for (t = 0; t < steps; ++t) {
            memcpy(seq + t * @PU@_INPUT_SIZE, INPUT(t), sizeof(@IT@) * @PU@_INPUT_SIZE);
        }
#endif
        @OT@ *ys = (@OT@ *)malloc(sizeof(@OT@) * (size_t)steps * @PU@_OUTPUT_SIZE);
        @P@_run(&st, seq, (int32_t)steps, ys); /* warm-up */
        for (r = 0; r < runs; ++r) {
            const double t0 = now_us();
            @P@_run(&st, seq, (int32_t)steps, ys);
            times[r] = (now_us() - t0) / (double)steps;
            check += (double)ys[0];
        }
        qsort(times, (size_t)runs, sizeof times[0], cmp);
        run_us = times[runs / 2];
        free(seq);
        free(ys);
    }
    free(in);
    printf("%.6f %.6f %.6f %g %.1f %.4f\n", step_us, run_us, best_us, check, step_cycles, ghz);
    return 0;
}
"#;

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} ({:?})", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `.text` and `.rodata` bytes of an object file, from `size -A`.
fn section_sizes(obj: &Path) -> Result<(u64, u64)> {
    let text = run(Command::new("size").arg("-A").arg(obj), "size -A")?;
    let (mut code, mut data) = (0u64, 0u64);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(bytes)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(bytes) = bytes.parse::<u64>() else {
            continue;
        };
        if name == ".text" || name.starts_with(".text.") {
            code += bytes;
        } else if name == ".rodata" || name.starts_with(".rodata.") {
            data += bytes;
        }
    }
    Ok((code, data))
}

/// Times one target in one precision (`f32` needs the dequantized model).
pub fn bench_target(
    program: &Program,
    f32_program: Option<&F32Program>,
    target: Target,
    precision: Precision,
    opts: &BenchOptions,
) -> Result<BenchRow> {
    bench_target_with(program, f32_program, target, precision, opts, &[])
}

/// The extra C flag of the AVX-VNNI variant of the `avx2` target.
pub const AVX_VNNI_FLAG: &str = "-mavxvnni";

/// Whether this CPU has AVX-VNNI (the VEX-encoded `vpdpbusd` the `avx2` target's
/// kernels use when compiled with [`AVX_VNNI_FLAG`], and the Rust runtime picks).
pub fn host_has_avx_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`bench_target`] with `extra` C flags after the target's (the label names them).
fn bench_target_with(
    program: &Program,
    f32_program: Option<&F32Program>,
    target: Target,
    precision: Precision,
    opts: &BenchOptions,
    extra: &[&str],
) -> Result<BenchRow> {
    if opts.lang == Lang::Rust {
        return bench_target_rust(program, f32_program, target, precision, opts);
    }
    let (files, weight_bytes) = generate_timed(
        program,
        f32_program,
        target,
        precision,
        Lang::C,
        opts.fusion,
    )?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut c_file = None;
    for f in &files {
        let path = dir.path().join(&f.name);
        std::fs::write(&path, &f.contents)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        if f.name.ends_with(".c") {
            c_file = Some(path);
        }
    }
    let c_file = c_file.context("the C back end wrote no .c file")?;
    let p = irnn_codegen::back::names::sanitize(&program.name);
    let harness = dir.path().join("bench_main.c");
    std::fs::write(
        &harness,
        HARNESS
            .replace("@PU@", &irnn_codegen::back::names::upper(&p))
            .replace("@F@", &irnn_codegen::back::names::file_stem(&p))
            .replace("@P@", &p)
            .replace(
                "@OT@",
                if precision == Precision::F32 {
                    "float"
                } else {
                    "int32_t"
                },
            )
            .replace(
                "@IT@",
                if precision == Precision::F32 {
                    "float"
                } else {
                    "int8_t"
                },
            )
            .replace(
                "@SCALE@",
                if precision == Precision::F32 {
                    "/ 64.0"
                } else {
                    ""
                },
            ),
    )?;
    let emulate = emulated(target);
    let cc = if emulate {
        AARCH64_CC
    } else {
        opts.cc.as_str()
    };
    if emulate {
        for tool in [AARCH64_CC, AARCH64_RUNNER[0]] {
            if !tool_runs(tool) {
                bail!(
                    "target {} needs an AArch64 host, or `{AARCH64_CC}` and `{}` on this \
                     one to run under emulation; `{tool}` does not run (apt-get install \
                     gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)",
                    target.name(),
                    AARCH64_RUNNER[0]
                );
            }
        }
        eprintln!(
            "warning: target {} is cross-compiled with {AARCH64_CC} and runs under {}: \
             times under emulation are meaningless (sizes are real)",
            target.name(),
            AARCH64_RUNNER.join(" ")
        );
    }
    let mut flags: Vec<&str> = target_flags(target).to_vec();
    flags.extend(extra);
    if emulate {
        flags.push("-static");
    }
    let obj = dir.path().join("model.o");
    let exe = dir.path().join("bench");
    run(
        Command::new(cc)
            .args(["-std=c99", OPT_LEVEL])
            .args(&flags)
            .arg("-c")
            .arg(&c_file)
            .arg("-o")
            .arg(&obj),
        &format!("{cc} (compiling the model)"),
    )?;
    run(
        Command::new(cc)
            .args(["-std=c99", OPT_LEVEL])
            .args(&flags)
            .arg(&harness)
            .arg(&obj)
            .arg("-o")
            .arg(&exe),
        &format!("{cc} (linking the benchmark)"),
    )?;
    let (text_bytes, rodata_bytes) = section_sizes(&obj)?;
    let mut cmd = if emulate {
        let mut c = Command::new(AARCH64_RUNNER[0]);
        c.args(&AARCH64_RUNNER[1..]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    timed_row(
        &mut cmd,
        "the benchmark",
        target,
        precision,
        opts,
        weight_bytes,
    )
    .map(|r| BenchRow {
        label: std::iter::once(target.name())
            .chain(extra.iter().copied())
            .collect::<Vec<_>>()
            .join(" "),
        text_bytes,
        rodata_bytes,
        ..r
    })
}

/// The model's generated files in `lang` for one target and precision, and its weight
/// bytes as the kernels read them.
fn generate_timed(
    program: &Program,
    f32_program: Option<&F32Program>,
    target: Target,
    precision: Precision,
    lang: Lang,
    fusion: Fusion,
) -> Result<(Vec<irnn_codegen::back::GeneratedFile>, usize)> {
    let gen_opts = GenOptions {
        lang,
        target,
        unroll: Unroll::None,
        precision,
        fusion,
    };
    Ok(match (precision, f32_program) {
        (Precision::Int8, _) => (generate(program, &gen_opts)?, weight_bytes(program, target)),
        (Precision::F32, Some(fp)) => (
            irnn_codegen::back::generate_f32_program(fp, &gen_opts)?,
            irnn_codegen::back::float::weight_bytes(fp, target),
        ),
        (Precision::F32, None) => bail!("the f32 benchmark needs the dequantized model"),
    })
}

/// Runs a built harness (`cmd STEPS RUNS TIME_RUN`, which prints the median µs per step,
/// the run's median or −1, the best µs per step, a checksum, the median cycles per step,
/// the median clock in GHz (0 when unknown) and, from the Rust harness, the kernel the
/// model picked (`-` for f32)) and makes its row (no object sizes); a picked kernel
/// other than the target's own is named in the label.
fn timed_row(
    cmd: &mut Command,
    what: &str,
    target: Target,
    precision: Precision,
    opts: &BenchOptions,
    weight_bytes: usize,
) -> Result<BenchRow> {
    let time_run = precision == Precision::Int8;
    let out = run(
        cmd.arg(opts.steps.to_string())
            .arg(opts.runs.to_string())
            .arg(if time_run { "1" } else { "0" }),
        what,
    )?;
    let tokens: Vec<&str> = out.split_whitespace().collect();
    let fields: Vec<Option<f64>> = tokens.iter().take(6).map(|v| v.parse().ok()).collect();
    let &[Some(us_per_step), Some(run_us), Some(best_us_per_step), Some(_), Some(cycles), Some(ghz)] =
        fields.as_slice()
    else {
        bail!("unexpected benchmark output: {out:?}");
    };
    let known = ghz > 0.0;
    let label = match tokens.get(6) {
        Some(&k) if k != "-" && k != target.name() => format!("{} ({k} kernel)", target.name()),
        _ => target.name().to_string(),
    };
    Ok(BenchRow {
        target,
        label,
        precision,
        us_per_step,
        best_us_per_step,
        run_us_per_step: time_run.then_some(run_us),
        ghz: known.then_some(ghz),
        cycles_per_step: known.then_some(cycles),
        weight_bytes,
        text_bytes: 0,
        rodata_bytes: 0,
    })
}

const RUST_HARNESS: &str = r#"//! irnn bench: times the generated module `model`.
#![allow(clippy::all, dead_code)]
mod model;

use std::time::Instant;

/// The core clock in GHz (the C harness's `clock_ghz`): dependent 64-bit `imul`, 3
/// cycles each, best of 3 short runs; 0 off x86-64.
fn clock_ghz() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut v: u64 = 3;
            let t0 = Instant::now();
            for _ in 0..20000 {
                // SAFETY: register-only arithmetic, no memory, no flags read after.
                unsafe {
                    std::arch::asm!(
                        "imul {0}, {0}", "imul {0}, {0}", "imul {0}, {0}", "imul {0}, {0}",
                        "imul {0}, {0}", "imul {0}, {0}", "imul {0}, {0}", "imul {0}, {0}",
                        inout(reg) v,
                        options(nomem, nostack)
                    );
                }
            }
            best = best.min(t0.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(v);
        }
        20000.0 * 8.0 * 3.0 / best / 1e3
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0.0
    }
}

fn median_best(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[t.len() / 2], t[0])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args[1].parse().unwrap();
    let runs: usize = args[2].parse().unwrap();
    let time_run = args[3] == "1";
    let mut seed: u32 = 12345;
    let mut next = move || {
        seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
        seed >> 8
    };
    @INPUTS@
    let mut check = 0.0f64;
    let mut m = model::Model::new();
    for t in 0..steps / 4 + 1 {
        check += m.step(@ARG@)[0] as f64;
    }
    let mut times = Vec::with_capacity(runs);
    let mut cycles = Vec::with_capacity(runs);
    let mut clocks = Vec::with_capacity(runs);
    for _ in 0..runs {
        let ghz = clock_ghz();
        let t0 = Instant::now();
        for t in 0..steps {
            std::hint::black_box(m.step(@ARG@));
        }
        let us = t0.elapsed().as_secs_f64() * 1e6 / steps as f64;
        times.push(us);
        cycles.push(us * ghz * 1e3);
        clocks.push(ghz);
        check += m.step(@ARG0@)[0] as f64;
    }
    let (step_us, best_us) = median_best(times);
    let (step_cycles, ghz) = (median_best(cycles).0, median_best(clocks).0);
    let mut run_us = -1.0;
    if time_run {
        let seq: Vec<_> = (0..steps).map(|t| @SEQ@).collect();
        let mut ys = vec![[Default::default(); model::OUTPUT_SIZE]; steps];
        m.run(&seq, &mut ys);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t0 = Instant::now();
            m.run(&seq, &mut ys);
            times.push(t0.elapsed().as_secs_f64() * 1e6 / steps as f64);
            check += ys[0][0] as f64;
        }
        run_us = median_best(times).0;
    }
    let kernel = @KERNEL@;
    println!("{step_us:.6} {run_us:.6} {best_us:.6} {check} {step_cycles:.1} {ghz:.4} {kernel}");
}
"#;

/// The irnn-runtime sources the Rust benchmark builds against: `$IRNN_RUNTIME_DIR`, else
/// the `runtime/` directory of the source tree this `irnn` was built from.
pub fn runtime_dir() -> Result<std::path::PathBuf> {
    let dir = match std::env::var_os("IRNN_RUNTIME_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime"),
    };
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "irnn bench --lang rust builds the generated Rust against irnn-runtime, whose \
             sources are not at {} (set IRNN_RUNTIME_DIR to the runtime/ directory of the \
             irnn source tree)",
            dir.display()
        );
    }
    Ok(dir.canonicalize().unwrap_or(dir))
}

/// `-C target-feature` of a target for the Rust benchmark (the C flags' counterpart):
/// the int8 code detects its kernel at run time either way, the f32 code needs them for
/// FMA and wide vectors.
fn rust_target_features(target: Target) -> &'static str {
    target.info().rust_features
}

/// [`bench_target`] for the generated Rust: a scratch crate (the module, a timing
/// `main` like the C harness's, irnn-runtime with `std` by path) built with `cargo build
/// --release` and the target's `-C target-feature`s, run natively.
fn bench_target_rust(
    program: &Program,
    f32_program: Option<&F32Program>,
    target: Target,
    precision: Precision,
    opts: &BenchOptions,
) -> Result<BenchRow> {
    if !host_runs(target) {
        bail!(
            "irnn bench --lang rust runs only targets this CPU has; {} does not run here",
            target.name()
        );
    }
    let runtime = runtime_dir()?;
    let (files, weight_bytes) = generate_timed(
        program,
        f32_program,
        target,
        precision,
        Lang::Rust,
        opts.fusion,
    )?;
    let module = files
        .iter()
        .find(|f| f.name.ends_with(".rs"))
        .context("the Rust back end wrote no .rs file")?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).with_context(|| format!("{}: cannot create", src.display()))?;
    let cargo_toml = format!(
        "[package]\nname = \"irnn-bench\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nirnn-runtime = {{ path = {:?}, features = [\"std\"] }}\n\n\
         [profile.release]\nopt-level = 3\ndebug = false\n\n[workspace]\n",
        runtime.display().to_string()
    );
    let tokens = matches!(program.input, InputIr::Tokens { .. });
    let (inputs, arg, arg0, seq) = match (tokens, precision) {
        (true, _) => (
            "let inputs: Vec<u32> = (0..4096).map(|_| next() % model::VOCAB_SIZE as u32).collect();",
            "inputs[t % 4096]",
            "inputs[0]",
            "inputs[t % 4096]",
        ),
        (false, Precision::Int8) => (
            "let inputs: Vec<[i8; model::INPUT_SIZE]> = (0..256).map(|_| { let mut x = [0i8; model::INPUT_SIZE]; for v in x.iter_mut() { *v = ((next() & 255) as i32 - 128) as i8; } x }).collect();",
            "&inputs[t % 256]",
            "&inputs[0]",
            "inputs[t % 256]",
        ),
        (false, Precision::F32) => (
            "let inputs: Vec<[f32; model::INPUT_SIZE]> = (0..256).map(|_| { let mut x = [0f32; model::INPUT_SIZE]; for v in x.iter_mut() { *v = ((next() & 255) as i32 - 128) as f32 / 64.0; } x }).collect();",
            "&inputs[t % 256]",
            "&inputs[0]",
            "inputs[t % 256]",
        ),
    };
    // The int8 model of a SIMD target reports the kernel `Model::new` picked (AVX-VNNI
    // for avx2's layout where the CPU has it); scalar and f32 code have none.
    let kernel = if precision == Precision::Int8 && target != Target::Scalar {
        "m.kernel().isa().name()"
    } else {
        "\"-\""
    };
    let main = RUST_HARNESS
        .replace("@KERNEL@", kernel)
        .replace("@INPUTS@", inputs)
        .replace("@ARG0@", arg0)
        .replace("@ARG@", arg)
        .replace("@SEQ@", seq);
    for (path, text) in [
        (dir.path().join("Cargo.toml"), cargo_toml.as_str()),
        (src.join("main.rs"), main.as_str()),
        (src.join("model.rs"), module.contents.as_str()),
    ] {
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let target_dir = dir.path().join("target");
    let mut rustflags = String::new();
    if !rust_target_features(target).is_empty() {
        rustflags = format!("-C target-feature={}", rust_target_features(target));
    }
    run(
        Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "--offline",
                "--manifest-path",
            ])
            .arg(dir.path().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", &rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        &format!("{cargo} build (the Rust benchmark)"),
    )?;
    let exe = target_dir
        .join("release")
        .join(format!("irnn-bench{}", std::env::consts::EXE_SUFFIX));
    timed_row(
        &mut Command::new(&exe),
        "the Rust benchmark",
        target,
        precision,
        opts,
        weight_bytes,
    )
}

/// Whether this CPU runs `target`'s SIMD code natively (`Scalar`: always).
pub fn host_runs(target: Target) -> bool {
    match target {
        Target::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Target::Avx2 => std::is_x86_feature_detected!("avx2"),
        #[cfg(target_arch = "x86_64")]
        Target::Avx512Vnni => {
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(target_arch = "aarch64")]
        Target::Neon => std::arch::is_aarch64_feature_detected!("neon"),
        #[cfg(target_arch = "aarch64")]
        Target::NeonDotprod => std::arch::is_aarch64_feature_detected!("dotprod"),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Scalar, then each SIMD target this CPU can run.
pub fn default_targets() -> Vec<Target> {
    Target::ALL.into_iter().filter(|&t| host_runs(t)).collect()
}

/// Times every requested target in every requested precision (rows in target order,
/// precisions in the given order within a target). `f32_program` is the dequantized
/// model ([`F32Program::from_graph`]); it is needed only when `opts.precisions` has f32.
pub fn bench(
    program: &Program,
    f32_program: Option<&F32Program>,
    opts: &BenchOptions,
) -> Result<Vec<BenchRow>> {
    if opts.runs == 0 || opts.runs > 101 || opts.steps == 0 {
        bail!("--runs must be in 1..=101 and --steps at least 1");
    }
    if opts.precisions.is_empty() {
        bail!("no precision to time (--precision int8,f32)");
    }
    let mut rows = Vec::new();
    let bar = crate::progress::bar((opts.targets.len() * opts.precisions.len()) as u64, "bench");
    for &t in &opts.targets {
        for &pr in &opts.precisions {
            bar.set_message(format!("{} {}", t.name(), pr.name()));
            rows.push(bench_target(program, f32_program, t, pr, opts)?);
            bar.inc(1);
            // The avx2 C again with AVX-VNNI's kernels, where this CPU runs them.
            if t == Target::Avx2
                && pr == Precision::Int8
                && opts.lang == Lang::C
                && host_has_avx_vnni()
            {
                rows.push(bench_target_with(
                    program,
                    f32_program,
                    t,
                    pr,
                    opts,
                    &[AVX_VNNI_FLAG],
                )?);
            }
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The result as a Markdown table; `ratio` is each row's speed-up over the first row.
pub fn table(program: &Program, rows: &[BenchRow]) -> String {
    let shape = program
        .layers
        .iter()
        .map(LayerIr::summary)
        .collect::<Vec<_>>()
        .join(", ");
    let input = match program.input {
        InputIr::Tokens { vocab_size } => format!("tokens ({vocab_size})"),
        InputIr::Features { size, .. } => format!("features ({size})"),
    };
    let mut s = format!("model \"{}\": {input}; {shape}\n\n", program.name);
    s.push_str("| target | precision | µs/step | best µs/step | run µs/step | run speed-up vs step | GHz | cycles/step | MAC/cycle | speed-up vs first row | int8 speed-up vs f32 (same target) | weight bytes | .text bytes | .rodata bytes |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let macs = macs_per_step(program) as f64;
    let base = rows.first().map(|r| r.us_per_step).unwrap_or(1.0);
    for r in rows {
        let vs_f32 = match r.precision {
            Precision::Int8 => rows
                .iter()
                .find(|f| f.target == r.target && f.precision == Precision::F32)
                .map(|f| format!("{:.2}", f.us_per_step / r.us_per_step))
                .unwrap_or_else(|| "-".to_string()),
            Precision::F32 => "-".to_string(),
        };
        let (run_us, run_gain) = match r.run_us_per_step {
            Some(v) => (format!("{v:.3}"), format!("{:.2}", r.us_per_step / v)),
            None => ("-".to_string(), "-".to_string()),
        };
        let size = |b: u64| {
            if b == 0 {
                "-".to_string()
            } else {
                b.to_string()
            }
        };
        let (ghz, cycles, per_cycle) = match (r.ghz, r.cycles_per_step) {
            (Some(g), Some(c)) if !emulated(r.target) => (
                format!("{g:.2}"),
                format!("{c:.0}"),
                format!("{:.1}", macs / c),
            ),
            _ => ("-".to_string(), "-".to_string(), "-".to_string()),
        };
        s.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {run_us} | {run_gain} | {ghz} | {cycles} | {per_cycle} | {:.2} | {} | {} | {} | {} |\n",
            r.label,
            r.precision.name(),
            r.us_per_step,
            r.best_us_per_step,
            base / r.us_per_step,
            vs_f32,
            r.weight_bytes,
            size(r.text_bytes),
            size(r.rodata_bytes)
        ));
    }
    if rows.iter().any(|r| emulated(r.target)) {
        s.push_str(&format!(
            "\n{} ran under {}: their times are meaningless.\n",
            rows.iter()
                .filter(|r| emulated(r.target))
                .map(|r| r.target.name())
                .collect::<Vec<_>>()
                .join(", "),
            AARCH64_RUNNER.join(" ")
        ));
    }
    s
}
