//! Bare-metal Cortex-M test infrastructure: building generated C into firmware for
//! QEMU's emulated boards, running it, counting its instructions, and checking compiled
//! model objects for floating point and for their sizes.
//!
//! The firmware reuses the startup code, semihosting, `mem.c` and linker scripts of
//! `examples/cortex-m/` (so the example is what the tests run), around a test `main`
//! written here with the inputs compiled in:
//!
//! - [`build_firmware`] + [`run`]: every sequence from a reset state (the state filled
//!   with garbage first), even sequences through `NAME_step`, odd ones through one
//!   `NAME_run`; every step's outputs printed over semihosting, parsed back by [`run`].
//! - [`build_bench_firmware`] + [`insns_per_step`]: N steps (N from the semihosting
//!   command line, `-append N`), nothing printed; the instructions of a run with N
//!   steps minus those of a run with 0 steps, over N, counted by the QEMU plugin of
//!   `tools/qemu-insn-count` ([`count_insns`]).
//! - [`integer_only`], [`symbol_sizes`], [`section_sizes`]: `objdump`, `nm`, `size` of a
//!   compiled model object.
//!
//! Tools: `arm-none-eabi-{gcc,objdump,nm,size,readelf}`, `qemu-system-arm`, and `make`
//! and the host `cc` for the plugin; [`tools_or_skip`] applies the skip policy.

use super::c_harness::{Seq, STRICT};
use irnn_codegen::back::names;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An emulated board and how code is compiled for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// `qemu-system-arm -M` machine.
    pub machine: &'static str,
    /// `-mcpu` of the compiler (the code; the emulated core may be a superset, as the
    /// Cortex-M3 of mps2-an385 runs Cortex-M0 code).
    pub cpu: &'static str,
    /// `-mfloat-abi`: `soft` except where intrinsics need `hard` (MVE on the M55).
    pub float_abi: &'static str,
    /// The linker script in `examples/cortex-m/ld/`.
    pub linker_script: &'static str,
}

impl Board {
    /// `machine/cpu`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{}", self.machine, self.cpu)
    }

    /// Code generation flags: `-mthumb -mcpu=... -mfloat-abi=...`.
    pub fn arch_flags(&self) -> Vec<String> {
        vec![
            "-mthumb".to_string(),
            format!("-mcpu={}", self.cpu),
            format!("-mfloat-abi={}", self.float_abi),
        ]
    }
}

/// Armv6-M (Thumb-1) code on the Cortex-M3 board.
pub const AN385_M0: Board = Board {
    machine: "mps2-an385",
    cpu: "cortex-m0",
    float_abi: "soft",
    linker_script: "mps2-an385.ld",
};
/// Cortex-M3.
pub const AN385_M3: Board = Board {
    machine: "mps2-an385",
    cpu: "cortex-m3",
    float_abi: "soft",
    linker_script: "mps2-an385.ld",
};
/// Cortex-M4 (DSP), soft-float ABI.
pub const AN386_M4: Board = Board {
    machine: "mps2-an386",
    cpu: "cortex-m4",
    float_abi: "soft",
    linker_script: "mps2-an386.ld",
};
/// Cortex-M7 (DSP), soft-float ABI.
pub const AN500_M7: Board = Board {
    machine: "mps2-an500",
    cpu: "cortex-m7",
    float_abi: "soft",
    linker_script: "mps2-an500.ld",
};
/// Cortex-M55 (Helium/MVE): the hard-float ABI, which GCC's `arm_mve.h` requires and
/// the only MVE multilib of Debian's toolchain has; the startup code turns the FPU and
/// MVE on.
pub const AN547_M55: Board = Board {
    machine: "mps3-an547",
    cpu: "cortex-m55",
    float_abi: "hard",
    linker_script: "mps3-an547.ld",
};

/// Every board configuration.
pub const BOARDS: [Board; 5] = [AN385_M0, AN385_M3, AN386_M4, AN500_M7, AN547_M55];

