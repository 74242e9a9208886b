//! End-to-end tests of the foundation: float reference against PyTorch, calibration,
//! the interpreter against the float reference, the CLI's run/eval/inspect, and
//! determinism.

mod support;

use irnn_cli::cli::{evaluate, quantize_feature, run_float, run_program};
use irnn_codegen::interp::Interpreter;
use irnn_codegen::npy::{read_data, read_labels, SeqData};
use irnn_codegen::spec::FloatModel;
use std::path::Path;
use support::*;

fn read_i32(path: &Path) -> (Vec<usize>, Vec<i32>) {
    let bytes = std::fs::read(path).expect("read npy");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy");
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<i32>().expect("i32 data"))
}

/// The float reference reproduces PyTorch's logits (catches gate-order and transpose
/// mistakes): max |difference| ≤ 1e-4 · max(1, |logit|).
fn check_against_torch(spec: &Path, data: &Path, logits: &Path) {
    let model = FloatModel::load(spec).expect("loads");
    let mut df = read_data(data).expect("data");
    let (shape, want) = read_f32(logits);
    // The reference logits cover the first shape[0] sequences.
    let n = shape[0];
    match &mut df.data {
        SeqData::Tokens { n: dn, t, data } => {
            *dn = n;
            data.truncate(n * *t)
        }
        SeqData::FeaturesF32 { n: dn, t, f, data } => {
            *dn = n;
            data.truncate(n * *t * *f)
        }
        SeqData::FeaturesI8 { .. } => unreachable!(),
    }
    let got = run_float(&model, &df, data).expect("runs");
    assert_eq!(got.len(), want.len(), "logit count");
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(&want) {
        worst = worst.max((g - w).abs() / w.abs().max(1.0));
    }
    assert!(
        worst <= 1e-4,
        "float reference differs from PyTorch by {worst}"
    );
}

#[test]
fn float_reference_matches_pytorch_charlm() {
    let (spec, _, small) = charlm_paths();
    check_against_torch(
        &spec,
        &small,
        &small.with_file_name("torch_logits_small.npy"),
    );
}

#[test]
fn float_reference_matches_pytorch_features() {
    let (spec, _, test, _) = features_paths();
    check_against_torch(&spec, &test, &test.with_file_name("torch_logits_small.npy"));
}

/// Calibration alone keeps the char LM's bits per character within 3% of float.
#[test]
fn charlm_ptq_bits_per_char_within_3_percent() {
    let (spec, calib, _) = charlm_paths();
    let test = calib.with_file_name("test.npy");
    let dir = tempfile::tempdir().unwrap();
    let program = quantize_files(&spec, &calib, &dir.path().join("charlm.irnn.json"));
    let model = FloatModel::load(&spec).unwrap();
    let mut data = read_data(&test).unwrap();
    if let SeqData::Tokens { n, t, data } = &mut data.data {
        *n = 8;
        data.truncate(8 * *t);
    }
    let r = evaluate(&program, &model, &data, &test, None).unwrap();
    let f = r.float["bits_per_token"].as_f64().unwrap();
    let i = r.integer["bits_per_token"].as_f64().unwrap();
    eprintln!("float {f:.4} bpc, integer {i:.4} bpc");
    assert!(
        f > 0.5 && f < 4.0,
        "float bpc {f} is not that of a trained model"
    );
    assert!(
        i <= f * 1.03,
        "integer {i} vs float {f}: more than 3% worse"
    );
    assert!(r.top1_agreement.unwrap() > 0.95);
}

