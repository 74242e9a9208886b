//! The quantized graph format: `NAME.irnn.json` plus an integer safetensors file.
//!
//! The JSON holds the structure, every scale, zero point, bit width and PWL table; the
//! safetensors file holds int8 weights, int32 biases and the f32 per-row weight scales.
//! docs/FORMAT.md is the normative description; this module is its implementation.
//! Loading validates everything a later pass relies on and reports all problems at
//! once.

use crate::error::{check_problems, LoadError, Problem};
use crate::ir::PwlTable;
use crate::tensors::{Tensor, TensorFile, TensorWriter};
use crate::util::{resolve_relative, sha256_hex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Value of the `format` field.
pub const FORMAT_NAME: &str = "irnn-graph";
/// The version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The `.irnn.json` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    /// Always `"irnn-graph"`.
    pub format: String,
    /// Format version; this build reads version 1.
    pub version: u32,
    /// Model name.
    pub name: String,
    /// Path of the tensor file, relative to the JSON file.
    pub tensors: String,
    /// What one step consumes.
    pub input: GraphInput,
    /// Layers in execution order; each consumes the previous layer's output.
    pub layers: Vec<GraphLayer>,
    /// PWL tables by name, referenced from the layers.
    pub tables: BTreeMap<String, PwlTable>,
    /// Who wrote the file and how (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<serde_json::Value>,
    /// Free-form metadata (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// Affine int8 quantization: `real = scale · (code − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffineQuant {
    /// Real value of one code step; finite and > 0.
    pub scale: f64,
    /// Code of real 0, in `[-128, 127]`.
    pub zero_point: i32,
}

/// The model input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GraphInput {
    /// One token id per step.
    Tokens {
        /// Number of token ids.
        vocab_size: usize,
    },
    /// One int8 feature vector per step.
    Features {
        /// Width.
        size: usize,
        /// How float features map to int8 codes.
        quant: AffineQuant,
    },
}

