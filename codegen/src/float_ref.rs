//! The float reference: the same network as the quantized graph, in `f32`, computed
//! from the float model's weights exactly as PyTorch does (LSTM gate order i, f, g, o;
//! GRU r, z, n with `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))` and
//! `h' = (1 − z) ⊙ n + z ⊙ h`; Elman RNN `h' = act(W_ih x + b_ih + W_hh h + b_hh)`).
//!
//! It serves as the accuracy baseline for `irnn eval` and as the source of activation
//! statistics for calibration (through [`Observer`]).

use crate::spec::{Cell, FloatLayer, FloatModel, InputSpec, Nonlinearity};

/// Receives the intermediate values of each step, for calibration.
pub trait Observer {
    /// The model input of a feature model (the float features of one step).
    fn input_features(&mut self, _x: &[f32]) {}
    /// Gate pre-activations of LSTM layer `layer` (index into `FloatModel::layers`),
    /// `[4H]` in gate order i, f, g, o.
    fn lstm_gates(&mut self, _layer: usize, _pre: &[f32]) {}
    /// New cell state of LSTM layer `layer`.
    fn lstm_cell(&mut self, _layer: usize, _c: &[f32]) {}
    /// Named intermediate values of a GRU or RNN layer (`pre_r`, `pre_z`, `x_n`,
    /// `h_n`, `pre_n` for a GRU: the pre-activations, and `W_in x + b_in` and
    /// `W_hn h + b_hn`; `pre` for an RNN).
    fn cell_values(&mut self, _layer: usize, _what: &'static str, _v: &[f32]) {}
    /// Output of any layer (hidden state for recurrent layers).
    fn layer_output(&mut self, _layer: usize, _y: &[f32]) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Per-layer recurrent state.
#[derive(Clone, Debug)]
enum LayerState {
    None,
    /// `c` is empty for cells without a cell state; `pre` and `hpre` hold the input
    /// and recurrent pre-activations.
    Recurrent {
        h: Vec<f32>,
        c: Vec<f32>,
        pre: Vec<f32>,
        hpre: Vec<f32>,
    },
}

/// A stateful float runner for one sequence at a time.
pub struct FloatRunner<'m> {
    model: &'m FloatModel,
    states: Vec<LayerState>,
    buffers: Vec<Vec<f32>>,
    /// The vector the current layer reads (reused across steps).
    prev: Vec<f32>,
    /// Per layer, its matrices in [`Packed`] form (`W_ih`, `W_hh`; a linear layer's
    /// weight; none for an embedding).
    packed: Vec<Vec<Packed>>,
}

/// Rows per block of [`Packed`].
const ROWS: usize = 8;

/// A matrix's full blocks of [`ROWS`] rows stored column by column (`[block][col][row]`),
/// so that one column's eight weights are adjacent and the eight rows' sums advance
/// together in one vector multiply and add. Each row's sum still runs over the columns
/// in order with one rounding per multiply and per add (Rust does not contract a
/// multiply and an add into a fused multiply-add), so every result is the plain loop's,
/// bit for bit. Rows past the last full block are read from the matrix itself.
#[derive(Clone, Debug)]
struct Packed {
    cols: usize,
    data: Vec<f32>,
}

impl Packed {
    fn new(w: &crate::spec::Matrix) -> Self {
        let blocks = w.rows / ROWS;
        let mut data = Vec::with_capacity(blocks * ROWS * w.cols);
        for b in 0..blocks {
            for c in 0..w.cols {
                data.extend((0..ROWS).map(|k| w.data[(b * ROWS + k) * w.cols + c]));
            }
        }
        Packed { cols: w.cols, data }
    }

