//! x86-64 kernels: AVX2 (sign trick), AVX-VNNI (`vpdpbusd` on ymm) and AVX-512 VNNI
//! (`vpdpbusd` on zmm).
//!
//! All process four row blocks at a time and keep even and odd column groups in
//! separate accumulators (8 independent chains; the blocks left over, one at a time,
//! with four), like the C back end's kernels.
//! Memory is read through raw pointers only after [`Shape::fits`] has checked every
//! length; the results leave through bounds-checked slices.

use super::{detect, word, Shape};
use core::arch::x86_64::*;

isa_proof!(
    /// Proof that this CPU runs AVX2: 8-row blocks with the sign trick, exact only when
    /// every weight is > −128 (checked by the caller).
    Avx2,
    detected: detect::avx2(),
    features: "avx2",
    rows: 8,
    kernel: mv_avx2
);

isa_proof!(
    /// Proof that this CPU runs AVX2 and AVX-VNNI: 8-row blocks (AVX2's layout) computing
    /// `bias + W (x + 128)` with `vpdpbusd` on 256-bit vectors, so `bias` must be the
    /// offset bias `bias − 128 · rowsum(W)`; exact for every weight.
    AvxVnni,
    detected: detect::avx2() && detect::avxvnni(),
    features: "avx2,avxvnni",
    rows: 8,
    kernel: mv_avxvnni
);

