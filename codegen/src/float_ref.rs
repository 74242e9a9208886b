//! The float reference: the same network as the quantized graph, in `f32`, computed
//! from the float model's weights exactly as PyTorch does (LSTM gate order i, f, g, o;
//! GRU r, z, n with `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))` and
//! `h' = (1 − z) ⊙ n + z ⊙ h`; Elman RNN `h' = act(W_ih x + b_ih + W_hh h + b_hh)`).
//!
//! It serves as the accuracy baseline for `irnn eval` and as the source of activation
//! statistics for calibration (through [`Observer`]).

use crate::spec::{Cell, FloatLayer, FloatModel, InputSpec, Matrix, Nonlinearity};

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
    fn new(w: &Matrix) -> Self {
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
    fn matvec_add(&self, w: &Matrix, x: &[f32], out: &mut [f32]) {
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

/// An embedding layer's output: row `token` of `weight`, zeros for a token out of range
/// (or none, on a features model).
fn embed(weight: &Matrix, token: usize, out: &mut [f32]) {
    if token < weight.rows {
        out.copy_from_slice(weight.row(token));
    } else {
        out.iter_mut().for_each(|v| *v = 0.0);
    }
}

/// The LSTM cell update of one sequence from its gate pre-activations `pre` (`[4H]`,
/// gates i, f, g, o): `c ← σ(f) c + σ(i) tanh(g)`, `h ← σ(o) tanh(c)`. Shared by
/// [`FloatRunner`] and [`FloatBatch`], so that their floats are the same.
fn lstm_update(pre: &[f32], c: &mut [f32], h: &mut [f32]) {
    let hidden = h.len();
    for k in 0..hidden {
        let i = sigmoid(pre[k]);
        let f = sigmoid(pre[hidden + k]);
        let g = pre[2 * hidden + k].tanh();
        let o = sigmoid(pre[3 * hidden + k]);
        c[k] = f * c[k] + i * g;
        h[k] = o * c[k].tanh();
    }
}

/// A GRU's r and z pre-activations: the recurrent sums `hpre` added into `pre` (`[3H]`,
/// gates r, z, n; the n rows stay apart).
fn gru_gate_sums(pre: &mut [f32], hpre: &[f32], hidden: usize) {
    for r in 0..2 * hidden {
        pre[r] += hpre[r];
    }
}

/// The GRU update of one sequence after [`gru_gate_sums`]: `n = tanh(x_n + σ(r) h_n)`,
/// whose pre-activation goes back into `pre`'s n rows (for the observer), and
/// `h ← (1 − σ(z)) n + σ(z) h`.
fn gru_update(pre: &mut [f32], hpre: &[f32], h: &mut [f32]) {
    let hidden = h.len();
    let h2 = 2 * hidden;
    for k in 0..hidden {
        let r = sigmoid(pre[k]);
        let z = sigmoid(pre[hidden + k]);
        pre[h2 + k] += r * hpre[h2 + k];
        let n = pre[h2 + k].tanh();
        h[k] = (1.0 - z) * n + z * h[k];
    }
}

/// The Elman RNN update of one sequence: `h ← act(pre)`.
fn rnn_update(act: Nonlinearity, pre: &[f32], h: &mut [f32]) {
    for (h, &p) in h.iter_mut().zip(pre) {
        *h = match act {
            Nonlinearity::Tanh => p.tanh(),
            Nonlinearity::Relu => p.max(0.0),
        };
    }
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
                    embed(weight, token, out);
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
                            lstm_update(pre, c, h);
                            obs.lstm_cell(index, c);
                        }
                        Cell::Gru => {
                            pre.copy_from_slice(b_ih);
                            hpre.copy_from_slice(b_hh);
                            packed[0].matvec_add(w_ih, &prev, pre);
                            packed[1].matvec_add(w_hh, h, hpre);
                            let (hd, h2) = (hidden, 2 * hidden);
                            gru_gate_sums(pre, hpre, hidden);
                            obs.cell_values(index, "pre_r", &pre[..hd]);
                            obs.cell_values(index, "pre_z", &pre[hd..h2]);
                            obs.cell_values(index, "x_n", &pre[h2..]);
                            obs.cell_values(index, "h_n", &hpre[h2..]);
                            gru_update(pre, hpre, h);
                            obs.cell_values(index, "pre_n", &pre[h2..]);
                        }
                        Cell::Rnn(act) => {
                            for r in 0..hidden {
                                pre[r] = b_ih[r] + b_hh[r];
                            }
                            packed[0].matvec_add(w_ih, &prev, pre);
                            packed[1].matvec_add(w_hh, h, pre);
                            obs.cell_values(index, "pre", pre);
                            rnn_update(*act, pre, h);
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

/// Most sequences a [`FloatBatch`] steps in lock step.
pub const BATCH_LANES: usize = 8;

/// Rows per block of [`Tiled`] (two 16-float vectors).
const TILE_ROWS: usize = 32;

#[cfg(target_arch = "x86_64")]
mod x86;

/// The vector unit [`Tiled::matvec_add_lanes`] runs on, when the CPU has one.
#[cfg(target_arch = "x86_64")]
type Simd = x86::Avx512;
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy)]
enum Simd {}

fn detect_simd() -> Option<Simd> {
    #[cfg(target_arch = "x86_64")]
    return x86::Avx512::detect();
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// A matrix's full blocks of [`TILE_ROWS`] rows stored column by column, for the
/// products of several sequences at once ([`Tiled::matvec_add_lanes`]). Rows past the
/// last full block are read from the matrix itself.
#[derive(Clone, Debug)]
struct Tiled {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Tiled {
    fn new(w: &Matrix) -> Self {
        let blocks = w.rows / TILE_ROWS;
        let mut data = Vec::with_capacity(blocks * TILE_ROWS * w.cols);
        for b in 0..blocks {
            for c in 0..w.cols {
                data.extend((0..TILE_ROWS).map(|k| w.data[(b * TILE_ROWS + k) * w.cols + c]));
            }
        }
        Tiled {
            rows: w.rows,
            cols: w.cols,
            data,
        }
    }

    /// For each of the `L` lanes, `out[l] += W x[l]`, where `xt` holds the lanes' input
    /// vectors transposed (`xt[c · L + l]` is column `c` of lane `l`) and `out` the
    /// lanes' outputs one after another (`rows` each). Every row's sum of every lane
    /// starts at 0, runs over the columns in order with one rounding per multiply and
    /// per add, and is then added to `out`: exactly [`Packed::matvec_add`] and the plain
    /// loop, bit for bit, while each weight is read once for the `L` lanes.
    #[inline(always)]
    fn matvec_add_lanes<const L: usize>(
        &self,
        simd: Option<Simd>,
        w: &Matrix,
        xt: &[f32],
        out: &mut [f32],
    ) {
        let (rows, cols) = (self.rows, self.cols);
        debug_assert!(xt.len() == cols * L && out.len() == rows * L);
        let block = TILE_ROWS * cols;
        let mut done = 0;
        if block > 0 {
            for (b, blk) in self.data.chunks_exact(block).enumerate() {
                let mut acc = [[0.0f32; TILE_ROWS]; L];
                match simd {
                    #[cfg(target_arch = "x86_64")]
                    Some(k) => k.block::<L>(blk, xt, &mut acc),
                    _ => {
                        for (wc, xc) in blk.chunks_exact(TILE_ROWS).zip(xt.chunks_exact(L)) {
                            for (a, &xv) in acc.iter_mut().zip(xc) {
                                for (a, &w) in a.iter_mut().zip(wc) {
                                    *a += w * xv;
                                }
                            }
                        }
                    }
                }
                for (l, a) in acc.iter().enumerate() {
                    let o = &mut out[l * rows + b * TILE_ROWS..][..TILE_ROWS];
                    for (o, a) in o.iter_mut().zip(a) {
                        *o += a;
                    }
                }
            }
            done = self.data.len() / block * TILE_ROWS;
        }
        for r in done..rows {
            let row = w.row(r);
            for l in 0..L {
                let mut acc = 0.0f32;
                for (a, xc) in row.iter().zip(xt.chunks_exact(L)) {
                    acc += a * xc[l];
                }
                out[l * rows + r] += acc;
            }
        }
    }
}

/// Per-layer state of a [`FloatBatch`]: the lanes' vectors one after another.
#[derive(Clone, Debug)]
struct BatchState {
    h: Vec<f32>,
    c: Vec<f32>,
    pre: Vec<f32>,
    hpre: Vec<f32>,
}

/// The float reference for up to [`BATCH_LANES`] sequences stepped in lock step: each
/// lane computes exactly what a [`FloatRunner`] computes for its sequence (the same
/// operations in the same order on the same `f32` values, so the same bits), but each
/// matrix is read once per step for all lanes instead of once per lane. On a CPU with
/// AVX-512 the products take 16 rows of a lane per vector multiply and vector add
/// (each one rounding, as in the scalar loop: never a fused multiply-add).
pub struct FloatBatch<'m> {
    model: &'m FloatModel,
    simd: Option<Simd>,
    lanes: usize,
    tiled: Vec<Vec<Tiled>>,
    states: Vec<BatchState>,
    buffers: Vec<Vec<f32>>,
    /// The lanes' input of the current layer, transposed (`[col][lane]`).
    xt: Vec<f32>,
    /// The lanes' input of the current layer, one after another.
    prev: Vec<f32>,
}

impl<'m> FloatBatch<'m> {
    /// A batch of `lanes` sequences (1 ..= [`BATCH_LANES`]) in the reset state.
    pub fn new(model: &'m FloatModel, lanes: usize) -> Self {
        Self::with_simd(model, lanes, detect_simd())
    }

    /// [`FloatBatch::new`] on the vector unit `simd` (`None`: scalar code).
    fn with_simd(model: &'m FloatModel, lanes: usize, simd: Option<Simd>) -> Self {
        let lanes = lanes.clamp(1, BATCH_LANES);
        let tiled = model
            .layers
            .iter()
            .map(|l| match l {
                FloatLayer::Embedding { .. } => Vec::new(),
                FloatLayer::Recurrent { w_ih, w_hh, .. } => {
                    vec![Tiled::new(w_ih), Tiled::new(w_hh)]
                }
                FloatLayer::Linear { weight, .. } => vec![Tiled::new(weight)],
            })
            .collect();
        let states = model
            .layers
            .iter()
            .map(|l| match l {
                FloatLayer::Recurrent { w_hh, cell, .. } => BatchState {
                    h: vec![0.0; lanes * w_hh.cols],
                    c: vec![
                        0.0;
                        if *cell == Cell::Lstm {
                            lanes * w_hh.cols
                        } else {
                            0
                        }
                    ],
                    pre: vec![0.0; lanes * w_hh.rows],
                    hpre: vec![0.0; lanes * w_hh.rows],
                },
                _ => BatchState {
                    h: Vec::new(),
                    c: Vec::new(),
                    pre: Vec::new(),
                    hpre: Vec::new(),
                },
            })
            .collect();
        let buffers = model
            .layers
            .iter()
            .map(|l| vec![0.0; lanes * l.output_size()])
            .collect();
        FloatBatch {
            model,
            simd,
            lanes,
            tiled,
            states,
            buffers,
            xt: Vec::new(),
            prev: Vec::new(),
        }
    }

    /// The number of lanes.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Resets every lane's recurrent state to zero.
    pub fn reset(&mut self) {
        for s in &mut self.states {
            s.h.iter_mut().for_each(|v| *v = 0.0);
            s.c.iter_mut().for_each(|v| *v = 0.0);
        }
    }

    /// One step of every lane on its token id (`tokens[l]` for lane `l`; out-of-range
    /// ids read a zero vector, as in [`FloatRunner::step_token`]). Returns the lanes'
    /// outputs one after another.
    ///
    /// # Panics
    /// If `tokens.len()` is not the number of lanes.
    pub fn step_tokens(&mut self, tokens: &[usize]) -> &[f32] {
        assert_eq!(tokens.len(), self.lanes, "one token per lane");
        self.step(BatchInput::Tokens(tokens))
    }

    /// One step of every lane on its feature vector (`xs` holds the lanes' vectors one
    /// after another). Returns the lanes' outputs one after another.
    ///
    /// # Panics
    /// If `xs.len()` is not a multiple of the number of lanes.
    pub fn step_features(&mut self, xs: &[f32]) -> &[f32] {
        assert_eq!(xs.len() % self.lanes, 0, "one feature vector per lane");
        self.step(BatchInput::Features(xs))
    }

    fn step(&mut self, input: BatchInput<'_>) -> &[f32] {
        match self.lanes {
            1 => self.step_lanes::<1>(input),
            2 => self.step_lanes::<2>(input),
            3 => self.step_lanes::<3>(input),
            4 => self.step_lanes::<4>(input),
            5 => self.step_lanes::<5>(input),
            6 => self.step_lanes::<6>(input),
            7 => self.step_lanes::<7>(input),
            _ => self.step_lanes::<8>(input),
        }
        match self.buffers.last() {
            Some(b) => b,
            None => &[],
        }
    }

    fn step_lanes<const L: usize>(&mut self, input: BatchInput<'_>) {
        let model = self.model;
        let simd = self.simd;
        let mut prev = std::mem::take(&mut self.prev);
        let mut xt = std::mem::take(&mut self.xt);
        prev.clear();
        if let BatchInput::Features(x) = input {
            prev.extend_from_slice(x);
        }
        for (index, layer) in model.layers.iter().enumerate() {
            let out = &mut self.buffers[index];
            let tiled = &self.tiled[index];
            let width = out.len() / L;
            // The layer input, transposed for the products.
            let transpose = |prev: &[f32], xt: &mut Vec<f32>| {
                let n = prev.len() / L;
                xt.clear();
                xt.resize(n * L, 0.0);
                for (l, x) in prev.chunks_exact(n.max(1)).enumerate() {
                    for (c, &v) in x.iter().enumerate() {
                        xt[c * L + l] = v;
                    }
                }
            };
            match layer {
                FloatLayer::Embedding { weight, .. } => {
                    for (l, o) in out.chunks_exact_mut(width.max(1)).enumerate() {
                        let token = match input {
                            BatchInput::Tokens(t) => t[l],
                            BatchInput::Features(_) => usize::MAX,
                        };
                        embed(weight, token, o);
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
                    let BatchState { h, c, pre, hpre } = &mut self.states[index];
                    let hidden = width;
                    let rows = w_hh.rows;
                    match cell {
                        Cell::Lstm => {
                            for p in pre.chunks_exact_mut(rows) {
                                for r in 0..4 * hidden {
                                    p[r] = b_ih[r] + b_hh[r];
                                }
                            }
                            transpose(&prev, &mut xt);
                            tiled[0].matvec_add_lanes::<L>(simd, w_ih, &xt, pre);
                            transpose(h, &mut xt);
                            tiled[1].matvec_add_lanes::<L>(simd, w_hh, &xt, pre);
                            for ((pre, c), h) in pre
                                .chunks_exact(rows)
                                .zip(c.chunks_exact_mut(hidden))
                                .zip(h.chunks_exact_mut(hidden))
                            {
                                lstm_update(pre, c, h);
                            }
                        }
                        Cell::Gru => {
                            for p in pre.chunks_exact_mut(rows) {
                                p.copy_from_slice(b_ih);
                            }
                            for p in hpre.chunks_exact_mut(rows) {
                                p.copy_from_slice(b_hh);
                            }
                            transpose(&prev, &mut xt);
                            tiled[0].matvec_add_lanes::<L>(simd, w_ih, &xt, pre);
                            transpose(h, &mut xt);
                            tiled[1].matvec_add_lanes::<L>(simd, w_hh, &xt, hpre);
                            for ((pre, hpre), h) in pre
                                .chunks_exact_mut(rows)
                                .zip(hpre.chunks_exact(rows))
                                .zip(h.chunks_exact_mut(hidden))
                            {
                                gru_gate_sums(pre, hpre, hidden);
                                gru_update(pre, hpre, h);
                            }
                        }
                        Cell::Rnn(act) => {
                            for p in pre.chunks_exact_mut(rows) {
                                for r in 0..hidden {
                                    p[r] = b_ih[r] + b_hh[r];
                                }
                            }
                            transpose(&prev, &mut xt);
                            tiled[0].matvec_add_lanes::<L>(simd, w_ih, &xt, pre);
                            transpose(h, &mut xt);
                            tiled[1].matvec_add_lanes::<L>(simd, w_hh, &xt, pre);
                            for (pre, h) in pre.chunks_exact(rows).zip(h.chunks_exact_mut(hidden)) {
                                rnn_update(*act, pre, h);
                            }
                        }
                    }
                    out.copy_from_slice(h);
                }
                FloatLayer::Linear { weight, bias, .. } => {
                    for o in out.chunks_exact_mut(width.max(1)) {
                        o.copy_from_slice(bias);
                    }
                    transpose(&prev, &mut xt);
                    tiled[0].matvec_add_lanes::<L>(simd, weight, &xt, out);
                }
            }
            prev.clear();
            prev.extend_from_slice(out);
        }
        self.prev = prev;
        self.xt = xt;
    }
}

#[derive(Clone, Copy)]
enum BatchInput<'a> {
    Tokens(&'a [usize]),
    Features(&'a [f32]),
}

#[derive(Clone, Copy)]
enum Input<'a> {
    Token(usize),
    Features(&'a [f32]),
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A random model: `cell` layers of `hidden` (two stacked), a linear layer of
    /// `outputs`; token input of `input` wide embeddings when `vocab` is `Some`.
    fn random_model(
        cell: Cell,
        vocab: Option<usize>,
        input: usize,
        hidden: usize,
        outputs: usize,
        next: &mut impl FnMut() -> f32,
    ) -> FloatModel {
        let mut mat = |rows: usize, cols: usize| Matrix {
            rows,
            cols,
            data: (0..rows * cols).map(|_| next()).collect(),
        };
        let gates = match cell {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn(_) => 1,
        };
        let mut layers = Vec::new();
        if let Some(v) = vocab {
            layers.push(FloatLayer::Embedding {
                name: "emb".into(),
                weight: mat(v, input),
            });
        }
        for (k, cols) in [input, hidden].into_iter().enumerate() {
            let (w_ih, w_hh) = (mat(gates * hidden, cols), mat(gates * hidden, hidden));
            let b_ih = mat(1, gates * hidden).data;
            let b_hh = mat(1, gates * hidden).data;
            layers.push(FloatLayer::Recurrent {
                name: format!("rnn.l{k}"),
                cell,
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            });
        }
        layers.push(FloatLayer::Linear {
            name: "fc".into(),
            weight: mat(outputs, hidden),
            bias: mat(1, outputs).data,
        });
        FloatModel {
            name: "random".into(),
            spec_path: Default::default(),
            input: match vocab {
                Some(vocab_size) => InputSpec::Tokens { vocab_size },
                None => InputSpec::Features { size: input },
            },
            layers,
            metadata: None,
        }
    }

    /// Every lane of a [`FloatBatch`] (1 to 8 lanes, scalar and vector code) computes
    /// its sequence's outputs as a [`FloatRunner`] on that sequence alone does, bit for
    /// bit, across resets: LSTM, GRU and both RNNs, with row counts that leave a
    /// partial block of 32 rows (and matrices with fewer rows than one block).
    #[test]
    fn batch_lanes_equal_one_runner_per_sequence_bit_for_bit() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * 10f32.powi((seed % 5) as i32 - 3)
        };
        let cells = [
            (Cell::Lstm, Some(13), 9, 20, 7),
            (Cell::Lstm, None, 5, 36, 3),
            (Cell::Gru, Some(11), 6, 20, 5),
            (Cell::Rnn(Nonlinearity::Tanh), None, 7, 40, 4),
            (Cell::Rnn(Nonlinearity::Relu), Some(9), 4, 7, 2),
        ];
        let steps = 12;
        for (cell, vocab, input, hidden, outputs) in cells {
            let model = random_model(cell, vocab, input, hidden, outputs, &mut next);
            let o = model.output_size();
            // Per lane, its sequence of tokens (a few out of range: a zero vector) or
            // features.
            let lanes_max = BATCH_LANES;
            let tokens: Vec<Vec<usize>> = (0..lanes_max)
                .map(|_| {
                    (0..steps)
                        .map(|_| (next().abs() * 1e3) as usize % (vocab.unwrap_or(1) + 1))
                        .collect()
                })
                .collect();
            let feats: Vec<Vec<f32>> = (0..lanes_max)
                .map(|_| (0..steps * input).map(|_| next()).collect())
                .collect();
            // The reference: one runner per sequence, twice (with a reset between).
            let want: Vec<Vec<u32>> = (0..lanes_max)
                .map(|l| {
                    let mut r = FloatRunner::new(&model);
                    let mut out = Vec::new();
                    for _ in 0..2 {
                        r.reset();
                        for s in 0..steps {
                            let y = match vocab {
                                Some(_) => r.step_token(tokens[l][s], &mut NoObserver),
                                None => r.step_features(
                                    &feats[l][s * input..(s + 1) * input],
                                    &mut NoObserver,
                                ),
                            };
                            out.extend(y.iter().map(|v| v.to_bits()));
                        }
                    }
                    out
                })
                .collect();
            let mut simds = vec![None];
            simds.extend(detect_simd().map(Some));
            for &simd in &simds {
                for lanes in 1..=lanes_max {
                    let mut b = FloatBatch::with_simd(&model, lanes, simd);
                    let mut got = vec![Vec::new(); lanes];
                    for _ in 0..2 {
                        b.reset();
                        for s in 0..steps {
                            let y = match vocab {
                                Some(_) => {
                                    let t: Vec<usize> = (0..lanes).map(|l| tokens[l][s]).collect();
                                    b.step_tokens(&t)
                                }
                                None => {
                                    let x: Vec<f32> = (0..lanes)
                                        .flat_map(|l| {
                                            feats[l][s * input..(s + 1) * input].iter().copied()
                                        })
                                        .collect();
                                    b.step_features(&x)
                                }
                            };
                            assert_eq!(y.len(), lanes * o);
                            for (g, y) in got.iter_mut().zip(y.chunks_exact(o)) {
                                g.extend(y.iter().map(|v| v.to_bits()));
                            }
                        }
                    }
                    for (l, g) in got.iter().enumerate() {
                        assert!(
                            *g == want[l],
                            "{cell:?} hidden {hidden}, {lanes} lanes (vector code: {}): lane {l} differs",
                            simd.is_some()
                        );
                    }
                }
            }
        }
    }
}
