//! The op-level integer IR: one layer step as a list of ops over named, typed, sized
//! buffers.
//!
//! Every layer kind lowers to an [`OpLayer`] ([`super::LayerIr::ops`]): the
//! interpreter runs these ops through `irnn-runtime`'s kernels, which stay the one
//! definition of integer semantics, and back ends write one emitter per op. An op
//! reads [`View`]s (a range of one buffer) and writes one; buffers are the layer
//! input (int8), recurrent state (kept across steps, reset to a constant) and
//! scratch (dead between steps). Weights and per-row requantizers are constants of
//! the op that uses them.
//!
//! [`OpLayer::hoistable`] is the general rule that moves ops out of the step: an op
//! whose inputs never depend on recurrent state can run for a whole sequence chunk
//! before the recurrence (the input projections of every recurrent cell).

use irnn_runtime::Requant;

/// Element type of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// int8 codes (layer inputs and outputs, hidden states).
    I8,
    /// int16 values (pre-activations, Q0.15 activations, cell states).
    I16,
    /// int32 values (accumulators, int32 logits).
    I32,
}

impl Dtype {
    /// The C type name.
    pub fn c_type(self) -> &'static str {
        match self {
            Dtype::I8 => "int8_t",
            Dtype::I16 => "int16_t",
            Dtype::I32 => "int32_t",
        }
    }

    /// The Rust type name.
    pub fn rust_type(self) -> &'static str {
        match self {
            Dtype::I8 => "i8",
            Dtype::I16 => "i16",
            Dtype::I32 => "i32",
        }
    }

    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 => 2,
            Dtype::I32 => 4,
        }
    }
}

/// What a buffer holds between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The layer's input vector for this step (int8; read-only).
    Input,
    /// Recurrent state: kept across steps, set to `reset` by a reset.
    State {
        /// Value of every element after a reset.
        reset: i32,
    },
    /// Scratch: written before it is read within a step.
    Temp,
}

/// A named, typed, sized buffer of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Name, unique in the layer (`x`, `h`, `acc_x`, `gates`, …).
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Number of elements.
    pub len: usize,
    /// Lifetime.
    pub role: Role,
}

/// `len` elements of buffer `buf` from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct View {
    /// Index into [`OpLayer::buffers`].
    pub buf: usize,
    /// First element.
    pub start: usize,
    /// Number of elements.
    pub len: usize,
}

/// A weight matrix with its bias (input zero point folded in), for [`Op::MatVec`].
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Name in the layer (`w_ih`, `w_hh`, `weight`).
    pub name: String,
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// `[rows, cols]` row-major int8 codes.
    pub w: Vec<i8>,
    /// `[rows]` int32 bias on the accumulator grid.
    pub bias: Vec<i32>,
}

