//! The Rust back end: one `NAME.rs` file per model, usable as a module body.
//!
//! The file is built as a token stream with `quote`, parsed back with `syn` (a failure
//! is a bug in irnn and becomes [`GenError::RustSyntax`]), formatted with
//! `prettyplease`, and prefixed with a `//` header naming the generator, the model hash
//! and the options. It has no inner attributes, so both
//! `mod m { include!(concat!(env!("OUT_DIR"), "/m.rs")); }` (build.rs) and
//! `mod m { irnn_macros::include_model!("m.irnn.json"); }` (proc-macro) work.
//!
//! # What the generated code may use
//!
//! Only `core` and `irnn_runtime` (always through absolute `::irnn_runtime::` paths):
//! no `std`, no heap, no floating point, no `unsafe`. The integer semantics come from
//! the runtime's primitives (`gate_preactivation`, `lstm_cell_update`, `lstm_output`,
//! `Pwl::eval`, `multiply_by_quantized_multiplier`, the saturating casts); only the
//! loops around them are specialized here, with every size a constant. The result is
//! bit-identical to [`crate::interp::Interpreter`]. Recurrent layers are written as the
//! plan says ([`super::plan`]): the fused LSTM step, or op by op (`rust_ops.rs`).
//!
//! # SIMD targets
//!
//! For `avx2`, `avx512vnni`, `neon` and `neon-dotprod` the weight matrices are packed
//! at generation time ([`super::pack`]: `static Lk_W_IH: Aligned64<[u8; N]>`, padded
//! biases, the VNNI offset bias) and described by `static Lk_MAT_X:
//! irnn_runtime::simd::PackedMatrix`; the layer functions take the model's
//! `irnn_runtime::simd::Kernel` and call its safe `matvec`. `Model::new` picks the kernel
//! once (`Kernel::best_for`, portable fallback; run-time detection needs irnn-runtime's
//! feature `std`), `Model::with_kernel` is the `const` constructor. `Model::step` runs
//! its body in `Kernel::vectorize(#[inline(always)] || ...)` with `#[inline(always)]`
//! layer functions, so the element-wise code after the accumulators (requantization,
//! PWL, cell update) is compiled for the kernel's instruction set too (gathers and
//! 64-bit shifts on AVX2/AVX-512 without `-C target-cpu`). The generated code still
//! contains no `unsafe`.
//!
//! # Layout
//!
//! - int8 weight matrices and embedding tables are `static [u8; N]` byte strings
//!   holding the two's-complement bytes, row-major, read back with `as i8`. A byte
//!   string is one token: rustc compiles a 900 k-weight model in a fraction of a second,
//!   where the same data as an array literal takes several seconds and half a gigabyte.
//! - biases and requantization factors (`*_MUL` / `*_SHIFT`) are `static [i32; N]`;
//!   PWL tables are `const irnn_runtime::Pwl<'static>` values (`T0_SIGMOID_Q3_12`),
//!   each with an `#[inline(always)]` evaluator (`t0_sigmoid_q3_12`) that finds the
//!   piece by an unrolled binary search over the constant starts and lets the runtime
//!   evaluate that one piece (see `table_eval`; tests compare it with `Pwl::eval` on
//!   every i16 input).
//! - identifiers never contain model text: items are named by layer index (`L1_W_IH`)
//!   and the model and layer names appear only in doc comments, through
//!   [`comment_safe`].
//!
//! # Unrolling
//!
//! - [`Unroll::None`]: loops over the static arrays with constant trip counts.
//! - [`Unroll::Inner`]: the dot product is unrolled by [`INNER_UNROLL`], with the
//!   remainder written out.
//! - [`Unroll::Full`]: straight-line code, weights, biases and factors as immediates
//!   (zero weights are skipped); refused with [`GenError::Layer`] for a layer with more
//!   than [`FULL_UNROLL_MAX_WEIGHTS`] weights. Embedding tables stay lookup tables.
//!
//! Sums use plain `+`: the generator proves (as lowering does) that no accumulator can
//! leave `i32`, so the result equals the runtime's wrapping sum, and debug builds of
//! the generated code cannot panic.

#[path = "rust_ops.rs"]
mod ops;

use super::names::{comment_safe, sanitize};
use super::plan::{LstmPlan, LstmRustForms, Plan};
use super::targets::PwlArray;
use super::{GenError, GenOptions, GeneratedFile, Target, Unroll, GENERATOR};
use crate::ir::*;
use irnn_runtime::{saturate_i8, Requant};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

/// Dot products are unrolled by this factor with [`Unroll::Inner`].
pub const INNER_UNROLL: usize = 4;

/// Writes `NAME.rs` for `program` (NAME = the sanitized model name); called by
/// [`super::generate`], which checked the options.
pub(crate) fn write(program: &Program, opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    super::validate::check_program(program, opts.unroll)?;
    let mut gen = Gen {
        p: program,
        unroll: opts.unroll,
        target: opts.target,
        blobs: Blobs::new(program),
        forms: array_forms(program, opts.target),
        plan: Plan::new(program, opts),
    };
    let tokens = gen.file()?;
    let file = syn::parse2::<syn::File>(tokens).map_err(|e| GenError::RustSyntax(e.to_string()))?;
    let code = gen.blobs.fill(&prettyplease::unparse(&file))?;
    // The byte strings were spliced in as text: prove the final file still parses.
    syn::parse_file(&code).map_err(|e| GenError::RustSyntax(e.to_string()))?;
    let name = sanitize(&program.name);
    let mut contents = header(program, opts);
    contents.push_str(&code);
    Ok(vec![GeneratedFile {
        name: format!("{name}.rs"),
        contents,
    }])
}

/// The `//` header: generator, model, hash, options, usage.
fn header(p: &Program, opts: &GenOptions) -> String {
    let name = sanitize(&p.name);
    let simd = if !opts.target.rust_packed() {
        String::new()
    } else {
        format!(
            "// Matrix-vector products: irnn_runtime::simd kernels on weights packed for {}; the\n\
             // kernel is chosen when the model is created (Model::new), with the portable one as\n\
             // the fallback. Run-time CPU detection needs irnn-runtime's feature \"std\"; without it\n\
             // the choice follows the compile-time target features.\n",
            opts.target.name()
        )
    };
    format!(
        "// Generated by {GENERATOR}. Do not edit: regenerate from the model instead.\n\
         // Model: \"{}\", sha256 {}\n\
         // Options: lang=rust target={} unroll={}\n\
         // Integer-only Rust (no float, no heap, no unsafe, no_std); depends on irnn-runtime.\n\
         {simd}\
         // Use it as a module body, e.g.\n\
         //   mod {name} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{name}.rs\")); }}\n\n",
        comment_safe(&p.name),
        comment_safe(&p.model_hash),
        target_name(opts.target),
        unroll_name(opts.unroll),
    )
}

fn target_name(t: Target) -> &'static str {
    t.name()
}

fn unroll_name(u: Unroll) -> &'static str {
    match u {
        Unroll::None => "none",
        Unroll::Inner => "inner",
        Unroll::Full => "full",
    }
}

// ---------------------------------------------------------------------------------
// Byte strings: spliced in after formatting, wrapped and row-aligned.

/// Large int8 data, emitted as `*b"..."` byte strings. prettyplease would print each
/// one on a single line, so the token stream carries a placeholder path that [`fill`]
/// replaces with the wrapped literal.
///
/// [`fill`]: Blobs::fill
struct Blobs {
    /// Placeholder prefix, chosen so that no model text contains it.
    prefix: String,
    /// Each blob's bytes and row length.
    items: Vec<(Vec<u8>, usize)>,
}

impl Blobs {
    fn new(p: &Program) -> Self {
        let texts: Vec<String> = std::iter::once(p.name.as_str())
            .chain(p.layers.iter().map(|l| l.name()))
            .chain(std::iter::once(p.model_hash.as_str()))
            .map(comment_safe)
            .collect();
        let mut prefix = String::from("IRNN_BLOB");
        while texts.iter().any(|t| t.contains(&prefix)) {
            prefix.push('X');
        }
        Blobs {
            prefix,
            items: Vec::new(),
        }
    }

    /// A placeholder expression for `*b"..."` holding `data` (rows of `row` bytes).
    fn add(&mut self, data: &[i8], row: usize) -> TokenStream {
        let ident = format_ident!("{}_{}_", self.prefix, self.items.len());
        self.items
            .push((data.iter().map(|&v| v as u8).collect(), row.max(1)));
        quote!(*#ident)
    }

    /// Replaces every placeholder in `code` with its wrapped byte-string literal.
    fn fill(&self, code: &str) -> Result<String, GenError> {
        let mut out = String::with_capacity(
            code.len()
                + self
                    .items
                    .iter()
                    .map(|b| 4 * b.0.len() + b.0.len() / 4)
                    .sum::<usize>(),
        );
        let mut seen = vec![false; self.items.len()];
        let mut rest = code;
        while let Some(at) = rest.find(&self.prefix) {
            out.push_str(&rest[..at]);
            let after = &rest[at + self.prefix.len()..];
            let digits: String = after
                .strip_prefix('_')
                .map(|s| s.chars().take_while(|c| c.is_ascii_digit()).collect())
                .unwrap_or_default();
            let index: usize = digits
                .parse()
                .ok()
                .filter(|i| *i < self.items.len() && after[1 + digits.len()..].starts_with('_'))
                .ok_or_else(|| GenError::RustSyntax("byte-string placeholder mangled".into()))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(GenError::RustSyntax(
                    "byte-string placeholder repeated".into(),
                ));
            }
            let line_start = out.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let indent = out[line_start..].chars().take_while(|c| *c == ' ').count();
            let (bytes, row) = &self.items[index];
            write_byte_string(&mut out, bytes, *row, indent + 4);
            rest = &after[digits.len() + 2..];
        }
        out.push_str(rest);
        if seen.iter().any(|s| !s) {
            return Err(GenError::RustSyntax("byte-string placeholder lost".into()));
        }
        Ok(out)
    }
}

