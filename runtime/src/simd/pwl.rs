//! PWL activations on whole int16 arrays with the table in registers
//! (docs/NUMERICS.md, "PWL lookup in generated code"): the generated LSTM tail hands
//! each gate's pre-activations (and the cell states) to [`Kernel::pwl_i16`], which runs
//! AVX-512 code when the kernel is the VNNI one and the table's scalar evaluator
//! otherwise. Both give `saturate_i16(Pwl::eval(x))` for every int16 `x`.

#[cfg(target_arch = "x86_64")]
use super::Inner;
use super::Kernel;

/// What happens to the piece value of a negative input (the table covers `|x|`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegFold {
    /// No symmetry: the table covers every input itself.
    None,
    /// `f(−x) = −f(x)`.
    Odd,
    /// `f(−x) = total − f(x)`.
    Complement(i32),
}

/// A PWL table of at most 64 pieces in the form the register evaluator reads, made by
/// the code generator from a table whose piece arithmetic is exact in `i32` on int16
/// inputs (`back::pwl_index`): the piece is the last start `<= u` (0 if none), found
/// by a binary search whose probe at distance `d` (16, 8, 4, 2, 1 after the first at
/// 32) reads `probes[level][k >> log2(2d)]`; its value is
/// `(intercepts[k] + slopes[k] · u) >> frac_bits` in wrapping `i32`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegPwl {
    /// `starts[32]` (`i32::MAX` when there are at most 32 pieces).
    pub half_start: i32,
    /// Starts `starts[(2j + 1)·d]` for `d` = 16, 8, 4, 2, 1 (2, 4, 8, 16 and 32 of
    /// them), padded with `i32::MAX`.
    pub probes: [[i32; 32]; 5],
    /// Slopes, zero padded.
    pub slopes: [i32; 64],
    /// `offsets[k] − slopes[k] · starts[k]` in wrapping `i32`, zero padded.
    pub intercepts: [i32; 64],
    /// The shift after the piece arithmetic (at most 31).
    pub frac_bits: u32,
    /// Negative inputs.
    pub fold: RegFold,
    /// `Some((out_min, out_max))`: clamp, then saturate to int16; `None` when the
    /// generator found that no int16 input needs either.
    pub clamp: Option<(i32, i32)>,
}

impl Kernel {
    /// `x = saturate_i16(scalar(x))` for every element of `xs`, where `scalar` is the
    /// table's exact evaluator (`Pwl::eval` on int16 inputs) and `t` its register form.
    /// With the AVX-512 VNNI kernel (AVX-512F proven on this CPU) 16 elements at a time
    /// with `t`, the rest with `scalar`.
    #[inline(always)]
    pub fn pwl_i16(self, t: &RegPwl, xs: &mut [i16], scalar: impl Fn(i16) -> i32) {
        #[cfg(target_arch = "x86_64")]
        let done = match self.0 {
            Inner::Avx512Vnni(k) => k.pwl_i16(t, xs),
            _ => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = {
            let _ = t;
            0
        };
        for x in xs.iter_mut().skip(done) {
            *x = scalar(*x).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
    }
}
