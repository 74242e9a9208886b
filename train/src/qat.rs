//! The QAT forward pass in burn: the float LSTM with the integer scheme of
//! docs/NUMERICS.md simulated by fake quantization and straight-through estimators.

use crate::model::Params;
use burn::tensor::{Device, Int, Tensor, TensorData};
use irnn_codegen::graph::AffineQuant;
use irnn_codegen::ir::{Activation, PwlTable};
use irnn_codegen::pwl::{fit, FitOptions};
use irnn_codegen::quantize::{affine_from_range, frac_bits_for};
use std::collections::HashMap;
use std::sync::Arc;

/// Lowest gate pre-activation fractional bits (as `irnn quantize`).
pub const GATE_FRAC_MIN: u32 = 10;
/// Highest gate pre-activation fractional bits.
pub const GATE_FRAC_MAX: u32 = 13;

/// Tracked activation ranges of one LSTM layer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerRanges {
    /// Largest |pre-activation| per gate (i, f, g, o).
    pub gate_absmax: [f64; 4],
    /// Largest |c|.
    pub cell_absmax: f64,
    /// Hidden state minimum.
    pub h_min: f64,
    /// Hidden state maximum.
    pub h_max: f64,
}

/// The quantization state: ranges (EMA during warm-up, then frozen).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantState {
    /// One entry per LSTM layer.
    pub layers: Vec<LayerRanges>,
    /// Whether the ranges have been initialized from a first observation.
    pub initialized: bool,
    /// Whether the ranges are frozen.
    pub frozen: bool,
}

/// Grids derived from the ranges of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerGrids {
    /// Gate pre-activation fractional bits.
    pub gate_frac_bits: [u32; 4],
    /// Cell state fractional bits.
    pub cell_frac_bits: u32,
    /// Hidden state quantization.
    pub h: AffineQuant,
}

impl QuantState {
    /// The grids of layer `k`.
    pub fn grids(&self, k: usize) -> LayerGrids {
        let r = &self.layers[k];
        let mut g = [0; 4];
        for (i, a) in r.gate_absmax.iter().enumerate() {
            g[i] = frac_bits_for(a.max(1e-6), GATE_FRAC_MIN, GATE_FRAC_MAX);
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

/// Float values (Q0.15 codes / 2^15) of every int16 input code of the compiler's table.
#[derive(Default)]
pub struct LutCache {
    host: HashMap<(Activation, u32), Arc<Vec<f32>>>,
}

impl LutCache {
    fn values(&mut self, f: Activation, k: u32) -> Arc<Vec<f32>> {
        self.host
            .entry((f, k))
            .or_insert_with(|| {
                let t = table(f, k);
                let p = t.as_pwl();
                Arc::new(
                    (-32768..=32767)
                        .map(|x| irnn_runtime::requant::saturate_i16(p.eval(x)) as f32 / 32768.0)
                        .collect(),
                )
            })
            .clone()
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
    let mut local = Tracker {
        gate_absmax: [0.0; 4],
        cell_absmax: 0.0,
        h_min: f32::INFINITY,
        h_max: f32::NEG_INFINITY,
    };
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
        for g in 0..4 {
            t.gate_absmax[g] = t.gate_absmax[g].max(local.gate_absmax[g]);
        }
        t.cell_absmax = t.cell_absmax.max(local.cell_absmax);
        t.h_min = t.h_min.min(local.h_min);
        t.h_max = t.h_max.max(local.h_max);
    }
}

/// A tensor whose value is `value` (exactly) and whose gradient flows into `lin`
/// (identity): `(lin − detach(lin)) + value`.
fn with_value(lin: Tensor<2>, value: Tensor<2>) -> Tensor<2> {
    (lin.clone() - lin.detach()) + value
}

/// Runs the model over token windows `[b, t]` (row-major ids) from the reset state.
///
/// The matrix products run in burn; the element-wise part of each LSTM step (gate
/// activations / tables, cell update, fake quantization) is computed on the host in one
/// pass ([`cell_step`]), and with `dp.grad` its gradient enters the autodiff graph as a
/// few linear ops with the host-computed local derivatives as constants.
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
    let grad = dp.grad;
    let hd =
        |v: Vec<f32>, shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, shape), device);
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
        let base = 1 + 4 * k;
        let (w_ih, w_hh) = (dp.tensors[base].clone(), dp.tensors[base + 1].clone());
        let bias = dp.tensors[base + 2].clone() + dp.tensors[base + 3].clone();
        let grids = if mode == Mode::Qat {
            Some(qs.grids(k))
        } else {
            None
        };
        let (w_ih, w_hh, bias) = match (mode, in_q) {
            (Mode::Qat, Some(xq)) => {
                let (wi, si) = fq_weight_rows(w_ih);
                let (wh, _) = fq_weight_rows(w_hh);
                (wi, wh, fq_bias(bias, xq.scale, si))
            }
            _ => (w_ih, w_hh, bias),
        };
        let (w_ih_t, w_hh_t) = (w_ih.transpose(), w_hh.transpose());
        let qcell = grids.as_ref().map(|g| QCell::new(g, luts));
        let mut tracker = Tracker {
            gate_absmax: [0.0; 4],
            cell_absmax: 0.0,
            h_min: f32::INFINITY,
            h_max: f32::NEG_INFINITY,
        };
        // Reset state: h = z_h codes = real 0; c = 0.
        let mut hs: Tensor<2> = Tensor::<2>::zeros([b, h], device);
        let mut c: Tensor<2> = Tensor::<2>::zeros([b, h], device);
        let mut c_host = vec![0f32; b * h];
        let mut cs = CellStep::default();
        let mut outs = Vec::with_capacity(t);
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
                track.then_some(&mut tracker),
                &mut cs,
            );
            c_host.copy_from_slice(&cs.c);
            let take = std::mem::take;
            let c_val = hd(take(&mut cs.c), [b, h]);
            let h_val = hd(take(&mut cs.h), [b, h]);
            if grad {
                let c_lin = (pre.clone().narrow(1, 0, 3 * h)
                    * hd(take(&mut cs.dc_dpre), [b, 3 * h]))
                .reshape([b, 3, h])
                .sum_dim(1)
                .reshape([b, h])
                    + c * hd(take(&mut cs.dc_dcprev), [b, h]);
                c = with_value(c_lin, c_val);
                let h_lin = pre.narrow(1, 3 * h, h) * hd(take(&mut cs.dh_dpre_o), [b, h])
                    + c.clone() * hd(take(&mut cs.dh_dc), [b, h]);
                hs = with_value(h_lin, h_val);
            } else {
                c = c_val;
                hs = h_val;
            }
            outs.push(hs.clone());
        }
        if track {
            stats.push(LayerRanges {
                gate_absmax: tracker.gate_absmax.map(|v| v as f64),
                cell_absmax: tracker.cell_absmax as f64,
                h_min: tracker.h_min as f64,
                h_max: tracker.h_max as f64,
            });
        }
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
