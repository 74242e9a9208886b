//! The target table: one row per code-generation target, holding every fact about it
//! that the compiler uses — the packed layout and kernels (`irnn_runtime::simd::Isa`),
//! the C kernel family and its compile-time condition, vector width, PWL array form,
//! compiler flags, and how the tests run it. Back ends and tools read these rows; none
//! keeps its own `match` on targets for these facts. A new target is a new row (and,
//! for a new kernel family, its kernels): a row names its family explicitly, so it can
//! never fall into another target's intrinsics.

use super::Target;
use irnn_runtime::simd::Isa;

/// The C matrix-kernel family a target's generated C carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CKernels {
    /// Plain C over unpacked rows.
    Portable,
    /// x86 AVX2 sign trick (and AVX-VNNI `vpdpbusd` on ymm where compiled with it).
    Avx2,
    /// x86 AVX-512 VNNI `vpdpbusd` on zmm.
    Avx512Vnni,
    /// AArch64 NEON `smull`/`sadalp`, with `sdot` when `dotprod` is set.
    Neon {
        /// The Armv8.2 dot-product kernel (under `__ARM_FEATURE_DOTPROD`).
        dotprod: bool,
    },
}

/// How a target evaluates a PWL table on whole arrays in generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PwlArray {
    /// One element at a time (the bucket index of `back::pwl_index`).
    Scalar,
    /// AVX-512: the table in registers, found by permutes.
    Registers,
    /// AVX2: three gathers per 8 inputs.
    Gather,
}

/// Where the tests (and `irnn bench`) run a target's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// On this machine, when its CPU has the instruction set.
    Native,
    /// Cross-compiled for AArch64 and run under `qemu-aarch64`.
    QemuAarch64,
}

/// One row of the target table.
#[derive(Clone, Copy, Debug)]
pub struct TargetInfo {
    /// The target.
    pub target: Target,
    /// Name on the command line and in generated headers.
    pub name: &'static str,
    /// The runtime's instruction set: packed layout (block height) and Rust kernels.
    pub isa: Isa,
    /// The C kernel family.
    pub c_kernels: CKernels,
    /// int32 lanes of one vector register (1: scalar).
    pub lanes: usize,
    /// C: the preprocessor condition under which the SIMD kernels compile.
    pub c_simd_cond: &'static str,
    /// C: the intrinsics header included under `c_simd_cond`.
    pub c_simd_header: &'static str,
    /// C compiler flags that enable the instruction set (tests, `irnn bench`).
    pub cc_flags: &'static [&'static str],
    /// PWL evaluation on whole arrays.
    pub pwl_array: PwlArray,
    /// How the code runs in tests.
    pub runner: Runner,
}

/// Every target, in command-line order.
pub const TARGETS: [TargetInfo; 5] = [
    TargetInfo {
        target: Target::Scalar,
        name: "scalar",
        isa: Isa::Portable,
        c_kernels: CKernels::Portable,
        lanes: 1,
        c_simd_cond: "0",
        c_simd_header: "",
        cc_flags: &[],
        pwl_array: PwlArray::Scalar,
        runner: Runner::Native,
    },
    TargetInfo {
        target: Target::Avx2,
        name: "avx2",
        isa: Isa::Avx2,
        c_kernels: CKernels::Avx2,
        lanes: 8,
        c_simd_cond: "defined(__AVX2__)",
        c_simd_header: "immintrin.h",
        cc_flags: &["-mavx2", "-mfma"],
        pwl_array: PwlArray::Gather,
        runner: Runner::Native,
    },
    TargetInfo {
        target: Target::Avx512Vnni,
        name: "avx512vnni",
        isa: Isa::Avx512Vnni,
        c_kernels: CKernels::Avx512Vnni,
        lanes: 16,
        c_simd_cond: "defined(__AVX512F__) && defined(__AVX512VNNI__)",
        c_simd_header: "immintrin.h",
        cc_flags: &[
            "-mavx2",
            "-mfma",
            "-mavx512f",
            "-mavx512bw",
            "-mavx512vl",
            "-mavx512vnni",
        ],
        pwl_array: PwlArray::Registers,
        runner: Runner::Native,
    },
    // Little-endian only: the kernels reinterpret int32 words of 4 input bytes as byte
    // vectors. neon-dotprod without the dot-product extension runs the NEON (smull)
    // kernel on the same layout.
    TargetInfo {
        target: Target::Neon,
        name: "neon",
        isa: Isa::Neon,
        c_kernels: CKernels::Neon { dotprod: false },
        lanes: 4,
        c_simd_cond: "defined(__aarch64__) && defined(__ARM_NEON) && !defined(__ARM_BIG_ENDIAN)",
        c_simd_header: "arm_neon.h",
        cc_flags: &["-march=armv8-a"],
        pwl_array: PwlArray::Scalar,
        runner: Runner::QemuAarch64,
    },
    TargetInfo {
        target: Target::NeonDotprod,
        name: "neon-dotprod",
        isa: Isa::NeonDotprod,
        c_kernels: CKernels::Neon { dotprod: true },
        lanes: 4,
        c_simd_cond: "defined(__aarch64__) && defined(__ARM_NEON) && !defined(__ARM_BIG_ENDIAN)",
        c_simd_header: "arm_neon.h",
        cc_flags: &["-march=armv8.2-a+dotprod"],
        pwl_array: PwlArray::Scalar,
        runner: Runner::QemuAarch64,
    },
];

impl Target {
    /// This target's row of [`TARGETS`].
    pub fn info(self) -> &'static TargetInfo {
        // The rows are in `Target::ALL` order (checked by a unit test).
        &TARGETS[self as usize]
    }

    /// The target with this command-line name.
    pub fn from_name(name: &str) -> Option<Target> {
        TARGETS.iter().find(|t| t.name == name).map(|t| t.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_target_order_and_consistent() {
        for (k, t) in Target::ALL.iter().enumerate() {
            let info = t.info();
            assert_eq!(info.target, *t, "row {k}");
            assert_eq!(Target::from_name(info.name), Some(*t));
            // The packed block height is one vector of int32 lanes (scalar: unpacked).
            assert_eq!(
                info.isa.block_rows().unwrap_or(1),
                info.lanes,
                "{}",
                info.name
            );
            assert_eq!(info.runner == Runner::QemuAarch64, t.is_arm());
        }
        assert_eq!(Target::from_name("avx3"), None);
    }
}
