//! # irnn-macros
//!
//! `include_model!("path/to/model.irnn.json")` compiles a quantized irnn model into
//! Rust at build time: a thin shell over `irnn_codegen::back::generate`, the same core
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
//! - An optional second argument chooses the unrolling:
//!   `include_model!("m.irnn.json", unroll = "inner")` (`"none"`, the default,
//!   `"inner"` or `"full"`).
//! - The calling crate must depend on `irnn-runtime`; the generated code is `no_std`
//!   and uses only `core` and `irnn_runtime`.
//! - The expansion includes the model JSON and its tensor file with `include_bytes!`,
//!   so cargo rebuilds the crate when either changes.
//! - A missing, invalid or unsupported model is a compile error pointing at the path
//!   literal (or at the option that is wrong).

use irnn_codegen::back::{generate, GenOptions, Lang, Target, Unroll};
use irnn_codegen::graph::Graph;
use irnn_codegen::lower::lower;
use irnn_codegen::util::resolve_relative;
use proc_macro::TokenStream;
use quote::quote;
use std::path::{Path, PathBuf};
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

/// The macro's arguments: a path literal and optional `key = "value"` options.
struct Args {
    path: LitStr,
    unroll: Unroll,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let path: LitStr = input.parse()?;
        let mut unroll = Unroll::None;
        while input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            match key.to_string().as_str() {
                "unroll" => {
                    unroll = match value.value().as_str() {
                        "none" => Unroll::None,
                        "inner" => Unroll::Inner,
                        "full" => Unroll::Full,
                        other => {
                            return Err(syn::Error::new(
                                value.span(),
                                format!("unknown unroll \"{other}\": expected \"none\", \"inner\" or \"full\""),
                            ))
                        }
                    }
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{other}`: the only option is `unroll = \"none\" | \"inner\" | \"full\"`"),
                    ))
                }
            }
        }
        if !input.is_empty() {
            return Err(input.error("expected `, unroll = \"...\"` or the end of the arguments"));
        }
        Ok(Args { path, unroll })
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
    let graph = Graph::load(&path).map_err(|e| fail(format!("irnn: {e}")))?;
    let tensors = absolute(&resolve_relative(&path, &graph.file.tensors));
    let program = lower(&graph).map_err(|e| fail(format!("irnn: {e}")))?;
    let opts = GenOptions {
        lang: Lang::Rust,
        target: Target::Scalar,
        unroll: args.unroll,
        precision: Default::default(),
    };
    let files = generate(&program, &opts).map_err(|e| fail(format!("irnn: {raw}: {e}")))?;
    let mut code = proc_macro2::TokenStream::new();
    for f in files {
        let tokens: proc_macro2::TokenStream = f.contents.parse().map_err(|e| {
            fail(format!(
                "irnn: internal error: generated code does not lex: {e}"
            ))
        })?;
        code.extend(tokens);
    }
    let (json, tensors) = (path_str(&path, span)?, path_str(&tensors, span)?);
    Ok(quote! {
        // Make cargo track the model files: the crate rebuilds when either changes.
        const _: &[u8] = include_bytes!(#json);
        const _: &[u8] = include_bytes!(#tensors);
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
