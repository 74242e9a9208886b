//! Shared helpers of the end-to-end tests: building quantized models in temporary
//! directories, locating the shipped models, and comparing outputs.
#![allow(dead_code)]

pub mod c_harness;
pub mod cortex_m;
pub mod skip;

use irnn_codegen::back::Target;
use irnn_codegen::graph::{write_graph, Graph};
use irnn_codegen::ir::{LayerIr, LstmIr, Program};
use irnn_codegen::lower::lower;
use irnn_codegen::npy::read_data;
use irnn_codegen::quantize::{quantize, QuantizeOptions};
use irnn_codegen::spec::{Cell, FloatModel, Nonlinearity};
use irnn_codegen::synth::{random_data_npy, write_float_model, SynthSpec};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Indices of the LSTM layers of `p` (cells whose ops are the LSTM step).
pub fn lstm_layers(p: &Program) -> Vec<usize> {
    (0..p.layers.len())
        .filter(|&i| match &p.layers[i] {
            LayerIr::Cell(l) => LstmIr::from_ops(l, &p.tables).is_some(),
            _ => false,
        })
        .collect()
}

/// The parameters of LSTM layer `i` of `p`, read back from its ops.
pub fn lstm(p: &Program, i: usize) -> LstmIr {
    match &p.layers[i] {
        LayerIr::Cell(l) => LstmIr::from_ops(l, &p.tables),
        _ => None,
    }
    .unwrap_or_else(|| panic!("layer {i} of {} is not an LSTM", p.name))
}

/// Edits the parameters of LSTM layer `i` of `p` and writes the layer back as ops.
pub fn edit_lstm(p: &mut Program, i: usize, f: impl FnOnce(&mut LstmIr)) {
    let mut l = lstm(p, i);
    f(&mut l);
    p.layers[i] = l.into();
}

/// Whether this CPU runs `target`'s SIMD code: `irnn bench`'s detection, checked
/// against the CPU's flags under CI (see [`skip::isa`]). Every x86/ARM run-or-skip
/// decision of the tests goes through here.
pub fn cpu_runs(target: Target) -> bool {
    target == Target::Scalar || skip::isa(target.name(), irnn_cli::bench::host_runs(target))
}

/// [`cpu_runs`], printing `SKIPPED {what}: this CPU lacks ...` when it does not.
pub fn cpu_runs_or_skip(target: Target, what: &str) -> bool {
    target == Target::Scalar
        || skip::needs_isa(what, target.name(), irnn_cli::bench::host_runs(target))
}

/// Whether this CPU has AVX-VNNI (and AVX2), checked like [`cpu_runs`].
pub fn cpu_has_avx_vnni() -> bool {
    skip::isa("avx-vnni", irnn_cli::bench::host_has_avx_vnni())
}

/// A quantized model built in a temporary directory.
pub struct TestModel {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The float spec.
    pub spec: PathBuf,
    /// The quantized graph.
    pub graph: PathBuf,
    /// Random input data (.npy) matching the model's input.
    pub data: PathBuf,
    /// The lowered program.
    pub program: Program,
}

/// Quantizes the float model at `spec` with `calib` into `out_json`.
pub fn quantize_files(spec: &Path, calib: &Path, out_json: &Path) -> Program {
    let model = FloatModel::load(spec).expect("float model loads");
    let data = read_data(calib).expect("calibration data loads");
    let tensor_name = irnn_cli::cli::tensor_file_name_for(out_json).expect("name");
    let (file, writer, _) = quantize(
        &model,
        &data,
        calib,
        &tensor_name,
        &QuantizeOptions::default(),
    )
    .expect("quantize");
    write_graph(out_json, &file, &writer).expect("write graph");
    lower(&Graph::load(out_json).expect("graph loads")).expect("lowers")
}

