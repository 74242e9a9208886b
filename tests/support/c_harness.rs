//! The C test harness shared by `gen_c.rs` and `gen_simd.rs`: locating the C
//! compilers, writing the generated files, building a small C program around a
//! generated model, running it over input sequences, and comparing its int32 outputs
//! with the interpreter's.

use irnn_codegen::back::GeneratedFile;
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::Program;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The flags every generated file must compile cleanly with.
pub const STRICT: &[&str] = &[
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Wconversion",
    "-Wsign-conversion",
    "-Wshadow",
    "-Wvla",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Wdeclaration-after-statement",
];

/// The C identifier prefix of a program's generated code.
pub fn prefix(program: &Program) -> String {
    irnn_codegen::back::names::sanitize(&program.name)
}

// ---------------------------------------------------------------------------------
// Compilers
// ---------------------------------------------------------------------------------

/// Whether `tool --version` runs (cached per tool name).
fn tool_runs(tool: &str) -> bool {
    static FOUND: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
    *found.entry(tool.to_string()).or_insert_with(|| {
        Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// What to install when a tool is missing.
fn install_hint(tool: &str) -> &'static str {
    if tool.starts_with("aarch64-") || tool.starts_with("qemu-") {
        "the AArch64 tests need the cross compiler and qemu user mode: run the install \
         step of .ci/run (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
         qemu-user); outside CI, IRNN_SKIP_CROSS=1 skips them"
    } else {
        "the generated-C tests need both gcc and clang on PATH (apt-get install gcc clang)"
    }
}

/// A required tool (C compiler or emulator); panics with a clear message when missing.
pub fn compiler(name: &str) -> &str {
    if !tool_runs(name) {
        panic!(
            "`{name}` is not installed or does not run; {}",
            install_hint(name)
        );
    }
    name
}

/// How the harness is built and run: a C compiler, flags it always gets, and a
/// command prefix that runs the program (an emulator for cross builds).
#[derive(Clone, Copy, Debug)]
pub struct Toolchain {
    /// The C compiler command.
    pub cc: &'static str,
    /// Flags added to every harness build (before the caller's).
    pub flags: &'static [&'static str],
    /// Command prefix of the built program; empty for native runs.
    pub runner: &'static [&'static str],
}

impl Toolchain {
    /// A native compiler (`gcc` or `clang`), programs run directly.
    pub fn native(cc: &'static str) -> Self {
        Toolchain {
            cc,
            flags: &[],
            runner: &[],
        }
    }

    /// AArch64 Linux: `aarch64-linux-gnu-gcc -static`, run under `qemu-aarch64 -cpu max`
    /// (every extension, dot product included). Static linking needs no `-L` sysroot.
    pub const AARCH64: Toolchain = Toolchain {
        cc: "aarch64-linux-gnu-gcc",
        flags: &["-static"],
        runner: &["qemu-aarch64", "-cpu", "max"],
    };

    /// Label for messages: `cc` plus the runner.
    pub fn label(&self) -> String {
        if self.runner.is_empty() {
            self.cc.to_string()
        } else {
            format!("{} (under {})", self.cc, self.runner.join(" "))
        }
    }
}

/// Whether the AArch64 cross tests run (the policy of [`super::skip::cross_tools`]):
/// the cross compiler and qemu must be installed, a missing one fails the test with what
/// to install; outside CI, `IRNN_SKIP_CROSS=1` skips them.
pub fn cross_enabled(test: &str) -> bool {
    let tools = [Toolchain::AARCH64.cc, Toolchain::AARCH64.runner[0]];
    let missing: Vec<&str> = tools.into_iter().filter(|t| !tool_runs(t)).collect();
    super::skip::cross_tools(test, &missing)
}

/// The bare-metal Arm compiler of the Cortex-M targets.
pub const ARM_NONE_EABI_CC: &str = "arm-none-eabi-gcc";

/// Whether the tests that build for Cortex-M run: `arm-none-eabi-gcc` is there, or
/// the skip policy allows skipping (`support::skip::cross_tools`).
pub fn cortex_m_enabled(test: &str) -> bool {
    let missing: Vec<&str> = [ARM_NONE_EABI_CC]
        .into_iter()
        .filter(|t| !tool_runs(t))
        .collect();
    super::skip::cross_tools(test, &missing)
}

/// Runs `cc args...` and panics with the compiler output on failure.
pub fn cc<S: AsRef<str>>(cc: &str, args: &[S], what: &str) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = Command::new(compiler(cc))
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on {what}:\n{cc} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the generated files into `dir`; returns the paths of the `.h` and the `.c`.
pub fn write_files(dir: &Path, files: &[GeneratedFile]) -> (PathBuf, PathBuf) {
    let mut h = None;
    let mut c = None;
    for f in files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.contents).expect("write generated file");
        if f.name.ends_with(".h") {
            h = Some(path);
        } else if f.name.ends_with(".c") {
            c = Some(path);
        }
    }
    (h.expect("a .h file"), c.expect("a .c file"))
}

