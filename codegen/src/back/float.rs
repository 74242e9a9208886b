//! The f32 counterpart of a quantized model (`--precision f32`): the same network with
//! the quantization undone, for speed comparisons of integer and float code on equal
//! terms.
//!
//! [`F32Program`] is built from the quantized **graph** (which keeps the real scales;
//! the lowered integer [`crate::ir::Program`] has folded them into multipliers):
//!
//! - weights `w[r][j] = q[r][j] · s_w[r]` (the int8 code times its row scale, one f32
//!   rounding), exactly the weights the integer model represents;
//! - biases `b[r] = bias_q[r] · s_x · s_w[r]` (computed in f64, rounded to f32); a
//!   GRU keeps `b_hh` apart, on `s_h · s_hh[r]` (`s_h` the layer's output scale),
//!   because `b_hn` sits inside `r ⊙ (W_hn h + b_hn)`;
//! - embedding rows `s_e · (code − z_e)`; out-of-range tokens read zeros (the real value
//!   of the integer model's zero-point row);
//! - real sigmoid, tanh and relu (no PWL tables), hidden and cell states in f32, no
//!   requantization between layers; the output is the real logits.
//!
//! Generated code evaluates sigmoid and tanh with [`tanh_approx`], a rational
//! approximation that compilers vectorize (no libm call in the hot loop); see
//! [`TANH_P`]. [`Reference`] runs the same model in f64 with exact activations; tests
//! hold generated f32 code to it.

use super::{GenError, Target};
use crate::graph::{input_quant_of, Graph, GraphInput, GraphLayer};
use crate::spec::{Cell, Nonlinearity};

/// What one step of the f32 model consumes.
#[derive(Clone, Debug, PartialEq)]
pub enum F32Input {
    /// One token id in `0..vocab_size` (others read a zero row).
    Tokens {
        /// Number of token ids.
        vocab_size: usize,
    },
    /// A vector of real (float) features.
    Features {
        /// Width.
        size: usize,
    },
}

/// One layer of the f32 model.
#[derive(Clone, Debug, PartialEq)]
pub enum F32Layer {
    /// Token id → row of `table` (`[vocab_size, dim]`).
    Embedding {
        /// Layer name.
        name: String,
        /// Rows.
        vocab_size: usize,
        /// Row width.
        dim: usize,
        /// Dequantized rows, row-major.
        table: Vec<f32>,
    },
    /// LSTM layer, gate order i, f, g, o (PyTorch).
    Lstm {
        /// Layer name.
        name: String,
        /// Input width `I`.
        input_size: usize,
        /// Hidden width `H`.
        hidden_size: usize,
        /// `[4H, I]` row-major.
        w_ih: Vec<f32>,
        /// `[4H, H]` row-major.
        w_hh: Vec<f32>,
        /// `b_ih + b_hh`, `[4H]`.
        bias: Vec<f32>,
    },
    /// GRU (gate order r, z, n) or Elman RNN layer (PyTorch semantics, `h₀ = 0`):
    ///
    /// - GRU: `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z` likewise,
    ///   `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`;
    /// - RNN: `h' = act(W_ih x + W_hh h + bias)`, `act` tanh or relu.
    Recurrent {
        /// Layer name.
        name: String,
        /// [`Cell::Gru`] or [`Cell::Rnn`] (LSTMs are [`F32Layer::Lstm`]).
        cell: Cell,
        /// Input width `I`.
        input_size: usize,
        /// Hidden width `H`.
        hidden_size: usize,
        /// `[G·H, I]` row-major (`G` = `cell.gates()`).
        w_ih: Vec<f32>,
        /// `[G·H, H]` row-major.
        w_hh: Vec<f32>,
        /// `[G·H]`: `b_ih` (GRU) or `b_ih + b_hh` (RNN).
        bias: Vec<f32>,
        /// `[3H]` `b_hh` for a GRU; empty for an RNN.
        bias_hh: Vec<f32>,
    },
    /// Fully connected layer.
    Linear {
        /// Layer name.
        name: String,
        /// Input width.
        in_size: usize,
        /// Output width.
        out_size: usize,
        /// `[out, in]` row-major.
        weight: Vec<f32>,
        /// `[out]`.
        bias: Vec<f32>,
    },
}

impl F32Layer {
    /// Layer name from the graph.
    pub fn name(&self) -> &str {
        match self {
            F32Layer::Embedding { name, .. }
            | F32Layer::Lstm { name, .. }
            | F32Layer::Recurrent { name, .. }
            | F32Layer::Linear { name, .. } => name,
        }
    }