/// A synthetic model's shape: label, vocabulary (`None`: float features), input width,
/// hidden width, LSTM layers, outputs, seed.
pub type Shape = (&'static str, Option<usize>, usize, usize, usize, usize, u64);

/// Shapes that hit every tail of the SIMD kernels (rows = 4·hidden). hidden 20: 80 rows
/// = 10 AVX2 blocks (2 of them past the last group of 4 blocks), 5 VNNI blocks (1 past),
/// 20 NEON blocks; input 9: 3 groups of 4 (odd), 13: 4 groups with padding; hidden 7: a
/// single partial block.
pub const SIMD_SHAPES: [Shape; 4] = [
    ("tok_mid", Some(30), 13, 20, 1, 7, 21),
    ("feat_mid", None, 9, 20, 2, 5, 22),
    ("feat_small", None, 13, 7, 1, 3, 23),
    ("feat_wide", None, 40, 36, 1, 10, 24),
];

/// A labelled synthetic model.
pub struct Synth {
    /// The shape's label.
    pub label: &'static str,
    /// The model.
    pub model: TestModel,
}

/// Builds one model per shape.
pub fn synth_models(shapes: &[Shape]) -> Vec<Synth> {
    shapes
        .iter()
        .map(
            |&(label, vocab, input, hidden, layers, outputs, seed)| Synth {
                label,
                model: synth_model(label, vocab, input, hidden, layers, outputs, seed),
            },
        )
        .collect()
}

/// Builds a synthetic LSTM model: token input when `vocab` is `Some`, else features.
pub fn synth_model(
    name: &str,
    vocab: Option<usize>,
    input: usize,
    hidden: usize,
    layers: usize,
    outputs: usize,
    seed: u64,
) -> TestModel {
    synth_cell_model(
        Cell::Lstm,
        name,
        vocab,
        input,
        hidden,
        layers,
        outputs,
        seed,
    )
}

/// How many models [`cell_models`] builds.
pub fn cell_models_count() -> usize {
    CELL_SHAPES.len()
}

type CellShape = (
    &'static str,
    Cell,
    Option<usize>,
    usize,
    usize,
    usize,
    usize,
    u64,
);

const CELL_SHAPES: [CellShape; 4] = [
    ("gru_tok", Cell::Gru, Some(30), 13, 20, 1, 7, 41),
    ("gru_feat", Cell::Gru, None, 9, 20, 2, 5, 42),
    (
        "rnn_tanh",
        Cell::Rnn(Nonlinearity::Tanh),
        None,
        13,
        20,
        2,
        3,
        43,
    ),
    (
        "rnn_relu",
        Cell::Rnn(Nonlinearity::Relu),
        Some(25),
        40,
        7,
        1,
        10,
        44,
    ),
];

/// Synthetic GRU and Elman RNN models, with the shapes of [`SIMD_SHAPES`]' tails: GRU
/// rows 3·20 = 60 (7.5 AVX2 blocks, 3.75 VNNI blocks), RNN rows 20 and 7.
pub fn cell_models() -> Vec<Synth> {
    CELL_SHAPES
        .into_iter()
        .map(
            |(label, cell, vocab, input, hidden, layers, outputs, seed)| Synth {
                label,
                model: synth_cell_model(cell, label, vocab, input, hidden, layers, outputs, seed),
            },
        )
        .collect()
}

/// Builds a synthetic model of the given cell: token input when `vocab` is `Some`, else
/// features.
#[allow(clippy::too_many_arguments)]
pub fn synth_cell_model(
    cell: Cell,
    name: &str,
    vocab: Option<usize>,
    input: usize,
    hidden: usize,
    layers: usize,
    outputs: usize,
    seed: u64,
) -> TestModel {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = SynthSpec {
        name: name.to_string(),
        vocab_size: vocab,
        input_size: input,
        cell,
        hidden_size: hidden,
        num_layers: layers,
        output_size: outputs,
        gain: 2.0,
        seed,
    };
    let spec_path = write_float_model(dir.path(), &spec).expect("write float model");
    let data = dir.path().join("data.npy");
    std::fs::write(
        &data,
        random_data_npy(&spec, 4, 64, 1.0, seed + 7).expect("npy"),
    )
    .expect("write");
    let graph = dir.path().join(format!("{name}.irnn.json"));
    let program = quantize_files(&spec_path, &data, &graph);
    TestModel {
        dir,
        spec: spec_path,
        graph,
        data,
        program,
    }
}

/// The shipped character-level language model (spec, calibration data, test data).
pub fn charlm_paths() -> (PathBuf, PathBuf, PathBuf) {
    let d = repo_root().join("examples/charlm");
    (
        d.join("charlm.json"),
        d.join("data/calib.npy"),
        d.join("data/test_small.npy"),
    )
}

/// The shipped feature classifier (spec, calibration data, test data, labels).
pub fn features_paths() -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let d = repo_root().join("examples/features");
    (
        d.join("features.json"),
        d.join("data/calib.npy"),
        d.join("data/test.npy"),
        d.join("data/test_labels.npy"),
    )
}

/// Path to the built `irnn` binary (cargo builds a binary for the integration tests
/// of its own package only, and irnn's is in irnn-cli, so build it on demand).
pub fn irnn_bin() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let root = repo_root();
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "irnn-cli",
                "--bin",
                "irnn",
                "--profile",
                "test",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the irnn binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("irnn")
    })
    .clone()
}

/// Writes a C-ordered `.npy` file of `T` with the given shape.
pub fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    {
        let mut w = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut bytes)
            .begin_nd()
            .expect("npy header");
        w.extend(data.iter().copied()).expect("npy data");
        w.finish().expect("npy finish");
    }
    std::fs::write(path, bytes).expect("write npy");
}

/// The shape and values of a float32 `.npy` file.
pub fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("read npy");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy");
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().expect("f32 data"))
}
