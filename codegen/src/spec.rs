//! The float model input: a JSON spec naming PyTorch tensors in a safetensors file.
//!
//! ```json
//! { "name": "charlm", "weights": "charlm.safetensors",
//!   "input": { "kind": "tokens", "vocab_size": 65 },
//!   "layers": [ { "op": "embedding", "prefix": "embed" },
//!               { "op": "lstm", "prefix": "rnn", "num_layers": 2 },
//!               { "op": "linear", "prefix": "head" } ] }
//! ```
//!
//! Tensor names are PyTorch's own state-dict names. Shapes come from the tensors and
//! are cross-checked against each other and against the spec. See docs/FORMAT.md.

use crate::error::{check_problems, LoadError, Problem};
use crate::tensors::{expect_shape, TensorFile};
use crate::util::resolve_relative;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The JSON spec as written by the user.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Model name (becomes the generated code's prefix after sanitizing).
    pub name: String,
    /// Path of the safetensors weights, relative to the spec file.
    pub weights: String,
    /// What one step consumes.
    pub input: InputSpec,
    /// Layers in order.
    pub layers: Vec<LayerSpec>,
    /// Free-form metadata, carried into the quantized graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// The model input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputSpec {
    /// One token id per step.
    Tokens {
        /// Number of token ids.
        vocab_size: usize,
    },
    /// One float feature vector per step.
    Features {
        /// Width of the vector.
        size: usize,
    },
}

/// One layer entry of the spec.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `nn.Embedding`: `{prefix}.weight` `[V, D]`.
    Embedding {
        /// State-dict prefix.
        prefix: String,
    },
    /// `nn.LSTM`: `{prefix}.weight_ih_l{k}` etc.
    Lstm {
        /// State-dict prefix.
        prefix: String,
        /// Number of stacked layers (default 1).
        #[serde(default = "one")]
        num_layers: usize,
        /// Bidirectional LSTM (reverse tensors `_reverse`); not supported yet.
        #[serde(default)]
        bidirectional: bool,
    },
    /// `nn.GRU`: `{prefix}.weight_ih_l{k}` `[3H, I]` etc., gate order r, z, n.
    Gru {
        /// State-dict prefix.
        prefix: String,
        /// Number of stacked layers (default 1).
        #[serde(default = "one")]
        num_layers: usize,
        /// Bidirectional GRU; not supported yet.
        #[serde(default)]
        bidirectional: bool,
    },
    /// `nn.RNN` (Elman): `{prefix}.weight_ih_l{k}` `[H, I]` etc.
    Rnn {
        /// State-dict prefix.
        prefix: String,
        /// Number of stacked layers (default 1).
        #[serde(default = "one")]
        num_layers: usize,
        /// `"tanh"` (PyTorch's default) or `"relu"`.
        #[serde(default)]
        nonlinearity: Nonlinearity,
        /// Bidirectional RNN; not supported yet.
        #[serde(default)]
        bidirectional: bool,
    },
    /// `nn.Linear`: `{prefix}.weight` `[O, I]`, optional `{prefix}.bias` `[O]`.
    Linear {
        /// State-dict prefix.
        prefix: String,
    },
}

fn one() -> usize {
    1
}

/// The activation of an Elman RNN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nonlinearity {
    /// `tanh` (PyTorch's default).
    #[default]
    Tanh,
    /// `max(x, 0)`.
    Relu,
}

/// The kind of a recurrent cell, with its gate count and PyTorch module name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    /// `nn.LSTM`: gates i, f, g, o.
    Lstm,
    /// `nn.GRU`: gates r, z, n.
    Gru,
    /// `nn.RNN` with its nonlinearity.
    Rnn(Nonlinearity),
}

impl Cell {
    /// Rows of `weight_ih` per hidden unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn(_) => 1,
        }
    }

    /// The PyTorch module's name.
    pub fn module(self) -> &'static str {
        match self {
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
            Cell::Rnn(_) => "RNN",
        }
    }
}

/// A loaded, validated float model.
#[derive(Clone, Debug)]
pub struct FloatModel {
    /// Model name.
    pub name: String,
    /// The spec file it came from.
    pub spec_path: PathBuf,
    /// The input.
    pub input: InputSpec,
    /// Layers, with multi-layer recurrent cells expanded into one entry per layer.
    pub layers: Vec<FloatLayer>,
    /// Metadata from the spec.
    pub metadata: Option<serde_json::Value>,
}

