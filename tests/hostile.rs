//! Hostile and broken inputs (issue 16): atomic output sets, no output onto an input,
//! streamed outputs, a closed stdout, resource limits, messages. Each test names the
//! class of failure it guards against.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// Runs `irnn` with `args`; returns (exit code, stderr).
fn irnn(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(irnn_bin())
        .args(args)
        .output()
        .expect("irnn runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out.status.code(), stderr)
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Partial outputs: `gen` writes header and source as one set. With the source's
/// path blocked (a directory where the file goes), it fails and the old header is
/// neither replaced nor joined by anything new; for C, Rust and the f32 counterpart.
#[test]
fn gen_writes_all_files_or_none() {
    let m = synth_model("set", Some(8), 4, 6, 1, 5, 3);
    let graph = m.graph.to_str().unwrap();
    for (lang, precision) in [
        ("c", "int8"),
        ("rust", "int8"),
        ("c", "f32"),
        ("rust", "f32"),
    ] {
        let out = m.dir.path().join(format!("out-{lang}-{precision}"));
        let o = out.to_str().unwrap();
        let args = [
            "gen",
            graph,
            "--lang",
            lang,
            "--precision",
            precision,
            "-o",
            o,
        ];
        let (code, e) = irnn(&args);
        assert_eq!(code, Some(0), "{e}");
        let files = listing(&out);
        assert!(!files.is_empty());
        // Mark every file as the "old set", then block the last one.
        for f in &files {
            std::fs::write(out.join(f), "old").unwrap();
        }
        let blocked = files.last().unwrap();
        std::fs::remove_file(out.join(blocked)).unwrap();
        std::fs::create_dir(out.join(blocked)).unwrap();
        let (code, e) = irnn(&args);
        assert_eq!(code, Some(1), "{e}");
        assert!(
            e.contains(blocked.as_str()) && e.contains("not a regular file"),
            "{e}"
        );
        assert_eq!(listing(&out), files, "nothing new, no temporaries");
        for f in &files[..files.len() - 1] {
            assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), "old", "{f}");
        }
    }
}

/// Partial outputs: `synth` writes spec, weights and data as one set; a blocked
/// `data.npy` leaves no spec or weights behind.
#[test]
fn synth_writes_all_files_or_none() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("data.npy")).unwrap();
    let o = d.path().to_str().unwrap();
    let (code, e) = irnn(&["synth", "-o", o, "--input", "3", "--hidden", "4"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("data.npy") && e.contains("not a regular file"),
        "{e}"
    );
    assert_eq!(listing(d.path()), ["data.npy"]);
}

/// Partial outputs: `run --out` fails in its last sequence (a token out of range)
/// after earlier sequences were streamed to disk: no file is left, and an existing
/// output keeps its old contents.
#[test]
fn run_failure_leaves_old_output() {
    let m = synth_model("runfail", Some(8), 4, 6, 1, 5, 4);
    let data = m.dir.path().join("bad.npy");
    write_npy::<i32>(&data, &[3, 2], &[1, 2, 3, 4, 5, 99]);
    let out = m.dir.path().join("out.npy");
    let args = [
        "run",
        m.graph.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, e) = irnn(&args);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("sequence 2, step 1"), "{e}");
    assert!(!out.exists());
    std::fs::write(&out, "old").unwrap();
    let before = listing(m.dir.path());
    let (code, e) = irnn(&args);
    assert_eq!(code, Some(1), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
    assert_eq!(listing(m.dir.path()), before);
}

