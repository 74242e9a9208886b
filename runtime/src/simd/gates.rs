//! LSTM gate pre-activations on whole arrays (docs/NUMERICS.md, "Branch-free
//! requantization in generated code"): the generated LSTM step hands both
//! accumulators of every gate row to [`Kernel::gate_sums`], which requantizes and adds
//! them with AVX-512 (the VNNI kernel) or AVX2 (the AVX2 and AVX-VNNI kernels) 16 or 8
//! rows at a time, and with the branch-free scalar form otherwise. All give
//! [`gate_preactivation`] of every row.

#[cfg(target_arch = "x86_64")]
use super::Inner;
use super::Kernel;
use crate::kernels::gate_preactivation;
use crate::Requant;

/// The accumulators the vector forms take: `−2^29 <= acc < 2^29` (NUMERICS.md shows
/// why every term and the sum then fit `i32`): proven by the generator for its layers
/// ([`GateReq::with_acc_range`]), else checked on every call. Real gate accumulators
/// stay far below it (`|bias| + 128 · Σ|w|`, about 2^24 for 1 024 inputs).
#[cfg(target_arch = "x86_64")]
pub(super) const VECTOR_ACC_LIMIT: i32 = 1 << 29;

/// The per-row requantizers of one term of an LSTM layer's gate sums (`W_ih x` or
/// `W_hh h`), in the form the vector code reads: each multiplier with its right shift
/// `e = −shift` and rounding constant `2^(e−1)`.
///
/// Built by [`GateReq::new`], a `const fn`: a generated `static` costs nothing at run
/// time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GateReq<const N: usize> {
    pub(super) mul: [i32; N],
    /// `−shift` of each row (wrapping: only read as a shift when `down`).
    pub(super) e: [i32; N],
    /// `2^(e−1)`, 0 for `e = 0` (0 when not `down`).
    pub(super) half: [i32; N],
    /// Every shift is in `−31..=0` and no multiplier is `i32::MIN`: the branch-free
    /// forms apply to every row. Otherwise [`Kernel::gate_sums`] calls
    /// [`Requant::apply`] for every row.
    pub(super) down: bool,
    /// The interval `lo ..= hi` every accumulator passed with these requantizers lies
    /// in, when the caller proved one ([`GateReq::with_acc_range`]).
    pub(super) proven: Option<(i64, i64)>,
}

impl<const N: usize> GateReq<N> {
    /// The requantizers `Requant { multiplier: mul[r], shift: shift[r] }` of the rows.
    pub const fn new(mul: &[i32; N], shift: &[i32; N]) -> GateReq<N> {
        let mut t = GateReq {
            mul: *mul,
            e: [0; N],
            half: [0; N],
            down: true,
            proven: None,
        };
        let mut r = 0;
        while r < N {
            let s = shift[r];
            t.e[r] = s.wrapping_neg();
            if s > 0 || s < -31 || mul[r] == i32::MIN {
                t.down = false;
            } else {
                t.half[r] = ((1i64 << -s) >> 1) as i32;
            }
            r += 1;
        }
        t
    }

    /// The same requantizers, for accumulators that always lie in `lo ..= hi`: what the
    /// generator proves by interval analysis over a layer's ops (`OpLayer::ranges` in
    /// irnn-codegen; `|bias| + 128 · Σ|w|` at most). Where the interval is inside
    /// `−2^29 ..< 2^29` the vector forms of [`Kernel::gate_sums`] skip their per-call
    /// range check. The interval is a promise: an accumulator outside it gives
    /// unspecified (never undefined) results, and debug builds assert it.
    pub const fn with_acc_range(mut self, lo: i64, hi: i64) -> GateReq<N> {
        self.proven = Some((lo, hi));
        self
    }

