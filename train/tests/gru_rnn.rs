//! QAT of GRU and Elman RNN layers (tanh, relu) and of mixed stacks, on tiny models
//! (vocab 8, embedding 4, hidden 12–16): the float pass against the compiler's float
//! reference, the QAT pass against the integer interpreter on the exported graph, the
//! host step's gradients against a burn-ops formulation, and short training runs.

use burn::tensor::{Int, Tensor, TensorData};
use irnn_codegen::float_ref::{FloatRunner, NoObserver};
use irnn_codegen::graph::Graph;
use irnn_train::data::Tokens;
use irnn_train::export::{agreement, export, integer_logits, sim_logits};
use irnn_train::model::{Arch, CellKind, Params};
use irnn_train::qat::{forward, next_token_loss, DeviceParams, LutCache, Mode, QuantState};
use irnn_train::*;
use std::path::{Path, PathBuf};

mod support;
const V: usize = 8;

/// Writes a spec with one PyTorch module per recurrent layer (`rnn{k}`, one layer each)
/// and random weights (PyTorch's initialization; a GRU's `b_hn` made 4× larger so that
/// where r multiplies it matters), and a learnable token stream (a noisy counter).
/// Returns the spec and the data.
fn setup(dir: &Path, cells: &[CellKind], hidden: &[usize], seed: u64) -> (PathBuf, PathBuf) {
    let mut layers = vec![serde_json::json!({"op": "embedding", "prefix": "embed"})];
    let mut names = vec!["embed".to_string()];
    for (k, c) in cells.iter().enumerate() {
        let prefix = format!("rnn{k}");
        layers.push(match c {
            CellKind::Lstm => serde_json::json!({"op": "lstm", "prefix": prefix}),
            CellKind::Gru => serde_json::json!({"op": "gru", "prefix": prefix}),
            CellKind::RnnTanh => {
                serde_json::json!({"op": "rnn", "prefix": prefix, "nonlinearity": "tanh"})
            }
            CellKind::RnnRelu => {
                serde_json::json!({"op": "rnn", "prefix": prefix, "nonlinearity": "relu"})
            }
        });
        names.push(format!("{prefix}.l0"));
    }
    layers.push(serde_json::json!({"op": "linear", "prefix": "head"}));
    names.push("head".into());
    let spec = serde_json::json!({
        "name": "tiny",
        "weights": "tiny.safetensors",
        "input": {"kind": "tokens", "vocab_size": V},
        "layers": layers,
    });
    let arch = Arch {
        name: "tiny".into(),
        vocab: V,
        embed_dim: 4,
        hidden: hidden.to_vec(),
        cells: cells.to_vec(),
        out: V,
        layer_names: names,
    };
    let mut p = Params::init(&arch, seed);
    for (k, c) in cells.iter().enumerate() {
        if *c == CellKind::Gru {
            let h = hidden[k];
            let b_hh = &mut p.params[1 + 4 * k + 3];
            for v in &mut b_hh.data[2 * h..] {
                *v *= 4.0;
            }
        }
    }
    let sp = support::write_spec(dir, &spec, &p);
    let dp = support::write_counter_data(dir, V);
    (sp, dp)
}

/// The configurations tested: each cell alone, and mixed stacks.
fn configs() -> Vec<(&'static str, Vec<CellKind>, Vec<usize>)> {
    use CellKind::*;
    vec![
        ("gru", vec![Gru], vec![16]),
        ("rnn-tanh", vec![RnnTanh], vec![16]),
        ("rnn-relu", vec![RnnRelu], vec![16]),
        (
            "gru+lstm+rnn-relu",
            vec![Gru, Lstm, RnnRelu],
            vec![16, 12, 12],
        ),
    ]
}

/// Ranges from one float pass over the first 16 windows (as training starts).
fn float_ranges(p: &Params, toks: &Tokens) -> QuantState {
    let dev = cpu();
    let mut qs = QuantState::default();
    let f = forward(
        p,
        &DeviceParams::upload(p, &dev, false),
        &toks.data[..16 * toks.t],
        16,
        toks.t,
        Mode::Float,
        &qs,
        &mut LutCache::default(),
        true,
        &dev,
    );
    qs.update(&f.stats, 0.9);
    qs.frozen = true;
    qs
}

/// The float pass is PyTorch's GRU / RNN: it matches the compiler's float reference
/// (`float_ref`, which `irnn eval` scores), including where the reset gate applies
/// (`r ⊙ (W_hn h + b_hn)`, not `r ⊙ W_hn h + b_hn`, with a large `b_hn` here).
#[test]
fn float_pass_matches_the_float_reference() {
    for (what, cells, hidden) in configs() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, data) = setup(dir.path(), &cells, &hidden, 7);
        let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
        let p = Params::from_float(&float).unwrap();
        assert_eq!(p.arch.cells, cells);
        let toks = Tokens::load(&data, V).unwrap();
        let (n, t) = (8, toks.t);
        let w = &toks.data[..n * t];
        let sim = sim_logits(&p, &QuantState::default(), w, n, t, Mode::Float, &cpu());
        let mut runner = FloatRunner::new(&float);
        let mut dmax = 0f64;
        for s in 0..n {
            runner.reset();
            for step in 0..t {
                let y = runner.step_token(w[s * t + step] as usize, &mut NoObserver);
                for (a, b) in sim[s * t + step].iter().zip(y) {
                    dmax = dmax.max((a - *b as f64).abs());
                }
            }
        }
        eprintln!("{what}: float pass vs float_ref: max |Δlogit| {dmax:e}");
        assert!(dmax < 1e-4, "{what}: max |Δlogit| {dmax}");
    }
}

