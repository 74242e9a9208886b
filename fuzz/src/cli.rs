//! The `cli` target: bytes → an `irnn` command line built from the real clap
//! definition (`irnn_cli::cli::Cli`: every subcommand but `train` and `bench`, each of
//! its arguments but `pwl --compare` included or not, values drawn from pools of paths
//! and numbers) over a fresh temporary directory holding a small valid model (float
//! spec + weights, its quantized graph pair, token data and labels), a junk file of
//! the fuzz bytes, a subdirectory, a FIFO, and symbolic links (to a file, dangling,
//! and one leading out of the directory) → `Cli::try_parse_from` and `run_cli` in this
//! process. `IRNN_FUZZ_SHOW_ARGS=1` prints each command line.
//!
//! Checked: no panic; nothing is written outside the directory; after an error no
//! file was created, changed or removed (output sets are all or nothing); after a
//! success no staging directory (`.irnn-out-*`) is left.

use super::Bytes;
use clap::{CommandFactory, Parser};
use irnn_cli::cli::{run_cli, Cli};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Subcommands not fuzzed: `train` runs another program, `bench` compiles and times C
/// at -O3 (seconds per run).
const SKIPPED: &[&str] = &["train", "bench", "help"];

/// Flags never given (their choice byte is still read): `pwl --compare` fits every
/// method at five piece counts, half a second in a release build and over 20 s in the
/// fuzzing build (ASan, debug assertions), past the run's timeout.
const SKIPPED_FLAGS: &[(&str, &str)] = &[("pwl", "compare")];

/// Paths of the directory, as given on the command line (joined to it).
const INPUTS: &[&str] = &[
    "m.irnn.json",
    "m.irnn.safetensors",
    "f.json",
    "f.safetensors",
    "data.npy",
    "labels.npy",
    "junk",
    "junk.irnn.json",
    "missing.npy",
    "sub",
    "sub/../data.npy",
    "./f.json",
    "link.npy",
    "dangling",
    "fifo",
    "",
    ".",
];

/// Output paths: new names, existing inputs, directories, links (one leads out of the
/// directory).
const OUTPUTS: &[&str] = &[
    "out.irnn.json",
    "out.npy",
    "out.html",
    "outdir",
    "m.irnn.json",
    "data.npy",
    "sub",
    "sub/../m.irnn.json",
    ".",
    "junk",
    "new/deep/x.irnn.json",
    "link.npy",
    "dangling",
    "escape.irnn.json",
    "escape",
    "fifo",
    "",
];

/// Numbers and other values of flags; a few beyond every limit, none large enough to
/// make a valid run slow (`synth` writes what it is asked to).
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "5",
    "12",
    "24",
    "99.9",
    "-1",
    "99999999999",
    "18446744073709551616",
    "1e3",
    "nan",
    "inf",
    "x",
    "",
];

/// The valid files every run starts from, written once per process.
fn template() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = super::scratch().join("cli-template");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("template directory");
        let spec = irnn_codegen::synth::SynthSpec {
            name: "f".into(),
            vocab_size: Some(5),
            input_size: 3,
            cell: irnn_codegen::spec::Cell::Gru,
            hidden_size: 4,
            num_layers: 1,
            output_size: 3,
            gain: 1.0,
            seed: 2,
        };
        let spec_path = irnn_codegen::synth::write_float_model(&dir, &spec).expect("float model");
        let data = irnn_codegen::synth::random_data_npy(&spec, 2, 6, 1.0, 3).expect("data");
        std::fs::write(dir.join("data.npy"), data).expect("write data");
        let labels = irnn_codegen::npy::i32_npy_bytes(&[2], &[0, 2]).expect("labels");
        std::fs::write(dir.join("labels.npy"), labels).expect("write labels");
        let model = irnn_codegen::spec::FloatModel::load(&spec_path).expect("float model loads");
        let calib = irnn_codegen::npy::read_data(&dir.join("data.npy")).expect("data loads");
        let (file, tensors, _) = irnn_codegen::quantize::quantize(
            &model,
            &calib,
            &dir.join("data.npy"),
            "m.irnn.safetensors",
            &Default::default(),
        )
        .expect("quantize");
        irnn_codegen::graph::write_graph(&dir.join("m.irnn.json"), &file, &tensors)
            .expect("write graph");
        dir
    })
}