    /// `out += W x` (`self` made from `w`).
    fn matvec_add(&self, w: &crate::spec::Matrix, x: &[f32], out: &mut [f32]) {
        let block = ROWS * self.cols;
        let done = (self.data.len() / block.max(1)) * ROWS;
        let done = done.min(out.len());
        for (o, blk) in out[..done]
            .chunks_exact_mut(ROWS)
            .zip(self.data.chunks_exact(block.max(1)))
        {
            let mut acc = [0.0f32; ROWS];
            for (col, &xc) in blk.chunks_exact(ROWS).zip(x) {
                for k in 0..ROWS {
                    acc[k] += col[k] * xc;
                }
            }
            for (o, a) in o.iter_mut().zip(acc) {
                *o += a;
            }
        }
        for (r, o) in out.iter_mut().enumerate().skip(done) {
            let mut acc = 0.0f32;
            for (a, b) in w.row(r).iter().zip(x) {
                acc += a * b;
            }
            *o += acc;
        }
    }
}

/// Sigmoid in f32.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl<'m> FloatRunner<'m> {
    /// Creates a runner with zero state.
    pub fn new(model: &'m FloatModel) -> Self {
        let states = model
            .layers
            .iter()
            .map(|l| match l {
                FloatLayer::Recurrent { w_hh, cell, .. } => LayerState::Recurrent {
                    h: vec![0.0; w_hh.cols],
                    c: vec![0.0; if *cell == Cell::Lstm { w_hh.cols } else { 0 }],
                    pre: vec![0.0; w_hh.rows],
                    hpre: vec![0.0; w_hh.rows],
                },
                _ => LayerState::None,
            })
            .collect();
        let buffers = model
            .layers
            .iter()
            .map(|l| vec![0.0; l.output_size()])
            .collect();
        let packed = model
            .layers
            .iter()
            .map(|l| match l {
                FloatLayer::Embedding { .. } => Vec::new(),
                FloatLayer::Recurrent { w_ih, w_hh, .. } => {
                    vec![Packed::new(w_ih), Packed::new(w_hh)]
                }
                FloatLayer::Linear { weight, .. } => vec![Packed::new(weight)],
            })
            .collect();
        FloatRunner {
            model,
            states,
            buffers,
            prev: Vec::new(),
            packed,
        }
    }

