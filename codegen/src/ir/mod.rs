//! The integer IR: a quantized graph after lowering, with every scale folded into
//! multiplier/shift pairs, every zero point folded into a bias and every activation a
//! PWL table. The reference interpreter runs it; every back end writes it out.
//!
//! Nothing in a [`Program`] is floating point except informational fields (named
//! `*_info`), which back ends may print in comments or `#define`s but never compute
//! with.

pub mod ops;
pub mod ranges;

use irnn_runtime::{saturate_i8, Pwl, Requant, Symmetry};
use ops::{CellKind, Dtype, LayerBuilder, Matrix, Op, OpLayer, Role};
use serde::{Deserialize, Serialize};

/// A whole lowered model.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The model name as written in the graph (not sanitized).
    pub name: String,
    /// Hex SHA-256 of the graph JSON and its tensor file, for generated headers.
    pub model_hash: String,
    /// What one step consumes.
    pub input: InputIr,
    /// Layers in execution order; each consumes the previous one's output.
    pub layers: Vec<LayerIr>,
    /// PWL tables, referenced by index from the layers.
    pub tables: Vec<PwlTable>,
    /// What one step produces.
    pub output: OutputIr,
}

/// The model input of one step.
#[derive(Clone, Debug, PartialEq)]
pub enum InputIr {
    /// One token id in `0..vocab_size`; out-of-range ids read a row of zero points.
    Tokens {
        /// Number of token ids.
        vocab_size: usize,
    },
    /// An int8 feature vector quantized with `scale_info` and `zero_point`.
    Features {
        /// Width of the vector.
        size: usize,
        /// Zero point of the int8 features.
        zero_point: i32,
        /// Real value of one step of the int8 grid (informational).
        scale_info: f64,
    },
}

/// The model output of one step: `size` int32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputIr {
    /// Number of output values.
    pub size: usize,
    /// Real value of one output code (informational; used to dequantize in tools).
    pub scale_info: f64,
    /// Zero point of the output (0 for int32 logits).
    pub zero_point: i32,
}

/// One lowered layer.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerIr {
    /// Token id → int8 vector lookup.
    Embedding(EmbeddingIr),
    /// Fully connected layer.
    Linear(LinearIr),
    /// A recurrent cell (LSTM, GRU, Elman RNN) given by its ops: the interpreter runs
    /// them; the back ends write them op by op, or a fused step where the plan
    /// recognizes one (`back::plan`).
    Cell(OpLayer),
}

impl From<LstmIr> for LayerIr {
    fn from(l: LstmIr) -> Self {
        LayerIr::Cell(l.ops())
    }
}

impl Program {
    /// Indices of the PWL tables any layer's ops use, ascending.
    pub fn used_tables(&self) -> std::collections::BTreeSet<usize> {
        let mut used = std::collections::BTreeSet::new();
        for l in &self.layers {
            if let LayerIr::Cell(c) = l {
                used.extend(c.ops.iter().filter_map(|op| match op {
                    Op::Pwl { table, .. } => Some(*table),
                    _ => None,
                }));
            }
        }
        used
    }
}

impl LayerIr {
    /// The layer's name from the graph.
    pub fn name(&self) -> &str {
        match self {
            LayerIr::Embedding(l) => &l.name,
            LayerIr::Linear(l) => &l.name,
            LayerIr::Cell(l) => &l.name,
        }
    }

    /// Width of the layer's output vector.
    pub fn output_size(&self) -> usize {
        match self {
            LayerIr::Embedding(l) => l.dim,
            LayerIr::Linear(l) => l.out_size,
            LayerIr::Cell(l) => l.output_size(),
        }
    }

    /// Multiply–accumulates of one step (embedding lookups are free).
    pub fn macs(&self) -> usize {
        match self {
            LayerIr::Embedding(_) => 0,
            LayerIr::Linear(l) => l.out_size * l.in_size,
            LayerIr::Cell(l) => l.macs(),
        }
    }

    /// `(rows, cols)` of every weight matrix the matrix kernels read.
    pub fn matrices(&self) -> Vec<(usize, usize)> {
        match self {
            LayerIr::Embedding(_) => vec![],
            LayerIr::Linear(l) => vec![(l.out_size, l.in_size)],
            LayerIr::Cell(l) => l.mats.iter().map(|m| (m.rows, m.cols)).collect(),
        }
    }

