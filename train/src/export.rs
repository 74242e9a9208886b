//! Export of the QAT model to the quantized graph format, and evaluation of the
//! simulated model against the integer interpreter.

use crate::model::{CellKind, Params};
use crate::qat::{forward, table, DeviceParams, LutCache, Mode, QuantState};
use crate::TrainError;
use burn::tensor::Device;
use irnn_codegen::graph::{
    write_graph, AffineQuant, Graph, GraphFile, GraphInput, GraphLayer, LinearOutputSpec,
    FORMAT_NAME, FORMAT_VERSION,
};
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::{Activation, PwlTable};
use irnn_codegen::metrics::{argmax, bits};
use irnn_codegen::quantize::{affine_from_range, bias_code, quantize_rows};
use irnn_codegen::spec::Nonlinearity;
use irnn_codegen::tensors::TensorWriter;
use std::collections::BTreeMap;
use std::path::Path;

fn quantize_bias(
    bias: &[f32],
    in_scale: f64,
    w_scales: &[f32],
    what: &str,
) -> Result<Vec<i32>, TrainError> {
    bias.iter()
        .zip(w_scales)
        .enumerate()
        .map(|(r, (&b, &s))| {
            bias_code(b, in_scale, s).ok_or_else(|| {
                TrainError::Model(format!(
                    "{what}: bias row {r} ({b}) is too large for its int32 grid"
                ))
            })
        })
        .collect()
}

