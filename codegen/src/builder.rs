//! The build.rs shell over [`crate::compile::compile`], in the style of `prost-build`.
//!
//! A build script names quantized graphs (`.irnn.json` plus their tensor files); the
//! [`Builder`] compiles each one, writes the files into `OUT_DIR`
//! (only when their contents changed, so mtimes stay put and nothing downstream
//! rebuilds needlessly) and tells cargo to rerun the script when a model changes.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     irnn_codegen::builder::Builder::new()
//!         .model("model/charlm.irnn.json")
//!         .unroll(irnn_codegen::back::Unroll::Inner)
//!         .compile()?;
//!     Ok(())
//! }
//! ```
//!
//! ```ignore
//! // src/main.rs: the generated file is a module body.
//! mod charlm {
//!     include!(concat!(env!("OUT_DIR"), "/charlm.rs"));
//! }
//!
//! let mut model = charlm::Model::new();
//! let logits: &[i32; charlm::OUTPUT_SIZE] = model.step(17);
//! ```
//!
//! The generated file is named after the model's `name` field, sanitized
//! (`charlm.rs` above); [`Builder::compile`] returns the paths it wrote.

use crate::back::{Lang, Precision, Target, Unroll};
use crate::compile::{compile, CompileError, CompileOptions};
use crate::util::write_if_changed;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why [`Builder::compile`] failed. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No model was given to the builder.
    #[error("irnn Builder: no model given; call .model(\"path/to/model.irnn.json\") first")]
    NoModels,
    /// No output directory: neither [`Builder::out_dir`] nor `OUT_DIR` is set.
    #[error(
        "irnn Builder: OUT_DIR is not set (is this running outside a build script?); \
         call .out_dir(...) to choose a directory"
    )]
    NoOutDir,
    /// The graph could not be loaded, lowered or generated with these options.
    #[error("irnn Builder: {0}")]
    Compile(#[from] CompileError),
    /// Two models generate a file of the same name.
    #[error(
        "irnn Builder: {} and {} both generate {file}; give the models different names",
        first.display(),
        second.display()
    )]
    DuplicateOutput {
        /// The generated file name.
        file: String,
        /// The first model.
        first: PathBuf,
        /// The second model.
        second: PathBuf,
    },
    /// A generated file could not be written.
    #[error("irnn Builder: {}: cannot write: {source}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Generates code for quantized models from a build script.
///
/// Defaults: Rust, the portable scalar target, no unrolling, output to `OUT_DIR`, and
/// `cargo:rerun-if-changed` lines for every model and tensor file.
#[derive(Clone, Debug)]
pub struct Builder {
    models: Vec<PathBuf>,
    options: CompileOptions,
    out_dir: Option<PathBuf>,
    rerun_if_changed: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with the defaults and no models.
    pub fn new() -> Self {
        Builder {
            models: Vec::new(),
            options: CompileOptions::default(),
            out_dir: None,
            rerun_if_changed: true,
        }
    }

    /// Adds a quantized graph (`.irnn.json`). Relative paths are relative to the
    /// current directory, which cargo sets to the package root for build scripts.
    pub fn model(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.models.push(path.as_ref().to_path_buf());
        self
    }

    /// Output language (default Rust).
    pub fn lang(&mut self, lang: Lang) -> &mut Self {
        self.options.lang = lang;
        self
    }

    /// Kernel target (default portable scalar).
    pub fn target(&mut self, target: Target) -> &mut Self {
        self.options.target = target;
        self
    }

    /// Loop unrolling (default none).
    pub fn unroll(&mut self, unroll: Unroll) -> &mut Self {
        self.options.unroll = unroll;
        self
    }

    /// Arithmetic (default int8, the product; `Precision::F32` writes the float
    /// counterpart of the same model, for comparisons).
    pub fn precision(&mut self, precision: Precision) -> &mut Self {
        self.options.precision = precision;
        self
    }

    /// Fusion (default auto; `Fusion::None` writes every recurrent layer op by op).
    pub fn fusion(&mut self, fusion: crate::back::Fusion) -> &mut Self {
        self.options.fusion = fusion;
        self
    }

    /// All options at once ([`CompileOptions`], or the back ends'
    /// [`crate::back::GenOptions`]).
    pub fn options(&mut self, options: impl Into<CompileOptions>) -> &mut Self {
        self.options = options.into();
        self
    }

    /// Writes into `dir` instead of `OUT_DIR` (created if missing).
    pub fn out_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Whether to print `cargo:rerun-if-changed=` lines (default true; turn off when
    /// not running inside a build script).
    pub fn emit_rerun_if_changed(&mut self, on: bool) -> &mut Self {
        self.rerun_if_changed = on;
        self
    }

    /// Compiles every model, then writes the files. Returns the
    /// paths of the generated files (written or already up to date), in model order.
    ///
    /// Nothing is written unless every model generates.
    pub fn compile(&self) -> Result<Vec<PathBuf>, BuildError> {
        if self.models.is_empty() {
            return Err(BuildError::NoModels);
        }
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or(BuildError::NoOutDir)?,
        };
        let mut files: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
        let mut order = Vec::new();
        for model in &self.models {
            // Announce the JSON before loading it, so that fixing a broken file reruns
            // the script.
            self.rerun(model);
            let compiled = compile(model, &self.options)?;
            for input in compiled.inputs.iter().filter(|p| *p != model) {
                self.rerun(input);
            }
            for f in compiled.files {
                if let Some((first, _)) = files.get(&f.name) {
                    return Err(BuildError::DuplicateOutput {
                        file: f.name,
                        first: first.clone(),
                        second: model.clone(),
                    });
                }
                order.push(f.name.clone());
                files.insert(f.name, (model.clone(), f.contents));
            }
        }
        std::fs::create_dir_all(&out_dir).map_err(|source| BuildError::Write {
            file: out_dir.clone(),
            source,
        })?;
        let mut written = Vec::new();
        for name in order {
            let path = out_dir.join(&name);
            let contents = &files[&name].1;
            write_if_changed(&path, contents.as_bytes()).map_err(|source| BuildError::Write {
                file: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }

    fn rerun(&self, path: &Path) {
        if self.rerun_if_changed {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.irnn.json");
        let err = Builder::new()
            .model(&missing)
            .out_dir(dir.path())
            .emit_rerun_if_changed(false)
            .compile()
            .unwrap_err();
        assert!(err.to_string().contains("nope.irnn.json"), "{err}");
        let err = Builder::new().out_dir(dir.path()).compile().unwrap_err();
        assert!(matches!(err, BuildError::NoModels), "{err}");
    }
}