/// One layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum GraphLayer {
    /// Token id → int8 row.
    Embedding {
        /// Layer name.
        name: String,
        /// Rows.
        vocab_size: usize,
        /// Row width.
        dim: usize,
        /// I8 tensor `[vocab_size, dim]`.
        table: String,
        /// Quantization of the rows (and the layer output).
        output: AffineQuant,
    },
    /// One unidirectional LSTM layer, gate order i, f, g, o.
    Lstm {
        /// Layer name.
        name: String,
        /// Input width `I`.
        input_size: usize,
        /// Hidden width `H`.
        hidden_size: usize,
        /// I8 tensor `[4H, I]`, symmetric per row.
        w_ih: String,
        /// F32 tensor `[4H]`: the scale of each row of `w_ih`.
        w_ih_scale: String,
        /// I8 tensor `[4H, H]`, symmetric per row.
        w_hh: String,
        /// F32 tensor `[4H]`.
        w_hh_scale: String,
        /// I32 tensor `[4H]`: `b_ih + b_hh` on the grid `s_x · w_ih_scale[r]`.
        bias: String,
        /// Fractional bits of each gate's int16 pre-activation (`0..=15`).
        gate_frac_bits: [u32; 4],
        /// Table names of the gate activations (sigmoid, sigmoid, tanh, sigmoid).
        gate_tables: [String; 4],
        /// Fractional bits of the int16 cell state (`0..=15`).
        cell_frac_bits: u32,
        /// Table name of tanh on the cell grid.
        cell_table: String,
        /// Quantization of the hidden state (the layer output).
        output: AffineQuant,
    },
    /// One unidirectional GRU layer, gate order r, z, n (PyTorch's form:
    /// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`).
    Gru {
        /// Layer name.
        name: String,
        /// Input width `I`.
        input_size: usize,
        /// Hidden width `H`.
        hidden_size: usize,
        /// I8 tensor `[3H, I]`, symmetric per row.
        w_ih: String,
        /// F32 tensor `[3H]`: the scale of each row of `w_ih`.
        w_ih_scale: String,
        /// I8 tensor `[3H, H]`, symmetric per row.
        w_hh: String,
        /// F32 tensor `[3H]`.
        w_hh_scale: String,
        /// I32 tensor `[3H]`: `b_ih` on the grid `s_x · w_ih_scale[r]`.
        bias_ih: String,
        /// I32 tensor `[3H]`: `b_hh` on the grid `s_h · w_hh_scale[r]`.
        bias_hh: String,
        /// Fractional bits of the int16 pre-activations of r, z and n (`0..=15`); n's
        /// grid also carries `W_in x + b_in` and `W_hn h + b_hn`.
        gate_frac_bits: [u32; 3],
        /// Table names of the activations (sigmoid, sigmoid, tanh).
        gate_tables: [String; 3],
        /// Quantization of the hidden state (the layer output).
        output: AffineQuant,
    },
    /// One unidirectional Elman RNN layer: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
    Rnn {
        /// Layer name.
        name: String,
        /// Input width `I`.
        input_size: usize,
        /// Hidden width `H`.
        hidden_size: usize,
        /// The activation.
        nonlinearity: crate::spec::Nonlinearity,
        /// I8 tensor `[H, I]`, symmetric per row.
        w_ih: String,
        /// F32 tensor `[H]`.
        w_ih_scale: String,
        /// I8 tensor `[H, H]`, symmetric per row.
        w_hh: String,
        /// F32 tensor `[H]`.
        w_hh_scale: String,
        /// I32 tensor `[H]`: `b_ih + b_hh` on the grid `s_x · w_ih_scale[r]`.
        bias: String,
        /// Fractional bits of the int16 pre-activation (`0..=15`).
        pre_frac_bits: u32,
        /// Table name of tanh on the pre-activation grid (`tanh` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table: Option<String>,
        /// Quantization of the hidden state (the layer output).
        output: AffineQuant,
    },
    /// Fully connected layer.
    Linear {
        /// Layer name.
        name: String,
        /// Input width.
        in_size: usize,
        /// Output width.
        out_size: usize,
        /// I8 tensor `[out, in]`, symmetric per row.
        weight: String,
        /// F32 tensor `[out]`.
        weight_scale: String,
        /// I32 tensor `[out]` on the grid `s_x · weight_scale[o]`.
        bias: String,
        /// Output type and quantization.
        output: LinearOutputSpec,
    },
}

impl GraphLayer {
    /// The layer's size fields, each with the limit it is held to (every one must
    /// also be at least 1).
    pub fn sizes(
        &self,
        limits: &crate::limits::Limits,
    ) -> Vec<(&'static str, usize, crate::limits::Limit)> {
        match self {
            GraphLayer::Embedding {
                vocab_size, dim, ..
            } => vec![
                ("vocab_size", *vocab_size, limits.vocab()),
                ("dim", *dim, limits.width()),
            ],
            GraphLayer::Lstm {
                input_size,
                hidden_size,
                ..
            }
            | GraphLayer::Gru {
                input_size,
                hidden_size,
                ..
            }
            | GraphLayer::Rnn {
                input_size,
                hidden_size,
                ..
            } => vec![
                ("input_size", *input_size, limits.width()),
                ("hidden_size", *hidden_size, limits.width()),
            ],
            GraphLayer::Linear {
                in_size, out_size, ..
            } => vec![
                ("in_size", *in_size, limits.width()),
                ("out_size", *out_size, limits.width()),
            ],
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        match self {
            GraphLayer::Embedding { name, .. }
            | GraphLayer::Lstm { name, .. }
            | GraphLayer::Gru { name, .. }
            | GraphLayer::Rnn { name, .. }
            | GraphLayer::Linear { name, .. } => name,
        }
    }

    /// Output width.
    pub fn output_size(&self) -> usize {
        match self {
            GraphLayer::Embedding { dim, .. } => *dim,
            GraphLayer::Lstm { hidden_size, .. }
            | GraphLayer::Gru { hidden_size, .. }
            | GraphLayer::Rnn { hidden_size, .. } => *hidden_size,
            GraphLayer::Linear { out_size, .. } => *out_size,
        }
    }

    /// The op name as written in the file.
    pub fn op(&self) -> &'static str {
        match self {
            GraphLayer::Embedding { .. } => "embedding",
            GraphLayer::Lstm { .. } => "lstm",
            GraphLayer::Gru { .. } => "gru",
            GraphLayer::Rnn { .. } => "rnn",
            GraphLayer::Linear { .. } => "linear",
        }
    }
}