impl AvxVnni {
    /// The AVX2 proof this one implies (its detection checked AVX2 too).
    pub(super) fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

isa_proof!(
    /// Proof that this CPU runs AVX-512 F, BW, VL and VNNI: 16-row blocks computing
    /// `bias + W (x + 128)`, so `bias` must be the offset bias `bias − 128 · rowsum(W)`
    /// (equal to `bias + W x` in wrapping `i32`).
    Avx512Vnni,
    detected: detect::avx512vnni(),
    features: "avx512f,avx512bw,avx512vl,avx512vnni",
    rows: 16,
    kernel: mv_vnni
);

/// `x` and `|x|` of the 4 bytes of group `g`, broadcast to every lane: the sign
/// trick's operands.
#[inline]
#[target_feature(enable = "avx2")]
fn x_sign(x: &[i8], g: usize) -> (__m256i, __m256i) {
    let v = _mm256_set1_epi32(word(x, g));
    (v, _mm256_abs_epi8(v))
}

/// `maddubs(|x|, sign(w, x))` = `x · w` in int16 pairs (exact for `w > −128`:
/// `|pair| ≤ 2 · 128 · 127 < 2^15`), then `madd` with ones into one int32 per row.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_avx2(acc: __m256i, (xs, xa): (__m256i, __m256i), w: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(w, xs));
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// `x + 128` of every byte of group `g` (unsigned: the sign bit flipped), broadcast to
/// every lane: the VNNI kernels' operand.
#[inline]
#[target_feature(enable = "avx2")]
fn x_u8_256(x: &[i8], g: usize) -> __m256i {
    _mm256_set1_epi32(word(x, g) ^ 0x8080_8080_u32 as i32)
}

/// [`x_u8_256`] on 512-bit vectors.
#[inline]
#[target_feature(enable = "avx512f")]
fn x_u8_512(x: &[i8], g: usize) -> __m512i {
    _mm512_set1_epi32(word(x, g) ^ 0x8080_8080_u32 as i32)
}

/// Writes the 8 lanes of `v` to `acc[at..]`, as many as fit (directly when all do).
#[inline]
#[target_feature(enable = "avx2")]
fn store_avx2(acc: &mut [i32], at: usize, v: __m256i) {
    if let Some(d) = acc.get_mut(at..at + 8) {
        // SAFETY: `d` is 8 writable i32 (32 bytes); `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast::<__m256i>(), v) };
        return;
    }
    let mut t = [0i32; 8];
    // SAFETY: `t` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(t.as_mut_ptr().cast::<__m256i>(), v) };
    let n = acc.len().saturating_sub(at).min(8);
    if let Some(d) = acc.get_mut(at..at + n) {
        d.copy_from_slice(&t[..n]);
    }
}

/// Defines a matrix–vector kernel for one instruction set: `acc = bias + W x` with
/// `dot(acc, xin(x, g), w)` adding one 4-column group of each row of a block (the VNNI
/// kernels: `x + 128` times the weights with the offset bias; AVX2: the sign trick). Four
/// row blocks at a time, even and odd groups in separate accumulators (8 independent
/// chains), like the C back end's kernels. Weight loads read one vector at
/// `b·stride + g·V (+ V)` with `b < blocks`, `g < groups`, i.e. inside `w`
/// (`w.len() == blocks · stride`); bias loads read `BR` values at `b·BR`, inside `bias`
/// (`bias.len() ≥ blocks · BR`).
macro_rules! mv_kernel {
    (
        $(#[$doc:meta])* $name:ident, features: $features:literal, rows: $br:expr,
        $vec:ty, $load:ident, $xin:ident, $dp:ident, $add:ident, $zero:ident, $store:ident
    ) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        fn $name(s: &Shape, w: &[u8], bias: &[i32], x: &[i8], acc: &mut [i32]) {
            const BR: usize = $br;
            const V: usize = BR * 4;
            let stride = s.groups * V;
            let (wp, bp) = (w.as_ptr(), bias.as_ptr());
            macro_rules! ldw {
                ($off:expr) => {
                    // SAFETY: in bounds as argued above; `loadu` has no alignment
                    // requirement.
                    unsafe { $load(wp.add($off).cast::<$vec>()) }
                };
            }
            macro_rules! ldb {
                ($b:expr) => {
                    // SAFETY: in bounds as argued above.
                    unsafe { $load(bp.add($b * BR).cast::<$vec>()) }
                };
            }
            let xu = |g: usize| $xin(x, g);
            let zero = $zero();
            let mut b = 0;
            while b + 4 <= s.blocks {
                let w0 = b * stride;
                let (mut a0, mut a1, mut a2, mut a3) =
                    (ldb!(b), ldb!(b + 1), ldb!(b + 2), ldb!(b + 3));
                let (mut c0, mut c1, mut c2, mut c3) = (zero, zero, zero, zero);
                let mut g = 0;
                while g + 2 <= s.groups {
                    let (x0, x1) = (xu(g), xu(g + 1));
                    let o = w0 + g * V;
                    a0 = $dp(a0, x0, ldw!(o));
                    a1 = $dp(a1, x0, ldw!(o + stride));
                    a2 = $dp(a2, x0, ldw!(o + 2 * stride));
                    a3 = $dp(a3, x0, ldw!(o + 3 * stride));
                    c0 = $dp(c0, x1, ldw!(o + V));
                    c1 = $dp(c1, x1, ldw!(o + stride + V));
                    c2 = $dp(c2, x1, ldw!(o + 2 * stride + V));
                    c3 = $dp(c3, x1, ldw!(o + 3 * stride + V));
                    g += 2;
                }
                if g < s.groups {
                    let x0 = xu(g);
                    let o = w0 + g * V;
                    a0 = $dp(a0, x0, ldw!(o));
                    a1 = $dp(a1, x0, ldw!(o + stride));
                    a2 = $dp(a2, x0, ldw!(o + 2 * stride));
                    a3 = $dp(a3, x0, ldw!(o + 3 * stride));
                }
                $store(acc, b * BR, $add(a0, c0));
                $store(acc, (b + 1) * BR, $add(a1, c1));
                $store(acc, (b + 2) * BR, $add(a2, c2));
                $store(acc, (b + 3) * BR, $add(a3, c3));
                b += 4;
            }
            while b < s.blocks {
                let w0 = b * stride;
                let mut a0 = ldb!(b);
                let (mut c0, mut a1, mut c1) = (zero, zero, zero);
                let mut g = 0;
                // Four chains while they last (one block has no other work to overlap).
                while g + 4 <= s.groups {
                    let o = w0 + g * V;
                    a0 = $dp(a0, xu(g), ldw!(o));
                    c0 = $dp(c0, xu(g + 1), ldw!(o + V));
                    a1 = $dp(a1, xu(g + 2), ldw!(o + 2 * V));
                    c1 = $dp(c1, xu(g + 3), ldw!(o + 3 * V));
                    g += 4;
                }
                a0 = $add(a0, a1);
                c0 = $add(c0, c1);
                while g + 2 <= s.groups {
                    let o = w0 + g * V;
                    a0 = $dp(a0, xu(g), ldw!(o));
                    c0 = $dp(c0, xu(g + 1), ldw!(o + V));
                    g += 2;
                }
                if g < s.groups {
                    a0 = $dp(a0, xu(g), ldw!(w0 + g * V));
                }
                $store(acc, b * BR, $add(a0, c0));
                b += 1;
            }
        }
    };
}

mv_kernel!(
    /// Caller guarantees: AVX2 on this CPU and `s.fits(8, w, bias, x, acc)`; exact only
    /// when no weight is −128 (the caller checks).
    mv_avx2, features: "avx2", rows: 8,
    __m256i, _mm256_loadu_si256, x_sign, dot_avx2,
    _mm256_add_epi32, _mm256_setzero_si256, store_avx2
);

mv_kernel!(
    /// Caller guarantees: AVX2 and AVX-VNNI on this CPU and `s.fits(8, w, bias, x, acc)`.
    mv_avxvnni, features: "avx2,avxvnni", rows: 8,
    __m256i, _mm256_loadu_si256, x_u8_256, _mm256_dpbusd_avx_epi32,
    _mm256_add_epi32, _mm256_setzero_si256, store_avx2
);

/// Writes the 16 lanes of `v` to `acc[at..]`, as many as fit (directly when all do).
#[inline]
#[target_feature(enable = "avx512f")]
fn store_512(acc: &mut [i32], at: usize, v: __m512i) {
    if let Some(d) = acc.get_mut(at..at + 16) {
        // SAFETY: `d` is 16 writable i32 (64 bytes); `storeu` has no alignment requirement.
        unsafe { _mm512_storeu_si512(d.as_mut_ptr().cast::<__m512i>(), v) };
        return;
    }
    let mut t = [0i32; 16];
    // SAFETY: `t` is 64 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_si512(t.as_mut_ptr().cast::<__m512i>(), v) };
    let n = acc.len().saturating_sub(at).min(16);
    if let Some(d) = acc.get_mut(at..at + n) {
        d.copy_from_slice(&t[..n]);
    }
}

mv_kernel!(
    /// Caller guarantees: AVX-512F + VNNI on this CPU and `s.fits(16, w, bias, x, acc)`.
    mv_vnni, features: "avx512f,avx512vnni", rows: 16,
    __m512i, _mm512_loadu_si512, x_u8_512, _mm512_dpbusd_epi32,
    _mm512_add_epi32, _mm512_setzero_si512, store_512
);

// ---------------------------------------------------------------------------------
// PWL activations with the table in registers (see `super::pwl`)
// ---------------------------------------------------------------------------------

impl Avx512Vnni {
    /// Evaluates `t` on the first `16·⌊len/16⌋` elements of `xs` in place; returns how
    /// many it did.
    pub(super) fn pwl_i16(self, t: &super::RegPwl, xs: &mut [i16]) -> usize {
        // SAFETY: a value of this type exists only when AVX-512F and BW (with VNNI) were
        // found on this CPU; the function reads and writes `xs` through whole 16- and
        // 32-element chunks and the table through its fixed-size arrays only.
        unsafe { pwl_avx512(t, xs) }
    }
}

/// Entry `i` (0..64) of a 64-entry table held in `t[0..4]`; `upper` = bit 5 of `i`.
#[inline]
#[target_feature(enable = "avx512f")]
fn lut64(t: &[__m512i; 4], i: __m512i, upper: __mmask16) -> __m512i {
    _mm512_mask_blend_epi32(
        upper,
        _mm512_permutex2var_epi32(t[0], i, t[1]),
        _mm512_permutex2var_epi32(t[2], i, t[3]),
    )
}

/// Loads 16 `i32` from `v[at..at + 16]` (`at + 16 <= v.len()` for the fixed tables).
#[inline]
#[target_feature(enable = "avx512f")]
fn load16(v: &[i32], at: usize) -> __m512i {
    let mut b = [0i32; 16];
    if let Some(s) = v.get(at..at + 16) {
        b.copy_from_slice(s);
    }
    // SAFETY: `b` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}

/// Loads the 32 words of `v`.
#[inline]
#[target_feature(enable = "avx512f")]
fn load32w(v: &[u16; 32]) -> __m512i {
    // SAFETY: `v` is 64 readable bytes by its type; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

/// The 16-bit form (`RegPwl16`, made by `RegPwl::new` only where it applies: symmetric
/// fold, no clamp, `frac_bits == 16`) on the first `32·⌊len/32⌋` elements of `xs`;
/// returns how many it did. Caller guarantees: AVX-512F and BW on this CPU.
#[target_feature(enable = "avx512f,avx512bw")]
fn pwl_words(w: &super::pwl::RegPwl16, fold: super::RegFold, xs: &mut [i16]) -> usize {
    let p = [0, 1, 2, 3, 4].map(|l| load32w(&w.probes[l]));
    let two = |v: &[u16; 64]| {
        let (lo, hi) = v.split_at(32);
        // Both halves are 32 long (`split_at` of a 64-array).
        let (lo, hi): (&[u16; 32], &[u16; 32]) = (lo.try_into().unwrap(), hi.try_into().unwrap());
        (load32w(lo), load32w(hi))
    };
    let ((ih0, ih1), (il0, il1)) = (two(&w.intercept_hi), two(&w.intercept_lo));
    let ((sh0, sh1), (sl0, sl1)) = (two(&w.slope_hi), two(&w.slope_lo));
    let half = _mm512_set1_epi16(w.half_start as i16);
    let total = match fold {
        super::RegFold::Complement(t) => _mm512_set1_epi16(t as i16),
        _ => _mm512_setzero_si512(),
    };
    let one = _mm512_set1_epi16(1);
    let bk = w.bucket.as_ref().map(|b| Bucket {
        first: two(&b.first),
        next: two(&b.next),
        cap: _mm512_set1_epi16(b.cap as i16),
        shift: _mm_cvtsi32_si128(b.shift as i32),
        extra: b.extra,
    });
    let search = |u: __m512i| match &bk {
        // `RegPwl::new` keeps the bucket search only with at most 4 steps.
        Some(b) => match b.extra {
            0 => bucket::<0>(b, u),
            1 => bucket::<1>(b, u),
            2 => bucket::<2>(b, u),
            3 => bucket::<3>(b, u),
            _ => bucket::<4>(b, u),
        },
        None => {
            let mut i =
                _mm512_maskz_mov_epi16(_mm512_cmpge_epu16_mask(u, half), _mm512_set1_epi16(32));
            macro_rules! probe {
                ($l:expr, $d:expr, $sh:expr) => {
                    let s = _mm512_permutexvar_epi16(_mm512_srli_epi16::<$sh>(i), p[$l]);
                    i = _mm512_mask_add_epi16(
                        i,
                        _mm512_cmpge_epu16_mask(u, s),
                        i,
                        _mm512_set1_epi16($d),
                    );
                };
            }
            probe!(0, 16, 5);
            probe!(1, 8, 4);
            probe!(2, 4, 3);
            probe!(3, 2, 2);
            probe!(4, 1, 1);
            i
        }
    };
    let mut n = 0;
    for chunk in xs.chunks_exact_mut(32) {
        // SAFETY: `chunk` is 32 readable and writable i16 (64 bytes); unaligned access.
        let x = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
        let u = _mm512_abs_epi16(x);
        let neg = _mm512_movepi16_mask(x);
        let i = search(u);
        // (intercept + slope·u) >> 16 modulo 2^16 = ih + sh·u + hi16(sl·u) + the carry
        // out of il + lo16(sl·u).
        let il = _mm512_permutex2var_epi16(il0, i, il1);
        let sl = _mm512_permutex2var_epi16(sl0, i, sl1);
        let lo = _mm512_add_epi16(il, _mm512_mullo_epi16(sl, u));
        let mut v = _mm512_add_epi16(
            _mm512_add_epi16(
                _mm512_permutex2var_epi16(ih0, i, ih1),
                _mm512_mulhi_epu16(sl, u),
            ),
            _mm512_mullo_epi16(_mm512_permutex2var_epi16(sh0, i, sh1), u),
        );
        // The carry: 1 where il + lo16(sl·u) wrapped (il −sat lo > 0).
        v = _mm512_add_epi16(v, _mm512_min_epu16(_mm512_subs_epu16(il, lo), one));
        v = _mm512_mask_sub_epi16(v, neg, total, v);
        // SAFETY: as above.
        unsafe { _mm512_storeu_si512(chunk.as_mut_ptr().cast(), v) };
        n += 32;
    }
    n
}

/// The piece of each lane of `u` by the bucket search with `E` compare-adds. Caller
/// guarantees: AVX-512F and BW on this CPU.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn bucket<const E: u32>(b: &Bucket, u: __m512i) -> __m512i {
    let one = _mm512_set1_epi16(1);
    let ub = _mm512_srl_epi16(_mm512_min_epu16(u, b.cap), b.shift);
    let mut i = _mm512_permutex2var_epi16(b.first.0, ub, b.first.1);
    for _ in 0..E {
        // k + 1 − min(next[k] −sat u, 1): one more where next[k] <= u, without a
        // mask register (no compare and mask move on the permute port).
        let s = _mm512_permutex2var_epi16(b.next.0, i, b.next.1);
        i = _mm512_sub_epi16(
            _mm512_add_epi16(i, one),
            _mm512_min_epu16(_mm512_subs_epu16(s, u), one),
        );
    }
    i
}

/// `Bucket16` in registers.
struct Bucket {
    first: (__m512i, __m512i),
    next: (__m512i, __m512i),
    cap: __m512i,
    shift: __m128i,
    extra: u32,
}

/// Caller guarantees: AVX-512F and BW on this CPU.
#[target_feature(enable = "avx512f,avx512bw")]
fn pwl_avx512(t: &super::RegPwl, xs: &mut [i16]) -> usize {
    // `RegPwl::new` derived the 16-bit form where it applies.
    let mut n = match &t.w16 {
        Some(w) => pwl_words(w, t.fold, xs),
        None => 0,
    };
    let four = |v: &[i32; 64]| [load16(v, 0), load16(v, 16), load16(v, 32), load16(v, 48)];
    let (slopes, intercepts) = (four(&t.slopes), four(&t.intercepts));
    // Levels 0..=3 (distances 16, 8, 4, 2) hold at most 16 starts; level 4 (distance
    // 1) holds 32 in two vectors.
    let p = [0, 1, 2, 3].map(|l| load16(&t.probes[l], 0));
    let p1 = (load16(&t.probes[4], 0), load16(&t.probes[4], 16));
    let half = _mm512_set1_epi32(t.half_start);
    let shift = _mm_cvtsi32_si128(t.frac_bits.min(31) as i32);
    for chunk in xs[n..].chunks_exact_mut(16) {
        // SAFETY: `chunk` is 16 readable and writable i16 (32 bytes); unaligned access.
        let x = _mm512_cvtepi16_epi32(unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) });
        let (u, neg) = match t.fold {
            super::RegFold::None => (x, 0),
            _ => (
                _mm512_abs_epi32(x),
                _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()),
            ),
        };
        let mut i = _mm512_maskz_mov_epi32(_mm512_cmpge_epi32_mask(u, half), _mm512_set1_epi32(32));
        let upper = _mm512_test_epi32_mask(i, i);
        // Before the probe at distance d the piece is a multiple of 2d: the start to
        // compare with is entry i >> log2(2d) of that level's table.
        macro_rules! probe {
            ($d:expr, $sh:expr, $start:expr) => {{
                let j = _mm512_srli_epi32::<$sh>(i);
                let s = $start(j);
                i = _mm512_mask_add_epi32(
                    i,
                    _mm512_cmpge_epi32_mask(u, s),
                    i,
                    _mm512_set1_epi32($d),
                );
            }};
        }
        probe!(16, 5, |j| _mm512_permutexvar_epi32(j, p[0]));
        probe!(8, 4, |j| _mm512_permutexvar_epi32(j, p[1]));
        probe!(4, 3, |j| _mm512_permutexvar_epi32(j, p[2]));
        probe!(2, 2, |j| _mm512_permutexvar_epi32(j, p[3]));
        probe!(1, 1, |j| _mm512_permutex2var_epi32(p1.0, j, p1.1));
        // Wrapping i32: equal to offsets + slopes · (u − start), which fits.
        let acc = _mm512_add_epi32(
            lut64(&intercepts, i, upper),
            _mm512_mullo_epi32(lut64(&slopes, i, upper), u),
        );
        let mut v = _mm512_sra_epi32(acc, shift);
        v = match t.fold {
            super::RegFold::None => v,
            super::RegFold::Odd => _mm512_mask_sub_epi32(v, neg, _mm512_setzero_si512(), v),
            super::RegFold::Complement(total) => {
                _mm512_mask_sub_epi32(v, neg, _mm512_set1_epi32(total), v)
            }
        };
        if let Some((lo, hi)) = t.clamp {
            v = _mm512_min_epi32(
                _mm512_max_epi32(v, _mm512_set1_epi32(lo)),
                _mm512_set1_epi32(hi),
            );
            v = _mm512_max_epi32(
                _mm512_min_epi32(v, _mm512_set1_epi32(i16::MAX as i32)),
                _mm512_set1_epi32(i16::MIN as i32),
            );
        }
        // SAFETY: as above, 32 writable bytes.
        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr().cast(), _mm512_cvtepi32_epi16(v)) };
        n += 16;
    }
    n
}

