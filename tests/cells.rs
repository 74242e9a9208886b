//! GRU and Elman RNN end to end: the float reference against PyTorch (models trained
//! by `tests/models/float/make_float_fixtures.py` and `examples/gru_charlm`), and the
//! calibrated integer models against float. The generated C and Rust of the same cells
//! are checked bit for bit with the synthetic models of `support::cell_models` in
//! `gen_c`, `gen_simd` and `gen_rust`.

mod support;

use irnn_cli::cli::evaluate;
use irnn_codegen::float_ref::{FloatRunner, NoObserver};
use irnn_codegen::ir::LayerIr;
use irnn_codegen::npy::{read_data, read_labels, SeqData};
use irnn_codegen::spec::FloatModel;
use std::path::{Path, PathBuf};
use support::*;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/models/float").join(name)
}

/// The float reference gives PyTorch's logits for the first sequences of `data`:
/// max |difference| <= 1e-4 · max(1, |logit|). Returns the worst relative difference.
fn against_torch(spec: &Path, data: &Path, logits: &Path) -> f32 {
    let model = FloatModel::load(spec).expect("float model loads");
    let df = read_data(data).expect("data");
    let (shape, want) = read_f32(logits);
    let (n, t, o) = (shape[0], shape[1], shape[2]);
    let mut runner = FloatRunner::new(&model);
    let mut got = Vec::with_capacity(n * t * o);
    for s in 0..n {
        runner.reset();
        for step in 0..t {
            let y = match &df.data {
                SeqData::Tokens { t: dt, data, .. } => {
                    runner.step_token(data[s * dt + step] as usize, &mut NoObserver)
                }
                SeqData::FeaturesF32 { t: dt, f, data, .. } => {
                    let off = (s * dt + step) * f;
                    runner.step_features(&data[off..off + f], &mut NoObserver)
                }
                SeqData::FeaturesI8 { .. } => panic!("float features expected"),
            };
            got.extend_from_slice(y);
        }
    }
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs() / w.abs().max(1.0)));
    assert!(
        worst <= 1e-4,
        "{}: float reference differs from PyTorch by {worst}",
        spec.display()
    );
    worst
}

fn features_test() -> PathBuf {
    repo_root().join("examples/features/data/test.npy")
}

#[test]
fn float_reference_matches_pytorch_rnn_and_gru() {
    for name in ["rnn_tanh", "rnn_relu", "gru_feat"] {
        let worst = against_torch(
            &fixture(&format!("{name}.json")),
            &features_test(),
            &fixture(&format!("{name}_torch_logits.npy")),
        );
        eprintln!("{name}: worst relative difference {worst:.2e}");
    }
    let d = repo_root().join("examples");
    let worst = against_torch(
        &d.join("gru_charlm/gru_charlm.json"),
        &d.join("charlm/data/test_small.npy"),
        &d.join("gru_charlm/data/torch_logits_small.npy"),
    );
    eprintln!("gru_charlm: worst relative difference {worst:.2e}");
}

/// Calibrated on `calib.npy` alone, each feature model classifies the test rows within
/// 2 points of its float accuracy, agreeing with float on at least 95% of them.
#[test]
fn calibrated_cells_track_float_accuracy() {
    let (_, calib, test, labels) = features_paths();
    let labels_v = read_labels(&labels).expect("labels");
    let data = read_data(&test).expect("test data");
    let dir = tempfile::tempdir().unwrap();
    for name in ["rnn_tanh", "rnn_relu", "gru_feat"] {
        let spec = fixture(&format!("{name}.json"));
        let program = quantize_files(&spec, &calib, &dir.path().join(format!("{name}.irnn.json")));
        assert!(
            program.layers.iter().any(|l| matches!(l, LayerIr::Cell(_))),
            "{name} lowers to op-level cells"
        );
        let model = FloatModel::load(&spec).unwrap();
        let r = evaluate(&program, &model, &data, &test, Some((&labels_v, &labels))).unwrap();
        let fa = r.float["accuracy"].as_f64().unwrap();
        let ia = r.integer["accuracy"].as_f64().unwrap();
        let agree = r.agreement.unwrap();
        eprintln!("{name}: float {fa:.4}, integer {ia:.4}, agreement {agree:.4}");
        assert!(
            ia >= fa - 0.02,
            "{name}: integer accuracy {ia} vs float {fa}"
        );
        assert!(agree >= 0.95, "{name}: agreement {agree}");
    }
}

/// The shipped GRU char LM, calibrated on the char LM's calibration text, stays within
/// 0.5% of float in bits per character on the first test rows.
#[test]
fn gru_charlm_ptq_close_to_float() {
    let d = repo_root().join("examples");
    let spec = d.join("gru_charlm/gru_charlm.json");
    let calib = d.join("charlm/data/calib.npy");
    let test = d.join("charlm/data/test.npy");
    let dir = tempfile::tempdir().unwrap();
    let program = quantize_files(&spec, &calib, &dir.path().join("gru_charlm.irnn.json"));
    let model = FloatModel::load(&spec).unwrap();
    let mut data = read_data(&test).unwrap();
    if let SeqData::Tokens { n, t, data } = &mut data.data {
        *n = 8;
        data.truncate(8 * *t);
    }
    let r = evaluate(&program, &model, &data, &test, None).unwrap();
    let f = r.float["bits_per_token"].as_f64().unwrap();
    let i = r.integer["bits_per_token"].as_f64().unwrap();
    eprintln!("gru_charlm: float {f:.4} bpc, integer {i:.4} bpc");
    assert!(
        f > 0.5 && f < 4.0,
        "float bpc {f} is not that of a trained model"
    );
    assert!(
        i <= f * 1.005,
        "integer {i} vs float {f}: more than 0.5% worse"
    );
}
