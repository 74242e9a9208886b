//! # irnn-codegen
//!
//! The irnn compiler core. It owns:
//!
//! - [`spec`]: the float model input (a JSON spec plus PyTorch weights in safetensors);
//! - [`graph`]: the quantized graph format (`.irnn.json` plus integer safetensors);
//! - [`quantize`]: calibration (post-training quantization) from float model to graph;
//! - [`pwl`]: the adaptive piecewise-linear fit of sigmoid, tanh and exp;
//! - [`ir`] and [`lower`]: the integer IR and the passes that fold scales, zero points
//!   and tables into it;
//! - [`interp`]: the reference interpreter (the ground truth) and [`float_ref`], the
//!   same network in floating point;
//! - [`compile`]: graph file in, generated files out (in memory) — the one entry point
//!   of `irnn gen`, the build.rs [`builder::Builder`] and `include_model!`;
//! - [`limits`]: resource limits on what input files may ask for;
//! - [`npy`]: reading and writing `.npy` data; [`output`]: atomic output sets;
//! - [`synth`]: random models for benchmarks and tests; [`metrics`]: bits per token.
//!
//! The `irnn` command-line tool is the `irnn-cli` crate (`cli/`).
#![warn(missing_docs)]

pub mod back;
pub mod builder;
pub mod compile;
pub mod error;
pub mod float_ref;
pub mod graph;
pub mod interp;
pub mod ir;
pub mod limits;
pub mod lower;
pub mod metrics;
pub mod npy;
pub mod output;
pub mod pwl;
pub mod quantize;
pub mod spec;
pub mod synth;
pub mod tensors;
pub mod util;