/// One op. Every op is element-wise over its views except [`Op::MatVec`] and
/// [`Op::Lookup`]; a per-row requantizer list has one entry per element, or one entry
/// for all.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Token id → int8 row; ids outside `0..rows` give `zero_point` everywhere.
    Lookup {
        /// `[rows, dim]` int8 codes.
        table: Vec<i8>,
        /// Number of rows.
        rows: usize,
        /// The int8 output code of real 0.
        zero_point: i32,
        /// int8, `dim` elements.
        dst: View,
    },
    /// `acc = bias + W · x` (int32; the lowering proves no row can overflow).
    MatVec {
        /// Index into [`OpLayer::mats`].
        mat: usize,
        /// int8 input.
        x: View,
        /// int32 output, `rows` elements.
        acc: View,
    },
    /// Gate pre-activations: `dst = sat16(ra(a) +sat rb(b))`, or `sat16(ra(a))`
    /// without `b` (int32 → int16).
    GateSum {
        /// int32 input.
        a: View,
        /// Requantizers of `a`.
        ra: Vec<Requant>,
        /// Second int32 input and its requantizers.
        b: Option<(View, Vec<Requant>)>,
        /// int16 output.
        dst: View,
    },
    /// `dst = sat16(table(src))` (int16 → int16).
    Pwl {
        /// Index into [`super::Program::tables`].
        table: usize,
        /// int16 input on the table's input grid.
        src: View,
        /// int16 output on the table's output grid.
        dst: View,
    },
    /// `dst = sat16(rdbpot(a · b, 15))`: Q0.15 `a` times `b` (all int16).
    MulQ15 {
        /// Q0.15 factor.
        a: View,
        /// Second factor.
        b: View,
        /// Output, on `b`'s grid.
        dst: View,
    },
    /// `dst = sat16(a + b)` (all int16, one grid).
    AddSat {
        /// First term.
        a: View,
        /// Second term.
        b: View,
        /// Sum.
        dst: View,
    },
    /// `dst = sat16(a + rdbpot(z · (b − a), 15))`: `(1 − z) · a + z · b` for Q0.15 `z`.
    Blend {
        /// Q0.15 weight of `b`.
        z: View,
        /// First value.
        a: View,
        /// Second value.
        b: View,
        /// Result.
        dst: View,
    },
    /// `dst = max(src, 0)` (int16).
    Relu {
        /// Input.
        src: View,
        /// Output.
        dst: View,
    },
    /// `dst = sat16(req(src − zero_point))`: int8 codes onto an int16 grid.
    Widen {
        /// int8 input.
        src: View,
        /// Zero point of `src`.
        zero_point: i32,
        /// Scale ratio from `src`'s grid to `dst`'s.
        req: Requant,
        /// int16 output.
        dst: View,
    },
    /// `dst = sat8(req(a · b) + zero_point)` with int16 `a` and `b`, or
    /// `sat8(req(a) + zero_point)` without `b` (int16 or int32 `a`): a layer's int8
    /// output.
    Narrow {
        /// First factor (int16), or the value (int16 or int32).
        a: View,
        /// Optional second factor (int16).
        b: Option<View>,
        /// Requantizers of the product.
        req: Vec<Requant>,
        /// Output zero point.
        zero_point: i32,
        /// int8 output.
        dst: View,
    },
    /// `dst = req(src)` (int32 → int32 logits, no saturation beyond int32).
    Requant32 {
        /// int32 input.
        src: View,
        /// Requantizers.
        req: Vec<Requant>,
        /// int32 output.
        dst: View,
    },
    /// The LSTM cell update in place:
    /// `c = sat16(rdbpot(f · c, 15) + rdbpot(i · g, 30 − cell_frac_bits))`.
    LstmCell {
        /// Q0.15 input gate.
        i: View,
        /// Q0.15 forget gate.
        f: View,
        /// Q0.15 candidate.
        g: View,
        /// int16 cell state (read and written).
        c: View,
        /// Fractional bits of the cell state.
        cell_frac_bits: u32,
    },
}

impl Op {
    /// The views the op reads.
    pub fn reads(&self) -> Vec<View> {
        match self {
            Op::Lookup { .. } => vec![],
            Op::MatVec { x, .. } => vec![*x],
            Op::GateSum { a, b, .. } => {
                let mut v = vec![*a];
                v.extend(b.as_ref().map(|(b, _)| *b));
                v
            }
            Op::Pwl { src, .. } | Op::Relu { src, .. } | Op::Widen { src, .. } => vec![*src],
            Op::MulQ15 { a, b, .. } | Op::AddSat { a, b, .. } => vec![*a, *b],
            Op::Blend { z, a, b, .. } => vec![*z, *a, *b],
            Op::Narrow { a, b, .. } => {
                let mut v = vec![*a];
                v.extend(*b);
                v
            }
            Op::Requant32 { src, .. } => vec![*src],
            Op::LstmCell { i, f, g, c, .. } => vec![*i, *f, *g, *c],
        }
    }

    /// The view the op writes.
    pub fn writes(&self) -> View {
        match self {
            Op::Lookup { dst, .. }
            | Op::GateSum { dst, .. }
            | Op::Pwl { dst, .. }
            | Op::MulQ15 { dst, .. }
            | Op::AddSat { dst, .. }
            | Op::Blend { dst, .. }
            | Op::Relu { dst, .. }
            | Op::Widen { dst, .. }
            | Op::Narrow { dst, .. }
            | Op::Requant32 { dst, .. } => *dst,
            Op::MatVec { acc, .. } => *acc,
            Op::LstmCell { c, .. } => *c,
        }
    }

    /// Multiply–accumulates of one step (matrix products only).
    pub fn macs(&self, mats: &[Matrix]) -> usize {
        match self {
            Op::MatVec { mat, .. } => mats.get(*mat).map_or(0, |m| m.rows * m.cols),
            _ => 0,
        }
    }
}

/// The cell kind a layer came from (names and reports; semantics are in the ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Token lookup.
    Embedding,
    /// LSTM, gate order i, f, g, o.
    Lstm,
    /// GRU, gate order r, z, n (PyTorch's form).
    Gru,
    /// Elman RNN with tanh.
    RnnTanh,
    /// Elman RNN with ReLU.
    RnnRelu,
    /// Fully connected.
    Linear,
}

