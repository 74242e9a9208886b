//! Calibration (post-training quantization): float model + calibration data →
//! quantized graph.
//!
//! The float reference runs over the calibration sequences while an observer records
//! the range of every activation: the feature input, each gate's pre-activation (and a
//! GRU candidate's two terms), each LSTM cell state and each layer output. From those ranges and the weights it derives
//! the scheme of docs/NUMERICS.md: int8 per-row symmetric weights, int32 biases, int8
//! asymmetric activations, power-of-two int16 gate and cell grids, and PWL tables for
//! every (function, grid) pair the model needs.

use crate::error::{LoadError, Problem};
use crate::float_ref::{FloatRunner, Observer};
use crate::graph::{
    AffineQuant, GraphFile, GraphInput, GraphLayer, LinearOutputSpec, FORMAT_NAME, FORMAT_VERSION,
};
use crate::ir::{Activation, PwlTable};
use crate::npy::{DataFile, SeqData};
use crate::pwl::{fit, FitMethod, FitOptions};
use crate::spec::{Cell, FloatLayer, FloatModel, InputSpec, Nonlinearity};
use crate::tensors::TensorWriter;
use serde::Serialize;
use std::collections::BTreeMap;

/// How activation ranges are taken from the calibration statistics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum RangeMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// The given percentile of the values on each side (e.g. 99.99), which clips
    /// rare outliers. Cell states always use min/max: clipping them changes the
    /// recurrence.
    Percentile(f64),
}

/// Options of [`quantize`].
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// How activation ranges are chosen.
    pub range: RangeMethod,
    /// PWL fit tolerance in output LSBs.
    pub pwl_tolerance_lsb: f64,
    /// PWL piece budget per table.
    pub pwl_max_pieces: usize,
    /// PWL fitting method.
    pub pwl_method: FitMethod,
    /// Lowest allowed fractional bits of a gate pre-activation grid.
    pub gate_frac_bits_min: u32,
    /// Highest allowed fractional bits of a gate pre-activation grid.
    pub gate_frac_bits_max: u32,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            range: RangeMethod::MinMax,
            pwl_tolerance_lsb: 1.0,
            pwl_max_pieces: 64,
            pwl_method: FitMethod::Sweep,
            gate_frac_bits_min: 10,
            gate_frac_bits_max: 13,
        }
    }
}

/// Quantization failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The calibration data does not fit the model.
    #[error(transparent)]
    Data(#[from] LoadError),
    /// A problem in the model itself (named layer).
    #[error("cannot quantize {model}:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Model {
        /// Model name.
        model: String,
        /// Problems.
        problems: Vec<Problem>,
    },
}

/// The range observed for one activation tensor.
#[derive(Clone, Debug, Serialize)]
pub struct RangeReport {
    /// Which tensor.
    pub tensor: String,
    /// Observed minimum.
    pub min: f32,
    /// Observed maximum.
    pub max: f32,
    /// Range used for quantization (after percentile clipping).
    pub used: (f32, f32),
}

/// What calibration measured and chose.
#[derive(Clone, Debug, Serialize)]
pub struct QuantizeReport {
    /// Calibration steps run.
    pub steps: usize,
    /// Range per activation tensor.
    pub ranges: Vec<RangeReport>,
    /// PWL tables fitted: name, pieces, max error in LSB.
    pub tables: Vec<(String, usize, f64)>,
}

/// Running statistics of one tensor: exact min/max plus a deterministic subsample for
/// percentiles.
#[derive(Clone, Debug, Default)]
struct Stat {
    min: f32,
    max: f32,
    seen: u64,
    sample: Vec<f32>,
}

const SAMPLE_CAP: usize = 1 << 18;

impl Stat {
    fn add(&mut self, xs: &[f32]) {
        for &x in xs {
            if self.seen == 0 {
                self.min = x;
                self.max = x;
            }
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            self.seen += 1;
            if self.sample.len() < SAMPLE_CAP {
                self.sample.push(x);
            } else {
                // Deterministic reservoir replacement (splitmix-style hash of the count).
                let mut z = self.seen.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z ^= z >> 31;
                let slot = (z % self.seen) as usize;
                if slot < SAMPLE_CAP {
                    self.sample[slot] = x;
                }
            }
        }
    }