/// The cross compiler.
pub const CC: &str = "arm-none-eabi-gcc";
/// The emulator.
pub const QEMU: &str = "qemu-system-arm";
const TOOLS: [&str; 8] = [
    CC,
    "arm-none-eabi-objdump",
    "arm-none-eabi-nm",
    "arm-none-eabi-size",
    "arm-none-eabi-readelf",
    QEMU,
    "make",
    "cc",
];

/// How long one firmware run may take before it counts as hung.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the Cortex-M tests run: every tool present (a missing one fails the test
/// with what to install), unless `IRNN_SKIP_CROSS=1` outside CI (see `skip.rs`).
pub fn tools_or_skip(what: &str) -> bool {
    static MISSING: OnceLock<Vec<&'static str>> = OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        TOOLS
            .into_iter()
            .filter(|t| {
                !Command::new(t)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .collect()
    });
    super::skip::cortex_m_tools(what, missing)
}

/// `examples/cortex-m/`.
pub fn example_dir() -> PathBuf {
    super::repo_root().join("examples/cortex-m")
}

/// Runs `cmd`; panics with its output when it fails. Returns stdout.
fn checked(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{cmd:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------
// Firmware
// ---------------------------------------------------------------------------------

/// A built firmware: the ELF, and the model object it links (for [`integer_only`],
/// [`symbol_sizes`], [`section_sizes`]).
pub struct Firmware {
    /// Keeps the build directory alive.
    pub dir: tempfile::TempDir,
    /// The board it was built for.
    pub board: Board,
    /// The linked firmware.
    pub elf: PathBuf,
    /// The generated model's `.c` compiled alone (`-O2`, the board's flags).
    pub model_obj: PathBuf,
}

/// Marker of an output line of the test firmware.
const OUT_MARK: &str = "irnn-out:";
/// Last line of a complete run.
const DONE_MARK: &str = "irnn-done";

/// The test `main`: @INPUTS@ is the input array and @LENS@ the sequence lengths; @F@,
/// @P@ and @PU@ the file stem and the prefixes.
const TEST_MAIN: &str = r#"
#include <stdint.h>
#include "semihost.h"
#include "@F@.h"

#define OUT_SIZE @PU@_OUTPUT_SIZE
#ifdef @PU@_VOCAB_SIZE
typedef int32_t input_t;
#define PER_STEP 1
#define AT(x, t) ((x)[t])
#else
typedef int8_t input_t;
#define PER_STEP @PU@_INPUT_SIZE
#define AT(x, t) ((x) + (t) * PER_STEP)
#endif

static const input_t inputs[] = {@INPUTS@};
static const int32_t lens[] = {@LENS@};
#define N_SEQ @N_SEQ@
#define MAX_LEN @MAX_LEN@

static @P@_state_t state;
static int32_t out[MAX_LEN * OUT_SIZE];
static char line[16 + 12 * OUT_SIZE];

static void print_step(const int32_t *y)
{
    char *p = line;
    const char *m = "@MARK@";
    int32_t k;
    while (*m) {
        *p++ = *m++;
    }
    for (k = 0; k < OUT_SIZE; ++k) {
        char digits[12];
        int n = 0;
        uint32_t u = y[k] < 0 ? 0u - (uint32_t)y[k] : (uint32_t)y[k];
        do {
            digits[n++] = (char)('0' + u % 10u);
            u /= 10u;
        } while (u != 0u);
        *p++ = ' ';
        if (y[k] < 0) {
            *p++ = '-';
        }
        while (n > 0) {
            *p++ = digits[--n];
        }
    }
    *p++ = '\n';
    *p = '\0';
    semihost_puts(line);
}

int main(void)
{
    const input_t *x = inputs;
    int32_t s, t;
    for (s = 0; s < N_SEQ; ++s) {
        const int32_t n = lens[s];
        unsigned char *b = (unsigned char *)&state;
        uint32_t i;
        /* Garbage first: reset must set all of the state. */
        for (i = 0; i < sizeof state; ++i) {
            b[i] = 0xA5u;
        }
        @P@_reset(&state);
        if (s % 2 == 0) {
            for (t = 0; t < n; ++t) {
                @P@_step(&state, AT(x, t), out + t * OUT_SIZE);
            }
        } else {
            @P@_run(&state, x, n, out);
        }
        for (t = 0; t < n; ++t) {
            print_step(out + t * OUT_SIZE);
        }
        x += n * PER_STEP;
    }
    semihost_puts("@DONE@\n");
    return 0;
}
"#;

/// The C initializer of the inputs of `seqs`, concatenated.
fn c_inputs(seqs: &[Seq]) -> String {
    let mut vals: Vec<String> = Vec::new();
    for s in seqs {
        match s {
            Seq::Tokens(t) => vals.extend(t.iter().map(|v| {
                // INT32_MIN is not a C literal.
                if *v == i32::MIN {
                    "INT32_MIN".to_string()
                } else {
                    v.to_string()
                }
            })),
            Seq::Features(f) => vals.extend(f.iter().flatten().map(|v| v.to_string())),
        }
    }
    if vals.is_empty() {
        // C has no empty initializers; nothing reads this element.
        vals.push("0".to_string());
    }
    vals.chunks(24)
        .map(|c| c.join(", "))
        .collect::<Vec<_>>()
        .join(",\n    ")
}

/// The generated `.c` in `generated` for `prefix`.
fn generated_c(generated: &Path, prefix: &str) -> PathBuf {
    let c = generated.join(format!("{}.c", names::file_stem(prefix)));
    assert!(
        c.is_file(),
        "no generated {} in {}",
        c.display(),
        generated.display()
    );
    c
}

/// Compiles the model (the generated C in `generated` for `prefix`) and `main_src` for
/// `board` and links them with the example's startup code, semihosting and `mem.c`.
pub fn build_with_main(
    board: &Board,
    generated: &Path,
    prefix: &str,
    main_src: &str,
    what: &str,
) -> Firmware {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = example_dir();
    let arch = board.arch_flags();
    let base = |cmd: &mut Command| {
        cmd.args(&arch).args([
            "-O2",
            "-ffreestanding",
            "-ffunction-sections",
            "-fdata-sections",
        ]);
    };

    let model_obj = dir.path().join("model.o");
    let mut cmd = Command::new(CC);
    base(&mut cmd);
    cmd.args(STRICT)
        .arg("-c")
        .arg(generated_c(generated, prefix))
        .arg("-o")
        .arg(&model_obj);
    checked(
        cmd,
        &format!("{what}: compiling the model for {}", board.label()),
    );

    let main_c = dir.path().join("main.c");
    std::fs::write(&main_c, main_src).expect("write main.c");
    let elf = dir.path().join("fw.elf");
    let mut cmd = Command::new(CC);
    base(&mut cmd);
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
        // -iquote: a model named like a system header must not shadow it.
        .arg("-iquote")
        .arg(generated)
        .arg("-iquote")
        .arg(&ex)
        .args(["-nostdlib", "-Wl,--gc-sections"])
        .arg(format!("-L{}", ex.join("ld").display()))
        .arg(format!("-T{}", board.linker_script))
        .arg(ex.join("startup.c"))
        .arg(ex.join("semihost.c"))
        .arg(ex.join("mem.c"))
        .arg(&main_c)
        .arg(&model_obj)
        .args(["-lgcc", "-o"])
        .arg(&elf);
    checked(
        cmd,
        &format!("{what}: building the firmware for {}", board.label()),
    );
    Firmware {
        dir,
        board: *board,
        elf,
        model_obj,
    }
}

fn fill(template: &str, prefix: &str) -> String {
    template
        .replace("@PU@", &names::upper(prefix))
        .replace("@F@", &names::file_stem(prefix))
        .replace("@P@", prefix)
}

/// Firmware that runs the generated model in `generated` (NAME.h and NAME.c, C prefix
/// `prefix`) over `seqs` and prints every step's outputs; see the module doc.
pub fn build_firmware(board: &Board, generated: &Path, prefix: &str, seqs: &[Seq]) -> Firmware {
    let max_len = seqs.iter().map(Seq::len).max().unwrap_or(0).max(1);
    let lens: Vec<String> = seqs.iter().map(|s| s.len().to_string()).collect();
    let src = fill(TEST_MAIN, prefix)
        .replace("@INPUTS@", &c_inputs(seqs))
        .replace(
            "@LENS@",
            &if lens.is_empty() {
                "0".to_string()
            } else {
                lens.join(", ")
            },
        )
        .replace("@N_SEQ@", &seqs.len().to_string())
        .replace("@MAX_LEN@", &max_len.to_string())
        .replace("@MARK@", OUT_MARK)
        .replace("@DONE@", DONE_MARK);
    build_with_main(board, generated, prefix, &src, prefix)
}

/// Firmware that steps the model through `inputs` (cycling) as many times as the
/// semihosting command line says, printing nothing: for [`insns_per_step`].
pub fn build_bench_firmware(
    board: &Board,
    generated: &Path,
    prefix: &str,
    inputs: &Seq,
) -> Firmware {
    assert!(!inputs.is_empty(), "bench firmware: no inputs");
    // examples/cortex-m/bench.c, the firmware `irnn bench` counts too, with its inputs
    // in bench_inputs.h beside the generated files.
    let header = format!(
        "#define BENCH_LEN {}\nstatic const bench_input_t bench_inputs[] = {{{}}};\n",
        inputs.len(),
        c_inputs(std::slice::from_ref(inputs))
    );
    std::fs::write(generated.join("bench_inputs.h"), header).expect("write bench_inputs.h");
    let token = matches!(inputs, Seq::Tokens(_));
    let src = fill(
        &format!(
            "#define IRNN_HEADER \"@F@.h\"\n#define IRNN_PREFIX @P@_\n\
             #define IRNN_PREFIX_UPPER @PU@_\n{}#include \"bench.c\"\n",
            if token {
                "#define IRNN_TOKEN_INPUT\n"
            } else {
                ""
            }
        ),
        prefix,
    );
    build_with_main(board, generated, prefix, &src, &format!("{prefix} (bench)"))
}

// ---------------------------------------------------------------------------------
// Running under QEMU
// ---------------------------------------------------------------------------------

/// What a QEMU run printed (semihosting output goes to stderr with QEMU 7.2, to stdout
/// with other versions or settings: both are kept) and how it ended.
pub struct RunOutput {
    /// Exit status of QEMU: the firmware's exit status.
    pub status: std::process::ExitStatus,
    /// stdout then stderr.
    pub text: String,
}

/// Runs `elf` on `board` with extra QEMU arguments; an error when it does not exit
/// within `timeout` (QEMU is then killed).
pub fn run_qemu(
    board: &Board,
    elf: &Path,
    extra: &[String],
    timeout: Duration,
) -> Result<RunOutput, String> {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-M", board.machine, "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(extra)
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {QEMU}: {e}"));
    let mut pipe_out = child.stdout.take().expect("stdout");
    let mut pipe_err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = pipe_out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = pipe_err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for qemu") {
            break Some(st);
        }
        if start.elapsed() > timeout {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text = String::from_utf8_lossy(&t_out.join().expect("stdout reader")).into_owned();
    text.push_str(&String::from_utf8_lossy(
        &t_err.join().expect("stderr reader"),
    ));
    let Some(status) = status else {
        return Err(format!(
            "{} on {}: no exit after {timeout:?} (hung firmware?); output so far:\n{}",
            elf.display(),
            board.label(),
            tail(&text)
        ));
    };
    Ok(RunOutput { status, text })
}

/// The last lines of a long output, for messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(30);
    lines[from..].join("\n")
}

/// Runs a [`build_firmware`] firmware; returns the outputs of every step, in order,
/// concatenated. Panics on a nonzero exit status, a timeout or an incomplete output.
pub fn run(board: &Board, elf: &Path) -> Vec<i32> {
    try_run(board, elf).unwrap_or_else(|e| panic!("{e}"))
}

/// [`run`], returning the failure instead of panicking.
pub fn try_run(board: &Board, elf: &Path) -> Result<Vec<i32>, String> {
    let out = run_qemu(board, elf, &[], RUN_TIMEOUT)?;
    let whence = || format!("{} on {}", elf.display(), board.label());
    if !out.status.success() {
        return Err(format!(
            "{}: ended with {} (status 3: a fault, see the output):\n{}",
            whence(),
            out.status,
            tail(&out.text)
        ));
    }
    if !out.text.lines().any(|l| l.trim() == DONE_MARK) {
        return Err(format!(
            "{}: the firmware exited 0 without finishing its output:\n{}",
            whence(),
            tail(&out.text)
        ));
    }
    let mut values = Vec::new();
    for line in out.text.lines().filter_map(|l| l.strip_prefix(OUT_MARK)) {
        for v in line.split_whitespace() {
            values.push(
                v.parse::<i32>()
                    .map_err(|e| format!("{}: bad output {v:?} in {line:?}: {e}", whence()))?,
            );
        }
    }
    Ok(values)
}

// ---------------------------------------------------------------------------------
// Counting instructions
// ---------------------------------------------------------------------------------

/// The instruction-counting plugin, built once per test run (with `make`) into the
/// target directory.
pub fn plugin() -> PathBuf {
    static PLUGIN: OnceLock<PathBuf> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let root = super::repo_root();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let target = if target.is_absolute() {
                target
            } else {
                root.join(target)
            };
            // Built in a directory of this process, then renamed into place (atomic):
            // test binaries running at once must not write the same file, and a QEMU
            // loading the name meanwhile gets the old or the new file, both whole.
            let dir = target.join("qemu-insn-count");
            let tmp = dir.join(format!("build-{}", std::process::id()));
            let mut cmd = Command::new("make");
            cmd.arg("-s")
                .arg("-C")
                .arg(root.join("tools/qemu-insn-count"))
                .arg(format!("OUT={}", tmp.display()))
                .arg(format!("QEMU={QEMU}"));
            checked(cmd, "building tools/qemu-insn-count");
            let built = tmp.join("libinsn_count.so");
            assert!(built.is_file(), "make built no {}", built.display());
            let so = dir.join("libinsn_count.so");
            std::fs::rename(&built, &so).expect("move the plugin into place");
            let _ = std::fs::remove_dir_all(&tmp);
            so
        })
        .clone()
}