/// The interpreter's dequantized logits track the float reference: on the feature
/// classifier the mean absolute logit error is below 5% of the logits' spread and the
/// classes agree on at least 95% of sequences.
#[test]
fn interpreter_tracks_float_reference_features() {
    let (spec, calib, test, labels) = features_paths();
    let dir = tempfile::tempdir().unwrap();
    let program = quantize_files(&spec, &calib, &dir.path().join("features.irnn.json"));
    let model = FloatModel::load(&spec).unwrap();
    let data = read_data(&test).unwrap();
    let ints = run_program(&program, &data, &test).unwrap();
    let floats = run_float(&model, &data, &test).unwrap();
    let scale = program.output.scale_info;
    let mean = floats.iter().map(|v| *v as f64).sum::<f64>() / floats.len() as f64;
    let spread = (floats
        .iter()
        .map(|v| (*v as f64 - mean).powi(2))
        .sum::<f64>()
        / floats.len() as f64)
        .sqrt();
    let mae = ints
        .iter()
        .zip(&floats)
        .map(|(i, f)| (*i as f64 * scale - *f as f64).abs())
        .sum::<f64>()
        / floats.len() as f64;
    eprintln!("mean abs logit error {mae:.4}, logit spread {spread:.4}");
    assert!(mae < 0.05 * spread, "mae {mae} vs spread {spread}");
    let labels_v = read_labels(&labels).unwrap();
    let r = evaluate(&program, &model, &data, &test, Some((&labels_v, &labels))).unwrap();
    eprintln!("{r:?}");
    assert!(r.agreement.unwrap() >= 0.95);
    let fa = r.float["accuracy"].as_f64().unwrap();
    let ia = r.integer["accuracy"].as_f64().unwrap();
    assert!(ia >= fa - 0.02, "integer accuracy {ia} vs float {fa}");
}

/// Synthetic models of several shapes: dequantized outputs stay close to float.
#[test]
fn interpreter_tracks_float_reference_synthetic() {
    for (vocab, input, hidden, layers) in
        [(Some(20), 8, 16, 1), (None, 13, 7, 2), (None, 40, 64, 1)]
    {
        let m = synth_model("s", vocab, input, hidden, layers, 6, 3);
        let model = FloatModel::load(&m.spec).unwrap();
        let data = read_data(&m.data).unwrap();
        let ints = run_program(&m.program, &data, &m.data).unwrap();
        let floats = run_float(&model, &data, &m.data).unwrap();
        let scale = m.program.output.scale_info;
        let maxf = floats.iter().fold(0f64, |a, v| a.max(v.abs() as f64));
        let maxerr = ints.iter().zip(&floats).fold(0f64, |a, (i, f)| {
            a.max((*i as f64 * scale - *f as f64).abs())
        });
        assert!(
            maxerr < 0.1 * maxf.max(0.1),
            "{vocab:?}/{input}/{hidden}/{layers}: max error {maxerr} vs max logit {maxf}"
        );
    }
}

/// Stepping one at a time with explicit resets equals `run_program` over the file.
#[test]
fn stateful_steps_equal_whole_sequences() {
    let m = synth_model("st", Some(11), 6, 9, 2, 11, 5);
    let data = read_data(&m.data).unwrap();
    let all = run_program(&m.program, &data, &m.data).unwrap();
    let SeqData::Tokens { n, t, data: toks } = &data.data else {
        panic!()
    };
    let mut it = Interpreter::new(&m.program);
    let o = m.program.output.size;
    for s in 0..*n {
        it.reset();
        for step in 0..*t {
            let y = it.step_token(toks[s * t + step]).unwrap().to_vec();
            assert_eq!(&y[..], &all[(s * t + step) * o..(s * t + step + 1) * o]);
        }
    }
    // Without a reset, the second sequence sees the first's state: outputs differ.
    it.reset();
    for &tok in &toks[..*t] {
        it.step_token(tok).unwrap();
    }
    let carried = it.step_token(toks[*t]).unwrap().to_vec();
    assert_ne!(&carried[..], &all[*t * o..(*t + 1) * o]);
}

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(irnn_bin())
        .args(args)
        .output()
        .expect("irnn runs")
}

