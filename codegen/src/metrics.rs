//! Scores shared by `irnn eval` and QAT validation (`irnn-train`).

/// Bits of the target under the softmax of `logits`: `−log2 softmax(logits)[target]`,
/// computed stably (max subtracted first).
pub fn bits(logits: &[f64], target: usize) -> f64 {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
    -(logits[target] - max - sum.ln()) / std::f64::consts::LN_2
}

/// Index of the largest value (the first one on ties; 0 for an empty slice).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in xs.iter().enumerate() {
        if *v > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_argmax() {
        // Uniform over 4 classes: 2 bits; the max subtraction keeps huge logits finite.
        assert!((bits(&[1e300, 1e300, 1e300, 1e300], 2) - 2.0).abs() < 1e-12);
        assert!((bits(&[0.0, (3.0f64).ln()], 1) - (4.0f64 / 3.0).log2()).abs() < 1e-12);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }
}
