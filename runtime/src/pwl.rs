//! Piecewise-linear (PWL) activations evaluated with integers only.
//!
//! A [`Pwl`] table approximates a function `f` on an integer input grid (for example a
//! Q3.12 `i16` gate pre-activation) with an integer output grid (for example Q0.15).
//! Piece `i` covers inputs `starts[i] <= u < starts[i + 1]`; the last piece extends to
//! the end of the input domain and the first one to its start. Within a piece
//!
//! ```text
//! y = (offsets[i] + slopes[i] · (u − starts[i])) >> frac_bits     (arithmetic shift)
//! ```
//!
//! `offsets` already contain the rounding constant `2^(frac_bits−1)`, so the shift is a
//! plain floor. Tables are fitted by `irnn_codegen::pwl` (the adaptive iRNN fit) and
//! validated so that every intermediate value fits in `i32` for inputs in the declared
//! domain; this evaluator computes in `i64` with saturating operations so that it is
//! total (no overflow, no panic) even for tables that were never validated.
//!
//! Symmetry halves the table: with [`Symmetry::Odd`] (tanh) the table covers `u = |x|`
//! and `f(−x) = −f(x)`; with [`Symmetry::Complement`] (sigmoid) `f(−x) = total − f(x)`.
//! The result is finally clamped to `[out_min, out_max]`.

/// How a table built for `x >= 0` extends to negative inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Symmetry {
    /// No symmetry: the table covers the whole input domain.
    None,
    /// `f(−x) = −f(x)` (tanh).
    Odd,
    /// `f(−x) = total − f(x)` (sigmoid, with `total` = the output code of 1.0).
    Complement {
        /// The output code of `f(x) + f(−x)`; 2^15 for sigmoid in Q0.15.
        total: i32,
    },
}

/// A fitted piecewise-linear table, borrowed from static or owned storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pwl<'a> {
    /// How negative inputs are handled.
    pub symmetry: Symmetry,
    /// First input code of each piece, strictly increasing; at least one piece.
    pub starts: &'a [i32],
    /// Slope of each piece in output codes per input code, scaled by `2^frac_bits`.
    pub slopes: &'a [i32],
    /// Value at the start of each piece scaled by `2^frac_bits`, plus `2^(frac_bits−1)`.
    pub offsets: &'a [i32],
    /// Fractional bits of `slopes` and `offsets`, `0..=30`.
    pub frac_bits: u32,
    /// Smallest output code.
    pub out_min: i32,
    /// Largest output code.
    pub out_max: i32,
}

impl Pwl<'_> {
    /// Index of the piece that covers `u` (0 when `u` is left of every start).
    ///
    /// Branch-free count of the starts at or below `u`, with a constant trip count.
    #[inline(always)]
    pub fn piece_index(&self, u: i32) -> usize {
        let mut index = 0usize;
        for (k, &start) in self.starts.iter().enumerate().skip(1) {
            if u >= start {
                index = k;
            }
        }
        index
    }

    /// Evaluates the table at input code `x`.
    #[inline]
    pub fn eval(&self, x: i32) -> i32 {
        let (negative, u) = match self.symmetry {
            Symmetry::None => (false, x),
            // `x = i32::MIN` folds to `i32::MAX`, which is outside every i16 domain.
            Symmetry::Odd | Symmetry::Complement { .. } => (x < 0, x.saturating_abs()),
        };
        let value = self.eval_piece(self.piece_index(u), u);
        let value = if negative {
            match self.symmetry {
                Symmetry::None => value,
                Symmetry::Odd => value.saturating_neg(),
                Symmetry::Complement { total } => (total as i64).saturating_sub(value),
            }
        } else {
            value
        };
        // max-then-min instead of `clamp`, which panics when out_min > out_max.
        let value = value.max(self.out_min as i64).min(self.out_max as i64);
        value as i32
    }

    /// Evaluates piece `index` at `u` without symmetry or clamping (`i64`, saturating).
    #[inline(always)]
    pub fn eval_piece(&self, index: usize, u: i32) -> i64 {
        let (Some(&start), Some(&slope), Some(&offset)) = (
            self.starts.get(index),
            self.slopes.get(index),
            self.offsets.get(index),
        ) else {
            return 0;
        };
        let t = u as i64 - start as i64;
        let acc = (offset as i64).saturating_add((slope as i64).saturating_mul(t));
        acc >> self.frac_bits.min(62)
    }
}

/// Evaluates `table` on every element of `xs`, writing `ys`. Lengths must match; extra
/// elements of the longer slice are left untouched.
pub fn eval_slice_i16(table: &Pwl<'_>, xs: &[i16], ys: &mut [i16]) {
    for (x, y) in xs.iter().zip(ys.iter_mut()) {
        *y = crate::requant::saturate_i16(table.eval(*x as i32));
    }
}
