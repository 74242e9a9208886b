//! `irnn bench --target cortex-m0|cortex-m4|cortex-m7|cortex-m55`: guest instructions
//! per step of the generated C on the emulated board of the target's row
//! (`back::targets`), counted by the QEMU plugin of `tools/qemu-insn-count`, and the
//! model object's flash and RAM as the compiler laid it out.
//!
//! Method: `examples/cortex-m/bench.c` runs N steps (N from the semihosting command
//! line) over 16 fixed pseudo-random inputs; the instructions of a run with N steps
//! minus those of a run with 0 steps, divided by N, are the instructions per step
//! (deterministic: the same binary and inputs give the same count). The firmware files
//! and the plugin source are compiled into `irnn`, so an installed binary needs only
//! `arm-none-eabi-gcc`, `qemu-system-arm` and a host C compiler for the plugin. With
//! `IRNN_BENCH_KEEP=DIR` set, the firmware is kept as `DIR/TARGET.elf` (for
//! `tools/cortex-m-profile`).

use anyhow::{bail, Context, Result};
use irnn_codegen::back::targets::Runner;
use irnn_codegen::back::{generate, names, GenOptions, Lang, Precision, Target, Unroll};
use irnn_codegen::ir::{InputIr, Program};
use std::path::Path;
use std::process::Command;

/// The firmware and plugin sources, as in the repository.
const FILES: &[(&str, &str)] = &[
    (
        "startup.c",
        include_str!("../../examples/cortex-m/startup.c"),
    ),
    (
        "semihost.c",
        include_str!("../../examples/cortex-m/semihost.c"),
    ),
    (
        "semihost.h",
        include_str!("../../examples/cortex-m/semihost.h"),
    ),
    ("mem.c", include_str!("../../examples/cortex-m/mem.c")),
    ("bench.c", include_str!("../../examples/cortex-m/bench.c")),
    (
        "ld/sections.ld",
        include_str!("../../examples/cortex-m/ld/sections.ld"),
    ),
    (
        "ld/mps2-an385.ld",
        include_str!("../../examples/cortex-m/ld/mps2-an385.ld"),
    ),
    (
        "ld/mps2-an386.ld",
        include_str!("../../examples/cortex-m/ld/mps2-an386.ld"),
    ),
    (
        "ld/mps2-an500.ld",
        include_str!("../../examples/cortex-m/ld/mps2-an500.ld"),
    ),
    (
        "ld/mps3-an547.ld",
        include_str!("../../examples/cortex-m/ld/mps3-an547.ld"),
    ),
    (
        "plugin/insn_count.c",
        include_str!("../../tools/qemu-insn-count/insn_count.c"),
    ),
    (
        "plugin/plugin_api.h",
        include_str!("../../tools/qemu-insn-count/plugin_api.h"),
    ),
];

/// The bare-metal compiler.
pub const CC: &str = "arm-none-eabi-gcc";
/// The system emulator.
pub const QEMU: &str = "qemu-system-arm";

/// Steps of the counted run.
pub const STEPS: u32 = 20;

/// One measured Cortex-M target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CortexMRow {
    /// Target name.
    pub target: &'static str,
    /// QEMU machine.
    pub machine: &'static str,
    /// Guest instructions per step.
    pub insns_per_step: f64,
    /// Instructions per multiply–accumulate.
    pub insns_per_mac: f64,
    /// Model object: code bytes (`.text`).
    pub code_bytes: u64,
    /// Model object: constant bytes (`.rodata`: weights, biases, requantization and
    /// PWL tables).
    pub const_bytes: u64,
    /// Model object: writable static bytes (`.data` + `.bss`; 0: the state is the
    /// caller's).
    pub static_ram_bytes: u64,
}

