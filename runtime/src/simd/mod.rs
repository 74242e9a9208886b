//! Packed int8 matrix–vector kernels: a portable one and hand-written SIMD ones
//! (AVX2, AVX-VNNI, AVX-512 VNNI, NEON, NEON dot product), all bit-identical to
//! [`crate::kernels::matvec_i8`] (docs/NUMERICS.md §8: every partial sum fits in `i32`,
//! so any summation order, and wrapping arithmetic, is exact).
//!
//! # Layout
//!
//! A `[rows][cols]` int8 matrix is packed as `[blocks][groups][block_rows][4]`: rows
//! padded with zeros to a multiple of `block_rows`, columns to a multiple of 4 ([`pack`]).
//! One 4-byte group of `block_rows` rows is one vector load; multiplied by the matching
//! 4 input bytes broadcast to every lane, it adds one `i32` per row, so no horizontal
//! reduction is needed. The block height is the target's: 8 for AVX2, 16 for AVX-512,
//! 4 for NEON ([`Isa::block_rows`]); the portable kernel reads any height.
//!
//! # Safety
//!
//! The public API is safe. A [`Kernel`] other than the portable one can only be obtained
//! after the CPU feature was verified ([`Kernel::new`], [`Kernel::best_for`],
//! [`Kernel::detect`]): at run time with the crate feature `std`
//! (`is_x86_feature_detected!`, `is_aarch64_feature_detected!`), at compile time
//! (`cfg!(target_feature = ...)`) without it. [`Kernel::matvec`] checks every length
//! once before a SIMD kernel touches memory (whether a matrix's own lengths agree is
//! decided when its `const fn` constructors build it, not on every product); a matrix
//! whose shape is inconsistent runs the portable kernel, which is total. [`Kernel::vectorize`] calls a `#[target_feature]`
//! function only through the same proofs, whose detection covers every feature it
//! enables. The `unsafe` code lives in the per-architecture submodules only (the
//! `isa_proof!` macro expands there), each block with its `SAFETY` argument.

/// Defines a zero-sized proof that this CPU runs an instruction set (made only by its
/// `detect`), its safe `matvec`, which calls the `unsafe` kernel only after
/// [`Shape::fits`] has checked every length for the kernel's block height, and its safe
/// `vectorize`, which runs a closure inside a function compiled with `features` (every
/// one of them checked by `detect`).
macro_rules! isa_proof {
    (
        $(#[$doc:meta])* $name:ident,
        detected: $detected:expr,
        features: $features:literal,
        rows: $rows:expr,
        kernel: $kernel:ident
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(super) struct $name(());

        impl $name {
            pub(super) fn detect() -> Option<Self> {
                ($detected).then_some($name(()))
            }

            /// `acc = bias + W x` on the packed layout (see the type's documentation for
            /// what `bias` must hold); `false` (nothing written) if a length does not fit.
            pub(super) fn matvec(
                self,
                s: &Shape,
                w: &[u8],
                bias: &[i32],
                x: &[i8],
                acc: &mut [i32],
            ) -> bool {
                if !s.fits($rows, w, bias, x, acc) {
                    return false;
                }
                // SAFETY: a value of this type exists only when `detect` found the
                // instruction set on this CPU (or it is enabled at compile time), and
                // `fits` checked every length the kernel relies on.
                unsafe { $kernel(s, w, bias, x, acc) };
                true
            }

            /// `f()`, called from a function compiled with this instruction set, so that
            /// code LLVM inlines from `f` (an `#[inline(always)]` closure) is compiled
            /// for it too.
            #[inline]
            pub(super) fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
                /// Not inlined into callers without these features (LLVM refuses), so
                /// it is where `f`'s body ends up.
                #[inline]
                #[target_feature(enable = $features)]
                fn with_isa<R>(f: impl FnOnce() -> R) -> R {
                    f()
                }
                // SAFETY: a value of this type exists only when `detect` found every
                // feature in `features` on this CPU (or they are enabled at compile
                // time). `f` is safe code: compiling it with more instructions
                // available changes how, not what, it computes.
                unsafe { with_isa(f) }
            }
        }
    };
}

