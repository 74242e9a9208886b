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
//! Recurrent layers are written as the plan says ([`super::plan`]): the fused LSTM step
//! (its forms in [`LstmCForms`]), or op by op ([`super::c_ops`]).
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
//! #define P_RUN_CHUNK, P_RUN_STACK_BYTES  /* SIMD targets: p_run in chunks */
//! ```
//!
//! On the SIMD targets `p_run` computes the input projections of [`RUN_CHUNK`] steps
//! at once (bit-identical to `p_step`; `-DP_RUN_STEPWISE` makes it a loop of `p_step`).

use super::names::{comment_safe, sanitize, upper, NameTable};
use super::plan::{LstmCForms, LstmPlan, Plan};
use super::targets::CKernels;
use super::GENERATOR;
use super::{GenError, GenOptions, GeneratedFile, Target, Unroll};
use crate::ir::{
    EmbeddingIr, InputIr, LayerIr, LinearIr, LinearOutput, Program, PwlTable, TableSymmetry,
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
pub(crate) const PER_LINE_I32: usize = 8;

/// Terms per line in fully unrolled row expressions.
const TERMS_PER_LINE: usize = 8;

/// Steps per chunk of `NAME_run` on the SIMD targets: the input projections of a chunk
/// are computed together, so every input weight matrix is read once per chunk instead of
/// once per step (docs/ARCHITECTURE.md, "Sequence mode"). The chunk buffers (int32
/// accumulators of `RUN_CHUNK` steps for the widest layer, ...) live on `NAME_run`'s
/// stack; the header states their size as `P_RUN_STACK_BYTES`. 16 measured no faster
/// on (512, 512, 2) and doubles the stack (docs/BENCHMARKS.md, "Sequence mode").
pub const RUN_CHUNK: usize = 8;

/// Writes `NAME.h` and `NAME.c` for `program`; called by [`super::generate`], which
/// checked the options.
pub(crate) fn write(program: &Program, opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    super::validate::check_program(program, opts.unroll)?;
    let ctx = build_context(program, opts)?;
    let tera = templates()?;
    let mut context =
        tera::Context::from_serialize(&ctx).map_err(|e| template_error("context", e))?;
    context.insert("banner", &ctx.banner_c);
    context.insert("memory_lines", &Vec::<String>::new());
    let source = render(tera, "c/source.c.tera", &context)?;
    // Cortex-M headers say how much flash and RAM the model takes (back::memory).
    if opts.target.is_cortex_m() {
        let header = render(tera, "c/header.h.tera", &context)?;
        let report = super::memory::from_source(program, opts.target, &header, &source);
        context.insert("memory_lines", &report.lines(&ctx.p));
    }
    context.insert("banner", &ctx.banner_h);
    let header = render(tera, "c/header.h.tera", &context)?;
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

/// The C templates, parsed once per process (parsing them took longer than rendering
/// a small model: a program generating many models, like the fuzz targets and tests,
/// spent most of its time here).
fn templates() -> Result<&'static tera::Tera, GenError> {
    static TERA: std::sync::OnceLock<Result<tera::Tera, String>> = std::sync::OnceLock::new();
    parsed_once(&TERA, "templates/c", TEMPLATES)
}

/// `cell`'s templates, parsed from `templates` on first use.
pub(super) fn parsed_once(
    cell: &'static std::sync::OnceLock<Result<tera::Tera, String>>,
    what: &str,
    templates: &[(&str, &str)],
) -> Result<&'static tera::Tera, GenError> {
    cell.get_or_init(|| {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        tera.add_raw_templates(templates.iter().copied())
            .map_err(error_chain)?;
        Ok(tera)
    })
    .as_ref()
    .map_err(|message| GenError::Template {
        template: what.to_string(),
        message: message.clone(),
    })
}

fn render(tera: &tera::Tera, name: &str, context: &tera::Context) -> Result<String, GenError> {
    tera.render(name, context)
        .map_err(|e| template_error(name, e))
}

pub(super) fn template_error(template: &str, e: tera::Error) -> GenError {
    GenError::Template {
        template: template.to_string(),
        message: error_chain(e),
    }
}

