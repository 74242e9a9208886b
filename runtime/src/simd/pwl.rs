//! PWL activations on whole int16 arrays (docs/NUMERICS.md, "PWL lookup in generated
//! code"): the generated LSTM tail hands each gate's pre-activations (and the cell
//! states) to [`Kernel::pwl_i16`] (the table in registers: AVX-512 code when the kernel
//! is the VNNI one) or [`Kernel::pwl_i16_gather`] (AVX2 gathers when the kernel is the
//! AVX2 one), and the table's scalar evaluator otherwise. All give
//! `saturate_i16(Pwl::eval(x))` for every int16 `x`.

#[cfg(target_arch = "x86_64")]
use super::Inner;
use super::Kernel;

/// What happens to the piece value of a negative input (the table covers `|x|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegFold {
    /// No symmetry: the table covers every input itself.
    None,
    /// `f(−x) = −f(x)`.
    Odd,
    /// `f(−x) = total − f(x)`.
    Complement(i32),
}

/// A PWL table of at most 64 pieces in the form the register evaluator reads, made by
/// the code generator from a table whose piece arithmetic is exact in `i32` on int16
/// inputs (`back::pwl_index`): the piece is the last start `<= u` (0 if none), found
/// by a binary search whose probe at distance `d` (16, 8, 4, 2, 1 after the first at
/// 32) reads `probes[level][k >> log2(2d)]`; its value is
/// `(intercepts[k] + slopes[k] · u) >> frac_bits` in wrapping `i32`.
///
/// Built only by [`RegPwl::new`], which also derives the 16-bit form the AVX-512
/// evaluator uses where it applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegPwl {
    /// `starts[32]` (`i32::MAX` when there are at most 32 pieces).
    pub(super) half_start: i32,
    /// Starts `starts[(2j + 1)·d]` for `d` = 16, 8, 4, 2, 1 (2, 4, 8, 16 and 32 of
    /// them), padded with `i32::MAX`.
    pub(super) probes: [[i32; 32]; 5],
    /// Slopes, zero padded.
    pub(super) slopes: [i32; 64],
    /// `offsets[k] − slopes[k] · starts[k]` in wrapping `i32`, zero padded.
    pub(super) intercepts: [i32; 64],
    /// The shift after the piece arithmetic (at most 31).
    pub(super) frac_bits: u32,
    /// Negative inputs.
    pub(super) fold: RegFold,
    /// `Some((out_min, out_max))`: clamp, then saturate to int16; `None` when the
    /// generator found that no int16 input needs either.
    pub(super) clamp: Option<(i32, i32)>,
    /// The same table in 16-bit words where that form applies (symmetric fold, no
    /// clamp, `frac_bits == 16`), derived by `new`.
    pub(super) w16: Option<RegPwl16>,
}

/// A [`RegPwl`] in 16-bit words, for symmetric tables without clamp and with
/// `frac_bits == 16` (every fitted sigmoid and tanh so far): the search runs on
/// `u = |x|` (at most 32 768) in unsigned 16-bit lanes, and the piece value is computed
/// modulo 2^16 from the 16-bit halves of the intercept and slope (NUMERICS.md, "PWL
/// lookup in generated code"), exact because it fits int16.
///
/// The piece comes from a bucket index where the starts spread enough (every fitted
/// table so far; [`Bucket16`]), else from the binary search on the saturated starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct RegPwl16 {
    /// `RegPwl::half_start` saturated to 0..=65 535.
    pub(super) half_start: u16,
    /// `RegPwl::probes` saturated to 0..=65 535 (a start that large is never `<= u`, a
    /// negative one always is, as in `i32`).
    pub(super) probes: [[u16; 32]; 5],
    /// The bucket search, where it takes fewer permutes than the binary one.
    pub(super) bucket: Option<Bucket16>,
    /// High and low 16 bits of each intercept (two's complement bits).
    pub(super) intercept_hi: [u16; 64],
    /// See `intercept_hi`.
    pub(super) intercept_lo: [u16; 64],
    /// High and low 16 bits of each slope.
    pub(super) slope_hi: [u16; 64],
    /// See `slope_hi`.
    pub(super) slope_lo: [u16; 64],
}

/// The bucket search of a PWL table's 16-bit loop on AVX-512 (NUMERICS.md "PWL lookup
/// in generated code"): the piece is `first[min(u, cap) >> shift]` plus one for each of
/// the next `extra` starts `<= u` (`next[k]` = `starts[k + 1]` saturated, 65 535 after
/// the last piece). One derivation, [`Bucket16::best`], serves the runtime's
/// [`RegPwl`] and the code generator's C.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket16 {
    /// The piece of each bucket's smallest `u` (32 or 64 buckets, zero padded).
    pub first: [u16; 64],
    /// `starts[k + 1]` saturated to 0..=65 535.
    pub next: [u16; 64],
    /// `buckets · 2^shift − 1`: every larger `u` is in the last bucket.
    pub cap: u16,
    /// Bucket width `2^shift`.
    pub shift: u32,
    /// The most starts inside one bucket after its smallest `u`: the compare-adds.
    pub extra: u32,
}

