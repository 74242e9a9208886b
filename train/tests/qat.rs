//! Fast tests on a tiny model (vocab 8, embedding 4, LSTM 16, linear 8).

use irnn_train::data::{Rng, Tokens};
use irnn_train::export::{agreement, integer_logits, sim_logits};
use irnn_train::model::Params;
use irnn_train::qat::{forward, next_token_loss, DeviceParams, LutCache, Mode, QuantState};
use irnn_train::*;
use std::path::{Path, PathBuf};

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
        out: V,
        layer_names: vec!["embed".into(), "rnn.l0".into(), "head".into()],
    };
    let p = Params::init(&arch, 7);
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = p
        .params
        .iter()
        .map(|q| {
            (
                q.name.clone(),
                q.shape.clone(),
                q.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<_> = owned
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("tiny.safetensors"),
        safetensors::serialize(views, &None).unwrap(),
    )
    .unwrap();
    let sp = dir.join("tiny.json");
    std::fs::write(&sp, serde_json::to_string(&spec).unwrap()).unwrap();
    // A noisy counter: next = cur + 1 (mod V) most of the time.
    let mut rng = Rng(3);
    let (n, t) = (64, 24);
    let mut data = Vec::new();
    for _ in 0..n {
        let mut cur = rng.below(V) as i32;
        for _ in 0..t {
            data.push(cur);
            cur = if rng.below(10) == 0 {
                rng.below(V) as i32
            } else {
                (cur + 1) % V as i32
            };
        }
    }
    let dp = dir.join("train.npy");
    std::fs::write(
        &dp,
        irnn_codegen::npy::i32_npy_bytes(&[n, t], &data).unwrap(),
    )
    .unwrap();
    (sp, dp)
}

fn opts(dir: &Path, spec: &Path, data: &Path, steps: usize) -> TrainOptions {
    let mut o = TrainOptions::new(spec, data, dir.join("out.irnn.json"));
    o.steps = steps;
    o.lr = 1e-2;
    o.batch_size = 16;
    o.seq_len = 16;
    o.range_warmup_steps = 10;
    o.valid = Some(data.to_path_buf());
    o.valid_windows = 16;
    o
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
    let mut o = opts(dir.path(), &spec, &data, 60);
    o.checkpoint = Some(dir.path().join("ck.safetensors"));
    o.checkpoint_every = 0;
    let mut losses = Vec::new();
    let r = train(&o, &mut |p| {
        if let Progress::Step { bits, qat, .. } = p {
            assert!(*qat);
            losses.push(*bits);
        }
    })
    .unwrap();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
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
