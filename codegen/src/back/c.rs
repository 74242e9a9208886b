//! The C back end: a self-contained C99 `NAME.h` / `NAME.c` pair per model.
//!
//! The generated code reproduces the integer semantics of `irnn-runtime`
//! (docs/NUMERICS.md) bit for bit: the requantization primitives and the PWL evaluator
//! are transliterated into `static inline` functions with a model-specific prefix, and
//! every layer becomes a `static` function in which every shape, multiplier, shift,
//! zero point and PWL knot is a literal. The code uses `<stdint.h>` only: no heap, no
//! libm, no floating point, no VLAs, no signed overflow and no right shift of a negative
//! value (it runs clean under `-fsanitize=undefined`).
//!
//! The structure of the files lives in Tera templates under `templates/c/`; all numbers
//! are formatted here, so the output is deterministic. Identifiers derived from the
//! model come only from [`super::names`]; model text reaches comments only through
//! [`comment_safe`] (plus a trigraph defuse, see [`c_comment`]).
//!
//! Generated API (`p` = sanitized model name, `P` = its upper-case form):
//!
//! ```c
//! #define P_INPUT_SIZE ... /* feature width; vocabulary size for token models */
//! #define P_VOCAB_SIZE ... /* token models only */
//! #define P_OUTPUT_SIZE ...
//! #define P_INPUT_ZERO_POINT, P_INPUT_SCALE_Q31, P_INPUT_SCALE_EXP,
//!         P_OUTPUT_ZERO_POINT, P_OUTPUT_SCALE_Q31, P_OUTPUT_SCALE_EXP, P_STATE_BYTES
//! typedef struct { ... } p_state_t;
//! void p_reset(p_state_t *s);
//! void p_step(p_state_t *s, int32_t token, int32_t *out);      /* token input */
//! void p_step(p_state_t *s, const int8_t *x, int32_t *out);    /* feature input */
//! void p_run(p_state_t *s, const int32_t *inputs, int32_t n_steps, int32_t *out);
//! void p_run(p_state_t *s, const int8_t *inputs, int32_t n_steps, int32_t *out);
//! ```

use super::names::{comment_safe, sanitize, upper, NameTable};
use super::GENERATOR;
use super::{GenError, GenOptions, GeneratedFile, Lang, Target, Unroll};
use crate::ir::{
    EmbeddingIr, InputIr, LayerIr, LinearIr, LinearOutput, LstmIr, Program, PwlTable, TableSymmetry,
};
use irnn_runtime::Requant;
use serde::Serialize;
use std::fmt::Write as _;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "c/macros.tera",
        include_str!("../../../templates/c/macros.tera"),
    ),
    (
        "c/primitives.c.tera",
        include_str!("../../../templates/c/primitives.c.tera"),
    ),
    (
        "c/header.h.tera",
        include_str!("../../../templates/c/header.h.tera"),
    ),
    (
        "c/source.c.tera",
        include_str!("../../../templates/c/source.c.tera"),
    ),
];

/// Dot products of `Unroll::Inner` are unrolled by this factor (the templates write
/// four accumulators).
const INNER_UNROLL: usize = 4;

/// Values per line in int8 array initializers.
const PER_LINE_I8: usize = 16;

/// Values per line in int32 array initializers.
const PER_LINE_I32: usize = 8;

/// Terms per line in fully unrolled row expressions.
const TERMS_PER_LINE: usize = 8;