/// The QAT pass computes what the integer interpreter computes on the exported graph:
/// after the ranges of a float pass, the logits of the simulation and of the
/// interpreter agree to within the int32 logit grid on at least 60 % of the steps, with
/// the same top-1 on ≥ 99 % and bits/token within 0.005. Not bit-exact: the float32
/// partial sums from burn's products sometimes round to the neighbouring int16 code
/// of the exact int32 accumulator (one LSB of one unit), and the recurrence carries
/// that on (measured: GRU 97.7 %, RNN relu 98.2 %, RNN tanh 70.9 %, the mixed stack
/// with its LSTM 71.2 % of the steps within one grid step; top-1 100 %, |Δbits|
/// ≤ 5e-5 for all). A cell that differs from the interpreter's fails: swapping the GRU
/// blend's operands gives 0 % within one grid step (GRU and stack), reading the RNN tanh
/// table one code off gives 29.9 %.
#[test]
fn qat_pass_matches_the_interpreter_on_the_exported_graph() {
    let mut failures = Vec::new();
    for (what, cells, hidden) in configs() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, data) = setup(dir.path(), &cells, &hidden, 7);
        let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
        let p = Params::from_float(&float).unwrap();
        let toks = Tokens::load(&data, V).unwrap();
        let qs = float_ranges(&p, &toks);
        let out = dir.path().join("q.irnn.json");
        export(&p, &qs, &out, serde_json::json!({}), None).unwrap();
        let (n, t) = (toks.n, toks.t);
        let sim = sim_logits(&p, &qs, &toks.data, n, t, Mode::Qat, &cpu());
        let int = integer_logits(&out, &toks.data, n, t).unwrap();
        let ag = agreement(&sim, &int, &toks.data, n, t);
        // The int32 logit grid.
        let g = Graph::load(&out).unwrap();
        let s_out = irnn_codegen::lower::lower(&g).unwrap().output.scale_info;
        let close = sim
            .iter()
            .zip(&int)
            .filter(|(a, b)| a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= s_out))
            .count() as f64
            / sim.len() as f64;
        eprintln!("{what}: {ag:?}; logit grid {s_out:e}; steps within one grid step {close}");
        if close < 0.6 || ag.top1 < 0.99 || (ag.bpt_a - ag.bpt_b).abs() >= 0.005 {
            failures.push(format!("{what}: within one grid step {close}; {ag:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The float model in plain burn ops (autodiff does every derivative): the reference
/// for the host step's local derivatives.
fn burn_float_logits(
    p: &Params,
    dp: &DeviceParams,
    tokens: &[i64],
    b: usize,
    t: usize,
    device: &burn::tensor::Device,
) -> Tensor<2> {
    use burn::tensor::activation::{relu, sigmoid, tanh};
    type T2 = Tensor<2>;
    let ids: Vec<i32> = tokens.iter().map(|&v| v as i32).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), device);
    let mut x = dp.tensors[0].clone().select(0, idx);
    for (k, &h) in p.arch.hidden.iter().enumerate() {
        let base = 1 + 4 * k;
        let w = |i: usize| dp.tensors[base + i].clone();
        let rows = p.arch.cell(k).gates() * h;
        let xp_all = x.matmul(w(0).transpose()).add(w(2)).reshape([b, t, rows]);
        let w_hh_t = w(1).transpose();
        let mut hs = T2::zeros([b, h], device);
        let mut c = T2::zeros([b, h], device);
        let mut outs = Vec::new();
        for s in 0..t {
            let xp = xp_all.clone().narrow(1, s, 1).reshape([b, rows]);
            let hp = hs.clone().matmul(w_hh_t.clone()).add(w(3));
            let part = |v: &T2, g: usize| v.clone().narrow(1, g * h, h);
            hs = match p.arch.cell(k) {
                CellKind::Lstm => {
                    let pre = xp + hp;
                    let (i, f) = (sigmoid(part(&pre, 0)), sigmoid(part(&pre, 1)));
                    let (g, o) = (tanh(part(&pre, 2)), sigmoid(part(&pre, 3)));
                    c = f * c.clone() + i * g;
                    o * tanh(c.clone())
                }
                CellKind::Gru => {
                    let r = sigmoid(part(&xp, 0) + part(&hp, 0));
                    let z = sigmoid(part(&xp, 1) + part(&hp, 1));
                    let n = tanh(part(&xp, 2) + r * part(&hp, 2));
                    n.clone() + z * (hs - n)
                }
                CellKind::RnnTanh => tanh(xp + hp),
                CellKind::RnnRelu => relu(xp + hp),
            };
            outs.push(hs.clone());
        }
        x = Tensor::stack::<3>(outs, 1).reshape([b * t, h]);
    }
    let nl = p.params.len();
    x.matmul(dp.tensors[nl - 2].clone().transpose())
        .add(dp.tensors[nl - 1].clone())
}

fn grads(
    p: &Params,
    w: &[i64],
    b: usize,
    t: usize,
    mode: Option<(Mode, &QuantState)>,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let ad = cpu().autodiff();
    let dp = DeviceParams::upload(p, &ad, true);
    let logits = match mode {
        Some((mode, qs)) => {
            forward(
                p,
                &dp,
                w,
                b,
                t,
                mode,
                qs,
                &mut LutCache::default(),
                false,
                &ad,
            )
            .logits
        }
        None => burn_float_logits(p, &dp, w, b, t, &ad),
    };
    let values: Vec<f32> = logits.clone().into_data().try_to_vec().unwrap();
    let g = next_token_loss(logits, w, b, t, &ad).backward();
    let gs = dp
        .tensors
        .iter()
        .map(|x| x.grad(&g).unwrap().into_data().try_to_vec().unwrap())
        .collect();
    (values, gs)
}

/// The host step's values and gradients: in float, those of the plain burn-ops model
/// (every parameter within 1e-4 relative); in QAT (straight-through), finite, non-zero
/// and close in direction to the float gradient.
#[test]
fn host_step_gradients_match_burn_autodiff() {
    for (what, cells, hidden) in configs() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, data) = setup(dir.path(), &cells, &hidden, 11);
        let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
        let p = Params::from_float(&float).unwrap();
        let toks = Tokens::load(&data, V).unwrap();
        let (b, t) = (8, toks.t);
        let w = &toks.data[..b * t];
        let qs = float_ranges(&p, &toks);
        let (lo, go) = grads(&p, w, b, t, Some((Mode::Float, &qs)));
        let (lr, gr) = grads(&p, w, b, t, None);
        let (lq, gq) = grads(&p, w, b, t, Some((Mode::Qat, &qs)));
        let dmax = lo
            .iter()
            .zip(&lr)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(dmax < 1e-4, "{what}: max |Δlogit| {dmax}");
        let dq = lq
            .iter()
            .zip(&lo)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{what}: float vs burn max |Δlogit| {dmax:e}; QAT vs float {dq}");
        for (k, q) in p.params.iter().enumerate() {
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            let (a, r, s) = (&go[k], &gr[k], &gq[k]);
            let diff: f32 = a.iter().zip(r).map(|(x, y)| (x - y) * (x - y)).sum();
            let rel = (diff / dot(r, r)).sqrt();
            let cos = dot(s, a) / (dot(s, s) * dot(a, a)).sqrt();
            eprintln!(
                "{what} {}: float relative difference {rel:e}, QAT cosine {cos:.4}",
                q.name
            );
            assert!(dot(r, r) > 0.0 && rel < 1e-4, "{what} {}: {rel}", q.name);
            assert!(cos.is_finite() && cos > 0.9, "{what} {}: {cos}", q.name);
        }
    }
}