// ---------------------------------------------------------------------------------
// PWL activations with AVX2 gathers (see `super::pwl::GatherPwl`)
// ---------------------------------------------------------------------------------

impl Avx2 {
    /// Evaluates `t` on the first `8·⌊len/8⌋` elements of `xs` in place; returns how
    /// many it did.
    pub(super) fn pwl_i16_gather(self, t: &super::GatherPwl, xs: &mut [i16]) -> usize {
        // SAFETY: a value of this type exists only when AVX2 was found on this CPU; the
        // function reads and writes `xs` through whole 8-element chunks, and every
        // gather index is in bounds by `GatherPwl::new`'s checks (see there).
        unsafe { pwl_gather_avx2(t, xs) }
    }
}

/// Caller guarantees: AVX2 on this CPU; `t` made by `GatherPwl::new`.
#[target_feature(enable = "avx2")]
fn pwl_gather_avx2(t: &super::GatherPwl, xs: &mut [i16]) -> usize {
    let mask = _mm256_set1_epi32((1 << t.shift) - 1);
    let (bias, cap) = (_mm256_set1_epi32(t.bias), _mm256_set1_epi32(t.cap));
    let shift = _mm_cvtsi32_si128(t.shift as i32);
    let shift2 = _mm_cvtsi32_si128(8 + t.shift as i32);
    let frac = _mm_cvtsi32_si128(t.frac_bits as i32);
    let mut n = 0;
    for chunk in xs.chunks_exact_mut(8) {
        // SAFETY: `chunk` is 8 readable and writable i16 (16 bytes); unaligned access.
        let x = _mm256_cvtepi16_epi32(unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) });
        let u = match t.fold {
            super::RegFold::None => x,
            _ => _mm256_abs_epi32(x),
        };
        // ub >= 0 (`new` checked the bias for the fold) and <= cap, whose bucket exists.
        let ub = _mm256_min_epi32(_mm256_add_epi32(u, bias), cap);
        // SAFETY: bucket indices ub >> shift lie in 0..=cap >> shift < buckets.len().
        let e =
            unsafe { _mm256_i32gather_epi32::<4>(t.buckets.as_ptr(), _mm256_srl_epi32(ub, shift)) };
        let r = _mm256_and_si256(ub, mask);
        let mut i = _mm256_and_si256(e, _mm256_set1_epi32(255));
        if t.compares >= 1 {
            let last = _mm256_and_si256(_mm256_srli_epi32::<8>(e), mask);
            i = _mm256_sub_epi32(i, _mm256_cmpgt_epi32(r, last));
        }
        if t.compares >= 2 {
            let last = _mm256_and_si256(_mm256_srl_epi32(e, shift2), mask);
            i = _mm256_sub_epi32(i, _mm256_cmpgt_epi32(r, last));
        }
        // SAFETY: i <= (e & 255) + compares < slopes.len() = intercepts.len() (`new`).
        let (slope, intercept) = unsafe {
            (
                _mm256_i32gather_epi32::<4>(t.slopes.as_ptr(), i),
                _mm256_i32gather_epi32::<4>(t.intercepts.as_ptr(), i),
            )
        };
        // Wrapping i32: equal to offsets + slopes · (u − start), which fits.
        let mut v = _mm256_sra_epi32(
            _mm256_add_epi32(intercept, _mm256_mullo_epi32(slope, u)),
            frac,
        );
        let neg = _mm256_srai_epi32::<31>(x);
        v = match t.fold {
            super::RegFold::None => v,
            super::RegFold::Odd => {
                _mm256_blendv_epi8(v, _mm256_sub_epi32(_mm256_setzero_si256(), v), neg)
            }
            super::RegFold::Complement(total) => {
                _mm256_blendv_epi8(v, _mm256_sub_epi32(_mm256_set1_epi32(total), v), neg)
            }
        };
        if let Some((lo, hi)) = t.clamp {
            v = _mm256_min_epi32(
                _mm256_max_epi32(v, _mm256_set1_epi32(lo)),
                _mm256_set1_epi32(hi),
            );
        }
        // The pack saturates to int16; lanes 0-3 and 4-7 end in 64-bit words 0 and 2.
        let packed = _mm256_permute4x64_epi64::<0x08>(_mm256_packs_epi32(v, v));
        // SAFETY: as above, 16 writable bytes.
        unsafe { _mm_storeu_si128(chunk.as_mut_ptr().cast(), _mm256_castsi256_si128(packed)) };
        n += 8;
    }
    n
}

