//! Requantization: rescaling an `i32` by a real factor given as a 32-bit fixed-point
//! multiplier and a power-of-two shift, with saturating casts to narrower types.
//!
//! Rounding rule (see docs/NUMERICS.md): for factors below 1 (`shift <= 0`) the product
//! is formed with [`saturating_rounding_doubling_high_mul`] (round half up on the 64-bit
//! product, saturating only `i32::MIN * i32::MIN`), then divided by a power of two with
//! [`rounding_divide_by_pot`] (round half away from zero). This is the gemmlowp /
//! TFLite "double rounding" scheme; NEON has both steps as single instructions
//! (`vqrdmulh`, `vrshl` with the sign fix-up). For factors of 1 and above
//! (`shift > 0`) the 64-bit product `x · multiplier` is rounded once (half up) and
//! saturated to `i32`, which is what the gemmlowp scheme computes whenever its
//! pre-shift `x · 2^shift` does not overflow.

/// A real multiplier `m · 2^shift / 2^31` in fixed point.
///
/// `multiplier` is in `[2^30, 2^31)` (or 0 for a zero factor) and `shift` in
/// `[-31, 30]`: positive shifts scale up, negative ones scale down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    /// Q0.31 mantissa in `[2^30, 2^31)`, or 0.
    pub multiplier: i32,
    /// Power-of-two exponent applied after the multiply; negative is a right shift.
    pub shift: i32,
}

impl Requant {
    /// The identity factor 1.0 (`2^30 · 2^1 / 2^31`).
    pub const ONE: Requant = Requant {
        multiplier: 1 << 30,
        shift: 1,
    };

    /// Applies the factor to `x` with [`multiply_by_quantized_multiplier`].
    #[inline(always)]
    pub fn apply(self, x: i32) -> i32 {
        multiply_by_quantized_multiplier(x, self.multiplier, self.shift)
    }
}

/// `round(a · b / 2^31)` with ties rounded up (towards +∞), saturated to `i32`.
///
/// Only `a == b == i32::MIN` overflows (the exact result is 2^31); it returns
/// `i32::MAX`.
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = (a as i64) * (b as i64);
    // Nudge by +2^30 for non-negative products and by 1 - 2^30 for negative ones, then
    // divide truncating towards zero: this is round-to-nearest with ties towards +∞
    // for both signs (the same as NEON `vqrdmulh`).
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded to nearest, ties away from zero; `exponent` in `0..=31`.
///
/// Exponents outside that range are clamped to it (the code generators never emit
/// them; see `docs/NUMERICS.md`).
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let exponent = if exponent > 31 { 31 } else { exponent };
    if exponent == 0 {
        return x;
    }
    let mask: i64 = (1i64 << exponent) - 1;
    let x64 = x as i64;
    let remainder = x64 & mask;
    let threshold = (mask >> 1) + if x < 0 { 1 } else { 0 };
    ((x64 >> exponent) + if remainder > threshold { 1 } else { 0 }) as i32
}

/// `x / 2^exponent` for 64-bit values, rounded to nearest with ties away from zero;
/// `exponent` in `0..=62` (clamped). Used where products are kept in 64 bits (layer
/// norm, the cell update).
#[inline(always)]
pub fn rounding_shift_right_i64(x: i64, exponent: u32) -> i64 {
    let exponent = if exponent > 62 { 62 } else { exponent };
    if exponent == 0 {
        return x;
    }
    let mask: i64 = (1i64 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + if x < 0 { 1 } else { 0 };
    (x >> exponent) + if remainder > threshold { 1 } else { 0 }
}

/// Multiplies `x` by the real factor `multiplier · 2^shift / 2^31`.
///
/// - `shift <= 0`: `rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x,
///   multiplier), -shift)` — two roundings (half up, then half away from zero).
/// - `shift > 0`: `saturate_i32(floor((x · multiplier · 2^shift + 2^30) / 2^31))`,
///   computed on the exact 64-bit product — one rounding (half up), then saturation.
///   This equals `saturating_rounding_doubling_high_mul(x << shift, multiplier)`
///   whenever `x << shift` fits in `i32`; unlike a saturating pre-shift, it stays exact
///   for larger `x` (with `Requant::ONE` it is the identity on all of `i32`).
///
/// `shift` should be in `[-31, 30]`; larger shifts act as 31 and smaller ones as −31
/// (no panic for any input).
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    if shift > 0 {
        let left = if shift > 31 { 31 } else { shift as u32 };
        // |x · multiplier| <= 2^62, so the product and the nudge fit in i64.
        let product = (x as i64) * (multiplier as i64);
        let right = 31 - left;
        if right == 0 {
            return saturate_i32(product);
        }
        saturate_i32((product + (1i64 << (right - 1))) >> right)
    } else {
        rounding_divide_by_pot(
            saturating_rounding_doubling_high_mul(x, multiplier),
            shift.unsigned_abs(),
        )
    }
}

/// `x · 2^shift` saturated to `i32`; `shift` in `0..=31`.
#[inline(always)]
pub fn saturating_shift_left(x: i32, shift: u32) -> i32 {
    let shift = if shift > 31 { 31 } else { shift };
    saturate_i32((x as i64) << shift)
}

/// Saturating cast of an `i64` to `i32`.
#[inline(always)]
pub fn saturate_i32(x: i64) -> i32 {
    if x > i32::MAX as i64 {
        i32::MAX
    } else if x < i32::MIN as i64 {
        i32::MIN
    } else {
        x as i32
    }
}

/// Saturating cast of an `i32` to `i16`.
#[inline(always)]
pub fn saturate_i16(x: i32) -> i16 {
    if x > i16::MAX as i32 {
        i16::MAX
    } else if x < i16::MIN as i32 {
        i16::MIN
    } else {
        x as i16
    }
}

/// Saturating cast of an `i32` to `i8`.
#[inline(always)]
pub fn saturate_i8(x: i32) -> i8 {
    if x > i8::MAX as i32 {
        i8::MAX
    } else if x < i8::MIN as i32 {
        i8::MIN
    } else {
        x as i8
    }
}

/// Clamps `x` to `[lo, hi]` (with `lo <= hi`).
#[inline(always)]
pub fn clamp_i32(x: i32, lo: i32, hi: i32) -> i32 {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}