/// Guest instructions of one run of `elf` (the whole run: startup, code, semihosting),
/// with `append` as the semihosting command line after the file name. Panics when the
/// firmware exits nonzero.
pub fn count_insns_with(board: &Board, elf: &Path, append: Option<&str>) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = dir.path().join("insns.txt");
    let mut extra = vec![
        "-plugin".to_string(),
        format!("{},outfile={}", plugin().display(), count.display()),
    ];
    if let Some(a) = append {
        extra.extend(["-append".to_string(), a.to_string()]);
    }
    let out = run_qemu(board, elf, &extra, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{} on {} (counting): ended with {}:\n{}",
        elf.display(),
        board.label(),
        out.status,
        tail(&out.text)
    );
    let text = std::fs::read_to_string(&count)
        .unwrap_or_else(|e| panic!("the plugin wrote no count ({e}):\n{}", tail(&out.text)));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad count {text:?}: {e}"))
}

/// [`count_insns_with`] without a command line.
pub fn count_insns(board: &Board, elf: &Path) -> u64 {
    count_insns_with(board, elf, None)
}

/// Instructions per model step, measured on a [`build_bench_firmware`] firmware.
#[derive(Clone, Copy, Debug)]
pub struct StepCount {
    /// Steps of the longer run.
    pub steps: u32,
    /// Instructions of the run with `steps` steps.
    pub with_steps: u64,
    /// Instructions of the run with no step (startup, reset, exit).
    pub without: u64,
}

