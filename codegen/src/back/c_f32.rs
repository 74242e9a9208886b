//! The C back end of the f32 counterpart ([`super::float`]): a C99 `NAME.h` / `NAME.c`
//! pair with the same API shape as the integer code (`NAME_reset`, `NAME_step`,
//! `NAME_run`), but float features in (or token ids) and float logits out.
//!
//! Layout and kernels (template `templates/c/f32.c.tera`):
//!
//! - LSTM gate rows are laid out per gate with the hidden width padded to a multiple
//!   of 16 (`HP`; padded rows have zero weights and bias, so their states stay 0), so
//!   the element-wise cell update runs over a trip count every vector width divides
//!   and compilers vectorize it (sigmoid and tanh are the rational approximation of
//!   [`super::float::tanh_approx`]; no libm). GRU and RNN rows are padded the same way
//!   (3 and 1 gates); the GRU keeps `W_hh h + b_hh` in its own accumulator, since
//!   `b_hn` sits inside `r ⊙ (W_hn h + b_hn)`.
//! - `scalar`: row-major weights, one dot product per row (plain C).
//! - `avx2` / `avx512vnni` / `neon` / `neon-dotprod`: weights packed as
//!   `[row block][column][BR rows]` with `BR` = 4 vectors (32 rows for AVX2, 64 for
//!   AVX-512F, 16 for NEON); per column one broadcast input times four weight vectors,
//!   `_mm256_fmadd_ps` / `_mm512_fmadd_ps` / `vfmaq_f32`, with 8 independent accumulator
//!   chains (two columns in flight) and no horizontal sums. Without the instruction set
//!   (`__AVX2__ && __FMA__`, `__AVX512F__`, `__aarch64__`) portable loops run on the
//!   same packed weights.

use super::c::{template_error, tidy};
use super::float::{
    block_rows, layout, lstm_row, padded_hidden, uses_tanh, F32Input, F32Layer, F32Program, TANH_P,
    TANH_Q, TANH_U_SCALE,
};
use super::names::{comment_safe, sanitize, upper, NameTable};
use super::{GenError, GenOptions, GeneratedFile, GENERATOR};
use crate::spec::{Cell, Nonlinearity};
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "c/f32.h.tera",
        include_str!("../../../templates/c/f32.h.tera"),
    ),
    (
        "c/f32.c.tera",
        include_str!("../../../templates/c/f32.c.tera"),
    ),
];

/// A C float literal that reads back as exactly `v` (shortest round-trip form).
pub fn flit(v: f32) -> String {
    format!("{v:?}f")
}

#[derive(Serialize)]
struct ArrayCtx {
    name: String,
    comment: String,
    len: usize,
    values: String,
}

/// One layer as the template writes it: its step function (by `kind`) and its call in
/// `NAME_step`.
#[derive(Serialize)]
struct LayerCtx {
    index: usize,
    comment: String,
    /// `embedding`, `lstm`, `gru`, `rnn_tanh`, `rnn_relu` or `linear`.
    kind: &'static str,
    id: String,
    /// C expression of the float vector the layer reads in `NAME_step`.
    input: String,
    /// Input width.
    i: usize,
    /// Hidden width (recurrent layers) or output width (linear).
    h: usize,
    /// Hidden width padded to a multiple of 16 (recurrent layers).
    hp: usize,
    /// Rows of the (padded) weight matrices.
    rows: usize,
    /// Row blocks (SIMD) or rows (scalar) for `NAME_matvec`.
    n: usize,
    /// Embedding: rows of the table (the last row is zeros).
    vocab: usize,
    /// The model's last layer (a linear one writes `out`).
    last: bool,
}

/// The state of one recurrent layer: `float ID_h[hp]` (and `ID_c[hp]` for an LSTM) in
/// `NAME_state_t`, zeroed by `NAME_reset`.
#[derive(Serialize)]
struct LstmState {
    index: usize,
    id: String,
    hp: usize,
    /// Has a cell state (LSTM).
    c: bool,
}

fn values(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 14);
    for (k, x) in v.iter().enumerate() {
        if k % 8 == 0 {
            if k > 0 {
                out.push_str(",\n");
            }
            out.push_str("    ");
        } else {
            out.push_str(", ");
        }
        out.push_str(&flit(*x));
    }
    out
}

