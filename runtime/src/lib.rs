//! # irnn-runtime
//!
//! The integer primitives of irnn: the single source of truth for integer semantics.
//! The reference interpreter (in `irnn-codegen`) and the Rust code that `irnn gen`
//! writes call these functions; the C back end renders the same primitives into a
//! header, and the test suite proves that both agree bit for bit.
//!
//! The crate is `no_std`, allocates nothing and uses no floating point. Every rounding
//! rule is written down in `docs/NUMERICS.md`.
//!
//! `unsafe` is denied everywhere except in the per-architecture SIMD kernels of
//! [`simd`] (`simd::x86`, `simd::arm`), where every block carries its `SAFETY`
//! argument and the public API stays safe. The feature `std` (off by default) only
//! switches the SIMD kernel selection from compile-time `cfg!(target_feature)` to
//! run-time CPU detection.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod kernels;
pub mod pwl;
pub mod requant;
pub mod simd;
pub mod sqrt;

pub use pwl::{Pwl, Symmetry};
pub use requant::{
    multiply_by_quantized_multiplier, rounding_divide_by_pot, rounding_shift_right_i64,
    saturate_i16, saturate_i8, saturating_rounding_doubling_high_mul, Requant,
};