    /// A short shape such as `lstm 64->256` or `gru 40->48`.
    pub fn summary(&self) -> String {
        match self {
            LayerIr::Embedding(e) => format!("embedding {}x{}", e.vocab_size, e.dim),
            LayerIr::Linear(l) => format!("linear {}->{}", l.in_size, l.out_size),
            LayerIr::Cell(l) => format!(
                "{} {}->{}",
                l.kind.as_str(),
                l.input().map_or(0, |b| l.buffers[b].len),
                l.output_size()
            ),
        }
    }

    /// The layer's step as ops (see [`ops`]): the one definition of what the layer
    /// computes, run by the interpreter.
    pub fn ops(&self) -> OpLayer {
        match self {
            LayerIr::Embedding(e) => {
                let mut b = LayerBuilder::default();
                let out = b.buffer("out", Dtype::I8, e.dim, Role::Temp);
                OpLayer {
                    name: e.name.clone(),
                    kind: CellKind::Embedding,
                    buffers: b.finish(),
                    mats: vec![],
                    ops: vec![Op::Lookup {
                        table: e.table.clone(),
                        rows: e.vocab_size,
                        zero_point: e.zero_point,
                        dst: out,
                    }],
                    output: out,
                }
            }
            LayerIr::Linear(l) => {
                let mut b = LayerBuilder::default();
                let x = b.buffer("x", Dtype::I8, l.in_size, Role::Input);
                let acc = b.buffer("acc", Dtype::I32, l.out_size, Role::Temp);
                let (dtype, zp) = match l.output {
                    LinearOutput::I32 => (Dtype::I32, None),
                    LinearOutput::I8 { zero_point } => (Dtype::I8, Some(zero_point)),
                };
                let y = b.buffer("y", dtype, l.out_size, Role::Temp);
                let out = match zp {
                    Some(zero_point) => Op::Narrow {
                        a: acc,
                        b: None,
                        req: l.req.clone(),
                        zero_point,
                        dst: y,
                    },
                    None => Op::Requant32 {
                        src: acc,
                        req: l.req.clone(),
                        dst: y,
                    },
                };
                OpLayer {
                    name: l.name.clone(),
                    kind: CellKind::Linear,
                    buffers: b.finish(),
                    mats: vec![Matrix {
                        name: "weight".into(),
                        rows: l.out_size,
                        cols: l.in_size,
                        w: l.weight.clone(),
                        bias: l.bias.clone(),
                    }],
                    ops: vec![Op::MatVec { mat: 0, x, acc }, out],
                    output: y,
                }
            }
            LayerIr::Cell(l) => l.clone(),
        }
    }
}

impl LstmIr {
    /// The LSTM step as ops: both matrix products, the gate pre-activations, one PWL
    /// per gate, the cell update, tanh of the cell and the int8 output `o · tanh c`.
    /// [`LstmIr::from_ops`] is its inverse.
    pub fn ops(&self) -> OpLayer {
        let (i_sz, h) = (self.input_size, self.hidden_size);
        let mut b = LayerBuilder::default();
        let reset = saturate_i8(self.h_zero_point) as i32;
        let ([_, hs, acc_x, acc_h], products) = b.recurrent(i_sz, h, 4 * h, reset);
        let c = b.buffer("c", Dtype::I16, h, Role::State { reset: 0 });
        let pre = b.buffer("pre", Dtype::I16, 4 * h, Role::Temp);
        let gates = b.buffer("gates", Dtype::I16, 4 * h, Role::Temp);
        let tc = b.buffer("tanh_c", Dtype::I16, h, Role::Temp);
        let mut ops = products.to_vec();
        ops.extend([Op::GateSum {
            a: acc_x,
            ra: self.req_x.clone(),
            b: Some((acc_h, self.req_h.clone())),
            dst: pre,
        }]);
        for g in 0..4 {
            ops.push(Op::Pwl {
                table: self.gate_tables[g],
                src: pre.part(g, 4),
                dst: gates.part(g, 4),
            });
        }
        ops.extend([
            Op::LstmCell {
                i: gates.part(0, 4),
                f: gates.part(1, 4),
                g: gates.part(2, 4),
                c,
                cell_frac_bits: self.cell_frac_bits,
            },
            Op::Pwl {
                table: self.cell_table,
                src: c,
                dst: tc,
            },
            Op::Narrow {
                a: gates.part(3, 4),
                b: Some(tc),
                req: vec![self.req_out],
                zero_point: self.h_zero_point,
                dst: hs,
            },
        ]);
        OpLayer {
            name: self.name.clone(),
            kind: CellKind::Lstm,
            buffers: b.finish(),
            mats: vec![
                Matrix {
                    name: "w_ih".into(),
                    rows: 4 * h,
                    cols: i_sz,
                    w: self.w_ih.clone(),
                    bias: self.bias_x.clone(),
                },
                Matrix {
                    name: "w_hh".into(),
                    rows: 4 * h,
                    cols: h,
                    w: self.w_hh.clone(),
                    bias: self.bias_h.clone(),
                },
            ],
            ops,
            output: hs,
        }
    }

