//! Fast tests on a tiny model (vocab 8, embedding 4, LSTM 16, linear 8).

use irnn_train::data::Tokens;
use irnn_train::export::{agreement, integer_logits, sim_logits};
use irnn_train::model::Params;
use irnn_train::qat::{forward, next_token_loss, DeviceParams, LutCache, Mode, QuantState};
use irnn_train::*;
use std::path::{Path, PathBuf};

mod support;
use support::opts;
const V: usize = 8;

/// Writes a tiny spec with random weights and a learnable token stream.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let spec = serde_json::json!({
        "name": "tiny",
        "weights": "tiny.safetensors",
        "input": {"kind": "tokens", "vocab_size": V},
        "layers": [
            {"op": "embedding", "prefix": "embed"},
            {"op": "lstm", "prefix": "rnn", "num_layers": 1},
            {"op": "linear", "prefix": "head"}
        ]
    });
    let arch = model::Arch {
        name: "tiny".into(),
        vocab: V,
        embed_dim: 4,
        hidden: vec![16],
        cells: vec![model::CellKind::Lstm],
        out: V,
        layer_names: vec!["embed".into(), "rnn.l0".into(), "head".into()],
    };
    let p = Params::init(&arch, 7);
    let sp = support::write_spec(dir, &spec, &p);
    let dp = support::write_counter_data(dir, V);
    (sp, dp)
}

#[test]
fn gradients_flow_through_fake_quant_and_pwl() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data) = setup(dir.path());
    let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let p = Params::from_float(&float).unwrap();
    let toks = Tokens::load(&data, V).unwrap();
    let w = &toks.data[..8 * toks.t];
    let mut qs = QuantState::default();
    let mut luts = LutCache::default();
    let dev = cpu();
    let f = forward(
        &p,
        &DeviceParams::upload(&p, &dev, false),
        w,
        8,
        toks.t,
        Mode::Float,
        &qs,
        &mut luts,
        true,
        &dev,
    );
    qs.update(&f.stats, 0.9);
    let ad = cpu().autodiff();
    let dp = DeviceParams::upload(&p, &ad, true);
    let f = forward(&p, &dp, w, 8, toks.t, Mode::Qat, &qs, &mut luts, false, &ad);
    let grads = next_token_loss(f.logits, w, 8, toks.t, &ad).backward();
    for (q, t) in p.params.iter().zip(&dp.tensors) {
        let g: Vec<f32> = t
            .grad(&grads)
            .expect("a gradient")
            .into_data()
            .try_to_vec()
            .unwrap();
        let norm: f32 = g.iter().map(|v| v * v).sum();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{}: gradient norm {norm}",
            q.name
        );
    }
}

#[test]
fn qat_loss_goes_down_and_export_reproduces_the_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data) = setup(dir.path());
    let (o, r, first, last) = support::train_qat(dir.path(), &spec, &data, 60);
    assert!(last < first - 0.5, "loss {first} → {last}");
    assert!(r.valid_bits.unwrap() < first);
    // The exported integer graph reproduces the simulated QAT model.
    let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let arch = Params::from_float(&float).unwrap().arch;
    let st = checkpoint::load(o.checkpoint.as_ref().unwrap(), &arch).unwrap();
    assert!(st.quant.frozen);
    let toks = Tokens::load(&data, V).unwrap();
    let (n, t) = (toks.n, toks.t);
    let sim = sim_logits(&st.params, &st.quant, &toks.data, n, t, Mode::Qat, &cpu());
    let int = integer_logits(&o.output, &toks.data, n, t).unwrap();
    let ag = agreement(&sim, &int, &toks.data, n, t);
    eprintln!("{ag:?}");
    assert!(ag.top1 >= 0.98, "{ag:?}");
    assert!((ag.bpt_a - ag.bpt_b).abs() < 0.02, "{ag:?}");
}

#[test]
fn checkpoints_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data) = setup(dir.path());
    // 12 steps in one go.
    let mut a = opts(dir.path(), &spec, &data, 12);
    a.valid = None;
    a.checkpoint = Some(dir.path().join("a.ck"));
    a.checkpoint_every = 0;
    train(&a, &mut |_| {}).unwrap();
    // 6 steps, then resume to 12 (crossing the range freeze at step 10).
    let mut b = a.clone();
    b.checkpoint = Some(dir.path().join("b.ck"));
    b.output = dir.path().join("b.irnn.json");
    b.steps = 6;
    train(&b, &mut |_| {}).unwrap();
    b.steps = 12;
    let mut resumed = None;
    train(&b, &mut |p| {
        if let Progress::Resumed { step } = p {
            resumed = Some(*step)
        }
    })
    .unwrap();
    assert_eq!(resumed, Some(6));
    let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let arch = Params::from_float(&float).unwrap().arch;
    let sa = checkpoint::load(a.checkpoint.as_ref().unwrap(), &arch).unwrap();
    let sb = checkpoint::load(b.checkpoint.as_ref().unwrap(), &arch).unwrap();
    assert_eq!(sa.step, 12);
    assert_eq!(sb.step, 12);
    assert_eq!(sa.quant, sb.quant);
    for (x, y) in sa.params.params.iter().zip(&sb.params.params) {
        let d = x
            .data
            .iter()
            .zip(&y.data)
            .fold(0f32, |m, (u, v)| m.max((u - v).abs()));
        assert!(d < 1e-5, "{}: max diff {d}", x.name);
    }
    assert!(!std::fs::read(&a.output).unwrap().is_empty());
}