/// Writes `NAME.h` and `NAME.c` for `program`.
pub fn write(program: &Program, opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    if opts.lang != Lang::C {
        return Err(GenError::Unsupported(
            "the C back end only writes C (use back::generate)".into(),
        ));
    }
    if opts.precision != super::Precision::Int8 {
        return Err(GenError::Unsupported(format!(
            "--precision {} is not implemented yet",
            opts.precision.name()
        )));
    }
    match opts.target {
        Target::Scalar => {}
        Target::Neon | Target::NeonDotprod => {
            return Err(GenError::Unsupported(format!(
                "target {} is not implemented yet for C",
                opts.target.name()
            )))
        }
        Target::Avx2 | Target::Avx512Vnni => {
            if opts.unroll != Unroll::None {
                return Err(GenError::Unsupported(format!(
                    "--unroll applies to --target scalar only (target {} has its own kernels)",
                    opts.target.name()
                )));
            }
        }
    }
    super::validate::check_program(program, opts.unroll)?;
    let ctx = build_context(program, opts)?;
    let tera = templates()?;
    let mut context =
        tera::Context::from_serialize(&ctx).map_err(|e| template_error("context", e))?;
    context.insert("banner", &ctx.banner_h);
    let header = render(&tera, "c/header.h.tera", &context)?;
    context.insert("banner", &ctx.banner_c);
    let source = render(&tera, "c/source.c.tera", &context)?;
    Ok(vec![
        GeneratedFile {
            name: ctx.header_file.clone(),
            contents: tidy(&header),
        },
        GeneratedFile {
            name: ctx.source_file.clone(),
            contents: tidy(&source),
        },
    ])
}

fn templates() -> Result<tera::Tera, GenError> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| template_error("templates/c", e))?;
    Ok(tera)
}

fn render(tera: &tera::Tera, name: &str, context: &tera::Context) -> Result<String, GenError> {
    tera.render(name, context)
        .map_err(|e| template_error(name, e))
}

fn template_error(template: &str, e: tera::Error) -> GenError {
    // Tera keeps the useful part of the message in the source chain.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    GenError::Template {
        template: template.to_string(),
        message,
    }
}

/// Trailing whitespace off every line, exactly one final newline.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.trim_end().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Model text for a C block comment: [`comment_safe`], and no `??` either, because
/// C99 trigraphs are replaced even inside comments (`??/` is a backslash that could
/// splice the next line into the comment).
pub fn c_comment(raw: &str) -> String {
    comment_safe(raw)
}

// ---------------------------------------------------------------------------------
// Template context
// ---------------------------------------------------------------------------------

#[derive(Serialize)]
struct Ctx {
    banner_h: String,
    banner_c: String,
    header_file: String,
    source_file: String,
    p: String,
    pu: String,
    guard: String,
    unroll: &'static str,
    target: &'static str,
    simd: bool,
    simd_cond: &'static str,
    vnni: bool,
    br: usize,
    scalar_mv_always: bool,
    token_input: bool,
    vocab_size: usize,
    input_size: usize,
    output_size: usize,
    input_zero_point: String,
    output_zero_point: String,
    input_scale: ScaleMacro,
    output_scale: ScaleMacro,
    state_bytes: usize,
    state_members: Vec<String>,
    lstm_states: Vec<LstmState>,
    has_lstm: bool,
    uses_sat8: bool,
    has_complement: bool,
    tables: Vec<TableCtx>,
    layers: Vec<LayerCtx>,
    step_input_param: String,
    run_input_param: String,
    step_doc: String,
    run_doc: String,
    step_body: Vec<String>,
}

#[derive(Serialize)]
struct ScaleMacro {
    q31: String,
    exp: String,
    comment: String,
}

#[derive(Serialize)]
struct LstmState {
    id: String,
    hidden: usize,
    h_reset: String,
}

#[derive(Serialize)]
struct TableCtx {
    index: usize,
    desc: String,
    pieces: usize,
    starts: String,
    slopes: String,
    offsets: String,
    symmetry: &'static str,
    total: String,
    shift: u32,
    out_min: String,
    out_max: String,
}

#[derive(Serialize)]
struct DotCtx {
    cols: usize,
    main_end: usize,
}

impl DotCtx {
    fn new(cols: usize) -> Self {
        DotCtx {
            cols,
            main_end: cols - cols % INNER_UNROLL,
        }
    }
}

#[derive(Serialize)]
struct LstmRow {
    acc_x: String,
    acc_h: String,
}

#[derive(Serialize)]
struct LinearRow {
    acc: String,
}