#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
mod arm;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

mod gates;
mod pwl;
#[cfg(test)]
mod tests;

pub use gates::GateReq;
pub use pwl::{Bucket16, GatherPwl, RegFold, RegPwl};

/// Instruction-set targets of the matrix–vector kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust on the packed layout (any block height).
    Portable,
    /// x86-64 AVX2: `vpmaddubsw` with the sign trick, 8-row blocks. Exact only when no
    /// weight is −128: a matrix holding one runs the portable kernel.
    Avx2,
    /// x86-64 AVX-VNNI (VEX `vpdpbusd` on 256-bit vectors: Alder Lake and later, Zen 5)
    /// on AVX2's 8-row layout: `x + 128` times the weights with the offset bias
    /// ([`PackedMatrix::with_offset_bias`]), exact for every weight. Without an offset
    /// bias the matrix runs AVX2's sign trick (every such CPU has AVX2).
    AvxVnni,
    /// x86-64 AVX-512 VNNI: `vpdpbusd` on `x + 128`, 16-row blocks; needs the bias
    /// `bias − 128 · rowsum(W)` ([`PackedMatrix::with_offset_bias`]).
    Avx512Vnni,
    /// AArch64 NEON: `smull`/`smull2` + `sadalp`, 4-row blocks (exact for all int8).
    Neon,
    /// AArch64 NEON with the dot-product extension: `sdot`, 4-row blocks.
    NeonDotprod,
}

impl Isa {
    /// Every ISA, portable first.
    pub const ALL: [Isa; 6] = [
        Isa::Portable,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512Vnni,
        Isa::Neon,
        Isa::NeonDotprod,
    ];

    /// The block height this ISA's kernel reads (`None`: any, for the portable kernel).
    pub const fn block_rows(self) -> Option<usize> {
        match self {
            Isa::Portable => None,
            Isa::Avx2 | Isa::AvxVnni => Some(8),
            Isa::Avx512Vnni => Some(16),
            Isa::Neon | Isa::NeonDotprod => Some(4),
        }
    }

    /// Name as on the `irnn` command line (`scalar` for the portable kernel).
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Portable => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }

    /// Whether this CPU runs the ISA's kernel (see the module docs for how it is found).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx2 => detect::avx2(),
            Isa::AvxVnni => detect::avx2() && detect::avxvnni(),
            Isa::Avx512Vnni => detect::avx512vnni(),
            Isa::Neon => detect::neon(),
            Isa::NeonDotprod => detect::neon() && detect::dotprod(),
        }
    }

    /// The ISA to try next when this one is not supported, on the same layout.
    const fn fallback(self) -> Isa {
        match self {
            Isa::NeonDotprod => Isa::Neon,
            Isa::AvxVnni => Isa::Avx2,
            _ => Isa::Portable,
        }
    }

    /// A faster kernel on the same layout, tried first by [`Kernel::best_for`]: AVX-VNNI
    /// for AVX2's layout.
    const fn upgrade(self) -> Option<Isa> {
        match self {
            Isa::Avx2 => Some(Isa::AvxVnni),
            _ => None,
        }
    }
}