/// Every file and link under `dir` (relative path → contents or link target), and
/// every directory (→ `None`).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).expect("read link");
                out.insert(rel, Some(target.as_os_str().as_encoded_bytes().to_vec()));
            } else if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else if meta.is_file() {
                out.insert(rel, Some(std::fs::read(&p).expect("read file")));
            } else {
                out.insert(rel, Some(b"<special>".to_vec()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Builds the argument vector (program name first) from the real clap definition.
pub fn argv(data: &[u8], dir: &Path) -> Vec<String> {
    let mut b = Bytes(data);
    let cmd = Cli::command();
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !SKIPPED.contains(&s.get_name()))
        .collect();
    let sub = subs[b.byte() as usize % subs.len()];
    let mut args = vec!["irnn".to_string(), sub.get_name().to_string()];
    let path = |rel: &str| {
        if rel.is_empty() {
            String::new()
        } else {
            dir.join(rel).display().to_string()
        }
    };
    for arg in sub.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let positional = arg.is_positional();
        let choice = b.byte();
        if SKIPPED_FLAGS.contains(&(sub.get_name(), id)) {
            continue;
        }
        // Positionals nearly always; flags half the time.
        if (positional && choice < 8) || (!positional && choice % 2 == 0) {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        if let Some(long) = arg.get_long() {
            args.push(format!("--{long}"));
        }
        if !takes_value {
            continue;
        }
        let values = arg.get_possible_values();
        let value = if !values.is_empty() {
            if b.byte() % 16 == 0 {
                b.pick(NUMBERS).to_string()
            } else {
                values[b.byte() as usize % values.len()]
                    .get_name()
                    .to_string()
            }
        } else {
            match id {
                "output" | "out" => path(b.pick(OUTPUTS)),
                "spec" | "model" | "calib" | "data" | "float_spec" | "labels" => {
                    path(b.pick(INPUTS))
                }
                "name" => b.pick(&["f", "m", "x y", "../up", "", "q"]).to_string(),
                // Layers: at most 3 unless beyond the limit (a valid deep model would
                // only be slow).
                "layers" => b
                    .pick(&["0", "1", "2", "3", "99999999999", "x"])
                    .to_string(),
                _ => b.pick(NUMBERS).to_string(),
            }
        };
        args.push(value);
    }
    // The global flag, anywhere.
    if b.byte() % 4 == 0 {
        args.push("-q".into());
    }
    args
}

/// One command line in a fresh directory, with the checks of the module documentation.
pub fn check(data: &[u8]) {
    let base = super::scratch().join("cli");
    let dir = base.join("t");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&dir).expect("run directory");
    for f in [
        "f.json",
        "f.safetensors",
        "m.irnn.json",
        "m.irnn.safetensors",
        "data.npy",
        "labels.npy",
    ] {
        std::fs::copy(template().join(f), dir.join(f)).expect("copy template file");
    }
    // The first byte: how many of the next bytes are the junk file; the rest choose
    // the command line.
    let n = data.first().map_or(0, |&n| n as usize);
    let body = data.get(1..).unwrap_or(&[]);
    let (junk, rest) = body.split_at(n.min(body.len()));
    std::fs::write(dir.join("junk"), junk).expect("junk");
    std::fs::write(dir.join("junk.irnn.json"), junk).expect("junk graph");
    std::fs::create_dir(dir.join("sub")).expect("sub");
    std::os::unix::fs::symlink("data.npy", dir.join("link.npy")).expect("link");
    std::os::unix::fs::symlink("nowhere", dir.join("dangling")).expect("dangling link");
    std::os::unix::fs::symlink("../escaped", dir.join("escape")).expect("escape link");
    std::os::unix::fs::symlink("../escaped.irnn.json", dir.join("escape.irnn.json"))
        .expect("escape link");
    let fifo =
        std::ffi::CString::new(dir.join("fifo").as_os_str().as_encoded_bytes()).expect("fifo path");
    // SAFETY: a valid NUL-terminated path.
    let made = unsafe { libc_mkfifo(fifo.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo");

    let args = argv(rest, &dir);
    // To see which command line an input (say a timeout reproducer) runs.
    if std::env::var_os("IRNN_FUZZ_SHOW_ARGS").is_some() {
        eprintln!("irnn-fuzz cli: {args:?}");
    }
    let before = snapshot(&dir);
    let result = match Cli::try_parse_from(&args) {
        Ok(cli) => Some(run_cli(cli)),
        Err(_) => None,
    };
    let after = snapshot(&dir);
    let outside: Vec<_> = std::fs::read_dir(&base)
        .expect("base")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "t")
        .collect();
    assert!(
        outside.is_empty(),
        "{args:?} wrote outside its directory: {outside:?}"
    );
    match result {
        Some(Ok(())) => {
            let staged: Vec<_> = after
                .keys()
                .filter(|p| p.to_string_lossy().contains(".irnn-out"))
                .collect();
            assert!(staged.is_empty(), "{args:?} left {staged:?}");
        }
        Some(Err(e)) => {
            if after != before {
                let changed: Vec<_> = before
                    .keys()
                    .chain(after.keys())
                    .filter(|k| before.get(*k) != after.get(*k))
                    .collect();
                panic!("{args:?} failed ({e:#}) but changed {changed:?}");
            }
        }
        None => assert_eq!(after, before, "{args:?}: a parse error changed files"),
    }
    let _ = std::fs::remove_dir_all(&base);
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}