// ---------------------------------------------------------------------------------
// Gate pre-activations (see `super::gates`)
// ---------------------------------------------------------------------------------

/// The lengths every gate-sum form relies on: both accumulators, all six tables and
/// the output have the same length. Returns it.
fn gate_len(
    x: (&[i32], super::gates::Terms<'_>),
    h: (&[i32], super::gates::Terms<'_>),
    out: &[i16],
) -> Option<usize> {
    let n = out.len();
    [x.0, x.1.mul, x.1.e, x.1.half, h.0, h.1.mul, h.1.e, h.1.half]
        .iter()
        .all(|s| s.len() == n)
        .then_some(n)
}

/// One term of the gate sums: the accumulators and their requantizer tables.
type GateTerm<'a> = (&'a [i32], super::gates::Terms<'a>);

/// Defines `$isa::gate_sums`, the safe entry of the vector gate sums `$body` (`$lanes`
/// rows at a time).
macro_rules! gate_sums_entry {
    ($isa:ident, $body:ident, $lanes:literal, $features:literal) => {
        impl $isa {
            /// The gate sums of the first `lanes·⌊n/lanes⌋` rows; returns how many it
            /// wrote. With `check`, 0 when an accumulator is outside `−2^29 ..< 2^29`
            /// (the rows' values are then not meaningful and the caller recomputes
            /// every row); without, the caller proved every accumulator inside.
            pub(super) fn gate_sums(
                self,
                x: GateTerm<'_>,
                h: GateTerm<'_>,
                out: &mut [i16],
                check: bool,
            ) -> usize {
                let Some(n) = gate_len(x, h, out) else {
                    return 0;
                };
                // SAFETY: a value of this type exists only when the features `$body`
                // enables ($features) were found on this CPU; `gate_len` checked that
                // every slice holds `n` elements, and `$body` reads and writes whole
                // `$lanes`-element chunks below `n` only.
                unsafe {
                    if check {
                        $body::<true>(n, x, h, out.as_mut_ptr())
                    } else {
                        $body::<false>(n, x, h, out.as_mut_ptr())
                    }
                }
            }
        }
    };
}

gate_sums_entry!(Avx512Vnni, gate_sums_avx512, 16, "avx512f,avx512bw");
gate_sums_entry!(Avx2, gate_sums_avx2, 8, "avx2");

/// `y / 2^e` rounded half away from zero, for `y = floor((x·m + 2^30) / 2^31)` on 16
/// lanes: the products of the even and the odd lanes (`vpmuldq`) plus 2^30, doubled, so
/// that each high half is `y`; then `(y + half − (y < 0 && e > 0)) >> e`. Exact when
/// `|x| <= 2^29` (NUMERICS.md, "Branch-free requantization in generated code").
#[inline]
#[target_feature(enable = "avx512f")]
fn req_v512(x: __m512i, m: __m512i, e: __m512i, half: __m512i) -> __m512i {
    let c = _mm512_set1_epi64(1 << 30);
    let pe = _mm512_add_epi64(_mm512_mul_epi32(x, m), c);
    let po = _mm512_add_epi64(
        _mm512_mul_epi32(
            _mm512_shuffle_epi32::<0xF5>(x),
            _mm512_shuffle_epi32::<0xF5>(m),
        ),
        c,
    );
    let y = _mm512_mask_blend_epi32(
        0xAAAA,
        _mm512_shuffle_epi32::<0xF5>(_mm512_add_epi64(pe, pe)),
        _mm512_add_epi64(po, po),
    );
    let t = _mm512_add_epi32(y, half);
    let neg = _mm512_cmplt_epi32_mask(y, _mm512_setzero_si512());
    _mm512_srav_epi32(
        _mm512_mask_sub_epi32(t, neg, t, _mm512_min_epu32(half, _mm512_set1_epi32(1))),
        e,
    )
}

/// Caller guarantees: AVX-512F and BW on this CPU; every slice of `x` and `h` holds
/// `n` elements and `out` points to `n` writable ones.
#[target_feature(enable = "avx512f,avx512bw")]
fn gate_sums_avx512<const CHECK: bool>(
    n: usize,
    (ax, tx): GateTerm<'_>,
    (ah, th): GateTerm<'_>,
    out: *mut i16,
) -> usize {
    // SAFETY (every load below): `k + 16 <= n`, the length of each slice.
    let ld = |s: &[i32], k: usize| unsafe { _mm512_loadu_si512(s.as_ptr().add(k).cast()) };
    let lim = _mm512_set1_epi32(super::gates::VECTOR_ACC_LIMIT);
    let mut over = _mm512_setzero_si512();
    let mut k = 0;
    while k + 16 <= n {
        let (x, hh) = (ld(ax, k), ld(ah, k));
        // Bits 30 and 31 of acc + 2^29 are clear exactly when −2^29 <= acc < 2^29.
        if CHECK {
            over = _mm512_or_si512(
                over,
                _mm512_or_si512(_mm512_add_epi32(x, lim), _mm512_add_epi32(hh, lim)),
            );
        }
        let s = _mm512_add_epi32(
            req_v512(x, ld(tx.mul, k), ld(tx.e, k), ld(tx.half, k)),
            req_v512(hh, ld(th.mul, k), ld(th.e, k), ld(th.half, k)),
        );
        // SAFETY: `k + 16 <= n` writable i16 at `out`; unaligned store.
        unsafe { _mm256_storeu_si256(out.add(k).cast(), _mm512_cvtsepi32_epi16(s)) };
        k += 16;
    }
    if CHECK && _mm512_test_epi32_mask(over, _mm512_set1_epi32(0xC000_0000_u32 as i32)) != 0 {
        return 0;
    }
    k
}

/// [`req_v512`] on 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn req_v256(x: __m256i, m: __m256i, e: __m256i, half: __m256i) -> __m256i {
    let c = _mm256_set1_epi64x(1 << 30);
    let pe = _mm256_add_epi64(_mm256_mul_epi32(x, m), c);
    let po = _mm256_add_epi64(
        _mm256_mul_epi32(
            _mm256_shuffle_epi32::<0xF5>(x),
            _mm256_shuffle_epi32::<0xF5>(m),
        ),
        c,
    );
    let y = _mm256_blend_epi32::<0xAA>(
        _mm256_shuffle_epi32::<0xF5>(_mm256_add_epi64(pe, pe)),
        _mm256_add_epi64(po, po),
    );
    // cmpgt is −1 where y < 0: subtract min(half, 1) there.
    let neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), y);
    _mm256_srav_epi32(
        _mm256_sub_epi32(
            _mm256_add_epi32(y, half),
            _mm256_and_si256(neg, _mm256_min_epu32(half, _mm256_set1_epi32(1))),
        ),
        e,
    )
}

