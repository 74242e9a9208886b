//! Integer square roots, for layer normalization (and any other op that needs them).
//!
//! Every function here is exact: it returns the mathematically defined floor for every
//! input in its domain, so any other exact implementation (a C back end, a SIMD kernel,
//! a Newton iteration with a final correction) produces the same bits. None of them
//! panics, allocates or uses floating point; inputs outside a documented domain are
//! mapped to a documented value instead.
//!
//! | function | result | domain | cost (loop trips) |
//! |---|---|---|---|
//! | [`isqrt_u32`] | `floor(√x)` | all `u32` | ≤ 16 |
//! | [`isqrt_u64`] | `floor(√x)` | all `u64` | ≤ 32 |
//! | [`isqrt_u128`] | `floor(√x)` | all `u128` | ≤ 64 |
//! | [`inv_sqrt_q`] | `floor(2^f / √x)` | `x ≥ 1`, `f ≤ 63` | one `u128 / u64` division + ≤ 64 |

/// `floor(sqrt(x))` for a `u32`, exact for every input (`isqrt_u32(u32::MAX) == 65535`).
///
/// Bitwise (digit-by-digit) method: at most 16 iterations of compare, subtract and
/// shift on `u32`, so it suits 32-bit targets without a 64-bit multiplier.
pub fn isqrt_u32(x: u32) -> u32 {
    if x < 2 {
        return x;
    }
    let mut remainder = x;
    let mut root: u32 = 0;
    // Largest power of four not above x.
    let mut bit: u32 = 1 << ((31 - x.leading_zeros()) & !1);
    while bit != 0 {
        if remainder >= root + bit {
            remainder -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// `floor(sqrt(x))` for a `u64`, exact for every input.
pub fn isqrt_u64(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Bitwise method: one result bit per iteration, from the top.
    let mut remainder = x;
    let mut root: u64 = 0;
    let mut bit: u64 = 1 << ((63 - x.leading_zeros()) & !1);
    while bit != 0 {
        if remainder >= root + bit {
            remainder -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// `floor(sqrt(x))` for a `u128`, exact for every input (the result fits in a `u64`).
///
/// Inputs below 2^64 take the [`isqrt_u64`] path; larger ones run the same bitwise
/// method on `u128` (at most 64 iterations).
pub fn isqrt_u128(x: u128) -> u64 {
    if x <= u64::MAX as u128 {
        return isqrt_u64(x as u64);
    }
    let mut remainder = x;
    let mut root: u128 = 0;
    let mut bit: u128 = 1 << ((127 - x.leading_zeros()) & !1);
    while bit != 0 {
        if remainder >= root + bit {
            remainder -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    // root = floor(sqrt(x)) < 2^64.
    root as u64
}

/// Largest `out_frac_bits` accepted by [`inv_sqrt_q`]; larger values are treated as 63.
pub const INV_SQRT_MAX_FRAC_BITS: u32 = 63;

/// Inverse square root in fixed point: `floor(2^out_frac_bits / sqrt(x))`, exact.
///
/// The result `r` is the unique integer with `r² · x ≤ 2^(2f) < (r + 1)² · x`
/// (`f = out_frac_bits`), i.e. `1/√x` on a `2^-f` grid rounded down, for *every*
/// `x ≥ 1` — not only for powers of two or special `n` as in TFLite's layer norm.
///
/// - Domain: `x ≥ 1` and `out_frac_bits ≤ 63` (then `r ≤ 2^f ≤ 2^63`, and `r = 2^f`
///   exactly when `x = 1`). `out_frac_bits` above 63 is treated as 63. `x = 0`
///   (infinite result) returns `u64::MAX`.
/// - Method: `r = isqrt(floor(2^(2f) / x))`, which is exact because for an integer `r`,
///   `r ≤ √(N/x) ⟺ r² ≤ N/x ⟺ r² ≤ floor(N/x)`.
/// - Cost: one `u128 / u64` division and [`isqrt_u128`] (≤ 64 iterations; ≤ 32 when
///   `2^(2f) / x < 2^64`, e.g. for `f ≤ 31`). It runs once per normalized row, not per
///   element.
pub fn inv_sqrt_q(x: u64, out_frac_bits: u32) -> u64 {
    if x == 0 {
        return u64::MAX;
    }
    let f = if out_frac_bits > INV_SQRT_MAX_FRAC_BITS {
        INV_SQRT_MAX_FRAC_BITS
    } else {
        out_frac_bits
    };
    let numerator: u128 = 1u128 << (2 * f);
    isqrt_u128(numerator / x as u128)
}