/// CPU feature checks: run time with `std` (and in the crate's own tests), compile
/// time otherwise.
mod detect {
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    pub fn avx2() -> bool {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(all(target_arch = "x86_64", not(any(test, feature = "std"))))]
    pub fn avx2() -> bool {
        cfg!(target_feature = "avx2")
    }
    /// AVX-512 F, BW, VL and VNNI: the VNNI kernel needs F and VNNI, the code
    /// `Kernel::vectorize` compiles also uses BW and VL (every CPU with VNNI has them).
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    pub fn avx512vnni() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(all(target_arch = "x86_64", not(any(test, feature = "std"))))]
    pub fn avx512vnni() -> bool {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni"
        ))
    }
    #[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
    pub fn avxvnni() -> bool {
        std::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(all(target_arch = "x86_64", not(any(test, feature = "std"))))]
    pub fn avxvnni() -> bool {
        cfg!(target_feature = "avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    pub fn avx2() -> bool {
        false
    }
    #[cfg(not(target_arch = "x86_64"))]
    pub fn avxvnni() -> bool {
        false
    }
    #[cfg(not(target_arch = "x86_64"))]
    pub fn avx512vnni() -> bool {
        false
    }

    #[cfg(all(target_arch = "aarch64", any(test, feature = "std")))]
    pub fn neon() -> bool {
        std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(all(target_arch = "aarch64", not(any(test, feature = "std"))))]
    pub fn neon() -> bool {
        cfg!(target_feature = "neon")
    }
    #[cfg(all(target_arch = "aarch64", any(test, feature = "std")))]
    pub fn dotprod() -> bool {
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(all(target_arch = "aarch64", not(any(test, feature = "std"))))]
    pub fn dotprod() -> bool {
        cfg!(target_feature = "dotprod")
    }
    #[cfg(not(target_arch = "aarch64"))]
    pub fn neon() -> bool {
        false
    }
    #[cfg(not(target_arch = "aarch64"))]
    pub fn dotprod() -> bool {
        false
    }
}

/// A value aligned to 64 bytes (a cache line, an AVX-512 vector): the generated code
/// wraps its packed weights and biases in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C, align(64))]
pub struct Aligned64<T>(pub T);

/// Rows of a `block_rows`-high block layout after padding.
pub const fn padded_rows(rows: usize, block_rows: usize) -> usize {
    if block_rows == 0 {
        return 0;
    }
    rows.div_ceil(block_rows) * block_rows
}

/// Bytes of a `[rows][cols]` matrix packed in `block_rows`-high blocks
/// (`padded_rows · 4·⌈cols/4⌉`).
pub const fn packed_len(rows: usize, cols: usize, block_rows: usize) -> usize {
    padded_rows(rows, block_rows) * cols.div_ceil(4) * 4
}

/// A shape or length that does not fit the packed layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeError {
    /// What is wrong.
    pub what: &'static str,
    /// The length found.
    pub found: usize,
    /// The length expected.
    pub expected: usize,
}

impl core::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} has length {}; expected {}",
            self.what, self.found, self.expected
        )
    }
}

fn expect_len(what: &'static str, found: usize, expected: usize) -> Result<(), ShapeError> {
    if found == expected {
        Ok(())
    } else {
        Err(ShapeError {
            what,
            found,
            expected,
        })
    }
}

/// Packs the row-major `[rows][cols]` matrix `w` into `out` (`[blocks][groups][block_rows][4]`
/// two's-complement bytes, zero padded; `out.len()` must be
/// [`packed_len`]`(rows, cols, block_rows)`).
pub fn pack(
    w: &[i8],
    rows: usize,
    cols: usize,
    block_rows: usize,
    out: &mut [u8],
) -> Result<(), ShapeError> {
    if block_rows == 0 {
        return Err(ShapeError {
            what: "block_rows",
            found: 0,
            expected: 4,
        });
    }
    expect_len("weights", w.len(), rows.saturating_mul(cols))?;
    expect_len(
        "packed output",
        out.len(),
        packed_len(rows, cols, block_rows),
    )?;
    let groups = cols.div_ceil(4);
    out.fill(0);
    for (r, row) in w.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate() {
            let at = ((r / block_rows * groups + j / 4) * block_rows + r % block_rows) * 4 + j % 4;
            if let Some(d) = out.get_mut(at) {
                *d = v as u8;
            }
        }
    }
    Ok(())
}

