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
    /// Arm Cortex-M DSP (Armv7E-M and later): `SXTB16` splits 4 int8 values into two
    /// int16 pairs, `SMLAD` multiplies and adds a pair.
    ArmDsp,
    /// Arm Helium (M-profile Vector Extension): `VMLADAVA` over 16 int8 values.
    Mve,
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

/// The int32 form of the LSTM gate requantization a target's C uses where the
/// generator proved the gate sums fit int32 (`back::GateSumPlan::sum_i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Req32 {
    /// None: the 64-bit `_q_gate_pre_down`.
    None,
    /// `_q_req32` / `_q_gate_pre32`: |y| rounded half up, sign put back; exact for
    /// every input (x86 AVX2, whose vectors have no 64-bit arithmetic shift).
    Abs,
    /// `_q_reqm` / `_q_gate_prem`: one 32 x 32 -> 64 multiply-accumulate, then int32
    /// arithmetic where `y + half` is proven to fit (Cortex-M with `SMLAL`).
    Mac,
}

/// How a target's C finishes an LSTM step after the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LstmTail {
    /// One pass per stage over the hidden width (gates, each activation, the cell,
    /// tanh of the cell, the output), loops that compilers vectorize.
    Passes,
    /// One pass over the hidden units with every stage in registers (cores whose
    /// compilers do not vectorize these loops): no stores and reloads between stages.
    Fused,
}

/// Where the tests (and `irnn bench`) run a target's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// On this machine, when its CPU has the instruction set.
    Native,
    /// Cross-compiled for AArch64 and run under `qemu-aarch64`.
    QemuAarch64,
    /// Cross-compiled with `arm-none-eabi-gcc` into bare-metal firmware and run on an
    /// emulated board (`qemu-system-arm -M machine`, semihosting for I/O).
    QemuSystemArm {
        /// The QEMU machine (an Arm MPS2/MPS3 FPGA image with this core).
        machine: &'static str,
    },
}

/// The f32 counterpart's kernels on a target (`back::c_f32`, `back::rust_f32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F32Kernels {
    /// The C kernel family of `templates/c/f32.c.tera`: `scalar`, `avx2`, `avx512` or
    /// `neon`.
    pub family: &'static str,
    /// Rows per block of the packed f32 weights (1: row-major, plain dot products).
    pub block_rows: usize,
    /// C: the preprocessor condition under which the vector kernel compiles (`""`:
    /// none).
    pub c_simd_cond: &'static str,
}

/// One row of the target table.
#[derive(Clone, Copy, Debug)]
pub struct TargetInfo {
    /// The target.
    pub target: Target,
    /// Name on the command line and in generated headers.
    pub name: &'static str,
    /// The runtime's instruction set: the generated Rust's kernels and their packed
    /// layout (`Isa::Portable`: the generated Rust is the scalar target's).
    pub isa: Isa,
    /// Rows per block of the packed weight layout `[blocks][groups][rows][4]` that the
    /// target's kernels read (C, and Rust where `isa` is not portable); 1 with portable
    /// C kernels (unpacked rows).
    pub block_rows: usize,
    /// The C kernel family.
    pub c_kernels: CKernels,
    /// Columns of the packed layout are padded with zeros to a multiple of this (4:
    /// whole groups; 16 for Helium, whose kernel reads whole 16-byte vectors).
    pub col_multiple: usize,
    /// int32 lanes of one vector register (1: scalar).
    pub lanes: usize,
    /// C: the preprocessor condition under which the SIMD kernels compile.
    pub c_simd_cond: &'static str,
    /// C: the intrinsics header included under `c_simd_cond`.
    pub c_simd_header: &'static str,
    /// C compiler flags that enable the instruction set (tests, `irnn bench`); for the
    /// Cortex-M targets, the `arm-none-eabi-gcc` flags of the core.
    pub cc_flags: &'static [&'static str],
    /// PWL evaluation on whole arrays.
    pub pwl_array: PwlArray,
    /// C: the int32 gate requantization form where the gate sums are proven to fit.
    pub req32: Req32,
    /// C: how an LSTM step ends after its matrix products (packed kernels only).
    pub lstm_tail: LstmTail,
    /// How the code runs in tests.
    pub runner: Runner,
    /// The f32 counterpart's kernels.
    pub f32: F32Kernels,
    /// `rustc -C target-feature` for benchmarks of the generated Rust (the int8 code
    /// detects its kernel at run time either way; the f32 code needs them for FMA and
    /// wide vectors).
    pub rust_features: &'static str,
}

