//! Interval analysis over a layer's ops: for every element of every buffer, an interval
//! that holds its value in every step. Back ends choose arithmetic forms from these
//! proven intervals (`back::gate_sum_plan`), so C and Rust rely on the same facts.
//!
//! One pass over the ops in order. The layer input and recurrent state start at their
//! type's whole range (state carries any value a previous step left); an op's output
//! replaces the interval of the view it writes. [`Op::MatVec`] is exact per row:
//! `bias + Σ_j min/max(w_j · lo_j, w_j · hi_j)`; [`Op::Relu`] clips at 0; every other
//! op saturates into its output type, whose range is its interval. Temporaries are
//! written before they are read (`OpLayer::validate`), so one pass is sound.

use super::ops::{Dtype, Op, OpLayer, View};

/// A closed interval `lo ..= hi` of integer values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// Smallest value.
    pub lo: i64,
    /// Largest value.
    pub hi: i64,
}

impl Interval {
    /// Every value of `dtype`.
    pub fn of(dtype: Dtype) -> Interval {
        let (lo, hi) = match dtype {
            Dtype::I8 => (i8::MIN as i64, i8::MAX as i64),
            Dtype::I16 => (i16::MIN as i64, i16::MAX as i64),
            Dtype::I32 => (i32::MIN as i64, i32::MAX as i64),
        };
        Interval { lo, hi }
    }

    /// The largest magnitude in the interval.
    pub fn magnitude(self) -> u64 {
        self.lo.unsigned_abs().max(self.hi.unsigned_abs())
    }

    /// The smallest interval holding both.
    pub fn union(self, o: Interval) -> Interval {
        Interval {
            lo: self.lo.min(o.lo),
            hi: self.hi.max(o.hi),
        }
    }
}

/// The interval of every element of every buffer of one layer ([`OpLayer::ranges`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranges {
    per_buffer: Vec<Vec<Interval>>,
}

impl Ranges {
    /// The intervals of the elements of `v`, as the op that reads `v` last sees them
    /// (after every op of the step has run, the interval of each element is that of
    /// its last write).
    pub fn view(&self, v: View) -> &[Interval] {
        &self.per_buffer[v.buf][v.start..v.start + v.len]
    }

    /// The union of the intervals of `v`.
    pub fn hull(&self, v: View) -> Option<Interval> {
        self.view(v).iter().copied().reduce(Interval::union)
    }
}

impl OpLayer {
    /// Runs the interval analysis of the module documentation. A buffer written more
    /// than once in a step keeps each element's last interval, which is what the ops
    /// after the last write read (the analysis of an op's own inputs is exact only for
    /// views written once per step, which is every accumulator the back ends ask about).
    pub fn ranges(&self) -> Ranges {
        let mut per_buffer: Vec<Vec<Interval>> = self
            .buffers
            .iter()
            .map(|b| vec![Interval::of(b.dtype); b.len])
            .collect();
        for op in &self.ops {
            let dst = op.writes();
            let dtype = self.buffers[dst.buf].dtype;
            let out: Vec<Interval> = match op {
                Op::MatVec { mat, x, .. } => {
                    let m = &self.mats[*mat];
                    let xs = &per_buffer[x.buf][x.start..x.start + x.len];
                    (0..m.rows)
                        .map(|r| {
                            let row = &m.w[r * m.cols..(r + 1) * m.cols];
                            let (lo, hi) = row.iter().zip(xs).fold(
                                (m.bias[r] as i64, m.bias[r] as i64),
                                |(lo, hi), (&w, xi)| {
                                    let (a, b) = (w as i64 * xi.lo, w as i64 * xi.hi);
                                    (lo.saturating_add(a.min(b)), hi.saturating_add(a.max(b)))
                                },
                            );
                            Interval { lo, hi }
                        })
                        .collect()
                }
                Op::Relu { src, .. } => per_buffer[src.buf][src.start..src.start + src.len]
                    .iter()
                    .map(|i| Interval {
                        lo: i.lo.max(0),
                        hi: i.hi.max(0),
                    })
                    .collect(),
                _ => vec![Interval::of(dtype); dst.len],
            };
            per_buffer[dst.buf][dst.start..dst.start + dst.len].copy_from_slice(&out);
        }
        Ranges { per_buffer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ops::{LayerBuilder, Matrix, Role};

    #[test]
    fn matvec_rows_are_exact_and_relu_clips() {
        let mut b = LayerBuilder::default();
        let x = b.buffer("x", Dtype::I8, 2, Role::Input);
        let acc = b.buffer("acc", Dtype::I32, 2, Role::Temp);
        let r = b.buffer("r", Dtype::I32, 2, Role::Temp);
        let layer = OpLayer {
            name: "t".into(),
            kind: crate::ir::ops::CellKind::Linear,
            buffers: b.finish(),
            mats: vec![Matrix {
                name: "w".into(),
                rows: 2,
                cols: 2,
                w: vec![3, -2, -128, 0],
                bias: vec![10, -5],
            }],
            ops: vec![Op::MatVec { mat: 0, x, acc }, Op::Relu { src: acc, dst: r }],
            output: r,
        };
        let ranges = layer.ranges();
        // Row 0: 10 + 3·[−128, 127] − 2·[−128, 127] = 10 + [−384, 381] + [−254, 256].
        // Row 1: −5 − 128·[−128, 127] = −5 + [−16256, 16384].
        assert_eq!(
            ranges.view(acc),
            [
                Interval { lo: -628, hi: 647 },
                Interval {
                    lo: -16261,
                    hi: 16379
                }
            ]
        );
        assert_eq!(ranges.view(r)[1], Interval { lo: 0, hi: 16379 });
        assert_eq!(
            ranges.hull(acc),
            Some(Interval {
                lo: -16261,
                hi: 16379
            })
        );
        assert_eq!(ranges.view(x)[0], Interval::of(Dtype::I8));
    }
}