/// A Tera error with its sources: Tera keeps the useful part of the message in the
/// source chain.
fn error_chain(e: tera::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Trailing whitespace off every line, exactly one final newline.
pub(super) fn tidy(text: &str) -> String {
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
    /// The intrinsics header included under `simd_cond`.
    simd_header: &'static str,
    vnni: bool,
    /// AVX2: the chunk kernel also reads |x| words (`_q_prep_abs`), so `xq` is twice as
    /// large in `NAME_run`.
    avx2: bool,
    /// An AArch64 target (NEON kernels).
    neon: bool,
    /// neon-dotprod: the `sdot` kernel when `__ARM_FEATURE_DOTPROD` is defined (the
    /// `smull` kernel otherwise, on the same layout).
    dotprod: bool,
    /// Cortex-M DSP kernels (`SXTB16`/`SMLAD`).
    dsp: bool,
    /// Helium (MVE) kernels.
    mve: bool,
    /// Alignment of the packed arrays in bytes: a cache line, or a word on Cortex-M
    /// (no data cache line to fill on most, and flash is scarce).
    align: usize,
    br: usize,
    scalar_mv_always: bool,
    /// Some input-side matrix (W_ih or a linear layer's) needs the portable chunk kernel
    /// even where the SIMD one is compiled.
    scalar_mm_always: bool,
    token_input: bool,
    vocab_size: usize,
    input_size: usize,
    output_size: usize,
    input_zero_point: String,
    output_zero_point: String,
    input_scale: ScaleMacro,
    output_scale: ScaleMacro,
    state_bytes: usize,
    state_members: Vec<StateMember>,
    lstm_states: Vec<LstmState>,
    /// Reset loops of the op-level layers' state buffers.
    cell_resets: Vec<CellReset>,
    has_lstm: bool,
    /// Some layer uses `_q_sat16`.
    uses_sat16: bool,
    uses_gate_pre: bool,
    uses_gate_pre_down: bool,
    /// Some layer uses `_q_req32` / `_q_gate_pre32` (AVX2).
    uses_req32: bool,
    /// Some layer uses `_q_reqm` / `_q_gate_prem` (Cortex-M).
    uses_reqm: bool,
    /// Some layer uses `_q_reqr` / `_q_gate_prer` (Cortex-M, SMMULR).
    uses_reqr: bool,
    /// Some layer uses the vector requantization `_q_gate_pre_v` / `_q_out_v`.
    uses_reqv: bool,
    /// int32 lanes per vector of the SIMD target (x86: 8 or 16).
    vl: usize,
    uses_lstm_out: bool,
    uses_sat8: bool,
    has_complement: bool,
    tables: Vec<TableCtx>,
    layers: Vec<LayerCtx>,
    step_input_param: String,
    run_input_param: String,
    step_doc: String,
    run_doc: String,
    /// Every layer's part of `NAME_step` and the batched `NAME_run`, in order.
    glue: Vec<Glue>,
    /// Steps per chunk of the batched `NAME_run` (0: `NAME_run` loops over `NAME_step`,
    /// the scalar target, which has no packed layout).
    run_chunk: usize,
    /// The batched `NAME_run`'s buffers (SIMD targets).
    run: Option<RunGlue>,
}

/// One member of `NAME_state_t`: `ctype name[len]; /* comment */`.
#[derive(Serialize)]
struct StateMember {
    ctype: &'static str,
    name: String,
    len: usize,
    comment: String,
}

/// One layer's calls in `NAME_step` and in the batched `NAME_run` (templates/c/
/// source.c.tera, "API"): what it is, what it reads and where its output goes.
#[derive(Serialize)]
struct Glue {
    /// `embedding`, `lstm`, `cell` or `linear`.
    kind: &'static str,
    id: String,
    index: usize,
    /// C expression of the int8 vector the layer reads in `NAME_step`.
    input: String,
    /// Embedding: rows of the table.
    vocab: usize,
    /// Cell: its state members, in the order its step function takes them.
    state_args: Vec<String>,
    /// Cell: the state member that is its output.
    out_member: String,
    /// Output width.
    out_len: usize,
    /// Linear with int8 output: the local buffer `y{index}` of `NAME_step`
    /// (empty: int32 output straight to `out`).
    buf: String,
    /// The model's last layer.
    last: bool,
    /// Has a part in the batched `NAME_run`.
    chunk: bool,
    /// Cell: its input projection runs per chunk (`{p}_{id}_chunk`); otherwise its
    /// steps run one by one.
    proj: bool,
}

/// The chunk buffers of the batched `NAME_run`.
#[derive(Serialize)]
struct RunGlue {
    /// int32 accumulators (`acc`), for the widest layer.
    acc_words: usize,
    /// Prepared inputs (`xq`).
    xq_words: usize,
    /// int8 outputs of a layer for the next (`seq`; 0: none).
    seq_bytes: usize,
    /// Bytes of the three buffers (`NAME_RUN_STACK_BYTES`, without the `run_chunk`
    /// input pointers).
    stack_bytes: usize,
    /// Some chunk part loops over `k`.
    uses_k: bool,
    /// The embedding's identifier and rows (token models; `""` otherwise): how
    /// `xs[t]` is set.
    embedding_id: String,
    embedding_vocab: usize,
}

#[derive(Serialize)]
struct ScaleMacro {
    q31: String,
    exp: String,
    comment: String,
}

#[derive(Serialize)]
struct CellReset {
    member: String,
    len: usize,
    value: String,
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
    /// Constant-time piece lookup on int16 inputs (`None`: linear scan).
    idx: Option<IndexCtx>,
    /// AVX-512 evaluation with the table in registers (`None`: scalar loop only).
    vec: Option<VecTableCtx>,
    /// AVX2 evaluation with gathers (`None`: scalar loop only).
    gather: Option<GatherCtx>,
}

/// A table read by 8-lane AVX2 gathers (`pwl_index::gather_form`).
#[derive(Serialize)]
struct GatherCtx {
    buckets_len: usize,
    buckets: String,
    bias: i32,
    /// `Some(cap)`: the biased input is capped there (the last piece's start).
    cap: Option<i32>,
    shift: u32,
    /// `2^shift - 1`: the position inside a bucket and each packed field.
    mask: i32,
    /// Starts inside a bucket at most (0, 1 or 2 compares).
    compares: usize,
    pieces: usize,
    slopes: String,
    intercepts: String,
    clamp: bool,
    /// Output clamp bounds saturated to int16 (with `clamp`; the int16 saturation of
    /// the pack then adds nothing).
    lo: String,
    hi: String,
}

/// One probe of the binary search at distance `d`: before it the piece `k` is a multiple
/// of `2d`, so the start it compares with is `starts[k + d] = probe[k >> shift]`, a
/// table of `n / 2d` entries (one zmm, two for 32 entries).
#[derive(Serialize)]
struct ProbeCtx {
    d: usize,
    shift: u32,
    /// 32 entries (two registers) rather than at most 16.
    wide: bool,
    values: String,
    /// The level's starts as unsigned 16-bit values (saturated, padded to 32 with
    /// 65 535), written as the int16 literals of the same bits.
    values16: String,
}

/// A table small enough to live in AVX-512 registers (docs/NUMERICS.md, "PWL lookup in
/// generated code"): slopes and intercepts padded to `n` (32 or 64) int32 entries, the
/// piece found by a binary search whose probes are permutes of per-level tables.
#[derive(Serialize)]
struct VecTableCtx {
    n: usize,
    /// `starts[n / 2]`: the first probe compares with a constant.
    half_start: String,
    /// The remaining probes, distances `n / 4, ..., 1`.
    steps: Vec<ProbeCtx>,
    slopes: String,
    /// `offsets[k] - slopes[k] * starts[k]` in wrapping int32: the piece value is
    /// `intercepts[k] + slopes[k] * u` in wrapping int32 arithmetic, exact because the
    /// true value fits in int32 (`narrow`).
    intercepts: String,
    /// Some int16 input needs the output clamp or the int16 saturation (checked on
    /// every input at generation time); without, both are left out.
    clamp: bool,
    /// Symmetric tables (`u = |x|` in 0..=32768) also get a 32-input loop whose search
    /// runs on unsigned 16-bit lanes: `half_start16` and each level's `values16` are the
    /// starts saturated to 65 535 (never `<= u`), as int16 literals of the same bits.
    w16: bool,
    half_start16: String,
    /// `w16` without clamp and with the shift 16: the piece arithmetic of the 32-input
    /// loop in 16-bit lanes too (NUMERICS.md, "PWL lookup in generated code"), from the
    /// 16-bit halves of the intercepts (`ih16`, `il16`) and slopes (`sh16`, `sl16`),
    /// 64 words each, and the fold's total modulo 2^16 (`total16`).
    arith16: bool,
    /// `w16` tables whose starts spread enough: the 32-input loop's bucket search
    /// (`RegisterForm::word_search`) instead of the binary one.
    ws: Option<WordSearchCtx>,
    ih16: String,
    il16: String,
    sh16: String,
    sl16: String,
    total16: String,
}

/// The bucket search ([`irnn_runtime::simd::Bucket16`]) in template form: `first` (32 or
/// 64 words) and `next` (`n` words) as the int16 literals of the unsigned values' bits.
#[derive(Serialize)]
struct WordSearchCtx {
    buckets: usize,
    shift: u32,
    cap: i32,
    extra: usize,
    first: String,
    next: String,
}

/// A [`super::pwl_index::PieceIndex`] in template form.
#[derive(Serialize)]
struct IndexCtx {
    bias: i32,
    bucket_shift: u32,
    buckets: usize,
    first: String,
    extra: usize,
    starts_len: usize,
    starts_ext: String,
    /// Piece arithmetic in int32 (else int64).
    narrow: bool,
    /// The symmetric fold (negation or `total − v`) cannot overflow int32.
    narrow_fold: bool,
    /// `offsets[k] − slopes[k] · starts[k]` (wrapping), read instead of the offsets
    /// when `narrow`.
    intercepts: String,
    /// Some int16 input needs the output clamp.
    clamp: bool,
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
        /// Every gate requantizer has `−31 <= shift <= 0` and a multiplier other than
        /// `INT32_MIN`: the branch-free `_q_gate_pre_down` applies.
        fast_req: bool,
        /// AVX2 with `fast_req` and the gate sum proven to fit int32
        /// (`GateSumPlan::sum_i32`): `_q_gate_pre32` and `_q_req32` in int32 lanes.
        req32: bool,
        /// Cortex-M with `fast_req` and the gate sum proven to fit int32:
        /// `_q_gate_prem` and `_q_reqm` (the target table's `Req32::Mac`).
        reqm: bool,
        /// `reqm` and `GateSumPlan::acc_doubles`: `_q_gate_prer` (SMMULR) with the
        /// packed shifts `e2`.
        reqr: bool,
        /// `(e_x − 1) | (e_h − 1) << 8` per row, for `reqr`.
        e2: String,
        /// x86 SIMD target with `fast_req`, the gate sum proven to fit int32 and the
        /// output requantizer in the down form: the gate and output requantizations
        /// run `_q_gate_pre_v` / `_q_out_v` on whole vectors (the rest as before).
        reqv: bool,
        /// `(e, half)` of the output requantizer when `_q_lstm_out_down` applies
        /// (only emitted when `fast_req`, which brings `_q_req_down`).
        out_down: Option<(u32, i64)>,
        /// The step ends in one pass per hidden unit (the target's `LstmTail::Fused`,
        /// packed kernels, `out_down`, not `reqv`).
        fused: bool,
        e_x: String,
        half_x: String,
        e_h: String,
        half_h: String,
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
    /// A layer written op by op (`back::c_ops`).
    Cell {
        index: usize,
        id: String,
        comment: String,
        cell: super::c_ops::CellCtx,
    },
}

/// A weight matrix packed for the SIMD targets (docs/NUMERICS.md §8 makes any
/// summation order exact): rows padded to a multiple of the block height `br`, columns
/// to a multiple of 4, laid out as `[blocks][groups][br][4]` so that one 4-byte group
/// of `br` rows is one `br·4`-byte vector load, multiplied by one broadcast 4-byte group
/// of the input vector.
#[derive(Clone, Serialize)]
pub(crate) struct MatCtx {
    /// The packed int8 values.
    pub(crate) data: String,
    /// Number of packed bytes.
    pub(crate) len: usize,
    /// The bias padded to `rows_pad` (zeros).
    pub(crate) bias: String,
    /// AVX-512 VNNI: `bias − 128 · rowsum(W)` (the kernel multiplies `x + 128` as u8).
    pub(crate) vbias: String,
    pub(crate) rows_pad: usize,
    pub(crate) blocks: usize,
    pub(crate) groups: usize,
    /// Whether the SIMD kernel is exact for this matrix (AVX2's sign trick needs every
    /// weight > −128); otherwise the layer calls the scalar kernel on the same layout.
    pub(crate) simd: bool,
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
pub(crate) fn lit(v: i32) -> String {
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
pub(crate) fn list<I: IntoIterator<Item = String>>(
    values: I,
    indent: &str,
    per_line: usize,
) -> String {
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

pub(crate) fn list_i32(values: &[i32]) -> String {
    list(values.iter().map(|&v| lit(v)), "    ", PER_LINE_I32)
}

/// Rows of a `[rows][cols]` array initializer.
pub(crate) fn matrix_i8(values: &[i8], cols: usize) -> String {
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

/// `e = −shift` of requantizers with `shift <= 0` (for `_q_req_down`).
fn down_shifts(req: &[Requant]) -> String {
    list(
        req.iter().map(|r| (-r.shift).to_string()),
        "    ",
        PER_LINE_I8,
    )
}

/// `2^(e−1)` (0 for `e = 0`) of requantizers with `shift <= 0`.
fn down_halves(req: &[Requant]) -> String {
    list(
        req.iter()
            .map(|r| super::down_half((-r.shift) as u32).to_string()),
        "    ",
        PER_LINE_I32,
    )
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

fn table_ctx(index: usize, t: &PwlTable, target: Target) -> TableCtx {
    let idx = super::pwl_index::build(t);
    let vec = idx
        .as_ref()
        .filter(|_| target == Target::Avx512Vnni)
        .and_then(|i| vec_table(t, i));
    let gather = idx
        .as_ref()
        .filter(|_| target == Target::Avx2)
        .and_then(|i| super::pwl_index::gather_form(t, i))
        .map(|g| {
            let sat = |v: i64| lit(v.clamp(i16::MIN as i64, i16::MAX as i64) as i32);
            GatherCtx {
                buckets_len: g.buckets.len(),
                buckets: list_i32(&g.buckets),
                bias: g.bias,
                cap: g.capped(t).then_some(g.cap),
                shift: g.shift,
                mask: (1 << g.shift) - 1,
                compares: g.compares,
                pieces: g.slopes.len(),
                slopes: list_i32(&g.slopes),
                intercepts: list_i32(&g.intercepts),
                clamp: g.clamp,
                lo: sat(t.out_min as i64),
                hi: sat(t.out_max as i64),
            }
        });
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
        vec,
        gather,
        idx: idx.map(|i| IndexCtx {
            bias: i.bias,
            bucket_shift: i.shift,
            buckets: i.first.len(),
            first: list_i32(&i.first),
            extra: i.extra,
            starts_len: i.starts_ext.len(),
            starts_ext: list_i32(&i.starts_ext),
            narrow: i.narrow,
            narrow_fold: i.narrow_fold,
            intercepts: list_i32(&i.intercepts),
            // Dropped only where the unclamped value already is the clamped one.
            clamp: i.clamp || t.out_min < i16::MIN as i32 || t.out_max > i16::MAX as i32,
        }),
    }
}

/// The C form of the table's register form (`pwl_index::register_form`, 32 or 64
/// entries).
fn vec_table(t: &PwlTable, i: &super::pwl_index::PieceIndex) -> Option<VecTableCtx> {
    let r = super::pwl_index::register_form(t, i, 32)?;
    let steps = r
        .probes()
        .into_iter()
        .map(|(d, mut values)| {
            let wide = values.len() > 16;
            let mut v16: Vec<i32> = values.iter().map(|&v| u16_bits(v)).collect();
            v16.resize(32, u16_bits(i32::MAX));
            values.resize(if wide { 32 } else { 16 }, i32::MAX);
            ProbeCtx {
                d,
                shift: (2 * d).trailing_zeros(),
                wide,
                values: list_i32(&values),
                values16: list_i32(&v16),
            }
        })
        .collect();
    let w16 = t.symmetry != TableSymmetry::None;
    // The halves of 32-bit words as int16 literals of the same bits, padded to 64.
    let half = |v: &[i32], hi: bool| {
        let mut w: Vec<i32> = v
            .iter()
            .map(|&x| {
                let b = x as u32;
                (if hi { b >> 16 } else { b & 0xFFFF }) as u16 as i16 as i32
            })
            .collect();
        w.resize(64, 0);
        list_i32(&w)
    };
    Some(VecTableCtx {
        n: r.n,
        half_start: lit(r.starts[r.n / 2]),
        steps,
        slopes: list_i32(&r.slopes),
        intercepts: list_i32(&r.intercepts),
        clamp: r.clamp,
        w16,
        half_start16: lit(u16_bits(r.starts[r.n / 2])),
        arith16: w16 && !r.clamp && t.frac_bits == 16,
        ws: r.word_search().filter(|_| w16).map(|b| {
            // The unsigned words as the int16 literals of their bits.
            let words =
                |v: &[u16]| list_i32(&v.iter().map(|&x| x as i16 as i32).collect::<Vec<_>>());
            WordSearchCtx {
                buckets: b.buckets(),
                shift: b.shift,
                cap: b.cap as i32,
                extra: b.extra as usize,
                first: words(&b.first[..b.buckets()]),
                next: words(&b.next[..r.n]),
            }
        }),
        ih16: half(&r.intercepts, true),
        il16: half(&r.intercepts, false),
        sh16: half(&r.slopes, true),
        sl16: half(&r.slopes, false),
        total16: lit(t.total.rem_euclid(1 << 16) as u16 as i16 as i32),
    })
}

/// `v` saturated to 0..=65 535, as the int16 value of the same 16 bits (what
/// `_mm512_set1_epi16` and an `int16_t` table take for an unsigned lane).
fn u16_bits(v: i32) -> i32 {
    v.clamp(0, u16::MAX as i32) as u16 as i16 as i32
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
    plan: &LstmPlan,
    p: &str,
    unroll: Unroll,
    target: Target,
) -> Result<LayerCtx, GenError> {
    let l = &plan.ir;
    let (i_sz, h_sz) = (l.input_size, l.hidden_size);
    let rows = 4 * h_sz;
    let simd = target.c_packed();
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
    let LstmCForms {
        down: fast_req,
        req32,
        reqm,
        reqr,
        reqv,
        out_down,
        fused_tail: fused,
    } = plan.c;
    let full_rows = if simd { Vec::new() } else { full_rows };
    let e2 = if reqr {
        list(
            l.req_x.iter().zip(&l.req_h).map(|(x, h)| {
                // e = −shift >= 1 (`GateSumPlan::acc_doubles`): e − 1 in 0..=30.
                ((-x.shift - 1) | ((-h.shift - 1) << 8)).to_string()
            }),
            "    ",
            PER_LINE_I32,
        )
    } else {
        String::new()
    };
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
        fast_req,
        req32,
        reqm,
        reqr,
        e2,
        reqv,
        out_down,
        fused,
        e_x: if fast_req {
            down_shifts(&l.req_x)
        } else {
            String::new()
        },
        half_x: if fast_req {
            down_halves(&l.req_x)
        } else {
            String::new()
        },
        e_h: if fast_req {
            down_shifts(&l.req_h)
        } else {
            String::new()
        },
        half_h: if fast_req {
            down_halves(&l.req_h)
        } else {
            String::new()
        },
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
    let simd = target.c_packed();
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

    let mut layers = Vec::new();
    let mut lstm_states = Vec::new();
    let mut cell_resets = Vec::new();
    let mut state_members = Vec::new();
    let mut state_bytes = 0usize;
    let mut uses_sat8 = false;
    let token_input = matches!(program.input, InputIr::Tokens { .. });
    // C expression of the int8 vector the next layer reads in NAME_step.
    let mut current = "x".to_string();
    let mut glue = Vec::new();
    // The batched NAME_run (SIMD targets): one chunk of at most RUN_CHUNK steps per
    // iteration (the template's `run` block); `acc`/`xq`/`seq` are sized for the widest
    // layer.
    let batched = opts.target.c_packed();
    let chunk = if batched { RUN_CHUNK } else { 0 };
    let (mut acc_max, mut xq_max, mut seq_max) = (0usize, 0usize, 0usize);
    let mut run_embedding = None;
    let last = program.layers.len().saturating_sub(1);
    let plan = Plan::new(program, opts);
    for (index, (layer, id)) in program.layers.iter().zip(&ids).enumerate() {
        let mut g = Glue {
            kind: "",
            id: id.clone(),
            index,
            input: current.clone(),
            vocab: 0,
            state_args: Vec::new(),
            out_member: String::new(),
            out_len: layer.output_size(),
            buf: String::new(),
            last: index == last,
            chunk: false,
            proj: false,
        };
        match (layer, plan.lstm(index)) {
            (LayerIr::Embedding(e), _) => {
                g.kind = "embedding";
                g.vocab = e.vocab_size;
                current = "x".to_string();
                run_embedding = Some(glue.len());
                layers.push(embedding_ctx(index, id.clone(), e));
            }
            (_, Some(lp)) => {
                let l = &lp.ir;
                g.kind = "lstm";
                let h = l.hidden_size;
                state_members.push(StateMember {
                    ctype: "int8_t",
                    name: format!("{id}_h"),
                    len: h,
                    comment: format!("layer {index}: hidden state (int8)"),
                });
                state_members.push(StateMember {
                    ctype: "int16_t",
                    name: format!("{id}_c"),
                    len: h,
                    comment: format!(
                        "layer {index}: cell state (int16, 2^-{} grid)",
                        l.cell_frac_bits.min(15)
                    ),
                });
                state_bytes += 3 * h;
                lstm_states.push(LstmState {
                    id: id.clone(),
                    hidden: h,
                    h_reset: sat8(l.h_zero_point).to_string(),
                });
                current = format!("s->{id}_h");
                layers.push(lstm_ctx(
                    index,
                    id.clone(),
                    lp,
                    &p,
                    opts.unroll,
                    opts.target,
                )?);
                if let Some(LayerCtx::Lstm { mx: Some(mx), .. }) = layers.last() {
                    acc_max = acc_max.max(mx.rows_pad);
                    xq_max = xq_max.max(mx.groups);
                    seq_max = seq_max.max(h);
                    g.chunk = true;
                }
            }
            (LayerIr::Cell(l), None) => {
                g.kind = "cell";
                let out = l.output;
                let out_buf = &l.buffers[out.buf];
                if !matches!(out_buf.role, crate::ir::ops::Role::State { .. }) || out.start != 0 {
                    return Err(GenError::Layer {
                        layer: l.name.clone(),
                        message: "a cell's output must be a whole state buffer".into(),
                    });
                }
                for b in &l.buffers {
                    if let crate::ir::ops::Role::State { reset } = b.role {
                        state_members.push(StateMember {
                            ctype: b.dtype.c_type(),
                            name: format!("{id}_{}", b.name),
                            len: b.len,
                            comment: format!(
                                "layer {index}: {} state \"{}\"",
                                l.kind.as_str(),
                                b.name
                            ),
                        });
                        cell_resets.push(CellReset {
                            member: format!("{id}_{}", b.name),
                            len: b.len,
                            value: lit(reset),
                        });
                        g.state_args.push(format!("s->{id}_{}", b.name));
                    }
                }
                state_bytes += l.state_bytes();
                g.out_member = format!("s->{id}_{}", out_buf.name);
                g.out_len = out.len;
                let mats = l
                    .mats
                    .iter()
                    .map(|m| {
                        if batched {
                            mat_ctx(&l.name, &m.name, &m.w, &m.bias, m.rows, m.cols, opts.target)
                                .map(Some)
                        } else {
                            Ok(None)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let cell = super::c_ops::cell_ctx(&p, &pu, id, l, mats, plan.chunk_op(index))?;
                uses_sat8 = true;
                if batched {
                    // With a projection per chunk, `{p}_{id}_chunk` reads every input
                    // before it writes an output (as the LSTM's); otherwise one step at
                    // a time, the outputs through a buffer of their own, since `seq`
                    // still holds inputs of later steps.
                    seq_max = seq_max.max(out.len);
                    g.chunk = true;
                    if let Some(pj) = &cell.proj {
                        acc_max = acc_max.max(pj.mat.rows_pad);
                        xq_max = xq_max.max(pj.mat.groups);
                        g.proj = true;
                    }
                }
                current = g.out_member.clone();
                layers.push(LayerCtx::Cell {
                    index,
                    id: id.clone(),
                    comment: format!(
                        "{} \"{}\" ({} ops, {} MACs per step)",
                        l.kind.as_str(),
                        c_comment(&l.name),
                        l.ops.len(),
                        l.macs()
                    ),
                    cell,
                });
            }
            (LayerIr::Linear(l), _) => {
                g.kind = "linear";
                if let LinearOutput::I8 { .. } = l.output {
                    uses_sat8 = true;
                    g.buf = format!("y{index}");
                    current = g.buf.clone();
                }
                layers.push(linear_ctx(index, id.clone(), l, opts.unroll, opts.target)?);
                if let Some(LayerCtx::Linear { mw: Some(mw), .. }) = layers.last() {
                    acc_max = acc_max.max(mw.rows_pad);
                    xq_max = xq_max.max(mw.groups);
                    if !g.buf.is_empty() {
                        seq_max = seq_max.max(l.out_size);
                    }
                    g.chunk = true;
                }
            }
        }
        glue.push(g);
    }
    let run = batched.then(|| {
        // AVX2 keeps |x| next to x (`_q_prep_abs`).
        let xq_words = chunk * xq_max * if opts.target == Target::Avx2 { 2 } else { 1 };
        RunGlue {
            acc_words: chunk * acc_max,
            xq_words,
            seq_bytes: chunk * seq_max,
            stack_bytes: 4 * chunk * acc_max + 4 * xq_words + chunk * seq_max,
            uses_k: glue.iter().any(|g| {
                g.chunk
                    && ((g.kind == "cell" && !g.proj)
                        || (g.kind == "linear" && g.last && !g.buf.is_empty()))
            }),
            embedding_id: run_embedding.map_or(String::new(), |i: usize| glue[i].id.clone()),
            embedding_vocab: run_embedding.map_or(0, |i: usize| glue[i].vocab),
        }
    });
    let tables: Vec<TableCtx> = program
        .used_tables()
        .into_iter()
        .map(|t| table_ctx(t, &program.tables[t], opts.target))
        .collect();
    // The saturating subtraction is only used by the scan evaluator.
    let has_complement = tables
        .iter()
        .any(|t| t.symmetry == "complement" && t.idx.is_none());
    let fast_req = |l: &LayerCtx| {
        matches!(
            l,
            LayerCtx::Lstm {
                fast_req: true,
                req32: false,
                reqm: false,
                ..
            }
        )
    };
    let slow_req = |l: &LayerCtx| {
        matches!(
            l,
            LayerCtx::Lstm {
                fast_req: false,
                ..
            }
        )
    };
    let uses_gate_pre_down = layers.iter().any(fast_req);
    let uses_req32 = layers
        .iter()
        .any(|l| matches!(l, LayerCtx::Lstm { req32: true, .. }));
    let uses_reqm = layers
        .iter()
        .any(|l| matches!(l, LayerCtx::Lstm { reqm: true, .. }));
    let uses_reqr = layers
        .iter()
        .any(|l| matches!(l, LayerCtx::Lstm { reqr: true, .. }));
    let uses_reqv = layers
        .iter()
        .any(|l| matches!(l, LayerCtx::Lstm { reqv: true, .. }));
    let uses_gate_pre = layers.iter().any(|l| {
        slow_req(l)
            || matches!(
                l,
                LayerCtx::Cell {
                    cell: super::c_ops::CellCtx {
                        uses_gate_pre: true,
                        ..
                    },
                    ..
                }
            )
    });
    let uses_lstm_out = layers
        .iter()
        .any(|l| matches!(l, LayerCtx::Lstm { out_down: None, .. }));
    let uses_sat8 = uses_sat8 || uses_lstm_out;
    // `_q_cell` and the arithmetic-shift check it relies on.
    let has_lstm = layers.iter().any(|l| match l {
        LayerCtx::Lstm { .. } => true,
        LayerCtx::Cell { cell, .. } => cell.uses_cell,
        _ => false,
    });

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
    let info = opts.target.info();
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
        simd: opts.target.c_packed(),
        simd_cond: info.c_simd_cond,
        simd_header: info.c_simd_header,
        vnni: info.c_kernels == CKernels::Avx512Vnni,
        avx2: info.c_kernels == CKernels::Avx2,
        neon: matches!(info.c_kernels, CKernels::Neon { .. }),
        dotprod: info.c_kernels == CKernels::Neon { dotprod: true },
        dsp: info.c_kernels == CKernels::ArmDsp,
        mve: info.c_kernels == CKernels::Mve,
        align: if opts.target.is_cortex_m() { 4 } else { 64 },
        br: super::pack::block_rows(opts.target),
        scalar_mv_always: layers.iter().any(|l| match l {
            LayerCtx::Lstm { mx, mh, .. } => {
                [mx, mh].iter().any(|m| m.as_ref().is_some_and(|m| !m.simd))
            }
            LayerCtx::Linear { mw, .. } => mw.as_ref().is_some_and(|m| !m.simd),
            LayerCtx::Cell { cell, .. } => cell
                .mats
                .iter()
                .any(|m| m.packed.as_ref().is_some_and(|m| !m.simd)),
            LayerCtx::Embedding { .. } => false,
        }),
        scalar_mm_always: layers.iter().any(|l| match l {
            LayerCtx::Lstm { mx, .. } => mx.as_ref().is_some_and(|m| !m.simd),
            LayerCtx::Linear { mw, .. } => mw.as_ref().is_some_and(|m| !m.simd),
            LayerCtx::Embedding { .. } | LayerCtx::Cell { .. } => false,
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
        cell_resets,
        has_lstm,
        uses_sat16: program.layers.iter().any(|l| matches!(l, LayerIr::Cell(_))),
        uses_gate_pre,
        uses_gate_pre_down,
        uses_req32,
        uses_reqm,
        uses_reqr,
        uses_reqv,
        vl: info.lanes,
        uses_lstm_out,
        uses_sat8,
        has_complement,
        tables,
        layers,
        step_input_param,
        run_input_param,
        step_doc,
        run_doc,
        glue,
        run_chunk: chunk,
        run,
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
        "shift_h", "weight", "bias", "mul", "shift", "step", "cell", "chunk", "out", "e_x",
        "half_x", "e_h", "half_h", // op-level layers (`back::c_ops`): no `_` in them
        "m0w", "m0b", "m1w", "m1b", "o2am", "o2as", "o2bm", "o2bs", "o12am", "o12as",
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

    /// `scale_q31` against values worked out by hand (exact rational arithmetic on the
    /// binary value of each `f64`): `real = q31 · 2^(exp − 31)` with `q31` in
    /// `[2^30, 2^31)`, the mantissa rounded half away from zero and renormalized when it
    /// rounds up to 2^31.
    #[test]
    fn scale_q31_matches_hand_computed_values() {
        let cases: &[(f64, (i64, i32))] = &[
            // Powers of two and short mantissas: exact.
            (1.0, (1 << 30, 1)),
            (0.5, (1 << 30, 0)),
            (0.75, (3 << 29, 0)),
            (2f64.powi(-32), (1 << 30, -31)),
            // docs/NUMERICS.md §4: 0.02 · 0.004 · 4096.
            (0.32768, (1_407_374_884, -1)),
            (0.02 * 0.004 * 4096.0, (1_407_374_884, -1)),
            (1e-3, (1_099_511_628, -9)),
            (123.456, (2_071_247_978, 7)),
            (3.0e-7, (1_351_079_888, -21)),
            (1e-20, (1_584_563_250, -66)),
            // Ties: (2^30 + 1/2) · 2^-31 rounds away to 2^30 + 1.
            ((2f64.powi(30) + 0.5) / 2f64.powi(31), ((1 << 30) + 1, 0)),
            // Just below a tie at the top: 2^31 − 1.
            (
                (2f64.powi(31) - 0.5 - 2f64.powi(-22)) / 2f64.powi(31),
                ((1 << 31) - 1, 0),
            ),
            // The mantissa rounds up to 2^31: renormalized to (2^30, exp + 1).
            ((2f64.powi(31) - 0.5) / 2f64.powi(31), (1 << 30, 1)),
            (1.0 - 2f64.powi(-40), (1 << 30, 1)),
            (f64::MAX, (1 << 30, 1025)),
            // The smallest subnormal, 2^-1074.
            (f64::from_bits(1), (1 << 30, -1073)),
            // Not a positive finite number: (0, 0).
            (0.0, (0, 0)),
            (-0.0, (0, 0)),
            (-0.75, (0, 0)),
            (f64::NAN, (0, 0)),
            (f64::INFINITY, (0, 0)),
            (f64::NEG_INFINITY, (0, 0)),
        ];
        for &(real, want) in cases {
            assert_eq!(scale_q31(real), want, "{real:e}");
        }
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
