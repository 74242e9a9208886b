//! AArch64 kernels: NEON (`smull`/`smull2` + `sadalp`) and the dot-product extension
//! (`sdot`, through `asm!` because `vdotq_s32` is not stable yet).
//!
//! Blocks are 4 rows high: one 4-byte group of a block is one 16-byte vector. Four
//! blocks are in flight at a time. Memory is read through raw pointers only after
//! [`Shape::fits`] has checked every length; results leave through bounds-checked
//! slices.

use super::{detect, word, Shape};
use core::arch::aarch64::*;
use core::arch::asm;

isa_proof!(
    /// Proof that this CPU runs NEON: 4-row blocks, exact for every int8.
    Neon,
    detected: detect::neon(),
    features: "neon",
    rows: 4,
    kernel: mv_neon
);

isa_proof!(
    /// Proof that this CPU runs NEON with the dot-product extension: `sdot` on 4-row
    /// blocks.
    NeonDotprod,
    detected: detect::neon() && detect::dotprod(),
    features: "neon,dotprod",
    rows: 4,
    kernel: mv_dotprod
);

/// Writes the 4 lanes of `v` to `acc[at..]`, as many as fit.
#[inline]
#[target_feature(enable = "neon")]
fn store4(acc: &mut [i32], at: usize, v: int32x4_t) {
    let mut t = [0i32; 4];
    // SAFETY: `t` is 4 writable i32s.
    unsafe { vst1q_s32(t.as_mut_ptr(), v) };
    let n = acc.len().saturating_sub(at).min(4);
    if let Some(d) = acc.get_mut(at..at + n) {
        d.copy_from_slice(&t[..n]);
    }
}

/// Group word `g` of `x` in every 32-bit lane.
#[inline]
#[target_feature(enable = "neon")]
fn xg(x: &[i8], g: usize) -> int8x16_t {
    vreinterpretq_s8_s32(vdupq_n_s32(word(x, g)))
}

/// Caller guarantees: NEON on this CPU and `s.fits(4, w, bias, x, acc)`.
#[target_feature(enable = "neon")]
fn mv_neon(s: &Shape, w: &[u8], bias: &[i32], x: &[i8], acc: &mut [i32]) {
    const BR: usize = 4;
    let stride = s.groups * BR * 4;
    let (wp, bp) = (w.as_ptr(), bias.as_ptr());
    // Weight loads read 16 bytes at `b·stride + g·16` with `b < blocks`, `g < groups`:
    // inside `w` (`w.len() == blocks · stride`); bias loads read 4 values at `b·4`,
    // inside `bias` (`bias.len() ≥ blocks · 4`).
    macro_rules! ldw {
        ($off:expr) => {
            // SAFETY: in bounds as argued above; byte loads need no alignment.
            unsafe { vld1q_s8(wp.add($off).cast::<i8>()) }
        };
    }
    macro_rules! ldb {
        ($b:expr) => {
            // SAFETY: in bounds as argued above.
            unsafe { vld1q_s32(bp.add($b * BR)) }
        };
    }
    let zero = vdupq_n_s32(0);
    let mut b = 0;
    while b < s.blocks {
        // Up to four blocks at a time; each keeps rows 0–1 (`lo`) and 2–3 (`hi`) as
        // pairs of int32 lanes per row until the final pairwise add.
        let n = (s.blocks - b).min(4);
        let mut lo = [zero; 4];
        let mut hi = [zero; 4];
        for g in 0..s.groups {
            let xv = xg(x, g);
            let xl = vget_low_s8(xv);
            for i in 0..n {
                let wv = ldw!((b + i) * stride + g * 16);
                // int8 × int8 fits int16 (|p| ≤ 2^14); sadalp adds pairs into int32.
                lo[i] = vpadalq_s16(lo[i], vmull_s8(vget_low_s8(wv), xl));
                hi[i] = vpadalq_s16(hi[i], vmull_high_s8(wv, xv));
            }
        }
        for i in 0..n {
            let sums = vpaddq_s32(lo[i], hi[i]);
            store4(acc, (b + i) * BR, vaddq_s32(ldb!(b + i), sums));
        }
        b += n;
    }
}

/// `acc + sdot(w, x)`: each int32 lane adds the dot product of its 4 bytes of `w`
/// and `x`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction (no memory, stack or flags); the function
    // is compiled with the dot-product extension, which every caller has verified.
    unsafe {
        asm!(
            "sdot {a:v}.4s, {w:v}.16b, {x:v}.16b",
            a = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Caller guarantees: NEON + dot product on this CPU and `s.fits(4, w, bias, x, acc)`.
#[target_feature(enable = "neon,dotprod")]
fn mv_dotprod(s: &Shape, w: &[u8], bias: &[i32], x: &[i8], acc: &mut [i32]) {
    const BR: usize = 4;
    let stride = s.groups * BR * 4;
    let (wp, bp) = (w.as_ptr(), bias.as_ptr());
    // Same bounds as `mv_neon`.
    macro_rules! ldw {
        ($off:expr) => {
            // SAFETY: in bounds (see `mv_neon`); byte loads need no alignment.
            unsafe { vld1q_s8(wp.add($off).cast::<i8>()) }
        };
    }
    macro_rules! ldb {
        ($b:expr) => {
            // SAFETY: in bounds (see `mv_neon`).
            unsafe { vld1q_s32(bp.add($b * BR)) }
        };
    }
    let zero = vdupq_n_s32(0);
    let mut b = 0;
    while b < s.blocks {
        // Up to four blocks at a time, even and odd groups in separate accumulators.
        let n = (s.blocks - b).min(4);
        let mut a = [zero; 4];
        let mut c = [zero; 4];
        let mut g = 0;
        while g + 2 <= s.groups {
            let (x0, x1) = (xg(x, g), xg(x, g + 1));
            for i in 0..n {
                let o = (b + i) * stride + g * 16;
                a[i] = sdot(a[i], ldw!(o), x0);
                c[i] = sdot(c[i], ldw!(o + 16), x1);
            }
            g += 2;
        }
        if g < s.groups {
            let x0 = xg(x, g);
            for (i, ai) in a.iter_mut().enumerate().take(n) {
                *ai = sdot(*ai, ldw!((b + i) * stride + g * 16), x0);
            }
        }
        for i in 0..n {
            let sums = vaddq_s32(a[i], c[i]);
            store4(acc, (b + i) * BR, vaddq_s32(ldb!(b + i), sums));
        }
        b += n;
    }
}