/// Lost data: `run --out` onto the model, its tensors or the data is refused and the
/// file is intact.
#[test]
fn run_output_onto_an_input_is_refused() {
    let m = synth_model("runin", Some(8), 4, 6, 1, 5, 5);
    let tensors = m.graph.with_file_name("runin.irnn.safetensors");
    assert!(tensors.exists());
    for victim in [&m.graph, &tensors, &m.data] {
        let before = std::fs::read(victim).unwrap();
        // Through `..` so that only resolved paths are equal.
        let sneaky = m.dir.path().join("x/..").join(victim.file_name().unwrap());
        std::fs::create_dir_all(m.dir.path().join("x")).unwrap();
        let (code, e) = irnn(&[
            "run",
            m.graph.to_str().unwrap(),
            "--data",
            m.data.to_str().unwrap(),
            "--out",
            sneaky.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(1), "{e}");
        assert!(e.contains("also an input"), "{e}");
        assert_eq!(std::fs::read(victim).unwrap(), before);
    }
}

/// Streaming: `irnn run` writes its output a chunk of sequences at a time; with
/// one-sequence chunks the file is byte for byte the whole-array `.npy`.
#[test]
fn streamed_run_output_matches_whole_array() {
    let m = synth_model("stream", Some(8), 4, 6, 1, 5, 6);
    let data = m.dir.path().join("d.npy");
    let ids: Vec<i32> = (0..5 * 7).map(|i| i % 8).collect();
    write_npy::<i32>(&data, &[5, 7], &ids);
    let file = irnn_codegen::npy::read_data(&data).unwrap();
    let whole = irnn_cli::cli::run_program(&m.program, &file, &data).unwrap();
    let o = m.program.output.size;
    let expect = irnn_codegen::npy::i32_npy_bytes(&[5, 7, o], &whole).unwrap();
    let out = m.dir.path().join("streamed.npy");
    let mut calls = 0;
    irnn_cli::output::write_run_output(&out, &[5, 7, o], 5, 7 * o, 1, |seqs| {
        calls += 1;
        assert_eq!(seqs.len(), 1);
        irnn_cli::cli::run_program_seqs(&m.program, &file, &data, seqs)
    })
    .unwrap();
    assert_eq!(calls, 5);
    assert_eq!(std::fs::read(&out).unwrap(), expect);
}

/// Crash (panic on a closed pipe): a reader that stops early (`irnn inspect M | head
/// -1`) ends irnn quietly with the status a shell shows for a Unix tool ended by
/// SIGPIPE (141), no panic message.
#[test]
fn closed_stdout_ends_quietly() {
    let m = synth_model("pipe", Some(8), 4, 6, 2, 5, 7);
    for args in [
        vec!["inspect", m.graph.to_str().unwrap()],
        vec!["inspect", m.graph.to_str().unwrap(), "--json"],
        vec!["pwl", "--function", "tanh", "--compare"],
    ] {
        let mut child = Command::new(irnn_bin())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end at once: every write of irnn fails with EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}");
    }
}