// ---------------------------------------------------------------------------------
// The harness: reads sequences from a binary file, writes the int32 outputs
// ---------------------------------------------------------------------------------

/// Input file: int32 n_seq; per sequence: int32 n_steps, then the inputs (int32 token
/// ids, or INPUT_SIZE int8 features per step). Output file: the int32 outputs of every
/// step, in order. Sequence `s` goes through `step` (s % 3 == 0), through one `run`
/// (s % 3 == 1), or (s % 3 == 2) through `run` over its first third, `step` for up to 3
/// steps, then `run` over the rest (state carried across the calls); the state starts
/// as garbage so that `reset` must initialize all of it.
pub const HARNESS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "@F@.h"

static void die(const char *msg)
{
    fprintf(stderr, "harness: %s\n", msg);
    exit(2);
}

static int32_t read_i32(FILE *f)
{
    int32_t v;
    if (fread(&v, sizeof v, 1, f) != 1) {
        die("short read");
    }
    return v;
}

int main(int argc, char **argv)
{
    FILE *in;
    FILE *out;
    int32_t n_seq, s, t;
    @P@_state_t *st;
    if (argc != 3) {
        die("usage: harness IN OUT");
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) {
        die("cannot open files");
    }
    st = (@P@_state_t *)malloc(sizeof *st);
    if (!st) {
        die("out of memory");
    }
    memset(st, 0xA5, sizeof *st);
    n_seq = read_i32(in);
    for (s = 0; s < n_seq; ++s) {
        const int32_t n_steps = read_i32(in);
        const size_t steps = (size_t)n_steps;
        int32_t *y = (int32_t *)malloc((steps + 1) * @PU@_OUTPUT_SIZE * sizeof(int32_t));
#ifdef @PU@_VOCAB_SIZE
        int32_t *x = (int32_t *)malloc((steps + 1) * sizeof(int32_t));
        if (!x || fread(x, sizeof(int32_t), steps, in) != steps) {
            die("short read of tokens");
        }
#else
        int8_t *x = (int8_t *)malloc((steps + 1) * @PU@_INPUT_SIZE);
        if (!x || fread(x, (size_t)@PU@_INPUT_SIZE, steps, in) != steps) {
            die("short read of features");
        }
#endif
        if (!y) {
            die("out of memory");
        }
        @P@_reset(st);
        if (s % 3 == 1) {
            @P@_run(st, x, n_steps, y);
        } else {
            const int32_t a = s % 3 == 0 ? 0 : n_steps / 3;
            const int32_t b = s % 3 == 0 ? n_steps : (a + 3 < n_steps ? a + 3 : n_steps);
#ifdef @PU@_VOCAB_SIZE
#define @PU@_AT(t) (x + (size_t)(t))
#define @PU@_ONE(t) x[t]
#else
#define @PU@_AT(t) (x + (size_t)(t) * @PU@_INPUT_SIZE)
#define @PU@_ONE(t) @PU@_AT(t)
#endif
            @P@_run(st, x, a, y);
            for (t = a; t < b; ++t) {
                @P@_step(st, @PU@_ONE(t), y + (size_t)t * @PU@_OUTPUT_SIZE);
            }
            @P@_run(st, @PU@_AT(b), n_steps - b, y + (size_t)b * @PU@_OUTPUT_SIZE);
        }
        if (fwrite(y, sizeof(int32_t), steps * @PU@_OUTPUT_SIZE, out) != steps * @PU@_OUTPUT_SIZE) {
            die("short write");
        }
        free(x);
        free(y);
    }
    free(st);
    fclose(in);
    return fclose(out) == 0 ? 0 : 1;
}
"#;

/// One sequence of inputs.
#[derive(Clone, Debug)]
pub enum Seq {
    Tokens(Vec<i32>),
    Features(Vec<Vec<i8>>),
}

impl Seq {
    pub fn len(&self) -> usize {
        match self {
            Seq::Tokens(t) => t.len(),
            Seq::Features(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The harness's input file for `seqs`.
pub fn encode(seqs: &[Seq]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(seqs.len() as i32).to_le_bytes());
    for s in seqs {
        b.extend_from_slice(&(s.len() as i32).to_le_bytes());
        match s {
            Seq::Tokens(t) => t.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes())),
            Seq::Features(f) => f.iter().flatten().for_each(|v| b.push(*v as u8)),
        }
    }
    b
}

/// A compiled harness around one generated model.
pub struct Harness {
    dir: tempfile::TempDir,
    exe: PathBuf,
    runner: &'static [&'static str],
}