// Built once per layer and only serialized: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LayerCtx {
    Embedding {
        index: usize,
        id: String,
        comment: String,
        vocab: usize,
        dim: usize,
        table: String,
        zero_row: String,
    },
    Lstm {
        index: usize,
        id: String,
        comment: String,
        input: usize,
        hidden: usize,
        hidden2: usize,
        hidden3: usize,
        rows: usize,
        w_ih: String,
        w_hh: String,
        bias_x: String,
        bias_h: String,
        mul_x: String,
        shift_x: String,
        mul_h: String,
        shift_h: String,
        dot_x: DotCtx,
        dot_h: DotCtx,
        full_rows: Vec<LstmRow>,
        uses_x: bool,
        uses_h: bool,
        mx: Option<MatCtx>,
        mh: Option<MatCtx>,
        pwl_i: String,
        pwl_f: String,
        pwl_g: String,
        pwl_o: String,
        pwl_c: String,
        cell_shift: u32,
        out_mul: String,
        out_shift: String,
        h_zero_point: String,
    },
    Linear {
        index: usize,
        id: String,
        comment: String,
        in_size: usize,
        out_size: usize,
        i8: bool,
        out_type: &'static str,
        zero_point: String,
        weight: String,
        bias: String,
        mul: String,
        shift: String,
        dot: DotCtx,
        full_rows: Vec<LinearRow>,
        uses_x: bool,
        mw: Option<MatCtx>,
    },
}

/// A weight matrix packed for the SIMD targets (docs/NUMERICS.md §8 makes any
/// summation order exact): rows padded to a multiple of the block height `br`, columns
/// to a multiple of 4, laid out as `[blocks][groups][br][4]` so that one 4-byte group
/// of `br` rows is one `br·4`-byte vector load, multiplied by one broadcast 4-byte group
/// of the input vector.
#[derive(Serialize)]
struct MatCtx {
    /// The packed int8 values.
    data: String,
    /// Number of packed bytes.
    len: usize,
    /// The bias padded to `rows_pad` (zeros).
    bias: String,
    /// AVX-512 VNNI: `bias − 128 · rowsum(W)` (the kernel multiplies `x + 128` as u8).
    vbias: String,
    rows_pad: usize,
    blocks: usize,
    groups: usize,
    /// Whether the SIMD kernel is exact for this matrix (AVX2's sign trick needs every
    /// weight > −128); otherwise the layer calls the scalar kernel on the same layout.
    simd: bool,
}

fn mat_ctx(
    layer: &str,
    what: &str,
    w: &[i8],
    bias: &[i32],
    rows: usize,
    cols: usize,
    target: Target,
) -> Result<MatCtx, GenError> {
    let p = super::pack::pack_matrix(layer, what, w, bias, rows, cols, target)?;
    Ok(MatCtx {
        data: list(p.data.iter().map(|v| v.to_string()), "    ", PER_LINE_I8),
        len: p.data.len(),
        bias: list_i32(&p.bias),
        vbias: p.offset_bias.as_deref().map(list_i32).unwrap_or_default(),
        rows_pad: p.rows_pad,
        blocks: p.blocks,
        groups: p.groups,
        simd: p.simd,
    })
}

/// A C `int32_t`-safe decimal literal (`INT32_MIN` cannot be written as `-2147483648`,
/// which is the negation of a `long` constant).
fn lit(v: i32) -> String {
    if v == i32::MIN {
        "(-2147483647 - 1)".to_string()
    } else {
        v.to_string()
    }
}

