//! # irnn-runtime
//!
//! The integer primitives of irnn: the single source of truth for integer semantics.
//! The reference interpreter (in `irnn-codegen`) and the Rust code that `irnn gen`
//! writes call these functions; the C back end renders the same primitives into a
//! header, and the test suite proves that both agree bit for bit.
//!
//! The crate is `no_std`, allocates nothing and uses no floating point. Every rounding
//! rule is written down in `docs/NUMERICS.md`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod kernels;
pub mod pwl;
pub mod requant;
pub mod sqrt;

pub use pwl::{Pwl, Symmetry};
pub use requant::{
    multiply_by_quantized_multiplier, rounding_divide_by_pot, rounding_shift_right_i64,
    saturate_i16, saturate_i8, saturating_rounding_doubling_high_mul, Requant,
};
