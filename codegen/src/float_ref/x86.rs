//! The lanes' products of [`super::Tiled`] on AVX-512: one weight vector load per
//! column and 16 rows, a separate multiply and add per lane (`vmulps`, `vaddps`: one
//! rounding each, as the scalar loop; never a fused multiply-add).
#![allow(unsafe_code)]

use super::TILE_ROWS;
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps,
};

/// Proof that the CPU runs AVX-512 F: only [`Avx512::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512(());

impl Avx512 {
    /// `Some` when the CPU runs AVX-512 F.
    pub(super) fn detect() -> Option<Avx512> {
        std::is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }

    /// `acc[l][k] = Σ_c blk[c · TILE_ROWS + k] · xt[c · L + l]` over the columns in
    /// order, from 0, one rounding per multiply and per add (see
    /// `Tiled::matvec_add_lanes`). `blk` holds whole columns of [`TILE_ROWS`] weights and
    /// `xt` whole columns of `L` inputs; the shorter one bounds the columns.
    #[inline]
    pub(super) fn block<const L: usize>(
        self,
        blk: &[f32],
        xt: &[f32],
        acc: &mut [[f32; TILE_ROWS]; L],
    ) {
        // SAFETY: `self` exists only when `detect` found AVX-512 F on this CPU.
        unsafe { block_avx512::<L>(blk, xt, acc) }
    }
}

const _: () = assert!(TILE_ROWS == 32, "two 16-float vectors per column");

#[target_feature(enable = "avx512f")]
unsafe fn block_avx512<const L: usize>(blk: &[f32], xt: &[f32], acc: &mut [[f32; TILE_ROWS]; L]) {
    let mut a0: [__m512; L] = [_mm512_setzero_ps(); L];
    let mut a1: [__m512; L] = [_mm512_setzero_ps(); L];
    for (wc, xc) in blk.chunks_exact(TILE_ROWS).zip(xt.chunks_exact(L)) {
        // SAFETY: `wc` holds TILE_ROWS = 32 floats: two unaligned loads of 16 in bounds.
        let (w0, w1) = unsafe {
            (
                _mm512_loadu_ps(wc.as_ptr()),
                _mm512_loadu_ps(wc.as_ptr().add(16)),
            )
        };
        for l in 0..L {
            let x = _mm512_set1_ps(xc[l]);
            a0[l] = _mm512_add_ps(a0[l], _mm512_mul_ps(w0, x));
            a1[l] = _mm512_add_ps(a1[l], _mm512_mul_ps(w1, x));
        }
    }
    for l in 0..L {
        let (lo, hi) = acc[l].split_at_mut(16);
        // SAFETY: `lo` and `hi` hold 16 floats each: two unaligned stores in bounds.
        unsafe {
            _mm512_storeu_ps(lo.as_mut_ptr(), a0[l]);
            _mm512_storeu_ps(hi.as_mut_ptr(), a1[l]);
        }
    }
}
