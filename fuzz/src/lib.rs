//! What every fuzz target shares: one scratch directory per process (files written
//! there are what the loaders read: they take paths), seeded with a small valid
//! model, and the checks run on each input. The same functions are run over the
//! regression corpus (`fuzz/regressions/`) by the normal test suite
//! (`tests/hostile.rs`), so every crash found here stays fixed.

use irnn_codegen::graph::Graph;
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::InputIr;
use irnn_codegen::lower::lower;
use irnn_codegen::npy::{read_data, read_labels};
use irnn_codegen::spec::FloatModel;
use irnn_codegen::tensors::TensorFile;
use std::path::{Path, PathBuf};

/// The scratch directory of this process, with `tiny_tokens.irnn.json` +
/// `tiny_tokens.irnn.safetensors` (a valid quantized graph) and `synth.json` +
/// `synth.safetensors` (a valid float model) written into it once.
pub fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        // `IRNN_FUZZ_SCRATCH` (scripts/fuzz-ci: a directory it removes afterwards), else
        // /dev/shm where there is one (the loaders read files: keep them in memory).
        let base = if let Some(d) = std::env::var_os("IRNN_FUZZ_SCRATCH") {
            PathBuf::from(d)
        } else if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("irnn-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        std::fs::write(dir.join("tiny_tokens.irnn.json"), TINY_GRAPH).expect("seed graph");
        std::fs::write(dir.join("tiny_tokens.irnn.safetensors"), TINY_TENSORS)
            .expect("seed tensors");
        let spec = irnn_codegen::synth::SynthSpec {
            name: "synth".into(),
            vocab_size: Some(5),
            input_size: 3,
            cell: irnn_codegen::spec::Cell::Lstm,
            hidden_size: 4,
            num_layers: 1,
            output_size: 2,
            gain: 1.0,
            seed: 1,
        };
        irnn_codegen::synth::write_float_model(&dir, &spec).expect("seed float model");
        dir
    })
}

/// The seed quantized graph (the test suite's `tiny_tokens` model).
pub const TINY_GRAPH: &[u8] = include_bytes!("../../tests/models/tiny_tokens.irnn.json");
/// Its tensors.
pub const TINY_TENSORS: &[u8] = include_bytes!("../../tests/models/tiny_tokens.irnn.safetensors");

fn put(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, bytes).expect("write scratch file");
    p
}

/// Runs a loaded graph: lowers it and steps the reference interpreter twice.
fn exercise(graph: &Graph) {
    let Ok(program) = lower(graph) else { return };
    let mut it = Interpreter::new(&program);
    for step in 0..2i64 {
        let _ = match program.input {
            InputIr::Tokens { vocab_size } => it.step_token(step % vocab_size.max(1) as i64),
            InputIr::Features { size, .. } => it.step_features(&vec![step as i8; size]),
        };
    }
}

/// A float model spec: `bytes` as the JSON (its weights resolve to the seed model's
/// unless it names others).
pub fn spec_json(bytes: &[u8]) {
    scratch();
    let path = put("fuzz_spec.json", bytes);
    if let Ok(model) = FloatModel::load(&path) {
        use irnn_codegen::spec::InputSpec;
        let mut runner = irnn_codegen::float_ref::FloatRunner::new(&model);
        let mut obs = irnn_codegen::float_ref::NoObserver;
        for step in 0..2usize {
            match model.input {
                InputSpec::Tokens { vocab_size } => {
                    runner.step_token(step % vocab_size.max(1), &mut obs);
                }
                InputSpec::Features { size } => {
                    runner.step_features(&vec![0.5; size], &mut obs);
                }
            }
        }
    }
}

/// A quantized graph: `bytes` as the JSON (its tensors resolve to the seed tensors
/// unless it names others).
pub fn graph_json(bytes: &[u8]) {
    scratch();
    let path = put("fuzz_graph.irnn.json", bytes);
    if let Ok(g) = Graph::load(&path) {
        exercise(&g);
    }
}

/// A tensor file under the seed graph JSON (which names `fuzz_gt.irnn.safetensors`).
pub fn graph_tensors(bytes: &[u8]) {
    static JSON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let json = JSON.get_or_init(|| {
        let text = String::from_utf8_lossy(TINY_GRAPH)
            .replace("tiny_tokens.irnn.safetensors", "fuzz_gt.irnn.safetensors");
        put("fuzz_gt.irnn.json", text.as_bytes())
    });
    put("fuzz_gt.irnn.safetensors", bytes);
    if let Ok(g) = Graph::load(json) {
        exercise(&g);
    }
}

/// A safetensors file: open it and read every tensor as each type.
pub fn safetensors(bytes: &[u8]) {
    let _ = irnn_codegen::tensors::check_header(bytes);
    let path = put("fuzz.safetensors", bytes);
    if let Ok(f) = TensorFile::open(&path) {
        for name in f.names() {
            let _ = f.f32(&name, "");
            let _ = f.i8(&name, "");
            let _ = f.i32(&name, "");
        }
    }
}

/// A `.npy` file: read it as data and as labels.
pub fn npy(bytes: &[u8]) {
    let path = put("fuzz.npy", bytes);
    let _ = read_data(&path);
    let _ = read_labels(&path);
}

/// Runs `check` on every file of `dir` (the regression corpus of one target).
pub fn replay(dir: &Path, check: fn(&[u8])) -> usize {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.is_file() {
                check(&std::fs::read(&p).expect("read corpus file"));
                n += 1;
            }
        }
    }
    n
}

/// Reads a fuzz input's bytes as choices (the `cli` and `pipeline` targets); zeros
/// once it is exhausted.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.byte() as usize % (hi - lo + 1)
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.byte() as usize % items.len()]
    }

    /// Eight bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |a, _| (a << 8) | self.byte() as u64)
    }
}

#[path = "pipeline.rs"]
pub mod pipeline;

/// The whole pipeline on a small valid model decoded from `bytes`: quantize, lower,
/// interpret, generate, compile the C with gcc and compare (see [`pipeline`]).
pub fn pipeline(bytes: &[u8]) {
    pipeline::check(bytes);
}

#[path = "cli.rs"]
pub mod cli;

/// An `irnn` command line built from `bytes`, run in-process over a temporary
/// directory (see [`cli`]).
pub fn cli(bytes: &[u8]) {
    cli::check(bytes);
}