/// Caller guarantees: AVX2 on this CPU; every slice of `x` and `h` holds `n` elements
/// and `out` points to `n` writable ones.
#[target_feature(enable = "avx2")]
fn gate_sums_avx2<const CHECK: bool>(
    n: usize,
    (ax, tx): GateTerm<'_>,
    (ah, th): GateTerm<'_>,
    out: *mut i16,
) -> usize {
    // SAFETY (every load below): `k + 8 <= n`, the length of each slice.
    let ld = |s: &[i32], k: usize| unsafe { _mm256_loadu_si256(s.as_ptr().add(k).cast()) };
    let lim = _mm256_set1_epi32(super::gates::VECTOR_ACC_LIMIT);
    let mut over = _mm256_setzero_si256();
    let mut k = 0;
    while k + 8 <= n {
        let (x, hh) = (ld(ax, k), ld(ah, k));
        if CHECK {
            over = _mm256_or_si256(
                over,
                _mm256_or_si256(_mm256_add_epi32(x, lim), _mm256_add_epi32(hh, lim)),
            );
        }
        let s = _mm256_add_epi32(
            req_v256(x, ld(tx.mul, k), ld(tx.e, k), ld(tx.half, k)),
            req_v256(hh, ld(th.mul, k), ld(th.e, k), ld(th.half, k)),
        );
        // packs saturates to int16 within each 128-bit half; qwords 0 and 2 are the 8.
        let p = _mm256_permute4x64_epi64::<0x08>(_mm256_packs_epi32(s, s));
        // SAFETY: `k + 8 <= n` writable i16 at `out`; unaligned store.
        unsafe { _mm_storeu_si128(out.add(k).cast(), _mm256_castsi256_si128(p)) };
        k += 8;
    }
    if CHECK && _mm256_testz_si256(over, _mm256_set1_epi32(0xC000_0000_u32 as i32)) == 0 {
        return 0;
    }
    k
}