/// `train` on GRU, RNN (tanh, relu) and a mixed stack: the QAT loss goes down over 40
/// steps; the exported graph loads, lowers and runs on the interpreter with the
/// simulated model's predictions; the checkpoint (with the cells) resumes.
#[test]
fn qat_training_lowers_the_loss_and_exports_what_it_simulates() {
    for (what, cells, hidden) in configs() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, data) = setup(dir.path(), &cells, &hidden, 7);
        let (o, r, first, last) = support::train_qat(dir.path(), &spec, &data, 40);
        eprintln!("{what}: loss {first:.3} → {last:.3} bits; {r:?}");
        assert!(last < first - 0.3, "{what}: loss {first} → {last}");
        assert!(r.top1_sim_vs_int.unwrap() >= 0.98, "{what}: {r:?}");
        assert!(
            (r.valid_bits.unwrap() - r.valid_int_bits.unwrap()).abs() < 0.01,
            "{what}: {r:?}"
        );
        // The graph's layers are the spec's cells.
        let g = Graph::load(&o.output).unwrap();
        let ops: Vec<&str> = g.file.layers.iter().map(|l| l.op()).collect();
        eprintln!("{what}: exported {ops:?}");
        // Resuming the finished run re-exports the same graph.
        let before = std::fs::read(&o.output).unwrap();
        let mut resumed = None;
        train(&o, &mut |p| {
            if let Progress::Resumed { step } = p {
                resumed = Some(*step)
            }
        })
        .unwrap();
        assert_eq!(resumed, Some(40), "{what}");
        assert_eq!(std::fs::read(&o.output).unwrap(), before, "{what}");
    }
}