/// Output of a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dtype", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinearOutputSpec {
    /// int32 codes, `real = scale · code`.
    I32 {
        /// Real value of one code.
        scale: f64,
    },
    /// int8 codes, `real = scale · (code − zero_point)`.
    I8 {
        /// Real value of one code.
        scale: f64,
        /// Code of real 0.
        zero_point: i32,
    },
}

impl LinearOutputSpec {
    /// The output scale.
    pub fn scale(&self) -> f64 {
        match self {
            LinearOutputSpec::I32 { scale } | LinearOutputSpec::I8 { scale, .. } => *scale,
        }
    }
}

/// A loaded and validated graph with its tensors.
pub struct Graph {
    /// The JSON document.
    pub file: GraphFile,
    /// Where it was read from.
    pub path: PathBuf,
    /// The tensors.
    pub tensors: TensorFile,
    /// Hex SHA-256 over the JSON bytes and the tensor bytes.
    pub hash: String,
}

/// Quantization of the vector a layer consumes (`None` for token input).
pub fn input_quant_of(file: &GraphFile, index: usize) -> Option<AffineQuant> {
    if index == 0 {
        return match &file.input {
            GraphInput::Tokens { .. } => None,
            GraphInput::Features { quant, .. } => Some(*quant),
        };
    }
    match file.layers.get(index - 1)? {
        GraphLayer::Embedding { output, .. }
        | GraphLayer::Lstm { output, .. }
        | GraphLayer::Gru { output, .. }
        | GraphLayer::Rnn { output, .. } => Some(*output),
        GraphLayer::Linear { output, .. } => match output {
            LinearOutputSpec::I8 { scale, zero_point } => Some(AffineQuant {
                scale: *scale,
                zero_point: *zero_point,
            }),
            LinearOutputSpec::I32 { .. } => None,
        },
    }
}