/// `irnn ARGS` with extra environment variables, expected to fail with status 1;
/// returns stderr.
fn fails_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(irnn_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("irnn runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    stderr
}

/// `irnn quantize SPEC --calib DATA -o DIR/q.irnn.json`, expected to fail.
fn quantize_fails(m: &TestModel, spec: &Path, data: &Path) -> String {
    let out = m.dir.path().join("q.irnn.json");
    let e = fails_env(
        &[
            "quantize",
            spec.to_str().unwrap(),
            "--calib",
            data.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.exists());
    e
}

/// Rewrites the JSON file at `path` with `edit`.
fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Crash (a layer count with no upper bound ran for minutes, then aborted): a huge
/// `num_layers` is refused at once, naming the limit and its variable; the limit is
/// configurable (IRNN_MAX_LAYERS=1 refuses this 2-layer model).
#[test]
fn layer_count_is_limited() {
    let m = synth_model("layers", Some(8), 4, 6, 2, 5, 8);
    let spec = m.dir.path().join("huge.json");
    std::fs::copy(&m.spec, &spec).unwrap();
    edit_json(&spec, |v| {
        v["layers"][1]["num_layers"] = 1_000_000_000_000_000u64.into()
    });
    let started = std::time::Instant::now();
    let e = quantize_fails(&m, &spec, &m.data);
    assert!(started.elapsed().as_secs() < 30);
    assert!(
        e.contains("exceeds the limit of 1024 layers") && e.contains("IRNN_MAX_LAYERS"),
        "{e}"
    );
    let out = m.dir.path().join("q.irnn.json");
    let e = fails_env(
        &[
            "quantize",
            m.spec.to_str().unwrap(),
            "--calib",
            m.data.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[("IRNN_MAX_LAYERS", "3")],
    );
    assert!(
        e.contains("too many layers (counting num_layers): 4 exceeds the limit of 3 layers"),
        "{e}"
    );
}

/// Crash (a size product that wraps in shape validation): graph sizes whose products
/// overflow are refused by the width limit, before any product; a zero width is
/// refused at load (as `gen` refuses it), for `run` and `gen` alike.
#[test]
fn graph_sizes_are_checked_before_products() {
    let m = synth_model("wrap", Some(8), 4, 6, 1, 5, 9);
    let original = std::fs::read_to_string(&m.graph).unwrap();
    let out = m.dir.path().join("o.npy");
    let run = [
        "run",
        m.graph.to_str().unwrap(),
        "--data",
        m.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let gen_dir = m.dir.path().join("gen");
    let gen = [
        "gen",
        m.graph.to_str().unwrap(),
        "--lang",
        "c",
        "-o",
        gen_dir.to_str().unwrap(),
    ];
    let huge = (1u64 << 62) + 1; // 4 * huge wraps to 4
    for (field, value, want) in [
        (
            "hidden_size",
            huge,
            "hidden_size: 4611686018427387905 exceeds the limit of 65536",
        ),
        (
            "input_size",
            u64::MAX,
            "input_size: 18446744073709551615 exceeds the limit",
        ),
        ("hidden_size", 0, "hidden_size must be at least 1"),
    ] {
        std::fs::write(&m.graph, &original).unwrap();
        edit_json(&m.graph, |v| v["layers"][1][field] = value.into());
        for args in [&run[..], &gen[..]] {
            let e = fails_env(args, &[]);
            assert!(e.contains(want) && e.contains("layers[1]"), "{e}");
        }
    }
    // Zero-width embedding and linear output.
    for (layer, field) in [(0, "dim"), (2, "out_size")] {
        std::fs::write(&m.graph, &original).unwrap();
        edit_json(&m.graph, |v| v["layers"][layer][field] = 0.into());
        let e = fails_env(&run, &[]);
        assert!(e.contains(&format!("{field} must be at least 1")), "{e}");
    }
    assert!(!out.exists() && !gen_dir.exists());
}

/// Crash (a tensor file that is a device) and a FIFO as data: refused as not a
/// regular file before it is read.
#[test]
fn special_files_are_refused() {
    let m = synth_model("dev", Some(8), 4, 6, 1, 5, 10);
    let out = m.dir.path().join("o.npy");
    let e = fails_env(
        &[
            "run",
            m.graph.to_str().unwrap(),
            "--data",
            "/dev/zero",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        e.contains("/dev/zero: is a device or other special file"),
        "{e}"
    );
    // The graph's tensor file replaced by a link to a device.
    let tensors = m.graph.with_file_name("dev.irnn.safetensors");
    std::fs::remove_file(&tensors).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &tensors).unwrap();
    let e = fails_env(&["inspect", m.graph.to_str().unwrap()], &[]);
    assert!(e.contains("dev.irnn.safetensors: is a device"), "{e}");
    // A FIFO as data: refused without blocking on open.
    let fifo = m.dir.path().join("fifo.npy");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let e = quantize_fails(&m, &m.spec, &fifo);
        assert!(e.contains("fifo.npy: is a FIFO"), "{e}");
    }
}

/// Writes a `.npy` file from a raw header dict and `data_bytes` bytes of data.
fn raw_npy(path: &Path, dict: &str, data_bytes: usize) {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_bytes));
    std::fs::write(path, bytes).unwrap();
}

/// Messages and crashes from `.npy` headers: a truncated file says so (not "failed to
/// fill whole buffer"), a shape whose product overflows and a sequence beyond the
/// steps limit are refused before allocation, each naming the file.
#[test]
fn npy_headers_are_checked() {
    let m = synth_model("npy", Some(8), 4, 6, 1, 5, 11);
    let p = m.dir.path().join("d.npy");
    let cases = [
        (
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 8), }",
            40,
            "truncated: the header declares shape [2, 8] of '<i4' (64 bytes of data) but the file holds 40 bytes of data",
        ),
        (
            "{'descr': '<i4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }",
            16,
            "has more elements than can be stored",
        ),
        (
            "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 200000000), }",
            0,
            "truncated",
        ),
        (
            "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
            20,
            "the file holds 20 bytes of data after it",
        ),
        (
            "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }",
            8,
            "has dtype 'a structured (record) dtype'",
        ),
    ];
    for (dict, bytes, want) in cases {
        raw_npy(&p, dict, bytes);
        let e = quantize_fails(&m, &m.spec, &p);
        assert!(e.contains("d.npy") && e.contains(want), "{e}");
        assert!(!e.contains("fill whole buffer"), "{e}");
    }
    // The steps limit, configurable.
    write_npy::<i32>(&p, &[1, 50], &[1; 50]);
    let out = m.dir.path().join("q.irnn.json");
    let e = fails_env(
        &[
            "quantize",
            m.spec.to_str().unwrap(),
            "--calib",
            p.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[("IRNN_MAX_STEPS", "49")],
    );
    assert!(
        e.contains("d.npy: a sequence of 50 exceeds the limit of 49 steps per sequence"),
        "{e}"
    );
}

