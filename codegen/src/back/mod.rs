//! Back ends: from a lowered [`Program`] to source files, in memory.
//!
//! One module per language, each with a single `write` entry point. [`generate`] is the
//! core that the CLI (`irnn gen`), the build.rs [`crate::builder::Builder`] and the
//! `include_model!` proc-macro all call; they only decide where the files go.
//!
//! Output is deterministic: the same program and options give byte-identical files,
//! each starting with a header that names the generator version and the model hash.

pub mod c;
pub mod c_f32;
pub(crate) mod c_ops;
pub mod float;
pub mod memory;
pub mod names;
pub mod pack;
pub mod plan;
pub mod pwl_index;
pub mod rust;
pub mod rust_f32;
pub mod targets;
pub mod validate;

pub use plan::{lstm_gate_plan, Fusion};

use crate::ir::ops::Op;
use crate::ir::ranges::{Interval, Ranges};
use crate::ir::Program;
use irnn_runtime::Requant;

/// The right shift `e = −shift` of a requantizer that has the branch-free form of
/// NUMERICS.md ("Branch-free requantization"): `−31 <= shift <= 0` and a multiplier
/// other than `i32::MIN`; `None` otherwise. Both back ends use it to choose that form.
pub fn down_shift(r: &Requant) -> Option<u32> {
    ((-31..=0).contains(&r.shift) && r.multiplier != i32::MIN).then_some((-r.shift) as u32)
}

/// What every back end may assume about one gate-sum op ([`crate::ir::ops::Op::GateSum`]):
/// decided once, from its requantizers and the accumulator intervals that the interval
/// analysis proves ([`crate::ir::ops::OpLayer::ranges`]). C and Rust read these flags;
/// neither derives its own bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateSumPlan {
    /// Every requantizer has [`down_shift`]'s form: the branch-free requantization
    /// applies to every row.
    pub down: bool,
    /// With `down`: for every row the two requantized accumulators are at most
    /// `2^31 − 1` in magnitude together, and each plus its rounding constant `2^(e−1)`
    /// too (the vector form adds it before its shift), so the sum needs no 64-bit lane
    /// (NUMERICS.md, "Branch-free requantization", the int32 forms of the C targets'
    /// `Req32`). A term's doubling high product `y` is at most
    /// `(|acc| · |m| + 2^30) / 2^31 + 1` in magnitude.
    pub sum_i32: bool,
    /// With `sum_i32`: every accumulator is below `2^30` in magnitude (so `2·acc` fits
    /// int32) and every shift is at least 1: the Cortex-M `SMMULR` form (NUMERICS.md,
    /// "Cortex-M (C)").
    pub acc_doubles: bool,
    /// The interval of each term's accumulators (all rows): what the runtime's vector
    /// gate sums are told (`GateReq::with_acc_range`), so they need no per-call check.
    pub acc: [Interval; 2],
}

/// The plan of `op` when it is a gate sum, from the layer's proven `ranges`.
pub fn gate_sum_plan(ranges: &Ranges, op: &Op) -> Option<GateSumPlan> {
    let Op::GateSum { a, ra, b, .. } = op else {
        return None;
    };
    let req = |rs: &[Requant], r: usize| rs[if rs.len() == 1 { 0 } else { r }];
    let terms: Vec<(&[Interval], &[Requant])> = std::iter::once((ranges.view(*a), &ra[..]))
        .chain(b.iter().map(|(v, rb)| (ranges.view(*v), &rb[..])))
        .collect();
    let down = terms
        .iter()
        .all(|(acc, rs)| (0..acc.len()).all(|r| down_shift(&req(rs, r)).is_some()));
    let max = i32::MAX as i128;
    // Per row: (Σ y bounds, every y + half fits, every |acc| < 2^30 with e >= 1).
    let row = |r: usize| {
        terms
            .iter()
            .fold((0i128, true, true), |(sum, fits, dbl), (acc, rs)| {
                let q = req(rs, r);
                let e = down_shift(&q).unwrap_or(0);
                let mag = acc[r].magnitude() as i128;
                let y = (mag * q.multiplier.unsigned_abs() as i128 + (1 << 30)) / (1i128 << 31) + 1;
                (
                    sum + y,
                    fits && y + down_half(e) as i128 <= max,
                    dbl && mag < 1 << 30 && e >= 1,
                )
            })
    };
    let rows = ranges.view(*a).len();
    let (sum_i32, acc_doubles) = (0..rows).fold((down, down), |(s, d), r| {
        let (sum, fits, dbl) = row(r);
        let s = s && sum <= max && fits;
        (s, s && d && dbl)
    });
    let hull = |v: crate::ir::ops::View| ranges.hull(v).unwrap_or(Interval { lo: 0, hi: 0 });
    Some(GateSumPlan {
        down,
        sum_i32,
        acc_doubles,
        acc: [
            hull(*a),
            b.as_ref()
                .map_or(Interval { lo: 0, hi: 0 }, |(v, _)| hull(*v)),
        ],
    })
}

