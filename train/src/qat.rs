//! The QAT forward pass in burn: the float LSTM with the integer scheme of
//! docs/NUMERICS.md simulated by fake quantization and straight-through estimators.

use crate::model::Params;
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Int, Tensor, TensorData};
use irnn_codegen::graph::AffineQuant;
use irnn_codegen::ir::{Activation, PwlTable};
use irnn_codegen::pwl::{fit, FitOptions};
use irnn_codegen::quantize::{affine_from_range, frac_bits_for};
use std::collections::HashMap;

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
    host: HashMap<(Activation, u32), Vec<f32>>,
    gate: HashMap<(usize, [u32; 4]), Tensor<1>>,
    cell: HashMap<u32, Tensor<1>>,
}

impl LutCache {
    fn values(&mut self, f: Activation, k: u32) -> &Vec<f32> {
        self.host.entry((f, k)).or_insert_with(|| {
            let t = table(f, k);
            let p = t.as_pwl();
            (-32768..=32767)
                .map(|x| irnn_runtime::requant::saturate_i16(p.eval(x)) as f32 / 32768.0)
                .collect()
        })
    }

    fn gate_lut(&mut self, key: usize, fb: [u32; 4], device: &Device) -> Tensor<1> {
        if let Some(t) = self.gate.get(&(key, fb)) {
            return t.clone();
        }
        let mut all = Vec::with_capacity(4 * 65536);
        for g in 0..4 {
            let f = if g == 2 {
                Activation::Tanh
            } else {
                Activation::Sigmoid
            };
            all.extend_from_slice(self.values(f, fb[g]));
        }
        let t = Tensor::<1>::from_data(TensorData::new(all, [4 * 65536]), device);
        self.gate.insert((key, fb), t.clone());
        t
    }