impl Graph {
    /// Reads and validates `path` and the tensor file it names.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let json = crate::limits::read_input_file(path)?;
        let file: GraphFile = serde_json::from_slice(&json).map_err(|e| {
            // Only when the graph does not parse: is it a float model spec instead?
            match serde_json::from_slice(&json) {
                Ok(serde_json::Value::Object(map))
                    if !map.contains_key("format") && map.contains_key("weights") =>
                {
                    LoadError::invalid(
                        path,
                        "",
                        "this is a float model spec, not a quantized graph; run `irnn quantize` on it first",
                    )
                }
                _ => LoadError::json(path, e),
            }
        })?;
        if file.format != FORMAT_NAME {
            return Err(LoadError::invalid(
                path,
                "format",
                format!(
                    "is \"{}\"; expected \"{FORMAT_NAME}\" (is this a float model spec? quantize it with `irnn quantize` first)",
                    file.format
                ),
            ));
        }
        if file.version != FORMAT_VERSION {
            return Err(LoadError::invalid(
                path,
                "version",
                format!(
                    "is {}; this build of irnn reads version {FORMAT_VERSION}",
                    file.version
                ),
            ));
        }
        let tensor_path = resolve_relative(path, &file.tensors);
        let tensors = TensorFile::open(&tensor_path)?;
        let hash = sha256_hex(&[&json, tensors.bytes()]);
        let graph = Graph {
            file,
            path: path.to_path_buf(),
            tensors,
            hash,
        };
        check_problems(path, graph.validate())?;
        Ok(graph)
    }

    /// Every structural problem of the graph (empty when it is valid).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let f = &self.file;
        if f.layers.is_empty() {
            problems.push(Problem::new("layers", "the graph has no layers"));
        }
        let limits = crate::limits::Limits::get();
        if let Err(e) = limits.layers().check(f.layers.len() as u64) {
            problems.push(Problem::new("layers", format!("too many layers: {e}")));
            return problems;
        }
        // Every width at least 1 and within the limits before any shape product.
        let mut sizes_ok = true;
        for (index, layer) in f.layers.iter().enumerate() {
            let loc = format!("layers[{index}] (\"{}\")", layer.name());
            for (field, n, limit) in layer.sizes(limits) {
                if n == 0 {
                    problems.push(Problem::new(&loc, format!("{field} must be at least 1")));
                    sizes_ok = false;
                } else if let Err(e) = limit.check(n as u64) {
                    problems.push(Problem::new(&loc, format!("{field}: {e}")));
                    sizes_ok = false;
                }
            }
        }
        if let GraphInput::Tokens { vocab_size } = &f.input {
            if let Err(e) = limits.vocab().check(*vocab_size as u64) {
                problems.push(Problem::new("input.vocab_size", e));
                sizes_ok = false;
            }
        }
        if let GraphInput::Features { size, .. } = &f.input {
            if let Err(e) = limits.width().check(*size as u64) {
                problems.push(Problem::new("input.size", e));
                sizes_ok = false;
            }
        }
        if !sizes_ok {
            return problems;
        }
        for (name, table) in &f.tables {
            if let Err(msg) = crate::pwl::validate(table) {
                problems.push(Problem::new(format!("tables.{name}"), msg));
            }
        }
        let mut width: Option<usize> = match &f.input {
            GraphInput::Tokens { vocab_size } => {
                if *vocab_size == 0 {
                    problems.push(Problem::new("input.vocab_size", "must be at least 1"));
                }
                None
            }
            GraphInput::Features { size, quant } => {
                if *size == 0 {
                    problems.push(Problem::new("input.size", "must be at least 1"));
                }
                check_affine(&mut problems, "input.quant", quant);
                Some(*size)
            }
        };
        let mut names = std::collections::BTreeSet::new();
        for (index, layer) in f.layers.iter().enumerate() {
            let loc = format!("layers[{index}] (\"{}\")", layer.name());
            if !names.insert(layer.name().to_string()) {
                problems.push(Problem::new(&loc, "duplicate layer name"));
            }
            match layer {
                GraphLayer::Embedding {
                    vocab_size,
                    dim,
                    table,
                    output,
                    ..
                } => {
                    match (&f.input, index) {
                        (GraphInput::Tokens { vocab_size: v }, 0) => {
                            if v != vocab_size {
                                problems.push(Problem::new(
                                    &loc,
                                    format!(
                                        "vocab_size {vocab_size} differs from input.vocab_size {v}"
                                    ),
                                ));
                            }
                        }
                        _ => problems.push(Problem::new(
                            &loc,
                            "an embedding must be the first layer of a token model",
                        )),
                    }
                    self.check_tensor_i8(&mut problems, &loc, table, &[*vocab_size, *dim]);
                    check_affine(&mut problems, &format!("{loc}.output"), output);
                    width = Some(*dim);
                }
                GraphLayer::Lstm {
                    input_size,
                    hidden_size,
                    w_ih,
                    w_ih_scale,
                    w_hh,
                    w_hh_scale,
                    bias,
                    gate_frac_bits,
                    gate_tables,
                    cell_frac_bits,
                    cell_table,
                    output,
                    ..
                } => {
                    expect_width(&mut problems, &loc, width, *input_size);
                    let rows = hidden_size.saturating_mul(4);
                    self.check_tensor_i8(&mut problems, &loc, w_ih, &[rows, *input_size]);
                    self.check_tensor_i8(&mut problems, &loc, w_hh, &[rows, *hidden_size]);
                    self.check_scales(&mut problems, &loc, w_ih_scale, rows);
                    self.check_scales(&mut problems, &loc, w_hh_scale, rows);
                    self.check_tensor_i32(&mut problems, &loc, bias, &[rows]);
                    for (g, bits) in gate_frac_bits.iter().enumerate() {
                        if *bits > 15 {
                            problems.push(Problem::new(
                                format!("{loc}.gate_frac_bits[{g}]"),
                                format!("is {bits}; must be in 0..=15"),
                            ));
                        }
                    }
                    if *cell_frac_bits > 15 {
                        problems.push(Problem::new(
                            format!("{loc}.cell_frac_bits"),
                            format!("is {cell_frac_bits}; must be in 0..=15"),
                        ));
                    }
                    for (g, t) in gate_tables.iter().enumerate() {
                        self.check_table_ref(
                            &mut problems,
                            &format!("{loc}.gate_tables[{g}]"),
                            t,
                            gate_frac_bits[g],
                        );
                    }
                    self.check_table_ref(
                        &mut problems,
                        &format!("{loc}.cell_table"),
                        cell_table,
                        *cell_frac_bits,
                    );
                    check_affine(&mut problems, &format!("{loc}.output"), output);
                    width = Some(*hidden_size);
                }
                GraphLayer::Gru {
                    input_size,
                    hidden_size,
                    w_ih,
                    w_ih_scale,
                    w_hh,
                    w_hh_scale,
                    bias_ih,
                    bias_hh,
                    gate_frac_bits,
                    gate_tables,
                    output,
                    ..
                } => {
                    expect_width(&mut problems, &loc, width, *input_size);
                    let rows = hidden_size.saturating_mul(3);
                    self.check_cell(
                        &mut problems,
                        &loc,
                        *input_size,
                        *hidden_size,
                        [w_ih, w_ih_scale, w_hh, w_hh_scale],
                        rows,
                    );
                    self.check_tensor_i32(&mut problems, &loc, bias_ih, &[rows]);
                    self.check_tensor_i32(&mut problems, &loc, bias_hh, &[rows]);
                    for g in 0..3 {
                        check_frac_bits(
                            &mut problems,
                            &format!("{loc}.gate_frac_bits[{g}]"),
                            gate_frac_bits[g],
                        );
                        self.check_table_ref(
                            &mut problems,
                            &format!("{loc}.gate_tables[{g}]"),
                            &gate_tables[g],
                            gate_frac_bits[g],
                        );
                    }
                    check_affine(&mut problems, &format!("{loc}.output"), output);
                    width = Some(*hidden_size);
                }
                GraphLayer::Rnn {
                    input_size,
                    hidden_size,
                    nonlinearity,
                    w_ih,
                    w_ih_scale,
                    w_hh,
                    w_hh_scale,
                    bias,
                    pre_frac_bits,
                    table,
                    output,
                    ..
                } => {
                    expect_width(&mut problems, &loc, width, *input_size);
                    self.check_cell(
                        &mut problems,
                        &loc,
                        *input_size,
                        *hidden_size,
                        [w_ih, w_ih_scale, w_hh, w_hh_scale],
                        *hidden_size,
                    );
                    self.check_tensor_i32(&mut problems, &loc, bias, &[*hidden_size]);
                    check_frac_bits(
                        &mut problems,
                        &format!("{loc}.pre_frac_bits"),
                        *pre_frac_bits,
                    );
                    match (nonlinearity, table) {
                        (crate::spec::Nonlinearity::Tanh, Some(t)) => self.check_table_ref(
                            &mut problems,
                            &format!("{loc}.table"),
                            t,
                            *pre_frac_bits,
                        ),
                        (crate::spec::Nonlinearity::Tanh, None) => problems.push(Problem::new(
                            &loc,
                            "a tanh RNN needs \"table\" (tanh on the pre-activation grid)",
                        )),
                        (crate::spec::Nonlinearity::Relu, Some(_)) => problems.push(Problem::new(
                            format!("{loc}.table"),
                            "a relu RNN has no activation table; remove \"table\"",
                        )),
                        (crate::spec::Nonlinearity::Relu, None) => {}
                    }
                    check_affine(&mut problems, &format!("{loc}.output"), output);
                    width = Some(*hidden_size);
                }
                GraphLayer::Linear {
                    in_size,
                    out_size,
                    weight,
                    weight_scale,
                    bias,
                    output,
                    ..
                } => {
                    expect_width(&mut problems, &loc, width, *in_size);
                    self.check_tensor_i8(&mut problems, &loc, weight, &[*out_size, *in_size]);
                    self.check_scales(&mut problems, &loc, weight_scale, *out_size);
                    self.check_tensor_i32(&mut problems, &loc, bias, &[*out_size]);
                    match output {
                        LinearOutputSpec::I32 { scale } => {
                            check_scale(&mut problems, &format!("{loc}.output.scale"), *scale)
                        }
                        LinearOutputSpec::I8 { scale, zero_point } => check_affine(
                            &mut problems,
                            &format!("{loc}.output"),
                            &AffineQuant {
                                scale: *scale,
                                zero_point: *zero_point,
                            },
                        ),
                    }
                    if index + 1 < f.layers.len() && matches!(output, LinearOutputSpec::I32 { .. })
                    {
                        problems.push(Problem::new(
                            &loc,
                            "only the last layer may produce int32 output; use dtype \"i8\" here",
                        ));
                    }
                    width = Some(*out_size);
                }
            }
        }
        if let Some(last) = f.layers.last() {
            if !matches!(last, GraphLayer::Linear { .. }) {
                problems.push(Problem::new(
                    format!("layer \"{}\"", last.name()),
                    "the last layer must be a linear layer producing the model output",
                ));
            }
        }
        problems
    }

    /// The weights and row scales of a recurrent cell with `rows` gate rows.
    fn check_cell(
        &self,
        p: &mut Vec<Problem>,
        loc: &str,
        input_size: usize,
        hidden_size: usize,
        [w_ih, w_ih_scale, w_hh, w_hh_scale]: [&String; 4],
        rows: usize,
    ) {
        self.check_tensor_i8(p, loc, w_ih, &[rows, input_size]);
        self.check_tensor_i8(p, loc, w_hh, &[rows, hidden_size]);
        self.check_scales(p, loc, w_ih_scale, rows);
        self.check_scales(p, loc, w_hh_scale, rows);
    }

    fn check_tensor_i8(&self, p: &mut Vec<Problem>, loc: &str, name: &str, shape: &[usize]) {
        match self.tensors.i8(name, loc) {
            Ok(t) => check_shape(p, loc, name, &t, shape),
            Err(e) => p.push(e),
        }
    }

    fn check_tensor_i32(&self, p: &mut Vec<Problem>, loc: &str, name: &str, shape: &[usize]) {
        match self.tensors.i32(name, loc) {
            Ok(t) => check_shape(p, loc, name, &t, shape),
            Err(e) => p.push(e),
        }
    }

    fn check_scales(&self, p: &mut Vec<Problem>, loc: &str, name: &str, len: usize) {
        match self.tensors.f32(name, loc) {
            Ok(t) => {
                check_shape(p, loc, name, &t, &[len]);
                if let Some((i, v)) = t.data.iter().enumerate().find(|(_, v)| **v <= 0.0) {
                    p.push(Problem::new(
                        loc,
                        format!("tensor \"{name}\" has a non-positive scale {v} at index {i}"),
                    ));
                }
            }
            Err(e) => p.push(e),
        }
    }

    fn check_table_ref(&self, p: &mut Vec<Problem>, loc: &str, name: &str, frac_bits: u32) {
        match self.file.tables.get(name) {
            None => p.push(Problem::new(
                loc,
                format!("names table \"{name}\", which is not in \"tables\""),
            )),
            Some(t) if t.input_frac_bits != frac_bits => p.push(Problem::new(
                loc,
                format!(
                    "table \"{name}\" was fitted for {} input fractional bits but this value has {frac_bits}",
                    t.input_frac_bits
                ),
            )),
            Some(_) => {}
        }
    }
}