impl Bucket16 {
    /// The search with 32 or 64 buckets and the bucket width needing the fewest
    /// compare-adds (on a tie fewer buckets, then wider ones) for `u` in 0..=32 768;
    /// `starts[k]` for `k` in 1..64 (increasing, padded with `i32::MAX`; `starts[0]` is
    /// not read). Whether it beats the binary search is the caller's choice.
    pub const fn best(starts: &[i32; 64]) -> Bucket16 {
        let mut next = [u16::MAX; 64];
        let mut j = 0;
        while j + 1 < 64 {
            next[j] = sat_u16(starts[j + 1]);
            j += 1;
        }
        let mut best = Bucket16 {
            first: [0; 64],
            next,
            cap: 0,
            shift: 0,
            extra: u32::MAX,
        };
        let mut log_b = 5;
        while log_b <= 6 {
            let buckets = 1usize << log_b;
            let mut shift = 15 - log_b;
            loop {
                let mut first = [0u16; 64];
                let mut extra = 0;
                // k: the piece of the current bucket's smallest u (a scan that only
                // moves forward, the starts being increasing).
                let mut k = 0usize;
                let mut b = 0;
                while b < buckets {
                    let lo = (b as i32) << shift;
                    let hi = if b + 1 == buckets {
                        32768
                    } else {
                        lo + (1 << shift) - 1
                    };
                    while k + 1 < 64 && starts[k + 1] <= lo {
                        k += 1;
                    }
                    first[b] = k as u16;
                    let mut top = k;
                    while top + 1 < 64 && starts[top + 1] <= hi {
                        top += 1;
                    }
                    if top - k > extra {
                        extra = top - k;
                    }
                    b += 1;
                }
                if (extra as u32) < best.extra {
                    best.first = first;
                    best.cap = (((buckets as i32) << shift) - 1) as u16;
                    best.shift = shift;
                    best.extra = extra as u32;
                }
                if shift == 0 {
                    break;
                }
                shift -= 1;
            }
            log_b += 1;
        }
        best
    }

    /// How many buckets (32 or 64).
    pub const fn buckets(&self) -> usize {
        (self.cap as usize + 1) >> self.shift
    }
}

/// `v` saturated to 0..=65 535.
const fn sat_u16(v: i32) -> u16 {
    if v < 0 {
        0
    } else if v > u16::MAX as i32 {
        u16::MAX
    } else {
        v as u16
    }
}

impl RegPwl {
    /// The table (fields as documented on the type); a `const fn`, so a `static` gets
    /// its 16-bit form at compile time.
    pub const fn new(
        half_start: i32,
        probes: [[i32; 32]; 5],
        slopes: [i32; 64],
        intercepts: [i32; 64],
        frac_bits: u32,
        fold: RegFold,
        clamp: Option<(i32, i32)>,
    ) -> RegPwl {
        let symmetric = !matches!(fold, RegFold::None);
        let w16 = if symmetric && clamp.is_none() && frac_bits == 16 {
            // starts[k] for k = (2j + 1)·d: `half_start` for d = 32, else level
            // 4 − log2(d), entry j.
            let mut starts = [i32::MAX; 64];
            let mut k = 1usize;
            while k < 64 {
                let tz = k.trailing_zeros();
                starts[k] = if tz == 5 {
                    half_start
                } else {
                    probes[4 - tz as usize][k >> (tz + 1)]
                };
                k += 1;
            }
            let mut w = RegPwl16 {
                half_start: sat_u16(half_start),
                probes: [[0; 32]; 5],
                bucket: {
                    // At most 4 compare-adds: 5 permutes, as the binary search.
                    let b = Bucket16::best(&starts);
                    if b.extra <= 4 {
                        Some(b)
                    } else {
                        None
                    }
                },
                intercept_hi: [0; 64],
                intercept_lo: [0; 64],
                slope_hi: [0; 64],
                slope_lo: [0; 64],
            };
            let mut l = 0;
            while l < 5 {
                let mut j = 0;
                while j < 32 {
                    w.probes[l][j] = sat_u16(probes[l][j]);
                    j += 1;
                }
                l += 1;
            }
            let mut k = 0;
            while k < 64 {
                let (b, a) = (intercepts[k] as u32, slopes[k] as u32);
                w.intercept_hi[k] = (b >> 16) as u16;
                w.intercept_lo[k] = b as u16;
                w.slope_hi[k] = (a >> 16) as u16;
                w.slope_lo[k] = a as u16;
                k += 1;
            }
            Some(w)
        } else {
            None
        };
        RegPwl {
            half_start,
            probes,
            slopes,
            intercepts,
            frac_bits,
            fold,
            clamp,
            w16,
        }
    }
}

