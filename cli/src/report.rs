//! `irnn report`: what quantization did to a model, as one self-contained HTML file.
//!
//! The report runs the float reference and the integer interpreter side by side over a
//! data set and shows, with charts drawn by `plotters` into inline SVG (no script, no
//! network: the page's content security policy forbids both):
//!
//! - each PWL table against the exact function over its input grid, its error curve in
//!   output LSBs, its knots, piece count and largest error;
//! - per layer, the histogram of every quantized activation the float model produces on
//!   the data against the range its integer grid represents (from calibration), the
//!   grid, and the share of values that saturate;
//! - float vs integer per layer (RMS error of the dequantized layer output) and per step
//!   (how the error of the recurrent state grows along a sequence), and the end metric
//!   of `irnn eval` (the same [`evaluate`] call, so the numbers are `irnn eval --json`'s);
//! - sizes: parameters, bytes as int8 and f32, state, and per target the packed weight
//!   bytes and the stack `NAME_run` takes.
//!
//! Every number the report shows from `irnn eval` carries its full value in a
//! `data-value` attribute under a stable `id` (`float-bits_per_token`, …), which is how
//! tests/report.rs compares the opened page with `irnn eval --json`.

use crate::cli::{evaluate, quantize_feature, sizes, EvalResult, Sizes};
use anyhow::{anyhow, bail, Result};
use irnn_codegen::back::{GenOptions, Lang, Precision, Target, Unroll};
use irnn_codegen::float_ref::{FloatRunner, Observer};
use irnn_codegen::graph::{Graph, GraphLayer, LinearOutputSpec};
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::{InputIr, Program, PwlTable};
use irnn_codegen::lower::lower;
use irnn_codegen::metrics::bits;
use irnn_codegen::npy::{DataFile, SeqData};
use irnn_codegen::spec::{FloatLayer, FloatModel, InputSpec};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Histogram bins of an activation.
const BINS: usize = 120;
/// Points of a PWL curve in its chart (min/max envelopes keep every peak).
const CURVE_POINTS: usize = 800;

/// One PWL table: its fit and how far it is from the exact function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    /// Table name in the graph.
    pub name: String,
    /// The approximated function.
    pub function: String,
    /// Fractional bits of the int16 input grid.
    pub input_frac_bits: u32,
    /// Fractional bits of the output grid.
    pub output_frac_bits: u32,
    /// Pieces.
    pub pieces: usize,
    /// Largest error in output LSBs (`pwl::measure`).
    pub max_error_lsb: f64,
    /// Largest error in real units.
    pub max_error_abs: f64,
    /// Mean absolute error in output LSBs.
    pub mean_error_lsb: f64,
    /// Knots (piece starts) in real input units, both sides of a symmetric table.
    pub knots: Vec<f64>,
    /// `(x, exact, pwl)` in real units, downsampled.
    #[serde(skip)]
    pub curve: Vec<(f64, f64, f64)>,
    /// `(x, smallest error, largest error)` in output LSBs per bucket of inputs.
    #[serde(skip)]
    pub error: Vec<(f64, f64, f64)>,
}

/// One quantized activation tensor: the range its grid represents and what the float
/// model produced on the data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorReport {
    /// What it is (`gate i pre-activation`, `cell state`, `output`, …).
    pub what: String,
    /// Its integer grid, in words.
    pub grid: String,
    /// Smallest real value the grid represents (`None`: int32, no practical limit).
    pub lo: Option<f64>,
    /// Largest real value the grid represents.
    pub hi: Option<f64>,
    /// Values observed.
    pub count: u64,
    /// Smallest observed value.
    pub min: f64,
    /// Largest observed value.
    pub max: f64,
    /// Share of observed values outside `[lo, hi]` by more than half a grid step:
    /// values the integer model clamps.
    pub saturated: f64,
    /// Histogram range.
    pub hist_lo: f64,
    /// Histogram range.
    pub hist_hi: f64,
    /// Counts per bin over `[hist_lo, hist_hi]`.
    pub hist: Vec<u64>,
    /// Half a grid step (the saturation margin).
    #[serde(skip)]
    half_step: f64,
}

impl TensorReport {
    fn new(what: String, grid: String, lo: Option<f64>, hi: Option<f64>, step: f64) -> Self {
        TensorReport {
            what,
            grid,
            lo,
            hi,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            saturated: 0.0,
            hist_lo: 0.0,
            hist_hi: 0.0,
            hist: Vec::new(),
            half_step: step / 2.0,
        }
    }
}

/// One layer: its quantized activations and how far the integer layer is from the
/// float layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerReport {
    /// Layer name.
    pub name: String,
    /// Kind (`embedding`, `lstm`, `gru`, `rnn`, `linear`).
    pub kind: String,
    /// Activations with their grids.
    pub tensors: Vec<TensorReport>,
    /// RMS of the float layer output over the data.
    pub float_rms: f64,
    /// RMS of (dequantized integer output − float output) over the data.
    pub rms_error: f64,
    /// The same per step index (averaged over the sequences).
    pub rms_error_per_step: Vec<f64>,
}

