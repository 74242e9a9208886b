//! Constant-time piece lookup for PWL tables in generated code.
//!
//! `irnn_runtime::Pwl::eval` defines the piece of an input as the last piece whose start
//! is `<= u` (piece 0 left of every start), found by a linear scan. Generated code only
//! evaluates tables on int16 values (gate pre-activations and the cell state), so the
//! generator knows the whole input domain and can replace the scan by a bucket index:
//!
//! ```text
//! b     = (u + bias) >> shift                   bucket of u
//! k     = first[b]                              piece of the bucket's first input
//! k    += (u >= starts_ext[k + 1])   × extra    the starts inside the bucket
//! ```
//!
//! `extra` is the largest number of starts that fall strictly inside one bucket, and
//! `starts_ext` is `starts` followed by `extra` copies of `i32::MAX`. For strictly
//! increasing starts this gives exactly the scan's index (the starts after `first[b]`
//! that are `<= u` are all inside the bucket and come first; the ones beyond it are
//! `> u`). The shift is chosen to minimise `extra` with at most
//! [`MAX_BUCKETS`] buckets. Tables whose starts are not increasing get no index (the
//! back ends keep the scan; validated tables are always increasing).
//!
//! The index also records whether the piece arithmetic fits in `i32` for every
//! reachable input (`offset + slope · (u − start)` and every partial term), so that
//! back ends can skip 64-bit arithmetic, which vectorizes far better.

use crate::ir::{PwlTable, TableSymmetry};
use irnn_runtime::simd::Bucket16;

/// Largest number of buckets an index may use (`first` is read as `int32`: 2 KB).
pub const MAX_BUCKETS: usize = 512;

/// A bucket index for one table on int16 inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceIndex {
    /// Added to `u` before the shift (32768 without symmetry, where `u` may be negative).
    pub bias: i32,
    /// Bucket width is `2^shift` input codes.
    pub shift: u32,
    /// Piece index of each bucket's first input.
    pub first: Vec<i32>,
    /// Starts strictly inside one bucket, at most (the number of compare-adds).
    pub extra: usize,
    /// `starts` followed by `extra` copies of `i32::MAX`.
    pub starts_ext: Vec<i32>,
    /// `offset + slope · (u − start)` fits in `i32` for every reachable `u`, and the
    /// shift `frac_bits <= 31`: the whole piece evaluation is int32.
    pub narrow: bool,
    /// The symmetric fold (negation, or `total − v`) of a shifted int32 value cannot
    /// overflow int32.
    pub narrow_fold: bool,
    /// `offsets[k] − slopes[k] · starts[k]` in wrapping `i32` for every piece: in
    /// wrapping arithmetic `intercepts[k] + slopes[k] · u` equals `offsets[k] +
    /// slopes[k] · (u − starts[k])` (exact where `narrow` proves the true value fits).
    pub intercepts: Vec<i32>,
    /// Some int16 input needs the output clamp or the int16 saturation
    /// ([`needs_clamp`]; every int16 input is tried once, here).
    pub clamp: bool,
}

/// The range of `u` (the folded input) for int16 inputs.
pub fn u_domain(t: &PwlTable) -> (i32, i32) {
    match t.symmetry {
        TableSymmetry::None => (i16::MIN as i32, i16::MAX as i32),
        TableSymmetry::Odd | TableSymmetry::Complement => (0, 32768),
    }
}

/// The runtime's piece index (last start `<= u`, 0 if none) by a scan.
fn scan(starts: &[i32], u: i32) -> usize {
    let mut index = 0;
    for (k, &s) in starts.iter().enumerate().skip(1) {
        if u >= s {
            index = k;
        }
    }
    index
}

