//! One compile: a quantized graph file in, generated source files out, in memory.
//!
//! [`compile`] loads the graph (`.irnn.json` and its tensor file), checks the options,
//! lowers the graph to the integer IR and runs the back end — or, for
//! [`Precision::F32`], writes the float counterpart from the graph. The three shells
//! only decide where the files go: `irnn gen` writes them into a directory, the build.rs
//! [`crate::builder::Builder`] into `OUT_DIR` (with `cargo:rerun-if-changed` for
//! [`Compiled::inputs`]), and `include_model!` expands them in place (with
//! `include_bytes!` of the inputs).
//!
//! ```no_run
//! use irnn_codegen::back::{Lang, Target};
//! use irnn_codegen::compile::{compile, CompileOptions};
//!
//! let opts = CompileOptions::new().lang(Lang::C).target(Target::Avx2);
//! let out = compile("model/charlm.irnn.json".as_ref(), &opts)?;
//! for f in &out.files {
//!     println!("{}: {} bytes", f.name, f.contents.len());
//! }
//! # Ok::<(), irnn_codegen::compile::CompileError>(())
//! ```
//!
//! Option values have one spelling everywhere (`irnn gen --target avx512vnni`,
//! `include_model!(…, target = "avx512vnni")`): [`std::str::FromStr`] on [`Lang`],
//! [`Target`], [`Unroll`] and [`Precision`] parses it, [`unroll_name`] and the enums'
//! `name` methods write it.

use crate::back::{generate, generate_f32, GenError, GenOptions, GeneratedFile, Lang, Precision};
use crate::back::{Fusion, Target, Unroll};
use crate::error::LoadError;
use crate::graph::Graph;
use crate::lower::{lower, LowerError};
use crate::util::resolve_relative;
use std::path::{Path, PathBuf};

/// What to generate. Defaults: Rust, the portable scalar target, no unrolling, int8.
///
/// Fields are public; the methods of the same names set them in a chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Output language.
    pub lang: Lang,
    /// Kernel target.
    pub target: Target,
    /// Loop unrolling: [`Target::Scalar`] and [`Precision::Int8`] only.
    pub unroll: Unroll,
    /// The integer model (the product) or its f32 counterpart.
    pub precision: Precision,
    /// Fused emitters where a layer matches their pattern, or every recurrent layer op
    /// by op (`back::plan`).
    pub fusion: Fusion,
}

impl Default for CompileOptions {
    fn default() -> Self {
        GenOptions::default().into()
    }
}

impl From<GenOptions> for CompileOptions {
    fn from(o: GenOptions) -> Self {
        CompileOptions {
            lang: o.lang,
            target: o.target,
            unroll: o.unroll,
            precision: o.precision,
            fusion: o.fusion,
        }
    }
}

impl From<&CompileOptions> for GenOptions {
    fn from(o: &CompileOptions) -> Self {
        GenOptions {
            lang: o.lang,
            target: o.target,
            unroll: o.unroll,
            precision: o.precision,
            fusion: o.fusion,
        }
    }
}

impl CompileOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the output language.
    pub fn lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    /// Sets the kernel target.
    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Sets the loop unrolling.
    pub fn unroll(mut self, unroll: Unroll) -> Self {
        self.unroll = unroll;
        self
    }

    /// Sets the precision.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Sets the fusion.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Refuses option combinations no back end writes: unrolling applies to the integer
    /// model on the scalar target only (the SIMD targets have their own kernels; the f32
    /// counterpart has none). [`compile`] calls this before reading any file.
    pub fn check(&self) -> Result<(), GenError> {
        GenOptions::from(self).check()
    }
}

/// The result of [`compile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// The generated files, named after the model (`charlm.rs`; `charlm.h` and
    /// `charlm.c`), in the order the back end wrote them.
    pub files: Vec<GeneratedFile>,
    /// Every file read: the graph JSON as given, then its tensor file (resolved
    /// against the JSON's directory). For `cargo:rerun-if-changed` or `include_bytes!`.
    pub inputs: Vec<PathBuf>,
}

/// Why [`compile`] failed. Every message names the graph file.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The graph or its tensors could not be read or are invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The graph could not be lowered to the integer IR.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// The options are not supported together, or generation failed.
    #[error("{}: cannot generate code: {error}", model.display())]
    Generate {
        /// The graph file.
        model: PathBuf,
        /// What went wrong (in the message, so not also a `source`).
        error: GenError,
    },
}