impl StepCount {
    /// Instructions per step: the difference of the two runs over the steps (it
    /// includes the bench loop, about 5 instructions per step).
    pub fn per_step(&self) -> f64 {
        (self.with_steps - self.without) as f64 / self.steps as f64
    }
}

/// Counts a bench firmware with 0 and with `steps` steps (see [`StepCount`]).
pub fn insns_per_step(fw: &Firmware, steps: u32) -> StepCount {
    assert!(steps > 0, "insns_per_step: no steps");
    let without = count_insns_with(&fw.board, &fw.elf, Some("0"));
    let with_steps = count_insns_with(&fw.board, &fw.elf, Some(&steps.to_string()));
    assert!(
        with_steps > without,
        "{} steps took no instructions ({with_steps} vs {without}): did the firmware read \
         the step count?",
        steps
    );
    StepCount {
        steps,
        with_steps,
        without,
    }
}

// ---------------------------------------------------------------------------------
// Object inspection
// ---------------------------------------------------------------------------------

/// The `objdump -m` architecture of an object, from its build attributes: objdump
/// decodes MVE only when told the architecture, and an undecoded instruction would hide
/// from [`integer_only`].
fn objdump_arch(object: &Path) -> Result<&'static str, String> {
    let mut cmd = Command::new("arm-none-eabi-readelf");
    cmd.arg("-A").arg(object);
    let text = checked(cmd, "readelf -A");
    let arch = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tag_CPU_arch:"))
        .map(str::trim)
        .ok_or_else(|| format!("{}: no Tag_CPU_arch attribute", object.display()))?;
    Ok(match arch {
        "v6-M" | "v6S-M" => "armv6s-m",
        "v7" => "armv7",
        "v7E-M" => "armv7e-m",
        "v8-M.baseline" => "armv8-m.base",
        "v8-M.mainline" => "armv8-m.main",
        "v8.1-M.mainline" => "armv8.1-m.main",
        other => {
            return Err(format!(
                "{}: unknown Tag_CPU_arch {other:?}",
                object.display()
            ))
        }
    })
}