    /// Output width.
    pub fn output_size(&self) -> usize {
        match self {
            F32Layer::Embedding { dim, .. } => *dim,
            F32Layer::Lstm { hidden_size, .. } | F32Layer::Recurrent { hidden_size, .. } => {
                *hidden_size
            }
            F32Layer::Linear { out_size, .. } => *out_size,
        }
    }
}

/// The dequantized model.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Program {
    /// Model name (not sanitized).
    pub name: String,
    /// Hash of the graph it was built from.
    pub model_hash: String,
    /// Input of one step.
    pub input: F32Input,
    /// Layers in order.
    pub layers: Vec<F32Layer>,
    /// Width of the output (logits).
    pub output_size: usize,
}

/// An array of a layer with its name and expected length.
type NamedArray<'a> = (&'static str, &'a [f32], usize);

fn layer_error(layer: &str, message: impl Into<String>) -> GenError {
    GenError::Layer {
        layer: layer.to_string(),
        message: message.into(),
    }
}

impl F32Program {
    /// Dequantizes a loaded (hence validated) graph.
    pub fn from_graph(graph: &Graph) -> Result<Self, GenError> {
        let f = &graph.file;
        let input = match &f.input {
            GraphInput::Tokens { vocab_size } => F32Input::Tokens {
                vocab_size: *vocab_size,
            },
            GraphInput::Features { size, .. } => F32Input::Features { size: *size },
        };
        let t = &graph.tensors;
        let mut layers = Vec::with_capacity(f.layers.len());
        for (index, layer) in f.layers.iter().enumerate() {
            let name = layer.name().to_string();
            let err = |p: crate::error::Problem| layer_error(&name, p.to_string());
            let in_scale = || {
                input_quant_of(f, index)
                    .map(|q| q.scale)
                    .ok_or_else(|| layer_error(&name, "its input has no int8 quantization"))
            };
            let rows_deq = |w: &[i8], s: &[f32], cols: usize| -> Vec<f32> {
                w.iter()
                    .enumerate()
                    .map(|(k, &q)| q as f32 * s[k / cols])
                    .collect()
            };
            let bias_deq = |b: &[i32], s: &[f32], sx: f64| -> Vec<f32> {
                b.iter()
                    .zip(s)
                    .map(|(&b, &s)| (b as f64 * sx * s as f64) as f32)
                    .collect()
            };
            layers.push(match layer {
                GraphLayer::Embedding {
                    vocab_size,
                    dim,
                    table,
                    output,
                    ..
                } => {
                    let q = t.i8(table, &name).map_err(err)?;
                    F32Layer::Embedding {
                        name: name.clone(),
                        vocab_size: *vocab_size,
                        dim: *dim,
                        table: q
                            .data
                            .iter()
                            .map(|&c| (output.scale * (c as i32 - output.zero_point) as f64) as f32)
                            .collect(),
                    }
                }
                GraphLayer::Lstm {
                    input_size,
                    hidden_size,
                    w_ih,
                    w_ih_scale,
                    w_hh,
                    w_hh_scale,
                    bias,
                    ..
                } => {
                    let sx = in_scale()?;
                    let s_ih = t.f32(w_ih_scale, &name).map_err(err)?.data;
                    let s_hh = t.f32(w_hh_scale, &name).map_err(err)?.data;
                    F32Layer::Lstm {
                        name: name.clone(),
                        input_size: *input_size,
                        hidden_size: *hidden_size,
                        w_ih: rows_deq(&t.i8(w_ih, &name).map_err(err)?.data, &s_ih, *input_size),
                        w_hh: rows_deq(&t.i8(w_hh, &name).map_err(err)?.data, &s_hh, *hidden_size),
                        bias: bias_deq(&t.i32(bias, &name).map_err(err)?.data, &s_ih, sx),
                    }
                }
                GraphLayer::Gru {
                    input_size,
                    hidden_size,
                    w_ih,
                    w_ih_scale,
                    w_hh,
                    w_hh_scale,
                    bias_ih,
                    bias_hh,
                    output,
                    ..
                } => {
                    let sx = in_scale()?;
                    let s_ih = t.f32(w_ih_scale, &name).map_err(err)?.data;
                    let s_hh = t.f32(w_hh_scale, &name).map_err(err)?.data;
                    F32Layer::Recurrent {
                        name: name.clone(),
                        cell: Cell::Gru,
                        input_size: *input_size,
                        hidden_size: *hidden_size,
                        w_ih: rows_deq(&t.i8(w_ih, &name).map_err(err)?.data, &s_ih, *input_size),
                        w_hh: rows_deq(&t.i8(w_hh, &name).map_err(err)?.data, &s_hh, *hidden_size),
                        bias: bias_deq(&t.i32(bias_ih, &name).map_err(err)?.data, &s_ih, sx),
                        bias_hh: bias_deq(
                            &t.i32(bias_hh, &name).map_err(err)?.data,
                            &s_hh,
                            output.scale,
                        ),
                    }
                }
                GraphLayer::Rnn {
                    input_size,
                    hidden_size,
                    nonlinearity,
                    w_ih,
                    w_ih_scale,
                    w_hh,
                    w_hh_scale,
                    bias,
                    ..
                } => {
                    let sx = in_scale()?;
                    let s_ih = t.f32(w_ih_scale, &name).map_err(err)?.data;
                    let s_hh = t.f32(w_hh_scale, &name).map_err(err)?.data;
                    F32Layer::Recurrent {
                        name: name.clone(),
                        cell: Cell::Rnn(*nonlinearity),
                        input_size: *input_size,
                        hidden_size: *hidden_size,
                        w_ih: rows_deq(&t.i8(w_ih, &name).map_err(err)?.data, &s_ih, *input_size),
                        w_hh: rows_deq(&t.i8(w_hh, &name).map_err(err)?.data, &s_hh, *hidden_size),
                        bias: bias_deq(&t.i32(bias, &name).map_err(err)?.data, &s_ih, sx),
                        bias_hh: Vec::new(),
                    }
                }
                GraphLayer::Linear {
                    in_size,
                    out_size,
                    weight,
                    weight_scale,
                    bias,
                    ..
                } => {
                    let sx = in_scale()?;
                    let s = t.f32(weight_scale, &name).map_err(err)?.data;
                    F32Layer::Linear {
                        name: name.clone(),
                        in_size: *in_size,
                        out_size: *out_size,
                        weight: rows_deq(&t.i8(weight, &name).map_err(err)?.data, &s, *in_size),
                        bias: bias_deq(&t.i32(bias, &name).map_err(err)?.data, &s, sx),
                    }
                }
            });
        }
        let output_size = layers.last().map(F32Layer::output_size).unwrap_or(0);
        let p = F32Program {
            name: f.name.clone(),
            model_hash: graph.hash.clone(),
            input,
            layers,
            output_size,
        };
        p.check()?;
        Ok(p)
    }