/// Builds the index of `t`, or `None` when its starts are not strictly increasing or
/// its arrays disagree in length.
pub fn build(t: &PwlTable) -> Option<PieceIndex> {
    let n = t.starts.len();
    if n == 0 || t.slopes.len() != n || t.offsets.len() != n {
        return None;
    }
    if !t.starts.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    let (lo, hi) = u_domain(t);
    let bias = -lo;
    let mut best: Option<(usize, u32)> = None;
    for shift in (0..=16u32).rev() {
        if (((hi + bias) >> shift) + 1) as usize > MAX_BUCKETS {
            break;
        }
        let extra = extra_starts(t, shift, bias, hi);
        // Prefer fewer compares; on a tie, fewer buckets (found first).
        if best.is_none_or(|(e, _)| extra < e) {
            best = Some((extra, shift));
        }
    }
    let (extra, shift) = best?;
    let first = firsts(t, shift, bias, hi);
    let mut starts_ext = t.starts.clone();
    starts_ext.extend(std::iter::repeat_n(i32::MAX, extra));
    let fits = fits_i32(t, lo, hi);
    // After the shift, v lies in [i32::MIN >> frac_bits, i32::MAX >> frac_bits].
    let frac = t.frac_bits.min(62);
    let (vmin, vmax) = if frac >= 31 {
        (-1, 0)
    } else {
        (i32::MIN as i64 >> frac, i32::MAX as i64 >> frac)
    };
    let in_i32 = |v: i64| v >= i32::MIN as i64 && v <= i32::MAX as i64;
    let narrow_fold = match t.symmetry {
        TableSymmetry::None => true,
        TableSymmetry::Odd => frac >= 1,
        TableSymmetry::Complement => in_i32(t.total as i64 - vmin) && in_i32(t.total as i64 - vmax),
    };
    Some(PieceIndex {
        bias,
        shift,
        first,
        extra,
        starts_ext,
        narrow: fits && frac <= 31,
        narrow_fold,
        intercepts: intercepts(t),
        clamp: needs_clamp(t),
    })
}

/// A table in the form SIMD array evaluators keep in registers (NUMERICS.md, "PWL
/// lookup in generated code"): at most 64 pieces, int32 piece arithmetic and fold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterForm {
    /// Entries per array: 32 or 64.
    pub n: usize,
    /// Starts padded with `i32::MAX` (never `<= u` for int16-derived `u`).
    pub starts: Vec<i32>,
    /// Slopes, zero padded.
    pub slopes: Vec<i32>,
    /// `offsets[k] − slopes[k] · starts[k]` in wrapping `i32`, zero padded: in wrapping
    /// arithmetic `intercepts[k] + slopes[k] · u` equals `offsets[k] + slopes[k] · (u −
    /// starts[k])`, exact because the true value fits in `i32` (`narrow`).
    pub intercepts: Vec<i32>,
    /// Some int16 input needs the output clamp or the int16 saturation.
    pub clamp: bool,
}

impl RegisterForm {
    /// The binary search's probes after the first (which compares with `starts[n/2]`):
    /// for `d = n/4, …, 1`, before the probe the piece `k` is a multiple of `2d` and the
    /// start it compares with is `starts[k + d]` = entry `k >> log2(2d)` of
    /// `starts[(2j + 1)·d]`, `j < n / 2d`.
    pub fn probes(&self) -> Vec<(usize, Vec<i32>)> {
        let mut out = Vec::new();
        let mut d = self.n / 4;
        while d >= 1 {
            let values = (0..self.n / (2 * d))
                .map(|j| self.starts[(2 * j + 1) * d])
                .collect();
            out.push((d, values));
            d /= 2;
        }
        out
    }
}

impl RegisterForm {
    /// The piece search of the 16-bit loop over symmetric tables (`u = |x|`, 0..=32 768)
    /// in AVX-512 code, a bucket index in one register instead of the binary search, where
    /// it takes no more permutes than the binary search (`1 + extra <= log2(n) − 1`):
    ///
    /// ```text
    /// k  = first[min(u, cap) >> shift]                     the piece of the bucket's first u
    /// k += (u >= next[k])                  × extra         next[k] = starts[k + 1], saturated
    /// ```
    ///
    /// (NUMERICS.md, "PWL lookup in generated code"). `None` for tables whose starts
    /// crowd into few buckets (a sigmoid on a wide input grid).
    pub fn word_search(&self) -> Option<Bucket16> {
        let b = self.bucket_search();
        // 1 + extra permutes against one per level after the first.
        ((b.extra as usize) < self.probes().len()).then_some(b)
    }