/// Whether an operand list names an FP/SIMD s- or d-register.
fn has_fp_register(operands: &str) -> bool {
    operands
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| {
            let mut ch = w.chars();
            matches!(ch.next(), Some('s' | 'd'))
                && !ch.as_str().is_empty()
                && ch.as_str().bytes().all(|b| b.is_ascii_digit())
        })
}

/// Whether an instruction, as objdump prints it, is floating point (or an FP-register
/// transfer, or a coprocessor instruction the disassembler did not decode). Saving and
/// restoring the callee-saved d8–d15 (`vpush`/`vpop`), which MVE code using q4–q7 must
/// do, is allowed, and so are MVE's integer lane moves (`mve`: Armv8.1-M objects).
fn float_instruction(mnemonic: &str, operands: &str, mve: bool) -> Option<&'static str> {
    let m = mnemonic.to_ascii_lowercase();
    // Not the branch target's symbol ("bl 0 <f_s1>"): only registers and immediates.
    let o = operands
        .split('<')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let base = m.split('.').next().unwrap_or("");
    if m.contains(".f16") || m.contains(".f32") || m.contains(".f64") || m.contains(".bf16") {
        return Some("floating-point data type");
    }
    if base.starts_with("vcvt") || base.starts_with("vrint") {
        return Some("conversion");
    }
    if matches!(
        base,
        "vsqrt" | "vdiv" | "vfma" | "vfms" | "vfnma" | "vfnms" | "vnmul"
    ) {
        return Some("floating-point arithmetic");
    }
    if matches!(base, "vmrs" | "vmsr") && !(o.contains("p0") || o.contains("vpr")) {
        return Some("FP status register access");
    }
    let cop = base.trim_end_matches(['l', '2']);
    if matches!(cop, "ldc" | "stc" | "cdp" | "mcr" | "mrc" | "mcrr" | "mrrc") {
        return Some("coprocessor instruction the disassembler did not decode");
    }
    // Only VFP/MVE instructions (all `v...`) name s/d registers; elsewhere "d02" is an
    // address.
    if m.starts_with('v') && has_fp_register(&o) {
        let callee_saved = |w: &str| {
            w.strip_prefix('d')
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (8..=15).contains(&n))
        };
        let regs_ok = o
            .trim_matches(['{', '}'])
            .split([',', '-'])
            .map(str::trim)
            .all(callee_saved);
        if matches!(base, "vpush" | "vpop") && regs_ok {
            return None;
        }
        // MVE's integer lane moves print with d-register lanes: "vmov.32 r0, d7[1]".
        let int_size = matches!(
            m.strip_prefix("vmov"),
            Some(".8" | ".16" | ".32" | ".s8" | ".u8" | ".s16" | ".u16")
        );
        if mve && int_size && o.contains('[') {
            return None;
        }
        // On Armv8.1-M with MVE the FP/vector register file is always there, and GCC
        // spills general registers into it: a 32-bit load, store or move of an S
        // register is data movement, not floating point ("vldr s16, [sp, #4]",
        // "vmov r6, s16"). Arithmetic and typed moves (".f32") are caught above.
        if mve && matches!(m.as_str(), "vldr" | "vstr" | "vmov") {
            return None;
        }
        return Some("FP register use");
    }
    None
}

