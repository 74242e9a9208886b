//! `--json` on every command that reports numbers (quantize, run, eval, inspect, bench)
//! prints one JSON object on stdout with the numbers of the text form, and no progress
//! bar reaches a stderr that is not a terminal (with or without `--quiet`).

mod support;

use std::process::Command;
use support::*;

fn irnn(args: &[&str]) -> (serde_json::Value, String) {
    let o = Command::new(irnn_bin())
        .args(args)
        .output()
        .expect("irnn runs");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "irnn {args:?} failed: {stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("irnn {args:?}: stdout is not one JSON value ({e}): {stdout}"));
    (v, stderr)
}

#[test]
fn every_command_that_reports_numbers_has_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let o = Command::new(irnn_bin())
        .args(["synth", "-o", &p(""), "--vocab", "20", "--input", "8"])
        .args([
            "--hidden",
            "16",
            "--outputs",
            "20",
            "--sequences",
            "3",
            "--steps",
            "12",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (spec, data, graph) = (p("synth.json"), p("data.npy"), p("m.irnn.json"));

    let (q, err) = irnn(&["quantize", &spec, "--calib", &data, "-o", &graph, "--json"]);
    assert_eq!(q["calibration_steps"], 36, "{q}");
    assert_eq!(q["layers"], 3, "{q}");
    assert!(!q["tables"].as_array().unwrap().is_empty(), "{q}");
    assert!(err.is_empty(), "quantize --json wrote to stderr: {err}");

    let (r, err) = irnn(&[
        "run",
        &graph,
        "--data",
        &data,
        "--out",
        &p("y.npy"),
        "--json",
    ]);
    assert_eq!(r["shape"], serde_json::json!([3, 12, 20]), "{r}");
    assert!(err.is_empty(), "run --json wrote to stderr: {err}");

    // Twice, with and without --quiet: the same object and an empty stderr (no bar on a
    // pipe).
    let eval = ["eval", &graph, "--float", &spec, "--data", &data, "--json"];
    let (e, err) = irnn(&eval);
    assert_eq!(e["predictions"], 3 * 11, "{e}");
    assert!(
        e["integer"]["bits_per_token"].as_f64().unwrap() > 0.0,
        "{e}"
    );
    assert!(err.is_empty(), "eval --json wrote to stderr: {err}");
    let (eq, err) = irnn(&[&eval[..], &["--quiet"]].concat());
    assert_eq!(e, eq);
    assert!(err.is_empty());

    let (i, _) = irnn(&["inspect", &graph, "--json"]);
    assert!(i["sizes"]["int_param_bytes"].as_u64().unwrap() > 0, "{i}");

    if !skip::requires("bench --json", "a C compiler (cc)", which("cc")) {
        return;
    }
    let (b, err) = irnn(&[
        "bench",
        &graph,
        "--target",
        "scalar",
        "--precision",
        "int8",
        "--steps",
        "20",
        "--runs",
        "1",
        "--json",
        "-q",
    ]);
    let rows = b["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{b}");
    assert_eq!(rows[0]["target"], "scalar");
    assert!(rows[0]["us_per_step"].as_f64().unwrap() > 0.0, "{b}");
    assert!(!err.contains('['), "a bar on a pipe: {err}");
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}