/// Memory of the generated code for one target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetSize {
    /// Target name.
    pub target: String,
    /// Bytes of int8 weights as packed for the target.
    pub weight_bytes: usize,
    /// Recurrent state bytes (`NAME_state`).
    pub state_bytes: usize,
    /// Stack scratch of `NAME_run` (`NAME_RUN_STACK_BYTES`; `None` where the target
    /// runs a sequence as a loop of steps).
    pub run_stack_bytes: Option<usize>,
}

/// Everything `irnn report` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Graph path as given.
    pub model_path: String,
    /// Float spec path as given.
    pub float_path: String,
    /// Data path as given.
    pub data_path: String,
    /// Sequences and steps of the data.
    pub sequences: usize,
    /// Steps per sequence.
    pub steps: usize,
    /// `irnn eval`'s result on the same data.
    pub eval: EvalResult,
    /// Token models: mean bits of the float and integer model per step index.
    pub bits_per_step: Option<(Vec<f64>, Vec<f64>)>,
    /// PWL tables.
    pub tables: Vec<TableReport>,
    /// Layers.
    pub layers: Vec<LayerReport>,
    /// Parameter and state sizes.
    pub sizes: Sizes,
    /// Per target.
    pub targets: Vec<TargetSize>,
}

/// Collects, for the current step, the float values of every quantized activation and
/// each layer's output.
struct Tap {
    /// `(float layer, what)` → index into `tensors`.
    keys: BTreeMap<(usize, String), usize>,
    /// Values of the current step per tensor.
    values: Vec<Vec<f32>>,
    /// Output of each float layer at the current step.
    outputs: Vec<Vec<f32>>,
}

impl Tap {
    fn put(&mut self, layer: usize, what: &str, v: &[f32]) {
        if let Some(&i) = self.keys.get(&(layer, what.to_string())) {
            self.values[i].extend_from_slice(v);
        }
    }
}

impl Observer for Tap {
    fn lstm_gates(&mut self, layer: usize, pre: &[f32]) {
        let h = pre.len() / 4;
        for (g, name) in ["gate0", "gate1", "gate2", "gate3"].iter().enumerate() {
            self.put(layer, name, &pre[g * h..(g + 1) * h]);
        }
    }
    fn lstm_cell(&mut self, layer: usize, c: &[f32]) {
        self.put(layer, "cell", c);
    }
    fn cell_values(&mut self, layer: usize, what: &'static str, v: &[f32]) {
        self.put(layer, what, v);
    }
    fn layer_output(&mut self, layer: usize, y: &[f32]) {
        self.put(layer, "out", y);
        if let Some(o) = self.outputs.get_mut(layer) {
            o.clear();
            o.extend_from_slice(y);
        }
    }
}

/// The range of an int16 grid with `frac` fractional bits.
fn q15_range(frac: u32) -> (f64, f64, f64) {
    let step = (-(frac as f64)).exp2();
    (-32768.0 * step, 32767.0 * step, step)
}

/// The tensors of one graph layer, keyed by what the float reference's observer calls
/// them, with their grids.
fn layer_tensors(layer: &GraphLayer) -> (String, Vec<(String, TensorReport)>) {
    let int16 = |what: &str, frac: u32| {
        let (lo, hi, step) = q15_range(frac);
        TensorReport::new(
            what.to_string(),
            format!("int16 Q{}.{frac}", 15 - frac as i32),
            Some(lo),
            Some(hi),
            step,
        )
    };
    let int8 = |q: &irnn_codegen::graph::AffineQuant| {
        TensorReport::new(
            "output".into(),
            format!("int8, scale {:.4e}, zero point {}", q.scale, q.zero_point),
            Some((-128 - q.zero_point) as f64 * q.scale),
            Some((127 - q.zero_point) as f64 * q.scale),
            q.scale,
        )
    };
    match layer {
        GraphLayer::Embedding { output, .. } => {
            ("embedding".into(), vec![("out".into(), int8(output))])
        }
        GraphLayer::Lstm {
            gate_frac_bits: g,
            cell_frac_bits,
            output,
            ..
        } => (
            "lstm".into(),
            vec![
                ("gate0".into(), int16("gate i pre-activation", g[0])),
                ("gate1".into(), int16("gate f pre-activation", g[1])),
                ("gate2".into(), int16("gate g pre-activation", g[2])),
                ("gate3".into(), int16("gate o pre-activation", g[3])),
                ("cell".into(), int16("cell state", *cell_frac_bits)),
                ("out".into(), int8(output)),
            ],
        ),
        GraphLayer::Gru {
            gate_frac_bits: g,
            output,
            ..
        } => (
            "gru".into(),
            vec![
                ("pre_r".into(), int16("gate r pre-activation", g[0])),
                ("pre_z".into(), int16("gate z pre-activation", g[1])),
                ("x_n".into(), int16("W_in x + b_in", g[2])),
                ("h_n".into(), int16("W_hn h + b_hn", g[2])),
                ("pre_n".into(), int16("gate n pre-activation", g[2])),
                ("out".into(), int8(output)),
            ],
        ),
        GraphLayer::Rnn {
            pre_frac_bits,
            output,
            ..
        } => (
            "rnn".into(),
            vec![
                ("pre".into(), int16("pre-activation", *pre_frac_bits)),
                ("out".into(), int8(output)),
            ],
        ),
        GraphLayer::Linear { output, .. } => {
            let t = match output {
                LinearOutputSpec::I32 { scale } => TensorReport::new(
                    "output".into(),
                    format!("int32, scale {scale:.4e}"),
                    None,
                    None,
                    *scale,
                ),
                LinearOutputSpec::I8 { scale, zero_point } => {
                    int8(&irnn_codegen::graph::AffineQuant {
                        scale: *scale,
                        zero_point: *zero_point,
                    })
                }
            };
            ("linear".into(), vec![("out".into(), t)])
        }
    }
}

