//! Bad input: every broken file gives one clear error naming the file and the
//! tensor, layer or field; a non-zero exit; no panic; no partial output file.
//! The messages are snapshotted (paths redacted to `[DIR]`).

mod support;

use irnn_codegen::tensors::{TensorFile, TensorWriter};
use std::path::{Path, PathBuf};
use support::*;

/// Runs `irnn` expecting failure; returns stderr with the temp dir redacted.
fn fail(dir: &Path, args: &[&str], must_not_exist: &[&Path]) -> String {
    let out = std::process::Command::new(irnn_bin())
        .args(args)
        .output()
        .expect("irnn runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for p in must_not_exist {
        assert!(!p.exists(), "{} was left behind", p.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(".tmp") || n.starts_with(".irnn-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let dir_s = dir.display().to_string();
    stderr.replace(&dir_s, "[DIR]").trim_end().to_string()
}

/// A small valid float model in a fresh directory: (dir, spec, calib).
fn model() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let m = synth_model("bad", Some(10), 4, 6, 2, 10, 1);
    let spec = m.spec.clone();
    let data = m.data.clone();
    (m.dir, spec, data)
}

/// Rewrites the model's safetensors with `edit` applied to the tensor list.
fn edit_weights(
    dir: &Path,
    edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>,
) {
    let path = dir.join("bad.safetensors");
    let file = TensorFile::open(&path).unwrap();
    let mut w = TensorWriter::default();
    for name in file.names() {
        let t = file.f32(&name, "").unwrap();
        if let Some((shape, data)) = edit(&name, t.shape, t.data) {
            w.f32(&name, &shape, &data);
        }
    }
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
}

/// An output whose tensor file would be the spec's float weights is refused before
/// anything is written, and the weights are intact.
#[test]
fn output_onto_an_input_is_refused() {
    let (dir, spec, calib) = model();
    let weights = dir.path().join("w.irnn.safetensors");
    std::fs::rename(dir.path().join("bad.safetensors"), &weights).unwrap();
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("bad.safetensors", "w.irnn.safetensors");
    std::fs::write(&spec, text).unwrap();
    let before = std::fs::read(&weights).unwrap();
    let out = dir.path().join("w.irnn.json");
    let e = fail(
        dir.path(),
        &[
            "quantize",
            spec.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[&out],
    );
    assert!(e.contains("is also an input"), "{e}");
    assert_eq!(std::fs::read(&weights).unwrap(), before, "weights changed");
}

/// A graph must be named `NAME.irnn.json` (so its tensor file can never be the float
/// model's `NAME.safetensors`); nothing is written otherwise.
#[test]
fn graph_output_must_be_named_irnn_json() {
    let (dir, spec, calib) = model();
    for name in ["out.json", "bad.json", ".irnn.json"] {
        let out = dir.path().join(name);
        let before = std::fs::read(&out).ok();
        let e = fail(
            dir.path(),
            &[
                "quantize",
                spec.to_str().unwrap(),
                "--calib",
                calib.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &[&dir.path().join("out.safetensors")],
        );
        assert!(e.contains("must be named NAME.irnn.json"), "{name}: {e}");
        assert_eq!(std::fs::read(&out).ok(), before, "{name} changed");
    }
}

fn quantize_fails(dir: &Path, spec: &Path, calib: &Path) -> String {
    let out = dir.join("out.irnn.json");
    let tensors = dir.join("out.irnn.safetensors");
    fail(
        dir,
        &[
            "quantize",
            spec.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[&out, &tensors],
    )
}

#[test]
fn missing_tensor() {
    let (dir, spec, calib) = model();
    edit_weights(dir.path(), |n, s, d| {
        (n != "rnn.weight_hh_l1").then_some((s, d))
    });
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(
        e.contains("rnn.weight_hh_l1") && e.contains("bad.json"),
        "{e}"
    );
    insta::assert_snapshot!(e);
}

#[test]
fn wrong_shape() {
    let (dir, spec, calib) = model();
    edit_weights(dir.path(), |n, s, d| {
        if n == "rnn.bias_ih_l0" {
            Some((vec![s[0] - 1], d[1..].to_vec()))
        } else {
            Some((s, d))
        }
    });
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("rnn.bias_ih_l0") && e.contains("shape"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn mismatched_layer_widths() {
    let (dir, spec, calib) = model();
    edit_weights(dir.path(), |n, s, d| {
        if n == "head.weight" {
            Some((vec![s[0], s[1] - 1], d[..s[0] * (s[1] - 1)].to_vec()))
        } else {
            Some((s, d))
        }
    });
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("head") && e.contains("width"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn nan_and_inf_weights() {
    for (bad, label) in [(f32::NAN, "nan"), (f32::INFINITY, "inf")] {
        let (dir, spec, calib) = model();
        edit_weights(dir.path(), |n, s, mut d| {
            if n == "head.weight" {
                d[3] = bad;
            }
            Some((s, d))
        });
        let e = quantize_fails(dir.path(), &spec, &calib);
        assert!(e.contains("head.weight") && e.contains("non-finite"), "{e}");
        insta::assert_snapshot!(format!("nan_and_inf_weights_{label}"), e);
    }
}

#[test]
fn unknown_op() {
    let (dir, spec, calib) = model();
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"linear\"", "\"gru2\"");
    std::fs::write(&spec, text).unwrap();
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("gru2") && e.contains("bad.json"), "{e}");
    insta::assert_snapshot!(e);
}

/// A float model that does not end in a linear layer (found by the `pipeline` fuzz
/// target): `quantize::quantize` used to calibrate it and return a graph that
/// `Graph::load` refuses ("the last layer must be a linear layer"; `irnn quantize`
/// refused it only in its check of the staged graph); now `quantize` refuses the model
/// before calibration, naming the layer, and `irnn quantize` writes nothing.
#[test]
fn spec_without_output_linear() {
    let (dir, spec, calib) = model();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    let layers = json["layers"].as_array_mut().unwrap();
    assert_eq!(layers.pop().unwrap()["op"], "linear");
    std::fs::write(&spec, json.to_string()).unwrap();
    let model = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let data = irnn_codegen::npy::read_data(&calib).unwrap();
    let e = irnn_codegen::quantize::quantize(
        &model,
        &data,
        &calib,
        "out.irnn.safetensors",
        &Default::default(),
    )
    .err()
    .expect("a model without an output linear is refused")
    .to_string();
    assert!(
        e.contains("the last layer must be a linear layer") && e.contains("rnn.l1"),
        "{e}"
    );
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(
        e.contains("the last layer must be a linear layer") && e.contains("rnn.l1"),
        "{e}"
    );
}

#[test]
fn malformed_json() {
    let (dir, spec, calib) = model();
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, &text[..text.len() / 2]).unwrap();
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("malformed JSON") && e.contains("line"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn missing_weights_file() {
    let (dir, spec, calib) = model();
    std::fs::remove_file(dir.path().join("bad.safetensors")).unwrap();
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(
        e.contains("bad.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    insta::assert_snapshot!(e.replace("(os error 2)", "(os error)"));
}

#[test]
fn not_safetensors() {
    let (dir, spec, calib) = model();
    std::fs::write(
        dir.path().join("bad.safetensors"),
        b"hello, not a tensor file",
    )
    .unwrap();
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(
        e.contains("bad.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}

#[test]
fn empty_npy() {
    let (dir, spec, _) = model();
    let calib = dir.path().join("empty.npy");
    write_npy::<i32>(&calib, &[0, 16], &[]);
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("empty.npy") && e.contains("empty"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn wrong_typed_npy() {
    let (dir, spec, _) = model();
    let calib = dir.path().join("f64.npy");
    write_npy::<f64>(&calib, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("f64.npy") && e.contains("<f8"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn features_for_token_model() {
    let (dir, spec, _) = model();
    let calib = dir.path().join("feat.npy");
    write_npy::<f32>(&calib, &[1, 2, 3], &[0.0; 6]);
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(e.contains("feat.npy") && e.contains("token"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn token_out_of_range() {
    let (dir, spec, _) = model();
    let calib = dir.path().join("oor.npy");
    write_npy::<i32>(&calib, &[2, 3], &[1, 2, 3, 4, 10, 5]);
    let e = quantize_fails(dir.path(), &spec, &calib);
    assert!(
        e.contains("oor.npy") && e.contains("token id 10") && e.contains("sequence 1, step 1"),
        "{e}"
    );
    insta::assert_snapshot!(e);
}

/// A quantized graph plus helpers to break it.
fn graph() -> (TestModel, serde_json::Value) {
    let m = synth_model("g", None, 5, 6, 1, 4, 2);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&m.graph).unwrap()).unwrap();
    (m, v)
}

/// `irnn run MODEL --data DATA --out DIR/out.npy`, expected to fail without writing
/// `out.npy`.
fn run_fails_with(dir: &Path, model: &Path, data: &Path) -> String {
    let out = dir.join("out.npy");
    fail(
        dir,
        &[
            "run",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[&out],
    )
}

/// Writes `v` as the model's graph JSON, then runs it on the model's data.
fn run_fails(m: &TestModel, v: &serde_json::Value) -> String {
    std::fs::write(&m.graph, serde_json::to_string_pretty(v).unwrap()).unwrap();
    run_fails_with(m.dir.path(), &m.graph, &m.data)
}

#[test]
fn graph_version_and_format() {
    let (m, mut v) = graph();
    v["version"] = 99.into();
    let e = run_fails(&m, &v);
    assert!(e.contains("g.irnn.json") && e.contains("version"), "{e}");
    insta::assert_snapshot!("graph_version", e);
    v["version"] = 1.into();
    v["format"] = "something-else".into();
    let e = run_fails(&m, &v);
    assert!(e.contains("format"), "{e}");
}

#[test]
fn graph_collects_several_problems() {
    let (m, mut v) = graph();
    v["layers"][0]["output"]["zero_point"] = 300.into();
    v["layers"][0]["cell_table"] = "no_such_table".into();
    v["layers"][1]["weight"] = "missing.tensor".into();
    let e = run_fails(&m, &v);
    assert!(e.contains("3 problems"), "{e}");
    assert!(
        e.contains("zero_point") && e.contains("no_such_table") && e.contains("missing.tensor"),
        "{e}"
    );
    insta::assert_snapshot!(e);
}

#[test]
fn graph_unknown_field_and_op() {
    let (m, mut v) = graph();
    v["layers"][0]["op"] = "attention9".into();
    let e = run_fails(&m, &v);
    assert!(e.contains("attention9"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn graph_broken_pwl_table() {
    let (m, mut v) = graph();
    let tables = v["tables"].as_object_mut().unwrap();
    let first = tables.values_mut().next().unwrap();
    let starts = first["starts"].as_array_mut().unwrap();
    starts.reverse();
    let e = run_fails(&m, &v);
    assert!(e.contains("tables."), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn feature_width_mismatch_at_run() {
    let (m, _) = graph();
    let bad = m.dir.path().join("w.npy");
    write_npy::<f32>(&bad, &[1, 4, 3], &[0.5; 12]);
    let e = run_fails_with(m.dir.path(), &m.graph, &bad);
    assert!(e.contains("w.npy") && e.contains("3 values"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn nan_features_at_run() {
    let (m, _) = graph();
    let bad = m.dir.path().join("nan.npy");
    let mut xs = vec![0.1f32; 10];
    xs[7] = f32::NAN;
    write_npy::<f32>(&bad, &[2, 5], &xs);
    let e = run_fails_with(m.dir.path(), &m.graph, &bad);
    assert!(e.contains("nan.npy") && e.contains("not finite"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn spec_given_where_graph_expected() {
    let (dir, spec, calib) = model();
    let e = run_fails_with(dir.path(), &spec, &calib);
    assert!(e.contains("bad.json"), "{e}");
    insta::assert_snapshot!(e);
}

/// Rewrites a quantized graph's tensors, letting `edit` change the I32 ones.
fn edit_graph_tensors(m: &TestModel, edit: impl Fn(&str, &mut Vec<i32>)) {
    let path = m.dir.path().join("g.irnn.safetensors");
    let file = TensorFile::open(&path).unwrap();
    let mut w = TensorWriter::default();
    for name in file.names() {
        if let Ok(t) = file.i8(&name, "") {
            w.i8(&name, &t.shape, &t.data);
        } else if let Ok(mut t) = file.i32(&name, "") {
            edit(&name, &mut t.data);
            w.i32(&name, &t.shape, &t.data);
        } else {
            let t = file.f32(&name, "").unwrap();
            w.f32(&name, &t.shape, &t.data);
        }
    }
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
}

/// Lowering proves accumulators cannot overflow and refuses the model otherwise.
#[test]
fn accumulator_overflow_is_refused() {
    let (m, v) = graph();
    edit_graph_tensors(&m, |name, data| {
        if name == "rnn.l0.bias" {
            data[2] = i32::MAX - 10;
        }
    });
    let e = run_fails(&m, &v);
    assert!(
        e.contains("rnn.l0") && e.contains("row 2") && e.contains("accumulator"),
        "{e}"
    );
    insta::assert_snapshot!(e);
}
