//! The `irnn-train` program end to end on a tiny synthetic token model, and the
//! library's cancellation flag.

use irnn_codegen::synth::{random_data_npy, write_float_model, SynthSpec};
use irnn_train::{train, Progress, TrainError, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const V: usize = 8;

fn synth() -> SynthSpec {
    SynthSpec {
        name: "tiny".into(),
        vocab_size: Some(V),
        input_size: 4,
        cell: irnn_codegen::spec::Cell::Lstm,
        hidden_size: 8,
        num_layers: 1,
        output_size: V,
        gain: 1.0,
        seed: 5,
    }
}

/// Spec, training and validation data in `dir`.
fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let s = synth();
    let spec = write_float_model(dir, &s).unwrap();
    let data = dir.join("train.npy");
    std::fs::write(&data, random_data_npy(&s, 32, 16, 1.0, 1).unwrap()).unwrap();
    let valid = dir.join("valid.npy");
    std::fs::write(&valid, random_data_npy(&s, 4, 12, 1.0, 2).unwrap()).unwrap();
    (spec, data, valid)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_irnn-train"))
}

/// Common small-run arguments after SPEC.
fn small(data: &Path, valid: &Path, out: &Path, steps: usize) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--data".into(),
        data.display().to_string(),
        "--valid".into(),
        valid.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    for a in [
        format!("--steps={steps}"),
        "--batch-size=4".into(),
        "--seq-len=8".into(),
        "--lr=1e-2".into(),
        "--range-warmup-steps=2".into(),
        "--valid-every=2".into(),
        "--valid-windows=4".into(),
        "--checkpoint-every=2".into(),
    ] {
        v.push(a);
    }
    v
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_trains_and_exports_a_graph_the_interpreter_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data, valid) = setup(dir.path());
    let out = dir.path().join("tiny_qat.irnn.json");
    let o = bin()
        .arg(&spec)
        .args(small(&data, &valid, &out, 4))
        .output()
        .unwrap();
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    for want in [
        "validation",
        "QAT simulated",
        "integer (interpreter)",
        "top-1 agreement",
        "tiny_qat.ckpt",
    ] {
        assert!(all.contains(want), "no {want:?} in:\n{all}");
    }
    assert!(dir.path().join("tiny_qat.irnn.safetensors").is_file());
    assert!(
        dir.path().join("tiny_qat.ckpt").is_file(),
        "default checkpoint beside the output"
    );
    let g = irnn_codegen::graph::Graph::load(&out).unwrap();
    let program = irnn_codegen::lower::lower(&g).unwrap();
    let mut it = irnn_codegen::interp::Interpreter::new(&program);
    for tok in [0, 3, 7, 1] {
        assert_eq!(it.step_token(tok).unwrap().len(), V);
    }
    let producer = g
        .file
        .producer
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    assert!(producer.contains("irnn-train"), "{producer}");

    // Text input with a vocabulary, from scratch, JSON report.
    let vocab = dir.path().join("vocab.json");
    std::fs::write(&vocab, r#"["a","b","c","d","e","f","g","h"]"#).unwrap();
    let txt = dir.path().join("train.txt");
    std::fs::write(&txt, "abcdefghgfedcba".repeat(8)).unwrap();
    let out2 = dir.path().join("from_text.irnn.json");
    let mut args = small(&txt, &valid, &out2, 2);
    args.extend([
        "--vocab".into(),
        vocab.display().to_string(),
        "--from-scratch".into(),
        "--json".into(),
    ]);
    let o = bin().arg(&spec).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["steps"], 2);
    assert!(report["valid_int_bits"].as_f64().unwrap() > 0.0);
    assert!(out2.is_file());
}

#[test]
fn cli_bad_input_names_the_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data, valid) = setup(dir.path());
    let out = dir.path().join("out.irnn.json");
    // Missing spec.
    let missing = dir.path().join("nope.json");
    let o = bin()
        .arg(&missing)
        .args(small(&data, &valid, &out, 2))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("nope.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Float32 data where token ids are expected.
    let bad = dir.path().join("floats.npy");
    std::fs::write(
        &bad,
        irnn_codegen::npy::f32_npy_bytes(&[4, 8, 1], &[0.5; 32]).unwrap(),
    )
    .unwrap();
    let o = bin()
        .arg(&spec)
        .args(small(&bad, &valid, &out, 2))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("floats.npy") && err.contains("token ids"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Output directory that does not exist.
    let o = bin()
        .arg(&spec)
        .args(small(
            &data,
            &valid,
            &dir.path().join("no/dir/out.irnn.json"),
            2,
        ))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/dir/out.irnn.json"));
    // Text without a vocabulary.
    let txt = dir.path().join("t.txt");
    std::fs::write(&txt, "abc").unwrap();
    let o = bin()
        .arg(&spec)
        .args(small(&txt, &valid, &out, 2))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("t.txt") && err.contains("--vocab"), "{err}");
    assert!(!out.exists());
    assert!(!dir.path().join("out.irnn.safetensors").exists());
}

