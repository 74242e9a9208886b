//! Weight packing for the SIMD targets, shared by the C and Rust back ends.
//!
//! The layout itself (`[blocks][groups][block_rows][4]`, rows padded to the block
//! height, columns to a multiple of 4) is defined once, next to the kernels that read
//! it, in [`irnn_runtime::simd::pack`]; this module adds what generation needs: the
//! padded bias, the VNNI offset bias `bias − 128 · rowsum(W)` (AVX-512 VNNI, and AVX2
//! for CPUs with AVX-VNNI; with a layer
//! error if it left `i32`) and whether the target's SIMD kernel is exact for the
//! matrix (AVX2's sign trick needs every weight > −128).

use super::{GenError, Target};
use irnn_runtime::simd::{self, Isa};

/// The runtime kernel family of a target.
pub fn isa(target: Target) -> Isa {
    target.info().isa
}

/// Block height of a target's packed layout (rows its kernels handle together); 1 for
/// unpacked rows.
pub fn block_rows(target: Target) -> usize {
    target.info().block_rows
}

/// A weight matrix packed for a SIMD target, with its biases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedMat {
    /// The packed int8 values, `[blocks][groups][br][4]`.
    pub data: Vec<i8>,
    /// The bias padded with zeros to `rows_pad`.
    pub bias: Vec<i32>,
    /// AVX-512 VNNI and AVX2 (for AVX-VNNI): `bias − 128 · rowsum(W)`, padded (the
    /// VNNI kernels multiply `x + 128` as unsigned bytes).
    pub offset_bias: Option<Vec<i32>>,
    /// Rows and columns of the unpadded matrix.
    pub rows: usize,
    /// Columns of the unpadded matrix.
    pub cols: usize,
    /// Block height.
    pub br: usize,
    /// Rows after padding.
    pub rows_pad: usize,
    /// Row blocks.
    pub blocks: usize,
    /// 4-column groups.
    pub groups: usize,
    /// Whether some weight is −128.
    pub has_min_weight: bool,
    /// Whether the target's SIMD kernel is exact for this matrix (false only for AVX2
    /// with a −128 weight: that matrix runs the portable kernel on the same layout).
    pub simd: bool,
}

/// Packs the row-major `[rows][cols]` matrix `w` of layer `layer` (`what` names the
/// matrix in errors) for `target` (not scalar).
pub fn pack_matrix(
    layer: &str,
    what: &str,
    w: &[i8],
    bias: &[i32],
    rows: usize,
    cols: usize,
    target: Target,
) -> Result<PackedMat, GenError> {
    let err = |message: String| GenError::Layer {
        layer: layer.to_string(),
        message,
    };
    let br = block_rows(target);
    // Columns padded with zero weights to the target's multiple (the input vector is
    // zero padded to the same width by the prep).
    let cm = target.info().col_multiple;
    let cols_pad = cols.div_ceil(cm) * cm;
    let padded_w: Vec<i8>;
    let w_pad: &[i8] = if cols_pad == cols || w.len() != rows * cols {
        w
    } else {
        padded_w = w
            .chunks_exact(cols.max(1))
            .flat_map(|row| {
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, cols_pad - cols))
            })
            .collect();
        &padded_w
    };
    let packed_cols = if w_pad.len() == rows * cols_pad {
        cols_pad
    } else {
        cols
    };
    let mut bytes = vec![0u8; simd::packed_len(rows, packed_cols, br)];
    simd::pack(w_pad, rows, packed_cols, br, &mut bytes)
        .map_err(|e| err(format!("{what}: {e}")))?;
    if bias.len() != rows {
        return Err(err(format!(
            "{what}: {} biases for {rows} rows",
            bias.len()
        )));
    }
    let rows_pad = simd::padded_rows(rows, br);
    let mut padded = bias.to_vec();
    padded.resize(rows_pad, 0);
    let offset_bias = if matches!(target, Target::Avx512Vnni | Target::Avx2) {
        let mut v = Vec::with_capacity(rows_pad);
        for (r, b) in padded.iter().enumerate() {
            let rowsum: i64 = if r < rows {
                w[r * cols..(r + 1) * cols].iter().map(|&x| x as i64).sum()
            } else {
                0
            };
            let folded = *b as i64 - 128 * rowsum;
            // |b| + 128·Σ|W| ≤ 2^31 − 1 (checked before) bounds this; re-check anyway.
            let folded = i32::try_from(folded).map_err(|_| {
                err(format!(
                    "{what} row {r}: bias - 128 * rowsum = {folded} leaves int32"
                ))
            })?;
            v.push(folded);
        }
        Some(v)
    } else {
        None
    };
    let has_min_weight = w.contains(&i8::MIN);
    Ok(PackedMat {
        data: bytes.into_iter().map(|b| b as i8).collect(),
        bias: padded,
        offset_bias,
        rows,
        cols,
        br,
        rows_pad,
        blocks: rows.div_ceil(br),
        groups: packed_cols.div_ceil(4),
        has_min_weight,
        simd: !(target == Target::Avx2 && has_min_weight),
    })
}

/// Bytes of a `[rows][cols]` matrix as the kernels of `target` read it.
pub fn packed_bytes(rows: usize, cols: usize, target: Target) -> usize {
    if target.c_packed() {
        let cm = target.info().col_multiple;
        simd::packed_len(rows, cols.div_ceil(cm) * cm, block_rows(target))
    } else {
        rows * cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_blocks_groups_rows_columns() {
        // 3 x 5, blocks of 4: one block, two groups.
        let w: Vec<i8> = (1..=15).collect();
        let p = pack_matrix("l", "w", &w, &[7, 8, 9], 3, 5, Target::Neon).unwrap();
        assert_eq!((p.rows_pad, p.blocks, p.groups), (4, 1, 2));
        #[rustfmt::skip]
        let want: Vec<i8> = vec![
            1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 0, 0, 0, 0,
            5, 0, 0, 0, 10, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(p.data, want);
        assert_eq!(p.bias, vec![7, 8, 9, 0]);
        assert_eq!(p.offset_bias, None);
        let v = pack_matrix("l", "w", &w, &[7, 8, 9], 3, 5, Target::Avx512Vnni).unwrap();
        assert_eq!(v.offset_bias.as_ref().unwrap()[0], 7 - 128 * 15);
        assert_eq!(v.offset_bias.as_ref().unwrap().len(), 16);
        let a = pack_matrix("l", "w", &[-128, 0], &[0], 1, 2, Target::Avx2).unwrap();
        assert!(a.has_min_weight && !a.simd);
        assert_eq!(packed_bytes(3, 5, Target::Avx2), 8 * 8);
        assert_eq!(packed_bytes(3, 5, Target::Scalar), 15);
    }
}