/// `out[r] = bias[r] − 128 · Σ_j w[r, j]` for the AVX-512 VNNI kernel (which multiplies
/// `x + 128` as unsigned bytes), zero for the padding rows `rows..out.len()`. Fails
/// (naming nothing but the lengths) when a value leaves `i32`; lowered models cannot
/// (NUMERICS.md §8 bounds `|b| + 128 · Σ|W|`).
pub fn offset_bias(
    w: &[i8],
    rows: usize,
    cols: usize,
    bias: &[i32],
    out: &mut [i32],
) -> Result<(), ShapeError> {
    expect_len("weights", w.len(), rows.saturating_mul(cols))?;
    expect_len("bias", bias.len(), rows)?;
    if out.len() < rows {
        return Err(ShapeError {
            what: "offset bias",
            found: out.len(),
            expected: rows,
        });
    }
    out.fill(0);
    for (r, (dst, &b)) in out.iter_mut().zip(bias).enumerate() {
        let rowsum: i64 = w
            .get(r * cols..(r + 1) * cols)
            .unwrap_or(&[])
            .iter()
            .map(|&v| v as i64)
            .sum();
        *dst = i32::try_from(b as i64 - 128 * rowsum).map_err(|_| ShapeError {
            what: "bias - 128 * rowsum (leaves i32) at row",
            found: r,
            expected: r,
        })?;
    }
    Ok(())
}

/// A packed matrix and its bias, as the kernels read them. Lengths are checked by
/// [`Kernel::matvec`] on every call; the *values* are trusted: a wrong offset bias or a
/// false [`PackedMatrix::without_min_weight`] gives wrong sums, never undefined
/// behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedMatrix<'a> {
    weights: &'a [u8],
    bias: &'a [i32],
    offset_bias: &'a [i32],
    rows: usize,
    cols: usize,
    block_rows: usize,
    has_min_weight: bool,
    /// [`PackedMatrix::check_shape`], computed once by the `const fn` constructors (at
    /// compile time for a `static`) instead of on every product.
    shape_ok: bool,
}

impl<'a> PackedMatrix<'a> {
    /// A `[rows][cols]` matrix packed by [`pack`] with `block_rows`, two's-complement
    /// bytes, and its bias padded with zeros to [`padded_rows`]`(rows, block_rows)`.
    ///
    /// Assumes that some weight may be −128 (the AVX2 kernel then falls back to the
    /// portable one) until [`PackedMatrix::without_min_weight`] says otherwise.
    pub const fn new(
        weights: &'a [u8],
        bias: &'a [i32],
        rows: usize,
        cols: usize,
        block_rows: usize,
    ) -> Self {
        let mut m = PackedMatrix {
            weights,
            bias,
            offset_bias: &[],
            rows,
            cols,
            block_rows,
            has_min_weight: true,
            shape_ok: false,
        };
        m.shape_ok = m.check_shape();
        m
    }

    /// Declares that no weight is −128, which the AVX2 sign trick needs.
    pub const fn without_min_weight(mut self) -> Self {
        self.has_min_weight = false;
        self
    }

    /// Adds `bias − 128 · rowsum(W)` (see [`offset_bias`]), padded like the bias, for
    /// the AVX-512 VNNI kernel; without it that kernel falls back to the portable one.
    pub const fn with_offset_bias(mut self, offset_bias: &'a [i32]) -> Self {
        self.offset_bias = offset_bias;
        self.shape_ok = self.check_shape();
        self
    }

    /// Rows of the (unpadded) matrix.
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the (unpadded) matrix.
    pub const fn cols(&self) -> usize {
        self.cols
    }

    /// Block height of the layout.
    pub const fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// Whether every length matches `rows`, `cols` and `block_rows` (computed once, by
    /// the constructors).
    #[inline]
    fn shape_ok(&self) -> bool {
        self.shape_ok
    }

    /// Whether every length matches `rows`, `cols` and `block_rows`.
    const fn check_shape(&self) -> bool {
        let br = self.block_rows;
        if br == 0 || br > MAX_BLOCK_ROWS {
            return false;
        }
        let Some(rows_pad) = self.rows.div_ceil(br).checked_mul(br) else {
            return false;
        };
        let Some(bytes) = rows_pad.checked_mul(self.cols.div_ceil(4)) else {
            return false;
        };
        let Some(bytes) = bytes.checked_mul(4) else {
            return false;
        };
        bytes == self.weights.len()
            && rows_pad == self.bias.len()
            && (self.offset_bias.is_empty() || self.offset_bias.len() == self.bias.len())
    }
}