impl CellKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CellKind::Embedding => "embedding",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::RnnTanh => "rnn_tanh",
            CellKind::RnnRelu => "rnn_relu",
            CellKind::Linear => "linear",
        }
    }
}

/// One layer's step as ops.
#[derive(Clone, Debug, PartialEq)]
pub struct OpLayer {
    /// Layer name from the graph.
    pub name: String,
    /// What the layer is.
    pub kind: CellKind,
    /// Buffers; the layer input, if any, is the one with [`Role::Input`].
    pub buffers: Vec<Buffer>,
    /// Weight matrices of the [`Op::MatVec`]s.
    pub mats: Vec<Matrix>,
    /// Ops in execution order.
    pub ops: Vec<Op>,
    /// The layer output (int8, or int32 for the model's logits).
    pub output: View,
}

impl OpLayer {
    /// A whole buffer as a view.
    pub fn whole(&self, buf: usize) -> View {
        View {
            buf,
            start: 0,
            len: self.buffers[buf].len,
        }
    }

    /// The input buffer's index.
    pub fn input(&self) -> Option<usize> {
        self.buffers.iter().position(|b| b.role == Role::Input)
    }

    /// Indices of the recurrent state buffers.
    pub fn states(&self) -> impl Iterator<Item = usize> + '_ {
        self.buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| matches!(b.role, Role::State { .. }))
            .map(|(i, _)| i)
    }

    /// Width of the output.
    pub fn output_size(&self) -> usize {
        self.output.len
    }

    /// Bytes of recurrent state.
    pub fn state_bytes(&self) -> usize {
        self.states()
            .map(|b| self.buffers[b].len * self.buffers[b].dtype.bytes())
            .sum()
    }

    /// Bytes of integer parameters: weights, int32 biases and the 5-byte (multiplier,
    /// shift) requantizers of the ops.
    pub fn param_bytes(&self) -> usize {
        let mats: usize = self.mats.iter().map(|m| m.w.len() + 4 * m.bias.len()).sum();
        let reqs: usize = self
            .ops
            .iter()
            .map(|op| match op {
                Op::GateSum { ra, b, .. } => ra.len() + b.as_ref().map_or(0, |(_, r)| r.len()),
                Op::Narrow { req, .. } | Op::Requant32 { req, .. } => req.len(),
                Op::Widen { .. } => 1,
                _ => 0,
            })
            .sum();
        mats + 5 * reqs
    }

    /// Multiply–accumulates of one step.
    pub fn macs(&self) -> usize {
        self.ops.iter().map(|o| o.macs(&self.mats)).sum()
    }

    /// For each op, whether it can run ahead of the recurrence for a whole sequence
    /// chunk: it reads nothing that depends on recurrent state, where a buffer depends
    /// on state when it is state or any earlier op that wrote it read such a buffer.
    /// (The input projections `W_ih · x` of every recurrent cell; nothing of a
    /// stateless layer is excluded.)
    pub fn hoistable(&self) -> Vec<bool> {
        let mut tainted: Vec<bool> = self
            .buffers
            .iter()
            .map(|b| matches!(b.role, Role::State { .. }))
            .collect();
        let mut out = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let dep = op.reads().iter().any(|v| tainted[v.buf]);
            let w = op.writes().buf;
            if dep {
                tainted[w] = true;
            }
            out.push(!dep);
        }
        out
    }

    /// Checks every view against its buffer and every op's element types; the lowering
    /// only builds valid layers, so an error here is a compiler bug.
    pub fn validate(&self) -> Result<(), String> {
        use Dtype::*;
        let ty = |v: &View| self.buffers.get(v.buf).map(|b| b.dtype);
        for (k, op) in self.ops.iter().enumerate() {
            for v in op.reads().iter().chain([&op.writes()]) {
                let b = self
                    .buffers
                    .get(v.buf)
                    .ok_or_else(|| format!("op {k}: buffer {} does not exist", v.buf))?;
                if v.start + v.len > b.len {
                    return Err(format!(
                        "op {k}: view {}..{} is outside buffer \"{}\" of {} elements",
                        v.start,
                        v.start + v.len,
                        b.name,
                        b.len
                    ));
                }
            }
            let d = op.writes();
            let same = |vs: &[View]| vs.iter().all(|v| v.len == d.len);
            let ok = match op {
                Op::Lookup { table, rows, .. } => ty(&d) == Some(I8) && table.len() == rows * d.len,
                Op::MatVec { mat, x, acc } => match self.mats.get(*mat) {
                    Some(m) => {
                        ty(x) == Some(I8)
                            && ty(acc) == Some(I32)
                            && x.len == m.cols
                            && acc.len == m.rows
                            && m.w.len() == m.rows * m.cols
                            && m.bias.len() == m.rows
                    }
                    None => false,
                },
                Op::GateSum { a, ra, b, dst } => {
                    ty(a) == Some(I32)
                        && ty(dst) == Some(I16)
                        && same(&[*a])
                        && (ra.len() == 1 || ra.len() == d.len)
                        && b.as_ref().is_none_or(|(b, rb)| {
                            ty(b) == Some(I32)
                                && same(&[*b])
                                && (rb.len() == 1 || rb.len() == d.len)
                        })
                }
                Op::Pwl { src, .. } | Op::Relu { src, .. } => {
                    ty(src) == Some(I16) && ty(&d) == Some(I16) && same(&[*src])
                }
                Op::MulQ15 { a, b, .. } | Op::AddSat { a, b, .. } => {
                    [ty(a), ty(b), ty(&d)] == [Some(I16); 3] && same(&[*a, *b])
                }
                Op::Blend { z, a, b, .. } => {
                    [ty(z), ty(a), ty(b), ty(&d)] == [Some(I16); 4] && same(&[*z, *a, *b])
                }
                Op::Widen { src, .. } => {
                    ty(src) == Some(I8) && ty(&d) == Some(I16) && same(&[*src])
                }
                Op::Narrow { a, b, req, .. } => {
                    ty(&d) == Some(I8)
                        && same(&[*a])
                        && (req.len() == 1 || req.len() == d.len)
                        && match b {
                            Some(b) => ty(a) == Some(I16) && ty(b) == Some(I16) && same(&[*b]),
                            None => matches!(ty(a), Some(I16 | I32)),
                        }
                }
                Op::Requant32 { src, req, .. } => {
                    ty(src) == Some(I32)
                        && ty(&d) == Some(I32)
                        && same(&[*src])
                        && (req.len() == 1 || req.len() == d.len)
                }
                Op::LstmCell { i, f, g, .. } => {
                    [ty(i), ty(f), ty(g), ty(&d)] == [Some(I16); 4] && same(&[*i, *f, *g])
                }
            };
            if !ok {
                return Err(format!("op {k} ({op:?}) has mismatched types or sizes")
                    .chars()
                    .take(300)
                    .collect());
            }
        }
        Ok(())
    }
}