fn check_shape<T>(p: &mut Vec<Problem>, loc: &str, name: &str, t: &Tensor<T>, shape: &[usize]) {
    if let Err(e) = crate::tensors::expect_shape(t, name, shape, loc) {
        p.push(e);
    }
}

fn check_frac_bits(p: &mut Vec<Problem>, loc: &str, bits: u32) {
    if bits > 15 {
        p.push(Problem::new(loc, format!("is {bits}; must be in 0..=15")));
    }
}

fn check_scale(p: &mut Vec<Problem>, loc: &str, scale: f64) {
    if !(scale.is_finite() && scale > 0.0) {
        p.push(Problem::new(
            loc,
            format!("scale {scale} must be finite and positive"),
        ));
    }
}

fn check_affine(p: &mut Vec<Problem>, loc: &str, q: &AffineQuant) {
    check_scale(p, &format!("{loc}.scale"), q.scale);
    if !(-128..=127).contains(&q.zero_point) {
        p.push(Problem::new(
            format!("{loc}.zero_point"),
            format!(
                "is {}; an int8 zero point must be in -128..=127",
                q.zero_point
            ),
        ));
    }
}

fn expect_width(p: &mut Vec<Problem>, loc: &str, have: Option<usize>, want: usize) {
    match have {
        Some(w) if w == want => {}
        Some(w) => p.push(Problem::new(
            loc,
            format!("takes width {want} but the previous layer produces {w}"),
        )),
        None => p.push(Problem::new(
            loc,
            "needs an int8 vector input (token input goes through an embedding; int32 outputs end the model)",
        )),
    }
}