    /// The LSTM whose step is exactly `layer` ([`LstmIr::ops`] of the result equals
    /// `layer`), or `None`: the pattern the fused LSTM emitters implement, read back
    /// from the ops. `tables` are the program's (the gates' input grids; every table
    /// the layer uses must be there).
    pub fn from_ops(layer: &OpLayer, tables: &[PwlTable]) -> Option<LstmIr> {
        let [mx, mh] = &layer.mats[..] else {
            return None;
        };
        let (req_x, req_h) = layer.ops.iter().find_map(|op| match op {
            Op::GateSum {
                ra,
                b: Some((_, rb)),
                ..
            } => Some((ra.clone(), rb.clone())),
            _ => None,
        })?;
        let pwl: Vec<usize> = layer
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Pwl { table, .. } => Some(*table),
                _ => None,
            })
            .collect();
        let &[ti, tf, tg, to, tc] = &pwl[..] else {
            return None;
        };
        let cell_frac_bits = layer.ops.iter().find_map(|op| match op {
            Op::LstmCell { cell_frac_bits, .. } => Some(*cell_frac_bits),
            _ => None,
        })?;
        let (req_out, h_zero_point) = layer.ops.iter().find_map(|op| match op {
            Op::Narrow {
                req, zero_point, ..
            } if req.len() == 1 => Some((req[0], *zero_point)),
            _ => None,
        })?;
        let gate_tables = [ti, tf, tg, to];
        let mut gate_frac_bits = [0; 4];
        for (bits, t) in gate_frac_bits.iter_mut().zip(gate_tables) {
            *bits = tables.get(t)?.input_frac_bits;
        }
        tables.get(tc)?;
        let l = LstmIr {
            name: layer.name.clone(),
            input_size: mx.cols,
            hidden_size: mh.cols,
            w_ih: mx.w.clone(),
            w_hh: mh.w.clone(),
            bias_x: mx.bias.clone(),
            bias_h: mh.bias.clone(),
            req_x,
            req_h,
            gate_tables,
            gate_frac_bits,
            cell_table: tc,
            cell_frac_bits,
            req_out,
            h_zero_point,
        };
        (mh.rows == 4 * mh.cols && l.ops() == *layer).then_some(l)
    }
}

/// Embedding lookup producing int8 vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingIr {
    /// Layer name.
    pub name: String,
    /// Number of rows.
    pub vocab_size: usize,
    /// Row width.
    pub dim: usize,
    /// `[vocab_size, dim]` row-major.
    pub table: Vec<i8>,
    /// Zero point of the output (written for out-of-range tokens).
    pub zero_point: i32,
}

/// The parameters of one integer LSTM layer, as the lowering builds them and the fused
/// LSTM emitters read them: [`LstmIr::ops`] is the layer ([`LayerIr::Cell`]) and its
/// semantics (also `irnn_runtime::kernels::lstm_step`).
#[derive(Clone, Debug, PartialEq)]
pub struct LstmIr {
    /// Layer name.
    pub name: String,
    /// Input width `I`.
    pub input_size: usize,
    /// Hidden width `H`.
    pub hidden_size: usize,
    /// `[4H, I]` row-major, gate order i, f, g, o.
    pub w_ih: Vec<i8>,
    /// `[4H, H]` row-major.
    pub w_hh: Vec<i8>,
    /// Input-side bias with the float bias and the input zero point folded in, `[4H]`.
    pub bias_x: Vec<i32>,
    /// Recurrent-side bias: the folded hidden zero point, `[4H]`.
    pub bias_h: Vec<i32>,
    /// Input accumulator → gate grid, `[4H]`.
    pub req_x: Vec<Requant>,
    /// Recurrent accumulator → gate grid, `[4H]`.
    pub req_h: Vec<Requant>,
    /// Table index per gate (i, f, g, o).
    pub gate_tables: [usize; 4],
    /// Fractional bits of each gate's int16 pre-activation.
    pub gate_frac_bits: [u32; 4],
    /// Table index of tanh on the cell grid.
    pub cell_table: usize,
    /// Fractional bits of the int16 cell state.
    pub cell_frac_bits: u32,
    /// Q0.30 (o · tanh c) → hidden int8 grid.
    pub req_out: Requant,
    /// Zero point of the hidden state (and of the layer output).
    pub h_zero_point: i32,
}