/// Builds an [`OpLayer`]'s buffers and views.
#[derive(Default)]
pub struct LayerBuilder {
    buffers: Vec<Buffer>,
}

impl LayerBuilder {
    /// Adds a buffer and returns it as a whole view.
    pub fn buffer(&mut self, name: &str, dtype: Dtype, len: usize, role: Role) -> View {
        self.buffers.push(Buffer {
            name: name.to_string(),
            dtype,
            len,
            role,
        });
        View {
            buf: self.buffers.len() - 1,
            start: 0,
            len,
        }
    }

    /// The buffers built.
    pub fn finish(self) -> Vec<Buffer> {
        self.buffers
    }

    /// The buffers every recurrent cell has — input `x` (`input` int8), state `h`
    /// (`hidden` int8, reset to `h_reset`), accumulators `acc_x` and `acc_h` (`rows`
    /// int32) — and the two products that fill the accumulators from matrices 0
    /// (`W_ih`) and 1 (`W_hh`): `([x, h, acc_x, acc_h], ops)`.
    pub fn recurrent(
        &mut self,
        input: usize,
        hidden: usize,
        rows: usize,
        h_reset: i32,
    ) -> ([View; 4], [Op; 2]) {
        let x = self.buffer("x", Dtype::I8, input, Role::Input);
        let h = self.buffer("h", Dtype::I8, hidden, Role::State { reset: h_reset });
        let acc_x = self.buffer("acc_x", Dtype::I32, rows, Role::Temp);
        let acc_h = self.buffer("acc_h", Dtype::I32, rows, Role::Temp);
        let ops = [
            Op::MatVec {
                mat: 0,
                x,
                acc: acc_x,
            },
            Op::MatVec {
                mat: 1,
                x: h,
                acc: acc_h,
            },
        ];
        ([x, h, acc_x, acc_h], ops)
    }
}

impl View {
    /// Elements `start .. start + len` of this view.
    pub fn slice(self, start: usize, len: usize) -> View {
        View {
            buf: self.buf,
            start: self.start + start,
            len,
        }
    }

    /// The `k`-th of `n` equal parts.
    pub fn part(self, k: usize, n: usize) -> View {
        let len = self.len / n;
        self.slice(k * len, len)
    }
}
