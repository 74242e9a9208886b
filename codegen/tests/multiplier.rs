//! Integration tests of the real-to-multiplier conversion (`lower::mantissa_exponent`,
//! `lower::quantize_multiplier`): the mantissa rounding and its renormalization at 2^31.
//!
//! The model below works on the exact binary value of the `f64` (its integer
//! significand and power of two, read from the bits) in integer arithmetic, without the
//! float halving and `round` of the code under test.

use irnn_codegen::lower::{mantissa_exponent, quantize_multiplier};
use proptest::prelude::*;

/// `real = significand · 2^power` exactly, for a finite positive `real`.
fn decompose(real: f64) -> (u64, i32) {
    let bits = real.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased - 1075)
    }
}

/// Exact model of `mantissa_exponent`: `q31 = round_half_away(real · 2^(31 − exp))`
/// with `exp` the one putting the unrounded value in `[2^30, 2^31)`; a `q31` of 2^31
/// becomes `(2^30, exp + 1)`. `(0, 0)` for zero, negative or non-finite values.
fn model(real: f64) -> (i32, i32) {
    if !(real.is_finite() && real > 0.0) {
        return (0, 0);
    }
    let (sig, power) = decompose(real);
    // sig ∈ [2^(len − 1), 2^len): real ∈ [2^(len − 1 + power), 2^(len + power)).
    let len = 64 - sig.leading_zeros() as i32;
    let exp = len + power;
    // real · 2^(31 − exp) = sig · 2^(31 − len).
    let q = if len <= 31 {
        sig << (31 - len)
    } else {
        let s = (len - 31) as u32;
        (sig + (1u64 << (s - 1))) >> s
    };
    if q == 1u64 << 31 {
        (1 << 30, exp + 1)
    } else {
        assert!((1u64 << 30..1u64 << 31).contains(&q));
        (q as i32, exp)
    }
}

/// `2^e` for `e` in `[-1074, 1023]`, from the bits (`powi` underflows far below 2^-1022).
fn pow2(e: i32) -> f64 {
    assert!((-1074..=1023).contains(&e));
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

fn check(real: f64) {
    let want = model(real);
    assert_eq!(mantissa_exponent(real), want, "mantissa_exponent({real:e})");
    let req = quantize_multiplier(real);
    if real == 0.0 {
        let r = req.expect("zero is a valid factor");
        assert_eq!((r.multiplier, r.shift), (0, 0));
    } else if !(real.is_finite() && real > 0.0) {
        assert!(
            req.is_err(),
            "quantize_multiplier({real:e}) must be refused"
        );
    } else if (-31..=30).contains(&want.1) {
        let r = req.unwrap_or_else(|e| panic!("quantize_multiplier({real:e}): {e}"));
        assert_eq!(
            (r.multiplier, r.shift),
            want,
            "quantize_multiplier({real:e})"
        );
    } else {
        assert!(
            req.is_err(),
            "quantize_multiplier({real:e}) = {req:?}: shift out of range"
        );
    }
}

/// Significands (53 bits) whose low 22 bits are exactly a half: every tie of the
/// rounding to 31 bits, the all-ones one renormalizing; and their neighbours.
fn tie_significands() -> Vec<u64> {
    let mut v = Vec::new();
    for top in [
        1u64 << 30,
        (1 << 30) + 1,
        3 << 29,
        1_407_374_884,
        (1 << 31) - 2,
        (1 << 31) - 1,
    ] {
        let tie = (top << 22) | (1 << 21);
        v.extend_from_slice(&[tie - 1, tie, tie + 1]);
    }
    v
}

#[test]
fn hand_checked_values() {
    // docs/NUMERICS.md §4: 0.02 · 0.004 · 4096 = 0.32768 → (1_407_374_884, −1).
    assert_eq!(
        mantissa_exponent(0.02 * 0.004 * 4096.0),
        (1_407_374_884, -1)
    );
    // 1.0 = 2^30 · 2^(1 − 31).
    assert_eq!(mantissa_exponent(1.0), (1 << 30, 1));
    // 1 − 2^-40: the mantissa rounds to 2^31 and is renormalized.
    assert_eq!(mantissa_exponent(1.0 - 2f64.powi(-40)), (1 << 30, 1));
    assert_eq!(model(1.0 - 2f64.powi(-40)), (1 << 30, 1));
    // A tie rounds away from zero: (2^30 + 1/2) · 2^-31 → 2^30 + 1.
    let tie = (2f64.powi(30) + 0.5) / 2f64.powi(31);
    assert_eq!(mantissa_exponent(tie), ((1 << 30) + 1, 0));
    assert_eq!(model(tie), ((1 << 30) + 1, 0));
}

#[test]
fn edge_values_match_the_exact_model() {
    let mut reals = vec![
        0.0,
        -0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits((1 << 52) - 1),
    ];
    // Every power of two and its two neighbours, across the whole exponent range.
    for e in -1074..=1023 {
        let p = pow2(e);
        reals.extend_from_slice(&[p, p.next_down(), p.next_up()]);
    }
    // Ties at the shifts the multipliers use and far outside them.
    for sig in tie_significands() {
        for power in [-1074, -80, -60, -52, -40, -22, 0, 40, 971] {
            reals.push(sig as f64 * pow2(power));
        }
    }
    for real in reals {
        check(real);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn any_f64_matches_the_exact_model(bits in any::<u64>()) {
        check(f64::from_bits(bits));
    }

    #[test]
    fn factors_of_the_multiplier_range_match_the_exact_model(
        sig in (1u64 << 52)..(1u64 << 53),
        power in -90i32..=-22,
    ) {
        check(sig as f64 * pow2(power));
    }
}