/// Flag errors are blamed on the flag: `synth` sizes beyond the limits are refused
/// before anything is allocated or written.
#[test]
fn synth_flags_are_limited() {
    let d = tempfile::tempdir().unwrap();
    let o = d.path().join("s");
    let o = o.to_str().unwrap();
    let e = fails_env(&["synth", "-o", o, "--hidden", "100000000"], &[]);
    assert!(
        e.contains("--hidden 100000000: 100000000 exceeds the limit of 65536"),
        "{e}"
    );
    let e = fails_env(
        &["synth", "-o", o, "--hidden", "60000", "--layers", "100"],
        &[],
    );
    assert!(
        e.contains("the model would have too many parameters") && e.contains("IRNN_MAX_PARAMETERS"),
        "{e}"
    );
    let e = fails_env(
        &[
            "synth",
            "-o",
            o,
            "--sequences",
            "100000000",
            "--steps",
            "100000",
        ],
        &[],
    );
    assert!(
        e.contains("--sequences 100000000, --steps 100000: the data file"),
        "{e}"
    );
    assert!(!d.path().join("s").exists());
}

/// Redacts the temporary directory from a message (for snapshots).
fn redact(dir: &Path, e: &str) -> String {
    e.replace(&dir.display().to_string(), "[DIR]")
        .trim_end()
        .to_string()
}

