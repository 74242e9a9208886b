//! Exactness tests of the integer square roots (docs/NUMERICS.md §9), checked with
//! exact `u128` inequalities rather than floating point.

use irnn_runtime::sqrt::{inv_sqrt_q, isqrt_u128, isqrt_u32, isqrt_u64, INV_SQRT_MAX_FRAC_BITS};
use proptest::prelude::*;

/// `r = floor(√x)` ⟺ `r² ≤ x < (r + 1)²`.
fn is_floor_sqrt_u64(x: u64, r: u64) -> bool {
    let (x, r) = (x as u128, r as u128);
    r * r <= x && x < (r + 1) * (r + 1)
}

/// Same for u128 inputs: `(r + 1)²` may exceed u128 only when r = 2^64 − 1.
fn is_floor_sqrt_u128(x: u128, r: u64) -> bool {
    let r = r as u128;
    let below = r * r <= x; // r < 2^64 so r² < 2^128
    let above = match (r + 1).checked_mul(r + 1) {
        Some(next) => x < next,
        None => true,
    };
    below && above
}

/// `r = floor(2^f / √x)` ⟺ `r²·x ≤ 2^(2f) < (r + 1)²·x` (all in u128; r ≤ 2^63).
fn is_inv_sqrt(x: u64, f: u32, r: u64) -> bool {
    let n = 1u128 << (2 * f);
    let (x, r) = (x as u128, r as u128);
    let below = match (r * r).checked_mul(x) {
        Some(v) => v <= n,
        None => false,
    };
    let above = match ((r + 1) * (r + 1)).checked_mul(x) {
        Some(v) => n < v,
        None => true,
    };
    below && above
}

fn edge_u64() -> Vec<u64> {
    let mut v = vec![0, 1, 2, 3, 4, 5, u64::MAX, u64::MAX - 1];
    for k in 0..64 {
        let p = 1u64 << k;
        v.extend_from_slice(&[p, p - 1, p + 1]);
    }
    // Perfect squares and their neighbours, up to the largest one in u64.
    for r in [2u64, 3, 255, 256, 65_535, 65_536, 1 << 31, (1 << 32) - 1] {
        let s = r * r;
        v.extend_from_slice(&[s - 1, s, s + 1]);
    }
    v
}

#[test]
fn isqrt_u64_edges() {
    for &x in &edge_u64() {
        assert!(is_floor_sqrt_u64(x, isqrt_u64(x)), "x={x}");
    }
    assert_eq!(isqrt_u64(0), 0);
    assert_eq!(isqrt_u64(1), 1);
    assert_eq!(isqrt_u64(u64::MAX), (1 << 32) - 1);
    assert_eq!(
        isqrt_u64(((1u64 << 32) - 1) * ((1 << 32) - 1)),
        (1 << 32) - 1
    );
    assert_eq!(
        isqrt_u64(((1u64 << 32) - 1) * ((1 << 32) - 1) - 1),
        (1 << 32) - 2
    );
}

#[test]
fn isqrt_u32_exhaustive_small_and_edges() {
    for x in 0..=1_000_000u32 {
        assert!(is_floor_sqrt_u64(x as u64, isqrt_u32(x) as u64), "x={x}");
    }
    for &x in &edge_u64() {
        if x <= u32::MAX as u64 {
            let x = x as u32;
            assert_eq!(isqrt_u32(x) as u64, isqrt_u64(x as u64), "x={x}");
        }
    }
    assert_eq!(isqrt_u32(u32::MAX), 65_535);
    assert_eq!(isqrt_u32(65_535 * 65_535), 65_535);
    assert_eq!(isqrt_u32(65_535 * 65_535 - 1), 65_534);
}

#[test]
fn isqrt_u128_edges() {
    let mut xs: Vec<u128> = vec![0, 1, 2, 3, u128::MAX, u128::MAX - 1];
    for k in 0..128 {
        let p = 1u128 << k;
        xs.extend_from_slice(&[p, p - 1, p + 1]);
    }
    for r in [
        (1u128 << 32) - 1,
        1 << 32,
        (1 << 63) + 12_345,
        (1 << 64) - 1,
    ] {
        let s = r * r;
        xs.extend_from_slice(&[s - 1, s, s + 1]);
    }
    for &x in &xs {
        assert!(is_floor_sqrt_u128(x, isqrt_u128(x)), "x={x}");
    }
    assert_eq!(isqrt_u128(u128::MAX), u64::MAX);
}

