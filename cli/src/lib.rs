//! # irnn-cli
//!
//! The `irnn` command-line tool, a shell over `irnn-codegen`:
//!
//! - [`cli`]: the subcommands (`quantize`, `run`, `eval`, `inspect`, `gen`, `bench`,
//!   `pwl`, `synth`; `train` runs the `irnn-train` program) and the helpers they share
//!   with the end-to-end tests (`run_program`, `evaluate`, ...);
//! - [`bench`](mod@bench): `irnn bench`, which compiles the generated C per target with a timing
//!   harness, or builds the generated Rust as a scratch crate against irnn-runtime;
//!   [`bench_cm`] counts the Cortex-M targets' instructions under QEMU;
//! - [`report`]: `irnn report`, what quantization did, as one self-contained HTML file;
//! - [`progress`]: progress bars on stderr, only on a terminal and without `--quiet`;
//! - [`summary`]: the `--json` summaries of `bench`, `quantize` and `run`.
//!
//! - [`flags`]: size flags checked against the resource limits;
//! - [`output`]: streamed outputs (`irnn run --out`).
//!
//! The binary (`src/main.rs`) only calls [`cli::main`].
#![warn(missing_docs)]

pub mod bench;
pub mod bench_cm;
pub mod cli;
pub mod flags;
pub mod output;
pub mod progress;
pub mod report;
pub mod summary;