/// A literal for use as a macro body: negative values in parentheses.
fn macro_lit(v: i64) -> String {
    if v == i32::MIN as i64 {
        "(-2147483647 - 1)".to_string()
    } else if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

/// Clamped as `multiply_by_quantized_multiplier` clamps it: the C primitive receives a
/// shift in `[-31, 31]`, which fits the `int8_t` shift tables.
fn clamp_shift(s: i32) -> i32 {
    s.clamp(-31, 31)
}

fn sat8(v: i32) -> i32 {
    v.clamp(i8::MIN as i32, i8::MAX as i32)
}

/// Comma-separated values, `per_line` per line, indented.
fn list<I: IntoIterator<Item = String>>(values: I, indent: &str, per_line: usize) -> String {
    let mut out = String::new();
    for (k, v) in values.into_iter().enumerate() {
        if k > 0 {
            out.push(',');
            if k % per_line == 0 {
                out.push('\n');
                out.push_str(indent);
            } else {
                out.push(' ');
            }
        } else {
            out.push_str(indent);
        }
        out.push_str(&v);
    }
    out
}

fn list_i32(values: &[i32]) -> String {
    list(values.iter().map(|&v| lit(v)), "    ", PER_LINE_I32)
}

/// Rows of a `[rows][cols]` array initializer.
fn matrix_i8(values: &[i8], cols: usize) -> String {
    let mut out = String::new();
    for (r, row) in values.chunks(cols).enumerate() {
        if r > 0 {
            out.push_str(",\n");
        }
        if cols <= PER_LINE_I8 {
            out.push_str("    { ");
            out.push_str(&list(row.iter().map(|v| v.to_string()), "", PER_LINE_I8));
            out.push_str(" }");
        } else {
            out.push_str("    {\n");
            out.push_str(&list(
                row.iter().map(|v| v.to_string()),
                "        ",
                PER_LINE_I8,
            ));
            out.push_str("\n    }");
        }
    }
    out
}

fn muls(req: &[Requant]) -> String {
    list(req.iter().map(|r| lit(r.multiplier)), "    ", PER_LINE_I32)
}

fn shifts(req: &[Requant]) -> String {
    list(
        req.iter().map(|r| clamp_shift(r.shift).to_string()),
        "    ",
        PER_LINE_I8,
    )
}

/// `(int32_t)bias + w0 * v[0] - w1 * v[1] ...` over the nonzero weights (the
/// accumulator bound makes the order and the skipped zero terms irrelevant).
fn row_expr(bias: i32, row: &[i8], var: &str) -> String {
    let mut out = format!("(int32_t){}", lit(bias));
    let mut terms = 0usize;
    for (j, &w) in row.iter().enumerate() {
        if w == 0 {
            continue;
        }
        if terms > 0 && terms.is_multiple_of(TERMS_PER_LINE) {
            out.push_str("\n        ");
        }
        terms += 1;
        let sign = if w < 0 { '-' } else { '+' };
        let _ = write!(out, " {sign} {} * {var}[{j}]", (w as i32).abs());
    }
    out
}

/// `scale = q31 · 2^(exp − 31)` (see `lower::mantissa_exponent`); only for `#define`s.
fn scale_q31(real: f64) -> (i64, i32) {
    let (m, e) = crate::lower::mantissa_exponent(real);
    (m as i64, e)
}

fn scale_macro(real: f64, what: &str) -> ScaleMacro {
    let (q31, exp) = scale_q31(real);
    ScaleMacro {
        q31: macro_lit(q31),
        exp: macro_lit(exp as i64),
        comment: format!("{what} {real:e}"),
    }
}

fn table_ctx(index: usize, t: &PwlTable) -> TableCtx {
    TableCtx {
        index,
        desc: format!(
            "{}, {} pieces, input 2^-{} grid, output 2^-{} grid",
            t.short_name(),
            t.pieces(),
            t.input_frac_bits,
            t.output_frac_bits
        ),
        pieces: t.pieces(),
        starts: list_i32(&t.starts),
        slopes: list_i32(&t.slopes),
        offsets: list_i32(&t.offsets),
        symmetry: match t.symmetry {
            TableSymmetry::None => "none",
            TableSymmetry::Odd => "odd",
            TableSymmetry::Complement => "complement",
        },
        total: lit(t.total),
        shift: t.frac_bits.min(62),
        out_min: lit(t.out_min),
        out_max: lit(t.out_max),
    }
}

fn embedding_ctx(index: usize, id: String, e: &EmbeddingIr) -> LayerCtx {
    LayerCtx::Embedding {
        index,
        id,
        comment: format!(
            "embedding \"{}\" ({} x {}, zero point {})",
            c_comment(&e.name),
            e.vocab_size,
            e.dim,
            e.zero_point
        ),
        vocab: e.vocab_size,
        dim: e.dim,
        table: matrix_i8(&e.table, e.dim),
        zero_row: list(
            std::iter::repeat_n(sat8(e.zero_point).to_string(), e.dim),
            "    ",
            PER_LINE_I8,
        ),
    }
}

fn lstm_ctx(
    index: usize,
    id: String,
    l: &LstmIr,
    p: &str,
    unroll: Unroll,
    target: Target,
) -> Result<LayerCtx, GenError> {
    let (i_sz, h_sz) = (l.input_size, l.hidden_size);
    let rows = 4 * h_sz;
    let simd = target != Target::Scalar;
    let (mx, mh) = if simd {
        (
            Some(mat_ctx(
                &l.name, "w_ih", &l.w_ih, &l.bias_x, rows, i_sz, target,
            )?),
            Some(mat_ctx(
                &l.name, "w_hh", &l.w_hh, &l.bias_h, rows, h_sz, target,
            )?),
        )
    } else {
        (None, None)
    };
    let full = unroll == Unroll::Full || simd;
    let full_rows = if unroll == Unroll::Full && !simd {
        (0..rows)
            .map(|r| LstmRow {
                acc_x: row_expr(l.bias_x[r], &l.w_ih[r * i_sz..(r + 1) * i_sz], "xw"),
                acc_h: row_expr(l.bias_h[r], &l.w_hh[r * h_sz..(r + 1) * h_sz], "hw"),
            })
            .collect()
    } else {
        Vec::new()
    };
    let arr = |s: String| if full { String::new() } else { s };
    let pwl = |t: usize| format!("{p}_pwl{t}");
    let full_rows = if simd { Vec::new() } else { full_rows };
    Ok(LayerCtx::Lstm {
        index,
        id,
        comment: format!(
            "LSTM \"{}\" (input {i_sz}, hidden {h_sz}, gate grids 2^-{:?}, cell grid 2^-{}, \
             hidden zero point {})",
            c_comment(&l.name),
            l.gate_frac_bits,
            l.cell_frac_bits,
            l.h_zero_point
        ),
        input: i_sz,
        hidden: h_sz,
        hidden2: 2 * h_sz,
        hidden3: 3 * h_sz,
        rows,
        w_ih: arr(matrix_i8(&l.w_ih, i_sz)),
        w_hh: arr(matrix_i8(&l.w_hh, h_sz)),
        bias_x: arr(list_i32(&l.bias_x)),
        bias_h: arr(list_i32(&l.bias_h)),
        mul_x: muls(&l.req_x),
        shift_x: shifts(&l.req_x),
        mul_h: muls(&l.req_h),
        shift_h: shifts(&l.req_h),
        dot_x: DotCtx::new(i_sz),
        dot_h: DotCtx::new(h_sz),
        full_rows,
        uses_x: l.w_ih.iter().any(|&w| w != 0),
        uses_h: l.w_hh.iter().any(|&w| w != 0),
        pwl_i: pwl(l.gate_tables[0]),
        pwl_f: pwl(l.gate_tables[1]),
        pwl_g: pwl(l.gate_tables[2]),
        pwl_o: pwl(l.gate_tables[3]),
        pwl_c: pwl(l.cell_table),
        cell_shift: 30 - l.cell_frac_bits.min(15),
        out_mul: lit(l.req_out.multiplier),
        out_shift: clamp_shift(l.req_out.shift).to_string(),
        h_zero_point: lit(l.h_zero_point),
        mx,
        mh,
    })
}

fn linear_ctx(
    index: usize,
    id: String,
    l: &LinearIr,
    unroll: Unroll,
    target: Target,
) -> Result<LayerCtx, GenError> {
    let (n_in, n_out) = (l.in_size, l.out_size);
    let simd = target != Target::Scalar;
    let mw = if simd {
        Some(mat_ctx(
            &l.name, "weight", &l.weight, &l.bias, n_out, n_in, target,
        )?)
    } else {
        None
    };
    let full = unroll == Unroll::Full || simd;
    let full_rows = if unroll == Unroll::Full && !simd {
        (0..n_out)
            .map(|o| LinearRow {
                acc: row_expr(l.bias[o], &l.weight[o * n_in..(o + 1) * n_in], "xw"),
            })
            .collect()
    } else {
        Vec::new()
    };
    let arr = |s: String| if full { String::new() } else { s };
    let (i8_out, zero_point) = match l.output {
        LinearOutput::I32 => (false, 0),
        LinearOutput::I8 { zero_point } => (true, zero_point),
    };
    Ok(LayerCtx::Linear {
        index,
        id,
        comment: format!(
            "linear \"{}\" ({n_in} -> {n_out}, {} output)",
            c_comment(&l.name),
            if i8_out {
                format!("int8, zero point {zero_point}")
            } else {
                "int32".to_string()
            }
        ),
        in_size: n_in,
        out_size: n_out,
        i8: i8_out,
        out_type: if i8_out { "int8_t" } else { "int32_t" },
        zero_point: lit(zero_point),
        weight: arr(matrix_i8(&l.weight, n_in)),
        bias: arr(list_i32(&l.bias)),
        mul: muls(&l.req),
        shift: shifts(&l.req),
        dot: DotCtx::new(n_in),
        full_rows,
        uses_x: l.weight.iter().any(|&w| w != 0),
        mw,
    })
}

fn unroll_name(u: Unroll) -> &'static str {
    match u {
        Unroll::None => "none",
        Unroll::Inner => "inner",
        Unroll::Full => "full",
    }
}