    fn range(&self, method: RangeMethod) -> (f32, f32) {
        match method {
            RangeMethod::MinMax => (self.min, self.max),
            RangeMethod::Percentile(p) => {
                if self.sample.is_empty() {
                    return (self.min, self.max);
                }
                let mut s = self.sample.clone();
                s.sort_by(|a, b| a.total_cmp(b));
                let q = |frac: f64| -> f32 {
                    let idx = ((s.len() - 1) as f64 * frac).round() as usize;
                    s[idx.min(s.len() - 1)]
                };
                let p = p.clamp(50.0, 100.0) / 100.0;
                (q(1.0 - p), q(p))
            }
        }
    }
}

#[derive(Default)]
struct Collector {
    stats: BTreeMap<String, Stat>,
    gate_hidden: BTreeMap<usize, usize>,
}

impl Collector {
    fn add(&mut self, key: String, xs: &[f32]) {
        self.stats.entry(key).or_default().add(xs);
    }
}

impl Observer for Collector {
    fn input_features(&mut self, x: &[f32]) {
        self.add("input".into(), x);
    }
    fn lstm_gates(&mut self, layer: usize, pre: &[f32]) {
        let h = pre.len() / 4;
        self.gate_hidden.insert(layer, h);
        for g in 0..4 {
            self.add(format!("{layer}.gate{g}"), &pre[g * h..(g + 1) * h]);
        }
    }
    fn lstm_cell(&mut self, layer: usize, c: &[f32]) {
        self.add(format!("{layer}.cell"), c);
    }
    fn cell_values(&mut self, layer: usize, what: &'static str, v: &[f32]) {
        self.add(format!("{layer}.{what}"), v);
    }
    fn layer_output(&mut self, layer: usize, y: &[f32]) {
        self.add(format!("{layer}.out"), y);
    }
}

/// Affine int8 quantization covering `[lo, hi]` (widened to include 0).
pub fn affine_from_range(lo: f32, hi: f32) -> AffineQuant {
    let lo = (lo as f64).min(0.0);
    let mut hi = (hi as f64).max(0.0);
    if hi - lo < 1e-8 {
        hi = lo + 1e-8;
    }
    let scale = (hi - lo) / 255.0;
    let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    AffineQuant { scale, zero_point }
}

/// Largest fractional bits `f` in `[lo, hi]` with `range · 2^f <= 32767`.
pub fn frac_bits_for(range: f64, lo: u32, hi: u32) -> u32 {
    let mut f = hi;
    while f > lo && range * 2f64.powi(f as i32) > 32767.0 {
        f -= 1;
    }
    f
}

/// Per-row symmetric int8 quantization of a matrix: codes in `[-127, 127]`.
pub fn quantize_rows(data: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &data[r * cols..(r + 1) * cols];
        let maxabs = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if maxabs > 0.0 {
            maxabs / 127.0
        } else {
            1.0 / 127.0
        };
        scales.push(s);
        for &v in row {
            q.push((v as f64 / s as f64).round().clamp(-127.0, 127.0) as i8);
        }
    }
    (q, scales)
}

/// The int32 code of bias `b` on the grid `in_scale · w_scale` of its row's
/// accumulator, or `None` when it is beyond `±2^30` (the bound lowering relies on).
/// `irnn quantize` and QAT export (`irnn-train`) both quantize biases with it.
pub fn bias_code(b: f32, in_scale: f64, w_scale: f32) -> Option<i32> {
    let v = (b as f64 / (in_scale * w_scale as f64)).round();
    (v.abs() <= (1i64 << 30) as f64).then_some(v as i32)
}

