//! The float reference: the same network as the quantized graph, in `f32`, computed
//! from the float model's weights exactly as PyTorch does (gate order i, f, g, o).
//!
//! It serves as the accuracy baseline for `irnn eval` and as the source of activation
//! statistics for calibration (through [`Observer`]).

use crate::spec::{FloatLayer, FloatModel, InputSpec};

/// Receives the intermediate values of each step, for calibration.
pub trait Observer {
    /// The model input of a feature model (the float features of one step).
    fn input_features(&mut self, _x: &[f32]) {}
    /// Gate pre-activations of LSTM layer `layer` (index into `FloatModel::layers`),
    /// `[4H]` in gate order i, f, g, o.
    fn lstm_gates(&mut self, _layer: usize, _pre: &[f32]) {}
    /// New cell state of LSTM layer `layer`.
    fn lstm_cell(&mut self, _layer: usize, _c: &[f32]) {}
    /// Output of any layer (hidden state for LSTMs).
    fn layer_output(&mut self, _layer: usize, _y: &[f32]) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Per-layer recurrent state.
#[derive(Clone, Debug)]
enum LayerState {
    None,
    Lstm {
        h: Vec<f32>,
        c: Vec<f32>,
        pre: Vec<f32>,
    },
}

/// A stateful float runner for one sequence at a time.
pub struct FloatRunner<'m> {
    model: &'m FloatModel,
    states: Vec<LayerState>,
    buffers: Vec<Vec<f32>>,
    /// The vector the current layer reads (reused across steps).
    prev: Vec<f32>,
}

/// Sigmoid in f32.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn matvec_add(w: &crate::spec::Matrix, x: &[f32], out: &mut [f32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let row = w.row(r);
        let mut acc = 0.0f32;
        for (a, b) in row.iter().zip(x) {
            acc += a * b;
        }
        *o += acc;
    }
}

impl<'m> FloatRunner<'m> {
    /// Creates a runner with zero state.
    pub fn new(model: &'m FloatModel) -> Self {
        let states = model
            .layers
            .iter()
            .map(|l| match l {
                FloatLayer::Lstm { w_hh, .. } => LayerState::Lstm {
                    h: vec![0.0; w_hh.cols],
                    c: vec![0.0; w_hh.cols],
                    pre: vec![0.0; w_hh.rows],
                },
                _ => LayerState::None,
            })
            .collect();
        let buffers = model
            .layers
            .iter()
            .map(|l| vec![0.0; l.output_size()])
            .collect();
        FloatRunner {
            model,
            states,
            buffers,
            prev: Vec::new(),
        }
    }

    /// Resets all recurrent state to zero.
    pub fn reset(&mut self) {
        for s in &mut self.states {
            if let LayerState::Lstm { h, c, .. } = s {
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
                FloatLayer::Lstm {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    ..
                } => {
                    let LayerState::Lstm { h, c, pre } = &mut self.states[index] else {
                        continue;
                    };
                    let hidden = h.len();
                    for r in 0..4 * hidden {
                        pre[r] = b_ih[r] + b_hh[r];
                    }
                    matvec_add(w_ih, &prev, pre);
                    matvec_add(w_hh, h, pre);
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
                    out.copy_from_slice(h);
                }
                FloatLayer::Linear { weight, bias, .. } => {
                    out.copy_from_slice(bias);
                    matvec_add(weight, &prev, out);
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