/// Whether an undefined symbol is a soft-float, libm or heap function.
fn forbidden_symbol(name: &str) -> Option<&'static str> {
    const LIBM: &[&str] = &[
        "exp",
        "exp2",
        "expm1",
        "log",
        "log2",
        "log10",
        "log1p",
        "pow",
        "sqrt",
        "cbrt",
        "tanh",
        "sinh",
        "cosh",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "floor",
        "ceil",
        "round",
        "lround",
        "llround",
        "rint",
        "lrint",
        "llrint",
        "nearbyint",
        "trunc",
        "fmod",
        "remainder",
        "fabs",
        "ldexp",
        "frexp",
        "modf",
        "fma",
        "fmin",
        "fmax",
        "hypot",
        "erf",
        "erfc",
    ];
    const HEAP: &[&str] = &[
        "malloc",
        "free",
        "calloc",
        "realloc",
        "aligned_alloc",
        "posix_memalign",
        "memalign",
        "sbrk",
        "_sbrk",
        "_malloc_r",
        "_free_r",
        "_calloc_r",
        "_realloc_r",
    ];
    if let Some(rest) = name.strip_prefix("__aeabi_") {
        // __aeabi_f*, __aeabi_d* (fadd, dmul, f2iz, d2lz, fcmpeq...), __aeabi_cf*/cd*
        // (flag-setting compares), __aeabi_*2f / *2d (i2f, ul2d...), __aeabi_h2f.
        if rest.starts_with('f')
            || rest.starts_with('d')
            || rest.starts_with("cf")
            || rest.starts_with("cd")
            || rest.ends_with("2f")
            || rest.ends_with("2d")
            || rest.starts_with("h2f")
        {
            return Some("soft-float helper");
        }
        return None;
    }
    if let Some(rest) = name.strip_prefix("__") {
        // libgcc's soft-float names: __addsf3, __muldf3, __fixsfsi, __floatsidf,
        // __extendsfdf2, __truncdfsf2, __eqsf2, __unordsf2...
        let core = rest.trim_end_matches(|c: char| c.is_ascii_digit());
        let fp_mode = ["sf", "df", "tf", "hf"];
        if fp_mode
            .iter()
            .any(|m| core.ends_with(m) || core.contains(&format!("{m}si")))
            || core.starts_with("float")
            || core.starts_with("fix")
            || core.contains("f2h")
            || core.contains("h2f")
        {
            return Some("soft-float helper");
        }
    }
    let stem = name.strip_suffix('f').or_else(|| name.strip_suffix('l'));
    if LIBM.contains(&name) || stem.is_some_and(|s| LIBM.contains(&s)) {
        return Some("libm function");
    }
    if HEAP.contains(&name) {
        return Some("heap function");
    }
    None
}