/// The earlier all-burn-ops formulation of the forward pass (one burn op per
/// element-wise operation, STE as `x + (q − x).detach()`, LUTs gathered on the device):
/// an independent reference for the values and gradients of the host cell step.
#[allow(clippy::too_many_arguments)]
fn reference_logits(
    p: &Params,
    dp: &DeviceParams,
    tokens: &[i64],
    b: usize,
    t: usize,
    mode: Mode,
    qs: &QuantState,
    device: &burn::tensor::Device,
) -> burn::tensor::Tensor<2> {
    use burn::tensor::activation::{sigmoid, tanh};
    use burn::tensor::{Int, Tensor, TensorData};
    use irnn_codegen::ir::Activation;
    use irnn_codegen::quantize::affine_from_range;
    use irnn_train::qat::{fq_weight_rows, table};
    type T2 = Tensor<2>;
    let ste = |x: T2, q: &dyn Fn(T2) -> T2| {
        let xd = x.clone().detach();
        x + (q(xd.clone()) - xd)
    };
    let affine = |x: T2, q: irnn_codegen::graph::AffineQuant| {
        let s = q.scale;
        let lo = (-128 - q.zero_point) as f64 * s;
        let hi = (127 - q.zero_point) as f64 * s;
        ste(x.clamp(lo, hi), &|d| d.div_scalar(s).round().mul_scalar(s))
    };
    let bias_q = |bias: T2, s_in: f64, s_w: T2| {
        let grid = s_w.transpose().mul_scalar(s_in);
        ste(bias, &|d| d.div(grid.clone()).round().mul(grid.clone()))
    };
    let lut = |f: Activation, k: u32| -> Vec<f32> {
        let tb = table(f, k);
        let pw = tb.as_pwl();
        (-32768..=32767)
            .map(|x| irnn_runtime::requant::saturate_i16(pw.eval(x)) as f32 / 32768.0)
            .collect()
    };
    let table_of = |x: T2, values: Vec<f32>, k: u32| {
        let n = x.dims();
        let code = x
            .detach()
            .mul_scalar((1u64 << k) as f64)
            .round()
            .clamp(-32768.0, 32767.0)
            .add_scalar(32768.0)
            .int()
            .reshape([n[0] * n[1]]);
        Tensor::<1>::from_data(TensorData::new(values, [65536]), device)
            .select(0, code)
            .reshape(n)
    };
    let ids: Vec<i32> = tokens.iter().map(|&v| v as i32).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), device);
    let emb = dp.tensors[0].clone();
    let (mut x, mut in_q) = match mode {
        Mode::Float => (emb.select(0, idx), None),
        Mode::Qat => {
            let d = &p.params[0].data;
            let lo = d.iter().fold(f32::INFINITY, |m, v| m.min(*v));
            let hi = d.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let q = affine_from_range(lo, hi);
            (affine(emb, q).select(0, idx), Some(q))
        }
    };
    for (k, &h) in p.arch.hidden.iter().enumerate() {
        let base = 1 + 4 * k;
        let (mut w_ih, mut w_hh) = (dp.tensors[base].clone(), dp.tensors[base + 1].clone());
        let mut bias = dp.tensors[base + 2].clone() + dp.tensors[base + 3].clone();
        let gr = (mode == Mode::Qat).then(|| qs.grids(k, model::CellKind::Lstm));
        if let Some(xq) = in_q {
            let (wi, si) = fq_weight_rows(w_ih);
            w_ih = wi;
            w_hh = fq_weight_rows(w_hh).0;
            bias = bias_q(bias, xq.scale, si);
        }
        let xp = x.matmul(w_ih.transpose()).add(bias).reshape([b, t, 4 * h]);
        let w_hh_t = w_hh.transpose();
        let mut hs = T2::zeros([b, h], device);
        let mut c = T2::zeros([b, h], device);
        let mut outs = Vec::new();
        for s in 0..t {
            let pre =
                xp.clone().narrow(1, s, 1).reshape([b, 4 * h]) + hs.clone().matmul(w_hh_t.clone());
            let gate = |g: usize| {
                let z = pre.clone().narrow(1, g * h, h);
                let a = if g == 2 {
                    tanh(z.clone())
                } else {
                    sigmoid(z.clone())
                };
                match gr {
                    Some(gr) => {
                        let f = if g == 2 {
                            Activation::Tanh
                        } else {
                            Activation::Sigmoid
                        };
                        let k = gr.gate_frac_bits[g];
                        let v = table_of(z, lut(f, k), k);
                        let ad = a.clone().detach();
                        a + (v - ad)
                    }
                    None => a,
                }
            };
            let (i, f, g, o) = (gate(0), gate(1), gate(2), gate(3));
            match gr {
                Some(gr) => {
                    let cf = gr.cell_frac_bits;
                    let sc = (1u64 << cf) as f64;
                    let fc = ste(f * c, &|d| d.mul_scalar(sc).round().div_scalar(sc));
                    let ig = ste(i * g, &|d| d.mul_scalar(sc).round().div_scalar(sc));
                    let sum = (fc + ig).clamp(-32768.0 / sc, 32767.0 / sc);
                    c = ste(sum, &|d| d.mul_scalar(sc).round().div_scalar(sc));
                    let tc = tanh(c.clone());
                    let v = table_of(c.clone(), lut(Activation::Tanh, cf), cf);
                    let tcd = tc.clone().detach();
                    hs = affine(o * (tc + (v - tcd)), gr.h);
                }
                None => {
                    c = f * c + i * g;
                    hs = o * tanh(c.clone());
                }
            }
            outs.push(hs.clone());
        }
        x = Tensor::stack::<3>(outs, 1).reshape([b * t, h]);
        in_q = gr.map(|g| g.h);
    }
    let nl = p.params.len();
    let (mut w, mut bias) = (dp.tensors[nl - 2].clone(), dp.tensors[nl - 1].clone());
    if let Some(xq) = in_q {
        let (wq, s) = fq_weight_rows(w);
        w = wq;
        bias = bias_q(bias, xq.scale, s);
    }
    x.matmul(w.transpose()).add(bias)
}