/// A fully connected layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearIr {
    /// Layer name.
    pub name: String,
    /// Input width.
    pub in_size: usize,
    /// Output width.
    pub out_size: usize,
    /// `[out, in]` row-major.
    pub weight: Vec<i8>,
    /// Bias with the input zero point folded in, `[out]`.
    pub bias: Vec<i32>,
    /// Accumulator → output grid, `[out]`.
    pub req: Vec<Requant>,
    /// Output type.
    pub output: LinearOutput,
}

/// What a linear layer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearOutput {
    /// int32 values: `req(acc)`, no saturation beyond `i32`.
    I32,
    /// int8 values: `sat8(req(acc) + zero_point)`.
    I8 {
        /// Output zero point.
        zero_point: i32,
    },
}

/// Symmetry of a PWL table, in serializable form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableSymmetry {
    /// The table covers the whole input domain.
    None,
    /// `f(-x) = -f(x)`.
    Odd,
    /// `f(-x) = total - f(x)`.
    Complement,
}

/// The function a PWL table approximates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `exp(x)` for `x <= 0` (softmax after max subtraction).
    Exp,
}

impl Activation {
    /// The real function, in f64.
    pub fn eval_f64(self, x: f64) -> f64 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Exp => x.exp(),
        }
    }

    /// Lower-case name as used in file formats.
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Exp => "exp",
        }
    }
}

/// An owned, fitted PWL table (the integer data of `irnn_runtime::Pwl`) with the grid
/// it was fitted on. This is also the serialized form in `.irnn.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PwlTable {
    /// The approximated function.
    pub function: Activation,
    /// Fractional bits of the int16 input grid (x = code · 2^-input_frac_bits).
    pub input_frac_bits: u32,
    /// Fractional bits of the output grid (y = code · 2^-output_frac_bits).
    pub output_frac_bits: u32,
    /// Symmetry used to extend the table to negative inputs.
    pub symmetry: TableSymmetry,
    /// For [`TableSymmetry::Complement`]: output code of f(x) + f(-x).
    #[serde(default)]
    pub total: i32,
    /// First input code of each piece.
    pub starts: Vec<i32>,
    /// Slopes, scaled by 2^frac_bits.
    pub slopes: Vec<i32>,
    /// Offsets at piece starts, scaled by 2^frac_bits, rounding constant included.
    pub offsets: Vec<i32>,
    /// Fractional bits of slopes and offsets.
    pub frac_bits: u32,
    /// Smallest output code.
    pub out_min: i32,
    /// Largest output code.
    pub out_max: i32,
}

impl PwlTable {
    /// Borrows the table as the runtime evaluator.
    pub fn as_pwl(&self) -> Pwl<'_> {
        Pwl {
            symmetry: match self.symmetry {
                TableSymmetry::None => Symmetry::None,
                TableSymmetry::Odd => Symmetry::Odd,
                TableSymmetry::Complement => Symmetry::Complement { total: self.total },
            },
            starts: &self.starts,
            slopes: &self.slopes,
            offsets: &self.offsets,
            frac_bits: self.frac_bits,
            out_min: self.out_min,
            out_max: self.out_max,
        }
    }

    /// Number of pieces.
    pub fn pieces(&self) -> usize {
        self.starts.len()
    }

    /// A short name such as `sigmoid_q3_12` (function and input grid).
    pub fn short_name(&self) -> String {
        format!(
            "{}_q{}_{}",
            self.function.as_str(),
            15u32.saturating_sub(self.input_frac_bits),
            self.input_frac_bits
        )
    }
}
