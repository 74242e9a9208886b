//! Independent high-precision models of the runtime primitives, shared by the property
//! tests. Everything here is computed exactly in `i128` from the formulas written in
//! docs/NUMERICS.md, without reusing any code from the crate under test.
#![allow(dead_code)]

/// `floor(n / 2^e)` for any `e` (exact; `i128` arithmetic shift is a floor).
pub fn floor_div_pow2(n: i128, e: u32) -> i128 {
    n >> e
}

/// `n / 2^e` rounded to nearest, ties towards +∞.
pub fn round_half_up_pow2(n: i128, e: u32) -> i128 {
    if e == 0 {
        return n;
    }
    (n + (1i128 << (e - 1))) >> e
}

/// `n / 2^e` rounded to nearest, ties away from zero (written on the magnitude).
pub fn round_half_away_pow2(n: i128, e: u32) -> i128 {
    if e == 0 {
        return n;
    }
    let magnitude = (n.abs() + (1i128 << (e - 1))) >> e;
    if n < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Saturating cast of an exact value to `i32`.
pub fn sat32(v: i128) -> i32 {
    v.clamp(i32::MIN as i128, i32::MAX as i128) as i32
}

/// Saturating cast of an exact value to `i16`.
pub fn sat16(v: i128) -> i16 {
    v.clamp(i16::MIN as i128, i16::MAX as i128) as i16
}

/// Saturating cast of an exact value to `i8`.
pub fn sat8(v: i128) -> i8 {
    v.clamp(i8::MIN as i128, i8::MAX as i128) as i8
}

/// Model of `saturating_rounding_doubling_high_mul`: round half up of a·b/2^31, then
/// saturated (only MIN·MIN needs it).
pub fn srdhm_model(a: i32, b: i32) -> i32 {
    sat32(round_half_up_pow2(a as i128 * b as i128, 31))
}

/// Model of `multiply_by_quantized_multiplier` as documented in docs/NUMERICS.md:
/// - `shift > 0`: `sat32(round_half_up(x · m · 2^shift / 2^31))` (one rounding);
/// - `shift <= 0`: `round_half_away(round_half_up(x · m / 2^31) / 2^-shift)`.
///
/// Shifts outside `[-31, 31]` are clamped as in the crate.
pub fn mbqm_model(x: i32, m: i32, shift: i32) -> i32 {
    let p = x as i128 * m as i128;
    if shift > 0 {
        let left = shift.min(31) as u32;
        sat32(round_half_up_pow2(p << left, 31))
    } else {
        let right = shift.unsigned_abs().min(31);
        let y1 = sat32(round_half_up_pow2(p, 31)) as i128;
        round_half_away_pow2(y1, right) as i32
    }
}

/// `x · m · 2^shift / 2^31` as an exact fraction `num / 2^den_log2` (den_log2 >= 0).
pub fn exact_product(x: i32, m: i32, shift: i32) -> (i128, u32) {
    let p = x as i128 * m as i128;
    if shift >= 31 {
        (p << (shift - 31) as u32, 0)
    } else {
        (p, (31 - shift) as u32)
    }
}
