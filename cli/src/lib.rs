//! # irnn-cli
//!
//! The `irnn` command-line tool, a shell over `irnn-codegen`:
//!
//! - [`cli`]: the subcommands (`quantize`, `run`, `eval`, `inspect`, `gen`, `bench`,
//!   `pwl`, `synth`; `train` runs the `irnn-train` program) and the helpers they share
//!   with the end-to-end tests (`run_program`, `evaluate`, ...);
//! - [`bench`](mod@bench): `irnn bench`, which compiles the generated C per target with a timing
//!   harness, or builds the generated Rust as a scratch crate against irnn-runtime.
//!
//! - [`flags`]: size flags checked against the resource limits;
//! - [`output`]: streamed outputs (`irnn run --out`).
//!
//! The binary (`src/main.rs`) only calls [`cli::main`].
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod flags;
pub mod output;