    /// The runtime's choice (`irnn_runtime::simd::Bucket16::best`, the one the Rust
    /// runtime makes for the same table): 32 or 64 buckets and the bucket width (down
    /// to one input) needing the fewest compare-adds, narrow buckets for tables whose
    /// starts all lie at small `u` (wide input grids), the last bucket taking the flat
    /// rest.
    fn bucket_search(&self) -> Bucket16 {
        let mut starts = [i32::MAX; 64];
        for (d, &s) in starts.iter_mut().zip(&self.starts) {
            *d = s;
        }
        Bucket16::best(&starts)
    }
}

/// The register form of `t` with at least `min_n` entries (32 or 64), when its index
/// proves the piece arithmetic and the fold int32 and it has at most 64 pieces.
pub fn register_form(t: &PwlTable, idx: &PieceIndex, min_n: usize) -> Option<RegisterForm> {
    let pieces = t.pieces();
    if !idx.narrow || !idx.narrow_fold || pieces > 64 || t.frac_bits > 31 {
        return None;
    }
    let n = if pieces <= 32 && min_n <= 32 { 32 } else { 64 };
    let pad = |v: &[i32], fill: i32| {
        let mut v = v.to_vec();
        v.resize(n, fill);
        v
    };
    Some(RegisterForm {
        n,
        starts: pad(&t.starts, i32::MAX),
        slopes: pad(&t.slopes, 0),
        intercepts: pad(&idx.intercepts, 0),
        clamp: idx.clamp,
    })
}

/// A table in the form 8-lane AVX2 array evaluators read with gathers (NUMERICS.md, "PWL
/// lookup in generated code"): AVX2 has no two-table permute, so the register form's
/// binary search would cost more than three gathers. One gather of a packed bucket
/// entry gives the bucket's first piece and where the next one or two pieces start
/// inside the bucket, one compare each finishes the index, and two gathers give the
/// slope and intercept:
///
/// ```text
/// ub = min(u + bias, cap),  e = buckets[ub >> shift],  r = ub & (2^shift − 1)
/// k  = (e & 255) + (r > (e >> 8) & (2^shift − 1)) + (r > e >> (8 + shift))
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatherForm {
    /// Per bucket: its first piece `k0` in bits 0–7, then for `k0 + 1` and `k0 + 2` (in
    /// that order, `shift` bits each) the last position in the bucket (`ub` minus the
    /// bucket's first biased input) still before that piece's start, capped at
    /// `2^shift − 1` (never passed).
    pub buckets: Vec<i32>,
    /// Added to `u` before the shift (32 768 without symmetry, where `u` may be negative).
    pub bias: i32,
    /// The last start plus `bias` (or the largest biased input, if smaller): every input
    /// from there on is in the last piece, so the buckets stop there (tanh at 8
    /// fraction bits has starts ~10 codes apart but none beyond ~1 500 of 32 768).
    pub cap: i32,
    /// Bucket width `2^shift`, at most 12 (two fields and the piece fit 32 bits).
    pub shift: u32,
    /// Compares per input: the most starts strictly inside one bucket (0, 1 or 2).
    pub compares: usize,
    /// Slopes, one per piece.
    pub slopes: Vec<i32>,
    /// `offsets[k] − slopes[k] · starts[k]` in wrapping `i32` (as in [`RegisterForm`]).
    pub intercepts: Vec<i32>,
    /// Some int16 input needs the output clamp or the int16 saturation.
    pub clamp: bool,
}

/// Largest number of buckets of a gather form (`int32`: 4 KB).
pub const MAX_GATHER_BUCKETS: usize = 1025;