/// Writes `NAME.h` and `NAME.c`.
pub fn write(p: &F32Program, opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    let name = sanitize(&p.name);
    let pu = upper(&name);
    let stem = super::names::file_stem(&name);
    let target = opts.target;
    let br = block_rows(target);
    let simd = br > 1;
    let f32k = target.info().f32;
    let (isa, simd_cond) = (f32k.family, f32k.c_simd_cond);
    let mut names = NameTable::default();
    let ids: Vec<String> = p.layers.iter().map(|l| names.unique(l.name())).collect();
    let mut arrays = Vec::new();
    let mut layers = Vec::new();
    let mut lstm_states = Vec::new();
    let token_input = matches!(p.input, F32Input::Tokens { .. });
    let mut current = "x".to_string();
    let mut push_array = |name: String, comment: String, v: Vec<f32>| -> Result<(), GenError> {
        if v.len() > i32::MAX as usize / 4 {
            return Err(GenError::Unsupported(format!(
                "array {name} has {} values, too many for 32-bit indices",
                v.len()
            )));
        }
        arrays.push(ArrayCtx {
            name,
            comment,
            len: v.len(),
            values: values(&v),
        });
        Ok(())
    };
    let nlayers = p.layers.len();
    for (index, (layer, id)) in p.layers.iter().zip(&ids).enumerate() {
        let comment = comment_safe(layer.name());
        let mut l = LayerCtx {
            index,
            comment: String::new(),
            kind: "",
            id: id.clone(),
            input: current.clone(),
            i: 0,
            h: 0,
            hp: 0,
            rows: 0,
            n: 0,
            vocab: 0,
            last: index + 1 == nlayers,
        };
        match layer {
            F32Layer::Embedding {
                vocab_size,
                dim,
                table,
                ..
            } => {
                let mut t = table.clone();
                t.resize((vocab_size + 1) * dim, 0.0);
                push_array(
                    format!("{id}_table"),
                    format!(
                        "layer {index}: embedding [{} + 1][{dim}], the last row (zeros) for out-of-range tokens",
                        vocab_size
                    ),
                    t,
                )?;
                current = format!("e{index}");
                l.kind = "embedding";
                l.vocab = *vocab_size;
                l.h = *dim;
                l.comment = format!("embedding \"{comment}\" (a table lookup in {name}_step)");
            }
            F32Layer::Lstm {
                input_size,
                hidden_size,
                w_ih,
                w_hh,
                bias,
                ..
            } => {
                let (i, h) = (*input_size, *hidden_size);
                let hp = padded_hidden(h);
                let rows = 4 * hp;
                let map = |pr: usize| lstm_row(pr, h, hp);
                push_array(
                    format!("{id}_w_ih"),
                    format!("layer {index}: W_ih, {rows} padded gate rows x {i}"),
                    layout(w_ih, i, rows, br, map),
                )?;
                push_array(
                    format!("{id}_w_hh"),
                    format!("layer {index}: W_hh, {rows} padded gate rows x {h}"),
                    layout(w_hh, h, rows, br, map),
                )?;
                push_array(
                    format!("{id}_bias"),
                    format!("layer {index}: b_ih + b_hh, {rows} padded gate rows"),
                    layout(bias, 1, rows, 1, map),
                )?;
                (l.kind, l.i, l.h, l.hp, l.rows) = ("lstm", i, h, hp, rows);
                l.n = if simd { rows / br } else { rows };
                l.comment = format!("LSTM \"{comment}\", {i} -> {h} (padded to {hp})");
                lstm_states.push(LstmState {
                    index,
                    id: id.clone(),
                    hp,
                    c: true,
                });
                current = format!("s->{id}_h");
            }
            F32Layer::Recurrent {
                cell,
                input_size,
                hidden_size,
                w_ih,
                w_hh,
                bias,
                bias_hh,
                ..
            } => {
                let (i, h) = (*input_size, *hidden_size);
                let hp = padded_hidden(h);
                // Gate rows, then zero rows up to a whole number of blocks.
                let rows = (cell.gates() * hp).div_ceil(br) * br;
                let live = cell.gates() * hp;
                let map = |pr: usize| if pr < live { lstm_row(pr, h, hp) } else { None };
                push_array(
                    format!("{id}_w_ih"),
                    format!("layer {index}: W_ih, {rows} padded gate rows x {i}"),
                    layout(w_ih, i, rows, br, map),
                )?;
                push_array(
                    format!("{id}_w_hh"),
                    format!("layer {index}: W_hh, {rows} padded gate rows x {h}"),
                    layout(w_hh, h, rows, br, map),
                )?;
                let kind = match cell {
                    Cell::Gru => {
                        push_array(
                            format!("{id}_b_ih"),
                            format!("layer {index}: b_ih, {rows} padded gate rows"),
                            layout(bias, 1, rows, 1, map),
                        )?;
                        push_array(
                            format!("{id}_b_hh"),
                            format!("layer {index}: b_hh, {rows} padded gate rows"),
                            layout(bias_hh, 1, rows, 1, map),
                        )?;
                        l.kind = "gru";
                        "GRU"
                    }
                    Cell::Rnn(act) => {
                        push_array(
                            format!("{id}_bias"),
                            format!("layer {index}: b_ih + b_hh, {rows} padded rows"),
                            layout(bias, 1, rows, 1, map),
                        )?;
                        match act {
                            Nonlinearity::Tanh => {
                                l.kind = "rnn_tanh";
                                "RNN (tanh)"
                            }
                            Nonlinearity::Relu => {
                                l.kind = "rnn_relu";
                                "RNN (relu)"
                            }
                        }
                    }
                    Cell::Lstm => unreachable!("checked by F32Program::check"),
                };
                (l.i, l.h, l.hp, l.rows) = (i, h, hp, rows);
                l.n = if simd { rows / br } else { rows };
                l.comment = format!("{kind} \"{comment}\", {i} -> {h} (padded to {hp})");
                lstm_states.push(LstmState {
                    index,
                    id: id.clone(),
                    hp,
                    c: false,
                });
                current = format!("s->{id}_h");
            }
            F32Layer::Linear {
                in_size,
                out_size,
                weight,
                bias,
                ..
            } => {
                let (i, o) = (*in_size, *out_size);
                let rows_pad = o.div_ceil(br) * br;
                push_array(
                    format!("{id}_w"),
                    format!("layer {index}: weight, {o} rows (padded to {rows_pad}) x {i}"),
                    layout(weight, i, o, br, Some),
                )?;
                let mut b = bias.clone();
                b.resize(rows_pad, 0.0);
                push_array(format!("{id}_bias"), format!("layer {index}: bias"), b)?;
                (l.kind, l.i, l.h, l.rows) = ("linear", i, o, rows_pad);
                l.n = if simd { rows_pad / br } else { o };
                l.comment = format!("linear \"{comment}\", {i} -> {o}");
                if !l.last {
                    current = format!("y{index}");
                }
            }
        }
        layers.push(l);
    }
    if !matches!(p.layers.last(), Some(F32Layer::Linear { .. })) {
        return Err(GenError::Unsupported(
            "the last layer must be a linear layer".into(),
        ));
    }
    let (input_size, step_input_param, run_input_param, run_step_arg, step_doc, run_doc) =
        match p.input {
            F32Input::Tokens { vocab_size } => (
                vocab_size,
                "int32_t token".to_string(),
                "const int32_t *inputs".to_string(),
                "inputs[t]".to_string(),
                format!(
                    "one token id (ids outside 0..{} read a row of zeros)",
                    vocab_size.saturating_sub(1)
                ),
                "n_steps token ids".to_string(),
            ),
            F32Input::Features { size } => (
                size,
                "const float *x".to_string(),
                "const float *inputs".to_string(),
                format!("inputs + t * {pu}_INPUT_SIZE"),
                format!("{pu}_INPUT_SIZE float features (real values)"),
                format!("n_steps * {pu}_INPUT_SIZE floats"),
            ),
        };
    let header_file = format!("{stem}.h");
    let source_file = format!("{stem}.c");
    let banner = |file: &str| {
        format!(
            "/*\n * {file}: generated by {GENERATOR}. Do not edit.\n * model: {}\n * model hash: {}\n \
             * options: lang c, target {}, precision f32\n *\n * The f32 counterpart of the \
             integer model: weights w = q * row_scale dequantized from\n * the graph, float \
             sigmoid/tanh (a rational approximation, no libm), for speed\n * comparisons with \
             the integer code (docs/BENCHMARKS.md).\n */\n",
            comment_safe(&p.name),
            comment_safe(&p.model_hash),
            target.name()
        )
    };
    let mut ctx = tera::Context::new();
    ctx.insert("p", &name);
    ctx.insert("pu", &pu);
    ctx.insert("guard", &format!("{pu}_F32_H"));
    ctx.insert("header_file", &header_file);
    ctx.insert("target", target.name());
    ctx.insert("simd", &simd);
    ctx.insert("isa", isa);
    ctx.insert("simd_cond", simd_cond);
    ctx.insert("br", &br);
    ctx.insert("token_input", &token_input);
    ctx.insert("input_size", &input_size);
    ctx.insert("output_size", &p.output_size);
    let state_bytes: usize = lstm_states
        .iter()
        .map(|st| 4 * st.hp * if st.c { 2 } else { 1 })
        .sum();
    ctx.insert("state_bytes", &state_bytes);
    ctx.insert("lstm_states", &lstm_states);
    ctx.insert("arrays", &arrays);
    ctx.insert("layers", &layers);
    ctx.insert("step_input_param", &step_input_param);
    ctx.insert("run_input_param", &run_input_param);
    ctx.insert("run_step_arg", &run_step_arg);
    ctx.insert("step_doc", &step_doc);
    ctx.insert("run_doc", &run_doc);
    ctx.insert("use_tanh", &uses_tanh(p));
    ctx.insert("u_scale", &flit(TANH_U_SCALE));
    for (k, v) in TANH_P.iter().enumerate() {
        ctx.insert(format!("tp{k}"), &flit(*v));
    }
    for (k, v) in TANH_Q.iter().enumerate() {
        ctx.insert(format!("tq{k}"), &flit(*v));
    }
    static TERA: std::sync::OnceLock<Result<tera::Tera, String>> = std::sync::OnceLock::new();
    let tera = super::c::parsed_once(&TERA, "templates/c/f32", TEMPLATES)?;
    ctx.insert("banner", &banner(&header_file));
    let header = tera
        .render("c/f32.h.tera", &ctx)
        .map_err(|e| template_error("c/f32.h.tera", e))?;
    ctx.insert("banner", &banner(&source_file));
    let source = tera
        .render("c/f32.c.tera", &ctx)
        .map_err(|e| template_error("c/f32.c.tera", e))?;
    Ok(vec![
        GeneratedFile {
            name: header_file,
            contents: tidy(&header),
        },
        GeneratedFile {
            name: source_file,
            contents: tidy(&source),
        },
    ])
}