fn graph_layer_name(l: &GraphLayer) -> &str {
    l.name()
}

fn float_layer_name(l: &FloatLayer) -> &str {
    l.name()
}

/// Scale and zero point of a layer's int8 output.
fn int8_quant(l: &GraphLayer) -> Option<(f64, f64)> {
    match l {
        GraphLayer::Embedding { output, .. }
        | GraphLayer::Lstm { output, .. }
        | GraphLayer::Gru { output, .. }
        | GraphLayer::Rnn { output, .. } => Some((output.scale, output.zero_point as f64)),
        GraphLayer::Linear {
            output: LinearOutputSpec::I8 { scale, zero_point },
            ..
        } => Some((*scale, *zero_point as f64)),
        GraphLayer::Linear { .. } => None,
    }
}

/// A PWL table's report: exhaustive over its measured input grid.
pub fn table_report(name: &str, t: &PwlTable) -> TableReport {
    let m = irnn_codegen::pwl::measure(t);
    let pwl = t.as_pwl();
    let inputs = irnn_codegen::pwl::measured_inputs(t.function);
    let (first, last) = (*inputs.start(), *inputs.end());
    let in_step = (-(t.input_frac_bits as f64)).exp2();
    let out_step = (-(t.output_frac_bits as f64)).exp2();
    let span = (last - first + 1) as usize;
    let per = span.div_ceil(CURVE_POINTS).max(1);
    let (mut curve, mut error) = (Vec::new(), Vec::new());
    let mut x = first;
    while x <= last {
        let end = (x + per as i32 - 1).min(last);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for u in x..=end {
            let exact =
                irnn_codegen::pwl::target_lsb(t.function, t.input_frac_bits, t.output_frac_bits, u);
            let e = pwl.eval(u) as f64 - exact;
            lo = lo.min(e);
            hi = hi.max(e);
        }
        let xr = x as f64 * in_step;
        curve.push((xr, t.function.eval_f64(xr), pwl.eval(x) as f64 * out_step));
        error.push((xr, lo, hi));
        x = end + 1;
    }
    let mut knots: Vec<f64> = t.starts.iter().map(|&s| s as f64 * in_step).collect();
    if t.symmetry != irnn_codegen::ir::TableSymmetry::None {
        let mirrored: Vec<f64> = knots.iter().filter(|&&k| k > 0.0).map(|k| -k).collect();
        knots.extend(mirrored);
    }
    let (lo, hi) = (first as f64 * in_step, last as f64 * in_step);
    knots.retain(|k| (lo..=hi).contains(k));
    knots.sort_by(f64::total_cmp);
    knots.dedup();
    TableReport {
        name: name.to_string(),
        function: t.function.as_str().to_string(),
        input_frac_bits: t.input_frac_bits,
        output_frac_bits: t.output_frac_bits,
        pieces: t.pieces(),
        max_error_lsb: m.max_error_lsb,
        max_error_abs: m.max_error_abs,
        mean_error_lsb: m.mean_error_lsb,
        knots,
        curve,
        error,
    }
}

/// Sizes of the generated code per target: packed weights, state, `NAME_run`'s stack.
pub fn target_sizes(program: &Program) -> Result<Vec<TargetSize>> {
    let state = sizes(program).state_bytes;
    let mut out = Vec::new();
    for target in Target::ALL {
        let files = irnn_codegen::back::generate(
            program,
            &GenOptions {
                lang: Lang::C,
                target,
                unroll: Unroll::None,
                precision: Precision::Int8,
                fusion: Default::default(),
            },
        )?;
        let run_stack_bytes = files
            .iter()
            .filter(|f| f.name.ends_with(".h"))
            .flat_map(|f| f.contents.lines())
            .find_map(|l| {
                let rest = l.strip_prefix("#define ")?;
                let (name, value) = rest.split_once(char::is_whitespace)?;
                if !name.ends_with("_RUN_STACK_BYTES") {
                    return None;
                }
                value.trim().trim_end_matches(['u', 'U']).parse().ok()
            });
        out.push(TargetSize {
            target: target.name().to_string(),
            weight_bytes: crate::bench::weight_bytes(program, target),
            state_bytes: state,
            run_stack_bytes,
        });
    }
    Ok(out)
}