/// A dense row-major f32 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` elements.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// One float layer.
#[derive(Clone, Debug, PartialEq)]
pub enum FloatLayer {
    /// Embedding table `[V, D]`.
    Embedding {
        /// Layer name (the prefix).
        name: String,
        /// The table.
        weight: Matrix,
    },
    /// One layer of a recurrent cell (PyTorch's gate order: i, f, g, o for the LSTM;
    /// r, z, n for the GRU), `G` gates of `H` rows each.
    Recurrent {
        /// Layer name, `{prefix}.l{k}`.
        name: String,
        /// The cell.
        cell: Cell,
        /// `[G·H, I]`.
        w_ih: Matrix,
        /// `[G·H, H]`.
        w_hh: Matrix,
        /// `[G·H]`.
        b_ih: Vec<f32>,
        /// `[G·H]`.
        b_hh: Vec<f32>,
    },
    /// Linear layer.
    Linear {
        /// Layer name (the prefix).
        name: String,
        /// `[O, I]`.
        weight: Matrix,
        /// `[O]` (zeros when the file has no bias).
        bias: Vec<f32>,
    },
}

impl FloatLayer {
    /// Layer name.
    pub fn name(&self) -> &str {
        match self {
            FloatLayer::Embedding { name, .. }
            | FloatLayer::Recurrent { name, .. }
            | FloatLayer::Linear { name, .. } => name,
        }
    }

    /// Width of the layer's output.
    pub fn output_size(&self) -> usize {
        match self {
            FloatLayer::Embedding { weight, .. } => weight.cols,
            FloatLayer::Recurrent { w_hh, .. } => w_hh.cols,
            FloatLayer::Linear { weight, .. } => weight.rows,
        }
    }
}

impl FloatModel {
    /// Loads and validates a spec and its weights. All problems found are reported
    /// together.
    pub fn load(spec_path: &Path) -> Result<Self, LoadError> {
        let text = crate::limits::read_input_file(spec_path)?;
        let spec: SpecFile =
            serde_json::from_slice(&text).map_err(|e| LoadError::json(spec_path, e))?;
        let weights_path = resolve_relative(spec_path, &spec.weights);
        let tensors = TensorFile::open(&weights_path)?;
        Self::from_spec(spec_path, spec, &tensors)
    }

