//! The QAT forward pass in burn: the float model (LSTM, GRU and Elman RNN layers) with
//! the integer scheme of docs/NUMERICS.md simulated by fake quantization and
//! straight-through estimators.
//!
//! Per layer, the matrix products run in burn and the element-wise rest of each step on
//! the host, whose gradient re-enters the autodiff graph as a linear expression with
//! host-computed local derivatives as constants:
//!
//! - LSTM ([`cell_step`]): gate tables, the cell update's two roundings, the hidden
//!   state's int8 grid; float values on those grids.
//! - GRU ([`gru_step`]) and RNN ([`rnn_step`]): the integer ops of the interpreter
//!   (`lower::gru_ops`, `lower::rnn_ops`) computed on integer codes with the runtime's
//!   own kernels (`mul_q15`, `add_sat_i16`, `widen_i8`, `blend_q15`, `requant_i8`) and
//!   requantizers (`lower::quantize_multiplier`); only the int16 pre-activation codes
//!   come from the float accumulators (`round(v · 2^k)` of the input and the recurrent
//!   partial sums, each, then a saturating add, as `gate_preactivation`).

use crate::model::{CellKind, Params};
use burn::tensor::{Device, Int, Tensor, TensorData};
use irnn_codegen::graph::AffineQuant;
use irnn_codegen::ir::{Activation, PwlTable};
use irnn_codegen::lower::quantize_multiplier;
use irnn_codegen::pwl::{fit, FitOptions};
use irnn_codegen::quantize::{affine_from_range, frac_bits_for};
use irnn_runtime::kernels::{add_sat_i16, blend_q15, mul_q15, requant_i8};
use irnn_runtime::{saturate_i16, Requant};
use std::collections::HashMap;
use std::sync::Arc;

/// Lowest gate pre-activation fractional bits (as `irnn quantize`).
pub const GATE_FRAC_MIN: u32 = 10;
/// Highest gate pre-activation fractional bits.
pub const GATE_FRAC_MAX: u32 = 13;

/// Tracked activation ranges of one recurrent layer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerRanges {
    /// Largest |pre-activation| per gate, in the cell's gate order: LSTM i, f, g, o;
    /// GRU r, z, n (n: the largest of its pre-activation, `W_in x + b_in` and
    /// `W_hn h + b_hn`, which share its grid, as calibration does); RNN: the
    /// pre-activation in slot 0. Unused slots stay 0.
    pub gate_absmax: [f64; 4],
    /// Largest |c| (LSTM; 0 otherwise).
    pub cell_absmax: f64,
    /// Hidden state minimum.
    pub h_min: f64,
    /// Hidden state maximum.
    pub h_max: f64,
}

/// The quantization state: ranges (EMA during warm-up, then frozen).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantState {
    /// One entry per recurrent layer.
    pub layers: Vec<LayerRanges>,
    /// Whether the ranges have been initialized from a first observation.
    pub initialized: bool,
    /// Whether the ranges are frozen.
    pub frozen: bool,
}

/// Grids derived from the ranges of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerGrids {
    /// Gate pre-activation fractional bits, in the order of [`LayerRanges::gate_absmax`]
    /// (an RNN's pre-activation grid is slot 0).
    pub gate_frac_bits: [u32; 4],
    /// Cell state fractional bits (LSTM).
    pub cell_frac_bits: u32,
    /// Hidden state quantization.
    pub h: AffineQuant,
}

impl QuantState {
    /// The grids of layer `k`, a `cell` layer (as `irnn quantize` chooses them: gate
    /// grids with 10–13 fractional bits; a relu RNN's pre-activation grid with 0–15,
    /// since relu passes its values on).
    pub fn grids(&self, k: usize, cell: CellKind) -> LayerGrids {
        let r = &self.layers[k];
        let (lo, hi) = match cell {
            CellKind::RnnRelu => (0, 15),
            _ => (GATE_FRAC_MIN, GATE_FRAC_MAX),
        };
        let mut g = [0; 4];
        for (i, a) in r.gate_absmax.iter().enumerate() {
            g[i] = frac_bits_for(a.max(1e-6), lo, hi);
        }
        LayerGrids {
            gate_frac_bits: g,
            cell_frac_bits: frac_bits_for(r.cell_absmax.max(1e-6), 0, 15),
            h: affine_from_range(r.h_min as f32, r.h_max as f32),
        }
    }

    /// Folds the statistics of one batch in: replaces when not initialized, EMA with
    /// `decay` otherwise; nothing when frozen.
    pub fn update(&mut self, stats: &[LayerRanges], decay: f64) {
        if self.frozen {
            return;
        }
        if !self.initialized || self.layers.len() != stats.len() {
            self.layers = stats.to_vec();
            self.initialized = true;
            return;
        }
        let e = |old: &mut f64, new: f64| *old = decay * *old + (1.0 - decay) * new;
        for (o, n) in self.layers.iter_mut().zip(stats) {
            for g in 0..4 {
                e(&mut o.gate_absmax[g], n.gate_absmax[g]);
            }
            e(&mut o.cell_absmax, n.cell_absmax);
            e(&mut o.h_min, n.h_min);
            e(&mut o.h_max, n.h_max);
        }
    }
}