/// Runs the float and the integer model side by side over `data` and gathers the
/// report. `labels` as for `irnn eval` (classifiers).
pub fn build(
    model_path: &Path,
    float_path: &Path,
    data_path: &Path,
    data: &DataFile,
    labels: Option<(&[i64], &Path)>,
    progress: &indicatif::ProgressBar,
) -> Result<Report> {
    let graph = Graph::load(model_path)?;
    let program = lower(&graph)?;
    let float_model = FloatModel::load(float_path)?;
    let (n, t) = data.data.dims();
    if n == 0 || t == 0 {
        bail!("{}: no steps to report on", data_path.display());
    }

    // Graph layer i is program layer i; float layers are matched by name.
    let mut keys = BTreeMap::new();
    let mut tensors: Vec<TensorReport> = Vec::new();
    let mut layers: Vec<(LayerReport, Option<usize>, Vec<usize>)> = Vec::new();
    for gl in &graph.file.layers {
        let name = graph_layer_name(gl).to_string();
        let fi = float_model
            .layers
            .iter()
            .position(|fl| float_layer_name(fl) == name);
        let (kind, ts) = layer_tensors(gl);
        let mut idx = Vec::new();
        for (key, tr) in ts {
            if let Some(fi) = fi {
                keys.insert((fi, key), tensors.len());
            }
            idx.push(tensors.len());
            tensors.push(tr);
        }
        layers.push((
            LayerReport {
                name,
                kind,
                tensors: Vec::new(),
                float_rms: 0.0,
                rms_error: 0.0,
                rms_error_per_step: vec![0.0; t],
            },
            fi,
            idx,
        ));
    }
    let n_float = float_model.layers.len();
    let mut tap = Tap {
        keys,
        values: vec![Vec::new(); tensors.len()],
        outputs: vec![Vec::new(); n_float],
    };

    // Histogram ranges: the grid's range widened by a quarter on each side (values
    // beyond land in the end bins); int32 outputs get theirs from a first look at the
    // data (the first sequence).
    let mut all: Vec<Vec<f32>> = vec![Vec::new(); tensors.len()];
    let steps_float =
        |runner: &mut FloatRunner, s: usize, step: usize, tap: &mut Tap| match &data.data {
            SeqData::Tokens { data, .. } => {
                let tok = data[s * t + step];
                match float_model.input {
                    InputSpec::Tokens { vocab_size }
                        if tok >= 0 && (tok as u64) < vocab_size as u64 =>
                    {
                        runner.step_token(tok as usize, tap);
                        Ok(())
                    }
                    InputSpec::Tokens { .. } => Err(anyhow!(
                        "{}: sequence {s}, step {step}: token id {tok} is outside the vocabulary",
                        data_path.display()
                    )),
                    _ => Err(anyhow!(
                        "{}: the float model takes features, not token ids",
                        data_path.display()
                    )),
                }
            }
            SeqData::FeaturesF32 { f, data, .. } => {
                let off = (s * t + step) * f;
                runner.step_features(&data[off..off + f], tap);
                Ok(())
            }
            SeqData::FeaturesI8 { .. } => Err(anyhow!(
                "{}: the float model needs float32 features, not int8",
                data_path.display()
            )),
        };

    let mut runner = FloatRunner::new(&float_model);
    let mut it = Interpreter::with_kernel(&program, irnn_runtime::simd::Kernel::detect());
    let out_size = program.output.size;
    let (scale, zp) = (program.output.scale_info, program.output.zero_point as f64);
    let tokens = match (&data.data, labels) {
        (SeqData::Tokens { data, .. }, None) if t >= 2 => Some(data),
        _ => None,
    };
    let mut bits_f = vec![0.0f64; t];
    let mut bits_i = vec![0.0f64; t];
    let mut sq_err = vec![vec![0.0f64; t]; layers.len()];
    let mut sq_float = vec![0.0f64; layers.len()];
    let mut counts = vec![0usize; layers.len()];
    let mut feat = Vec::new();
    let mut int_out = vec![0f64; out_size];
    progress.set_length((n * t) as u64);
    for s in 0..n {
        runner.reset();
        it.reset();
        for step in 0..t {
            tap.values.iter_mut().for_each(Vec::clear);
            steps_float(&mut runner, s, step, &mut tap)?;
            let y = match (&data.data, &program.input) {
                (SeqData::Tokens { data, .. }, _) => it.step_token(data[s * t + step]),
                (
                    SeqData::FeaturesF32 { f, data, .. },
                    InputIr::Features {
                        scale_info,
                        zero_point,
                        ..
                    },
                ) => {
                    let off = (s * t + step) * f;
                    feat.clear();
                    feat.extend(
                        data[off..off + f]
                            .iter()
                            .map(|&x| quantize_feature(x, *scale_info, *zero_point)),
                    );
                    it.step_features(&feat)
                }
                _ => bail!(
                    "{}: the data does not fit the model's input",
                    data_path.display()
                ),
            }
            .map_err(|e| anyhow!("{}: sequence {s}, step {step}: {e}", data_path.display()))?;
            for (o, &v) in int_out.iter_mut().zip(y) {
                *o = (v as f64 - zp) * scale;
            }
            // Histograms collect after the first sequence fixed the int32 ranges.
            for (i, v) in tap.values.iter().enumerate() {
                all[i].extend_from_slice(v);
            }
            for (li, (_, fi, _)) in layers.iter().enumerate() {
                let Some(fi) = *fi else { continue };
                let fl = &tap.outputs[fi];
                let int: Vec<f64> =
                    match (it.layer_output_i8(li), int8_quant(&graph.file.layers[li])) {
                        (Some(q), Some((s8, z8))) => {
                            q.iter().map(|&c| (c as f64 - z8) * s8).collect()
                        }
                        (None, _) if li + 1 == layers.len() => int_out.clone(),
                        _ => continue,
                    };
                if int.len() != fl.len() {
                    continue;
                }
                let (mut e2, mut f2) = (0.0, 0.0);
                for (a, &b) in int.iter().zip(fl) {
                    e2 += (a - b as f64).powi(2);
                    f2 += (b as f64).powi(2);
                }
                sq_err[li][step] += e2 / fl.len() as f64;
                sq_float[li] += f2 / fl.len() as f64;
                counts[li] += 1;
            }
            if let Some(toks) = tokens {
                if step + 1 < t {
                    let target = toks[s * t + step + 1];
                    if target >= 0 && (target as usize) < out_size {
                        let fl: Vec<f64> =
                            tap.outputs[n_float - 1].iter().map(|&v| v as f64).collect();
                        bits_f[step] += bits(&fl, target as usize);
                        bits_i[step] += bits(&int_out, target as usize);
                    }
                }
            }
            progress.inc(1);
        }
        // Keep memory bounded: fold into histograms once per sequence.
        if s == 0 {
            for (i, tr) in tensors.iter_mut().enumerate() {
                let (lo, hi) = match (tr.lo, tr.hi) {
                    (Some(lo), Some(hi)) => {
                        let w = hi - lo;
                        (lo - w / 4.0, hi + w / 4.0)
                    }
                    _ => {
                        let (mn, mx) = all[i]
                            .iter()
                            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                                (a.min(v as f64), b.max(v as f64))
                            });
                        let pad = ((mx - mn) / 2.0).max(1e-6);
                        (mn - pad, mx + pad)
                    }
                };
                tr.hist_lo = lo;
                tr.hist_hi = hi;
                tr.hist = vec![0; BINS];
            }
        }
        for (i, tr) in tensors.iter_mut().enumerate() {
            fold(tr, &all[i]);
            all[i].clear();
        }
    }
    progress.finish_and_clear();

    let mut out_layers = Vec::new();
    for (li, (mut lr, _, idx)) in layers.into_iter().enumerate() {
        let c = counts[li].max(1) as f64;
        lr.float_rms = (sq_float[li] / c).sqrt();
        lr.rms_error = (sq_err[li].iter().sum::<f64>() / c).sqrt();
        lr.rms_error_per_step = sq_err[li].iter().map(|e| (e / n as f64).sqrt()).collect();
        if counts[li] == 0 {
            lr.rms_error_per_step.clear();
        }
        lr.tensors = idx.iter().map(|&i| tensors[i].clone()).collect();
        out_layers.push(lr);
    }
    let bits_per_step = tokens.map(|_| {
        (
            bits_f[..t - 1].iter().map(|b| b / n as f64).collect(),
            bits_i[..t - 1].iter().map(|b| b / n as f64).collect(),
        )
    });

    let eval = evaluate(&program, &float_model, data, data_path, labels)?;
    let mut tables: Vec<TableReport> = graph
        .file
        .tables
        .iter()
        .map(|(name, t)| table_report(name, t))
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Report {
        model: program.name.clone(),
        model_path: model_path.display().to_string(),
        float_path: float_path.display().to_string(),
        data_path: data_path.display().to_string(),
        sequences: n,
        steps: t,
        eval,
        bits_per_step,
        tables,
        layers: out_layers,
        sizes: sizes(&program),
        targets: target_sizes(&program)?,
    })
}