/// `irnn run` writes [N, T, O] int32 equal to the library, [T, O] for 1-D token input,
/// and int8 features give the same outputs as the float features they quantize.
#[test]
fn cli_run_shapes_and_int8_features() {
    let m = synth_model("cli", None, 5, 8, 1, 3, 9);
    let d = m.dir.path();
    let out = d.join("out.npy");
    let o = run_cli(&[
        "run",
        m.graph.to_str().unwrap(),
        "--data",
        m.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, vals) = read_i32(&out);
    assert_eq!(shape, vec![4, 64, 3]);
    let data = read_data(&m.data).unwrap();
    assert_eq!(vals, run_program(&m.program, &data, &m.data).unwrap());

    // The same features, quantized by hand and saved as int8.
    let irnn_codegen::ir::InputIr::Features {
        scale_info,
        zero_point,
        ..
    } = m.program.input
    else {
        panic!()
    };
    let SeqData::FeaturesF32 { data: xs, .. } = &data.data else {
        panic!()
    };
    let q: Vec<i8> = xs
        .iter()
        .map(|&x| quantize_feature(x, scale_info, zero_point))
        .collect();
    let q_path = d.join("q.npy");
    write_npy::<i8>(&q_path, &[4, 64, 5], &q);
    let out2 = d.join("out2.npy");
    let o = run_cli(&[
        "run",
        m.graph.to_str().unwrap(),
        "--data",
        q_path.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_i32(&out2).1, vals);

    // 1-D token input gives [T, O].
    let t = synth_model("tok", Some(7), 4, 5, 1, 7, 2);
    let toks = t.dir.path().join("toks.npy");
    std::fs::write(
        &toks,
        irnn_codegen::npy::i32_npy_bytes(&[10], &[1, 2, 3, 4, 5, 6, 0, 1, 2, 3]).unwrap(),
    )
    .unwrap();
    let out3 = t.dir.path().join("o.npy");
    let o = run_cli(&[
        "run",
        t.graph.to_str().unwrap(),
        "--data",
        toks.to_str().unwrap(),
        "--out",
        out3.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_i32(&out3).0, vec![10, 7]);
}

/// `irnn eval --json` prints the documented keys; `irnn inspect` reports tables and sizes.
#[test]
fn cli_eval_json_and_inspect() {
    let m = synth_model("ev", Some(9), 16, 32, 1, 9, 4);
    let o = run_cli(&[
        "eval",
        m.graph.to_str().unwrap(),
        "--float",
        m.spec.to_str().unwrap(),
        "--data",
        m.data.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["float"]["bits_per_token"].as_f64().unwrap() > 0.0);
    assert!(v["integer"]["bits_per_token"].as_f64().unwrap() > 0.0);

    let o = run_cli(&["inspect", m.graph.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tables = v["tables"].as_array().unwrap();
    assert!(!tables.is_empty());
    for t in tables {
        assert!(t["pieces"].as_u64().unwrap() <= 64);
        assert!(t["max_error_lsb"].as_f64().unwrap() < 4.0, "{t}");
    }
    assert!(
        v["sizes"]["int_param_bytes"].as_u64().unwrap()
            < v["sizes"]["float_param_bytes"].as_u64().unwrap()
    );
    let o = run_cli(&["inspect", m.graph.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("PWL tables") && text.contains("parameters:"),
        "{text}"
    );
}

/// Quantizing twice gives byte-identical files.
#[test]
fn quantization_is_deterministic() {
    let m = synth_model("det", Some(12), 6, 10, 2, 12, 8);
    let second = m.dir.path().join("again.irnn.json");
    quantize_files(&m.spec, &m.data, &second);
    let a = std::fs::read_to_string(&m.graph).unwrap();
    let b = std::fs::read_to_string(&second).unwrap();
    assert_eq!(
        a.replace("det.irnn.safetensors", "X"),
        b.replace("again.irnn.safetensors", "X")
    );
    assert_eq!(
        std::fs::read(m.dir.path().join("det.irnn.safetensors")).unwrap(),
        std::fs::read(m.dir.path().join("again.irnn.safetensors")).unwrap()
    );
}

/// `quantize` and `run` create the output's directory (the README's first command
/// writes into a fresh `target/charlm/`).
#[test]
fn cli_creates_output_directories() {
    let m = synth_model("dirs", Some(5), 3, 4, 1, 5, 6);
    let graph = m.dir.path().join("new/deeper/dirs.irnn.json");
    let o = run_cli(&[
        "quantize",
        m.spec.to_str().unwrap(),
        "--calib",
        m.data.to_str().unwrap(),
        "-o",
        graph.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(graph.exists() && graph.with_file_name("dirs.irnn.safetensors").exists());
    let out = m.dir.path().join("other/out.npy");
    let o = run_cli(&[
        "run",
        graph.to_str().unwrap(),
        "--data",
        m.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
}

/// `run_program` and `run_float`, which step the sequences of each thread in lock-step
/// groups of up to 8, give every sequence the outputs of a one-sequence interpreter
/// (portable kernel) and a `FloatRunner` on it alone, bit for bit: 1, 7, 19 and 41
/// sequences (groups of uneven sizes over the threads), token and feature models, LSTM,
/// GRU and RNN cells.
#[test]
fn lock_step_batches_equal_sequence_by_sequence() {
    use irnn_codegen::float_ref::{FloatRunner, NoObserver};
    let models: Vec<TestModel> = synth_models(&SIMD_SHAPES[..2])
        .into_iter()
        .chain(cell_models())
        .map(|s| s.model)
        .collect();
    let mut seed = 0x1234_5678u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as u32
    };
    for m in &models {
        let model = FloatModel::load(&m.spec).unwrap();
        let o = m.program.output.size;
        for (n, t) in [(1, 5), (7, 9), (19, 6), (41, 3)] {
            let path = m.dir.path().join(format!("lock_{n}.npy"));
            match m.program.input {
                irnn_codegen::ir::InputIr::Tokens { vocab_size } => {
                    let toks: Vec<i32> = (0..n * t)
                        .map(|_| (next() as usize % vocab_size) as i32)
                        .collect();
                    write_npy(&path, &[n as u64, t as u64], &toks);
                }
                irnn_codegen::ir::InputIr::Features { size, .. } => {
                    let xs: Vec<f32> = (0..n * t * size)
                        .map(|_| next() as f32 / u32::MAX as f32 * 4.0 - 2.0)
                        .collect();
                    write_npy(&path, &[n as u64, t as u64, size as u64], &xs);
                }
            }
            let data = read_data(&path).unwrap();
            let ints = run_program(&m.program, &data, &path).unwrap();
            let floats = run_float(&model, &data, &path).unwrap();
            assert_eq!(ints.len(), n * t * o);
            assert_eq!(floats.len(), n * t * o);
            for s in 0..n {
                let mut it = Interpreter::new(&m.program);
                let mut fr = FloatRunner::new(&model);
                for step in 0..t {
                    let at = (s * t + step) * o;
                    let (yi, yf) = match &data.data {
                        SeqData::Tokens { data, .. } => {
                            let tok = data[s * t + step];
                            (
                                it.step_token(tok).unwrap().to_vec(),
                                fr.step_token(tok as usize, &mut NoObserver).to_vec(),
                            )
                        }
                        SeqData::FeaturesF32 { f, data, .. } => {
                            let x = &data[(s * t + step) * f..(s * t + step + 1) * f];
                            let irnn_codegen::ir::InputIr::Features {
                                scale_info,
                                zero_point,
                                ..
                            } = m.program.input
                            else {
                                unreachable!()
                            };
                            let q: Vec<i8> = x
                                .iter()
                                .map(|&v| quantize_feature(v, scale_info, zero_point))
                                .collect();
                            (
                                it.step_features(&q).unwrap().to_vec(),
                                fr.step_features(x, &mut NoObserver).to_vec(),
                            )
                        }
                        SeqData::FeaturesI8 { .. } => unreachable!(),
                    };
                    assert_eq!(
                        &ints[at..at + o],
                        &yi[..],
                        "n {n}: sequence {s}, step {step}"
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&floats[at..at + o]),
                        bits(&yf),
                        "n {n}: sequence {s}, step {step} (float)"
                    );
                }
            }
        }
    }
}