/// Checks that a compiled (Arm, Thumb) object has no floating-point instruction
/// (objdump for the object's architecture: FP data types, conversions, FP arithmetic,
/// FPSCR access, s/d-register transfers other than saving d8–d15, undecoded coprocessor
/// instructions; allowed: `vpush`/`vpop` of d8–d15 and, on Armv8.1-M, MVE integer lane
/// moves such as `vmov.32 r0, d7[1]`) and no undefined reference to a soft-float helper,
/// libm or the heap (`nm -u`). The error lists every offence.
pub fn integer_only(object: &Path) -> Result<(), String> {
    let arch = objdump_arch(object)?;
    let mut cmd = Command::new("arm-none-eabi-objdump");
    cmd.arg("-d").arg(format!("-m{arch}")).arg(object);
    let asm = checked(cmd, "objdump -d");
    let mut offences = Vec::new();
    let mut function = String::new();
    for line in asm.lines() {
        if let Some(name) = line.strip_suffix(">:") {
            function = name.rsplit('<').next().unwrap_or("").to_string();
            continue;
        }
        // "   1c:\tf7ff fffe \tbl\t0 <__aeabi_fadd>" : address, bytes, mnemonic, operands.
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 3 || !fields[0].trim_end().ends_with(':') {
            continue;
        }
        let mnemonic = fields[2].trim();
        let operands = fields
            .get(3)
            .map_or("", |o| o.split(['@', ';']).next().unwrap_or(""));
        if mnemonic.starts_with('.') {
            continue; // literal pool data (.word)
        }
        if let Some(why) = float_instruction(mnemonic, operands, arch == "armv8.1-m.main") {
            offences.push(format!("{function}: {why}: {mnemonic} {}", operands.trim()));
        }
    }
    let mut cmd = Command::new("arm-none-eabi-nm");
    cmd.arg("-u").arg(object);
    for line in checked(cmd, "nm -u").lines() {
        let name = line.split_whitespace().last().unwrap_or("");
        if let Some(why) = forbidden_symbol(name) {
            offences.push(format!("undefined reference to {name} ({why})"));
        }
    }
    if offences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} is not integer-only ({} offences):\n  {}",
            object.display(),
            offences.len(),
            offences.join("\n  ")
        ))
    }
}