/// Adds values to a tensor's histogram, extremes and saturation count.
fn fold(tr: &mut TensorReport, xs: &[f32]) {
    let width = (tr.hist_hi - tr.hist_lo) / BINS as f64;
    let mut sat = tr.saturated * tr.count as f64;
    for &x in xs {
        let x = x as f64;
        tr.min = tr.min.min(x);
        tr.max = tr.max.max(x);
        let bin = (((x - tr.hist_lo) / width).floor().max(0.0) as usize).min(BINS - 1);
        tr.hist[bin] += 1;
        if let (Some(lo), Some(hi)) = (tr.lo, tr.hi) {
            if x < lo - tr.half_step || x > hi + tr.half_step {
                sat += 1.0;
            }
        }
    }
    tr.count += xs.len() as u64;
    tr.saturated = if tr.count == 0 {
        0.0
    } else {
        sat / tr.count as f64
    };
}

// ---------------------------------------------------------------------------------
// Charts (plotters, SVG into a string).

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn svg(w: u32, h: u32, draw: impl FnOnce(&Area) -> Result<()>) -> Result<String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(s)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

const INT_COLOR: RGBColor = RGBColor(214, 39, 40);
const FLOAT_COLOR: RGBColor = RGBColor(31, 119, 180);
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// The input span a table's chart shows: its knots (where the pieces change) with a
/// margin of a tenth on each side, within the measured domain.
fn table_span(t: &TableReport) -> (f64, f64) {
    let (d0, d1) = (t.curve[0].0, t.curve[t.curve.len() - 1].0);
    match (t.knots.first(), t.knots.last()) {
        (Some(&a), Some(&b)) if b > a => {
            let m = (b - a) / 10.0;
            ((a - m).max(d0), (b + m).min(d1))
        }
        _ => (d0, d1),
    }
}