fn banner(file: &str, program: &Program, opts: &GenOptions) -> String {
    format!(
        "/*\n * {file}: generated by {GENERATOR}. Do not edit.\n * model: {}\n * model hash: {}\n \
         * options: lang c, target {}, unroll {}\n *\n * Integer-only C99 (no floating \
         point, no heap, no libm); bit-exact with the irnn\n * reference interpreter \
         (docs/NUMERICS.md).\n */\n",
        c_comment(&program.name),
        c_comment(&program.model_hash),
        opts.target.name(),
        unroll_name(opts.unroll),
    )
}

fn build_context(program: &Program, opts: &GenOptions) -> Result<Ctx, GenError> {
    let p = sanitize(&program.name);
    let pu = upper(&p);
    let stem = crate::back::names::file_stem(&p);
    let header_file = format!("{stem}.h");
    let source_file = format!("{stem}.c");
    // Layer identifiers: unique among themselves; they only ever appear as
    // `{p}_{id}_{suffix}` or as `{id}_h` / `{id}_c` state members.
    let mut names = NameTable::default();
    let ids: Vec<String> = program
        .layers
        .iter()
        .map(|l| names.unique(l.name()))
        .collect();

    let mut used_tables: Vec<usize> = Vec::new();
    let mut layers = Vec::new();
    let mut lstm_states = Vec::new();
    let mut state_members = Vec::new();
    let mut state_bytes = 0usize;
    let mut uses_sat8 = false;
    let mut step_body = Vec::new();
    let token_input = matches!(program.input, InputIr::Tokens { .. });
    // Expression of the int8 vector the next layer reads.
    let mut current = "x".to_string();
    if token_input {
        step_body.push("const int8_t *x;".to_string());
    }
    let mut decls = Vec::new();
    let mut calls = Vec::new();
    for (index, (layer, id)) in program.layers.iter().zip(&ids).enumerate() {
        match layer {
            LayerIr::Embedding(e) => {
                calls.push(format!(
                    "x = (token >= 0 && token < {v}) ? {p}_{id}_table[token] : {p}_{id}_zero_row;",
                    v = e.vocab_size
                ));
                current = "x".to_string();
                layers.push(embedding_ctx(index, id.clone(), e));
            }
            LayerIr::Lstm(l) => {
                for t in l.gate_tables.iter().chain([&l.cell_table]) {
                    if !used_tables.contains(t) {
                        used_tables.push(*t);
                    }
                }
                uses_sat8 = true;
                let h = l.hidden_size;
                state_members.push(format!(
                    "int8_t {id}_h[{h}]; /* layer {index}: hidden state (int8) */"
                ));
                state_members.push(format!(
                    "int16_t {id}_c[{h}]; /* layer {index}: cell state (int16, 2^-{} grid) */",
                    l.cell_frac_bits.min(15)
                ));
                state_bytes += 3 * h;
                lstm_states.push(LstmState {
                    id: id.clone(),
                    hidden: h,
                    h_reset: sat8(l.h_zero_point).to_string(),
                });
                calls.push(format!("{p}_{id}_step(s->{id}_h, s->{id}_c, {current});"));
                current = format!("s->{id}_h");
                layers.push(lstm_ctx(
                    index,
                    id.clone(),
                    l,
                    &p,
                    opts.unroll,
                    opts.target,
                )?);
            }
            LayerIr::Linear(l) => {
                match l.output {
                    LinearOutput::I32 => {
                        calls.push(format!("{p}_{id}_step({current}, out);"));
                    }
                    LinearOutput::I8 { .. } => {
                        uses_sat8 = true;
                        let buf = format!("y{index}");
                        decls.push(format!("int8_t {buf}[{}];", l.out_size));
                        calls.push(format!("{p}_{id}_step({current}, {buf});"));
                        if index == program.layers.len() - 1 {
                            calls.push(format!(
                                "for (k = 0; k < {}; ++k) {{ out[k] = {buf}[k]; }}",
                                l.out_size
                            ));
                            decls.push("int32_t k;".to_string());
                        }
                        current = buf;
                    }
                }
                layers.push(linear_ctx(index, id.clone(), l, opts.unroll, opts.target)?);
            }
        }
    }
    step_body.extend(decls);
    step_body.extend(calls);
    if state_members.is_empty() {
        state_members.push("int8_t unused; /* the model has no recurrent state */".to_string());
        step_body.push("(void)s;".to_string());
    }
    used_tables.sort_unstable();
    let tables: Vec<TableCtx> = used_tables
        .iter()
        .map(|&t| table_ctx(t, &program.tables[t]))
        .collect();
    let has_complement = used_tables
        .iter()
        .any(|&t| program.tables[t].symmetry == TableSymmetry::Complement);

    let (input_size, vocab_size, input_zero_point, input_scale) = match program.input {
        InputIr::Tokens { vocab_size } => (
            vocab_size,
            vocab_size,
            0,
            ScaleMacro {
                q31: macro_lit(1 << 30),
                exp: "1".into(),
                comment: "token ids: no scale (1)".into(),
            },
        ),
        InputIr::Features {
            size,
            zero_point,
            scale_info,
        } => (size, 0, zero_point, scale_macro(scale_info, "scale")),
    };
    let (step_input_param, run_input_param, step_doc, run_doc) = if token_input {
        (
            "int32_t token".to_string(),
            "const int32_t *inputs".to_string(),
            format!(
                "one token id (an id outside 0..{pu}_VOCAB_SIZE reads the\n * embedding's zero-point row, real 0)"
            ),
            "n_steps token ids from inputs".to_string(),
        )
    } else {
        (
            "const int8_t *x".to_string(),
            "const int8_t *inputs".to_string(),
            format!("{pu}_INPUT_SIZE int8 features from x"),
            format!("n_steps * {pu}_INPUT_SIZE int8 features from inputs"),
        )
    };
    let banner_h = banner(&header_file, program, opts);
    let banner_c = banner(&source_file, program, opts);
    Ok(Ctx {
        banner_h,
        banner_c,
        guard: format!("IRNN_{pu}_H"),
        header_file,
        source_file,
        p,
        pu,
        unroll: unroll_name(opts.unroll),
        target: opts.target.name(),
        simd: opts.target != Target::Scalar,
        simd_cond: match opts.target {
            Target::Scalar => "0",
            Target::Avx2 => "defined(__AVX2__)",
            Target::Avx512Vnni => "defined(__AVX512F__) && defined(__AVX512VNNI__)",
            Target::Neon => "defined(__aarch64__) && defined(__ARM_NEON)",
            Target::NeonDotprod => {
                "defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)"
            }
        },
        vnni: opts.target == Target::Avx512Vnni,
        br: super::pack::block_rows(opts.target),
        scalar_mv_always: layers.iter().any(|l| match l {
            LayerCtx::Lstm { mx, mh, .. } => {
                [mx, mh].iter().any(|m| m.as_ref().is_some_and(|m| !m.simd))
            }
            LayerCtx::Linear { mw, .. } => mw.as_ref().is_some_and(|m| !m.simd),
            LayerCtx::Embedding { .. } => false,
        }),
        token_input,
        vocab_size,
        input_size,
        output_size: program.output.size,
        input_zero_point: macro_lit(input_zero_point as i64),
        output_zero_point: macro_lit(program.output.zero_point as i64),
        input_scale,
        output_scale: scale_macro(program.output.scale_info, "scale"),
        state_bytes,
        state_members,
        lstm_states,
        has_lstm: program.layers.iter().any(|l| matches!(l, LayerIr::Lstm(_))),
        uses_sat8,
        has_complement,
        tables,
        layers,
        step_input_param,
        run_input_param,
        step_doc,
        run_doc,
        step_body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Suffixes of per-layer identifiers (`{p}_{layer}_{suffix}`). No suffix may be a
    /// proper `_`-suffix of another, so two distinct layer identifiers can never produce
    /// the same C identifier (checked by a unit test).
    const LAYER_SUFFIXES: &[&str] = &[
        "table", "zero_row", "w_ih", "w_hh", "bias_x", "bias_h", "mul_x", "shift_x", "mul_h",
        "shift_h", "weight", "bias", "mul", "shift", "step",
    ];

    #[test]
    fn layer_suffixes_cannot_collide() {
        for a in LAYER_SUFFIXES {
            for b in LAYER_SUFFIXES {
                if a != b {
                    assert!(!a.ends_with(&format!("_{b}")), "{a} ends with _{b}");
                }
            }
        }
    }

    #[test]
    fn scale_q31_matches_quantize_multiplier() {
        for real in [
            1.0,
            0.75,
            0.32768,
            1e-3,
            123.456,
            3.0e-7,
            1.0 - 2f64.powi(-40),
        ] {
            let r = crate::lower::quantize_multiplier(real).unwrap();
            assert_eq!(scale_q31(real), (r.multiplier as i64, r.shift), "{real}");
        }
        let (m, e) = scale_q31(1e-20);
        assert!((1i64 << 30..1i64 << 31).contains(&m) && e < -31);
        assert_eq!(scale_q31(0.0), (0, 0));
        assert_eq!(scale_q31(f64::NAN), (0, 0));
    }

    #[test]
    fn comments_defuse_trigraphs() {
        let s = c_comment("a??/\nb ??= */ ???/");
        assert!(!s.contains("??") && !s.contains("*/"), "{s}");
    }

    #[test]
    fn literals_are_c_safe() {
        assert_eq!(lit(i32::MIN), "(-2147483647 - 1)");
        assert_eq!(lit(-5), "-5");
        assert_eq!(macro_lit(-5), "(-5)");
        assert_eq!(
            row_expr(-3, &[0, 2, -128], "xw"),
            "(int32_t)-3 + 2 * xw[1] - 128 * xw[2]"
        );
    }
}