/// The rounding constant `2^(e−1)` of [`down_shift`]'s form (0 for `e = 0`).
pub fn down_half(e: u32) -> i64 {
    (1i64 << e) >> 1
}

/// Output language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    /// Rust (`no_std`, depends on `irnn-runtime`).
    Rust,
    /// C99 (a `.h` and a `.c`, self-contained).
    C,
}

/// Instruction-set target of the generated kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Portable scalar code (always available).
    Scalar,
    /// x86-64 AVX2: int8 matrix–vector products with `vpmaddubsw` and the sign trick,
    /// weights packed in blocks of 8 rows × 4 columns; scalar fallback when the C is
    /// compiled without `__AVX2__` or the Rust runs on a CPU without AVX2. Where AVX-VNNI
    /// is there (C: `__AVXVNNI__`; Rust: detected at run time) the same layout runs
    /// `vpdpbusd` on ymm with the `x + 128` offset bias instead (also for −128 weights).
    Avx2,
    /// x86-64 AVX-512 VNNI: `vpdpbusd` on 16-row × 4-column blocks with the `x + 128`
    /// offset folded into the bias; scalar fallback without
    /// `__AVX512F__ && __AVX512VNNI__` (C) or on a CPU without them (Rust).
    Avx512Vnni,
    /// AArch64 Advanced SIMD: exact int8 products with `smull`/`smull2` into int16,
    /// `sadalp` into int32 lanes, weights packed in blocks of 4 rows × 4 columns;
    /// C: scalar fallback without `__aarch64__ && __ARM_NEON` (little-endian); Rust:
    /// `std::arch::aarch64` intrinsics.
    Neon,
    /// AArch64 NEON with the Armv8.2 dot-product extension: `sdot` on the same 4 × 4
    /// blocks; C: the `smull` kernel when compiled without `__ARM_FEATURE_DOTPROD`,
    /// scalar without NEON; Rust: `sdot` by inline assembly, NEON on a CPU without it.
    NeonDotprod,
    /// Arm Cortex-M0/M0+ (Armv6-M, Thumb-1): the portable C, built and tested for it.
    CortexM0,
    /// Arm Cortex-M4 (Armv7E-M DSP): `SXTB16` + `SMLAD` on 4-row × 4-column blocks;
    /// portable C without `__ARM_FEATURE_DSP`.
    CortexM4,
    /// Arm Cortex-M7: the Cortex-M4 kernels (same instruction set, dual issue).
    CortexM7,
    /// Arm Cortex-M55 (Armv8.1-M, Helium/MVE): `VMLADAVA` int8 dot products over
    /// 16-byte row slices, four rows at a time; portable C without `__ARM_FEATURE_MVE`.
    CortexM55,
}

impl Target {
    /// The name used on the command line and in generated headers.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Every target, in command-line order.
    pub const ALL: [Target; 9] = [
        Target::Scalar,
        Target::Avx2,
        Target::Avx512Vnni,
        Target::Neon,
        Target::NeonDotprod,
        Target::CortexM0,
        Target::CortexM4,
        Target::CortexM7,
        Target::CortexM55,
    ];

    /// Whether the target is for AArch64.
    pub fn is_arm(self) -> bool {
        self.info().runner == targets::Runner::QemuAarch64
    }

    /// Whether the target is an Arm Cortex-M microcontroller (bare metal).
    pub fn is_cortex_m(self) -> bool {
        matches!(self.info().runner, targets::Runner::QemuSystemArm { .. })
    }

    /// Whether the generated C carries packed weights and SIMD kernels (otherwise it
    /// is the portable C of [`Target::Scalar`]).
    pub fn c_packed(self) -> bool {
        self.info().c_kernels != targets::CKernels::Portable
    }

    /// Whether the generated Rust uses the runtime's packed SIMD kernels (otherwise it
    /// is the portable Rust of [`Target::Scalar`]).
    pub fn rust_packed(self) -> bool {
        self.info().isa != irnn_runtime::simd::Isa::Portable
    }
}