fn table_chart(t: &TableReport) -> Result<String> {
    svg(560, 300, |root| {
        let (x0, x1) = table_span(t);
        let (y0, y1) = t
            .curve
            .iter()
            .filter(|p| (x0..=x1).contains(&p.0))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1).min(p.2), b.max(p.1).max(p.2))
            });
        let (y0, y1) = padded(y0, y1);
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("{} vs exact {}", t.name, t.function),
                ("sans-serif", 15),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("input")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        let shown = || t.curve.iter().filter(|p| (x0..=x1).contains(&p.0));
        c.draw_series(LineSeries::new(
            shown().map(|p| (p.0, p.1)),
            FLOAT_COLOR.stroke_width(3),
        ))
        .map_err(plot_err)?
        .label("exact")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], FLOAT_COLOR));
        c.draw_series(LineSeries::new(
            shown().map(|p| (p.0, p.2)),
            INT_COLOR.stroke_width(1),
        ))
        .map_err(plot_err)?
        .label("PWL (integer)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], INT_COLOR));
        c.draw_series(t.knots.iter().filter(|k| (x0..=x1).contains(*k)).map(|&k| {
            let y = t.curve[t.curve.partition_point(|p| p.0 < k).min(t.curve.len() - 1)].2;
            Circle::new((k, y), 2, BLACK.filled())
        }))
        .map_err(plot_err)?
        .label("knots")
        .legend(|(x, y)| Circle::new((x + 8, y), 2, BLACK.filled()));
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })
}