#[test]
fn host_cell_values_and_gradients_match_the_burn_op_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data) = setup(dir.path());
    let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let one = Params::from_float(&float).unwrap();
    // Also two layers of different widths (the second layer's input is the first's
    // per-step output).
    let mut arch = one.arch.clone();
    arch.hidden = vec![16, 12];
    arch.cells = vec![model::CellKind::Lstm; 2];
    arch.layer_names = vec![
        "embed".into(),
        "rnn.l0".into(),
        "rnn.l1".into(),
        "head".into(),
    ];
    let two = Params::init(&arch, 11);
    for p in [one, two] {
        compare_with_reference(&p, &data);
    }
}

fn compare_with_reference(p: &Params, data: &Path) {
    let p = p.clone();
    let toks = Tokens::load(data, V).unwrap();
    let (b, t) = (8, toks.t);
    let w = &toks.data[..b * t];
    let mut qs = QuantState::default();
    let mut luts = LutCache::default();
    let dev = cpu();
    let f = forward(
        &p,
        &DeviceParams::upload(&p, &dev, false),
        w,
        b,
        t,
        Mode::Float,
        &qs,
        &mut luts,
        true,
        &dev,
    );
    qs.update(&f.stats, 0.9);
    let ad = cpu().autodiff();
    for mode in [Mode::Float, Mode::Qat] {
        let dp = DeviceParams::upload(&p, &ad, true);
        let ours = forward(&p, &dp, w, b, t, mode, &qs, &mut luts, false, &ad).logits;
        let dr = DeviceParams::upload(&p, &ad, true);
        let theirs = reference_logits(&p, &dr, w, b, t, mode, &qs, &ad);
        let lo: Vec<f32> = ours.clone().into_data().try_to_vec().unwrap();
        let lr: Vec<f32> = theirs.clone().into_data().try_to_vec().unwrap();
        let dmax = lo
            .iter()
            .zip(&lr)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{mode:?}: max |Δlogit| {dmax}");
        assert!(dmax < 1e-4, "{mode:?}: max |Δlogit| {dmax}");
        let go = next_token_loss(ours, w, b, t, &ad).backward();
        let gr = next_token_loss(theirs, w, b, t, &ad).backward();
        for (k, q) in p.params.iter().enumerate() {
            let g = |t: &burn::tensor::Tensor<2>, gs| -> Vec<f32> {
                t.grad(gs).unwrap().into_data().try_to_vec().unwrap()
            };
            let (a, r) = (g(&dp.tensors[k], &go), g(&dr.tensors[k], &gr));
            let diff: f32 = a.iter().zip(&r).map(|(x, y)| (x - y) * (x - y)).sum();
            let norm: f32 = r.iter().map(|y| y * y).sum();
            let rel = (diff / norm).sqrt();
            eprintln!("{mode:?} {}: relative gradient difference {rel:e}", q.name);
            assert_eq!(a.len(), q.data.len());
            assert!(norm > 0.0 && rel < 1e-4, "{mode:?} {}: {rel}", q.name);
        }
    }
}