/// Builds the quantized graph (same structure and formulas as `irnn quantize`) from the
/// parameters and the frozen QAT ranges.
pub fn build_graph(
    p: &Params,
    qs: &QuantState,
    tensor_file_name: &str,
    producer: serde_json::Value,
    metadata: Option<serde_json::Value>,
) -> Result<(GraphFile, TensorWriter), TrainError> {
    let arch = &p.arch;
    let mut writer = TensorWriter::default();
    let mut layers = Vec::new();
    let mut tables: BTreeMap<String, PwlTable> = BTreeMap::new();
    let mut table_for = |f: Activation, k: u32| {
        let t = table(f, k);
        let name = t.short_name();
        tables.entry(name.clone()).or_insert(t);
        name
    };
    // Embedding.
    let ew = &p.params[0];
    let lo = ew.data.iter().fold(f32::INFINITY, |m, v| m.min(*v));
    let hi = ew.data.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let eq = affine_from_range(lo, hi);
    let codes: Vec<i8> = ew
        .data
        .iter()
        .map(|v| ((*v as f64 / eq.scale).round() + eq.zero_point as f64).clamp(-128.0, 127.0) as i8)
        .collect();
    let ename = arch.layer_names[0].clone();
    writer.i8(
        &format!("{ename}.table"),
        &[arch.vocab, arch.embed_dim],
        &codes,
    );
    layers.push(GraphLayer::Embedding {
        name: ename.clone(),
        vocab_size: arch.vocab,
        dim: arch.embed_dim,
        table: format!("{ename}.table"),
        output: eq,
    });
    let mut in_q: AffineQuant = eq;
    let mut input = arch.embed_dim;
    for (k, &h) in arch.hidden.iter().enumerate() {
        let name = arch.layer_names[1 + k].clone();
        let base = 1 + 4 * k;
        let (wi, wh) = (&p.params[base], &p.params[base + 1]);
        let (bi, bh) = (&p.params[base + 2], &p.params[base + 3]);
        let cell = arch.cell(k);
        let gr = qs.grids(k, cell);
        let rows = cell.gates() * h;
        let (qi, si) = quantize_rows(&wi.data, rows, input);
        let (qh, sh) = quantize_rows(&wh.data, rows, h);
        let t = |s: &str| format!("{name}.{s}");
        writer.i8(&t("w_ih"), &[rows, input], &qi);
        writer.f32(&t("w_ih.scale"), &[rows], &si);
        writer.i8(&t("w_hh"), &[rows, h], &qh);
        writer.f32(&t("w_hh.scale"), &[rows], &sh);
        let bias_f: Vec<f32> = bi.data.iter().zip(&bh.data).map(|(a, b)| a + b).collect();
        match cell {
            CellKind::Lstm => {
                let bias = quantize_bias(&bias_f, in_q.scale, &si, &name)?;
                let mut gate_tables: [String; 4] = Default::default();
                for g in 0..4 {
                    let f = if g == 2 {
                        Activation::Tanh
                    } else {
                        Activation::Sigmoid
                    };
                    gate_tables[g] = table_for(f, gr.gate_frac_bits[g]);
                }
                let cell_table = table_for(Activation::Tanh, gr.cell_frac_bits);
                writer.i32(&t("bias"), &[rows], &bias);
                layers.push(GraphLayer::Lstm {
                    name: name.clone(),
                    input_size: input,
                    hidden_size: h,
                    w_ih: t("w_ih"),
                    w_ih_scale: t("w_ih.scale"),
                    w_hh: t("w_hh"),
                    w_hh_scale: t("w_hh.scale"),
                    bias: t("bias"),
                    gate_frac_bits: gr.gate_frac_bits,
                    gate_tables,
                    cell_frac_bits: gr.cell_frac_bits,
                    cell_table,
                    output: gr.h,
                });
            }
            CellKind::Gru => {
                // Two biases: b_ih on the input accumulator's grid, b_hh on the
                // recurrent one's (as `irnn quantize`).
                let bias_ih = quantize_bias(&bi.data, in_q.scale, &si, &name)?;
                let bias_hh = quantize_bias(&bh.data, gr.h.scale, &sh, &name)?;
                let fb = [
                    gr.gate_frac_bits[0],
                    gr.gate_frac_bits[1],
                    gr.gate_frac_bits[2],
                ];
                let gate_tables = [
                    table_for(Activation::Sigmoid, fb[0]),
                    table_for(Activation::Sigmoid, fb[1]),
                    table_for(Activation::Tanh, fb[2]),
                ];
                writer.i32(&t("bias_ih"), &[rows], &bias_ih);
                writer.i32(&t("bias_hh"), &[rows], &bias_hh);
                layers.push(GraphLayer::Gru {
                    name: name.clone(),
                    input_size: input,
                    hidden_size: h,
                    w_ih: t("w_ih"),
                    w_ih_scale: t("w_ih.scale"),
                    w_hh: t("w_hh"),
                    w_hh_scale: t("w_hh.scale"),
                    bias_ih: t("bias_ih"),
                    bias_hh: t("bias_hh"),
                    gate_frac_bits: fb,
                    gate_tables,
                    output: gr.h,
                });
            }
            CellKind::RnnTanh | CellKind::RnnRelu => {
                let bias = quantize_bias(&bias_f, in_q.scale, &si, &name)?;
                let pre_frac_bits = gr.gate_frac_bits[0];
                let (nonlinearity, table) = match cell {
                    CellKind::RnnTanh => (
                        Nonlinearity::Tanh,
                        Some(table_for(Activation::Tanh, pre_frac_bits)),
                    ),
                    _ => (Nonlinearity::Relu, None),
                };
                writer.i32(&t("bias"), &[rows], &bias);
                layers.push(GraphLayer::Rnn {
                    name: name.clone(),
                    input_size: input,
                    hidden_size: h,
                    nonlinearity,
                    w_ih: t("w_ih"),
                    w_ih_scale: t("w_ih.scale"),
                    w_hh: t("w_hh"),
                    w_hh_scale: t("w_hh.scale"),
                    bias: t("bias"),
                    pre_frac_bits,
                    table,
                    output: gr.h,
                });
            }
        }
        in_q = gr.h;
        input = h;
    }
    let n = p.params.len();
    let (w, b) = (&p.params[n - 2], &p.params[n - 1]);
    let name = arch.layer_names.last().unwrap().clone();
    let (qw, sw) = quantize_rows(&w.data, arch.out, input);
    let qb = quantize_bias(&b.data, in_q.scale, &sw, &name)?;
    let s_out = sw.iter().fold(0f64, |m, s| m.max(in_q.scale * *s as f64));
    let t = |s: &str| format!("{name}.{s}");
    writer.i8(&t("weight"), &[arch.out, input], &qw);
    writer.f32(&t("weight.scale"), &[arch.out], &sw);
    writer.i32(&t("bias"), &[arch.out], &qb);
    layers.push(GraphLayer::Linear {
        name: name.clone(),
        in_size: input,
        out_size: arch.out,
        weight: t("weight"),
        weight_scale: t("weight.scale"),
        bias: t("bias"),
        output: LinearOutputSpec::I32 { scale: s_out },
    });
    let file = GraphFile {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        name: arch.name.clone(),
        tensors: tensor_file_name.to_string(),
        input: GraphInput::Tokens {
            vocab_size: arch.vocab,
        },
        layers,
        tables,
        producer: Some(producer),
        metadata,
    };
    Ok((file, writer))
}