    /// Shapes agree and every value is finite (the generated code assumes both).
    pub fn check(&self) -> Result<(), GenError> {
        let mut width = match self.input {
            F32Input::Tokens { .. } => None,
            F32Input::Features { size } => Some(size),
        };
        if self.layers.is_empty() {
            return Err(GenError::Unsupported("the model has no layers".into()));
        }
        for l in &self.layers {
            let name = l.name();
            let (want_in, arrays): (Option<usize>, Vec<NamedArray<'_>>) = match l {
                F32Layer::Embedding {
                    vocab_size,
                    dim,
                    table,
                    ..
                } => (None, vec![("table", table, vocab_size * dim)]),
                F32Layer::Lstm {
                    input_size,
                    hidden_size,
                    w_ih,
                    w_hh,
                    bias,
                    ..
                } => (
                    Some(*input_size),
                    vec![
                        ("w_ih", w_ih, 4 * hidden_size * input_size),
                        ("w_hh", w_hh, 4 * hidden_size * hidden_size),
                        ("bias", bias, 4 * hidden_size),
                    ],
                ),
                F32Layer::Recurrent {
                    cell,
                    input_size,
                    hidden_size,
                    w_ih,
                    w_hh,
                    bias,
                    bias_hh,
                    ..
                } => {
                    let g = match cell {
                        Cell::Gru | Cell::Rnn(_) => cell.gates(),
                        Cell::Lstm => {
                            return Err(layer_error(
                                name,
                                "an LSTM is an F32Layer::Lstm, not a Recurrent layer",
                            ))
                        }
                    };
                    let hh = if *cell == Cell::Gru {
                        g * hidden_size
                    } else {
                        0
                    };
                    (
                        Some(*input_size),
                        vec![
                            ("w_ih", w_ih, g * hidden_size * input_size),
                            ("w_hh", w_hh, g * hidden_size * hidden_size),
                            ("bias", bias, g * hidden_size),
                            ("bias_hh", bias_hh, hh),
                        ],
                    )
                }
                F32Layer::Linear {
                    in_size,
                    out_size,
                    weight,
                    bias,
                    ..
                } => (
                    Some(*in_size),
                    vec![
                        ("weight", weight, in_size * out_size),
                        ("bias", bias, *out_size),
                    ],
                ),
            };
            if let (Some(w), Some(have)) = (want_in, width) {
                if w != have {
                    return Err(layer_error(
                        name,
                        format!("takes width {w} but receives {have}"),
                    ));
                }
            }
            if l.output_size() == 0 || l.output_size() > i32::MAX as usize / 64 {
                return Err(layer_error(
                    name,
                    format!("unsupported width {}", l.output_size()),
                ));
            }
            for (what, a, n) in arrays {
                if a.len() != n {
                    return Err(layer_error(
                        name,
                        format!("{what} has {} values; expected {n}", a.len()),
                    ));
                }
                if let Some(k) = a.iter().position(|v| !v.is_finite()) {
                    return Err(layer_error(
                        name,
                        format!("{what}[{k}] dequantizes to a non-finite value"),
                    ));
                }
            }
            width = Some(l.output_size());
        }
        Ok(())
    }