impl Kernel {
    /// `x = saturate_i16(scalar(x))` for every element of `xs`, where `scalar` is the
    /// table's exact evaluator (`Pwl::eval` on int16 inputs) and `t` its register form.
    /// With the AVX-512 VNNI kernel (AVX-512F proven on this CPU) 16 elements at a time
    /// with `t`, the rest with `scalar`.
    #[inline(always)]
    pub fn pwl_i16(self, t: &RegPwl, xs: &mut [i16], scalar: impl Fn(i16) -> i32) {
        #[cfg(target_arch = "x86_64")]
        let done = match self.0 {
            Inner::Avx512Vnni(k) => k.pwl_i16(t, xs),
            _ => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = {
            let _ = t;
            0
        };
        scalar_rest(xs, done, scalar);
    }
}

/// A PWL table in the form the AVX2 gather evaluator reads, made by the code generator
/// (`back::pwl_index::GatherForm`) from a table whose piece arithmetic is exact in
/// `i32` on int16 inputs. For `ub = min(u + bias, cap)` and `e = buckets[ub >> shift]`,
/// the piece is `e & 255` plus one for each of the next `compares` starts inside the
/// bucket that `ub & (2^shift − 1)` has passed (their last positions before them in
/// the `shift`-bit fields above bit 8); its value is
/// `(intercepts[k] + slopes[k] · u) >> frac_bits` in wrapping `i32`.
///
/// Built only by [`GatherPwl::new`], which checks (at compile time for a `static`)
/// that every gather stays inside the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GatherPwl {
    pub(super) buckets: &'static [i32],
    pub(super) slopes: &'static [i32],
    pub(super) intercepts: &'static [i32],
    pub(super) bias: i32,
    pub(super) cap: i32,
    pub(super) shift: u32,
    pub(super) compares: u32,
    pub(super) frac_bits: u32,
    pub(super) fold: RegFold,
    pub(super) clamp: Option<(i32, i32)>,
}

impl GatherPwl {
    /// The table; `clamp` as in [`RegPwl`].
    ///
    /// # Panics
    /// (A compile error for a `static`) if a gather could leave the tables: `bias`
    /// must make every folded int16 input non-negative (32 768 without symmetry, 0
    /// with), `cap >> shift` must index `buckets`, every piece a bucket can give (its
    /// first plus one per field below `2^shift − 1`) must index `slopes`, which must be
    /// as long as `intercepts`; and `shift <= 12`, `compares <= 2`, `frac_bits <= 31`.
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        buckets: &'static [i32],
        bias: i32,
        cap: i32,
        shift: u32,
        compares: u32,
        slopes: &'static [i32],
        intercepts: &'static [i32],
        frac_bits: u32,
        fold: RegFold,
        clamp: Option<(i32, i32)>,
    ) -> GatherPwl {
        let min_bias = match fold {
            RegFold::None => 32768,
            _ => 0,
        };
        assert!(bias >= min_bias && bias <= 65536, "GatherPwl: bias");
        assert!(
            shift <= 12 && compares <= 2 && frac_bits <= 31,
            "GatherPwl: fields"
        );
        assert!(
            cap >= 0 && ((cap >> shift) as usize) < buckets.len(),
            "GatherPwl: cap"
        );
        assert!(slopes.len() == intercepts.len(), "GatherPwl: table lengths");
        // The largest piece a bucket can give: its first plus one per field that a
        // position (at most 2^shift − 1) can pass.
        let mask = (1u32 << shift) - 1;
        let mut b = 0;
        while b < buckets.len() {
            let e = buckets[b] as u32;
            let mut k = (e & 255) as usize;
            let mut c = 0;
            while c < compares {
                if (e >> (8 + c * shift)) & mask < mask {
                    k += 1;
                }
                c += 1;
            }
            assert!(k < slopes.len(), "GatherPwl: bucket piece out of range");
            b += 1;
        }
        GatherPwl {
            buckets,
            slopes,
            intercepts,
            bias,
            cap,
            shift,
            compares,
            frac_bits,
            fold,
            clamp,
        }
    }
}

impl Kernel {
    /// `x = saturate_i16(scalar(x))` for every element of `xs`, where `scalar` is the
    /// table's exact evaluator (`Pwl::eval` on int16 inputs) and `t` its gather form.
    /// With the AVX2 and AVX-VNNI kernels 8 elements at a time with `t`, the rest with
    /// `scalar`.
    #[inline(always)]
    pub fn pwl_i16_gather(self, t: &GatherPwl, xs: &mut [i16], scalar: impl Fn(i16) -> i32) {
        #[cfg(target_arch = "x86_64")]
        let done = match self.0 {
            Inner::Avx2(k) => k.pwl_i16_gather(t, xs),
            Inner::AvxVnni(k) => k.avx2().pwl_i16_gather(t, xs),
            _ => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = {
            let _ = t;
            0
        };
        scalar_rest(xs, done, scalar);
    }
}

/// `x = saturate_i16(scalar(x))` for the elements of `xs` after the first `done` (those
/// the SIMD code left, or all of them).
#[inline(always)]
fn scalar_rest(xs: &mut [i16], done: usize, scalar: impl Fn(i16) -> i32) {
    for x in xs.iter_mut().skip(done) {
        *x = scalar(*x).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
}