    /// Builds the model from a parsed spec and an open weights file.
    pub fn from_spec(
        spec_path: &Path,
        spec: SpecFile,
        tensors: &TensorFile,
    ) -> Result<Self, LoadError> {
        let mut problems = Vec::new();
        let mut layers = Vec::new();
        if spec.layers.is_empty() {
            problems.push(Problem::new("layers", "the model has no layers"));
        }
        let limits = crate::limits::Limits::get();
        match &spec.input {
            InputSpec::Tokens { vocab_size: 0 } => {
                problems.push(Problem::new("input.vocab_size", "must be at least 1"))
            }
            InputSpec::Features { size: 0 } => {
                problems.push(Problem::new("input.size", "must be at least 1"))
            }
            InputSpec::Tokens { vocab_size } => {
                if let Err(e) = limits.vocab().check(*vocab_size as u64) {
                    problems.push(Problem::new("input.vocab_size", e));
                }
            }
            InputSpec::Features { size } => {
                if let Err(e) = limits.width().check(*size as u64) {
                    problems.push(Problem::new("input.size", e));
                }
            }
        }
        // Layer counts before anything is loaded per layer: a huge `num_layers` is one
        // problem, not a loop over missing tensors.
        let expanded = spec.layers.iter().fold(0u64, |n, l| {
            n.saturating_add(match l {
                LayerSpec::Lstm { num_layers, .. }
                | LayerSpec::Gru { num_layers, .. }
                | LayerSpec::Rnn { num_layers, .. } => *num_layers as u64,
                _ => 1,
            })
        });
        if let Err(e) = limits.layers().check(expanded) {
            problems.push(Problem::new(
                "layers",
                format!("too many layers (counting num_layers): {e}"),
            ));
            return Err(LoadError::Invalid {
                file: spec_path.to_path_buf(),
                problems,
            });
        }
        for (index, layer) in spec.layers.iter().enumerate() {
            let at = |name: &str| format!("layers[{index}] (\"{name}\")");
            match layer {
                LayerSpec::Embedding { prefix } => {
                    let loc = at(prefix);
                    let name = format!("{prefix}.weight");
                    match tensors
                        .f32(&name, &loc)
                        .and_then(|t| matrix(t, &name, &loc))
                    {
                        Ok(weight) => layers.push(FloatLayer::Embedding {
                            name: prefix.clone(),
                            weight,
                        }),
                        Err(p) => problems.push(p),
                    }
                }
                LayerSpec::Lstm {
                    prefix,
                    num_layers,
                    bidirectional,
                } => load_recurrent(
                    tensors,
                    Cell::Lstm,
                    prefix,
                    *num_layers,
                    *bidirectional,
                    &at(prefix),
                    &mut layers,
                    &mut problems,
                ),
                LayerSpec::Gru {
                    prefix,
                    num_layers,
                    bidirectional,
                } => load_recurrent(
                    tensors,
                    Cell::Gru,
                    prefix,
                    *num_layers,
                    *bidirectional,
                    &at(prefix),
                    &mut layers,
                    &mut problems,
                ),
                LayerSpec::Rnn {
                    prefix,
                    num_layers,
                    nonlinearity,
                    bidirectional,
                } => load_recurrent(
                    tensors,
                    Cell::Rnn(*nonlinearity),
                    prefix,
                    *num_layers,
                    *bidirectional,
                    &at(prefix),
                    &mut layers,
                    &mut problems,
                ),
                LayerSpec::Linear { prefix } => {
                    let loc = at(prefix);
                    let wname = format!("{prefix}.weight");
                    let bname = format!("{prefix}.bias");
                    let weight = tensors
                        .f32(&wname, &loc)
                        .and_then(|t| matrix(t, &wname, &loc));
                    let bias = if tensors.contains(&bname) {
                        tensors.f32(&bname, &loc).map(Some)
                    } else {
                        Ok(None)
                    };
                    match (weight, bias) {
                        (Ok(weight), Ok(bias)) => {
                            let bias = match bias {
                                Some(b) => {
                                    if b.shape == [weight.cols] && weight.rows != weight.cols {
                                        problems.push(Problem::new(
                                            &loc,
                                            format!(
                                                "tensor \"{wname}\" has shape [{}, {}]; expected [{}, {}] — it looks transposed (nn.Linear stores [out, in], and \"{bname}\" has {} outputs)",
                                                weight.rows, weight.cols, weight.cols, weight.rows, weight.cols
                                            ),
                                        ));
                                        continue;
                                    }
                                    if let Err(p) = expect_shape(&b, &bname, &[weight.rows], &loc) {
                                        problems.push(p);
                                        continue;
                                    }
                                    b.data
                                }
                                None => vec![0.0; weight.rows],
                            };
                            layers.push(FloatLayer::Linear {
                                name: prefix.clone(),
                                weight,
                                bias,
                            });
                        }
                        (w, b) => {
                            problems.extend(w.err());
                            problems.extend(b.err());
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            check_chain(&spec.input, &layers, &mut problems);
            check_sizes(&layers, &mut problems);
        }
        check_problems(spec_path, problems)?;
        Ok(FloatModel {
            name: spec.name,
            spec_path: spec_path.to_path_buf(),
            input: spec.input,
            layers,
            metadata: spec.metadata,
        })
    }

    /// Width of the final output.
    pub fn output_size(&self) -> usize {
        self.layers.last().map(|l| l.output_size()).unwrap_or(0)
    }
}

fn matrix(t: crate::tensors::Tensor<f32>, name: &str, loc: &str) -> Result<Matrix, Problem> {
    if t.shape.len() != 2 || t.shape[0] == 0 || t.shape[1] == 0 {
        return Err(Problem::new(
            loc,
            format!(
                "tensor \"{name}\" has shape {:?}; expected a non-empty matrix",
                t.shape
            ),
        ));
    }
    Ok(Matrix {
        rows: t.shape[0],
        cols: t.shape[1],
        data: t.data,
    })
}

/// Loads the `num_layers` stacked layers of a recurrent cell into `layers`.
#[allow(clippy::too_many_arguments)]
fn load_recurrent(
    tensors: &TensorFile,
    cell: Cell,
    prefix: &str,
    num_layers: usize,
    bidirectional: bool,
    loc: &str,
    layers: &mut Vec<FloatLayer>,
    problems: &mut Vec<Problem>,
) {
    let module = cell.module();
    if bidirectional {
        problems.push(Problem::new(
            loc,
            format!("bidirectional {module} is not supported yet; export a unidirectional one"),
        ));
        return;
    }
    if num_layers == 0 {
        problems.push(Problem::new(loc, "num_layers must be at least 1"));
        return;
    }
    // Layers with all of their tensors missing (a wrong prefix, a wrong num_layers)
    // are one problem with a count, not four lines per layer.
    let mut absent: Vec<(usize, Vec<Problem>)> = Vec::new();
    for k in 0..num_layers {
        match load_recurrent_layer(tensors, cell, prefix, k, loc) {
            Ok(l) => layers.push(l),
            Err(p) if p.len() == 4 && p.iter().all(|p| p.message.contains("is missing from")) => {
                absent.push((k, p))
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    let count = absent.len();
    match absent.as_mut_slice() {
        [] => {}
        [(_, p)] => problems.append(p),
        [(first, _), ..] => problems.push(Problem::new(
            loc,
            format!(
                "{} of the {num_layers} layers have none of their tensors in {} (first: \"{prefix}.weight_ih_l{first}\", \"{prefix}.weight_hh_l{first}\", \"{prefix}.bias_ih_l{first}\", \"{prefix}.bias_hh_l{first}\"); check \"prefix\" and \"num_layers\"",
                count,
                tensors.path().display()
            ),
        )),
    }
    let extra = format!("{prefix}.weight_ih_l{num_layers}");
    if tensors.contains(&extra) {
        problems.push(Problem::new(
            loc,
            format!("the weights hold \"{extra}\": the {module} has more than num_layers = {num_layers} layers"),
        ));
    }
}

fn load_recurrent_layer(
    tensors: &TensorFile,
    cell: Cell,
    prefix: &str,
    k: usize,
    loc: &str,
) -> Result<FloatLayer, Vec<Problem>> {
    let (gates, module) = (cell.gates(), cell.module());
    let names = [
        format!("{prefix}.weight_ih_l{k}"),
        format!("{prefix}.weight_hh_l{k}"),
        format!("{prefix}.bias_ih_l{k}"),
        format!("{prefix}.bias_hh_l{k}"),
    ];
    let mut problems = Vec::new();
    let w_ih = tensors
        .f32(&names[0], loc)
        .and_then(|t| matrix(t, &names[0], loc));
    let w_hh = tensors
        .f32(&names[1], loc)
        .and_then(|t| matrix(t, &names[1], loc));
    let b_ih = tensors.f32(&names[2], loc);
    let b_hh = tensors.f32(&names[3], loc);
    let (w_ih, w_hh, b_ih, b_hh) = match (w_ih, w_hh, b_ih, b_hh) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (a, b, c, d) => {
            problems.extend(a.err());
            problems.extend(b.err());
            problems.extend(c.err());
            problems.extend(d.err());
            return Err(problems);
        }
    };
    // The hidden size from w_hh `[G·H, H]`; a transposed w_hh (`[H, G·H]`) is named
    // as such and its H used for the other checks, so they are not blamed too.
    let hidden = if w_hh.rows == gates * w_hh.cols {
        w_hh.cols
    } else if w_hh.cols == gates * w_hh.rows && gates > 1 {
        problems.push(Problem::new(
            loc,
            format!(
                "tensor \"{}\" has shape [{}, {}]; expected [{}, {}] — it looks transposed (PyTorch stores [{gates} × hidden, hidden])",
                names[1], w_hh.rows, w_hh.cols, w_hh.cols, w_hh.rows
            ),
        ));
        w_hh.rows
    } else {
        let hidden = w_hh.cols;
        problems.push(Problem::new(
            loc,
            format!(
                "tensor \"{}\" has shape [{}, {}]; an {module} with hidden size {hidden} needs [{}, {hidden}]",
                names[1], w_hh.rows, w_hh.cols, gates * hidden
            ),
        ));
        hidden
    };
    if w_ih.rows != gates * hidden && w_ih.cols == gates * hidden {
        problems.push(Problem::new(
            loc,
            format!(
                "tensor \"{}\" has shape [{}, {}]; expected [{}, {}] — it looks transposed (PyTorch stores [{gates} × hidden, input])",
                names[0], w_ih.rows, w_ih.cols, w_ih.cols, w_ih.rows
            ),
        ));
    } else if w_ih.rows != gates * hidden {
        problems.push(Problem::new(
            loc,
            format!(
                "tensor \"{}\" has {} rows; expected {gates} × hidden size = {}",
                names[0],
                w_ih.rows,
                gates * hidden
            ),
        ));
    }
    for (t, n) in [(&b_ih, &names[2]), (&b_hh, &names[3])] {
        if let Err(p) = expect_shape(t, n, &[gates * hidden], loc) {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(FloatLayer::Recurrent {
        name: format!("{prefix}.l{k}"),
        cell,
        w_ih,
        w_hh,
        b_ih: b_ih.data,
        b_hh: b_hh.data,
    })
}

/// Cross-checks that each layer's input width matches the previous output.
fn check_chain(input: &InputSpec, layers: &[FloatLayer], problems: &mut Vec<Problem>) {
    let mut width = match input {
        InputSpec::Tokens { .. } => None,
        InputSpec::Features { size } => Some(*size),
    };
    for (index, layer) in layers.iter().enumerate() {
        let loc = format!("layer \"{}\"", layer.name());
        match layer {
            FloatLayer::Embedding { weight, .. } => {
                match input {
                    InputSpec::Tokens { vocab_size } if index == 0 => {
                        if weight.rows != *vocab_size {
                            problems.push(Problem::new(
                                &loc,
                                format!(
                                    "embedding has {} rows but input.vocab_size is {vocab_size}",
                                    weight.rows
                                ),
                            ));
                        }
                    }
                    _ => problems.push(Problem::new(
                        &loc,
                        "an embedding must be the first layer of a model with token input",
                    )),
                }
                width = Some(weight.cols);
            }
            FloatLayer::Recurrent { w_ih, w_hh, .. } => {
                check_width(&loc, width, w_ih.cols, problems);
                width = Some(w_hh.cols);
            }
            FloatLayer::Linear { weight, name, .. } => {
                if width == Some(weight.rows) && width != Some(weight.cols) {
                    problems.push(Problem::new(
                        &loc,
                        format!(
                            "tensor \"{name}.weight\" has shape [{}, {}]; expected [{}, {}] — it looks transposed (nn.Linear stores [out, in])",
                            weight.rows, weight.cols, weight.cols, weight.rows
                        ),
                    ));
                } else {
                    check_width(&loc, width, weight.cols, problems);
                }
                width = Some(weight.rows);
            }
        }
    }
    if let (InputSpec::Tokens { .. }, Some(first)) = (input, layers.first()) {
        if !matches!(first, FloatLayer::Embedding { .. }) {
            problems.push(Problem::new(
                format!("layer \"{}\"", first.name()),
                "a model with token input must start with an embedding",
            ));
        }
    }
}

/// Widths, vocabulary and the parameter count against [`crate::limits::Limits`].
fn check_sizes(layers: &[FloatLayer], problems: &mut Vec<Problem>) {
    let limits = crate::limits::Limits::get();
    let mut parameters = 0u64;
    for layer in layers {
        let loc = format!("layer \"{}\"", layer.name());
        let mut check = |what: &str, n: usize, limit: crate::limits::Limit| {
            if let Err(e) = limit.check(n as u64) {
                problems.push(Problem::new(&loc, format!("{what}: {e}")));
            }
        };
        match layer {
            FloatLayer::Embedding { weight, .. } => {
                check("vocabulary", weight.rows, limits.vocab());
                check("width", weight.cols, limits.width());
                parameters = parameters.saturating_add(weight.data.len() as u64);
            }
            FloatLayer::Recurrent {
                w_ih, w_hh, b_ih, ..
            } => {
                check("input width", w_ih.cols, limits.width());
                check("hidden width", w_hh.cols, limits.width());
                let n = w_ih.data.len() + w_hh.data.len() + 2 * b_ih.len();
                parameters = parameters.saturating_add(n as u64);
            }
            FloatLayer::Linear { weight, bias, .. } => {
                check("input width", weight.cols, limits.width());
                check("output width", weight.rows, limits.width());
                parameters = parameters.saturating_add((weight.data.len() + bias.len()) as u64);
            }
        }
    }
    if let Err(e) = limits.parameters().check(parameters) {
        problems.push(Problem::new("layers", format!("too many parameters: {e}")));
    }
}

fn check_width(loc: &str, have: Option<usize>, want: usize, problems: &mut Vec<Problem>) {
    match have {
        Some(w) if w == want => {}
        Some(w) => problems.push(Problem::new(
            loc,
            format!("takes inputs of width {want} but the previous layer produces {w}"),
        )),
        None => problems.push(Problem::new(
            loc,
            "needs a vector input; token input must go through an embedding first",
        )),
    }
}