/// Loads the quantized graph at `graph_path`, checks `opts`, lowers and generates;
/// returns the files in memory and the paths read. Writes nothing.
pub fn compile(graph_path: &Path, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    let gen_error = |error| CompileError::Generate {
        model: graph_path.to_path_buf(),
        error,
    };
    opts.check().map_err(gen_error)?;
    let graph = Graph::load(graph_path)?;
    let inputs = vec![
        graph_path.to_path_buf(),
        resolve_relative(graph_path, &graph.file.tensors),
    ];
    let gen_opts = GenOptions::from(opts);
    let files = match opts.precision {
        Precision::Int8 => generate(&lower(&graph)?, &gen_opts),
        Precision::F32 => generate_f32(&graph, &gen_opts),
    }
    .map_err(gen_error)?;
    Ok(Compiled { files, inputs })
}

/// An option value that is not one of the names below; the message lists them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {option} \"{value}\": expected {}", expected_list(.expected))]
pub struct UnknownValue {
    /// The option: `lang`, `target`, `unroll` or `precision`.
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// The accepted names.
    pub expected: Vec<&'static str>,
}

fn expected_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

fn parse_name<T: Copy>(
    option: &'static str,
    value: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, UnknownValue> {
    all.iter()
        .copied()
        .find(|&v| name(v) == value)
        .ok_or_else(|| UnknownValue {
            option,
            value: value.to_string(),
            expected: all.iter().map(|&v| name(v)).collect(),
        })
}

/// The name of a [`Unroll`] value: `none`, `inner`, `full`.
pub fn unroll_name(u: Unroll) -> &'static str {
    match u {
        Unroll::None => "none",
        Unroll::Inner => "inner",
        Unroll::Full => "full",
    }
}

fn lang_name(l: Lang) -> &'static str {
    match l {
        Lang::Rust => "rust",
        Lang::C => "c",
    }
}

impl std::str::FromStr for Lang {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name("lang", s, &[Lang::Rust, Lang::C], lang_name)
    }
}

impl std::str::FromStr for Target {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name("target", s, &Target::ALL, Target::name)
    }
}

impl std::str::FromStr for Unroll {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name(
            "unroll",
            s,
            &[Unroll::None, Unroll::Inner, Unroll::Full],
            unroll_name,
        )
    }
}

impl std::str::FromStr for Fusion {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name("fusion", s, &[Fusion::Auto, Fusion::None], Fusion::name)
    }
}

impl std::str::FromStr for Precision {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name(
            "precision",
            s,
            &[Precision::Int8, Precision::F32],
            Precision::name,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_combinations_are_checked_before_loading() {
        let missing = Path::new("no/such/model.irnn.json");
        for (opts, message) in [
            (
                CompileOptions::new()
                    .unroll(Unroll::Inner)
                    .target(Target::Avx2),
                "--unroll applies to targets with portable kernels only (target avx2 has its own kernels)",
            ),
            (
                CompileOptions::new()
                    .unroll(Unroll::Full)
                    .precision(Precision::F32)
                    .lang(Lang::C),
                "--unroll applies to --precision int8 only",
            ),
        ] {
            let err = compile(missing, &opts).unwrap_err().to_string();
            assert!(
                err.starts_with("no/such/model.irnn.json: cannot generate code")
                    && err.contains(message),
                "{err}"
            );
        }
        let err = compile(missing, &CompileOptions::new()).unwrap_err();
        assert!(matches!(err, CompileError::Load(_)), "{err}");
        assert!(err.to_string().contains("no/such/model.irnn.json"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>(), Ok(t));
        }
        for u in [Unroll::None, Unroll::Inner, Unroll::Full] {
            assert_eq!(unroll_name(u).parse::<Unroll>(), Ok(u));
        }
        assert_eq!("c".parse::<Lang>(), Ok(Lang::C));
        assert_eq!("f32".parse::<Precision>(), Ok(Precision::F32));
        assert_eq!(
            "sideways".parse::<Unroll>().unwrap_err().to_string(),
            "unknown unroll \"sideways\": expected \"none\", \"inner\" or \"full\""
        );
        assert_eq!(
            "x".parse::<Precision>().unwrap_err().to_string(),
            "unknown precision \"x\": expected \"int8\" or \"f32\""
        );
    }
}