/// Compiles [`HARNESS`] with the generated C at `-std=c99 -Wall -Wextra -Werror -O1`
/// plus `extra`, with a native compiler (`gcc` or `clang`).
pub fn build_harness(
    files: &[GeneratedFile],
    program: &Program,
    cc_name: &str,
    extra: &[&str],
) -> Harness {
    let tc = match cc_name {
        "gcc" => Toolchain::native("gcc"),
        "clang" => Toolchain::native("clang"),
        other => panic!("build_harness: unknown native compiler {other}"),
    };
    build_harness_with(files, program, &tc, extra)
}

/// [`build_harness`] with any [`Toolchain`].
pub fn build_harness_with(
    files: &[GeneratedFile],
    program: &Program,
    tc: &Toolchain,
    extra: &[&str],
) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, c) = write_files(dir.path(), files);
    let p = prefix(program);
    let harness = dir.path().join("harness.c");
    std::fs::write(
        &harness,
        HARNESS
            .replace("@PU@", &irnn_codegen::back::names::upper(&p))
            .replace("@F@", &irnn_codegen::back::names::file_stem(&p))
            .replace("@P@", &p),
    )
    .expect("write harness");
    let exe = dir.path().join("harness");
    let mut args: Vec<&str> = vec!["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1"];
    args.extend_from_slice(tc.flags);
    args.extend_from_slice(extra);
    // No -I for the output directory: `#include "NAME.h"` finds it next to the including
    // file, and a model named like a system header (the shipped `features` model and
    // glibc's <features.h>) must not shadow it.
    let (c_s, h_s, e_s) = (
        c.display().to_string(),
        harness.display().to_string(),
        exe.display().to_string(),
    );
    args.extend_from_slice(&[&c_s, &h_s, "-o", &e_s]);
    cc(tc.cc, &args, &format!("the harness of {}", program.name));
    Harness {
        dir,
        exe,
        runner: tc.runner,
    }
}

impl Harness {
    /// Runs the harness on `seqs`; one output vector (of `out_size` values) per step.
    pub fn run(&self, seqs: &[Seq], out_size: usize) -> Vec<Vec<i32>> {
        let input = self.dir.path().join("in.bin");
        let output = self.dir.path().join("out.bin");
        std::fs::write(&input, encode(seqs)).expect("write input");
        let mut cmd = match self.runner.split_first() {
            Some((emulator, args)) => {
                let mut c = Command::new(compiler(emulator));
                c.args(args).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        let out = cmd.arg(&input).arg(&output).output().expect("harness runs");
        assert!(
            out.status.success(),
            "the harness failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&output).expect("read output");
        let values: Vec<i32> = bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        assert_eq!(values.len(), total * out_size, "harness output length");
        values.chunks(out_size).map(|c| c.to_vec()).collect()
    }
}

/// Builds the harness around the generated C and runs it on `seqs`.
pub fn run_c(
    program: &Program,
    files: &[GeneratedFile],
    cc_name: &str,
    flags: &[&str],
    seqs: &[Seq],
) -> Vec<Vec<i32>> {
    build_harness(files, program, cc_name, flags).run(seqs, program.output.size)
}

/// [`run_c`] with any [`Toolchain`].
pub fn run_c_with(
    program: &Program,
    files: &[GeneratedFile],
    tc: &Toolchain,
    flags: &[&str],
    seqs: &[Seq],
) -> Vec<Vec<i32>> {
    build_harness_with(files, program, tc, flags).run(seqs, program.output.size)
}

// ---------------------------------------------------------------------------------
// Expected outputs from the interpreter
// ---------------------------------------------------------------------------------

/// The interpreter's outputs, one vector per step, the state reset at the start of
/// every sequence. Panics on a token id the interpreter refuses.
pub fn expected(program: &Program, seqs: &[Seq]) -> Vec<Vec<i32>> {
    let mut it = Interpreter::new(program);
    let mut out = Vec::new();
    for s in seqs {
        it.reset();
        match s {
            Seq::Tokens(tokens) => {
                for &t in tokens {
                    out.push(it.step_token(t as i64).expect("interpreter step").to_vec());
                }
            }
            Seq::Features(frames) => {
                for f in frames {
                    out.push(it.step_features(f).expect("interpreter step").to_vec());
                }
            }
        }
    }
    out
}

/// Asserts that the C outputs equal the interpreter's, naming the first differing
/// sequence and step.
pub fn assert_same(got: &[Vec<i32>], want: &[Vec<i32>], seqs: &[Seq], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of steps");
    let mut step = 0usize;
    for (s, seq) in seqs.iter().enumerate() {
        for t in 0..seq.len() {
            assert_eq!(
                got[step], want[step],
                "{what}: sequence {s}, step {t}: C output differs from the interpreter"
            );
            step += 1;
        }
    }
}