#[test]
fn cancel_flag_stops_saves_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data, valid) = setup(dir.path());
    let mut o = TrainOptions::new(&spec, &data, dir.path().join("c.irnn.json"));
    o.valid = Some(valid);
    o.steps = 6;
    o.batch_size = 4;
    o.seq_len = 8;
    o.range_warmup_steps = 2;
    o.valid_windows = 4;
    o.checkpoint = Some(dir.path().join("c.ckpt"));
    o.checkpoint_every = 0;
    let flag = Arc::new(AtomicBool::new(false));
    o.cancel = Some(flag.clone());
    // "Ctrl-C" during step 3: the step finishes, the checkpoint is written, no export.
    let r = train(&o, &mut |p| {
        if let Progress::Step { step: 3, .. } = p {
            flag.store(true, Ordering::SeqCst);
        }
    });
    match r {
        Err(TrainError::Interrupted {
            step: 3,
            checkpoint: Some(c),
        }) => assert_eq!(c, dir.path().join("c.ckpt")),
        other => panic!("{other:?}"),
    }
    assert!(!o.output.exists());
    let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let arch = irnn_train::model::Params::from_float(&float).unwrap().arch;
    assert_eq!(
        irnn_train::checkpoint::load(dir.path().join("c.ckpt").as_path(), &arch)
            .unwrap()
            .step,
        3
    );
    // Same options again: resumes at step 3 and finishes.
    flag.store(false, Ordering::SeqCst);
    let mut resumed = None;
    let mut steps = Vec::new();
    let r = train(&o, &mut |p| match p {
        Progress::Resumed { step } => resumed = Some(*step),
        Progress::Step { step, .. } => steps.push(*step),
        _ => {}
    })
    .unwrap();
    assert_eq!(resumed, Some(3));
    assert_eq!(steps, vec![4, 5, 6]);
    assert_eq!(r.steps, 6);
    assert!(o.output.is_file());
    // Same result as an uninterrupted run.
    let mut u = o.clone();
    u.cancel = None;
    u.checkpoint = Some(dir.path().join("u.ckpt"));
    u.output = dir.path().join("u.irnn.json");
    u.final_eval = false;
    train(&u, &mut |_| {}).unwrap();
    let a = irnn_train::checkpoint::load(dir.path().join("c.ckpt").as_path(), &arch).unwrap();
    let b = irnn_train::checkpoint::load(dir.path().join("u.ckpt").as_path(), &arch).unwrap();
    assert_eq!(a.quant, b.quant);
    for (x, y) in a.params.params.iter().zip(&b.params.params) {
        let d = x
            .data
            .iter()
            .zip(&y.data)
            .fold(0f32, |m, (u, v)| m.max((u - v).abs()));
        assert!(d < 1e-5, "{}: max diff {d}", x.name);
    }
}

/// SIGINT to the running program: it stops after the current step, keeps the
/// checkpoint, exits 130 without an output, and the same command resumes.
#[cfg(unix)]
#[test]
fn cli_sigint_checkpoints_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, data, valid) = setup(dir.path());
    let out = dir.path().join("s.irnn.json");
    let ckpt = dir.path().join("s.ckpt");
    let every_step = |steps| {
        let mut a = small(&data, &valid, &out, steps);
        a.retain(|s| !s.starts_with("--checkpoint-every"));
        a.push("--checkpoint-every=1".into());
        a
    };
    let mut child = bin()
        .arg(&spec)
        .args(every_step(100_000))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first checkpoint means the Ctrl-C handler is installed and steps are running.
    let t0 = std::time::Instant::now();
    while !ckpt.exists() {
        assert!(t0.elapsed().as_secs() < 60, "no checkpoint after 60 s");
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "exited early ({st}): {}",
                text(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("run the same command again"), "{err}");
    assert!(!out.exists());
    let step: usize = err
        .split("interrupted after step ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let float = irnn_codegen::spec::FloatModel::load(&spec).unwrap();
    let arch = irnn_train::model::Params::from_float(&float).unwrap().arch;
    assert_eq!(
        irnn_train::checkpoint::load(&ckpt, &arch).unwrap().step,
        step
    );
    // Resume (two more steps instead of 100 000).
    let o = bin()
        .arg(&spec)
        .args(every_step(step + 2))
        .output()
        .unwrap();
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(all.contains(&format!("at step {step}")), "{all}");
    assert!(out.is_file());
    assert_eq!(
        irnn_train::checkpoint::load(&ckpt, &arch).unwrap().step,
        step + 2
    );
}