/// Writes a graph and its tensors as one output set ([`crate::output::OutputSet`]):
/// both files are staged beside the destination and renamed only when both are
/// complete, so a failure leaves no partial output and no half-replaced old pair.
pub fn write_graph(
    json_path: &Path,
    file: &GraphFile,
    tensors: &TensorWriter,
) -> Result<(), String> {
    let mut set = crate::output::OutputSet::for_file(json_path).map_err(|e| e.to_string())?;
    stage_graph(&mut set, json_path, file, tensors)?;
    set.commit().map_err(|e| e.to_string())?;
    Ok(())
}

/// Stages a graph (`json_path`'s file name) and its tensor file (`file.tensors`, which
/// must be a plain file name: the two live in one directory) in `set`. Returns the
/// staged JSON path, from which [`Graph::load`] reads the staged pair.
pub fn stage_graph(
    set: &mut crate::output::OutputSet,
    json_path: &Path,
    file: &GraphFile,
    tensors: &TensorWriter,
) -> Result<PathBuf, String> {
    let json_name = json_path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| format!("{}: not a file name", json_path.display()))?;
    let tensor_bytes = tensors.to_bytes()?;
    let mut json = serde_json::to_string_pretty(file).map_err(|e| e.to_string())?;
    json.push('\n');
    set.write(&file.tensors, &tensor_bytes).map_err(|e| {
        format!("{e} (the tensor file named by the graph must sit beside it: a plain file name)")
    })?;
    set.write(json_name, json.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(set.staged(json_name))
}