impl GatherForm {
    /// Whether the cap changes some input of `t` (the form's table): some int16 input
    /// lies beyond the last start.
    pub fn capped(&self, t: &PwlTable) -> bool {
        self.cap < u_domain(t).1 + self.bias
    }

    /// The piece of input `u` (what the generated code computes).
    pub fn piece(&self, u: i32) -> usize {
        let ub = (u + self.bias).min(self.cap);
        let e = self.buckets[(ub >> self.shift) as usize];
        let mask = (1 << self.shift) - 1;
        let r = ub & mask;
        let mut k = e & 255;
        if self.compares >= 1 {
            k += (r > (e >> 8) & mask) as i32;
        }
        if self.compares >= 2 {
            k += (r > (e >> (8 + self.shift)) & mask) as i32;
        }
        k as usize
    }
}

/// The gather form of `t`, when its index proves the piece arithmetic and the fold
/// int32 and the pieces fit the 8-bit field: the fewest compares (at most 2) with at
/// most [`MAX_GATHER_BUCKETS`] buckets, then the fewest buckets.
pub fn gather_form(t: &PwlTable, idx: &PieceIndex) -> Option<GatherForm> {
    let pieces = t.pieces();
    if !idx.narrow || !idx.narrow_fold || pieces > 255 || t.frac_bits > 31 {
        return None;
    }
    let (lo, max_u) = u_domain(t);
    // Every input from the last start on is in the last piece (inside the domain).
    let hi = (*t.starts.last()?).clamp(lo, max_u);
    let bias = idx.bias;
    let top = hi + bias; // largest biased input the buckets cover, < 2^17
    let (compares, shift) = (0..=12u32)
        .rev()
        .filter(|&s| ((top >> s) + 1) as usize <= MAX_GATHER_BUCKETS)
        .map(|s| (extra_starts(t, s, bias, hi), s))
        .filter(|&(e, _)| e <= 2)
        .min_by_key(|&(e, s)| (e, std::cmp::Reverse(s)))?;
    let mask = (1i64 << shift) - 1;
    let buckets = firsts(t, shift, bias, hi)
        .iter()
        .enumerate()
        .map(|(b, &k0)| {
            let first = (b as i64) << shift; // the bucket's first biased input
            let pos = |k: usize| {
                t.starts
                    .get(k)
                    .map_or(mask, |&s| (s as i64 + bias as i64 - 1 - first).min(mask))
            };
            let fields = pos(k0 as usize + 1) | pos(k0 as usize + 2) << shift;
            (k0 as i64 | fields << 8) as i32
        })
        .collect();
    Some(GatherForm {
        buckets,
        bias,
        cap: top,
        shift,
        compares,
        slopes: t.slopes.clone(),
        intercepts: idx.intercepts.clone(),
        clamp: idx.clamp,
    })
}

/// [`PieceIndex::intercepts`] of `t`.
fn intercepts(t: &PwlTable) -> Vec<i32> {
    (0..t.pieces())
        .map(|k| t.offsets[k].wrapping_sub(t.slopes[k].wrapping_mul(t.starts[k])))
        .collect()
}

/// Whether the output clamp and the int16 saturation change any value of `t` on int16
/// inputs (the piece value after the shift and the symmetric fold, before clamping).
fn needs_clamp(t: &PwlTable) -> bool {
    let pwl = t.as_pwl();
    (i16::MIN as i32..=i16::MAX as i32).any(|x| {
        let negative = x < 0 && t.symmetry != TableSymmetry::None;
        let u = if negative { -x } else { x };
        let v = pwl.eval_piece(pwl.piece_index(u), u);
        let v = match (negative, t.symmetry) {
            (true, TableSymmetry::Odd) => -v,
            (true, TableSymmetry::Complement) => t.total as i64 - v,
            _ => v,
        };
        let clamped = (pwl.eval(x) as i64).clamp(i16::MIN as i64, i16::MAX as i64);
        v != clamped
    })
}

