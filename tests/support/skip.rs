//! When a test may skip part of its work: the one policy of the workspace's tests
//! (`tests/` through `support::skip`, the runtime's unit tests through a `#[path]`
//! module). Std only, every path spelled out, so that it also compiles inside
//! `irnn-runtime`'s `no_std` crate root.
//!
//! - **Instruction sets.** A part that needs an instruction set runs where the CPU has
//!   it and is skipped (with a `SKIPPED` line) where it does not. Under CI (`CI` set, as
//!   CI services do, to anything but empty, `0` or `false`) a skip must be justified:
//!   where the kernel's list of CPU flags (`/proc/cpuinfo`) shows the instruction set,
//!   the run-time detection saying no is a failure, not a skip.
//! - **Cross tools** (the AArch64 compiler, linker and qemu; the Cortex-M compiler,
//!   binutils and `qemu-system-arm`): missing ones fail the test with what to install;
//!   `IRNN_SKIP_CROSS=1` skips these tests explicitly, except under CI, where it is
//!   ignored.
//! - **Anything else a test needs to have something to check** (the shipped example
//!   models, `cargo clippy`): skipped with a note outside CI, a failure under CI.
#![allow(dead_code)]

/// Whether the tests run under CI: `CI` is set to anything but empty, `0` or `false`.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// The `/proc/cpuinfo` flags an instruction set needs, by the name `Target::name` and
/// `Isa::name` give it.
fn cpuinfo_flags(isa: &str) -> &'static [&'static str] {
    match isa {
        "avx2" => &["avx2"],
        "avx512vnni" => &["avx512f", "avx512bw", "avx512vl", "avx512_vnni"],
        "avx-vnni" => &["avx2", "avx_vnni"],
        "neon" => &["asimd"],
        "neon-dotprod" => &["asimd", "asimddp"],
        other => std::panic!("skip policy: unknown instruction set {other:?}"),
    }
}

/// Whether `/proc/cpuinfo` lists every flag of `isa` on a line of CPU flags (`flags` on
/// x86, `Features` on AArch64) of the architecture the tests run on; `false` where the
/// file is not there.
pub fn cpu_lists(isa: &str) -> bool {
    let wanted = cpuinfo_flags(isa);
    let arch = if isa.starts_with("neon") {
        "aarch64"
    } else {
        "x86_64"
    };
    if std::env::consts::ARCH != arch {
        return false;
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(k.trim(), "flags" | "Features"))
        .any(|(_, v)| {
            let have: std::vec::Vec<&str> = v.split_whitespace().collect();
            wanted.iter().all(|f| have.contains(f))
        })
}

/// Whether this CPU runs `isa`, given the run-time detection's answer `detected`. A
/// `false` under CI where `/proc/cpuinfo` shows the instruction set fails the test: a
/// broken detection must not turn the SIMD tests into skips.
pub fn isa(isa: &str, detected: bool) -> bool {
    if !detected && on_ci() && cpu_lists(isa) {
        std::panic!(
            "the CPU has {isa} (/proc/cpuinfo lists {:?}) but the run-time detection says \
             it does not; under CI that is a failure, not a skip",
            cpuinfo_flags(isa)
        );
    }
    detected
}

/// [`isa`], printing `SKIPPED {what}: this CPU lacks {isa}` when it does not run.
pub fn needs_isa(what: &str, isa_name: &str, detected: bool) -> bool {
    let runs = isa(isa_name, detected);
    if !runs {
        std::eprintln!("SKIPPED {what}: this CPU lacks {isa_name}");
    }
    runs
}

/// Whether the AArch64 cross tests run, given the tools found missing. Outside CI,
/// `IRNN_SKIP_CROSS=1` skips them (with a `SKIPPED` line); under CI it is ignored. A
/// missing tool then fails the test with what to install.
pub fn cross_tools(what: &str, missing: &[&str]) -> bool {
    cross(
        what,
        "the AArch64 cross tools",
        "gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user, rustup target add \
         aarch64-unknown-linux-gnu",
        missing,
    )
}

/// Whether the Cortex-M tests (bare-metal firmware under `qemu-system-arm`) run, given
/// the tools found missing: the policy of [`cross_tools`].
pub fn cortex_m_tools(what: &str, missing: &[&str]) -> bool {
    cross(
        what,
        "the Cortex-M tools",
        "gcc-arm-none-eabi (with binutils-arm-none-eabi), qemu-system-arm, make, gcc",
        missing,
    )
}

/// The cross-tool policy: `IRNN_SKIP_CROSS=1` skips outside CI; a missing tool fails
/// the test, naming `tools` and what installs them.
fn cross(what: &str, tools: &str, install: &str, missing: &[&str]) -> bool {
    if std::env::var("IRNN_SKIP_CROSS").is_ok_and(|v| v == "1") {
        if !on_ci() {
            std::eprintln!("SKIPPED {what}: IRNN_SKIP_CROSS=1");
            return false;
        }
        std::eprintln!("note: {what}: IRNN_SKIP_CROSS=1 is ignored under CI");
    }
    if !missing.is_empty() {
        std::panic!(
            "{what}: {tools} are missing ({}); install them as .ci/run does ({install}){}",
            missing.join(", "),
            if on_ci() {
                ""
            } else {
                ", or set IRNN_SKIP_CROSS=1 to skip them"
            }
        );
    }
    true
}

/// Whether something `what` needs to have anything to check is there: `false` with a
/// note when it is not, a failure under CI.
pub fn requires(what: &str, needed: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if on_ci() {
        std::panic!("{what}: {needed} is missing; under CI that is a failure, not a skip");
    }
    std::eprintln!("SKIPPED {what}: {needed} is missing");
    false
}