    /// Resets all recurrent state to zero.
    pub fn reset(&mut self) {
        for s in &mut self.states {
            if let LayerState::Recurrent { h, c, .. } = s {
                h.iter_mut().for_each(|v| *v = 0.0);
                c.iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }

    /// Runs one step on a token id (token models). Out-of-range ids read a zero vector.
    pub fn step_token(&mut self, token: usize, obs: &mut dyn Observer) -> &[f32] {
        self.step_inner(Input::Token(token), obs)
    }

    /// Runs one step on a float feature vector (feature models).
    pub fn step_features(&mut self, x: &[f32], obs: &mut dyn Observer) -> &[f32] {
        obs.input_features(x);
        self.step_inner(Input::Features(x), obs)
    }

    fn step_inner(&mut self, input: Input<'_>, obs: &mut dyn Observer) -> &[f32] {
        let model = self.model;
        let mut prev = std::mem::take(&mut self.prev);
        prev.clear();
        if let Input::Features(x) = input {
            prev.extend_from_slice(x);
        }
        for (index, layer) in model.layers.iter().enumerate() {
            let out = &mut self.buffers[index];
            let packed = &self.packed[index];
            match layer {
                FloatLayer::Embedding { weight, .. } => {
                    let token = match input {
                        Input::Token(t) => t,
                        Input::Features(_) => usize::MAX,
                    };
                    if token < weight.rows {
                        out.copy_from_slice(weight.row(token));
                    } else {
                        out.iter_mut().for_each(|v| *v = 0.0);
                    }
                }
                FloatLayer::Recurrent {
                    cell,
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    ..
                } => {
                    let LayerState::Recurrent { h, c, pre, hpre } = &mut self.states[index] else {
                        continue;
                    };
                    let hidden = h.len();
                    match cell {
                        Cell::Lstm => {
                            for r in 0..4 * hidden {
                                pre[r] = b_ih[r] + b_hh[r];
                            }
                            packed[0].matvec_add(w_ih, &prev, pre);
                            packed[1].matvec_add(w_hh, h, pre);
                            obs.lstm_gates(index, pre);
                            for k in 0..hidden {
                                let i = sigmoid(pre[k]);
                                let f = sigmoid(pre[hidden + k]);
                                let g = pre[2 * hidden + k].tanh();
                                let o = sigmoid(pre[3 * hidden + k]);
                                c[k] = f * c[k] + i * g;
                                h[k] = o * c[k].tanh();
                            }
                            obs.lstm_cell(index, c);
                        }
                        Cell::Gru => {
                            pre.copy_from_slice(b_ih);
                            hpre.copy_from_slice(b_hh);
                            packed[0].matvec_add(w_ih, &prev, pre);
                            packed[1].matvec_add(w_hh, h, hpre);
                            let (hd, h2) = (hidden, 2 * hidden);
                            for r in 0..h2 {
                                pre[r] += hpre[r];
                            }
                            obs.cell_values(index, "pre_r", &pre[..hd]);
                            obs.cell_values(index, "pre_z", &pre[hd..h2]);
                            obs.cell_values(index, "x_n", &pre[h2..]);
                            obs.cell_values(index, "h_n", &hpre[h2..]);
                            for k in 0..hidden {
                                let r = sigmoid(pre[k]);
                                let z = sigmoid(pre[hd + k]);
                                // The candidate's pre-activation goes back into `pre`
                                // (x_n was observed above) for the observer.
                                pre[h2 + k] += r * hpre[h2 + k];
                                let n = pre[h2 + k].tanh();
                                h[k] = (1.0 - z) * n + z * h[k];
                            }
                            obs.cell_values(index, "pre_n", &pre[h2..]);
                        }
                        Cell::Rnn(act) => {
                            for r in 0..hidden {
                                pre[r] = b_ih[r] + b_hh[r];
                            }
                            packed[0].matvec_add(w_ih, &prev, pre);
                            packed[1].matvec_add(w_hh, h, pre);
                            obs.cell_values(index, "pre", pre);
                            for k in 0..hidden {
                                h[k] = match act {
                                    Nonlinearity::Tanh => pre[k].tanh(),
                                    Nonlinearity::Relu => pre[k].max(0.0),
                                };
                            }
                        }
                    }
                    out.copy_from_slice(h);
                }
                FloatLayer::Linear { weight, bias, .. } => {
                    out.copy_from_slice(bias);
                    packed[0].matvec_add(weight, &prev, out);
                }
            }
            obs.layer_output(index, out);
            prev.clear();
            prev.extend_from_slice(out);
        }
        self.prev = prev;
        match self.buffers.last() {
            Some(b) => b,
            None => &[],
        }
    }

    /// The model's input kind.
    pub fn input(&self) -> &InputSpec {
        &self.model.input
    }
}

#[derive(Clone, Copy)]
enum Input<'a> {
    Token(usize),
    Features(&'a [f32]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Matrix;

    /// The plain loop `Packed::matvec_add` must equal bit for bit.
    fn plain(w: &Matrix, x: &[f32], out: &mut [f32]) {
        for (r, o) in out.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for (a, b) in w.row(r).iter().zip(x) {
                acc += a * b;
            }
            *o += acc;
        }
    }

    #[test]
    fn packed_matvec_add_equals_the_plain_loop_bit_for_bit() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Values over many magnitudes, so that rounding differs with the order.
            ((seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * 10f32.powi((seed % 7) as i32 - 3)
        };
        for rows in [1, 7, 8, 9, 16, 23, 64] {
            for cols in [1, 3, 8, 31, 100] {
                let w = Matrix {
                    rows,
                    cols,
                    data: (0..rows * cols).map(|_| next()).collect(),
                };
                let x: Vec<f32> = (0..cols).map(|_| next()).collect();
                let start: Vec<f32> = (0..rows).map(|_| next()).collect();
                let (mut a, mut b) = (start.clone(), start);
                Packed::new(&w).matvec_add(&w, &x, &mut a);
                plain(&w, &x, &mut b);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{rows} x {cols}");
            }
        }
    }
}