fn quantize_bias(
    bias: &[f32],
    in_scale: f64,
    w_scales: &[f32],
    loc: &str,
    problems: &mut Vec<Problem>,
) -> Vec<i32> {
    // One problem for the root cause, with a count of the rows affected.
    let mut bad: Option<(usize, f32)> = None;
    let mut count = 0usize;
    let codes = bias
        .iter()
        .zip(w_scales)
        .enumerate()
        .map(|(r, (&b, &s))| {
            bias_code(b, in_scale, s).unwrap_or_else(|| {
                bad.get_or_insert((r, b));
                count += 1;
                0
            })
        })
        .collect();
    if let Some((r, b)) = bad {
        problems.push(Problem::new(
            loc,
            format!(
                "the bias is too large for the int32 grid of its weights and input in {count} of {} rows (first: row {r}, {b})",
                bias.len()
            ),
        ));
    }
    codes
}

/// Runs calibration and builds the quantized graph. `tensor_file_name` is written into
/// the graph's `tensors` field (relative to the JSON file).
pub fn quantize(
    model: &FloatModel,
    calib: &DataFile,
    calib_path: &std::path::Path,
    tensor_file_name: &str,
    opts: &QuantizeOptions,
) -> Result<(GraphFile, TensorWriter, QuantizeReport), QuantizeError> {
    quantize_with_progress(
        model,
        calib,
        calib_path,
        tensor_file_name,
        opts,
        &mut |_| {},
    )
}