    /// Number of weights (matrix entries and embedding values), each 4 bytes in f32.
    pub fn weight_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                F32Layer::Embedding { table, .. } => table.len(),
                F32Layer::Lstm { w_ih, w_hh, .. } | F32Layer::Recurrent { w_ih, w_hh, .. } => {
                    w_ih.len() + w_hh.len()
                }
                F32Layer::Linear { weight, .. } => weight.len(),
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------------
// Layout shared by the C and Rust back ends (`c_f32`, `rust_f32`)
// ---------------------------------------------------------------------------------

/// LSTM hidden widths are padded to a multiple of this (every vector width divides it).
pub const HIDDEN_PAD: usize = 16;

/// Rows per packed block of a target (4 vectors of f32); 1 = row-major (scalar).
pub fn block_rows(target: Target) -> usize {
    target.info().f32.block_rows
}

/// A `[rows][cols]` row-major matrix as the kernels of `br` read it: row `pr` of the
/// result is row `map(pr)` of `w` (or zeros for `None`); `out_rows` rows, padded to a
/// multiple of `br`, packed `[block][column][br]` when `br > 1`.
pub fn layout(
    w: &[f32],
    cols: usize,
    out_rows: usize,
    br: usize,
    map: impl Fn(usize) -> Option<usize>,
) -> Vec<f32> {
    let rows_pad = out_rows.div_ceil(br) * br;
    let mut out = vec![0f32; rows_pad * cols];
    for pr in 0..out_rows {
        let Some(r) = map(pr) else { continue };
        for j in 0..cols {
            let v = w[r * cols + j];
            let at = if br == 1 {
                pr * cols + j
            } else {
                ((pr / br) * cols + j) * br + pr % br
            };
            out[at] = v;
        }
    }
    out
}

/// The hidden width `h` padded to a multiple of [`HIDDEN_PAD`] (each gate's stride in
/// the padded rows).
pub fn padded_hidden(h: usize) -> usize {
    h.div_ceil(HIDDEN_PAD) * HIDDEN_PAD
}

/// Padded gate row `pr` (gate-major with stride `hp`) → row of the `[G·H]` original
/// (LSTM, GRU and RNN alike).
pub fn lstm_row(pr: usize, h: usize, hp: usize) -> Option<usize> {
    let (g, k) = (pr / hp, pr % hp);
    (k < h).then_some(g * h + k)
}

/// Whether a layer evaluates tanh or sigmoid (all but relu RNNs, embeddings and linear
/// layers), so the activation helpers are emitted only when used.
pub fn uses_tanh(p: &F32Program) -> bool {
    p.layers.iter().any(|l| match l {
        F32Layer::Lstm { .. } => true,
        F32Layer::Recurrent { cell, .. } => *cell != Cell::Rnn(Nonlinearity::Relu),
        F32Layer::Embedding { .. } | F32Layer::Linear { .. } => false,
    })
}

/// Whether a layer evaluates sigmoid (LSTM and GRU).
pub fn uses_sigmoid(p: &F32Program) -> bool {
    p.layers.iter().any(|l| match l {
        F32Layer::Lstm { .. } => true,
        F32Layer::Recurrent { cell, .. } => *cell == Cell::Gru,
        F32Layer::Embedding { .. } | F32Layer::Linear { .. } => false,
    })
}

/// Bytes of f32 weights the kernels of `target` read (padded and packed, including
/// embedding tables).
pub fn weight_bytes(p: &F32Program, target: Target) -> usize {
    let br = block_rows(target);
    p.layers
        .iter()
        .map(|l| match l {
            F32Layer::Embedding { table, .. } => table.len(),
            F32Layer::Lstm {
                input_size,
                hidden_size,
                ..
            } => {
                let rows = 4 * padded_hidden(*hidden_size);
                rows * (input_size + hidden_size)
            }
            F32Layer::Recurrent {
                cell,
                input_size,
                hidden_size,
                ..
            } => {
                let rows = (cell.gates() * padded_hidden(*hidden_size)).div_ceil(br) * br;
                rows * (input_size + hidden_size)
            }
            F32Layer::Linear {
                in_size, out_size, ..
            } => out_size.div_ceil(br) * br * in_size,
        })
        .sum::<usize>()
        * 4
}

// ---------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------

/// `tanh(x) ≈ x · P(u) / Q(u)` with `u = x² / 81` on `|x| ≤ 9` (inputs are clamped to
/// `[−9, 9]`; `1 − tanh(9) < 3·10^−8`). Coefficients of `P`, lowest degree first, fitted
/// for irnn by an iteratively reweighted least-squares (Lawson) rational fit in f64 and
/// rounded to f32; the fit's own error is 5.3·10^−8. Evaluated in f32 (Horner, one
/// division), the maximum absolute error measured over 4·10^6 points of `[−12, 12]` is
/// 4.2·10^−7 for tanh and 2.4·10^−7 for `sigmoid(x) = 0.5 + 0.5·tanh(x/2)`; the unit
/// test `activation_error` re-measures it on every f32 in `[−16, 16]` step 2^−12.
pub const TANH_P: [f32; 6] = [
    0.999_999_76,
    10.457_633,
    19.105_42,
    4.886_525,
    -0.541_986_5,
    0.062_194_407,
];

/// Coefficients of `Q`, lowest degree first (see [`TANH_P`]).
pub const TANH_Q: [f32; 4] = [1.0, 37.457_55, 155.666_66, 120.603_836];

/// Input clamp of [`tanh_approx`].
pub const TANH_CLAMP: f32 = 9.0;

/// `1 / 81` in f32, the scale of `u`.
pub const TANH_U_SCALE: f32 = 1.0 / 81.0;

/// The activation the generated f32 code uses (same operations, same order).
pub fn tanh_approx(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let u = x * x * TANH_U_SCALE;
    let p = ((((TANH_P[5] * u + TANH_P[4]) * u + TANH_P[3]) * u + TANH_P[2]) * u + TANH_P[1]) * u
        + TANH_P[0];
    let q = ((TANH_Q[3] * u + TANH_Q[2]) * u + TANH_Q[1]) * u + TANH_Q[0];
    x * p / q
}

/// `sigmoid(x) = 0.5 + 0.5 · tanh(x / 2)` with [`tanh_approx`].
pub fn sigmoid_approx(x: f32) -> f32 {
    0.5 + 0.5 * tanh_approx(0.5 * x)
}

// ---------------------------------------------------------------------------------
// f64 reference
// ---------------------------------------------------------------------------------

/// The f32 model run in f64 with exact sigmoid, tanh and relu: what generated f32 code
/// approximates (its weights are the f32 values, widened).
pub struct Reference<'p> {
    p: &'p F32Program,
    h: Vec<Vec<f64>>,
    c: Vec<Vec<f64>>,
    out: Vec<f64>,
}