    /// Whether every accumulator is proven to be inside the vector forms' range.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn proven_in_vector_range(&self) -> bool {
        let lim = VECTOR_ACC_LIMIT as i64;
        matches!(self.proven, Some((lo, hi)) if lo >= -lim && hi < lim)
    }

    /// Debug builds: every accumulator of `acc` lies in the proven interval.
    fn debug_check(&self, acc: &[i32]) {
        if let Some((lo, hi)) = self.proven {
            debug_assert!(
                acc.iter().all(|&a| (lo..=hi).contains(&(a as i64))),
                "an accumulator outside the proven interval {lo}..={hi}"
            );
        }
    }

    /// The requantizer of row `r`.
    pub const fn requant(&self, r: usize) -> Requant {
        Requant {
            multiplier: self.mul[r],
            shift: self.e[r].wrapping_neg(),
        }
    }

    /// Multipliers, right shifts and rounding constants as slices.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn terms(&self) -> Terms<'_> {
        Terms {
            mul: &self.mul,
            e: &self.e,
            half: &self.half,
        }
    }
}

impl Kernel {
    /// `out[r] = gate_preactivation(acc_x[r], rx.requant(r), acc_h[r], rh.requant(r))`
    /// for every row: `sat16(req_x(acc_x) + req_h(acc_h))`, the pre-activation of one
    /// gate unit.
    ///
    /// With the AVX-512 VNNI kernel 16 rows at a time, with the AVX2 and AVX-VNNI
    /// kernels 8 (when both terms' requantizers scale down, as quantized LSTMs' do, and
    /// every accumulator is in `−2^29 ..< 2^29`: proven ([`GateReq::with_acc_range`]) or
    /// checked, in which case an accumulator outside discards the vector results),
    /// the other rows with the same arithmetic in scalar `i64` (which LLVM vectorizes
    /// inside [`Kernel::vectorize`]).
    #[inline(always)]
    pub fn gate_sums<const N: usize>(
        self,
        acc_x: &[i32; N],
        rx: &GateReq<N>,
        acc_h: &[i32; N],
        rh: &GateReq<N>,
        out: &mut [i16; N],
    ) {
        rx.debug_check(acc_x);
        rh.debug_check(acc_h);
        if !(rx.down && rh.down) {
            for (r, o) in out.iter_mut().enumerate() {
                *o = gate_preactivation(acc_x[r], rx.requant(r), acc_h[r], rh.requant(r));
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        let done = {
            let (x, h) = ((&acc_x[..], rx.terms()), (&acc_h[..], rh.terms()));
            let check = !(rx.proven_in_vector_range() && rh.proven_in_vector_range());
            match self.0 {
                Inner::Avx512Vnni(k) => k.gate_sums(x, h, out, check),
                Inner::Avx2(k) => k.gate_sums(x, h, out, check),
                Inner::AvxVnni(k) => k.avx2().gate_sums(x, h, out, check),
                _ => 0,
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = {
            let _ = self;
            0
        };
        for r in done..N {
            let sum = req_down(acc_x[r], rx.mul[r], rx.e[r], rx.half[r])
                + req_down(acc_h[r], rh.mul[r], rh.e[r], rh.half[r]);
            out[r] = sum.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
        }
    }
}

/// One term's requantizer tables, as the per-architecture code takes them.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Terms<'a> {
    pub(super) mul: &'a [i32],
    pub(super) e: &'a [i32],
    pub(super) half: &'a [i32],
}

/// `Requant { multiplier: m, shift: −e }.apply(x)` for `0 <= e <= 31` and
/// `m != i32::MIN`, without branches: `y = floor((x·m + 2^30) / 2^31)` (the doubling
/// high product, round half up), then `y / 2^e` rounded half away from zero.
#[inline(always)]
fn req_down(x: i32, m: i32, e: i32, half: i32) -> i64 {
    let y = (x as i64 * m as i64 + (1i64 << 30)) >> 31;
    (y + half as i64 - ((y >> 63) & (half > 0) as i64)) >> e
}
