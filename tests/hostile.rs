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