/// Largest block height [`PackedMatrix`] accepts.
pub const MAX_BLOCK_ROWS: usize = 64;

/// The shape facts the SIMD kernels rely on, established by [`Kernel::matvec`].
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // read only by the architecture modules
struct Shape {
    rows: usize,
    cols: usize,
    blocks: usize,
    groups: usize,
}

#[allow(dead_code)] // used only by the architecture modules
impl Shape {
    /// What the SIMD kernels' loads and stores rely on: `blocks`/`groups` derived from
    /// `rows`/`cols`, `w` exactly `blocks · groups · br · 4` bytes, at least
    /// `blocks · br` biases, `x` of `cols` and `acc` of `rows` values.
    fn fits(&self, br: usize, w: &[u8], bias: &[i32], x: &[i8], acc: &[i32]) -> bool {
        br > 0
            && self.blocks == self.rows.div_ceil(br)
            && self.groups == self.cols.div_ceil(4)
            && self
                .blocks
                .checked_mul(self.groups)
                .and_then(|n| n.checked_mul(br * 4))
                == Some(w.len())
            && self.blocks.checked_mul(br).is_some_and(|n| bias.len() >= n)
            && x.len() == self.cols
            && acc.len() == self.rows
    }
}

/// A verified matrix–vector kernel: holding one means its instructions run on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel(Inner);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Inner {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    #[cfg(target_arch = "x86_64")]
    AvxVnni(x86::AvxVnni),
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni(x86::Avx512Vnni),
    #[cfg(target_arch = "aarch64")]
    Neon(arm::Neon),
    #[cfg(target_arch = "aarch64")]
    NeonDotprod(arm::NeonDotprod),
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel::PORTABLE
    }
}

impl Kernel {
    /// The portable kernel (always available).
    pub const PORTABLE: Kernel = Kernel(Inner::Portable);

    /// The kernel of `isa` if this CPU runs it.
    pub fn new(isa: Isa) -> Option<Kernel> {
        let inner = match isa {
            Isa::Portable => Some(Inner::Portable),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::Avx2::detect().map(Inner::Avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => x86::AvxVnni::detect().map(Inner::AvxVnni),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::Avx512Vnni::detect().map(Inner::Avx512Vnni),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => arm::Neon::detect().map(Inner::Neon),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => arm::NeonDotprod::detect().map(Inner::NeonDotprod),
            #[allow(unreachable_patterns)]
            _ => None,
        };
        inner.map(Kernel)
    }

    /// The best kernel this CPU runs for matrices packed for `isa`: a faster one on the
    /// same layout (AVX-VNNI for AVX2), else `isa` itself, else the next kernel on the
    /// same layout (NEON for NEON dot product, AVX2 for AVX-VNNI), else portable.
    pub fn best_for(isa: Isa) -> Kernel {
        if let Some(k) = isa.upgrade().and_then(Kernel::new) {
            return k;
        }
        let mut isa = isa;
        loop {
            if let Some(k) = Kernel::new(isa) {
                return k;
            }
            isa = isa.fallback();
        }
    }

    /// The best kernel of any layout this CPU runs (AVX-512 VNNI, AVX-VNNI, AVX2, NEON
    /// dot product, NEON, portable, in that order).
    pub fn detect() -> Kernel {
        [
            Isa::Avx512Vnni,
            Isa::AvxVnni,
            Isa::Avx2,
            Isa::NeonDotprod,
            Isa::Neon,
        ]
        .into_iter()
        .find_map(Kernel::new)
        .unwrap_or(Kernel::PORTABLE)
    }

    /// The kernel's ISA.
    pub const fn isa(self) -> Isa {
        match self.0 {
            Inner::Portable => Isa::Portable,
            #[cfg(target_arch = "x86_64")]
            Inner::Avx2(_) => Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Inner::AvxVnni(_) => Isa::AvxVnni,
            #[cfg(target_arch = "x86_64")]
            Inner::Avx512Vnni(_) => Isa::Avx512Vnni,
            #[cfg(target_arch = "aarch64")]
            Inner::Neon(_) => Isa::Neon,
            #[cfg(target_arch = "aarch64")]
            Inner::NeonDotprod(_) => Isa::NeonDotprod,
        }
    }

    /// Returns `f()`, run inside a function compiled with this kernel's instruction set
    /// (AVX2; AVX2 and AVX-VNNI; AVX-512 F, BW, VL and VNNI; NEON; NEON with dot product; nothing extra for
    /// the portable kernel), so that LLVM can vectorize what it inlines from `f` with
    /// those instructions, without `-C target-cpu` and without `unsafe` in the caller.
    ///
    /// Only code inlined into that function benefits: pass an `#[inline(always)]`
    /// closure (`kernel.vectorize(#[inline(always)] || ...)`) whose calls are
    /// `#[inline(always)]` too. `f` is called exactly once; what it computes does not
    /// depend on the kernel.
    #[inline]
    pub fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
        match self.0 {
            Inner::Portable => f(),
            #[cfg(target_arch = "x86_64")]
            Inner::Avx2(k) => k.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Inner::AvxVnni(k) => k.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Inner::Avx512Vnni(k) => k.vectorize(f),
            #[cfg(target_arch = "aarch64")]
            Inner::Neon(k) => k.vectorize(f),
            #[cfg(target_arch = "aarch64")]
            Inner::NeonDotprod(k) => k.vectorize(f),
        }
    }