/// The PWL table the compiler emits for `(function, frac_bits)`: `fit` with default
/// options, exactly as `irnn quantize` calls it.
pub fn table(function: Activation, frac_bits: u32) -> PwlTable {
    fit(&FitOptions::new(function, frac_bits))
        .expect("default PWL options fit")
        .0
}

/// The compiler's table for `(function, frac_bits)` evaluated on every int16 input code:
/// the Q0.15 output codes, and the same as float values (codes / 2^15).
#[derive(Default)]
pub struct LutCache {
    host: HashMap<(Activation, u32), Arc<Vec<f32>>>,
    codes: HashMap<(Activation, u32), Arc<Vec<i16>>>,
}

impl LutCache {
    /// Output codes, indexed by `input code + 32768`.
    pub fn codes(&mut self, f: Activation, k: u32) -> Arc<Vec<i16>> {
        self.codes
            .entry((f, k))
            .or_insert_with(|| {
                let t = table(f, k);
                let p = t.as_pwl();
                Arc::new((-32768..=32767).map(|x| saturate_i16(p.eval(x))).collect())
            })
            .clone()
    }

    fn values(&mut self, f: Activation, k: u32) -> Arc<Vec<f32>> {
        if let Some(v) = self.host.get(&(f, k)) {
            return v.clone();
        }
        let v: Arc<Vec<f32>> = Arc::new(
            self.codes(f, k)
                .iter()
                .map(|&c| c as f32 / 32768.0)
                .collect(),
        );
        self.host.insert((f, k), v.clone());
        v
    }
}

/// How the forward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain float LSTM (the PyTorch semantics).
    Float,
    /// Integer arithmetic simulated (QAT).
    Qat,
}

/// Parameters as tensors on a device.
pub struct DeviceParams {
    /// One tensor per host parameter (rank 2 or 1 flattened to rank 2 `[1, n]`).
    pub tensors: Vec<Tensor<2>>,
    /// Whether the tensors are autodiff leaves (the forward then builds the gradient
    /// graph of the cell).
    pub grad: bool,
}

impl DeviceParams {
    /// Uploads host parameters; with `grad` they are autodiff leaves.
    pub fn upload(p: &Params, device: &Device, grad: bool) -> Self {
        let tensors = p
            .params
            .iter()
            .map(|q| {
                let shape = if q.shape.len() == 2 {
                    [q.shape[0], q.shape[1]]
                } else {
                    [1, q.shape[0]]
                };
                let t = Tensor::<2>::from_data(TensorData::new(q.data.clone(), shape), device);
                if grad {
                    t.require_grad()
                } else {
                    t
                }
            })
            .collect();
        DeviceParams { tensors, grad }
    }
}