#[test]
fn inv_sqrt_q_edges() {
    for f in 0..=INV_SQRT_MAX_FRAC_BITS {
        for &x in &edge_u64() {
            if x == 0 {
                continue;
            }
            let r = inv_sqrt_q(x, f);
            assert!(is_inv_sqrt(x, f, r), "x={x} f={f} r={r}");
        }
        assert_eq!(inv_sqrt_q(1, f), 1 << f);
        assert_eq!(inv_sqrt_q(4, f), (1 << f) >> 1);
    }
    // Small, hand-checkable values: 2^16/√3 = 37837.22…, 2^15/√10 = 10362.19…
    assert_eq!(inv_sqrt_q(3, 16), 37_837);
    assert_eq!(inv_sqrt_q(10, 15), 10_362);
    // Documented out-of-domain behaviour.
    assert_eq!(inv_sqrt_q(0, 10), u64::MAX);
    assert_eq!(inv_sqrt_q(12_345, 64), inv_sqrt_q(12_345, 63));
    assert_eq!(inv_sqrt_q(7, u32::MAX), inv_sqrt_q(7, 63));
    assert_eq!(inv_sqrt_q(u64::MAX, 0), 0);
    assert_eq!(inv_sqrt_q(u64::MAX, 63), 2_147_483_648); // 2^63 / √(2^64 − 1) → 2^31
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn isqrt_u64_is_floor(x in any::<u64>()) {
        prop_assert!(is_floor_sqrt_u64(x, isqrt_u64(x)));
    }

    #[test]
    fn isqrt_u64_exact_around_perfect_squares(r in 0u64..(1 << 32), d in 0u64..3) {
        let s = r * r;
        let x = (s + d).saturating_sub(1); // s − 1, s, s + 1
        prop_assert!(is_floor_sqrt_u64(x, isqrt_u64(x)));
        prop_assert_eq!(isqrt_u64(s), r);
    }

    #[test]
    fn isqrt_u32_matches_u64(x in any::<u32>()) {
        prop_assert_eq!(isqrt_u32(x) as u64, isqrt_u64(x as u64));
        prop_assert!(is_floor_sqrt_u64(x as u64, isqrt_u32(x) as u64));
    }

    #[test]
    fn isqrt_u128_is_floor(x in any::<u128>(), bits in 0u32..128) {
        let x = x >> bits; // spread magnitudes
        prop_assert!(is_floor_sqrt_u128(x, isqrt_u128(x)));
    }

    #[test]
    fn isqrt_u128_exact_around_perfect_squares(r in any::<u64>(), d in 0u128..3) {
        let s = (r as u128) * (r as u128);
        let x = (s + d).saturating_sub(1);
        prop_assert!(is_floor_sqrt_u128(x, isqrt_u128(x)));
        prop_assert_eq!(isqrt_u128(s), r);
    }

    #[test]
    fn inv_sqrt_q_is_exact(x in 1u64..=u64::MAX, f in 0u32..=INV_SQRT_MAX_FRAC_BITS, bits in 0u32..64) {
        let x = (x >> bits).max(1); // spread magnitudes
        prop_assert!(is_inv_sqrt(x, f, inv_sqrt_q(x, f)));
    }

    /// Every n, not only powers of two: variances of the form n·k and k/n-like values.
    #[test]
    fn inv_sqrt_q_exact_for_non_power_of_two_counts(n in 1u64..5_000, k in 1u64..1_000_000, f in 0u32..=40) {
        let x = n * k;
        prop_assert!(is_inv_sqrt(x, f, inv_sqrt_q(x, f)));
    }

    #[test]
    fn inv_sqrt_q_is_monotone(a in 1u64..=u64::MAX, b in 1u64..=u64::MAX, f in 0u32..=INV_SQRT_MAX_FRAC_BITS) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert!(inv_sqrt_q(lo, f) >= inv_sqrt_q(hi, f));
    }
}