const F32_SCALAR: F32Kernels = F32Kernels {
    family: "scalar",
    block_rows: 1,
    c_simd_cond: "",
};
const F32_NEON: F32Kernels = F32Kernels {
    family: "neon",
    block_rows: 16,
    c_simd_cond: "defined(__aarch64__)",
};

/// Every target, in command-line order.
pub const TARGETS: [TargetInfo; 9] = [
    TargetInfo {
        target: Target::Scalar,
        name: "scalar",
        isa: Isa::Portable,
        block_rows: 1,
        c_kernels: CKernels::Portable,
        col_multiple: 4,
        lanes: 1,
        c_simd_cond: "0",
        c_simd_header: "",
        cc_flags: &[],
        pwl_array: PwlArray::Scalar,
        req32: Req32::None,
        lstm_tail: LstmTail::Passes,
        runner: Runner::Native,
        f32: F32_SCALAR,
        rust_features: "",
    },
    TargetInfo {
        target: Target::Avx2,
        name: "avx2",
        isa: Isa::Avx2,
        block_rows: 8,
        c_kernels: CKernels::Avx2,
        col_multiple: 4,
        lanes: 8,
        c_simd_cond: "defined(__AVX2__)",
        c_simd_header: "immintrin.h",
        cc_flags: &["-mavx2", "-mfma"],
        pwl_array: PwlArray::Gather,
        req32: Req32::Abs,
        lstm_tail: LstmTail::Passes,
        runner: Runner::Native,
        f32: F32Kernels {
            family: "avx2",
            block_rows: 32,
            c_simd_cond: "defined(__AVX2__) && defined(__FMA__)",
        },
        rust_features: "+avx2,+fma",
    },
    TargetInfo {
        target: Target::Avx512Vnni,
        name: "avx512vnni",
        isa: Isa::Avx512Vnni,
        block_rows: 16,
        c_kernels: CKernels::Avx512Vnni,
        col_multiple: 4,
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
        req32: Req32::None,
        lstm_tail: LstmTail::Passes,
        runner: Runner::Native,
        f32: F32Kernels {
            family: "avx512",
            block_rows: 64,
            c_simd_cond: "defined(__AVX512F__)",
        },
        rust_features: "+avx2,+fma,+avx512f,+avx512bw,+avx512vl,+avx512vnni",
    },
    // Little-endian only: the kernels reinterpret int32 words of 4 input bytes as byte
    // vectors. neon-dotprod without the dot-product extension runs the NEON (smull)
    // kernel on the same layout.
    TargetInfo {
        target: Target::Neon,
        name: "neon",
        isa: Isa::Neon,
        block_rows: 4,
        c_kernels: CKernels::Neon { dotprod: false },
        col_multiple: 4,
        lanes: 4,
        c_simd_cond: "defined(__aarch64__) && defined(__ARM_NEON) && !defined(__ARM_BIG_ENDIAN)",
        c_simd_header: "arm_neon.h",
        cc_flags: &["-march=armv8-a"],
        pwl_array: PwlArray::Scalar,
        req32: Req32::None,
        lstm_tail: LstmTail::Passes,
        runner: Runner::QemuAarch64,
        f32: F32_NEON,
        rust_features: "",
    },
    TargetInfo {
        target: Target::NeonDotprod,
        name: "neon-dotprod",
        isa: Isa::NeonDotprod,
        block_rows: 4,
        c_kernels: CKernels::Neon { dotprod: true },
        col_multiple: 4,
        lanes: 4,
        c_simd_cond: "defined(__aarch64__) && defined(__ARM_NEON) && !defined(__ARM_BIG_ENDIAN)",
        c_simd_header: "arm_neon.h",
        cc_flags: &["-march=armv8.2-a+dotprod"],
        pwl_array: PwlArray::Scalar,
        req32: Req32::None,
        lstm_tail: LstmTail::Passes,
        runner: Runner::QemuAarch64,
        f32: F32_NEON,
        rust_features: "",
    },
    // Cortex-M: soft-float ABI where the core may lack an FPU, so the model object
    // links into any firmware. The generated Rust for these targets is the portable
    // Rust (`core::arch::arm`'s DSP intrinsics are unstable).
    TargetInfo {
        target: Target::CortexM0,
        name: "cortex-m0",
        isa: Isa::Portable,
        block_rows: 1,
        c_kernels: CKernels::Portable,
        col_multiple: 4,
        lanes: 1,
        c_simd_cond: "0",
        c_simd_header: "",
        cc_flags: &["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"],
        pwl_array: PwlArray::Scalar,
        req32: Req32::None,
        // No M0 board in QEMU: Armv6-M code runs unchanged on the M3 of the AN385.
        lstm_tail: LstmTail::Passes,
        runner: Runner::QemuSystemArm {
            machine: "mps2-an385",
        },
        f32: F32_SCALAR,
        rust_features: "",
    },
    TargetInfo {
        target: Target::CortexM4,
        name: "cortex-m4",
        isa: Isa::Portable,
        block_rows: 4,
        c_kernels: CKernels::ArmDsp,
        col_multiple: 4,
        lanes: 1,
        c_simd_cond:
            "defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && defined(__GNUC__)",
        c_simd_header: "arm_acle.h",
        cc_flags: &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"],
        pwl_array: PwlArray::Scalar,
        req32: Req32::Mac,
        lstm_tail: LstmTail::Fused,
        runner: Runner::QemuSystemArm {
            machine: "mps2-an386",
        },
        f32: F32_SCALAR,
        rust_features: "",
    },
    TargetInfo {
        target: Target::CortexM7,
        name: "cortex-m7",
        isa: Isa::Portable,
        block_rows: 4,
        c_kernels: CKernels::ArmDsp,
        col_multiple: 4,
        lanes: 1,
        c_simd_cond:
            "defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && defined(__GNUC__)",
        c_simd_header: "arm_acle.h",
        cc_flags: &["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft"],
        pwl_array: PwlArray::Scalar,
        req32: Req32::Mac,
        lstm_tail: LstmTail::Fused,
        runner: Runner::QemuSystemArm {
            machine: "mps2-an500",
        },
        f32: F32_SCALAR,
        rust_features: "",
    },
    // GCC's arm_mve.h needs the hard-float ABI (the vector registers are the FP
    // registers); the model object has no floating-point instruction all the same
    // (checked in tests/cortex_m.rs).
    TargetInfo {
        target: Target::CortexM55,
        name: "cortex-m55",
        isa: Isa::Portable,
        block_rows: 1,
        c_kernels: CKernels::Mve,
        col_multiple: 16,
        lanes: 4,
        c_simd_cond: "defined(__ARM_FEATURE_MVE)",
        c_simd_header: "arm_mve.h",
        cc_flags: &["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"],
        pwl_array: PwlArray::Scalar,
        req32: Req32::Mac,
        lstm_tail: LstmTail::Fused,
        runner: Runner::QemuSystemArm {
            machine: "mps3-an547",
        },
        // Helium's f32 lanes are not used by the f32 counterpart: scalar code.
        f32: F32_SCALAR,
        rust_features: "",
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
            // Where the Rust has SIMD kernels, its layout is the C's, one vector of
            // int32 lanes high; portable C reads unpacked rows.
            if let Some(br) = info.isa.block_rows() {
                assert_eq!(br, info.block_rows, "{}", info.name);
                assert_eq!(br, info.lanes, "{}", info.name);
            }
            if info.c_kernels == CKernels::Portable {
                assert_eq!(info.block_rows, 1, "{}", info.name);
            }
            assert_eq!(info.runner == Runner::QemuAarch64, t.is_arm());
        }
        assert_eq!(Target::from_name("avx3"), None);
    }
}