/// `x + (q − x)` with `q − x` detached: value `q`, gradient identity.
fn ste(x: Tensor<2>, q_of_detached: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Tensor<2> {
    let xd = x.clone().detach();
    let q = q_of_detached(xd.clone());
    x + (q - xd)
}

/// Per-row symmetric int8 fake quantization (codes in [-127, 127]); returns the
/// fake-quantized weights and the row scales `[rows, 1]` (detached).
pub fn fq_weight_rows(w: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let s = w
        .clone()
        .detach()
        .abs()
        .max_dim(1)
        .div_scalar(127.0)
        .clamp_min(1e-30);
    let s2 = s.clone();
    let q = ste(w, move |wd| {
        wd.div(s2.clone()).round().clamp(-127.0, 127.0).mul(s2)
    });
    (q, s)
}

/// Bias on the int32 grid `s_in · s_w[r]` (`s_w` as `[rows, 1]`); bias is `[1, rows]`.
fn fq_bias(b: Tensor<2>, s_in: f64, s_w: Tensor<2>) -> Tensor<2> {
    let grid = s_w.transpose().mul_scalar(s_in);
    ste(b, move |bd| bd.div(grid.clone()).round().mul(grid))
}

/// Affine int8 fake quantization with clamped-range STE (zero gradient outside).
fn fq_affine(x: Tensor<2>, q: AffineQuant) -> Tensor<2> {
    let s = q.scale;
    let lo = (-128 - q.zero_point) as f64 * s;
    let hi = (127 - q.zero_point) as f64 * s;
    let xc = x.clamp(lo, hi);
    ste(xc, move |d| d.div_scalar(s).round().mul_scalar(s))
}

/// The output of one forward pass.
pub struct Forward {
    /// Logits `[B·T, O]`, batch-major (row `b·T + t`).
    pub logits: Tensor<2>,
    /// Per-LSTM-layer ranges observed in this batch (when tracking).
    pub stats: Vec<LayerRanges>,
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// The integer scheme of one LSTM layer on the host: gate and cell tables, grids.
struct QCell {
    /// sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) tables over int16 codes.
    gate_lut: [Arc<Vec<f32>>; 4],
    /// `2^k_g` per gate.
    gate_scale: [f32; 4],
    /// tanh table of the cell state.
    cell_lut: Arc<Vec<f32>>,
    /// `2^cf`.
    cell_scale: f32,
    /// int16 saturation bounds of the cell sum on the `2^-cf` grid.
    cell_lo: f32,
    cell_hi: f32,
    /// Hidden state: affine int8 clamp range and scale.
    h_lo: f32,
    h_hi: f32,
    h_scale: f32,
}

impl QCell {
    fn new(gr: &LayerGrids, luts: &mut LutCache) -> Self {
        let f = |g: usize| {
            if g == 2 {
                Activation::Tanh
            } else {
                Activation::Sigmoid
            }
        };
        let fb = gr.gate_frac_bits;
        let sc = (1u64 << gr.cell_frac_bits) as f64;
        let q = gr.h;
        QCell {
            gate_lut: [0, 1, 2, 3].map(|g| luts.values(f(g), fb[g])),
            gate_scale: fb.map(|k| (1u64 << k) as f32),
            cell_lut: luts.values(Activation::Tanh, gr.cell_frac_bits),
            cell_scale: sc as f32,
            cell_lo: (-32768.0 / sc) as f32,
            cell_hi: (32767.0 / sc) as f32,
            h_lo: ((-128 - q.zero_point) as f64 * q.scale) as f32,
            h_hi: ((127 - q.zero_point) as f64 * q.scale) as f32,
            h_scale: q.scale as f32,
        }
    }
}

/// The table value of `x` on the `2^-k` grid (`scale = 2^k`): code rounded (ties to
/// even, as burn's `round`), saturated to int16, looked up.
fn lut_at(lut: &[f32], scale: f32, x: f32) -> f32 {
    let code = (x * scale).round_ties_even().clamp(-32768.0, 32767.0) as i32;
    lut[(code + 32768) as usize]
}

/// As burn flex's sigmoid.
fn sigmoid_f32(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Values and local derivatives of one LSTM cell step for a batch, computed on the host.
///
/// The forward value is exact (the integer scheme of docs/NUMERICS.md in `Qat`, plain
/// float otherwise). The gradient is the one of the straight-through formulation: the
/// true sigmoid/tanh derivatives at the unquantized pre-activation and cell state,
/// products differentiated at their (quantized) operand values, zero outside the
/// saturation ranges of the cell sum and of the hidden state.
#[derive(Default)]
struct CellStep {
    /// New cell state `[b, h]`.
    c: Vec<f32>,
    /// New hidden state (the layer output) `[b, h]`.
    h: Vec<f32>,
    /// ∂c/∂pre for the i, f, g gates `[b, 3h]`.
    dc_dpre: Vec<f32>,
    /// ∂c/∂c_prev `[b, h]`.
    dc_dcprev: Vec<f32>,
    /// ∂h/∂pre_o `[b, h]`.
    dh_dpre_o: Vec<f32>,
    /// ∂h/∂c `[b, h]`.
    dh_dc: Vec<f32>,
}

/// Running ranges of one layer (tracking).
struct Tracker {
    gate_absmax: [f32; 4],
    cell_absmax: f32,
    h_min: f32,
    h_max: f32,
}

impl Tracker {
    fn new() -> Self {
        Tracker {
            gate_absmax: [0.0; 4],
            cell_absmax: 0.0,
            h_min: f32::INFINITY,
            h_max: f32::NEG_INFINITY,
        }
    }

    fn merge(&mut self, o: &Tracker) {
        for g in 0..4 {
            self.gate_absmax[g] = self.gate_absmax[g].max(o.gate_absmax[g]);
        }
        self.cell_absmax = self.cell_absmax.max(o.cell_absmax);
        self.h_min = self.h_min.min(o.h_min);
        self.h_max = self.h_max.max(o.h_max);
    }

    fn ranges(&self) -> LayerRanges {
        LayerRanges {
            gate_absmax: self.gate_absmax.map(|v| v as f64),
            cell_absmax: self.cell_absmax as f64,
            h_min: self.h_min as f64,
            h_max: self.h_max as f64,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn cell_step(
    pre: &[f32],
    c_prev: &[f32],
    b: usize,
    h: usize,
    q: Option<&QCell>,
    grad: bool,
    tr: Option<&mut Tracker>,
    out: &mut CellStep,
) {
    let n = b * h;
    out.c.resize(n, 0.0);
    out.h.resize(n, 0.0);
    if grad {
        out.dc_dpre.resize(3 * n, 0.0);
        out.dc_dcprev.resize(n, 0.0);
        out.dh_dpre_o.resize(n, 0.0);
        out.dh_dc.resize(n, 0.0);
    }
    let mut local = Tracker::new();
    for r in 0..b {
        let pr = &pre[r * 4 * h..(r + 1) * 4 * h];
        for j in 0..h {
            let x = [pr[j], pr[h + j], pr[2 * h + j], pr[3 * h + j]];
            for g in 0..4 {
                local.gate_absmax[g] = local.gate_absmax[g].max(x[g].abs());
            }
            // Float activations: the value in `Float`, the derivative when `grad`.
            let s = if q.is_none() || grad {
                [
                    sigmoid_f32(x[0]),
                    sigmoid_f32(x[1]),
                    x[2].tanh(),
                    sigmoid_f32(x[3]),
                ]
            } else {
                [0.0; 4]
            };
            let v = match q {
                Some(q) => [
                    lut_at(&q.gate_lut[0], q.gate_scale[0], x[0]),
                    lut_at(&q.gate_lut[1], q.gate_scale[1], x[1]),
                    lut_at(&q.gate_lut[2], q.gate_scale[2], x[2]),
                    lut_at(&q.gate_lut[3], q.gate_scale[3], x[3]),
                ],
                None => s,
            };
            let cp = c_prev[r * h + j];
            let (c, mc, tc, dtc);
            match q {
                Some(q) => {
                    // f·c and i·g each rounded onto the 2^-cf grid, summed, saturated.
                    let sc = q.cell_scale;
                    let fc = (v[1] * cp * sc).round_ties_even() / sc;
                    let ig = (v[0] * v[2] * sc).round_ties_even() / sc;
                    let sum = fc + ig;
                    mc = if sum >= q.cell_lo && sum <= q.cell_hi {
                        1.0
                    } else {
                        0.0
                    };
                    c = (sum.clamp(q.cell_lo, q.cell_hi) * sc).round_ties_even() / sc;
                    tc = lut_at(&q.cell_lut, sc, c);
                    dtc = if grad {
                        let t = c.tanh();
                        1.0 - t * t
                    } else {
                        0.0
                    };
                }
                None => {
                    c = v[1] * cp + v[0] * v[2];
                    mc = 1.0;
                    tc = c.tanh();
                    dtc = 1.0 - tc * tc;
                }
            }
            let hr = v[3] * tc;
            local.cell_absmax = local.cell_absmax.max(c.abs());
            local.h_min = local.h_min.min(hr);
            local.h_max = local.h_max.max(hr);
            let (hv, mh) = match q {
                Some(q) => {
                    let m = if hr >= q.h_lo && hr <= q.h_hi {
                        1.0
                    } else {
                        0.0
                    };
                    let xc = hr.clamp(q.h_lo, q.h_hi);
                    ((xc / q.h_scale).round_ties_even() * q.h_scale, m)
                }
                None => (hr, 1.0),
            };
            let k = r * h + j;
            out.c[k] = c;
            out.h[k] = hv;
            if grad {
                let d = [
                    s[0] * (1.0 - s[0]),
                    s[1] * (1.0 - s[1]),
                    1.0 - s[2] * s[2],
                    s[3] * (1.0 - s[3]),
                ];
                let dp = &mut out.dc_dpre[r * 3 * h..(r + 1) * 3 * h];
                dp[j] = d[0] * mc * v[2];
                dp[h + j] = d[1] * mc * cp;
                dp[2 * h + j] = d[2] * mc * v[0];
                out.dc_dcprev[k] = mc * v[1];
                out.dh_dpre_o[k] = d[3] * mh * tc;
                out.dh_dc[k] = mh * v[3] * dtc;
            }
        }
    }
    if let Some(t) = tr {
        t.merge(&local);
    }
}

/// A tensor whose value is `value` (exactly) and whose gradient flows into `lin`
/// (identity): `(lin − detach(lin)) + value`.
fn with_value(lin: Tensor<2>, value: Tensor<2>) -> Tensor<2> {
    (lin.clone() - lin.detach()) + value
}

/// What every layer's pass needs besides its input.
struct LayerCtx<'a> {
    dp: &'a DeviceParams,
    /// Index of the layer's `w_ih` in the parameters (`w_hh`, `b_ih`, `b_hh` follow).
    base: usize,
    b: usize,
    h: usize,
    /// The input's int8 grid (QAT).
    in_q: Option<AffineQuant>,
    /// The layer's grids (QAT).
    grids: Option<LayerGrids>,
    track: bool,
    device: &'a Device,
}

impl LayerCtx<'_> {
    fn hd(&self, v: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(v, shape), self.device)
    }

    /// `W_ih`, `W_hh`, `b_ih`, `b_hh`, fake-quantized in QAT: per-row int8 weights,
    /// `b_ih` on the input accumulator's grid `s_x · s_wih[r]`, `b_hh` on `bias_hh_grid`'s
    /// scale times `s_whh[r]` (`None`: on the input accumulator's grid too, for cells
    /// whose two biases are summed into one).
    fn weights(&self, bias_hh_grid: Option<f64>) -> [Tensor<2>; 4] {
        let t = |i: usize| self.dp.tensors[self.base + i].clone();
        let (w_ih, w_hh, b_ih, b_hh) = (t(0), t(1), t(2), t(3));
        match self.in_q {
            Some(xq) if self.grids.is_some() => {
                let (wi, si) = fq_weight_rows(w_ih);
                let (wh, sh) = fq_weight_rows(w_hh);
                match bias_hh_grid {
                    Some(s_h) => [wi, wh, fq_bias(b_ih, xq.scale, si), fq_bias(b_hh, s_h, sh)],
                    None => {
                        let b = fq_bias(b_ih + b_hh, xq.scale, si);
                        let zero = b.zeros_like();
                        [wi, wh, b, zero]
                    }
                }
            }
            _ => [w_ih, w_hh, b_ih, b_hh],
        }
    }
}

/// An LSTM layer over the per-step inputs; returns the per-step outputs and the ranges
/// seen (when tracking).
fn lstm_layer(
    cx: &LayerCtx,
    xs: Vec<Tensor<2>>,
    luts: &mut LutCache,
) -> (Vec<Tensor<2>>, Option<LayerRanges>) {
    let (b, h, grad, device) = (cx.b, cx.h, cx.dp.grad, cx.device);
    let [w_ih, w_hh, b_ih, b_hh] = cx.weights(None);
    let bias = b_ih + b_hh;
    let (w_ih_t, w_hh_t) = (w_ih.transpose(), w_hh.transpose());
    let qcell = cx.grids.as_ref().map(|g| QCell::new(g, luts));
    let mut tracker = Tracker::new();
    // Reset state: h = z_h codes = real 0; c = 0.
    let mut hs: Tensor<2> = Tensor::<2>::zeros([b, h], device);
    let mut c: Tensor<2> = Tensor::<2>::zeros([b, h], device);
    let mut c_host = vec![0f32; b * h];
    let mut cs = CellStep::default();
    let mut outs = Vec::with_capacity(xs.len());
    for x_t in xs {
        let pre = x_t.matmul(w_ih_t.clone()).add(bias.clone()) + hs.matmul(w_hh_t.clone());
        let pv = host(pre.clone());
        cell_step(
            &pv,
            &c_host,
            b,
            h,
            qcell.as_ref(),
            grad,
            cx.track.then_some(&mut tracker),
            &mut cs,
        );
        c_host.copy_from_slice(&cs.c);
        let take = std::mem::take;
        let c_val = cx.hd(take(&mut cs.c), [b, h]);
        let h_val = cx.hd(take(&mut cs.h), [b, h]);
        if grad {
            let c_lin = (pre.clone().narrow(1, 0, 3 * h)
                * cx.hd(take(&mut cs.dc_dpre), [b, 3 * h]))
            .reshape([b, 3, h])
            .sum_dim(1)
            .reshape([b, h])
                + c * cx.hd(take(&mut cs.dc_dcprev), [b, h]);
            c = with_value(c_lin, c_val);
            let h_lin = pre.narrow(1, 3 * h, h) * cx.hd(take(&mut cs.dh_dpre_o), [b, h])
                + c.clone() * cx.hd(take(&mut cs.dh_dc), [b, h]);
            hs = with_value(h_lin, h_val);
        } else {
            c = c_val;
            hs = h_val;
        }
        outs.push(hs.clone());
    }
    (outs, cx.track.then(|| tracker.ranges()))
}

/// A factor as the interpreter's [`Requant`], or (for a factor `quantize_multiplier`
/// refuses, which export would refuse too) the factor itself, applied in float.
#[derive(Clone, Copy, Debug)]
struct Factor {
    req: Option<Requant>,
    real: f64,
}

impl Factor {
    fn new(real: f64) -> Self {
        Factor {
            req: quantize_multiplier(real).ok(),
            real,
        }
    }

    fn apply(self, x: i32) -> i32 {
        match self.req {
            Some(r) => r.apply(x),
            None => (x as f64 * self.real)
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32,
        }
    }
}

/// `round(v · scale)` (ties to even), the int32 code of a requantized partial sum.
fn code32(v: f32, scale: f32) -> i64 {
    (v as f64 * scale as f64)
        .round_ties_even()
        .clamp(i32::MIN as f64, i32::MAX as f64) as i64
}

/// Saturated to int16, and whether it was inside.
fn sat16(x: i64) -> (i32, f32) {
    let c = x.clamp(-32768, 32767);
    (c as i32, if c == x { 1.0 } else { 0.0 })
}

/// The integer scheme of one GRU or RNN layer on the host.
struct QRec {
    /// Tables (GRU: sigmoid r, sigmoid z, tanh n; RNN: tanh, or none for relu), output
    /// codes.
    luts: Vec<Arc<Vec<i16>>>,
    /// `2^k` per gate grid.
    scale: [f32; 3],
    /// The hidden state's int8 grid.
    h: AffineQuant,
    /// GRU: int8 h onto Q0.15 (`s_h · 2^15`).
    widen: Factor,
    /// The int16 value before the output (GRU's blend, RNN's activation) to int8.
    narrow: Factor,
}

impl QRec {
    fn new(cell: CellKind, gr: &LayerGrids, luts: &mut LutCache) -> Self {
        let fb = gr.gate_frac_bits;
        let (f, from): (&[Activation], u32) = match cell {
            CellKind::Gru => (
                &[Activation::Sigmoid, Activation::Sigmoid, Activation::Tanh],
                15,
            ),
            CellKind::RnnTanh => (&[Activation::Tanh], 15),
            // relu: no table; the value stays on the pre-activation grid.
            _ => (&[], fb[0]),
        };
        let s_h = gr.h.scale;
        QRec {
            luts: f
                .iter()
                .enumerate()
                .map(|(g, &f)| luts.codes(f, fb[g]))
                .collect(),
            scale: [0, 1, 2].map(|g| (1u64 << fb[g]) as f32),
            h: gr.h,
            widen: Factor::new(s_h * 32768.0),
            narrow: Factor::new(2f64.powi(-(from as i32)) / s_h),
        }
    }

    /// The hidden state's code (centered: `code − z_h`) from the int16 value `y`.
    fn out(&self, y: i32) -> i32 {
        match self.narrow.req {
            Some(r) => requant_i8(y, r, self.h.zero_point) as i32 - self.h.zero_point,
            None => (self.narrow.apply(y) + self.h.zero_point).clamp(-128, 127) - self.h.zero_point,
        }
    }

    fn h_value(&self, code: i32) -> f32 {
        code as f32 * self.h.scale as f32
    }

    /// The int8 clamp range of h (real values).
    fn h_range(&self) -> (f32, f32) {
        let (s, z) = (self.h.scale, self.h.zero_point);
        (
            ((-128 - z) as f64 * s) as f32,
            ((127 - z) as f64 * s) as f32,
        )
    }
}

/// Values and local derivatives of one GRU or RNN step for a batch (host).
#[derive(Default)]
struct RecStep {
    /// New hidden state (the layer output) `[b, h]`.
    h: Vec<f32>,
    /// ∂h/∂(input partial sums) `[b, gates·h]` (RNN: ∂h/∂pre, `[b, h]`).
    dx: Vec<f32>,
    /// ∂h/∂(recurrent partial sums) `[b, 3h]` (GRU).
    dh: Vec<f32>,
    /// ∂h/∂h_prev through the blend, `[b, h]` (GRU).
    dprev: Vec<f32>,
}

/// One GRU step (PyTorch's `nn.GRU`: `n = tanh(x_n + r ⊙ h_n)` with `h_n = W_hn h +
/// b_hn`, `h' = (1 − z) ⊙ n + z ⊙ h`) for a batch on the host, from the input and
/// recurrent partial sums `xp`, `hp` (`[b, 3h]`, gate order r, z, n, biases included).
///
/// In QAT the value is the interpreter's (`lower::gru_ops`): int16 codes of the partial
/// sums on each gate's grid, r and z from both (saturating add), the compiler's tables,
/// `mul_q15(r, h_n)`, `add_sat_i16(x_n, ·)`, the n table, h widened to Q0.15,
/// `blend_q15`, `requant_i8`; `code` holds the centered int8 codes of h (in and out).
/// The gradient is the straight-through one: sigmoid/tanh derivatives at the
/// unquantized pre-activations, products differentiated at their quantized operands,
/// zero where a value saturates (h_n, x_n, the widened h, the int8 output).
#[allow(clippy::too_many_arguments)]
fn gru_step(
    xp: &[f32],
    hp: &[f32],
    code: &mut [i32],
    prev: &[f32],
    b: usize,
    h: usize,
    q: Option<&QRec>,
    grad: bool,
    tr: Option<&mut Tracker>,
    out: &mut RecStep,
) {
    let n_all = b * h;
    out.h.resize(n_all, 0.0);
    if grad {
        out.dx.resize(3 * n_all, 0.0);
        out.dh.resize(3 * n_all, 0.0);
        out.dprev.resize(n_all, 0.0);
    }
    let mut local = Tracker::new();
    let h_range = q.map(|q| q.h_range());
    for r in 0..b {
        let (xr, hr) = (
            &xp[r * 3 * h..(r + 1) * 3 * h],
            &hp[r * 3 * h..(r + 1) * 3 * h],
        );
        for j in 0..h {
            let k = r * h + j;
            let (xg, hg) = (
                [xr[j], xr[h + j], xr[2 * h + j]],
                [hr[j], hr[h + j], hr[2 * h + j]],
            );
            let (pr, pz) = (xg[0] + hg[0], xg[1] + hg[1]);
            // Values (r, z, n and the operands of the products) and the pre-blend h.
            let (rv, zv, nv, hprev, hn, m_xn, m_hn, m_prev, hnew, m_h);
            match q {
                Some(q) => {
                    let pre = |g: usize| {
                        let s = q.scale[g];
                        sat16(code32(xg[g], s) + code32(hg[g], s)).0
                    };
                    let rc = q.luts[0][(pre(0) + 32768) as usize];
                    let zc = q.luts[1][(pre(1) + 32768) as usize];
                    let sn = q.scale[2];
                    let (hnc, mh) = sat16(code32(hg[2], sn));
                    let (xnc, mx) = sat16(code32(xg[2], sn));
                    let rhn = mul_q15(rc, hnc as i16);
                    let pn = add_sat_i16(xnc as i16, rhn);
                    let nc = q.luts[2][(pn as i32 + 32768) as usize];
                    let wide = q.widen.apply(code[k]);
                    let hq = saturate_i16(wide);
                    let blended = blend_q15(zc, nc, hq);
                    code[k] = q.out(blended as i32);
                    out.h[k] = q.h_value(code[k]);
                    rv = rc as f32 / 32768.0;
                    zv = zc as f32 / 32768.0;
                    nv = nc as f32 / 32768.0;
                    hprev = hq as f32 / 32768.0;
                    hn = hnc as f32 / sn;
                    m_xn = mx;
                    m_hn = mh;
                    m_prev = if hq as i32 == wide { 1.0 } else { 0.0 };
                    hnew = blended as f32 / 32768.0;
                    let (lo, hi) = h_range.unwrap();
                    m_h = if hnew >= lo && hnew <= hi { 1.0 } else { 0.0 };
                }
                None => {
                    rv = sigmoid_f32(pr);
                    zv = sigmoid_f32(pz);
                    nv = (xg[2] + rv * hg[2]).tanh();
                    hprev = prev[k];
                    hn = hg[2];
                    (m_xn, m_hn, m_prev, m_h) = (1.0, 1.0, 1.0, 1.0);
                    hnew = (1.0 - zv) * nv + zv * hprev;
                    out.h[k] = hnew;
                }
            }
            // The candidate's pre-activation in float (its derivative and range).
            let pn_f = xg[2] + rv * hg[2];
            local.gate_absmax[0] = local.gate_absmax[0].max(pr.abs());
            local.gate_absmax[1] = local.gate_absmax[1].max(pz.abs());
            local.gate_absmax[2] = local.gate_absmax[2]
                .max(pn_f.abs())
                .max(xg[2].abs())
                .max(hg[2].abs());
            local.h_min = local.h_min.min(hnew);
            local.h_max = local.h_max.max(hnew);
            if grad {
                let (sr, sz) = if q.is_some() {
                    (sigmoid_f32(pr), sigmoid_f32(pz))
                } else {
                    (rv, zv)
                };
                let t = if q.is_some() { pn_f.tanh() } else { nv };
                // ∂h'/∂pre_n
                let dn = m_h * (1.0 - zv) * (1.0 - t * t);
                let dr = dn * hn * sr * (1.0 - sr);
                let dz = m_h * (hprev - nv) * sz * (1.0 - sz);
                let (dx, dh) = (
                    &mut out.dx[r * 3 * h..(r + 1) * 3 * h],
                    &mut out.dh[r * 3 * h..(r + 1) * 3 * h],
                );
                dx[j] = dr;
                dh[j] = dr;
                dx[h + j] = dz;
                dh[h + j] = dz;
                dx[2 * h + j] = dn * m_xn;
                dh[2 * h + j] = dn * rv * m_hn;
                out.dprev[k] = m_h * zv * m_prev;
            }
        }
    }
    if let Some(t) = tr {
        t.merge(&local);
    }
}

/// One Elman RNN step for a batch on the host, from the input and recurrent partial
/// sums (`[b, h]`, biases included). QAT: the interpreter's `lower::rnn_ops` on codes
/// (`gate_preactivation`, then the tanh table or `relu_i16`, then `requant_i8`);
/// gradient: tanh' at the unquantized pre-activation, or relu's step times the int16
/// saturation of the pre-activation; zero where the int8 output saturates.
#[allow(clippy::too_many_arguments)]
fn rnn_step(
    xp: &[f32],
    hp: &[f32],
    code: &mut [i32],
    relu: bool,
    b: usize,
    h: usize,
    q: Option<&QRec>,
    grad: bool,
    tr: Option<&mut Tracker>,
    out: &mut RecStep,
) {
    let n_all = b * h;
    out.h.resize(n_all, 0.0);
    if grad {
        out.dx.resize(n_all, 0.0);
    }
    let mut local = Tracker::new();
    let h_range = q.map(|q| q.h_range());
    for k in 0..n_all {
        let pre = xp[k] + hp[k];
        let (y, m_pre, m_h);
        match q {
            Some(q) => {
                let s = q.scale[0];
                let (pc, m) = sat16(code32(xp[k], s) + code32(hp[k], s));
                let yc = if relu {
                    pc.max(0)
                } else {
                    q.luts[0][(pc + 32768) as usize] as i32
                };
                code[k] = q.out(yc);
                out.h[k] = q.h_value(code[k]);
                y = yc as f32 / if relu { s } else { 32768.0 };
                m_pre = m;
                let (lo, hi) = h_range.unwrap();
                m_h = if y >= lo && y <= hi { 1.0 } else { 0.0 };
            }
            None => {
                y = if relu { pre.max(0.0) } else { pre.tanh() };
                out.h[k] = y;
                (m_pre, m_h) = (1.0, 1.0);
            }
        }
        local.gate_absmax[0] = local.gate_absmax[0].max(pre.abs());
        local.h_min = local.h_min.min(y);
        local.h_max = local.h_max.max(y);
        if grad {
            out.dx[k] = m_h
                * if relu {
                    if pre > 0.0 {
                        m_pre
                    } else {
                        0.0
                    }
                } else {
                    let t = pre.tanh();
                    1.0 - t * t
                };
        }
    }
    if let Some(t) = tr {
        t.merge(&local);
    }
}

/// A GRU or RNN layer over the per-step inputs.
fn recurrent_layer(
    cx: &LayerCtx,
    cell: CellKind,
    xs: Vec<Tensor<2>>,
    luts: &mut LutCache,
) -> (Vec<Tensor<2>>, Option<LayerRanges>) {
    let (b, h, grad, device) = (cx.b, cx.h, cx.dp.grad, cx.device);
    let gru = cell == CellKind::Gru;
    // A GRU keeps `b_hh` apart, on the recurrent accumulator's grid `s_h · s_whh[r]`
    // (`W_hn h + b_hn` is multiplied by r); an RNN sums both biases, as an LSTM.
    let [w_ih, w_hh, b_ih, b_hh] = cx.weights(if gru {
        cx.grids.map(|g| g.h.scale)
    } else {
        None
    });
    let (w_ih_t, w_hh_t) = (w_ih.transpose(), w_hh.transpose());
    let q = cx.grids.as_ref().map(|g| QRec::new(cell, g, luts));
    let mut tracker = Tracker::new();
    // Reset state: h = z_h (real 0).
    let mut hs: Tensor<2> = Tensor::<2>::zeros([b, h], device);
    let mut code = vec![0i32; b * h];
    let mut prev = vec![0f32; b * h];
    let mut st = RecStep::default();
    let mut outs = Vec::with_capacity(xs.len());
    let take = std::mem::take;
    for x_t in xs {
        let xp = x_t.matmul(w_ih_t.clone()).add(b_ih.clone());
        let hp = hs.clone().matmul(w_hh_t.clone()).add(b_hh.clone());
        let (xv, hv) = (host(xp.clone()), host(hp.clone()));
        let tr = cx.track.then_some(&mut tracker);
        if gru {
            gru_step(
                &xv,
                &hv,
                &mut code,
                &prev,
                b,
                h,
                q.as_ref(),
                grad,
                tr,
                &mut st,
            );
        } else {
            let relu = cell == CellKind::RnnRelu;
            rnn_step(
                &xv,
                &hv,
                &mut code,
                relu,
                b,
                h,
                q.as_ref(),
                grad,
                tr,
                &mut st,
            );
        }
        prev.copy_from_slice(&st.h);
        let h_val = cx.hd(take(&mut st.h), [b, h]);
        hs = if grad && gru {
            let rows = [b, 3 * h];
            let lin = (xp * cx.hd(take(&mut st.dx), rows) + hp * cx.hd(take(&mut st.dh), rows))
                .reshape([b, 3, h])
                .sum_dim(1)
                .reshape([b, h])
                + hs * cx.hd(take(&mut st.dprev), [b, h]);
            with_value(lin, h_val)
        } else if grad {
            with_value((xp + hp) * cx.hd(take(&mut st.dx), [b, h]), h_val)
        } else {
            h_val
        };
        outs.push(hs.clone());
    }
    (outs, cx.track.then(|| tracker.ranges()))
}

/// Runs the model over token windows `[b, t]` (row-major ids) from the reset state.
///
/// The matrix products run in burn; the element-wise part of each recurrent step
/// (activations / tables, cell update, fake quantization) is computed on the host in one
/// pass ([`cell_step`], [`gru_step`], [`rnn_step`]), and with `dp.grad` its gradient
/// enters the autodiff graph as a few linear ops with the host-computed local
/// derivatives as constants.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    p: &Params,
    dp: &DeviceParams,
    tokens: &[i64],
    b: usize,
    t: usize,
    mode: Mode,
    qs: &QuantState,
    luts: &mut LutCache,
    track: bool,
    device: &Device,
) -> Forward {
    let arch = &p.arch;
    // Embedding: affine int8 over the table's own range (as `irnn quantize`).
    let emb = dp.tensors[0].clone();
    let (emb, mut in_q) = match mode {
        Mode::Float => (emb, None),
        Mode::Qat => {
            let d = &p.params[0].data;
            let lo = d.iter().fold(f32::INFINITY, |m, v| m.min(*v));
            let hi = d.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let q = affine_from_range(lo, hi);
            (fq_affine(emb, q), Some(q))
        }
    };
    // Per-step layer inputs `[b, in]` (one `select` per step: per-step slices of one big
    // tensor would cost a full-size zero tensor each in the backward pass).
    let mut xs: Vec<Tensor<2>> = (0..t)
        .map(|s| {
            let ids: Vec<i32> = (0..b).map(|r| tokens[r * t + s] as i32).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(ids, [b]), device);
            emb.clone().select(0, idx)
        })
        .collect();
    let mut stats = Vec::new();
    let mut last_h = arch.embed_dim;
    for (k, &h) in arch.hidden.iter().enumerate() {
        let cell = arch.cell(k);
        let grids = (mode == Mode::Qat).then(|| qs.grids(k, cell));
        let cx = LayerCtx {
            dp,
            base: 1 + 4 * k,
            b,
            h,
            in_q,
            grids,
            track,
            device,
        };
        let (outs, ranges) = match cell {
            CellKind::Lstm => lstm_layer(&cx, xs, luts),
            _ => recurrent_layer(&cx, cell, xs, luts),
        };
        stats.extend(ranges);
        xs = outs;
        in_q = grids.map(|g| g.h);
        last_h = h;
    }
    // [t][b, h] → [b, t, h] → [b·t, h]
    let x = Tensor::stack::<3>(xs, 1).reshape([b * t, last_h]);
    let nl = p.params.len();
    let (w, bias) = (dp.tensors[nl - 2].clone(), dp.tensors[nl - 1].clone());
    let (w, bias) = match (mode, in_q) {
        (Mode::Qat, Some(xq)) => {
            let (wq, s) = fq_weight_rows(w);
            (wq, fq_bias(bias, xq.scale, s))
        }
        _ => (w, bias),
    };
    let logits = x.matmul(w.transpose()).add(bias);
    Forward { logits, stats }
}

/// Mean next-token cross entropy (nats) over windows `[b, t]`: logits at steps
/// `0..t-1` predict tokens at `1..t`.
pub fn next_token_loss(
    logits: Tensor<2>,
    tokens: &[i64],
    b: usize,
    t: usize,
    device: &Device,
) -> Tensor<1> {
    let o = logits.dims()[1];
    let lp =
        burn::tensor::activation::log_softmax(logits.reshape([b, t, o]).narrow(1, 0, t - 1), 2);
    let mut tg = Vec::with_capacity(b * (t - 1));
    for r in 0..b {
        for s in 1..t {
            tg.push(tokens[r * t + s] as i32);
        }
    }
    let tg = Tensor::<3, Int>::from_data(TensorData::new(tg, [b, t - 1, 1]), device);
    lp.gather(2, tg).mean().neg()
}

/// Host copy of a rank-2 tensor.
pub fn to_host(t: Tensor<2>) -> Vec<f32> {
    host(t)
}