/// Appends `b"\` + lines of at most 16 bytes (`\xNN` each) that start a new line at
/// every row boundary, indented with `indent` spaces (a `\` line continuation skips
/// them), + `"`.
fn write_byte_string(out: &mut String, bytes: &[u8], row: usize, indent: usize) {
    use std::fmt::Write;
    const PER_LINE: usize = 16;
    if bytes.len() <= PER_LINE {
        out.push_str("b\"");
        for b in bytes {
            let _ = write!(out, "\\x{b:02x}");
        }
        out.push('"');
        return;
    }
    out.push_str("b\"\\\n");
    for chunk in bytes.chunks(row) {
        for line in chunk.chunks(PER_LINE) {
            out.push_str(&" ".repeat(indent));
            for b in line {
                let _ = write!(out, "\\x{b:02x}");
            }
            out.push_str("\\\n");
        }
    }
    out.push_str(&" ".repeat(indent.saturating_sub(4)));
    out.push('"');
}

// ---------------------------------------------------------------------------------
// Token helpers.

/// An unsuffixed integer literal; negative values as `-N` (two tokens), which parses
/// everywhere a literal does, including `i32::MIN`.
fn int(v: i64) -> TokenStream {
    let lit = Literal::u64_unsuffixed(v.unsigned_abs());
    if v < 0 {
        quote!(-#lit)
    } else {
        quote!(#lit)
    }
}

fn lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

fn ints<T: Copy + Into<i64>>(v: &[T]) -> TokenStream {
    let items = v.iter().map(|x| int((*x).into()));
    quote!([#(#items),*])
}

/// Doc attributes, one per line of `text`.
fn doc(text: impl AsRef<str>) -> TokenStream {
    let lines = text.as_ref().split('\n').map(|l| {
        let l = if l.is_empty() {
            String::new()
        } else {
            format!(" {l}")
        };
        quote!(#[doc = #l])
    });
    quote!(#(#lines)*)
}

fn requant_lit(r: Requant) -> TokenStream {
    let (m, s) = (int(r.multiplier as i64), int(r.shift as i64));
    quote!(::irnn_runtime::Requant { multiplier: #m, shift: #s })
}

/// `(q31, exp)` with `real = q31 · 2^(exp − 31)`; only for the informational scale
/// constants.
fn scale_pair(real: f64) -> (i32, i32) {
    crate::lower::mantissa_exponent(real)
}

fn scale_const(name: &str, what: &str, real: f64) -> TokenStream {
    let (m, e) = scale_pair(real);
    let ident = format_ident!("{}", name);
    let d1 = doc(format!(
        "Real value of one {what} code as `(q31, exp)`: `scale = q31 · 2^(exp − 31)`\n\
         ≈ {real:e}.\n\n\
         Informational (for dequantizing in the caller); never used by the model."
    ));
    let (m, e) = (int(m as i64), int(e as i64));
    quote! {
        #d1
        #[allow(dead_code)]
        pub const #ident: (i32, i32) = (#m, #e);
    }
}

/// `Σ_j w[j]·x[j]` as straight-line code with immediates, starting from `bias`.
fn unrolled_sum(bias: i32, w: &[i8], x: &TokenStream) -> TokenStream {
    let mut expr: Option<TokenStream> = if bias != 0 {
        Some(int(bias as i64))
    } else {
        None
    };
    for (j, &wv) in w.iter().enumerate() {
        if wv == 0 {
            continue;
        }
        let j = lit(j);
        let term = quote!(#x[#j] as i32);
        let mag = Literal::u64_unsuffixed((wv as i64).unsigned_abs());
        let product = if wv.unsigned_abs() == 1 {
            term.clone()
        } else {
            quote!(#term * #mag)
        };
        expr = Some(match (expr, wv > 0) {
            (None, true) => product,
            (None, false) if wv == -1 => quote!(-(#product)),
            (None, false) => quote!(#term * -#mag),
            (Some(e), true) => quote!(#e + #product),
            (Some(e), false) => quote!(#e - #product),
        });
    }
    expr.unwrap_or_else(|| quote!(0))
}

// ---------------------------------------------------------------------------------
// The generator.

struct Gen<'p> {
    p: &'p Program,
    unroll: Unroll,
    /// Scalar, or the SIMD target whose packed layout the statics use.
    target: Target,
    blobs: Blobs,
    /// Whole-array form of each table (by index) on the VNNI and AVX2 targets,
    /// computed once.
    forms: Vec<Option<ArrayForm>>,
    /// How each layer is written.
    plan: Plan,
}

/// How a SIMD target evaluates a table on whole arrays (NUMERICS.md, "PWL lookup in
/// generated code").
enum ArrayForm {
    /// AVX-512: the table in registers, `Kernel::pwl_i16`.
    Reg(super::pwl_index::RegisterForm),
    /// AVX2: gathers, `Kernel::pwl_i16_gather`.
    Gather(super::pwl_index::GatherForm),
}

/// Where a layer's int8 input vector lives, inside `step`.
#[derive(Clone, Copy)]
enum Src {
    /// The `x: &[i8; INPUT_SIZE]` argument.
    Features,
    /// The local `x0` written by the embedding.
    Embedded,
    /// `self.l{i}_h`.
    Hidden(usize),
    /// A local `y{i}` written by an int8 linear layer.
    Local(usize),
}

impl Src {
    /// The chunk form in sequence mode: `xs` (the inputs), `x0s`, `hs{i}`, `ys{i}`
    /// (arrays of `RUN_CHUNK` vectors).
    fn chunk_expr(self) -> TokenStream {
        match self {
            Src::Features => quote!(xs),
            Src::Embedded => quote!(x0s),
            Src::Hidden(i) => {
                let h = format_ident!("hs{}", i);
                quote!(#h)
            }
            Src::Local(i) => {
                let y = format_ident!("ys{}", i);
                quote!(#y)
            }
        }
    }

    fn expr(self) -> TokenStream {
        match self {
            Src::Features => quote!(x),
            Src::Embedded => quote!(&x0),
            Src::Hidden(i) => {
                let h = format_ident!("l{}_h", i);
                quote!(&self.#h)
            }
            Src::Local(i) => {
                let y = format_ident!("y{}", i);
                quote!(&#y)
            }
        }
    }
}

fn table_ident(k: usize, t: &PwlTable) -> Ident {
    format_ident!("T{}_{}", k, t.short_name().to_ascii_uppercase())
}

/// The whole-array forms of the tables the LSTM layers use, by table index (`None`
/// off the VNNI and AVX2 targets, for unused tables and for tables without one).
fn array_forms(p: &Program, target: Target) -> Vec<Option<ArrayForm>> {
    use super::pwl_index::{build, gather_form, register_form};
    let used = p.used_tables();
    p.tables
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let idx = build(t).filter(|_| used.contains(&k))?;
            match target.info().pwl_array {
                PwlArray::Registers => register_form(t, &idx, 64).map(ArrayForm::Reg),
                PwlArray::Gather => gather_form(t, &idx).map(ArrayForm::Gather),
                PwlArray::Scalar => None,
            }
        })
        .collect()
}

/// The whole-array form of table `k`: `T{k}_{SHORT NAME}_REGS` (registers) or
/// `_GATHER`.
fn form_ident(k: usize, t: &PwlTable, form: &ArrayForm) -> Ident {
    let kind = match form {
        ArrayForm::Reg(_) => "REGS",
        ArrayForm::Gather(_) => "GATHER",
    };
    format_ident!("T{}_{}_{}", k, t.short_name().to_ascii_uppercase(), kind)
}

/// The function that evaluates table `k`: `t{k}_{short name}(x: i32) -> i32`.
fn table_fn(k: usize, t: &PwlTable) -> Ident {
    format_ident!("t{}_{}", k, t.short_name())
}

/// `fn t{k}_...(x: i16) -> i32`, equal to `T{k}_....eval(x as i32)` for every `x`.
///
/// Generated code evaluates tables only on int16 values (gate pre-activations, cell
/// states), so the generator knows the whole domain and uses the bucket index of
/// `back::pwl_index` (NUMERICS.md, "PWL lookup in generated code") instead of
/// `Pwl::eval`'s scan. When the index proves the piece arithmetic and the symmetric
/// fold exact in `i32` (always, for fitted tables), the function is branch-free
/// integer code over power-of-two-sized tables indexed with masks (so no bounds-check
/// panics, and LLVM can vectorize the loops that call it); otherwise the runtime
/// evaluates the one piece found, or the whole table when there is no index.
fn table_eval(k: usize, t: &PwlTable) -> TokenStream {
    let ident = table_ident(k, t);
    let f = table_fn(k, t);
    let d = doc(format!(
        "Evaluates PWL table {k} at `x`: `{ident}.eval(x as i32)`, with the piece found\n\
         by a bucket index."
    ));
    let idx = super::pwl_index::build(t).filter(|_| t.starts.len() > 1);
    let bucket_expr = |idx: &super::pwl_index::PieceIndex| {
        let shift = Literal::u32_unsuffixed(idx.shift);
        match (idx.bias, idx.shift) {
            (0, 0) => quote!(u),
            (0, _) => quote!(u >> #shift),
            (b, 0) => {
                let b = int(b as i64);
                quote!(u + #b)
            }
            (b, _) => {
                let b = int(b as i64);
                quote!((u + #b) >> #shift)
            }
        }
    };
    let body = match idx {
        Some(idx) if idx.narrow && idx.narrow_fold => {
            let n = t.starts.len();
            let nb = idx.first.len().next_power_of_two();
            let np = idx.starts_ext.len().next_power_of_two();
            let last_first = *idx.first.last().unwrap_or(&0);
            let first = ints(
                &idx.first
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(last_first, nb - idx.first.len()))
                    .collect::<Vec<i32>>(),
            );
            let pad = |v: &[i32], fill: i32| {
                ints(
                    &v.iter()
                        .copied()
                        .chain(std::iter::repeat_n(fill, np - v.len()))
                        .collect::<Vec<i32>>(),
                )
            };
            let starts = pad(&idx.starts_ext, i32::MAX);
            let slopes = pad(&t.slopes[..n], 0);
            let offsets = pad(&t.offsets[..n], 0);
            let (nbl, npl) = (lit(nb), lit(np));
            let u = match t.symmetry {
                TableSymmetry::None => quote!(x),
                TableSymmetry::Odd | TableSymmetry::Complement => quote!(x.abs()),
            };
            let bucket = bucket_expr(&idx);
            let steps = (0..idx.extra).map(
                |_| quote!(k = (k + (u >= STARTS[(k + 1) & (#npl - 1)]) as usize) & (#npl - 1);),
            );
            let frac = Literal::u32_unsuffixed(t.frac_bits);
            let fold = match t.symmetry {
                TableSymmetry::None => quote!(),
                TableSymmetry::Odd => quote!(let v = if x < 0 { v.wrapping_neg() } else { v };),
                TableSymmetry::Complement => {
                    let total = Literal::i32_suffixed(t.total);
                    quote!(let v = if x < 0 { #total.wrapping_sub(v) } else { v };)
                }
            };
            let (lo, hi) = (int(t.out_min as i64), int(t.out_max as i64));
            // `clamp` panics when min > max: keep `Pwl::eval`'s max-then-min there.
            let clamp = if t.out_min <= t.out_max {
                quote!(v.clamp(#lo, #hi))
            } else {
                quote!(v.max(#lo).min(#hi))
            };
            quote! {
                /// Piece of each bucket's first input (padded to a power of two).
                static FIRST: [i32; #nbl] = #first;
                /// Starts, `i32::MAX` padding.
                static STARTS: [i32; #npl] = #starts;
                /// Slopes (zero padding).
                static SLOPES: [i32; #npl] = #slopes;
                /// Offsets (zero padding).
                static OFFSETS: [i32; #npl] = #offsets;
                let x = x as i32;
                let u = #u;
                let mut k = (FIRST[((#bucket) as usize) & (#nbl - 1)] as usize) & (#npl - 1);
                #(#steps)*
                // Exact in i32: the generator checked every piece on its inputs.
                let v = OFFSETS[k].wrapping_add(SLOPES[k].wrapping_mul(u.wrapping_sub(STARTS[k])))
                    >> #frac;
                #fold
                #clamp
            }
        }
        Some(idx) => {
            let u = match t.symmetry {
                TableSymmetry::None => quote!(x),
                TableSymmetry::Odd | TableSymmetry::Complement => quote!(x.abs()),
            };
            // Piece numbers are below the piece count: u8 for validated tables.
            let wide = t.starts.len() > 256;
            let first: Vec<Literal> = idx
                .first
                .iter()
                .map(|&v| Literal::u32_unsuffixed(v as u32))
                .collect();
            let first_ty = if wide { quote!(u32) } else { quote!(u8) };
            let nb = lit(idx.first.len());
            let ext: Vec<TokenStream> = idx.starts_ext.iter().map(|&v| int(v as i64)).collect();
            let ne = lit(idx.starts_ext.len());
            let bucket = bucket_expr(&idx);
            let steps = (0..idx.extra).map(|_| quote!(k += (u >= STARTS_EXT[k + 1]) as usize;));
            quote! {
                /// Piece of each bucket's first input.
                static FIRST: [#first_ty; #nb] = [#(#first),*];
                /// The starts, then `i32::MAX` padding.
                static STARTS_EXT: [i32; #ne] = [#(#ext),*];
                let x = x as i32;
                let u = #u;
                let mut k = FIRST[(#bucket) as usize] as usize;
                #(#steps)*
                let piece = ::irnn_runtime::Pwl {
                    starts: &#ident.starts[k..k + 1],
                    slopes: &#ident.slopes[k..k + 1],
                    offsets: &#ident.offsets[k..k + 1],
                    ..#ident
                };
                piece.eval(x)
            }
        }
        None => quote!(#ident.eval(x as i32)),
    };
    quote! {
        #d
        #[inline(always)]
        fn #f(x: i16) -> i32 {
            #body
        }
    }
}

/// Sequence mode of one recurrent layer: the input projections of the chunk's `len`
/// steps (`rows` accumulators each, from the inputs `xs` by `Kernel::matvec_seq` on
/// `mat`), then `step` per step with its accumulators `a`, the hidden state `self.h`
/// (`hidden` codes) collected into `hs{i}`, the next layer's inputs.
fn projected_chunk(
    i: usize,
    mat: &Ident,
    rows: usize,
    xs: &TokenStream,
    step: TokenStream,
    h: &Ident,
    hidden: usize,
) -> TokenStream {
    let (hs, hl, rl) = (format_ident!("hs{}", i), lit(hidden), lit(rows));
    quote! {
        let mut #hs = [[0i8; #hl]; RUN_CHUNK];
        {
            let mut acc = [[0i32; #rl]; RUN_CHUNK];
            kernel.matvec_seq(
                &#mat,
                #xs[..len].as_flattened(),
                acc[..len].as_flattened_mut(),
            );
            for (a, h) in acc[..len].iter().zip(&mut #hs) {
                #step
                *h = self.#h;
            }
        }
    }
}

impl Gen<'_> {
    fn file(&mut self) -> Result<TokenStream, GenError> {
        let p = self.p;
        let mut items = vec![self.constants()];
        items.push(self.tables());
        for (i, layer) in p.layers.iter().enumerate() {
            let lstm = self.plan.lstm(i).cloned();
            items.push(match (layer, lstm) {
                (_, Some(lp)) => self.lstm(i, &lp)?,
                (LayerIr::Embedding(e), None) => self.embedding_data(i, e),
                (LayerIr::Linear(l), None) => self.linear(i, l)?,
                (LayerIr::Cell(l), None) => self.cell(i, l, self.plan.chunk_op(i))?,
            });
        }
        items.push(self.model());
        Ok(quote!(#(#items)*))
    }

    fn constants(&self) -> TokenStream {
        let p = self.p;
        let out = lit(p.output.size);
        let out_zp = int(p.output.zero_point as i64);
        let name = comment_safe(&p.name);
        let hash = comment_safe(&p.model_hash);
        let input = match p.input {
            InputIr::Tokens { vocab_size } => {
                let v = lit(vocab_size);
                quote! {
                    /// Width of one input step: for a token model, the number of token ids.
                    #[allow(dead_code)]
                    pub const INPUT_SIZE: usize = #v;
                    /// Token ids the model knows (`0..VOCAB_SIZE`); any other id reads a
                    /// row of the embedding's zero point.
                    #[allow(dead_code)]
                    pub const VOCAB_SIZE: usize = #v;
                }
            }
            InputIr::Features {
                size,
                zero_point,
                scale_info,
            } => {
                let s = lit(size);
                let zp = int(zero_point as i64);
                let scale = scale_const("INPUT_SCALE", "input", scale_info);
                quote! {
                    /// Width of one input step: the number of int8 features.
                    #[allow(dead_code)]
                    pub const INPUT_SIZE: usize = #s;
                    /// Zero point of the int8 features: `code = round(x / scale) + INPUT_ZERO_POINT`,
                    /// saturated to `-128..=127`.
                    #[allow(dead_code)]
                    pub const INPUT_ZERO_POINT: i32 = #zp;
                    #scale
                }
            }
        };
        let out_scale = scale_const("OUTPUT_SCALE", "output", p.output.scale_info);
        quote! {
            /// Name of the model (printable ASCII; other characters as `?`).
            #[allow(dead_code)]
            pub const MODEL_NAME: &str = #name;
            /// Hex SHA-256 of the quantized graph and its tensors this code was generated from.
            #[allow(dead_code)]
            pub const MODEL_HASH: &str = #hash;
            #input
            /// Number of int32 values one step produces.
            #[allow(dead_code)]
            pub const OUTPUT_SIZE: usize = #out;
            /// Zero point of the output codes (0 for int32 logits).
            #[allow(dead_code)]
            pub const OUTPUT_ZERO_POINT: i32 = #out_zp;
            #out_scale
        }
    }

    /// The PWL tables the LSTM layers use, as `const` values.
    fn tables(&self) -> TokenStream {
        let p = self.p;
        let used = p.used_tables();
        let items = used.into_iter().map(|k| {
            let t = &p.tables[k];
            let ident = table_ident(k, t);
            let d = doc(format!(
                "PWL table {k}: {} on a Q{}.{} input grid, {} pieces, {:?} symmetry, output in {}..={}.",
                t.function.as_str(),
                15u32.saturating_sub(t.input_frac_bits),
                t.input_frac_bits,
                t.pieces(),
                t.symmetry,
                t.out_min,
                t.out_max
            ));
            let symmetry = match t.symmetry {
                TableSymmetry::None => quote!(::irnn_runtime::Symmetry::None),
                TableSymmetry::Odd => quote!(::irnn_runtime::Symmetry::Odd),
                TableSymmetry::Complement => {
                    let total = int(t.total as i64);
                    quote!(::irnn_runtime::Symmetry::Complement { total: #total })
                }
            };
            let (starts, slopes, offsets) = (ints(&t.starts), ints(&t.slopes), ints(&t.offsets));
            let frac = Literal::u32_unsuffixed(t.frac_bits);
            let (lo, hi) = (int(t.out_min as i64), int(t.out_max as i64));
            let eval = table_eval(k, t);
            let form = self.form_static(k);
            quote! {
                #form
                #d
                // The evaluator below may not read this (its own int32 tables), but it
                // is the table's definition and what tests compare the evaluator with.
                #[allow(dead_code)]
                const #ident: ::irnn_runtime::Pwl<'static> = ::irnn_runtime::Pwl {
                    symmetry: #symmetry,
                    starts: &#starts,
                    slopes: &#slopes,
                    offsets: &#offsets,
                    frac_bits: #frac,
                    out_min: #lo,
                    out_max: #hi,
                };
                #eval
            }
        });
        quote!(#(#items)*)
    }

    fn layer_doc(&self, i: usize, what: &str) -> TokenStream {
        doc(format!(
            "Layer {i} (\"{}\"): {what}.",
            comment_safe(self.p.layers[i].name())
        ))
    }

    /// A `static NAME: [u8; N]` byte string of int8 codes.
    fn bytes_static(
        &mut self,
        ident: &Ident,
        data: &[i8],
        row: usize,
        d: TokenStream,
    ) -> TokenStream {
        let n = lit(data.len());
        let value = self.blobs.add(data, row);
        quote! {
            #d
            static #ident: [u8; #n] = #value;
        }
    }

    fn i32_static(ident: &Ident, data: &[i32], d: TokenStream) -> TokenStream {
        let n = lit(data.len());
        let values = ints(data);
        quote! {
            #d
            static #ident: [i32; #n] = #values;
        }
    }

    /// `*_MUL` and `*_SHIFT` arrays for a list of factors.
    fn requant_statics(&self, i: usize, base: &str, reqs: &[Requant], what: &str) -> TokenStream {
        let mul = format_ident!("L{}_{}_MUL", i, base);
        let shift = format_ident!("L{}_{}_SHIFT", i, base);
        let muls: Vec<i32> = reqs.iter().map(|r| r.multiplier).collect();
        let shifts: Vec<i32> = reqs.iter().map(|r| r.shift).collect();
        let d1 = self.layer_doc(i, &format!("Q0.31 multipliers of {what}"));
        let d2 = self.layer_doc(i, &format!("power-of-two shifts of {what}"));
        let a = Self::i32_static(&mul, &muls, d1);
        let b = Self::i32_static(&shift, &shifts, d2);
        quote!(#a #b)
    }

    /// Whether the matrix-vector products use the runtime's packed SIMD kernels.
    fn simd(&self) -> bool {
        self.target.rust_packed()
    }

    /// Table `k`'s whole-array form: registers on the AVX-512 VNNI target, gathers on
    /// AVX2 (NUMERICS.md, "PWL lookup in generated code").
    fn array_form(&self, k: usize) -> Option<&ArrayForm> {
        self.forms.get(k).and_then(Option::as_ref)
    }

    /// `kernel.pwl_i16(&T{k}_REGS, xs, f)` or `kernel.pwl_i16_gather(&T{k}_GATHER, …)`.
    fn array_call(&self, k: usize, xs: TokenStream, scalar: &Ident) -> Option<TokenStream> {
        let form = self.array_form(k)?;
        let ident = form_ident(k, &self.p.tables[k], form);
        Some(match form {
            ArrayForm::Reg(_) => quote!(kernel.pwl_i16(&#ident, #xs, #scalar);),
            ArrayForm::Gather(_) => quote!(kernel.pwl_i16_gather(&#ident, #xs, #scalar);),
        })
    }

    /// `static T{k}_REGS: RegPwl` or `static T{k}_GATHER: GatherPwl` for tables with a
    /// whole-array form.
    fn form_static(&self, k: usize) -> TokenStream {
        let Some(form) = self.array_form(k) else {
            return quote!();
        };
        let t = &self.p.tables[k];
        let ident = form_ident(k, t, form);
        let frac = Literal::u32_unsuffixed(t.frac_bits);
        let fold = match t.symmetry {
            TableSymmetry::None => quote!(::irnn_runtime::simd::RegFold::None),
            TableSymmetry::Odd => quote!(::irnn_runtime::simd::RegFold::Odd),
            TableSymmetry::Complement => {
                let total = int(t.total as i64);
                quote!(::irnn_runtime::simd::RegFold::Complement(#total))
            }
        };
        let clamp_needed = match form {
            ArrayForm::Reg(r) => r.clamp,
            ArrayForm::Gather(g) => g.clamp,
        };
        let clamp = if clamp_needed {
            let (lo, hi) = (int(t.out_min as i64), int(t.out_max as i64));
            quote!(Some((#lo, #hi)))
        } else {
            quote!(None)
        };
        let no_clamp = if clamp_needed {
            ""
        } else {
            "; no clamp is needed on int16 inputs"
        };
        match form {
            ArrayForm::Reg(r) => {
                let probes = r.probes().into_iter().map(|(_, mut v)| {
                    v.resize(32, i32::MAX);
                    ints(&v)
                });
                let (half, slopes, intercepts) = (
                    int(r.starts[32] as i64),
                    ints(&r.slopes),
                    ints(&r.intercepts),
                );
                let d = doc(format!(
                    "PWL table {k} in register form for `Kernel::pwl_i16` (AVX-512: binary search\n\
                     by permutes, wrapping-int32 intercepts{no_clamp})."
                ));
                quote! {
                    #d
                    static #ident: ::irnn_runtime::simd::RegPwl = ::irnn_runtime::simd::RegPwl::new(
                        #half,
                        [#(#probes),*],
                        #slopes,
                        #intercepts,
                        #frac,
                        #fold,
                        #clamp,
                    );
                }
            }
            ArrayForm::Gather(g) => {
                let (buckets, slopes, intercepts) =
                    (ints(&g.buckets), ints(&g.slopes), ints(&g.intercepts));
                let (bias, cap) = (int(g.bias as i64), int(g.cap as i64));
                let shift = Literal::u32_unsuffixed(g.shift);
                let compares = Literal::u32_unsuffixed(g.compares as u32);
                let d = doc(format!(
                    "PWL table {k} in gather form for `Kernel::pwl_i16_gather` (AVX2: packed\n\
                     buckets of 2^{} inputs, {} compare(s), wrapping-int32 intercepts{no_clamp}).",
                    g.shift, g.compares
                ));
                quote! {
                    #d
                    static #ident: ::irnn_runtime::simd::GatherPwl = ::irnn_runtime::simd::GatherPwl::new(
                        &#buckets,
                        #bias,
                        #cap,
                        #shift,
                        #compares,
                        &#slopes,
                        &#intercepts,
                        #frac,
                        #fold,
                        #clamp,
                    );
                }
            }
        }
    }

    /// The statics of one packed matrix: `{base}` weights, `{bias}` (padded), for VNNI
    /// `{bias}_OFFSET`, and the `PackedMatrix` `{mat}` that the kernels read.
    #[allow(clippy::too_many_arguments)]
    fn packed_statics(
        &mut self,
        i: usize,
        names: [&Ident; 3],
        what: &str,
        w: &[i8],
        bias: &[i32],
        rows: usize,
        cols: usize,
    ) -> Result<TokenStream, GenError> {
        let [w_ident, b_ident, mat] = names;
        let layer = self.p.layers[i].name().to_string();
        let pm = super::pack::pack_matrix(&layer, what, w, bias, rows, cols, self.target)?;
        let br = pm.br;
        let d = self.layer_doc(
            i,
            &format!(
                "{what} weights ([{rows}][{cols}]) packed for {} as [{}][{}][{br}][4] int8 codes \
                 stored as bytes (rows padded to {}, columns to {})",
                self.target.name(),
                pm.blocks,
                pm.groups,
                pm.rows_pad,
                4 * pm.groups
            ),
        );
        let n = lit(pm.data.len());
        let value = self.blobs.add(&pm.data, br * 4);
        let rp = lit(pm.rows_pad);
        let bias_vals = ints(&pm.bias);
        let db = self.layer_doc(i, &format!("{what} biases, padded to {} rows", pm.rows_pad));
        let (offset_item, offset_call) = match &pm.offset_bias {
            Some(v) => {
                let o = format_ident!("{}_OFFSET", b_ident);
                let vals = ints(v);
                let dd = self.layer_doc(
                    i,
                    &format!(
                        "{what} biases minus 128 · row sums (the VNNI kernel multiplies x + 128)"
                    ),
                );
                (
                    quote! {
                        #dd
                        static #o: [i32; #rp] = #vals;
                    },
                    quote!(.with_offset_bias(&#o)),
                )
            }
            None => (quote!(), quote!()),
        };
        let min_call = if pm.has_min_weight {
            quote!()
        } else {
            quote!(.without_min_weight())
        };
        let dm = self.layer_doc(
            i,
            &format!("{what} matrix as the runtime's kernels read it"),
        );
        let (rl, cl, brl) = (lit(rows), lit(cols), lit(br));
        Ok(quote! {
            #d
            static #w_ident: ::irnn_runtime::simd::Aligned64<[u8; #n]> =
                ::irnn_runtime::simd::Aligned64(#value);
            #db
            static #b_ident: [i32; #rp] = #bias_vals;
            #offset_item
            #dm
            static #mat: ::irnn_runtime::simd::PackedMatrix<'static> =
                ::irnn_runtime::simd::PackedMatrix::new(&#w_ident.0, &#b_ident, #rl, #cl, #brl)
                    #min_call
                    #offset_call;
        })
    }

    fn embedding_data(&mut self, i: usize, e: &EmbeddingIr) -> TokenStream {
        let ident = format_ident!("L{}_EMBEDDING", i);
        let d = self.layer_doc(
            i,
            &format!(
                "embedding rows, [{}][{}] int8 codes stored as bytes",
                e.vocab_size, e.dim
            ),
        );
        self.bytes_static(&ident, &e.table, e.dim, d)
    }

    /// A loop over the rows of `w` (None / Inner): `sum = bias[r] + row · x`, then
    /// `sink` (statements that may use `r` and `sum`).
    fn matvec_loop(
        &self,
        w: &Ident,
        bias: &Ident,
        x: &Ident,
        cols: usize,
        sink: TokenStream,
    ) -> TokenStream {
        let c = lit(cols);
        let dot = match self.unroll {
            Unroll::Inner => {
                let u = INNER_UNROLL;
                let chunks = cols / u;
                let terms = (0..u).map(|j| {
                    let j = lit(j);
                    quote!(w[#j] as i8 as i32 * v[#j] as i32)
                });
                let head = if chunks > 0 {
                    let ul = lit(u);
                    quote! {
                        for (w, v) in row.chunks_exact(#ul).zip(#x.chunks_exact(#ul)) {
                            sum += #(#terms)+*;
                        }
                    }
                } else {
                    quote!()
                };
                let rest: Vec<TokenStream> = (chunks * u..cols)
                    .map(|j| {
                        let j = lit(j);
                        quote!(row[#j] as i8 as i32 * #x[#j] as i32)
                    })
                    .collect();
                let tail = if rest.is_empty() {
                    quote!()
                } else {
                    quote!(sum += #(#rest)+*;)
                };
                quote!(#head #tail)
            }
            _ => quote! {
                for (w, v) in row.iter().zip(#x.iter()) {
                    sum += *w as i8 as i32 * *v as i32;
                }
            },
        };
        quote! {
            for (r, row) in #w.chunks_exact(#c).enumerate() {
                let mut sum = #bias[r];
                #dot
                #sink
            }
        }
    }

    fn lstm(&mut self, i: usize, lp: &LstmPlan) -> Result<TokenStream, GenError> {
        let l = &lp.ir;
        let (isz, hsz) = (l.input_size, l.hidden_size);
        let rows = 4 * hsz;
        // What the interval analysis proves about the gate sums.
        let plan = &lp.gates;
        let mut items = Vec::new();
        let names = [
            format_ident!("L{}_W_IH", i),
            format_ident!("L{}_W_HH", i),
            format_ident!("L{}_BIAS_X", i),
            format_ident!("L{}_BIAS_H", i),
        ];
        let [w_ih, w_hh, bias_x, bias_h] = &names;
        let req_out = format_ident!("L{}_REQ_OUT", i);
        let full = self.unroll == Unroll::Full;
        let (mat_x, mat_h) = (format_ident!("L{}_MAT_X", i), format_ident!("L{}_MAT_H", i));
        if self.simd() {
            items.push(self.packed_statics(
                i,
                [w_ih, bias_x, &mat_x],
                "input",
                &l.w_ih,
                &l.bias_x,
                rows,
                isz,
            )?);
            items.push(self.packed_statics(
                i,
                [w_hh, bias_h, &mat_h],
                "recurrent",
                &l.w_hh,
                &l.bias_h,
                rows,
                hsz,
            )?);
            items.push(self.requant_statics(i, "REQ_X", &l.req_x, "the input accumulators"));
            items.push(self.requant_statics(i, "REQ_H", &l.req_h, "the recurrent accumulators"));
            if !full {
                for ((base, what), acc) in [("X", "input"), ("H", "recurrent")]
                    .into_iter()
                    .zip(plan.acc)
                {
                    let (g, mul, shift) = (
                        format_ident!("L{}_GATES_{}", i, base),
                        format_ident!("L{}_REQ_{}_MUL", i, base),
                        format_ident!("L{}_REQ_{}_SHIFT", i, base),
                    );
                    let d = self.layer_doc(
                        i,
                        &format!(
                            "the {what} accumulators' requantizers as `Kernel::gate_sums` reads them, \
                             with the accumulators' proven interval"
                        ),
                    );
                    let rl = lit(rows);
                    let (lo, hi) = (int(acc.lo), int(acc.hi));
                    items.push(quote! {
                        #d
                        static #g: ::irnn_runtime::simd::GateReq<#rl> =
                            ::irnn_runtime::simd::GateReq::new(&#mul, &#shift).with_acc_range(#lo, #hi);
                    });
                }
            }
        } else if !full {
            let d = self.layer_doc(i, &format!("input weights, [{rows}][{isz}] int8 codes stored as bytes, gate order i, f, g, o"));
            items.push(self.bytes_static(w_ih, &l.w_ih, isz, d));
            let d = self.layer_doc(
                i,
                &format!("recurrent weights, [{rows}][{hsz}] int8 codes stored as bytes"),
            );
            items.push(self.bytes_static(w_hh, &l.w_hh, hsz, d));
            let d = self.layer_doc(i, "input-side biases (input zero point folded in)");
            items.push(Self::i32_static(bias_x, &l.bias_x, d));
            let d = self.layer_doc(i, "recurrent-side biases (hidden zero point folded in)");
            items.push(Self::i32_static(bias_h, &l.bias_h, d));
            items.push(self.requant_statics(i, "REQ_X", &l.req_x, "the input accumulators"));
            items.push(self.requant_statics(i, "REQ_H", &l.req_h, "the recurrent accumulators"));
        }
        let d = self.layer_doc(i, "factor from Q0.30 (o · tanh c) to the hidden-state grid");
        let ro = requant_lit(l.req_out);
        items.push(quote! {
            #d
            #[allow(dead_code)] // the loop form may apply it branch-free instead
            const #req_out: ::irnn_runtime::Requant = #ro;
        });

        let tables: Vec<Ident> = l
            .gate_tables
            .iter()
            .map(|&k| table_fn(k, &self.p.tables[k]))
            .collect();
        let cell = table_fn(l.cell_table, &self.p.tables[l.cell_table]);
        let cfb = Literal::u32_unsuffixed(l.cell_frac_bits);
        let hzp = int(l.h_zero_point as i64);
        let (il, hl, rl) = (lit(isz), lit(hsz), lit(rows));
        let f = format_ident!("l{}_lstm", i);
        let fdoc = self.layer_doc(
            i,
            &format!("one LSTM step, input {isz}, hidden {hsz}; updates `h` and `c` in place"),
        );

        // The plan's forms (`LstmRustForms`): the loop form's branch-free gate
        // requantization (`req_down`, which LLVM vectorizes) where every gate requantizer
        // has it, otherwise the runtime's; the output requantizer in the same form,
        // on AVX2 in int32.
        let LstmRustForms {
            down: fast,
            out_req32,
            out_down,
        } = lp.rust;
        let out_down = out_down.then(|| {
            (
                int(l.req_out.multiplier as i64),
                int(l.req_out.shift as i64),
            )
        });
        let body = if full {
            let x = quote!(x);
            let h = quote!(h);
            let ax =
                (0..rows).map(|r| unrolled_sum(l.bias_x[r], &l.w_ih[r * isz..(r + 1) * isz], &x));
            let ah =
                (0..rows).map(|r| unrolled_sum(l.bias_h[r], &l.w_hh[r * hsz..(r + 1) * hsz], &h));
            let gates = (0..rows).map(|r| {
                let t = &tables[r / hsz];
                let rr = lit(r);
                let (mx, sx) = (
                    int(l.req_x[r].multiplier as i64),
                    int(l.req_x[r].shift as i64),
                );
                let (mh, sh) = (
                    int(l.req_h[r].multiplier as i64),
                    int(l.req_h[r].shift as i64),
                );
                quote!(saturate_i16(#t(pre(acc_x[#rr], #mx, #sx, acc_h[#rr], #mh, #sh))))
            });
            let cells = (0..hsz).map(|k| {
                let (gi, gf, gg, go) = (lit(k), lit(hsz + k), lit(2 * hsz + k), lit(3 * hsz + k));
                let kl = lit(k);
                quote! {
                    c[#kl] = lstm_cell_update(gates[#gi], gates[#gf], gates[#gg], c[#kl], #cfb);
                    h[#kl] = lstm_output(gates[#go], saturate_i16(#cell(c[#kl])), #req_out, #hzp);
                }
            });
            quote! {
                /// A gate pre-activation from both accumulators and their factors.
                #[inline(always)]
                fn pre(acc_x: i32, mul_x: i32, shift_x: i32, acc_h: i32, mul_h: i32, shift_h: i32) -> i16 {
                    use ::irnn_runtime::Requant;
                    let req_x = Requant { multiplier: mul_x, shift: shift_x };
                    let req_h = Requant { multiplier: mul_h, shift: shift_h };
                    gate_preactivation(acc_x, req_x, acc_h, req_h)
                }
                let acc_x: [i32; #rl] = [#(#ax),*];
                let acc_h: [i32; #rl] = [#(#ah),*];
                let gates: [i16; #rl] = [#(#gates),*];
                #(#cells)*
            }
        } else {
            let mh = if self.simd() {
                quote!(kernel.matvec(&#mat_h, &h[..], &mut acc_h);)
            } else {
                self.matvec_loop(
                    w_hh,
                    bias_h,
                    &format_ident!("h"),
                    hsz,
                    quote!(acc_h[r] = sum;),
                )
            };
            let (rxm, rxs) = (
                format_ident!("L{}_REQ_X_MUL", i),
                format_ident!("L{}_REQ_X_SHIFT", i),
            );
            let (rhm, rhs) = (
                format_ident!("L{}_REQ_H_MUL", i),
                format_ident!("L{}_REQ_H_SHIFT", i),
            );
            // The branch-free requantizations: `req_down` for the scalar target's gate
            // loop and the output pass, `req32` for AVX2's output pass (each defined where
            // it is used: the SIMD targets' gates go through `Kernel::gate_sums`).
            let req_down_fn = quote! {
                /// `Requant { multiplier: m, shift }.apply(x)` for −31 <= shift <= 0 and
                /// m != i32::MIN, without branches.
                #[inline(always)]
                fn req_down(x: i32, m: i32, shift: i32) -> i64 {
                    let e = (-shift) as u32;
                    let y = (x as i64 * m as i64 + (1i64 << 30)) >> 31;
                    let half = (1i64 << e) >> 1;
                    (y + half - ((y >> 63) & (half > 0) as i64)) >> e
                }
            };
            let req32_fn = quote! {
                /// `Requant { multiplier: m, shift }.apply(x)` for −31 <= shift <= 0 and
                /// m != i32::MIN, in int32 lanes (AVX2 has no 64-bit arithmetic shift):
                /// `floor((x·m + 2^30) / 2^31)` from a non-negative 64-bit value by a
                /// logical shift, then the magnitude rounded half up and the sign put
                /// back (the same rounding, ties away from zero).
                #[inline(always)]
                fn req32(x: i32, m: i32, shift: i32) -> i32 {
                    let e = (-shift) as u32;
                    let q = (x as i64 * m as i64 + (1i64 << 30) + (1i64 << 62)) as u64;
                    let y = ((q >> 31) as u32 ^ 0x8000_0000) as i32;
                    let s = y >> 31;
                    let a = ((y ^ s) - s) as u32;
                    let z = ((a + ((1u32 << e) >> 1)) >> e) as i32;
                    (z ^ s) - s
                }
            };
            let gate_pre = if self.simd() {
                let (gx, gh) = (
                    format_ident!("L{}_GATES_X", i),
                    format_ident!("L{}_GATES_H", i),
                );
                quote! {
                    kernel.gate_sums(acc_x, &#gx, &acc_h, &#gh, &mut gates);
                }
            } else if fast {
                quote! {
                    #req_down_fn
                    for r in 0..#rl {
                        let sum = req_down(acc_x[r], #rxm[r], #rxs[r])
                            + req_down(acc_h[r], #rhm[r], #rhs[r]);
                        gates[r] = sum.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
                    }
                }
            } else {
                quote! {
                    for r in 0..#rl {
                        gates[r] = gate_preactivation(
                            acc_x[r],
                            Requant { multiplier: #rxm[r], shift: #rxs[r] },
                            acc_h[r],
                            Requant { multiplier: #rhm[r], shift: #rhs[r] },
                        );
                    }
                }
            };
            let gate_loops = tables.iter().enumerate().map(|(g, t)| {
                let (lo, hi) = (lit(g * hsz), lit((g + 1) * hsz));
                let k = l.gate_tables[g];
                if let Some(call) = self.array_call(k, quote!(&mut gates[#lo..#hi]), t) {
                    call
                } else {
                    quote! {
                        for g in &mut gates[#lo..#hi] {
                            *g = saturate_i16(#t(*g));
                        }
                    }
                }
            });
            let off = |g: usize| -> TokenStream {
                if g == 0 {
                    quote!(k)
                } else {
                    let o = lit(g * hsz);
                    quote!(#o + k)
                }
            };
            let (gi, gf, gg, go) = (off(0), off(1), off(2), off(3));
            let cell_loops = if let Some((out_m, out_shift)) = &out_down {
                // The C back end's cell and output passes (NUMERICS.md, "Branch-free
                // requantization"): int32 rounding of the two products (|·| <= 2^30),
                // then the output requantization in its own loop.
                let s_in = 30 - l.cell_frac_bits.min(15);
                let hzp64 = {
                    let v = Literal::i64_suffixed((l.h_zero_point as i64).abs());
                    match l.h_zero_point {
                        0 => quote!(),
                        z if z < 0 => quote!(- #v),
                        _ => quote!(+ #v),
                    }
                };
                let (sl, half_in) = (
                    Literal::u32_unsuffixed(s_in),
                    Literal::i32_unsuffixed(1 << (s_in - 1)),
                );
                let cell_update = quote! {
                    let fc = gates[#gf] as i32 * c[k] as i32;
                    let ig = gates[#gi] as i32 * gates[#gg] as i32;
                    let forget = (fc + (1 << 14) - (fc < 0) as i32) >> 15;
                    let input = (ig + #half_in - (ig < 0) as i32) >> #sl;
                    let c_new = (forget + input).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
                    c[k] = c_new;
                };
                let cell_call = self.array_call(l.cell_table, quote!(&mut tc), &cell);
                let cell_pass = if let Some(call) = cell_call {
                    // tanh of the whole new cell state at once (registers or gathers).
                    quote! {
                        for k in 0..#hl {
                            #cell_update
                        }
                        let mut tc = *c;
                        #call
                        for k in 0..#hl {
                            oc[k] = gates[#go] as i32 * tc[k] as i32;
                        }
                    }
                } else {
                    quote! {
                        for k in 0..#hl {
                            #cell_update
                            oc[k] = gates[#go] as i32 * saturate_i16(#cell(c_new)) as i32;
                        }
                    }
                };
                let out_pass = if out_req32 {
                    // |oc| <= 2^30: the requantized value and the zero point fit int32.
                    let v = Literal::i32_suffixed(l.h_zero_point.saturating_abs());
                    let zp = match l.h_zero_point {
                        0 => quote!(),
                        z if z < 0 => quote!(- #v),
                        _ => quote!(+ #v),
                    };
                    quote! {
                        #req32_fn
                        for k in 0..#hl {
                            let v = req32(oc[k], #out_m, #out_shift) #zp;
                            h[k] = v.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
                        }
                    }
                } else {
                    // The scalar target's gate loop defined `req_down` already.
                    let def = if self.simd() {
                        req_down_fn.clone()
                    } else {
                        quote!()
                    };
                    quote! {
                        #def
                        for k in 0..#hl {
                            let v = req_down(oc[k], #out_m, #out_shift) #hzp64;
                            h[k] = v.clamp(i8::MIN as i64, i8::MAX as i64) as i8;
                        }
                    }
                };
                quote! {
                    let mut oc = [0i32; #hl];
                    #cell_pass
                    #out_pass
                }
            } else {
                quote! {
                    for k in 0..#hl {
                        let c_new = lstm_cell_update(gates[#gi], gates[#gf], gates[#gg], c[k], #cfb);
                        c[k] = c_new;
                        let tanh_c = saturate_i16(#cell(c_new));
                        h[k] = lstm_output(gates[#go], tanh_c, #req_out, #hzp);
                    }
                }
            };
            // On SIMD targets `acc_x` is the cell function's parameter (sequence mode
            // computes it for a chunk of steps at once).
            let acc_x_init = if self.simd() {
                quote!()
            } else {
                let mx = self.matvec_loop(
                    w_ih,
                    bias_x,
                    &format_ident!("x"),
                    isz,
                    quote!(acc_x[r] = sum;),
                );
                quote! {
                    let mut acc_x = [0i32; #rl];
                    #mx
                }
            };
            quote! {
                #acc_x_init
                let mut acc_h = [0i32; #rl];
                #mh
                // Gate pre-activations (int16), then each gate's activation (Q0.15).
                let mut gates = [0i16; #rl];
                #gate_pre
                #(#gate_loops)*
                #cell_loops
            }
        };
        // With every table in a whole-array form (and the separate output pass) nothing
        // saturates in the layer itself: `Kernel::pwl_i16`/`pwl_i16_gather` do.
        let all_forms = out_down.is_some()
            && l.gate_tables
                .iter()
                .chain([&l.cell_table])
                .all(|&k| self.array_form(k).is_some());
        // `Kernel::gate_sums` makes the gate pre-activations on SIMD targets.
        let gates_in_runtime = self.simd() && !full;
        let uses = if all_forms {
            quote!()
        } else if full || fast || gates_in_runtime {
            quote!(
                use ::irnn_runtime::saturate_i16;
            )
        } else {
            quote!(
                use ::irnn_runtime::{saturate_i16, Requant};
            )
        };
        let kernels = if out_down.is_some() {
            quote!()
        } else if fast || gates_in_runtime {
            quote!(
                use ::irnn_runtime::kernels::{lstm_cell_update, lstm_output};
            )
        } else {
            quote!(
                use ::irnn_runtime::kernels::{gate_preactivation, lstm_cell_update, lstm_output};
            )
        };
        let kparam = self.kernel_param();
        let inline = self.layer_inline();
        if self.simd() {
            // The step = the input projection, then the recurrent part (`l{i}_cell`),
            // which sequence mode (`Model::run`) calls with projections made for a
            // chunk of steps by `Kernel::matvec_seq`.
            let fc = format_ident!("l{}_cell", i);
            let cdoc = self.layer_doc(
                i,
                "the recurrent part of one LSTM step, given the input projection \
                 `acc_x = bias_x + W_ih x`; updates `h` and `c` in place",
            );
            items.push(quote! {
                #fdoc
                #inline
                fn #f(#kparam x: &[i8; #il], h: &mut [i8; #hl], c: &mut [i16; #hl]) {
                    let mut acc_x = [0i32; #rl];
                    kernel.matvec(&#mat_x, x, &mut acc_x);
                    #fc(kernel, &acc_x, h, c);
                }

                #cdoc
                #[allow(clippy::needless_range_loop)]
                #inline
                fn #fc(#kparam acc_x: &[i32; #rl], h: &mut [i8; #hl], c: &mut [i16; #hl]) {
                    #kernels
                    #uses
                    #body
                }
            });
        } else {
            items.push(quote! {
                #fdoc
                #[allow(clippy::needless_range_loop)]
                #inline
                fn #f(#kparam x: &[i8; #il], h: &mut [i8; #hl], c: &mut [i16; #hl]) {
                    #kernels
                    #uses
                    #body
                }
            });
        }
        Ok(quote!(#(#items)*))
    }

    /// `kernel: Kernel,` as the first parameter of layer functions on SIMD targets.
    fn kernel_param(&self) -> TokenStream {
        if self.simd() {
            quote!(kernel: ::irnn_runtime::simd::Kernel,)
        } else {
            quote!()
        }
    }

    /// The layer functions' inline attribute: on SIMD targets `#[inline(always)]`, so
    /// that they are compiled into the step's `Kernel::vectorize` closure (with the
    /// kernel's instruction set), else `#[inline]`.
    fn layer_inline(&self) -> TokenStream {
        if self.simd() {
            quote!(#[inline(always)])
        } else {
            quote!(#[inline])
        }
    }

    /// `self.kernel,` as the first argument of layer calls on SIMD targets.
    fn kernel_arg(&self) -> TokenStream {
        if self.simd() {
            quote!(self.kernel,)
        } else {
            quote!()
        }
    }

    /// `RUN_STACK_BYTES`: the chunk buffers of sequence mode (`RUN_CHUNK` steps, the C
    /// back end's chunk).
    fn run_stack_bytes(&self) -> usize {
        self.p
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| match (layer, self.plan.lstm(i)) {
                (_, Some(l)) => 16 * l.ir.hidden_size + l.ir.hidden_size,
                (LayerIr::Embedding(e), _) => e.dim,
                (LayerIr::Linear(l), _) if !self.is_last(i) => l.out_size,
                (LayerIr::Linear(_), _) => 0,
                (LayerIr::Cell(l), _) => l.output_size(),
            })
            .sum::<usize>()
            * super::c::RUN_CHUNK
    }

    /// Whether layer `i` is the last one (it writes the model output).
    fn is_last(&self, i: usize) -> bool {
        i + 1 == self.p.layers.len()
    }

    fn linear(&mut self, i: usize, l: &LinearIr) -> Result<TokenStream, GenError> {
        let (isz, osz) = (l.in_size, l.out_size);
        let (il, ol) = (lit(isz), lit(osz));
        let mut items = Vec::new();
        let weight = format_ident!("L{}_WEIGHT", i);
        let bias = format_ident!("L{}_BIAS", i);
        let (mul, shift) = (
            format_ident!("L{}_REQ_MUL", i),
            format_ident!("L{}_REQ_SHIFT", i),
        );
        let full = self.unroll == Unroll::Full;
        let mat = format_ident!("L{}_MAT", i);
        if self.simd() {
            items.push(self.packed_statics(
                i,
                [&weight, &bias, &mat],
                "layer",
                &l.weight,
                &l.bias,
                osz,
                isz,
            )?);
            items.push(self.requant_statics(i, "REQ", &l.req, "the accumulators"));
        } else if !full {
            let d = self.layer_doc(
                i,
                &format!("weights, [{osz}][{isz}] int8 codes stored as bytes"),
            );
            items.push(self.bytes_static(&weight, &l.weight, isz, d));
            let d = self.layer_doc(i, "biases (input zero point folded in)");
            items.push(Self::i32_static(&bias, &l.bias, d));
            items.push(self.requant_statics(i, "REQ", &l.req, "the accumulators"));
        }
        // Output element type and the conversion from the requantized value.
        let (out_ty, convert): (TokenStream, Box<dyn Fn(TokenStream) -> TokenStream>) =
            match l.output {
                LinearOutput::I32 => (quote!(i32), Box::new(|v| v)),
                LinearOutput::I8 { zero_point } => {
                    let zp = int(zero_point as i64);
                    if self.is_last(i) {
                        (
                            quote!(i32),
                            Box::new(move |v| quote!(saturate_i8(#v.saturating_add(#zp)) as i32)),
                        )
                    } else {
                        (
                            quote!(i8),
                            Box::new(move |v| quote!(saturate_i8(#v.saturating_add(#zp)))),
                        )
                    }
                }
            };
        let uses = match l.output {
            LinearOutput::I32 => quote!(
                use ::irnn_runtime::multiply_by_quantized_multiplier;
            ),
            LinearOutput::I8 { .. } => {
                quote!(
                    use ::irnn_runtime::{multiply_by_quantized_multiplier, saturate_i8};
                )
            }
        };
        let body = if full {
            let x = quote!(x);
            let values = (0..osz).map(|o| {
                let sum = unrolled_sum(l.bias[o], &l.weight[o * isz..(o + 1) * isz], &x);
                let (m, s) = (int(l.req[o].multiplier as i64), int(l.req[o].shift as i64));
                convert(quote!(multiply_by_quantized_multiplier(#sum, #m, #s)))
            });
            quote!(*out = [#(#values),*];)
        } else if self.simd() {
            let value = convert(quote!(multiply_by_quantized_multiplier(sum, #mul[r], #shift[r])));
            quote! {
                let mut acc = [0i32; #ol];
                kernel.matvec(&#mat, x, &mut acc);
                for (r, &sum) in acc.iter().enumerate() {
                    out[r] = #value;
                }
            }
        } else {
            let value = convert(quote!(multiply_by_quantized_multiplier(sum, #mul[r], #shift[r])));
            self.matvec_loop(
                &weight,
                &bias,
                &format_ident!("x"),
                isz,
                quote!(out[r] = #value;),
            )
        };
        let fdoc = self.layer_doc(i, &format!("fully connected, {isz} → {osz}"));
        let f = format_ident!("l{}_linear", i);
        let kparam = self.kernel_param();
        let inline = self.layer_inline();
        items.push(quote! {
            #fdoc
            #[allow(clippy::needless_range_loop)]
            #inline
            fn #f(#kparam x: &[i8; #il], out: &mut [#out_ty; #ol]) {
                #uses
                #body
            }
        });
        Ok(quote!(#(#items)*))
    }

    /// The state struct and its methods.
    fn model(&self) -> TokenStream {
        let p = self.p;
        let mut fields = Vec::new();
        let mut inits = Vec::new();
        let mut steps = Vec::new();
        // Sequence mode (SIMD targets): the same layers, each over a chunk of steps.
        let mut chunk = Vec::new();
        let mut src = Src::Features;
        let ka = self.kernel_arg();
        for (i, layer) in p.layers.iter().enumerate() {
            let cs = src.chunk_expr();
            match (layer, self.plan.lstm(i)) {
                (LayerIr::Embedding(e), _) => {
                    let table = format_ident!("L{}_EMBEDDING", i);
                    let dl = lit(e.dim);
                    let zp = int(saturate_i8(e.zero_point) as i64);
                    // The row of `token` (none out of range) copied into `x0`.
                    let row = quote! {
                        usize::try_from(token)
                            .ok()
                            .and_then(|t| #table.chunks_exact(#dl).nth(t))
                    };
                    let copy = quote! {
                        if let Some(row) = row {
                            for (dst, src) in x0.iter_mut().zip(row) {
                                *dst = *src as i8;
                            }
                        }
                    };
                    chunk.push(quote! {
                        let mut x0s = [[#zp; #dl]; RUN_CHUNK];
                        for (x0, &token) in x0s.iter_mut().zip(xs) {
                            let row = #row;
                            #copy
                        }
                    });
                    steps.push(quote! {
                        let row = #row;
                        let mut x0 = [#zp; #dl];
                        #copy
                    });
                    src = Src::Embedded;
                }
                (_, Some(lp)) => {
                    let l = &lp.ir;
                    let (h, c) = (format_ident!("l{}_h", i), format_ident!("l{}_c", i));
                    let hl = lit(l.hidden_size);
                    let zp = int(saturate_i8(l.h_zero_point) as i64);
                    let d1 = self.layer_doc(i, "hidden state (int8 codes)");
                    let d2 = self.layer_doc(i, "cell state (int16 codes)");
                    fields.push(quote! {
                        #d1
                        #h: [i8; #hl],
                        #d2
                        #c: [i16; #hl],
                    });
                    inits.push(quote!(#h: [#zp; #hl], #c: [0; #hl],));
                    let f = format_ident!("l{}_lstm", i);
                    let x = src.expr();
                    steps.push(quote!(#f(#ka #x, &mut self.#h, &mut self.#c);));
                    let fc = format_ident!("l{}_cell", i);
                    chunk.push(projected_chunk(
                        i,
                        &format_ident!("L{}_MAT_X", i),
                        4 * l.hidden_size,
                        &cs,
                        quote!(#fc(kernel, a, &mut self.#h, &mut self.#c);),
                        &h,
                        l.hidden_size,
                    ));
                    src = Src::Hidden(i);
                }
                (LayerIr::Cell(l), None) => {
                    let mut args = Vec::new();
                    for b in &l.buffers {
                        match b.role {
                            crate::ir::ops::Role::State { reset } => {
                                let field = format_ident!("l{}_{}", i, b.name);
                                let ty = format_ident!("{}", b.dtype.rust_type());
                                let len = lit(b.len);
                                let v = int(reset as i64);
                                let d = self.layer_doc(
                                    i,
                                    &format!("{} state \"{}\"", l.kind.as_str(), b.name),
                                );
                                fields.push(quote! {
                                    #d
                                    #field: [#ty; #len],
                                });
                                inits.push(quote!(#field: [#v; #len],));
                                args.push(Some(quote!(&mut self.#field)));
                            }
                            crate::ir::ops::Role::Input => args.push(None),
                            crate::ir::ops::Role::Temp => {}
                        }
                    }
                    // `cell` checked that the output is the state buffer `h`.
                    let f = format_ident!("l{}_cell", i);
                    let x = src.expr();
                    // `None` stands for the layer input.
                    let step_args: Vec<TokenStream> = args
                        .iter()
                        .map(|a| a.clone().unwrap_or_else(|| x.clone()))
                        .collect();
                    steps.push(quote!(#f(#ka #(#step_args),*);));
                    let (h, hs, hl) = (
                        format_ident!("l{}_h", i),
                        format_ident!("hs{}", i),
                        lit(l.output_size()),
                    );
                    match self.plan.chunk_op(i).map(|k| &l.ops[k]) {
                        // The input projection of the whole chunk first (`l{i}_rec` runs
                        // the rest), as the LSTM's.
                        Some(crate::ir::ops::Op::MatVec { mat, acc, .. }) => {
                            let rec = format_ident!("l{}_rec", i);
                            let states = args.iter().flatten();
                            chunk.push(projected_chunk(
                                i,
                                &format_ident!("L{}_M{}_MAT", i, mat),
                                acc.len,
                                &cs,
                                quote!(#rec(kernel, #(#states,)* a);),
                                &h,
                                l.output_size(),
                            ));
                        }
                        _ => {
                            let chunk_args: Vec<TokenStream> = args
                                .iter()
                                .map(|a| a.clone().unwrap_or_else(|| quote!(x)))
                                .collect();
                            chunk.push(quote! {
                                let mut #hs = [[0i8; #hl]; RUN_CHUNK];
                                for (x, h) in #cs[..len].iter().zip(&mut #hs) {
                                    #f(kernel, #(#chunk_args),*);
                                    *h = self.#h;
                                }
                            });
                        }
                    }
                    src = Src::Hidden(i);
                }
                (LayerIr::Linear(l), _) => {
                    let f = format_ident!("l{}_linear", i);
                    let x = src.expr();
                    if self.is_last(i) {
                        steps.push(quote!(#f(#ka #x, &mut self.out);));
                        chunk.push(quote! {
                            for (x, y) in #cs[..len].iter().zip(ys.iter_mut()) {
                                #f(kernel, x, y);
                            }
                        });
                    } else {
                        let y = format_ident!("y{}", i);
                        let ys = format_ident!("ys{}", i);
                        let ol = lit(l.out_size);
                        steps.push(quote! {
                            let mut #y = [0i8; #ol];
                            #f(#ka #x, &mut #y);
                        });
                        chunk.push(quote! {
                            let mut #ys = [[0i8; #ol]; RUN_CHUNK];
                            for (x, y) in #cs[..len].iter().zip(&mut #ys) {
                                #f(kernel, x, y);
                            }
                        });
                        src = Src::Local(i);
                    }
                }
            }
        }
        let name = comment_safe(&p.name);
        let struct_doc = doc(format!(
            "The recurrent state of model \"{name}\" and its last output: integer-only, no heap."
        ));
        let (input_ty, input_arg, step_doc, run_doc) = match p.input {
            InputIr::Tokens { .. } => (
                quote!(u32),
                quote!(token: u32),
                "Runs one step on a token id and returns the output codes.\n\n\
                 Ids outside `0..VOCAB_SIZE` read a row of the embedding's zero point.",
                "Runs `inputs` (token ids) one step after another",
            ),
            InputIr::Features { .. } => (
                quote!([i8; INPUT_SIZE]),
                quote!(x: &[i8; INPUT_SIZE]),
                "Runs one step on a vector of int8 features and returns the output codes.",
                "Runs `inputs` (feature vectors) one step after another",
            ),
        };
        let step_doc = doc(step_doc);
        let run_doc = doc(format!(
            "{run_doc}, continuing from the current state\n\
             (call [`Model::reset`] first to start a new sequence), and writes each step's\n\
             output to the matching row of `out`."
        ));
        let next = match p.input {
            InputIr::Tokens { .. } => quote!(*x),
            InputIr::Features { .. } => quote!(x),
        };
        // On SIMD targets the whole step (matrix-vector products and the element-wise
        // code after them) runs inside `Kernel::vectorize`, compiled with the kernel's
        // instruction set: the closure and every layer function are `#[inline(always)]`.
        let step_body = if self.simd() {
            quote! {
                let kernel = self.kernel;
                kernel.vectorize(
                    #[inline(always)]
                    || {
                        #(#steps)*
                    },
                );
            }
        } else {
            quote!(#(#steps)*)
        };
        // Sequence mode on SIMD targets (ARCHITECTURE.md, "Sequence mode"): chunks of
        // `RUN_CHUNK` steps, layer by layer; each LSTM's input projections for the whole
        // chunk by `Kernel::matvec_seq` (one pass over its input weights per chunk).
        let (run_mode_doc, run_body, run_consts) = if self.simd() {
            (
                quote! {
                    ///
                    /// Works in chunks of [`RUN_CHUNK`] steps, layer by layer: each LSTM
                    /// layer's input projections for the whole chunk first (its input
                    /// weights read once per chunk), then its recurrent part step by step.
                    /// The outputs equal those of [`Model::step`] exactly; the stack holds
                    /// about [`RUN_STACK_BYTES`] more than a step needs.
                },
                quote! {
                    let n = inputs.len().min(out.len());
                    let kernel = self.kernel;
                    for (xs, ys) in inputs[..n].chunks(RUN_CHUNK).zip(out[..n].chunks_mut(RUN_CHUNK)) {
                        let len = xs.len();
                        kernel.vectorize(
                            #[inline(always)]
                            || {
                                #(#chunk)*
                            },
                        );
                    }
                    if let Some(last) = out[..n].last() {
                        self.out = *last;
                    }
                    n
                },
                {
                    let (bytes, steps) = (lit(self.run_stack_bytes()), lit(super::c::RUN_CHUNK));
                    quote! {
                        /// Steps per chunk of [`Model::run`] (sequence mode).
                        pub const RUN_CHUNK: usize = #steps;
                        /// Bytes of the chunk buffers [`Model::run`] keeps on the stack: per
                        /// LSTM layer the input projections (`RUN_CHUNK x 4 x hidden` int32)
                        /// and its hidden states (`RUN_CHUNK x hidden` int8), plus the
                        /// embedding and intermediate linear outputs.
                        pub const RUN_STACK_BYTES: usize = #bytes;
                    }
                },
            )
        } else {
            (
                quote!(),
                quote! {
                    let mut n = 0;
                    for (x, y) in inputs.iter().zip(out.iter_mut()) {
                        *y = *self.step(#next);
                        n += 1;
                    }
                    n
                },
                quote!(),
            )
        };
        let (create_doc, kernel_field, constructors) = if self.simd() {
            // The runtime's `Isa` variant of the target's row.
            let isa = format_ident!("{}", format!("{:?}", self.target.info().isa));
            let new_doc = doc(format!(
                "A model in the reset state (every hidden state at its zero point, every cell\n\
                 state 0) running the best matrix-vector kernel this CPU has for weights packed\n\
                 for {}: `Kernel::best_for`, with the portable kernel as the fallback (run-time\n\
                 detection with irnn-runtime's feature `std`, compile-time target features\n\
                 without it).",
                self.target.name()
            ));
            (
                quote! {
                    /// Create it with [`Model::new`] (which picks the matrix-vector kernel for this
                    /// CPU once) or [`Model::with_kernel`] (a `const fn`), feed it with
                    /// [`Model::step`] or [`Model::run`], and start a new sequence with
                    /// [`Model::reset`].
                },
                quote! {
                    /// The matrix-vector kernel (verified to run on this CPU).
                    kernel: ::irnn_runtime::simd::Kernel,
                },
                quote! {
                    #new_doc
                    pub fn new() -> Self {
                        Self::with_kernel(::irnn_runtime::simd::Kernel::best_for(
                            ::irnn_runtime::simd::Isa::#isa,
                        ))
                    }

                    /// A model in the reset state running `kernel` (any kernel gives the same
                    /// outputs; one that does not fit the packed layout runs the portable code).
                    pub const fn with_kernel(kernel: ::irnn_runtime::simd::Kernel) -> Self {
                        Model {
                            #(#inits)*
                            out: [0; OUTPUT_SIZE],
                            kernel,
                        }
                    }

                    /// The matrix-vector kernel this model runs.
                    pub fn kernel(&self) -> ::irnn_runtime::simd::Kernel {
                        self.kernel
                    }

                    /// Returns to the reset state (the start of a new sequence), keeping the kernel.
                    pub fn reset(&mut self) {
                        *self = Self::with_kernel(self.kernel);
                    }
                },
            )
        } else {
            (
                quote! {
                    /// Create it with [`Model::new`] (a `const fn`, so it can live in a `static`),
                    /// feed it with [`Model::step`] or [`Model::run`], and start a new sequence with
                    /// [`Model::reset`].
                },
                quote!(),
                quote! {
                    /// A model in the reset state: every hidden state at its zero point, every
                    /// cell state 0.
                    pub const fn new() -> Self {
                        Model {
                            #(#inits)*
                            out: [0; OUTPUT_SIZE],
                        }
                    }

                    /// Returns to the reset state (the start of a new sequence).
                    pub fn reset(&mut self) {
                        *self = Self::new();
                    }
                },
            )
        };
        quote! {
            #struct_doc
            ///
            #create_doc
            #[derive(Clone, Debug, PartialEq, Eq)]
            #[allow(dead_code)]
            pub struct Model {
                #(#fields)*
                /// Output codes of the last step.
                out: [i32; OUTPUT_SIZE],
                #kernel_field
            }

            #[allow(dead_code)]
            impl Model {
                #constructors

                #step_doc
                pub fn step(&mut self, #input_arg) -> &[i32; OUTPUT_SIZE] {
                    #step_body
                    &self.out
                }

                #run_doc
                ///
                /// Runs `min(inputs.len(), out.len())` steps and returns that number: inputs
                /// beyond the end of `out` are not consumed, and rows of `out` beyond the end
                /// of `inputs` are left untouched.
                #run_mode_doc
                pub fn run(&mut self, inputs: &[#input_ty], out: &mut [[i32; OUTPUT_SIZE]]) -> usize {
                    #run_body
                }
            }
            #run_consts

            impl Default for Model {
                fn default() -> Self {
                    Self::new()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_pairs_round_trip() {
        for real in [1.0, 0.5, 0.75, 1e-5, 3.0e3, 0.123456789] {
            let (m, e) = scale_pair(real);
            assert!((1 << 30..=i32::MAX).contains(&m), "{real}: {m}");
            let back = m as f64 * 2f64.powi(e - 31);
            assert!((back - real).abs() <= real * 1e-9, "{real} -> {back}");
        }
        assert_eq!(scale_pair(0.0), (0, 0));
        assert_eq!(scale_pair(f64::NAN), (0, 0));
    }

    #[test]
    fn unrolled_sums_skip_zeros_and_units() {
        let x = quote!(x);
        let s = unrolled_sum(0, &[0, 1, -1, 3, -4], &x).to_string();
        assert_eq!(
            s,
            "x [1usize] as i32 - x [2usize] as i32 + x [3usize] as i32 * 3 - x [4usize] as i32 * 4"
                .replace("usize", "")
        );
        assert_eq!(unrolled_sum(-7, &[0, 0], &x).to_string(), "- 7");
        assert_eq!(unrolled_sum(0, &[-1], &x).to_string(), "- (x [0] as i32)");
        assert_eq!(unrolled_sum(0, &[-5], &x).to_string(), "x [0] as i32 * - 5");
    }

    #[test]
    fn byte_strings_wrap_at_rows() {
        let mut s = String::new();
        write_byte_string(&mut s, &[0, 255, 1], 2, 4);
        assert_eq!(s, "b\"\\x00\\xff\\x01\"");
        let mut s = String::new();
        let data: Vec<u8> = (0..20).collect();
        write_byte_string(&mut s, &data, 10, 4);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(lines[1].starts_with("    \\x00") && lines[1].ends_with("\\x09\\"));
        assert_eq!(lines[3], "\"");
    }
}