fn run(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The plugin API version for the installed QEMU: 1 up to 8.x, 2 from 9.0.
fn plugin_api_version() -> Result<u32> {
    let out = run(
        Command::new(QEMU).arg("--version"),
        "qemu-system-arm --version",
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major: u32 = text
        .split("version ")
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("cannot read the QEMU version from {text:?}"))?;
    Ok(if major >= 9 { 2 } else { 1 })
}

/// Inputs for 16 steps: token ids or int8 features from a fixed LCG.
fn bench_inputs(program: &Program) -> String {
    let mut s: u32 = 12345;
    let mut next = || {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s >> 16
    };
    let vals: Vec<String> = match program.input {
        InputIr::Tokens { vocab_size } => (0..16)
            .map(|_| (next() as usize % vocab_size.max(1)).to_string())
            .collect(),
        InputIr::Features { size, .. } => (0..16 * size)
            .map(|_| ((next() % 256) as i32 - 128).to_string())
            .collect(),
    };
    format!(
        "#define BENCH_LEN 16\nstatic const bench_input_t bench_inputs[] = {{\n{}\n}};\n",
        vals.join(", ")
    )
}

/// Counts one run of `elf` with `steps` steps.
fn count(machine: &str, elf: &Path, plugin: &Path, dir: &Path, steps: u32) -> Result<u64> {
    let file = dir.join(format!("count-{steps}.txt"));
    run(
        Command::new(QEMU)
            .args(["-M", machine, "-nographic"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-plugin")
            .arg(format!("{},outfile={}", plugin.display(), file.display()))
            .arg("-kernel")
            .arg(elf)
            .args(["-append", &steps.to_string()]),
        &format!("running the bench firmware on {machine}"),
    )?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("the QEMU plugin wrote no count to {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("bad instruction count {text:?}"))
}

/// `(name, size)` of the sections of an object, from `arm-none-eabi-size -A`.
fn sections(obj: &Path) -> Result<Vec<(String, u64)>> {
    let out = run(
        Command::new("arm-none-eabi-size").arg("-A").arg(obj),
        "arm-none-eabi-size",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            let size = w.next()?.parse().ok()?;
            name.starts_with('.').then(|| (name.to_string(), size))
        })
        .collect())
}

/// Builds the bench firmware of `program` for `target` and counts it.
pub fn bench_target(program: &Program, target: Target) -> Result<CortexMRow> {
    let info = target.info();
    let Runner::QemuSystemArm { machine } = info.runner else {
        bail!("{} is not a Cortex-M target", info.name);
    };
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("ld"))?;
    std::fs::create_dir_all(dir.join("plugin"))?;
    for (name, text) in FILES {
        std::fs::write(dir.join(name), text)?;
    }
    let gen = dir.join("gen");
    std::fs::create_dir_all(&gen)?;
    let opts = GenOptions {
        lang: Lang::C,
        target,
        unroll: Unroll::None,
        precision: Precision::Int8,
        fusion: Default::default(),
    };
    let files = generate(program, &opts)?;
    let mut source = None;
    let mut header = None;
    for f in &files {
        std::fs::write(gen.join(&f.name), &f.contents)?;
        if f.name.ends_with(".c") {
            source = Some(gen.join(&f.name));
        } else if f.name.ends_with(".h") {
            header = Some(f.name.clone());
        }
    }
    let (Some(source), Some(header)) = (source, header) else {
        bail!("the C back end wrote no .c and .h");
    };
    std::fs::write(gen.join("bench_inputs.h"), bench_inputs(program))?;
    let prefix = names::sanitize(&program.name);
    let upper = names::upper(&prefix);
    let common = [
        "-O2",
        "-std=c99",
        "-ffreestanding",
        "-ffunction-sections",
        "-fdata-sections",
    ];

    let model_obj = dir.join("model.o");
    run(
        Command::new(CC)
            .args(info.cc_flags)
            .args(common)
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&model_obj),
        &format!("{CC}: compiling the model for {}", info.name),
    )?;
    let elf = dir.join("fw.elf");
    let mut cmd = Command::new(CC);
    cmd.args(info.cc_flags)
        .args(common)
        .arg(format!("-DIRNN_HEADER=\"{header}\""))
        .arg(format!("-DIRNN_PREFIX={prefix}_"))
        .arg(format!("-DIRNN_PREFIX_UPPER={upper}_"));
    if matches!(program.input, InputIr::Tokens { .. }) {
        cmd.arg("-DIRNN_TOKEN_INPUT");
    }
    cmd.arg("-iquote")
        .arg(&gen)
        .args(["-nostdlib", "-Wl,--gc-sections"])
        .arg(format!("-L{}", dir.join("ld").display()))
        .arg(format!("-T{machine}.ld"))
        .args(["startup.c", "semihost.c", "mem.c", "bench.c"].map(|f| dir.join(f)))
        .arg(&model_obj)
        .args(["-lgcc", "-o"])
        .arg(&elf);
    run(&mut cmd, &format!("{CC}: building the bench firmware"))?;

    let plugin = dir.join("plugin/libinsn_count.so");
    let host_cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    run(
        Command::new(&host_cc)
            .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden"])
            .arg(format!(
                "-DINSN_COUNT_API_VERSION={}",
                plugin_api_version()?
            ))
            .arg("-o")
            .arg(&plugin)
            .arg(dir.join("plugin/insn_count.c")),
        &format!("{host_cc}: building the QEMU plugin"),
    )?;
    if let Some(keep) = std::env::var_os("IRNN_BENCH_KEEP") {
        let to = Path::new(&keep).join(format!("{}.elf", info.name));
        std::fs::create_dir_all(&keep)?;
        std::fs::copy(&elf, &to).with_context(|| format!("keeping {}", to.display()))?;
    }
    let without = count(machine, &elf, &plugin, dir, 0)?;
    let with = count(machine, &elf, &plugin, dir, STEPS)?;
    if with <= without {
        bail!("{STEPS} steps took no instructions ({with} vs {without})");
    }
    let per_step = (with - without) as f64 / STEPS as f64;
    let macs: usize = program.layers.iter().map(|l| l.macs()).sum();
    let secs = sections(&model_obj)?;
    let sum = |pred: &dyn Fn(&str) -> bool| -> u64 {
        secs.iter().filter(|(n, _)| pred(n)).map(|(_, s)| s).sum()
    };
    Ok(CortexMRow {
        target: info.name,
        machine,
        insns_per_step: per_step,
        insns_per_mac: per_step / macs.max(1) as f64,
        code_bytes: sum(&|n| n.starts_with(".text")),
        const_bytes: sum(&|n| n.starts_with(".rodata")),
        static_ram_bytes: sum(&|n| n.starts_with(".data") || n.starts_with(".bss")),
    })
}

/// The table `irnn bench` prints for Cortex-M targets.
pub fn table(program: &Program, rows: &[CortexMRow]) -> String {
    let macs: usize = program.layers.iter().map(|l| l.macs()).sum();
    let mut s = format!(
        "Cortex-M (generated C, {CC} -O2; guest instructions per step counted under \
         {QEMU}; {macs} MACs per step)\n"
    );
    s.push_str(&format!(
        "{:<12} {:<12} {:>14} {:>10} {:>10} {:>12} {:>10}\n",
        "target", "board", "insns/step", "insns/MAC", "code B", "constants B", "static B"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:<12} {:>14.0} {:>10.2} {:>10} {:>12} {:>10}\n",
            r.target,
            r.machine,
            r.insns_per_step,
            r.insns_per_mac,
            r.code_bytes,
            r.const_bytes,
            r.static_ram_bytes
        ));
    }
    s
}