/// Rewrites a float model's safetensors with `edit` applied to each tensor.
fn edit_float_weights(
    path: &Path,
    edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(Vec<usize>, Vec<f32>)>,
) {
    use irnn_codegen::tensors::{TensorFile, TensorWriter};
    let file = TensorFile::open(path).unwrap();
    let mut w = TensorWriter::default();
    for name in file.names() {
        let t = file.f32(&name, "").unwrap();
        if let Some((shape, data)) = edit(&name, t.shape, t.data) {
            w.f32(&name, &shape, &data);
        }
    }
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

/// Transposes a row-major `[r, c]` matrix.
fn transpose(shape: &[usize], d: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    let t = (0..r * c).map(|i| d[(i % r) * c + i / r]).collect();
    (vec![c, r], t)
}

/// Messages: a transposed weight is blamed on that tensor alone, as transposed (not
/// on the other tensors of the layer, nor as a width mismatch).
#[test]
fn transposed_weights_are_named() {
    for tensor in ["rnn.weight_hh_l0", "rnn.weight_ih_l1", "head.weight"] {
        let m = synth_model("tr", Some(8), 5, 6, 2, 4, 12);
        let weights = m.dir.path().join("tr.safetensors");
        edit_float_weights(&weights, |n, s, d| {
            Some(if n == tensor {
                transpose(&s, &d)
            } else {
                (s, d)
            })
        });
        let e = quantize_fails(&m, &m.spec, &m.data);
        let e = redact(m.dir.path(), &e);
        assert!(
            e.contains("1 problem") && e.contains("looks transposed"),
            "{e}"
        );
        insta::assert_snapshot!(format!("transposed_{tensor}"), e);
    }
}

/// Messages: one root cause is one line with a count of the affected rows or layers,
/// not one line per row.
#[test]
fn one_line_per_root_cause() {
    // Every bias row beyond the int32 grid.
    let m = synth_model("big", Some(8), 4, 64, 1, 4, 13);
    edit_float_weights(&m.dir.path().join("big.safetensors"), |n, s, d| {
        Some(if n == "head.bias" {
            let big = vec![1e30; d.len()];
            (s, big)
        } else {
            (s, d)
        })
    });
    let e = redact(m.dir.path(), &quantize_fails(&m, &m.spec, &m.data));
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(e.contains("in 4 of 4 rows (first: row 0"), "{e}");
    insta::assert_snapshot!("bias_rows_counted", e);
    // A wrong num_layers: 40 layers with no tensors.
    let m = synth_model("few", Some(8), 4, 6, 1, 4, 14);
    edit_json(&m.spec, |v| v["layers"][1]["num_layers"] = 41.into());
    let e = redact(m.dir.path(), &quantize_fails(&m, &m.spec, &m.data));
    assert_eq!(e.lines().count(), 2, "{e}");
    insta::assert_snapshot!("missing_layers_counted", e);
}

/// Messages: a bad `quantize` flag is blamed on the flag, once (not on a layer, once
/// per table).
#[test]
fn flag_errors_name_the_flag() {
    let m = synth_model("flags", Some(8), 4, 6, 1, 4, 15);
    let out = m.dir.path().join("q.irnn.json");
    for (flag, value, want) in [
        (
            "--pwl-max-pieces",
            "0",
            "error: --pwl-max-pieces 0: must be between 3 and 256",
        ),
        (
            "--pwl-max-pieces",
            "100000",
            "error: --pwl-max-pieces 100000: must be between",
        ),
        (
            "--pwl-tolerance",
            "nan",
            "error: --pwl-tolerance NaN: must be a finite number",
        ),
    ] {
        let e = fails_env(
            &[
                "quantize",
                m.spec.to_str().unwrap(),
                "--calib",
                m.data.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                flag,
                value,
            ],
            &[],
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with(want), "{e}");
    }
}

/// Silent acceptance: `eval --float` with a float model whose input differs from the
/// quantized model's is an error, not a meaningless comparison.
#[test]
fn eval_refuses_a_different_float_input() {
    let a = synth_model("fa", None, 5, 6, 1, 4, 16);
    let b = synth_model("fb", None, 7, 6, 1, 4, 17);
    let e = fails_env(
        &[
            "eval",
            a.graph.to_str().unwrap(),
            "--float",
            b.spec.to_str().unwrap(),
            "--data",
            a.data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        e.contains("the float model takes features of width 7 but the quantized model takes features of width 5"),
        "{e}"
    );
}

/// Messages: container errors are in the project's words, naming file and tensor:
/// no bare safetensors error names, no "failed to fill whole buffer".
#[test]
fn container_errors_are_translated() {
    let m = synth_model("ct", Some(8), 4, 6, 1, 4, 18);
    let weights = m.dir.path().join("ct.safetensors");
    let good = std::fs::read(&weights).unwrap();
    // Truncated tensor file.
    std::fs::write(&weights, &good[..good.len() - 10]).unwrap();
    let e = redact(m.dir.path(), &quantize_fails(&m, &m.spec, &m.data));
    for crate_word in [
        "MetadataIncompleteBuffer",
        "InvalidOffset",
        "TensorInvalidInfo",
        "HeaderTooLarge",
        "ValidationOverflow",
    ] {
        assert!(!e.contains(crate_word), "{e}");
    }
    insta::assert_snapshot!("truncated_safetensors", e);
    // Truncated data file.
    std::fs::write(&weights, &good).unwrap();
    let data = std::fs::read(&m.data).unwrap();
    let cut = m.dir.path().join("cut.npy");
    std::fs::write(&cut, &data[..data.len() - 3]).unwrap();
    let e = redact(m.dir.path(), &quantize_fails(&m, &m.spec, &cut));
    assert!(!e.contains("fill whole buffer"), "{e}");
    insta::assert_snapshot!("truncated_npy", e);
}

/// Layer names that are (or prefix) helpers, tables and API names of the generated C.
const HELPER_NAMES: &[&str] = &[
    "q",
    "q_prep",
    "q_mv_scalar",
    "q_sat8",
    "q_gate_pre",
    "q_req",
    "pwl0",
    "pwl1_n",
    "step",
    "state",
    "run",
    "matvec",
    "q_dsp_block",
    "q_word",
    "tanh_core",
    "clamp9",
    "q_dot_avx2",
    "q_mm",
];

/// Generated code that does not build: a layer named like a generated helper (`q`
/// made `{p}_q_cell` twice in the SIMD C) now gets another identifier. The C of every
/// target, integer and f32, compiles strictly for every such name (x86 targets with
/// gcc and their ISA flags, the AArch64 ones with aarch64-linux-gnu-gcc, cortex-m4 and
/// cortex-m55 with arm-none-eabi-gcc), for an LSTM and a GRU (per-op emitters).
#[test]
fn c_of_every_target_compiles_for_helper_named_layers() {
    use irnn_codegen::back::{Lang, Precision, Target, Unroll};
    use irnn_codegen::compile::{compile, CompileOptions};
    use support::c_harness::{cc, cortex_m_enabled, cross_enabled, ARM_NONE_EABI_CC, STRICT};
    let arm = cross_enabled("c_of_every_target_compiles_for_helper_named_layers");
    let cortex_m = cortex_m_enabled("c_of_every_target_compiles_for_helper_named_layers");
    let models = [
        synth_model("hn", Some(8), 4, 6, 1, 5, 19),
        synth_cell_model(irnn_codegen::spec::Cell::Gru, "hg", None, 4, 6, 1, 5, 20),
    ];
    for m in &models {
        let text = std::fs::read_to_string(&m.graph).unwrap();
        // Every name at every layer position (the collision needs the right layer).
        for round in 0..HELPER_NAMES.len() {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut names = Vec::new();
            for (k, layer) in v["layers"].as_array_mut().unwrap().iter_mut().enumerate() {
                let name = HELPER_NAMES[(round + k) % HELPER_NAMES.len()];
                layer["name"] = name.into();
                names.push(name);
            }
            let path = m.dir.path().join(format!("h{round}.irnn.json"));
            std::fs::write(&path, v.to_string()).unwrap();
            for target in [
                Target::Scalar,
                Target::Avx2,
                Target::Avx512Vnni,
                Target::Neon,
                Target::NeonDotprod,
                Target::CortexM4,
                Target::CortexM55,
            ] {
                if (target.is_arm() && !arm) || (target.is_cortex_m() && !cortex_m) {
                    continue;
                }
                for precision in [Precision::Int8, Precision::F32] {
                    let opts = CompileOptions {
                        lang: Lang::C,
                        target,
                        unroll: Unroll::None,
                        precision,
                        fusion: Default::default(),
                    };
                    let what = format!("{names:?} {target:?} {precision:?}");
                    let compiled = compile(&path, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
                    let dir = tempfile::tempdir().unwrap();
                    let mut c_file = None;
                    for f in &compiled.files {
                        std::fs::write(dir.path().join(&f.name), &f.contents).unwrap();
                        if f.name.ends_with(".c") {
                            c_file = Some(dir.path().join(&f.name));
                        }
                    }
                    let c_file = c_file.unwrap().display().to_string();
                    let mut args: Vec<&str> = STRICT.to_vec();
                    args.extend_from_slice(target.info().cc_flags);
                    args.extend_from_slice(&["-fsyntax-only", &c_file]);
                    let compiler = if target.is_arm() {
                        "aarch64-linux-gnu-gcc"
                    } else if target.is_cortex_m() {
                        ARM_NONE_EABI_CC
                    } else {
                        "gcc"
                    };
                    cc(compiler, &args, &what);
                }
            }
        }
    }
}

/// The fuzz targets' checks (fuzz/src/lib.rs), compiled here without libFuzzer.
#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_checks;

/// Replays every file of `fuzz/{regressions,seeds,corpus}/TARGET/` through `check`;
/// returns how many ran (at least one: every target keeps seeds).
fn replay_fuzz_target(name: &str, check: fn(&[u8])) -> usize {
    let root = repo_root().join("fuzz");
    let n: usize = ["regressions", "seeds", "corpus"]
        .iter()
        .map(|kind| fuzz_checks::replay(&root.join(kind).join(name), check))
        .sum();
    assert!(n > 0, "no corpus for fuzz target {name}");
    n
}

/// The fuzz replay tests share one scratch directory; the last to finish removes it.
fn fuzz_replay_done() {
    static LEFT: std::sync::Mutex<usize> = std::sync::Mutex::new(3);
    let mut left = LEFT.lock().unwrap_or_else(|e| e.into_inner());
    *left -= 1;
    if *left == 0 {
        let _ = std::fs::remove_dir_all(fuzz_checks::scratch());
    }
}

/// Fuzzing regressions: every crash reproducer (`fuzz/regressions/TARGET/`), seed
/// (`fuzz/seeds/TARGET/`) and minimized corpus file (`fuzz/corpus/TARGET/`) of every
/// loader fuzz target runs through the target's checks in the normal suite: no panic,
/// no abort.
#[test]
fn fuzz_corpora_and_reproducers_do_not_crash() {
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 5] = [
        ("spec_json", fuzz_checks::spec_json),
        ("graph_json", fuzz_checks::graph_json),
        ("graph_tensors", fuzz_checks::graph_tensors),
        ("safetensors", fuzz_checks::safetensors),
        ("npy", fuzz_checks::npy),
    ];
    let total: usize = targets
        .into_iter()
        .map(|(name, check)| replay_fuzz_target(name, check))
        .sum();
    assert!(
        fuzz_checks::replay(&repo_root().join("fuzz/regressions/npy"), fuzz_checks::npy) >= 1,
        "the npy header reproducer is kept"
    );
    eprintln!("replayed {total} fuzz inputs");
    fuzz_replay_done();
}

/// The `pipeline` fuzz target's seeds, corpus and reproducers: a small random model
/// (LSTM, GRU, RNN layers; tokens or features) is quantized, lowered and generated; its
/// C, built with gcc under ASan and UBSan, gives the interpreter's outputs bit for bit.
/// The reproducer `regressions/pipeline/no_output_linear` (a model without an output
/// linear, which `quantize` used to turn into a graph that does not load) must be
/// refused by `quantize`.
#[test]
fn fuzz_pipeline_inputs_match_the_interpreter() {
    let n = replay_fuzz_target("pipeline", fuzz_checks::pipeline);
    assert!(
        repo_root()
            .join("fuzz/regressions/pipeline/no_output_linear")
            .is_file(),
        "the reproducer is kept"
    );
    let compared = fuzz_checks::pipeline::COMPARED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        compared >= 3,
        "only {compared} of {n} pipeline inputs reached the compiled C"
    );
    eprintln!("replayed {n} pipeline inputs, {compared} compared with compiled C");
    fuzz_replay_done();
}

/// The `cli` fuzz target's seeds, corpus and reproducers: command lines from the real
/// clap definition, run in-process over a temporary directory: no panic, nothing
/// written outside it, no partial output after an error.
#[test]
fn fuzz_cli_inputs_leave_no_partial_output() {
    let n = replay_fuzz_target("cli", fuzz_checks::cli);
    eprintln!("replayed {n} cli inputs");
    fuzz_replay_done();
}

/// Lost data: a graph whose file name is what `gen` writes (`NAME.rs` for a model
/// named NAME) is not overwritten by `gen -o` its own directory.
#[test]
fn gen_output_onto_its_graph_is_refused() {
    let m = synth_model("self", Some(8), 4, 6, 1, 5, 21);
    let graph = m.dir.path().join("selfm.rs");
    let text = std::fs::read_to_string(&m.graph)
        .unwrap()
        .replace("\"name\": \"self\"", "\"name\": \"selfm\"");
    std::fs::write(&graph, &text).unwrap();
    let (code, e) = irnn(&[
        "gen",
        graph.to_str().unwrap(),
        "--lang",
        "rust",
        "-o",
        m.dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("also an input"), "{e}");
    assert_eq!(std::fs::read_to_string(&graph).unwrap(), text);
}

/// Partial outputs: `quantize` fails its own post-check (the staged graph does not
/// load: here its JSON, with the PWL tables, is beyond an IRNN_MAX_FILE_BYTES that
/// the spec, weights and data are within): no graph or tensor file is left, and an
/// old pair under the same names keeps its contents.
#[test]
fn quantize_post_check_failure_leaves_the_old_pair() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let args = [
        "synth",
        "-o",
        dir,
        "--vocab",
        "8",
        "--input",
        "4",
        "--hidden",
        "6",
        "--outputs",
        "5",
        "--sequences",
        "2",
        "--steps",
        "20",
    ];
    let (code, e) = irnn(&args);
    assert_eq!(code, Some(0), "{e}");
    let out = d.path().join("q.irnn.json");
    let tensors = d.path().join("q.irnn.safetensors");
    std::fs::write(&out, "old graph").unwrap();
    std::fs::write(&tensors, "old tensors").unwrap();
    let before = listing(d.path());
    let e = fails_env(
        &[
            "quantize",
            d.path().join("synth.json").to_str().unwrap(),
            "--calib",
            d.path().join("data.npy").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &[("IRNN_MAX_FILE_BYTES", "5000")],
    );
    assert!(
        e.contains("the quantized graph does not load") && e.contains("IRNN_MAX_FILE_BYTES"),
        "{e}"
    );
    assert_eq!(listing(d.path()), before);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old graph");
    assert_eq!(std::fs::read_to_string(&tensors).unwrap(), "old tensors");
}