    /// The ISA whose code [`Kernel::matvec`] runs for `m` (with well-shaped `x` and
    /// `acc`): this kernel's when `m` has its layout (and, for AVX2, no −128 weight;
    /// for the VNNI kernels, an offset bias), else (AVX-VNNI without an offset bias)
    /// AVX2's if that fits, else the portable kernel.
    #[inline]
    pub fn isa_for(self, m: &PackedMatrix<'_>) -> Isa {
        let fits = |isa: Isa| {
            m.shape_ok()
                && isa.block_rows() == Some(m.block_rows)
                && match isa {
                    Isa::Avx2 => !m.has_min_weight,
                    Isa::AvxVnni | Isa::Avx512Vnni => !m.offset_bias.is_empty(),
                    _ => true,
                }
        };
        let isa = self.isa();
        if fits(isa) {
            isa
        } else if isa == Isa::AvxVnni && fits(Isa::Avx2) {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    /// `acc[r] = bias[r] + Σ_j W[r, j] · x[j]` for the `rows` rows of `m`: the same
    /// values as [`crate::kernels::matvec_i8`] on the unpacked matrix.
    ///
    /// `x.len()` must be `m.cols()` and `acc.len()` must be `m.rows()`; otherwise (a bug
    /// in the caller: `debug_assert!` fails in debug builds) every row of `acc` is
    /// computed by the portable kernel as if missing weights, biases and inputs were 0.
    pub fn matvec(self, m: &PackedMatrix<'_>, x: &[i8], acc: &mut [i32]) {
        let ok = m.shape_ok() && x.len() == m.cols && acc.len() == m.rows;
        debug_assert!(
            ok,
            "packed matvec: inconsistent shapes (matrix {}x{} in blocks of {}, {} weight bytes, \
             {} biases; x {}, acc {})",
            m.rows,
            m.cols,
            m.block_rows,
            m.weights.len(),
            m.bias.len(),
            x.len(),
            acc.len()
        );
        if !ok {
            portable_total(m, x, acc);
            return;
        }
        let shape = Shape {
            rows: m.rows,
            cols: m.cols,
            blocks: m.rows.div_ceil(m.block_rows),
            groups: m.cols.div_ceil(4),
        };
        let done = match (self.0, self.isa_for(m)) {
            #[cfg(target_arch = "x86_64")]
            (Inner::Avx2(k), Isa::Avx2) => k.matvec(&shape, m.weights, m.bias, x, acc),
            #[cfg(target_arch = "x86_64")]
            (Inner::AvxVnni(k), Isa::AvxVnni) => k.matvec(&shape, m.weights, m.offset_bias, x, acc),
            #[cfg(target_arch = "x86_64")]
            (Inner::AvxVnni(k), Isa::Avx2) => k.avx2().matvec(&shape, m.weights, m.bias, x, acc),
            #[cfg(target_arch = "x86_64")]
            (Inner::Avx512Vnni(k), Isa::Avx512Vnni) => {
                k.matvec(&shape, m.weights, m.offset_bias, x, acc)
            }
            #[cfg(target_arch = "aarch64")]
            (Inner::Neon(k), Isa::Neon) => k.matvec(&shape, m.weights, m.bias, x, acc),
            #[cfg(target_arch = "aarch64")]
            (Inner::NeonDotprod(k), Isa::NeonDotprod) => {
                k.matvec(&shape, m.weights, m.bias, x, acc)
            }
            _ => false,
        };
        if !done {
            portable(m, x, acc);
        }
    }

    /// [`Kernel::matvec`] for `n` input vectors at once: `xs` holds `n` vectors of
    /// `m.cols()` values one after another and `accs` receives `n` results of
    /// `m.rows()` values, `accs[t·rows + r] = bias[r] + Σ_j W[r, j] · xs[t·cols + j]`
    /// (the same values as `n` calls of `matvec`).
    ///
    /// The rows are taken in tiles of about [`SEQ_TILE_BYTES`] of weights, each tile for
    /// every vector before the next: a tile is read from memory once for the `n`
    /// vectors and from the L1 cache after that, where `n` separate matrix–vector
    /// products would stream the whole matrix `n` times (the sequence mode of generated
    /// code: the input projections of a chunk of steps, ARCHITECTURE.md).
    ///
    /// `xs.len()` must be `n · cols` and `accs.len()` `n · rows` for the same `n`;
    /// otherwise (a bug in the caller: `debug_assert!` fails in debug builds) each
    /// vector goes through `matvec` on its own, which handles bad lengths as documented
    /// there.
    pub fn matvec_seq(self, m: &PackedMatrix<'_>, xs: &[i8], accs: &mut [i32]) {
        let (rows, cols, br) = (m.rows, m.cols, m.block_rows);
        let n = xs.len().checked_div(cols).unwrap_or(0);
        let ok =
            m.shape_ok() && cols > 0 && rows > 0 && xs.len() == n * cols && accs.len() == n * rows;
        debug_assert!(ok, "packed matvec_seq: inconsistent shapes");
        if !ok {
            for (x, acc) in xs.chunks(cols.max(1)).zip(accs.chunks_mut(rows.max(1))) {
                self.matvec(m, x, acc);
            }
            return;
        }
        let block_bytes = cols.div_ceil(4) * 4 * br;
        let blocks = rows.div_ceil(br);
        // Whole groups of 4 blocks (the kernels' unit), at least one group.
        let tile = (SEQ_TILE_BYTES / block_bytes / 4 * 4).max(4);
        let mut b0 = 0;
        while b0 < blocks {
            let b1 = (b0 + tile).min(blocks);
            let (r0, r1) = (b0 * br, (b1 * br).min(rows));
            let mut sub = PackedMatrix::new(
                m.weights
                    .get(b0 * block_bytes..b1 * block_bytes)
                    .unwrap_or(&[]),
                m.bias.get(b0 * br..b1 * br).unwrap_or(&[]),
                r1 - r0,
                cols,
                br,
            )
            .with_offset_bias(m.offset_bias.get(b0 * br..b1 * br).unwrap_or(&[]));
            sub.has_min_weight = m.has_min_weight;
            for (x, acc) in xs.chunks_exact(cols).zip(accs.chunks_exact_mut(rows)) {
                self.matvec(&sub, x, &mut acc[r0..r1]);
            }
            b0 = b1;
        }
    }
}

/// Weight bytes per tile of [`Kernel::matvec_seq`] (at least four row blocks): a third
/// of a 48 KB L1 data cache, half of a 32 KB one.
pub const SEQ_TILE_BYTES: usize = 16 * 1024;

/// The 4 input bytes of group `g` (zero past the end) as a little-endian word.
#[inline(always)]
fn group_word(x: &[i8], g: usize) -> i32 {
    let mut b = [0u8; 4];
    for (k, d) in b.iter_mut().enumerate() {
        if let Some(&v) = x.get(4 * g + k) {
            *d = v as u8;
        }
    }
    i32::from_le_bytes(b)
}

/// Group word `g` of `x` (4 bytes, little-endian; zero past the end).
#[inline(always)]
fn word(x: &[i8], g: usize) -> i32 {
    match x.get(4 * g..4 * g + 4) {
        Some(&[a, b, c, d]) => i32::from_le_bytes([a as u8, b as u8, c as u8, d as u8]),
        _ => group_word(x, g),
    }
}

/// The portable kernel on a well-shaped packed matrix (`shape_ok`, `x.len() == cols`,
/// `acc.len() == rows`); wrapping `i32` sums. One block at a time: each input group is
/// read once per block and multiplies the block's 4-byte row groups (4 products sum to at
/// most `4 · 2^14`, then wrap into the row's accumulator).
fn portable(m: &PackedMatrix<'_>, x: &[i8], acc: &mut [i32]) {
    let br = m.block_rows;
    let groups = m.cols.div_ceil(4);
    let block_bytes = groups * br * 4;
    if block_bytes == 0 {
        for (a, b) in acc.iter_mut().zip(m.bias) {
            *a = *b;
        }
        return;
    }
    let mut sums = [0i32; MAX_BLOCK_ROWS];
    let sums = &mut sums[..br.min(MAX_BLOCK_ROWS)];
    for ((wb, out), bias) in m
        .weights
        .chunks_exact(block_bytes)
        .zip(acc.chunks_mut(br))
        .zip(m.bias.chunks(br))
    {
        sums.fill(0);
        for (s, b) in sums.iter_mut().zip(bias) {
            *s = *b;
        }
        for (g, wg) in wb.chunks_exact(br * 4).enumerate() {
            let [x0, x1, x2, x3] = word(x, g).to_le_bytes().map(|v| v as i8 as i32);
            for (s, w4) in sums.iter_mut().zip(wg.chunks_exact(4)) {
                if let &[a, b, c, d] = w4 {
                    let dot = a as i8 as i32 * x0
                        + b as i8 as i32 * x1
                        + c as i8 as i32 * x2
                        + d as i8 as i32 * x3;
                    *s = s.wrapping_add(dot);
                }
            }
        }
        for (a, s) in out.iter_mut().zip(sums.iter()) {
            *a = *s;
        }
    }
}

/// The portable kernel for any lengths: row `r` of `acc` is `bias[r] + Σ_j W[r, j]·x[j]`
/// over what is there (missing weights, biases and inputs count as 0).
fn portable_total(m: &PackedMatrix<'_>, x: &[i8], acc: &mut [i32]) {
    let br = m.block_rows.max(1);
    let groups = m.cols.div_ceil(4);
    for (r, dst) in acc.iter_mut().enumerate() {
        let mut sum = m.bias.get(r).copied().unwrap_or(0);
        if r < m.rows {
            for (j, &v) in x.iter().enumerate().take(m.cols) {
                let at = ((r / br * groups + j / 4) * br + r % br) * 4 + j % 4;
                let w = m.weights.get(at).copied().unwrap_or(0) as i8;
                sum = sum.wrapping_add(w as i32 * v as i32);
            }
        }
        *dst = sum;
    }
}