/// One symbol of `nm -S`: name, type letter (`T` code, `R`/`r` read-only data, `D`/`d`
/// data, `B`/`b` bss...), size in bytes, and (from `objdump -t`) its section and value.
///
/// Sizes of symbols do not always add up to the bytes they take: GCC merges identical
/// constants at `-O2` (`-fipa-icf`), leaving one symbol an alias of the other (same
/// section and value). Count each `(section, value)` once, or use [`section_sizes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub kind: char,
    pub size: u64,
    /// The section (`.rodata.NAME_...`, `.text.NAME_step`, ...; `*UND*` if undefined).
    pub section: String,
    /// Address (linked ELF) or offset in its section (object).
    pub value: u64,
}

/// The sized symbols of an object or ELF (`arm-none-eabi-nm -S`, with sections from
/// `arm-none-eabi-objdump -t`); symbols without a size are left out.
pub fn symbol_sizes(object: &Path) -> Vec<Symbol> {
    let mut cmd = Command::new("arm-none-eabi-objdump");
    cmd.arg("-t").arg(object);
    // "00000000 l     O .rodata.m_w\t00000018 m_w": value, flags, section; size, name.
    let sections: std::collections::HashMap<String, (String, u64)> = checked(cmd, "objdump -t")
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once('\t')?;
            let name = right.split_whitespace().nth(1)?.to_string();
            let value = u64::from_str_radix(left.split_whitespace().next()?, 16).ok()?;
            let section = left.split_whitespace().last()?.to_string();
            Some((name, (section, value)))
        })
        .collect();
    let mut cmd = Command::new("arm-none-eabi-nm");
    cmd.arg("-S").arg(object);
    checked(cmd, "nm -S")
        .lines()
        .filter_map(|l| {
            // "00000000 00000c00 r gru_charlm_rnn_l0_m0w"
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 4 {
                return None;
            }
            let (section, value) = sections.get(f[3]).cloned().unwrap_or_default();
            Some(Symbol {
                name: f[3].to_string(),
                kind: f[2].chars().next()?,
                size: u64::from_str_radix(f[1], 16).ok()?,
                section,
                value,
            })
        })
        .collect()
}

/// The sections of an object or ELF and their sizes (`arm-none-eabi-size -A`), in
/// order, debug and attribute sections included.
pub fn section_sizes(object: &Path) -> Vec<(String, u64)> {
    let mut cmd = Command::new("arm-none-eabi-size");
    cmd.arg("-A").arg(object);
    checked(cmd, "size -A")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 || !f[0].starts_with('.') {
                return None;
            }
            Some((f[0].to_string(), f[1].parse().ok()?))
        })
        .collect()
}