/// [`quantize`], calling `progress` with the number of calibration sequences run after
/// each one (for progress bars).
pub fn quantize_with_progress(
    model: &FloatModel,
    calib: &DataFile,
    calib_path: &std::path::Path,
    tensor_file_name: &str,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<(GraphFile, TensorWriter, QuantizeReport), QuantizeError> {
    // A quantized graph ends in the linear layer that produces the int32 output
    // (`Graph::load` refuses any other): refused here, before calibration, rather than
    // written as a graph that cannot be loaded.
    if let Some(last) = model.layers.last() {
        if !matches!(last, FloatLayer::Linear { .. }) {
            return Err(QuantizeError::Model {
                model: model.name.clone(),
                problems: vec![Problem::new(
                    format!("layer \"{}\"", last.name()),
                    "the last layer must be a linear layer producing the model output",
                )],
            });
        }
    }
    let mut collector = Collector::default();
    let mut runner = FloatRunner::new(model);
    let (n, t) = calib.data.dims();
    match (&model.input, &calib.data) {
        (InputSpec::Tokens { vocab_size }, SeqData::Tokens { data, .. }) => {
            if let Some(pos) = data
                .iter()
                .position(|&v| v < 0 || v as u64 >= *vocab_size as u64)
            {
                return Err(LoadError::container(
                    calib_path,
                    format!(
                        "token id {} at sequence {}, step {} is outside the vocabulary 0..{vocab_size}",
                        data[pos], pos / t, pos % t
                    ),
                )
                .into());
            }
            for s in 0..n {
                runner.reset();
                for step in 0..t {
                    runner.step_token(data[s * t + step] as usize, &mut collector);
                }
                progress(s + 1);
            }
        }
        (InputSpec::Features { size }, SeqData::FeaturesF32 { f, data, .. }) => {
            if f != size {
                return Err(LoadError::container(
                    calib_path,
                    format!("features have width {f}; the model takes {size}"),
                )
                .into());
            }
            for s in 0..n {
                runner.reset();
                for step in 0..t {
                    let off = (s * t + step) * f;
                    runner.step_features(&data[off..off + f], &mut collector);
                }
                progress(s + 1);
            }
        }
        (InputSpec::Features { .. }, SeqData::FeaturesI8 { .. }) => {
            return Err(LoadError::container(
                calib_path,
                "calibration needs float32 features (int8 features are already quantized)",
            )
            .into())
        }
        (InputSpec::Tokens { .. }, _) => {
            return Err(LoadError::container(
                calib_path,
                "the model takes token ids: calibration data must be int32/int64 [N, T]",
            )
            .into())
        }
        (InputSpec::Features { .. }, SeqData::Tokens { .. }) => {
            return Err(LoadError::container(
                calib_path,
                "the model takes float features: calibration data must be float32 [N, T, F]",
            )
            .into())
        }
    }

    let mut problems = Vec::new();
    let mut ranges = Vec::new();
    let mut used_range = |key: &str, name: &str, method: RangeMethod| -> (f32, f32) {
        match collector.stats.get(key) {
            Some(s) => {
                let used = s.range(method);
                ranges.push(RangeReport {
                    tensor: name.to_string(),
                    min: s.min,
                    max: s.max,
                    used,
                });
                used
            }
            None => (0.0, 0.0),
        }
    };

    let mut writer = TensorWriter::default();
    let mut layers = Vec::new();
    let mut tables: BTreeMap<String, PwlTable> = BTreeMap::new();
    let mut table_reports = Vec::new();
    let mut table_for = |function: Activation, frac: u32| -> Result<String, String> {
        let opts = FitOptions {
            function,
            input_frac_bits: frac,
            output_frac_bits: 15,
            tolerance_lsb: opts.pwl_tolerance_lsb,
            max_pieces: opts.pwl_max_pieces,
            method: opts.pwl_method,
        };
        let (table, report) = fit(&opts).map_err(|e| e.to_string())?;
        let name = table.short_name();
        if !tables.contains_key(&name) {
            table_reports.push((name.clone(), report.pieces, report.max_error_lsb));
            tables.insert(name.clone(), table);
        }
        Ok(name)
    };

    let input = match &model.input {
        InputSpec::Tokens { vocab_size } => GraphInput::Tokens {
            vocab_size: *vocab_size,
        },
        InputSpec::Features { size } => {
            let (lo, hi) = used_range("input", "input", opts.range);
            GraphInput::Features {
                size: *size,
                quant: affine_from_range(lo, hi),
            }
        }
    };
    let mut in_q: Option<AffineQuant> = match &input {
        GraphInput::Features { quant, .. } => Some(*quant),
        GraphInput::Tokens { .. } => None,
    };
    let last = model.layers.len().saturating_sub(1);
    for (index, layer) in model.layers.iter().enumerate() {
        let name = layer.name().to_string();
        let loc = format!("layer \"{name}\"");
        match layer {
            FloatLayer::Embedding { weight, .. } => {
                let lo = weight.data.iter().fold(f32::INFINITY, |m, v| m.min(*v));
                let hi = weight.data.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                let q = affine_from_range(lo, hi);
                let codes: Vec<i8> = weight
                    .data
                    .iter()
                    .map(|v| {
                        ((*v as f64 / q.scale).round() + q.zero_point as f64).clamp(-128.0, 127.0)
                            as i8
                    })
                    .collect();
                let tname = format!("{name}.table");
                writer.i8(&tname, &[weight.rows, weight.cols], &codes);
                layers.push(GraphLayer::Embedding {
                    name,
                    vocab_size: weight.rows,
                    dim: weight.cols,
                    table: tname,
                    output: q,
                });
                in_q = Some(q);
            }
            FloatLayer::Recurrent {
                cell,
                w_ih,
                w_hh,
                b_ih,
                b_hh,
                ..
            } => {
                let Some(xq) = in_q else {
                    problems.push(Problem::new(&loc, "has no int8 input"));
                    break;
                };
                let hidden = w_hh.cols;
                let (h_lo, h_hi) =
                    used_range(&format!("{index}.out"), &format!("{name}.h"), opts.range);
                let hq = affine_from_range(h_lo, h_hi);
                let (qi, si) = quantize_rows(&w_ih.data, w_ih.rows, w_ih.cols);
                let (qh, sh) = quantize_rows(&w_hh.data, w_hh.rows, w_hh.cols);
                let t = |s: &str| format!("{name}.{s}");
                writer.i8(&t("w_ih"), &[w_ih.rows, w_ih.cols], &qi);
                writer.f32(&t("w_ih.scale"), &[w_ih.rows], &si);
                writer.i8(&t("w_hh"), &[w_hh.rows, w_hh.cols], &qh);
                writer.f32(&t("w_hh.scale"), &[w_hh.rows], &sh);
                // The largest magnitude of the named values (observed ranges).
                let mut mag = |keys: &[&str]| -> f64 {
                    let mut m = 1e-6f64;
                    for k in keys {
                        let (lo, hi) =
                            used_range(&format!("{index}.{k}"), &format!("{name}.{k}"), opts.range);
                        m = m.max(lo.abs().max(hi.abs()) as f64);
                    }
                    m
                };
                let (lo_bits, hi_bits) = (opts.gate_frac_bits_min, opts.gate_frac_bits_max);
                match cell {
                    Cell::Lstm => {
                        let bias_f: Vec<f32> = b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect();
                        let bias = quantize_bias(&bias_f, xq.scale, &si, &loc, &mut problems);
                        let mut gate_frac_bits = [0u32; 4];
                        let mut gate_tables: [String; 4] = Default::default();
                        for g in 0..4 {
                            let gname = ["i", "f", "g", "o"][g];
                            let (lo, hi) = used_range(
                                &format!("{index}.gate{g}"),
                                &format!("{name}.gate_{gname}"),
                                opts.range,
                            );
                            let r = (lo.abs().max(hi.abs()) as f64).max(1e-6);
                            gate_frac_bits[g] =
                                frac_bits_for(r, opts.gate_frac_bits_min, opts.gate_frac_bits_max);
                            let func = if g == 2 {
                                Activation::Tanh
                            } else {
                                Activation::Sigmoid
                            };
                            match table_for(func, gate_frac_bits[g]) {
                                Ok(n) => gate_tables[g] = n,
                                Err(e) => problems.push(Problem::new(&loc, e)),
                            }
                        }
                        let (c_lo, c_hi) = used_range(
                            &format!("{index}.cell"),
                            &format!("{name}.c"),
                            RangeMethod::MinMax,
                        );
                        let c_r = (c_lo.abs().max(c_hi.abs()) as f64).max(1e-6);
                        let cell_frac_bits = frac_bits_for(c_r, 0, 15);
                        let cell_table = match table_for(Activation::Tanh, cell_frac_bits) {
                            Ok(n) => n,
                            Err(e) => {
                                problems.push(Problem::new(&loc, e));
                                String::new()
                            }
                        };
                        writer.i32(&t("bias"), &[w_ih.rows], &bias);
                        layers.push(GraphLayer::Lstm {
                            name: name.clone(),
                            input_size: w_ih.cols,
                            hidden_size: hidden,
                            w_ih: t("w_ih"),
                            w_ih_scale: t("w_ih.scale"),
                            w_hh: t("w_hh"),
                            w_hh_scale: t("w_hh.scale"),
                            bias: t("bias"),
                            gate_frac_bits,
                            gate_tables,
                            cell_frac_bits,
                            cell_table,
                            output: hq,
                        });
                    }
                    Cell::Gru => {
                        let bias_ih = quantize_bias(b_ih, xq.scale, &si, &loc, &mut problems);
                        let bias_hh = quantize_bias(b_hh, hq.scale, &sh, &loc, &mut problems);
                        // n's grid carries its pre-activation and both of its terms.
                        let ranges = [
                            mag(&["pre_r"]),
                            mag(&["pre_z"]),
                            mag(&["pre_n", "x_n", "h_n"]),
                        ];
                        let mut gate_frac_bits = [0u32; 3];
                        let mut gate_tables: [String; 3] = Default::default();
                        for g in 0..3 {
                            gate_frac_bits[g] = frac_bits_for(ranges[g], lo_bits, hi_bits);
                            let func = if g == 2 {
                                Activation::Tanh
                            } else {
                                Activation::Sigmoid
                            };
                            match table_for(func, gate_frac_bits[g]) {
                                Ok(n) => gate_tables[g] = n,
                                Err(e) => problems.push(Problem::new(&loc, e)),
                            }
                        }
                        writer.i32(&t("bias_ih"), &[w_ih.rows], &bias_ih);
                        writer.i32(&t("bias_hh"), &[w_hh.rows], &bias_hh);
                        layers.push(GraphLayer::Gru {
                            name: name.clone(),
                            input_size: w_ih.cols,
                            hidden_size: hidden,
                            w_ih: t("w_ih"),
                            w_ih_scale: t("w_ih.scale"),
                            w_hh: t("w_hh"),
                            w_hh_scale: t("w_hh.scale"),
                            bias_ih: t("bias_ih"),
                            bias_hh: t("bias_hh"),
                            gate_frac_bits,
                            gate_tables,
                            output: hq,
                        });
                    }
                    Cell::Rnn(act) => {
                        let bias_f: Vec<f32> = b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect();
                        let bias = quantize_bias(&bias_f, xq.scale, &si, &loc, &mut problems);
                        let range = mag(&["pre"]);
                        // tanh saturates: the gate grid; relu passes the value on, so
                        // its grid spans the whole calibrated range.
                        let (pre_frac_bits, table) = match act {
                            Nonlinearity::Tanh => {
                                let f = frac_bits_for(range, lo_bits, hi_bits);
                                match table_for(Activation::Tanh, f) {
                                    Ok(n) => (f, Some(n)),
                                    Err(e) => {
                                        problems.push(Problem::new(&loc, e));
                                        (f, None)
                                    }
                                }
                            }
                            Nonlinearity::Relu => (frac_bits_for(range, 0, 15), None),
                        };
                        writer.i32(&t("bias"), &[w_ih.rows], &bias);
                        layers.push(GraphLayer::Rnn {
                            name: name.clone(),
                            input_size: w_ih.cols,
                            hidden_size: hidden,
                            nonlinearity: *act,
                            w_ih: t("w_ih"),
                            w_ih_scale: t("w_ih.scale"),
                            w_hh: t("w_hh"),
                            w_hh_scale: t("w_hh.scale"),
                            bias: t("bias"),
                            pre_frac_bits,
                            table,
                            output: hq,
                        });
                    }
                }
                in_q = Some(hq);
            }
            FloatLayer::Linear { weight, bias, .. } => {
                let Some(xq) = in_q else {
                    problems.push(Problem::new(&loc, "has no int8 input"));
                    break;
                };
                let (qw, sw) = quantize_rows(&weight.data, weight.rows, weight.cols);
                let qb = quantize_bias(bias, xq.scale, &sw, &loc, &mut problems);
                let output = if index == last {
                    let s = sw.iter().fold(0f64, |m, s| m.max(xq.scale * *s as f64));
                    LinearOutputSpec::I32 { scale: s }
                } else {
                    let (lo, hi) =
                        used_range(&format!("{index}.out"), &format!("{name}.out"), opts.range);
                    let q = affine_from_range(lo, hi);
                    in_q = Some(q);
                    LinearOutputSpec::I8 {
                        scale: q.scale,
                        zero_point: q.zero_point,
                    }
                };
                let t = |s: &str| format!("{name}.{s}");
                writer.i8(&t("weight"), &[weight.rows, weight.cols], &qw);
                writer.f32(&t("weight.scale"), &[weight.rows], &sw);
                writer.i32(&t("bias"), &[weight.rows], &qb);
                layers.push(GraphLayer::Linear {
                    name: name.clone(),
                    in_size: weight.cols,
                    out_size: weight.rows,
                    weight: t("weight"),
                    weight_scale: t("weight.scale"),
                    bias: t("bias"),
                    output,
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(QuantizeError::Model {
            model: model.name.clone(),
            problems,
        });
    }
    let producer = serde_json::json!({
        "tool": "irnn quantize",
        "version": env!("CARGO_PKG_VERSION"),
        "calibration": {
            "sequences": n,
            "steps_per_sequence": t,
            "range": match opts.range {
                RangeMethod::MinMax => "minmax".to_string(),
                RangeMethod::Percentile(p) => format!("percentile:{p}"),
            },
        },
        "pwl": {
            "tolerance_lsb": opts.pwl_tolerance_lsb,
            "max_pieces": opts.pwl_max_pieces,
            "method": opts.pwl_method,
        },
    });
    let file = GraphFile {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        name: model.name.clone(),
        tensors: tensor_file_name.to_string(),
        input,
        layers,
        tables,
        producer: Some(producer),
        metadata: model.metadata.clone(),
    };
    Ok((
        file,
        writer,
        QuantizeReport {
            steps: n * t,
            ranges,
            tables: table_reports,
        },
    ))
}