    fn cell_lut(&mut self, cf: u32, device: &Device) -> Tensor<1> {
        if let Some(t) = self.cell.get(&cf) {
            return t.clone();
        }
        let v = self.values(Activation::Tanh, cf).clone();
        let t = Tensor::<1>::from_data(TensorData::new(v, [65536]), device);
        self.cell.insert(cf, t.clone());
        t
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
        DeviceParams { tensors }
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

/// Round onto the `2^-fb` grid with int16 saturation (STE inside the range).
fn fq_pot16(x: Tensor<2>, fb: u32) -> Tensor<2> {
    let sc = (1u64 << fb) as f64;
    let xc = x.clamp(-32768.0 / sc, 32767.0 / sc);
    ste(xc, move |d| d.mul_scalar(sc).round().div_scalar(sc))
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

/// Runs the model over token windows `[b, t]` (row-major ids) from the reset state.
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
    let ids: Vec<i32> = tokens.iter().map(|&v| v as i32).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), device);
    // Embedding: affine int8 over the table's own range (as `irnn quantize`).
    let emb = dp.tensors[0].clone();
    let (mut x, mut in_q) = match mode {
        Mode::Float => (emb.select(0, idx), None),
        Mode::Qat => {
            let d = &p.params[0].data;
            let lo = d.iter().fold(f32::INFINITY, |m, v| m.min(*v));
            let hi = d.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let q = affine_from_range(lo, hi);
            (fq_affine(emb, q).select(0, idx), Some(q))
        }
    };
    let mut stats = Vec::new();
    let mut input = arch.embed_dim;
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
        let _ = input;
        let xp = x.matmul(w_ih.transpose()).add(bias).reshape([b, t, 4 * h]);
        let w_hh_t = w_hh.transpose();
        // Gate LUT inputs: per-column scale 2^k_g and offset into the 4 concatenated LUTs.
        let (lut, col_scale, col_off) = match grids {
            Some(gr) => {
                let mut sc = Vec::with_capacity(4 * h);
                let mut off = Vec::with_capacity(4 * h);
                for g in 0..4 {
                    for _ in 0..h {
                        sc.push((1u64 << gr.gate_frac_bits[g]) as f32);
                        off.push((32768 + g * 65536) as f32);
                    }
                }
                (
                    Some(luts.gate_lut(k, gr.gate_frac_bits, device)),
                    Some(Tensor::<2>::from_data(
                        TensorData::new(sc, [1, 4 * h]),
                        device,
                    )),
                    Some(Tensor::<2>::from_data(
                        TensorData::new(off, [1, 4 * h]),
                        device,
                    )),
                )
            }
            None => (None, None, None),
        };
        let cell_lut = grids.map(|g| luts.cell_lut(g.cell_frac_bits, device));
        // Reset state: h = z_h codes = real 0; c = 0.
        let mut hs: Tensor<2> = Tensor::<2>::zeros([b, h], device);
        let mut c: Tensor<2> = Tensor::<2>::zeros([b, h], device);
        let mut outs = Vec::with_capacity(t);
        let (mut pres, mut cs, mut raws) = (Vec::new(), Vec::new(), Vec::new());
        for step in 0..t {
            let pre = xp.clone().narrow(1, step, 1).reshape([b, 4 * h])
                + hs.clone().matmul(w_hh_t.clone());
            if track {
                pres.push(pre.clone().detach());
            }
            let sig_if = sigmoid(pre.clone().narrow(1, 0, 2 * h));
            let tanh_g = tanh(pre.clone().narrow(1, 2 * h, h));
            let sig_o = sigmoid(pre.clone().narrow(1, 3 * h, h));
            let act = Tensor::cat(vec![sig_if, tanh_g, sig_o], 1);
            let act = match (&lut, &col_scale, &col_off) {
                (Some(lut), Some(sc), Some(off)) => {
                    let code = pre
                        .detach()
                        .mul(sc.clone())
                        .round()
                        .clamp(-32768.0, 32767.0)
                        .add(off.clone())
                        .int()
                        .reshape([b * 4 * h]);
                    let v = lut.clone().select(0, code).reshape([b, 4 * h]);
                    let ad = act.clone().detach();
                    act + (v - ad)
                }
                _ => act,
            };
            let i = act.clone().narrow(1, 0, h);
            let f = act.clone().narrow(1, h, h);
            let g = act.clone().narrow(1, 2 * h, h);
            let o = act.narrow(1, 3 * h, h);
            match grids {
                Some(gr) => {
                    let cf = gr.cell_frac_bits;
                    // Two separately rounded terms, then int16 saturation (as the kernel).
                    let sc = (1u64 << cf) as f64;
                    let fc = ste(f * c, |d| d.mul_scalar(sc).round().div_scalar(sc));
                    let ig = ste(i * g, |d| d.mul_scalar(sc).round().div_scalar(sc));
                    c = fq_pot16(fc + ig, cf);
                    if track {
                        cs.push(c.clone().detach());
                    }
                    let tc = tanh(c.clone());
                    let code = c
                        .clone()
                        .detach()
                        .mul_scalar(sc)
                        .round()
                        .clamp(-32768.0, 32767.0)
                        .add_scalar(32768.0)
                        .int()
                        .reshape([b * h]);
                    let v = cell_lut.clone().unwrap().select(0, code).reshape([b, h]);
                    let tcd = tc.clone().detach();
                    let tc = tc + (v - tcd);
                    let hr = o * tc;
                    if track {
                        raws.push(hr.clone().detach());
                    }
                    hs = fq_affine(hr, gr.h);
                    outs.push(hs.clone());
                }
                None => {
                    c = f * c + i * g;
                    if track {
                        cs.push(c.clone().detach());
                    }
                    hs = o * tanh(c.clone());
                    if track {
                        raws.push(hs.clone().detach());
                    }
                    outs.push(hs.clone());
                }
            }
        }
        if track {
            let pre = host(Tensor::cat(pres, 0).abs().max_dim(0));
            let mut ga = [0f64; 4];
            for g in 0..4 {
                ga[g] = pre[g * h..(g + 1) * h].iter().fold(0f32, |m, v| m.max(*v)) as f64;
            }
            let cmax = host(Tensor::cat(cs, 0).abs().max().reshape([1, 1]))
                .iter()
                .fold(0f32, |m, v| m.max(*v));
            let r = Tensor::cat(raws, 0);
            let hmin = host(r.clone().min().reshape([1, 1]))[0];
            let hmax = host(r.max().reshape([1, 1]))[0];
            stats.push(LayerRanges {
                gate_absmax: ga,
                cell_absmax: cmax as f64,
                h_min: hmin as f64,
                h_max: hmax as f64,
            });
        }
        // [t][b, h] → [b, t, h] → [b·t, h]
        x = Tensor::stack::<3>(outs, 1).reshape([b * t, h]);
        in_q = grids.map(|g| g.h);
        input = h;
    }
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