/// The largest number of starts strictly inside one bucket of width `2^shift`.
fn extra_starts(t: &PwlTable, shift: u32, bias: i32, hi: i32) -> usize {
    let buckets = (((hi + bias) >> shift) + 1) as usize;
    (0..buckets)
        .map(|b| {
            let (blo, bhi) = bucket_range(b, shift, bias, hi);
            t.starts[1..]
                .iter()
                .filter(|&&s| s > blo && s <= bhi)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The piece of each bucket's first input.
fn firsts(t: &PwlTable, shift: u32, bias: i32, hi: i32) -> Vec<i32> {
    let buckets = (((hi + bias) >> shift) + 1) as usize;
    (0..buckets)
        .map(|b| scan(&t.starts, bucket_range(b, shift, bias, hi).0) as i32)
        .collect()
}

/// Inputs `[lo, hi]` of bucket `b`.
fn bucket_range(b: usize, shift: u32, bias: i32, hi: i32) -> (i32, i32) {
    let lo = ((b as i64) << shift) - bias as i64;
    let top = (lo + (1i64 << shift) - 1).min(hi as i64);
    (lo as i32, top as i32)
}

/// Whether every piece's arithmetic stays in `i32` on the inputs that reach it.
fn fits_i32(t: &PwlTable, lo: i32, hi: i32) -> bool {
    let n = t.starts.len();
    let in_i32 = |v: i64| v >= i32::MIN as i64 && v <= i32::MAX as i64;
    (0..n).all(|k| {
        // Inputs that select piece k: [starts[k], starts[k+1] − 1], with piece 0 also
        // taking everything left of it and the last piece everything right of it.
        let from = if k == 0 { lo } else { t.starts[k].max(lo) };
        let to = if k + 1 == n {
            hi
        } else {
            (t.starts[k + 1] - 1).min(hi)
        };
        if from > to {
            return true; // unreachable piece
        }
        let start = t.starts[k] as i64;
        let (slope, offset) = (t.slopes[k] as i64, t.offsets[k] as i64);
        [from as i64, to as i64].iter().all(|&u| {
            let d = u - start;
            let prod = slope * d;
            in_i32(d) && in_i32(prod) && in_i32(offset + prod)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Activation;
    use crate::pwl::{fit, FitOptions};

    fn check_equal(t: &PwlTable) {
        let idx = build(t).expect("increasing table");
        let (lo, hi) = u_domain(t);
        for u in lo..=hi {
            let b = ((u + idx.bias) >> idx.shift) as usize;
            let mut k = idx.first[b] as usize;
            for _ in 0..idx.extra {
                k += (u >= idx.starts_ext[k + 1]) as usize;
            }
            assert_eq!(k, scan(&t.starts, u), "u = {u}");
        }
        if let Some(g) = gather_form(t, &idx) {
            for u in lo..=hi {
                assert_eq!(g.piece(u), scan(&t.starts, u), "gather form, u = {u}");
            }
        }
    }

    #[test]
    fn index_equals_scan_on_fitted_tables() {
        for (f, bits) in [
            (Activation::Sigmoid, 12),
            (Activation::Tanh, 12),
            (Activation::Tanh, 15),
            (Activation::Sigmoid, 10),
        ] {
            let (t, _) = fit(&FitOptions::new(f, bits)).unwrap();
            check_equal(&t);
            let idx = build(&t).unwrap();
            eprintln!(
                "{f:?} q{bits}: {} pieces, shift {}, {} buckets, {} compares",
                t.pieces(),
                idx.shift,
                idx.first.len(),
                idx.extra
            );
            assert!(idx.extra <= 4, "{f:?}: {} compares", idx.extra);
            // Every grid here gets the AVX2 gather form (one compare per bucket).
            assert!(
                gather_form(&t, &idx).is_some(),
                "{f:?} q{bits}: no gather form"
            );
            assert!(idx.narrow, "fitted tables fit i32");
        }
    }

    /// The 16-bit loop's bucket search, run as the generated code runs it, on every `u`.
    fn check_word_search(t: &PwlTable) {
        let idx = build(t).unwrap();
        let r = register_form(t, &idx, 32).unwrap();
        let w = r.bucket_search();
        assert!(matches!(w.buckets(), 32 | 64), "{} buckets", w.buckets());
        for u in 0..=32768 {
            let mut k = w.first[(u.min(w.cap as i32) >> w.shift) as usize] as usize;
            assert!(k < r.n, "u = {u}: piece {k} of {}", r.n);
            for _ in 0..w.extra {
                k += (u >= w.next[k] as i32) as usize;
            }
            assert_eq!(k, scan(&t.starts, u), "u = {u}");
        }
    }

    #[test]
    fn word_search_equals_scan() {
        for (f, bits) in [
            (Activation::Sigmoid, 13),
            (Activation::Tanh, 13),
            (Activation::Tanh, 14),
            (Activation::Tanh, 15),
            (Activation::Sigmoid, 10),
            (Activation::Tanh, 8),
        ] {
            let (t, _) = fit(&FitOptions::new(f, bits)).unwrap();
            check_word_search(&t);
            let r = register_form(&t, &build(&t).unwrap(), 32).unwrap();
            let w = r.bucket_search();
            eprintln!(
                "{f:?} q{bits}: {} buckets of 2^{}, {} compares",
                w.buckets(),
                w.shift,
                w.extra
            );
            // Narrower buckets for the wide grids: three compares at most.
            assert!(r.word_search().is_some(), "{f:?} q{bits}");
            assert!(w.extra <= 3, "{f:?} q{bits}: {} compares", w.extra);
            if bits <= 10 {
                assert!(w.cap < 32767, "{f:?} q{bits}: cap {}", w.cap);
            }
        }
        // Starts at both ends of the domain, one negative (saturates to 0), clustered
        // ones in the last bucket, and one on u = 32 768 itself.
        let starts = vec![-7, 0, 1, 2, 1000, 32700, 32701, 32766, 32767, 32768];
        let n = starts.len();
        let t = PwlTable {
            function: Activation::Tanh,
            input_frac_bits: 12,
            output_frac_bits: 15,
            symmetry: TableSymmetry::Odd,
            total: 0,
            starts,
            slopes: vec![1; n],
            offsets: vec![0; n],
            frac_bits: 1,
            out_min: -32768,
            out_max: 32767,
        };
        check_word_search(&t);
        let r = register_form(&t, &build(&t).unwrap(), 32).unwrap();
        assert_eq!(
            r.bucket_search().extra,
            5,
            "32700 up to 32768 in one bucket"
        );
        assert!(
            r.word_search().is_none(),
            "more permutes than the binary search"
        );
    }

    #[test]
    fn index_equals_scan_on_odd_tables() {
        let t = PwlTable {
            function: Activation::Tanh,
            input_frac_bits: 12,
            output_frac_bits: 15,
            symmetry: TableSymmetry::None,
            total: 0,
            starts: vec![-40000, -32768, -5, 0, 1, 2, 3, 30000, 32767, 40000],
            slopes: vec![1; 10],
            offsets: vec![0; 10],
            frac_bits: 0,
            out_min: -32768,
            out_max: 32767,
        };
        check_equal(&t);
        let mut unsorted = t.clone();
        unsorted.starts.swap(2, 3);
        assert!(build(&unsorted).is_none());
        let mut wide = t.clone();
        wide.slopes[2] = i32::MAX; // piece [-5, -1]: slope · 4 overflows
        assert!(!build(&wide).unwrap().narrow);
        // Every start below the int16 domain: one bucket, the last piece everywhere.
        let mut below = t;
        below.starts = vec![-50000, -40000];
        below.slopes.truncate(2);
        below.offsets.truncate(2);
        check_equal(&below);
        let g = gather_form(&below, &build(&below).unwrap()).expect("gather form");
        assert_eq!((g.cap, g.buckets.len()), (0, 1));
    }
}
