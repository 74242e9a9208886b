//! # irnn-macros
//!
//! `include_model!("path/to/model.irnn.json")` compiles a quantized irnn model into
//! Rust at build time: a thin shell over `irnn_codegen::compile::compile`, the same core
//! the CLI and the build.rs `Builder` use.
//!
//! The macro expands to the generated items (constants, weight tables, `Model`), so
//! put it in a module of your choosing:
//!
//! ```ignore
//! mod charlm {
//!     irnn_macros::include_model!("model/charlm.irnn.json");
//! }
//!
//! let mut model = charlm::Model::new();
//! let logits: &[i32; charlm::OUTPUT_SIZE] = model.step(17);
//! ```
//!
//! - The path is relative to the directory of the crate's `Cargo.toml`
//!   (`CARGO_MANIFEST_DIR`), or absolute.
//! - Optional `key = "value"` arguments after the path, in any order:
//!   - `unroll = "none" | "inner" | "full"` (default `"none"`; scalar target only);
//!   - `target = "scalar" | "avx2" | "avx512vnni" | "neon" | "neon-dotprod"` (default
//!     `"scalar"`): SIMD matrix–vector kernels from `irnn_runtime::simd`, chosen when
//!     `Model::new` runs (run-time detection needs irnn-runtime's feature `std`; the
//!     portable kernel otherwise), as `irnn gen --target` writes;
//!   - `precision = "int8" | "f32"` (default `"int8"`): `"f32"` is the float
//!     counterpart of the same model (float features or token ids in, f32 logits out),
//!     for comparisons on equal terms;
//!   - `fusion = "auto" | "none"` (default `"auto"`): `"none"` writes every recurrent
//!     layer op by op (same results, plainer and slower code).
//!
//!   `include_model!("m.irnn.json", target = "avx512vnni")`
//! - The calling crate must depend on `irnn-runtime`; the generated code is `no_std`
//!   and uses only `core` and `irnn_runtime`.
//! - The expansion includes the model JSON and its tensor file with `include_bytes!`,
//!   so cargo rebuilds the crate when either changes.
//! - A missing, invalid or unsupported model is a compile error pointing at the path
//!   literal (or at the option that is wrong).

use irnn_codegen::back::Lang;
use irnn_codegen::compile::{compile, CompileOptions};
use proc_macro::TokenStream;
use quote::quote;
use std::path::{Path, PathBuf};
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

/// The macro's arguments: a path literal and optional `key = "value"` options.
struct Args {
    path: LitStr,
    options: CompileOptions,
}

/// The options and their values, for error messages.
const OPTIONS: &str = "`unroll = \"none\" | \"inner\" | \"full\"`, `target = \"scalar\" | \"avx2\" | \
                       \"avx512vnni\" | \"neon\" | \"neon-dotprod\"`, `precision = \"int8\" | \"f32\"`, \
                       `fusion = \"auto\" | \"none\"`";

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let path: LitStr = input.parse()?;
        // The generated code is a Rust module body.
        let mut options = CompileOptions::new().lang(Lang::Rust);
        while input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            let v = value.value();
            let bad = |e: irnn_codegen::compile::UnknownValue| syn::Error::new(value.span(), e);
            match key.to_string().as_str() {
                "unroll" => options.unroll = v.parse().map_err(bad)?,
                "target" => options.target = v.parse().map_err(bad)?,
                "precision" => options.precision = v.parse().map_err(bad)?,
                "fusion" => options.fusion = v.parse().map_err(bad)?,
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{other}`: the options are {OPTIONS}"),
                    ))
                }
            }
        }
        if !input.is_empty() {
            return Err(input.error(format!(
                "expected `, key = \"value\"` or the end of the arguments; the options are {OPTIONS}"
            )));
        }
        Ok(Args { path, options })
    }
}

/// Expands to the Rust code generated for a quantized model; see the crate docs.
#[proc_macro]
pub fn include_model(input: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(input as Args);
    match expand(&args) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn expand(args: &Args) -> syn::Result<proc_macro2::TokenStream> {
    let span = args.path.span();
    let fail = |msg: String| syn::Error::new(span, msg);
    let raw = args.path.value();
    let path = absolute(&manifest_dir().join(&raw));
    if !path.is_file() {
        return Err(fail(format!(
            "irnn model not found: \"{raw}\" (looked for {}; paths are relative to the crate's Cargo.toml)",
            path.display()
        )));
    }
    let compiled = compile(&path, &args.options).map_err(|e| fail(format!("irnn: {e}")))?;
    let mut code = proc_macro2::TokenStream::new();
    for f in compiled.files {
        let tokens: proc_macro2::TokenStream = f.contents.parse().map_err(|e| {
            fail(format!(
                "irnn: internal error: generated code does not lex: {e}"
            ))
        })?;
        code.extend(tokens);
    }
    let inputs = compiled
        .inputs
        .iter()
        .map(|p| path_str(&absolute(p), span))
        .collect::<syn::Result<Vec<_>>>()?;
    Ok(quote! {
        // Make cargo track the model files: the crate rebuilds when one changes.
        #(const _: &[u8] = include_bytes!(#inputs);)*
        #code
    })
}

/// The path made absolute (without resolving symlinks) so `include_bytes!` finds it
/// from any file.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn path_str(p: &Path, span: proc_macro2::Span) -> syn::Result<LitStr> {
    p.to_str().map(|s| LitStr::new(s, span)).ok_or_else(|| {
        syn::Error::new(
            span,
            format!("irnn: path is not valid UTF-8: {}", p.display()),
        )
    })
}