impl<'p> Reference<'p> {
    /// A runner in the reset state (all states 0).
    pub fn new(p: &'p F32Program) -> Self {
        let mut r = Reference {
            p,
            h: Vec::new(),
            c: Vec::new(),
            out: Vec::new(),
        };
        r.reset();
        r
    }

    /// Resets every state to 0.
    pub fn reset(&mut self) {
        let sizes: Vec<usize> =
            self.p
                .layers
                .iter()
                .map(|l| match l {
                    F32Layer::Lstm { hidden_size, .. }
                    | F32Layer::Recurrent { hidden_size, .. } => *hidden_size,
                    _ => 0,
                })
                .collect();
        self.h = sizes.iter().map(|&n| vec![0.0; n]).collect();
        self.c = sizes.iter().map(|&n| vec![0.0; n]).collect();
    }

    /// One step on a token id (token models).
    pub fn step_token(&mut self, token: usize) -> &[f64] {
        self.step_inner(token, &[])
    }

    /// One step on real features (feature models).
    pub fn step_features(&mut self, x: &[f32]) -> &[f64] {
        self.step_inner(usize::MAX, x)
    }

    fn step_inner(&mut self, token: usize, x: &[f32]) -> &[f64] {
        let mut v: Vec<f64> = x.iter().map(|&a| a as f64).collect();
        let sig = |a: f64| 1.0 / (1.0 + (-a).exp());
        let mv = |w: &[f32], x: &[f64], r: usize| -> f64 {
            let cols = x.len();
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b)
                .sum()
        };
        for (i, l) in self.p.layers.iter().enumerate() {
            v = match l {
                F32Layer::Embedding {
                    vocab_size,
                    dim,
                    table,
                    ..
                } => {
                    if token < *vocab_size {
                        table[token * dim..(token + 1) * dim]
                            .iter()
                            .map(|&a| a as f64)
                            .collect()
                    } else {
                        vec![0.0; *dim]
                    }
                }
                F32Layer::Lstm {
                    hidden_size,
                    w_ih,
                    w_hh,
                    bias,
                    ..
                } => {
                    let n = *hidden_size;
                    let h_old = self.h[i].clone();
                    let pre: Vec<f64> = (0..4 * n)
                        .map(|r| bias[r] as f64 + mv(w_ih, &v, r) + mv(w_hh, &h_old, r))
                        .collect();
                    for k in 0..n {
                        let (ig, fg, gg, og) = (
                            sig(pre[k]),
                            sig(pre[n + k]),
                            pre[2 * n + k].tanh(),
                            sig(pre[3 * n + k]),
                        );
                        self.c[i][k] = fg * self.c[i][k] + ig * gg;
                        self.h[i][k] = og * self.c[i][k].tanh();
                    }
                    self.h[i].clone()
                }
                F32Layer::Recurrent {
                    cell,
                    hidden_size,
                    w_ih,
                    w_hh,
                    bias,
                    bias_hh,
                    ..
                } => {
                    let n = *hidden_size;
                    let h_old = self.h[i].clone();
                    let rows = cell.gates() * n;
                    let px: Vec<f64> = (0..rows)
                        .map(|r| bias[r] as f64 + mv(w_ih, &v, r))
                        .collect();
                    let ph: Vec<f64> = (0..rows).map(|r| mv(w_hh, &h_old, r)).collect();
                    for k in 0..n {
                        self.h[i][k] = match cell {
                            Cell::Gru => {
                                let bh = |r: usize| ph[r] + bias_hh[r] as f64;
                                let rg = sig(px[k] + bh(k));
                                let zg = sig(px[n + k] + bh(n + k));
                                let ng = (px[2 * n + k] + rg * bh(2 * n + k)).tanh();
                                (1.0 - zg) * ng + zg * h_old[k]
                            }
                            Cell::Rnn(Nonlinearity::Tanh) => (px[k] + ph[k]).tanh(),
                            Cell::Rnn(Nonlinearity::Relu) => (px[k] + ph[k]).max(0.0),
                            Cell::Lstm => unreachable!("checked by F32Program::check"),
                        };
                    }
                    self.h[i].clone()
                }
                F32Layer::Linear {
                    out_size,
                    weight,
                    bias,
                    ..
                } => (0..*out_size)
                    .map(|r| bias[r] as f64 + mv(weight, &v, r))
                    .collect(),
            };
        }
        self.out = v;
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_error() {
        let (mut et, mut es) = (0f64, 0f64);
        let mut x = -16.0f32;
        while x <= 16.0 {
            let xd = x as f64;
            et = et.max((tanh_approx(x) as f64 - xd.tanh()).abs());
            es = es.max((sigmoid_approx(x) as f64 - 1.0 / (1.0 + (-xd).exp())).abs());
            x += 1.0 / 4096.0;
        }
        eprintln!("max abs error: tanh {et:.3e}, sigmoid {es:.3e}");
        assert!(et < 5e-7, "tanh error {et}");
        assert!(es < 3e-7, "sigmoid error {es}");
        assert_eq!(tanh_approx(0.0), 0.0);
        assert!(tanh_approx(100.0) <= 1.000_001 && tanh_approx(-100.0) >= -1.000_001);
        assert!(tanh_approx(f32::INFINITY).is_finite());
    }
}