fn table_error_chart(t: &TableReport) -> Result<String> {
    svg(560, 300, |root| {
        let (x0, x1) = table_span(t);
        let shown: Vec<_> = t
            .error
            .iter()
            .filter(|p| (x0..=x1).contains(&p.0))
            .collect();
        let m = shown
            .iter()
            .fold(0.0f64, |a, p| a.max(p.1.abs()).max(p.2.abs()));
        let (y0, y1) = padded(-m, m);
        let mut c = ChartBuilder::on(root)
            .caption(
                format!("error of {} (output LSB)", t.name),
                ("sans-serif", 15),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("input")
            .y_desc("PWL − exact (LSB)")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        let w = (t.error[t.error.len() - 1].0 - t.error[0].0) / t.error.len() as f64;
        c.draw_series(
            shown
                .iter()
                .map(|p| Rectangle::new([(p.0, p.1), (p.0 + w, p.2)], INT_COLOR.mix(0.7).filled())),
        )
        .map_err(plot_err)?;
        for limit in [-t.max_error_lsb, t.max_error_lsb] {
            c.draw_series(LineSeries::new([(x0, limit), (x1, limit)], BLACK.mix(0.4)))
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

fn histogram_chart(layer: &str, tr: &TensorReport) -> Result<String> {
    svg(560, 260, |root| {
        let width = (tr.hist_hi - tr.hist_lo) / tr.hist.len().max(1) as f64;
        let top = tr.hist.iter().copied().max().unwrap_or(1).max(1) as f64;
        let mut c = ChartBuilder::on(root)
            .caption(format!("{layer}: {}", tr.what), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(tr.hist_lo..tr.hist_hi, (0.5f64..top * 2.0).log_scale())
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("value (float model)")
            .y_desc("count")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        c.draw_series(
            tr.hist
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(i, &n)| {
                    let x = tr.hist_lo + i as f64 * width;
                    Rectangle::new(
                        [(x, 0.5), (x + width, n as f64)],
                        FLOAT_COLOR.mix(0.6).filled(),
                    )
                }),
        )
        .map_err(plot_err)?
        .label("observed")
        .legend(|(x, y)| {
            Rectangle::new([(x, y - 4), (x + 12, y + 4)], FLOAT_COLOR.mix(0.6).filled())
        });
        if let (Some(lo), Some(hi)) = (tr.lo, tr.hi) {
            for (i, v) in [lo, hi].into_iter().enumerate() {
                let s = c
                    .draw_series(LineSeries::new(
                        [(v, 0.5), (v, top * 2.0)],
                        INT_COLOR.stroke_width(2),
                    ))
                    .map_err(plot_err)?;
                if i == 0 {
                    s.label("integer grid range").legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], INT_COLOR.stroke_width(2))
                    });
                }
            }
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })
}

fn lines_chart(
    caption: &str,
    y_desc: &str,
    series: &[(String, Vec<f64>)],
    from_zero: bool,
) -> Result<String> {
    let (w, h) = (580, 320);
    svg(w, h, |root| {
        let len = series.iter().map(|s| s.1.len()).max().unwrap_or(1).max(2);
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.1.iter())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let (lo, hi) = padded(if from_zero { lo.min(0.0) } else { lo }, hi);
        let mut c = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..(len - 1) as f64, lo..hi)
            .map_err(plot_err)?;
        c.configure_mesh()
            .x_desc("step")
            .y_desc(y_desc)
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        for (k, (name, ys)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            c.draw_series(LineSeries::new(
                ys.iter().enumerate().map(|(i, &y)| (i as f64, y)),
                // The first series drawn thick, so that one drawn over it stays visible.
                color.stroke_width(if k == 0 { 3 } else { 1 }),
            ))
            .map_err(plot_err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })
}

/// Moving average over `w` steps (the per-step curves are noisy over few sequences).
fn smooth(xs: &[f64], w: usize) -> Vec<f64> {
    let w = w.max(1);
    (0..xs.len())
        .map(|i| {
            let a = i.saturating_sub(w / 2);
            let b = (i + w / 2 + 1).min(xs.len());
            xs[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// HTML.

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number with its full value in `data-value` under `id`, shown rounded.
fn num(id: &str, v: f64, shown: String) -> String {
    format!(
        "<span id=\"{}\" data-value=\"{v}\">{}</span>",
        esc(id),
        esc(&shown)
    )
}

fn bytes(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px auto;max-width:1180px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}\
h3{font-size:15px}table{border-collapse:collapse;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}\
th{background:#f3f3f3}td.l,th.l{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:8px}\
.charts svg{border:1px solid #eee}p.note{font-size:13px;color:#555;max-width:900px}";

/// The report as one HTML document (inline SVG and CSS; no script, no external
/// resource, which its content security policy enforces).
pub fn render(r: &Report) -> Result<String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>irnn report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&r.model)
    );
    let _ = writeln!(
        h,
        "<h1>irnn report: {}</h1><p class=\"note\">model <code>{}</code>, float model <code>{}</code>, \
         data <code>{}</code>: {} sequence(s) of {} steps.</p>",
        esc(&r.model),
        esc(&r.model_path),
        esc(&r.float_path),
        esc(&r.data_path),
        r.sequences,
        r.steps
    );

    // End metric.
    h.push_str("<h2 id=\"metric\">Float vs integer: end metric</h2>\n<table><tr><th class=\"l\">model</th>");
    let get = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
    let metric = if get(&r.eval.float, "bits_per_token").is_some() {
        ("bits_per_token", "bits/token", false)
    } else {
        ("accuracy", "accuracy", true)
    };
    let (f, i) = (
        get(&r.eval.float, metric.0).unwrap_or(f64::NAN),
        get(&r.eval.integer, metric.0).unwrap_or(f64::NAN),
    );
    let show = |v: f64| {
        if metric.2 {
            format!("{:.2}%", v * 100.0)
        } else {
            format!("{v:.4}")
        }
    };
    let _ = write!(
        h,
        "<th>{}</th><th>vs float</th></tr>\n<tr><td class=\"l\">float</td><td>{}</td><td></td></tr>\n\
         <tr><td class=\"l\">integer</td><td>{}</td><td>{}</td></tr></table>\n",
        metric.1,
        num(&format!("float-{}", metric.0), f, show(f)),
        num(&format!("integer-{}", metric.0), i, show(i)),
        if metric.2 {
            format!("{:+.2} points", (i - f) * 100.0)
        } else {
            format!("{:+.2}%", (i / f - 1.0) * 100.0)
        }
    );
    let _ = write!(
        h,
        "<p>predictions: {}",
        num(
            "predictions",
            r.eval.predictions as f64,
            r.eval.predictions.to_string()
        )
    );
    if let Some(a) = r.eval.top1_agreement {
        let _ = write!(
            h,
            "; top-1 agreement per step: {}",
            num("top1_agreement", a, format!("{:.2}%", a * 100.0))
        );
    }
    if let Some(a) = r.eval.agreement {
        let _ = write!(
            h,
            "; agreement (same predicted class): {}",
            num("agreement", a, format!("{:.2}%", a * 100.0))
        );
    }
    h.push_str(" (as <code>irnn eval</code> reports them).</p>\n");

    // Per layer and per step.
    h.push_str("<h2 id=\"layers\">Float vs integer per layer and per step</h2>\n");
    h.push_str(
        "<p class=\"note\">Each layer's integer output, dequantized, against the float model's \
         output of the same layer on the same inputs (the float model runs on its own state, so \
         errors of earlier layers and steps carry forward, as they do in deployment).</p>\n\
         <table><tr><th class=\"l\">layer</th><th class=\"l\">kind</th><th>float RMS</th>\
         <th>RMS error</th><th>relative</th></tr>\n",
    );
    for l in &r.layers {
        let rel = l.rms_error / l.float_rms.max(1e-30);
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.4e}</td><td>{:.4e}</td><td>{:.2}%</td></tr>",
            esc(&l.name),
            l.kind,
            l.float_rms,
            l.rms_error,
            rel * 100.0
        );
    }
    h.push_str("</table>\n<div class=\"charts\">");
    let w = (r.steps / 32).max(1);
    let series: Vec<(String, Vec<f64>)> = r
        .layers
        .iter()
        .filter(|l| !l.rms_error_per_step.is_empty())
        .map(|l| {
            let rel: Vec<f64> = l
                .rms_error_per_step
                .iter()
                .map(|e| e / l.float_rms.max(1e-30))
                .collect();
            (l.name.clone(), smooth(&rel, w))
        })
        .collect();
    h.push_str(&lines_chart(
        &format!("relative RMS error per step (moving average over {w})"),
        "RMS error / float RMS",
        &series,
        true,
    )?);
    if let Some((bf, bi)) = &r.bits_per_step {
        let diff: Vec<f64> = bf.iter().zip(bi).map(|(f, i)| i - f).collect();
        h.push_str(&lines_chart(
            &format!("bits/token per step, mean over sequences (moving average over {w})"),
            "bits/token",
            &[
                ("float".into(), smooth(bf, w)),
                ("integer".into(), smooth(bi, w)),
            ],
            false,
        )?);
        h.push_str(&lines_chart(
            &format!("integer − float bits/token per step (moving average over {w})"),
            "bits/token",
            &[("integer − float".into(), smooth(&diff, w))],
            true,
        )?);
    }
    h.push_str("</div>\n");

    // Ranges.
    h.push_str(
        "<h2 id=\"ranges\">Calibrated ranges vs observed activations</h2>\n<p class=\"note\">\
         The histograms are of the float model's values on this data (log scale); the red lines \
         are the ends of the range the integer grid chose at calibration. Values beyond them \
         saturate in the integer model.</p>\n<table><tr><th class=\"l\">layer</th>\
         <th class=\"l\">activation</th><th class=\"l\">grid</th><th>grid range</th>\
         <th>observed range</th><th>saturated</th></tr>\n",
    );
    for l in &r.layers {
        for t in &l.tensors {
            let range = match (t.lo, t.hi) {
                (Some(lo), Some(hi)) => format!("[{lo:.4}, {hi:.4}]"),
                _ => "int32".into(),
            };
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td>\
                 <td>[{:.4}, {:.4}]</td><td>{:.4}%</td></tr>",
                esc(&l.name),
                esc(&t.what),
                esc(&t.grid),
                range,
                t.min,
                t.max,
                t.saturated * 100.0
            );
        }
    }
    h.push_str("</table>\n");
    for l in &r.layers {
        let _ = write!(
            h,
            "<h3>{} ({})</h3><div class=\"charts\">",
            esc(&l.name),
            l.kind
        );
        for t in &l.tensors {
            if t.count > 0 {
                h.push_str(&histogram_chart(&l.name, t)?);
            }
        }
        h.push_str("</div>\n");
    }

    // PWL tables.
    h.push_str(
        "<h2 id=\"pwl\">PWL activations</h2>\n<table><tr><th class=\"l\">table</th>\
         <th class=\"l\">function</th><th>input grid</th><th>pieces</th><th>max error (LSB)</th>\
         <th>max error</th><th>mean error (LSB)</th></tr>\n",
    );
    for t in &r.tables {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>Q{}.{} → Q0.{}</td><td>{}</td>\
             <td>{:.3}</td><td>{:.2e}</td><td>{:.3}</td></tr>",
            esc(&t.name),
            t.function,
            15 - t.input_frac_bits as i32,
            t.input_frac_bits,
            t.output_frac_bits,
            t.pieces,
            t.max_error_lsb,
            t.max_error_abs,
            t.mean_error_lsb
        );
    }
    h.push_str("</table>\n");
    for t in &r.tables {
        let _ = writeln!(
            h,
            "<div class=\"charts\">{}{}</div>",
            table_chart(t)?,
            table_error_chart(t)?
        );
    }

    // Sizes.
    let s = &r.sizes;
    let _ = write!(
        h,
        "<h2 id=\"sizes\">Sizes</h2>\n<table><tr><th class=\"l\">what</th><th>bytes</th></tr>\n\
         <tr><td class=\"l\">parameters, integer</td><td>{}</td></tr>\n\
         <tr><td class=\"l\">parameters, f32</td><td>{}</td></tr>\n\
         <tr><td class=\"l\">recurrent state</td><td>{}</td></tr></table>\n\
         <p class=\"note\">{:.2}x smaller as integers. Per target of the generated C: int8 weights as \
         packed for the target's kernels, the state, and the stack scratch of <code>NAME_run</code> \
         (sequence mode; the scalar target runs a sequence as a loop of steps).</p>\n\
         <table><tr><th class=\"l\">target</th><th>weights</th><th>state</th><th>NAME_run stack</th></tr>\n",
        bytes(s.int_param_bytes),
        bytes(s.float_param_bytes),
        bytes(s.state_bytes),
        s.float_param_bytes as f64 / s.int_param_bytes.max(1) as f64
    );
    for t in &r.targets {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.target,
            bytes(t.weight_bytes),
            bytes(t.state_bytes),
            t.run_stack_bytes.map(bytes).unwrap_or_else(|| "–".into())
        );
    }
    h.push_str("</table>\n</body></html>\n");
    Ok(h)
}

/// `irnn report`.
pub fn cmd_report(
    model: &Path,
    float_spec: &Path,
    data_path: &Path,
    labels: Option<&Path>,
    output: &Path,
) -> Result<()> {
    let data = irnn_codegen::npy::read_data(data_path)?;
    let labels_v = match labels {
        Some(p) => Some((irnn_codegen::npy::read_labels(p)?, p)),
        None => None,
    };
    let bar = crate::progress::bar(0, "report");
    let report = build(
        model,
        float_spec,
        data_path,
        &data,
        labels_v.as_ref().map(|(l, p)| (l.as_slice(), *p)),
        &bar,
    )?;
    let html = render(&report)?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow!("{}: cannot create directory: {e}", dir.display()))?;
    }
    irnn_codegen::util::write_atomic(output, html.as_bytes())
        .map_err(|e| anyhow!("{}: cannot write: {e}", output.display()))?;
    eprintln!("wrote {} ({} bytes)", output.display(), html.len());
    Ok(())
}