/// Arithmetic of the generated model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// The integer model (the product): int8 weights, integer-only arithmetic,
    /// bit-exact with the reference interpreter.
    #[default]
    Int8,
    /// The same model in f32 (weights dequantized from the graph, float sigmoid/tanh):
    /// the float counterpart for speed comparisons on equal terms.
    F32,
}

impl Precision {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::F32 => "f32",
        }
    }
}

/// How far loops over weights are unrolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unroll {
    /// Loops with constant trip counts over static weight arrays.
    None,
    /// The inner (dot-product) loop is unrolled by a fixed factor.
    Inner,
    /// Straight-line code with weights as immediates: for small layers only.
    Full,
}

/// Options of [`generate`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GenOptions {
    /// Output language.
    pub lang: Lang,
    /// Kernel target.
    pub target: Target,
    /// Unrolling.
    pub unroll: Unroll,
    /// Integer model or its f32 counterpart.
    pub precision: Precision,
    /// Whether recurrent layers may be written by fused emitters ([`plan`]).
    pub fusion: Fusion,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            lang: Lang::Rust,
            target: Target::Scalar,
            unroll: Unroll::None,
            precision: Precision::Int8,
            fusion: Fusion::Auto,
        }
    }
}

/// One generated file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    /// File name (no directory), e.g. `charlm.rs`, `charlm.h`.
    pub name: String,
    /// Full contents.
    pub contents: String,
}

/// Generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The option combination is not available.
    #[error("unsupported option: {0}")]
    Unsupported(String),
    /// A layer cannot be generated with these options (for example full unrolling of a
    /// layer that is too large).
    #[error("layer \"{layer}\": {message}")]
    Layer {
        /// Layer name.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// A template failed to render (a bug in irnn).
    #[error("internal error while rendering {template}: {message}")]
    Template {
        /// Template name.
        template: String,
        /// Renderer message.
        message: String,
    },
    /// Generated Rust did not parse back (a bug in irnn).
    #[error("internal error: generated Rust does not parse: {0}")]
    RustSyntax(String),
}

/// Largest layer (weights) that `Unroll::Full` accepts: beyond this, compile time grows
/// faster than the speed gained (gcc took 25 s for a 9k-weight layer).
pub const FULL_UNROLL_MAX_WEIGHTS: usize = 4 * 1024;

/// The generator version written into every file header.
pub const GENERATOR: &str = concat!("irnn ", env!("CARGO_PKG_VERSION"));

/// Generates all files for `program` (the integer model; the f32 counterpart is built
/// from the graph, which keeps the real scales: [`generate_f32`]).
pub fn generate(program: &Program, opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    opts.check()?;
    if opts.precision == Precision::F32 {
        return Err(GenError::Unsupported(
            "--precision f32 is generated from the quantized graph (back::generate_f32), not from the integer program".into(),
        ));
    }
    match opts.lang {
        Lang::Rust => rust::write(program, opts),
        Lang::C => c::write(program, opts),
    }
}

/// Generates the f32 counterpart of a quantized graph (`--precision f32`): see
/// [`float`].
pub fn generate_f32(
    graph: &crate::graph::Graph,
    opts: &GenOptions,
) -> Result<Vec<GeneratedFile>, GenError> {
    generate_f32_program(&float::F32Program::from_graph(graph)?, opts)
}

/// Generates an already dequantized model (`--precision f32`).
pub fn generate_f32_program(
    p: &float::F32Program,
    opts: &GenOptions,
) -> Result<Vec<GeneratedFile>, GenError> {
    opts.check()?;
    p.check()?;
    match opts.lang {
        Lang::C => c_f32::write(p, opts),
        Lang::Rust => rust_f32::write(p, opts),
    }
}

impl GenOptions {
    /// The option rules, in one place (`compile::CompileOptions::check` is this):
    /// unrolling applies to the portable int8 code only.
    pub fn check(&self) -> Result<(), GenError> {
        if self.unroll != Unroll::None {
            if self.precision != Precision::Int8 {
                return Err(GenError::Unsupported(
                    "--unroll applies to --precision int8 only".into(),
                ));
            }
            let packed = match self.lang {
                Lang::C => self.target.c_packed(),
                Lang::Rust => self.target.rust_packed(),
            };
            if packed {
                return Err(GenError::Unsupported(format!(
                    "--unroll applies to targets with portable kernels only (target {} has its own kernels)",
                    self.target.name()
                )));
            }
        }
        Ok(())
    }
}