/// `NAME.irnn.json` → `NAME.irnn.safetensors` (as the `irnn` CLI names it).
pub fn tensor_file_name_for(output: &Path) -> String {
    let file = output
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = file.strip_suffix(".json").unwrap_or(&file);
    format!("{stem}.safetensors")
}

/// Writes the graph (atomically, via `write_graph`).
pub fn export(
    p: &Params,
    qs: &QuantState,
    output: &Path,
    producer: serde_json::Value,
    metadata: Option<serde_json::Value>,
) -> Result<(), TrainError> {
    let (file, writer) = build_graph(p, qs, &tensor_file_name_for(output), producer, metadata)?;
    write_graph(output, &file, &writer).map_err(TrainError::Io)
}

/// Next-token logits of every step of every window (`[n·t][o]`, f64), computed by the
/// burn model in `mode`.
pub fn sim_logits(
    p: &Params,
    qs: &QuantState,
    windows: &[i64],
    n: usize,
    t: usize,
    mode: Mode,
    device: &Device,
) -> Vec<Vec<f64>> {
    let dp = DeviceParams::upload(p, device, false);
    let mut luts = LutCache::default();
    let o = p.arch.out;
    let mut out = Vec::with_capacity(n * t);
    let chunk = 32;
    let mut s = 0;
    while s < n {
        let b = chunk.min(n - s);
        let f = forward(
            p,
            &dp,
            &windows[s * t..(s + b) * t],
            b,
            t,
            mode,
            qs,
            &mut luts,
            false,
            device,
        );
        let v = crate::qat::to_host(f.logits);
        for r in 0..b * t {
            out.push(v[r * o..(r + 1) * o].iter().map(|&x| x as f64).collect());
        }
        s += b;
    }
    out
}

/// Next-token logits from the integer interpreter on a graph file.
pub fn integer_logits(
    graph: &Path,
    windows: &[i64],
    n: usize,
    t: usize,
) -> Result<Vec<Vec<f64>>, TrainError> {
    let g = Graph::load(graph)?;
    let program = irnn_codegen::lower::lower(&g)
        .map_err(|e| TrainError::Model(format!("{}: {e}", graph.display())))?;
    let scale = program.output.scale_info;
    let mut it = Interpreter::new(&program);
    let mut out = Vec::with_capacity(n * t);
    for s in 0..n {
        it.reset();
        for step in 0..t {
            let y = it
                .step_token(windows[s * t + step])
                .map_err(|e| TrainError::Model(e.to_string()))?;
            out.push(y.iter().map(|&v| v as f64 * scale).collect());
        }
    }
    Ok(out)
}

/// Bits per token (next-token prediction, steps `0..t-1`) of per-step logits.
pub fn bits_per_token(logits: &[Vec<f64>], windows: &[i64], n: usize, t: usize) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for s in 0..n {
        for step in 0..t - 1 {
            sum += bits(&logits[s * t + step], windows[s * t + step + 1] as usize);
            count += 1;
        }
    }
    sum / count.max(1) as f64
}

/// Agreement between two sets of logits on the scored steps.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Agreement {
    /// Fraction of steps whose argmax agrees.
    pub top1: f64,
    /// Bits per token of `a`.
    pub bpt_a: f64,
    /// Bits per token of `b`.
    pub bpt_b: f64,
    /// Largest |logit difference| seen.
    pub max_abs_logit_diff: f64,
    /// Steps compared.
    pub steps: usize,
}

/// Compares two sets of per-step logits.
pub fn agreement(a: &[Vec<f64>], b: &[Vec<f64>], windows: &[i64], n: usize, t: usize) -> Agreement {
    let (mut agree, mut count, mut maxd) = (0usize, 0usize, 0f64);
    for s in 0..n {
        for step in 0..t - 1 {
            let i = s * t + step;
            agree += (argmax(&a[i]) == argmax(&b[i])) as usize;
            for (x, y) in a[i].iter().zip(&b[i]) {
                maxd = maxd.max((x - y).abs());
            }
            count += 1;
        }
    }
    Agreement {
        top1: agree as f64 / count.max(1) as f64,
        bpt_a: bits_per_token(a, windows, n, t),
        bpt_b: bits_per_token(b, windows, n, t),
        max_abs_logit_diff: maxd,
        steps: count,
    }
}
