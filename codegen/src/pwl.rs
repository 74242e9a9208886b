//! The adaptive piecewise-linear (PWL) fit of sigmoid, tanh and exp on integer grids.
//!
//! This is the key idea of iRNN (Sari, Courville, Partovi Nia, *iRNN: Integer-only
//! Recurrent Neural Network*): a nonlinearity whose input is an `int16` code `x` (real
//! value `x · 2^-input_frac_bits`) and whose output is an integer code `y ≈ f(x) ·
//! 2^output_frac_bits` is replaced by a small table of line pieces, fitted **on the
//! integer input grid** with a tolerance in output LSBs, and evaluated with integers only
//! by [`irnn_runtime::Pwl`]. `docs/PWL.md` has the measured numbers.
//!
//! # What is fitted
//!
//! The error of a table is measured exhaustively: the maximum over every input code `x`
//! of `|eval(x) − f(x · 2^-ifb) · 2^ofb|`, in output LSBs, against the exact `f64`
//! reference (not a rounded one). The runtime output is an integer, so an output code
//! `k` is acceptable at `x` iff `|k − f(x)·2^ofb| ≤ tol`; the acceptable codes form an
//! interval `[kmin(x), kmax(x)]`. When the interval is empty (for `tol < 0.5`, or where
//! the output clamp makes the tolerance unreachable, e.g. `exp(0) = 1.0` has no Q0.15
//! code) the codes with the smallest possible error are used instead, so a fit always
//! exists and its reported error is the smallest one reachable there.
//!
//! A piece evaluates `floor(M(t))` with `M(t) = (offset + slope · t) / 2^frac_bits`, so a
//! line is acceptable on a piece iff `kmin(u) ≤ M(u − start) < kmax(u) + 1` at every
//! integer `u` of the piece: a band of integer-bounded intervals, one per input code.
//! This is an exact model of the rounding (no "0.5 LSB for rounding" guess).
//!
//! # Symmetry and saturation
//!
//! Sigmoid uses `Complement { total: 2^ofb }` and tanh uses `Odd`: the table covers
//! `u = |x| ∈ [0, 32768]` and each `u` must satisfy the constraints of both `x = u` and
//! `x = −u` (with the final clamp of the runtime modelled exactly). The value at `u = 0`
//! is pinned to `2^(ofb−1)` (sigmoid) or `0` (tanh), so the symmetry holds exactly on the
//! integer outputs. Exp uses no symmetry; only `x ≤ 0` is measured (softmax inputs are
//! `≤ 0` after max subtraction) and `x > 0` is forced to the largest output code.
//! A run of input codes at the end of the domain where the largest output code is
//! acceptable (and at the start, the smallest one) becomes a single slope-0 piece.
//!
//! # Methods ([`FitMethod`])
//!
//! - **Sweep** (default): a greedy forward sweep. From the current start it finds the
//!   longest piece that still admits an acceptable *quantized* line, by galloping (lengths
//!   2, 4, 8, …) and then binary search on the piece end. The line of a candidate piece
//!   is the discrete **minimax** line of the band: it maximizes the smallest distance to
//!   the band edges. It is computed on the upper convex hull of the lower band edges and
//!   the lower convex hull of the upper band edges (both built exactly in integers): the
//!   gap between the hulls along a slope `b` is concave in `b` with breakpoints at the
//!   hull edge slopes, and its maximum is reached at one of them, where three hull
//!   points equioscillate (the discrete Remez/Chebyshev characterization). The slope is
//!   then quantized to `frac_bits` (floor or ceiling, whichever leaves the wider
//!   intercept interval), and the exact integer interval of acceptable offsets is
//!   computed on the hull vertices, so the accepted piece is exact after quantization.
//!   Greedy longest-first segmentation is optimal for feasibility problems of this kind
//!   (every sub-interval of a feasible piece is feasible), up to quantization.
//! - **Recursive** (the paper's adaptive scheme): one chord over the non-saturated range,
//!   then repeatedly the piece with the worst (post-quantization) error is split at its
//!   worst input code, until the tolerance is met or the piece budget is used up.
//! - **Uniform**: the LUT baseline: `max_pieces` equal-width pieces (±1 code; chords
//!   between uniformly spaced knots), like the 256-entry interpolated tables of TFLite Micro and
//!   CMSIS-NN.
//!
//! When the budget is too small for the tolerance, Sweep searches the smallest tolerance
//! that fits in the budget (a prediction from `pieces ∝ (tol − 0.5)^(−1/2)`, then
//! bisection to 1/128 relative), and Recursive keeps the best table seen;
//! neither fails: the report says whether the tolerance was met.
//!
//! # Quantization and the `i32` bound
//!
//! Slopes and offsets share one `frac_bits` per table, as large as possible (≤ 30) such
//! that for every piece and every input `u` of the piece inside the domain,
//! `|offset| + |slope| · |u − start| < 2^31`: 32-bit kernels are then exact. Offsets
//! include the rounding constant `2^(frac_bits−1)`. For 15-bit outputs this gives
//! `frac_bits = 16` (Sweep) or 15–16 (chord methods). Sweep fits directly in the
//! quantized domain, Recursive splits on the quantized error, and every table returned by
//! [`fit`] is measured with the runtime evaluator ([`PwlTable::as_pwl`]) on every input
//! code: the reported error is the true post-quantization error.
//!
//! All fitted tables are monotone (slopes ≥ 0, and each piece starts at or above the
//! last output of the previous one), and fitting is deterministic.

use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ir::{Activation, PwlTable, TableSymmetry};

/// Most pieces a table may have (fit budget and [`validate`]).
pub const MAX_PIECES: usize = 256;
/// Fewest pieces a fit budget may allow (a leading and a trailing saturated piece plus
/// one sloped piece).
pub const MIN_PIECES: usize = 3;
/// Largest `frac_bits` of slopes and offsets.
pub const MAX_FRAC_BITS: u32 = 30;
/// Largest supported `input_frac_bits` (the input is an `int16` code).
pub const MAX_INPUT_FRAC_BITS: u32 = 15;
/// Largest supported `output_frac_bits` (the output is an `int16` code).
pub const MAX_OUTPUT_FRAC_BITS: u32 = 15;

const INPUT_MIN: i32 = i16::MIN as i32;
const INPUT_MAX: i32 = i16::MAX as i32;
const I32_LIMIT: i128 = 1 << 31;

/// How [`fit`] places the pieces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMethod {
    /// The paper's scheme: start with one chord over the non-saturated range and split
    /// the worst piece at its worst input code until the tolerance is met.
    Recursive,
    /// Greedy forward sweep with minimax lines; the fewest pieces (the default).
    #[default]
    Sweep,
    /// Uniform pieces (a LUT with linear interpolation), for comparison.
    Uniform,
}

impl FitMethod {
    /// Every method, in the order used by reports.
    pub const ALL: [FitMethod; 3] = [FitMethod::Sweep, FitMethod::Recursive, FitMethod::Uniform];

    /// Lower-case name (`recursive`, `sweep`, `uniform`), as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            FitMethod::Recursive => "recursive",
            FitMethod::Sweep => "sweep",
            FitMethod::Uniform => "uniform",
        }
    }
}

impl fmt::Display for FitMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FitMethod {
    type Err = PwlError;

    /// Parses `recursive`, `sweep` or `uniform` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "recursive" => Ok(FitMethod::Recursive),
            "sweep" => Ok(FitMethod::Sweep),
            "uniform" => Ok(FitMethod::Uniform),
            _ => Err(PwlError::UnknownMethod(s.to_string())),
        }
    }
}

/// What to fit and how.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// The function to approximate.
    pub function: Activation,
    /// Fractional bits of the `int16` input grid, `0..=15`.
    pub input_frac_bits: u32,
    /// Fractional bits of the output grid, `1..=15` (15: Q0.15).
    pub output_frac_bits: u32,
    /// Largest acceptable error in output LSBs (finite, `>= 0`).
    pub tolerance_lsb: f64,
    /// Piece budget, `MIN_PIECES..=MAX_PIECES`; for [`FitMethod::Uniform`] the number of
    /// pieces.
    pub max_pieces: usize,
    /// The fitting algorithm.
    pub method: FitMethod,
}

impl FitOptions {
    /// Default output fractional bits (Q0.15).
    pub const DEFAULT_OUTPUT_FRAC_BITS: u32 = 15;
    /// Default tolerance, in output LSBs.
    pub const DEFAULT_TOLERANCE_LSB: f64 = 1.0;
    /// Default piece budget.
    pub const DEFAULT_MAX_PIECES: usize = 64;

    /// Options with the defaults: Q0.15 output, 1 LSB tolerance, 64 pieces, Sweep.
    pub fn new(function: Activation, input_frac_bits: u32) -> Self {
        FitOptions {
            function,
            input_frac_bits,
            output_frac_bits: Self::DEFAULT_OUTPUT_FRAC_BITS,
            tolerance_lsb: Self::DEFAULT_TOLERANCE_LSB,
            max_pieces: Self::DEFAULT_MAX_PIECES,
            method: FitMethod::Sweep,
        }
    }

    /// Checks that the options are supported.
    pub fn check(&self) -> Result<(), PwlError> {
        if self.input_frac_bits > MAX_INPUT_FRAC_BITS {
            return Err(PwlError::UnsupportedInputFracBits(self.input_frac_bits));
        }
        if self.output_frac_bits == 0 || self.output_frac_bits > MAX_OUTPUT_FRAC_BITS {
            return Err(PwlError::UnsupportedOutputFracBits(self.output_frac_bits));
        }
        if !self.tolerance_lsb.is_finite() || self.tolerance_lsb < 0.0 {
            return Err(PwlError::InvalidTolerance(self.tolerance_lsb));
        }
        if !(MIN_PIECES..=MAX_PIECES).contains(&self.max_pieces) {
            return Err(PwlError::InvalidBudget(self.max_pieces));
        }
        Ok(())
    }
}

impl Default for FitOptions {
    /// Sigmoid on a Q3.12 input grid with the defaults of [`FitOptions::new`].
    fn default() -> Self {
        FitOptions::new(Activation::Sigmoid, 12)
    }
}

/// The outcome of [`fit`], measured on every input code after quantization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Number of pieces of the table.
    pub pieces: usize,
    /// Largest error in output LSBs (see [`measure`]).
    pub max_error_lsb: f64,
    /// The same error in real units (`max_error_lsb · 2^-output_frac_bits`).
    pub max_error_abs: f64,
    /// The method used.
    pub method: FitMethod,
    /// Whether `max_error_lsb <= tolerance_lsb`.
    pub tolerance_met: bool,
}

/// The exhaustive error of a table over its measured inputs (see [`measured_inputs`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Largest `|eval(x) − f(x · 2^-ifb) · 2^ofb|`, in output LSBs.
    pub max_error_lsb: f64,
    /// The same in real units (`max_error_lsb · 2^-ofb`).
    pub max_error_abs: f64,
    /// Mean absolute error in output LSBs.
    pub mean_error_lsb: f64,
    /// An input code where the largest error occurs (the smallest such code).
    pub worst_input: i32,
    /// Largest `|eval(x) − clamp(round(f(x · 2^-ifb) · 2^ofb))|`: the distance, in whole
    /// output codes, from the correctly rounded (and clamped) result. 0 means the table
    /// is exact on the output grid; this is the "ULP" view of the error, while
    /// `max_error_lsb` also counts the up-to-0.5 LSB that rounding to any integer costs.
    pub max_code_error: i64,
    /// Number of input codes measured.
    pub inputs: usize,
}

/// Why a fit was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PwlError {
    /// `input_frac_bits` outside `0..=15`.
    #[error(
        "unsupported input_frac_bits {0}: the int16 input grid allows 0 to 15 fractional bits"
    )]
    UnsupportedInputFracBits(u32),
    /// `output_frac_bits` outside `1..=15`.
    #[error("unsupported output_frac_bits {0}: int16 outputs allow 1 to 15 fractional bits")]
    UnsupportedOutputFracBits(u32),
    /// A tolerance that is negative, infinite or NaN.
    #[error("invalid tolerance {0} LSB: it must be a finite number >= 0")]
    InvalidTolerance(f64),
    /// A piece budget outside `MIN_PIECES..=MAX_PIECES`.
    #[error("invalid piece budget {0}: it must be between {min} and {max}", min = MIN_PIECES, max = MAX_PIECES)]
    InvalidBudget(usize),
    /// A method name that is not `recursive`, `sweep` or `uniform`.
    #[error("unknown PWL fit method `{0}`: expected recursive, sweep or uniform")]
    UnknownMethod(String),
    /// A broken invariant of the fitter (a bug; please report it).
    #[error("internal error in the PWL fit: {0}")]
    Internal(String),
}

/// The symmetry a fitted table of `function` uses.
pub fn symmetry_for(function: Activation) -> TableSymmetry {
    match function {
        Activation::Sigmoid => TableSymmetry::Complement,
        Activation::Tanh => TableSymmetry::Odd,
        Activation::Exp => TableSymmetry::None,
    }
}

/// `(out_min, out_max)` of a fitted table of `function` with `output_frac_bits` bits:
/// `[0, 2^ofb − 1]` for sigmoid and exp, `[−(2^ofb − 1), 2^ofb − 1]` for tanh.
pub fn output_range(function: Activation, output_frac_bits: u32) -> (i32, i32) {
    let max = ((1i64 << output_frac_bits.min(MAX_OUTPUT_FRAC_BITS)) - 1) as i32;
    match function {
        Activation::Sigmoid | Activation::Exp => (0, max),
        Activation::Tanh => (-max, max),
    }
}

/// The input codes on which errors are measured: every `int16` code for sigmoid and
/// tanh, `[-32768, 0]` for exp (softmax inputs are never positive).
pub fn measured_inputs(function: Activation) -> RangeInclusive<i32> {
    match function {
        Activation::Sigmoid | Activation::Tanh => INPUT_MIN..=INPUT_MAX,
        Activation::Exp => INPUT_MIN..=0,
    }
}

/// The exact reference `f(x · 2^-input_frac_bits) · 2^output_frac_bits` in output LSBs.
pub fn target_lsb(
    function: Activation,
    input_frac_bits: u32,
    output_frac_bits: u32,
    x: i32,
) -> f64 {
    let real = x as f64 * pow2(-(input_frac_bits.min(2000) as i32));
    function.eval_f64(real) * pow2(output_frac_bits.min(2000) as i32)
}

/// `2^e`, exact (repeated doubling or halving of 2 is exact until it over- or underflows).
fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// The input domain of the table (`u` as seen by the runtime): `[0, 32768]` for
/// symmetric tables, the whole `int16` range otherwise.
fn table_domain(symmetry: TableSymmetry) -> (i32, i32) {
    match symmetry {
        TableSymmetry::None => (INPUT_MIN, INPUT_MAX),
        TableSymmetry::Odd | TableSymmetry::Complement => (0, -INPUT_MIN),
    }
}

/// Fits a table.
///
/// The returned table passes [`validate`], and the report is [`measure`]d on it with the
/// runtime evaluator. Fails only on unsupported options; a tolerance that cannot be met
/// within the budget gives the best table found and `tolerance_met = false`.
pub fn fit(opts: &FitOptions) -> Result<(PwlTable, FitReport), PwlError> {
    opts.check()?;
    let grid = Grid::new(opts.function, opts.input_frac_bits, opts.output_frac_bits);
    let (pieces, frac_bits) = match opts.method {
        FitMethod::Sweep => grid.sweep_with_budget(opts.tolerance_lsb, opts.max_pieces)?,
        FitMethod::Recursive => grid.recursive(opts.tolerance_lsb, opts.max_pieces)?,
        FitMethod::Uniform => grid.uniform(opts.max_pieces)?,
    };
    let table = grid.to_table(&pieces, frac_bits)?;
    validate(&table).map_err(|e| PwlError::Internal(format!("fitted table is invalid: {e}")))?;
    let measured = measure(&table);
    let report = FitReport {
        pieces: table.pieces(),
        max_error_lsb: measured.max_error_lsb,
        max_error_abs: measured.max_error_abs,
        method: opts.method,
        tolerance_met: measured.max_error_lsb <= opts.tolerance_lsb,
    };
    Ok((table, report))
}

/// Measures the error of any table (for example one read from a file) on every input code
/// of [`measured_inputs`], with the runtime evaluator. Total: never panics, even on an
/// invalid table (run [`validate`] first to know whether the numbers mean anything).
pub fn measure(table: &PwlTable) -> ErrorReport {
    let pwl = table.as_pwl();
    let inputs = measured_inputs(table.function);
    let mut worst_input = *inputs.start();
    let mut max = 0.0f64;
    let mut sum = 0.0f64;
    let mut count = 0usize;
    let mut max_code_error = 0i64;
    for x in inputs {
        let target = target_lsb(
            table.function,
            table.input_frac_bits,
            table.output_frac_bits,
            x,
        );
        let got = pwl.eval(x) as i64;
        if target.is_finite() {
            // max-then-min: `clamp` would panic on a broken table with out_min > out_max.
            let rounded = (target.round() as i64)
                .max(table.out_min as i64)
                .min(table.out_max as i64);
            max_code_error = max_code_error.max(got.saturating_sub(rounded).saturating_abs());
        }
        let err = abs_err(got, target);
        if err > max || (err.is_nan() && !max.is_nan()) {
            max = err;
            worst_input = x;
        }
        sum += err;
        count += 1;
    }
    ErrorReport {
        max_error_lsb: max,
        max_error_abs: max * pow2(-(table.output_frac_bits.min(2000) as i32)),
        mean_error_lsb: if count > 0 { sum / count as f64 } else { 0.0 },
        worst_input,
        max_code_error,
        inputs: count,
    }
}

/// Checks the structural soundness of a table from an untrusted file.
///
/// Checks: equal, non-zero lengths of at most [`MAX_PIECES`]; strictly increasing
/// `starts` inside the input domain (`[0, 32768]` for symmetric tables, the `int16`
/// range otherwise); `frac_bits <= 30`; `input_frac_bits <= 15`;
/// `output_frac_bits <= 15`; `out_min <= out_max`, both `int16` values; `total` equal to
/// `2^output_frac_bits` for `Complement` and 0 otherwise; and for every piece and every
/// input `u` of the domain that the piece evaluates,
/// `|offset| + |slope| · |u − start| < 2^31` (so that 32-bit kernels are exact). It does
/// not check accuracy: see [`measure`].
pub fn validate(table: &PwlTable) -> Result<(), String> {
    let n = table.starts.len();
    if n == 0 {
        return Err("the table has no pieces".to_string());
    }
    if table.slopes.len() != n || table.offsets.len() != n {
        return Err(format!(
            "length mismatch: {} starts, {} slopes, {} offsets",
            n,
            table.slopes.len(),
            table.offsets.len()
        ));
    }
    if n > MAX_PIECES {
        return Err(format!("{n} pieces: at most {MAX_PIECES} are allowed"));
    }
    if table.input_frac_bits > MAX_INPUT_FRAC_BITS {
        return Err(format!(
            "input_frac_bits {} is not supported (at most {MAX_INPUT_FRAC_BITS})",
            table.input_frac_bits
        ));
    }
    if table.output_frac_bits > MAX_OUTPUT_FRAC_BITS {
        return Err(format!(
            "output_frac_bits {} is not supported (at most {MAX_OUTPUT_FRAC_BITS})",
            table.output_frac_bits
        ));
    }
    if table.frac_bits > MAX_FRAC_BITS {
        return Err(format!(
            "frac_bits {} is too large (at most {MAX_FRAC_BITS})",
            table.frac_bits
        ));
    }
    if table.out_min > table.out_max {
        return Err(format!(
            "out_min {} is above out_max {}",
            table.out_min, table.out_max
        ));
    }
    if table.out_min < INPUT_MIN || table.out_max > INPUT_MAX {
        return Err(format!(
            "output range [{}, {}] does not fit in int16",
            table.out_min, table.out_max
        ));
    }
    match table.symmetry {
        TableSymmetry::Complement => {
            let expected = 1i32 << table.output_frac_bits;
            if table.total != expected {
                return Err(format!(
                    "complement symmetry needs total = 2^output_frac_bits = {expected}, found {}",
                    table.total
                ));
            }
        }
        TableSymmetry::None | TableSymmetry::Odd => {
            if table.total != 0 {
                return Err(format!(
                    "total {} is only meaningful with complement symmetry (expected 0)",
                    table.total
                ));
            }
        }
    }
    let (lo, hi) = table_domain(table.symmetry);
    for (i, &start) in table.starts.iter().enumerate() {
        if start < lo || start > hi {
            return Err(format!(
                "start {start} of piece {i} is outside the input domain [{lo}, {hi}]"
            ));
        }
        if i > 0 && start <= table.starts[i - 1] {
            return Err(format!(
                "starts are not strictly increasing: piece {} starts at {} after {}",
                i,
                start,
                table.starts[i - 1]
            ));
        }
    }
    for i in 0..n {
        let start = table.starts[i] as i64;
        let first = if i == 0 { lo as i64 } else { start };
        let last = if i + 1 < n {
            table.starts[i + 1] as i64 - 1
        } else {
            hi as i64
        };
        let reach = (first - start).abs().max((last - start).abs()) as i128;
        let worst = (table.offsets[i] as i128).abs() + (table.slopes[i] as i128).abs() * reach;
        if worst >= I32_LIMIT {
            return Err(format!(
                "piece {i} (start {}, slope {}, offset {}) overflows 32 bits: |offset| + |slope|·{reach} = {worst} >= 2^31",
                table.starts[i], table.slopes[i], table.offsets[i]
            ));
        }
    }
    Ok(())
}

/// A markdown comparison of the three methods for `function` on a Q(15−ifb).ifb input
/// grid and a Q0.15 output: the pieces each method needs for tolerances of 0.6 to 8 LSB,
/// and the error each reaches with 16 to 256 pieces. All errors are exhaustive and after
/// quantization.
pub fn error_vs_pieces_markdown(function: Activation, input_frac_bits: u32) -> String {
    const TOLERANCES: [f64; 6] = [0.6, 0.75, 1.0, 2.0, 4.0, 8.0];
    const BUDGETS: [usize; 5] = [16, 32, 64, 128, 256];
    let base = FitOptions::new(function, input_frac_bits);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#### {}: input Q{}.{}, output Q0.{}\n",
        function.as_str(),
        15u32.saturating_sub(input_frac_bits),
        input_frac_bits,
        base.output_frac_bits
    );
    if let Err(e) = base.check() {
        let _ = writeln!(out, "error: {e}");
        return out;
    }
    let grid = Grid::new(function, input_frac_bits, base.output_frac_bits);
    // Uniform error for every piece count, once (internal evaluator, identical to the
    // runtime's; see the unit tests).
    let mut uniform: Vec<(usize, f64)> = Vec::new();
    for n in MIN_PIECES..=MAX_PIECES {
        if let Ok((pieces, f)) = grid.uniform(n) {
            uniform.push((pieces.len(), grid.table_error(&pieces, f).0));
        }
    }
    let fit_with = |method: FitMethod, tol: f64, budget: usize| {
        fit(&FitOptions {
            method,
            tolerance_lsb: tol,
            max_pieces: budget,
            ..base
        })
        .map(|(_, r)| r)
    };
    let _ = writeln!(
        out,
        "Pieces needed for a maximum error ≤ tolerance (over all measured int16 inputs, after quantization):\n"
    );
    let _ = writeln!(
        out,
        "| tolerance (LSB) | sweep (minimax) | recursive (paper) | uniform (LUT) |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for &tol in &TOLERANCES {
        let cell = |method: FitMethod| match fit_with(method, tol, MAX_PIECES) {
            Ok(r) if r.tolerance_met => r.pieces.to_string(),
            Ok(r) => format!("> {MAX_PIECES} (best {:.3})", r.max_error_lsb),
            Err(e) => format!("error: {e}"),
        };
        let uni = uniform
            .iter()
            .filter(|(_, err)| *err <= tol)
            .map(|(p, _)| *p)
            .min()
            .map(|p| p.to_string())
            .unwrap_or_else(|| format!("> {MAX_PIECES}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            tol,
            cell(FitMethod::Sweep),
            cell(FitMethod::Recursive),
            uni
        );
    }
    let _ = writeln!(out, "\nMaximum error (LSB) with a piece budget:\n");
    let _ = writeln!(
        out,
        "| pieces | sweep (minimax) | recursive (paper) | uniform (LUT) |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for &budget in &BUDGETS {
        let cell = |method: FitMethod| match fit_with(method, 0.0, budget) {
            Ok(r) => format!("{:.3}", r.max_error_lsb),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            budget,
            cell(FitMethod::Sweep),
            cell(FitMethod::Recursive),
            cell(FitMethod::Uniform)
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// Internals. Positions are indices `i` into the table domain: `u = grid.lo + i`.

/// One quantized piece: `floor((offset + slope · (i − start)) / 2^frac_bits)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    start: usize,
    slope: i64,
    offset: i64,
}

/// A piece before quantization, for the chord-based methods.
#[derive(Clone, Copy, Debug)]
enum Spec {
    /// The chord of the function between `start` and `end` (inclusive) indices.
    Chord { start: usize, end: usize },
    /// A constant output code.
    Const { start: usize, value: i64 },
}

/// A segment of the recursive method with its quantized chord and error.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: usize,
    end: usize,
    err: f64,
    worst: usize,
}

/// Hull buffers of the sweep: the hulls of the longest piece known to be acceptable
/// (`good_*`) and work copies extended from them, so that testing a longer piece only
/// pushes the new points.
#[derive(Default)]
struct Scratch {
    good_upper: Vec<(i64, i64)>,
    good_lower: Vec<(i64, i64)>,
    upper: Vec<(i64, i64)>,
    lower: Vec<(i64, i64)>,
    slopes: Vec<f64>,
}

impl Scratch {
    /// Starts a piece at `s` with its first point only.
    fn start(&mut self, bands: &[(i64, i64)], s: usize, first_lo: i64, f: u32) -> Option<Piece> {
        self.good_upper.clear();
        self.good_lower.clear();
        extend_hulls(
            bands,
            s,
            0,
            1,
            first_lo,
            &mut self.good_upper,
            &mut self.good_lower,
        );
        solve_hulls(
            &self.good_upper,
            &self.good_lower,
            &mut self.slopes,
            s,
            1,
            f,
        )
    }

    /// Tests the piece `[s, s + len)`, given that `[s, s + good)` is acceptable
    /// (`good <= len`); on success its hulls become the known-good ones.
    fn try_len(
        &mut self,
        bands: &[(i64, i64)],
        s: usize,
        good: usize,
        len: usize,
        first_lo: i64,
        f: u32,
    ) -> Option<Piece> {
        self.upper.clone_from(&self.good_upper);
        self.lower.clone_from(&self.good_lower);
        extend_hulls(
            bands,
            s,
            good,
            len,
            first_lo,
            &mut self.upper,
            &mut self.lower,
        );
        let piece = solve_hulls(&self.upper, &self.lower, &mut self.slopes, s, len, f);
        if piece.is_some() {
            std::mem::swap(&mut self.upper, &mut self.good_upper);
            std::mem::swap(&mut self.lower, &mut self.good_lower);
        }
        piece
    }
}

/// Pushes the band edges of offsets `from..to` of the piece starting at `s` onto the
/// hulls: lower edges `kmin` (the first replaced by `first_lo`) onto the upper hull,
/// upper edges `kmax + 1` onto the lower hull.
fn extend_hulls(
    bands: &[(i64, i64)],
    s: usize,
    from: usize,
    to: usize,
    first_lo: i64,
    upper: &mut Vec<(i64, i64)>,
    lower: &mut Vec<(i64, i64)>,
) {
    for t in from..to {
        let (kmin, kmax) = bands[s + t];
        let lo = if t == 0 { first_lo } else { kmin };
        push_upper(upper, (t as i64, lo));
        push_lower(lower, (t as i64, kmax + 1));
    }
}

/// The widest-margin quantized line between the hulls of a piece starting at index `s`
/// with `len` points (the discrete minimax line), or `None` if no acceptable line with a
/// slope `>= 0` exists at `frac_bits = f`.
fn solve_hulls(
    upper: &[(i64, i64)],
    lower: &[(i64, i64)],
    slopes: &mut Vec<f64>,
    s: usize,
    len: usize,
    f: u32,
) -> Option<Piece> {
    // Real minimax line: maximize the vertical gap between the hulls over slopes >= 0.
    // The gap is concave in the slope with breakpoints at the hull edge slopes.
    slopes.clear();
    slopes.push(0.0);
    for hull in [upper, lower] {
        for w in hull.windows(2) {
            let b = (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0) as f64;
            if b > 0.0 {
                slopes.push(b);
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    slopes.dedup();
    let gap = |b: f64| -> f64 {
        let top = lower
            .iter()
            .map(|&(x, y)| y as f64 - b * x as f64)
            .fold(f64::INFINITY, f64::min);
        let bottom = upper
            .iter()
            .map(|&(x, y)| y as f64 - b * x as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        top - bottom
    };
    let (mut l, mut r) = (0usize, slopes.len().saturating_sub(1));
    while l < r {
        let m = (l + r) / 2;
        if gap(slopes[m]) < gap(slopes[m + 1]) {
            l = m + 1;
        } else {
            r = m;
        }
    }
    let b = *slopes.get(l)?;
    if gap(b) <= 0.0 {
        return None;
    }
    // Quantize the slope (floor or ceiling, whichever leaves the widest offset interval);
    // for a given slope the acceptable offsets form an exact integer interval, bounded by
    // hull vertices.
    let scale = 1i64 << f;
    let b0 = (b * scale as f64).floor() as i64;
    let interval = |slope: i64| -> (i128, i128) {
        let low = upper
            .iter()
            .map(|&(x, y)| (y as i128) * scale as i128 - slope as i128 * x as i128)
            .max()
            .unwrap_or(0);
        let high = lower
            .iter()
            .map(|&(x, y)| (y as i128) * scale as i128 - 1 - slope as i128 * x as i128)
            .min()
            .unwrap_or(-1);
        (low, high)
    };
    let mut best: Option<(i64, i128, i128)> = None;
    for slope in [b0, b0 + 1, b0 - 1, b0 + 2] {
        if slope < 0 {
            continue;
        }
        let (low, high) = interval(slope);
        if best.is_none_or(|(_, bl, bh)| high - low > bh - bl) {
            best = Some((slope, low, high));
        }
    }
    let (slope, low, high) = best?;
    if high < low {
        return None;
    }
    let offset = low + (high - low) / 2;
    let reach = (len.max(2) - 1) as i128;
    if offset.abs() + (slope as i128) * reach >= I32_LIMIT {
        return None;
    }
    Some(Piece {
        start: s,
        slope,
        offset: offset as i64,
    })
}

/// The fitting problem: targets on the table domain, with the symmetry folded in.
struct Grid {
    symmetry: TableSymmetry,
    function: Activation,
    ifb: u32,
    ofb: u32,
    total: i64,
    out_min: i64,
    out_max: i64,
    lo: i32,
    /// Target at `x = u`, NaN where not measured.
    pos: Vec<f64>,
    /// Target at `x = −u` (symmetric tables), NaN where absent.
    neg: Vec<f64>,
    /// First index forced to `out_max` (exp: `x > 0`).
    forced_from: usize,
}

fn abs_err(out: i64, target: f64) -> f64 {
    (out as f64 - target).abs()
}

fn rounding_constant(frac_bits: u32) -> i64 {
    if frac_bits == 0 {
        0
    } else {
        1i64 << (frac_bits - 1)
    }
}

fn cross(o: (i64, i64), a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
}

/// Appends to an upper convex hull (points by increasing x).
fn push_upper(hull: &mut Vec<(i64, i64)>, p: (i64, i64)) {
    while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) >= 0 {
        hull.pop();
    }
    hull.push(p);
}

/// Appends to a lower convex hull (points by increasing x).
fn push_lower(hull: &mut Vec<(i64, i64)>, p: (i64, i64)) {
    while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0 {
        hull.pop();
    }
    hull.push(p);
}

/// Largest `frac_bits <= 30` with `magnitude · 2^frac_bits <= 2^31`.
fn frac_bits_for(magnitude: f64) -> u32 {
    let mut f = MAX_FRAC_BITS;
    while f > 0 && magnitude * pow2(f as i32) > I32_LIMIT as f64 {
        f -= 1;
    }
    f
}

impl Grid {
    fn new(function: Activation, ifb: u32, ofb: u32) -> Grid {
        let symmetry = symmetry_for(function);
        let (out_min, out_max) = output_range(function, ofb);
        let (lo, hi) = table_domain(symmetry);
        let n = (hi - lo + 1) as usize;
        let measured = measured_inputs(function);
        let mut pos = Vec::with_capacity(n);
        let mut neg = Vec::with_capacity(n);
        for i in 0..n {
            let u = lo + i as i32;
            pos.push(if u <= INPUT_MAX && measured.contains(&u) {
                target_lsb(function, ifb, ofb, u)
            } else {
                f64::NAN
            });
            neg.push(if symmetry != TableSymmetry::None && u >= 1 {
                target_lsb(function, ifb, ofb, -u)
            } else {
                f64::NAN
            });
        }
        let forced_from = match function {
            Activation::Exp => (1 - lo) as usize,
            Activation::Sigmoid | Activation::Tanh => n,
        };
        Grid {
            symmetry,
            function,
            ifb,
            ofb,
            total: if symmetry == TableSymmetry::Complement {
                1i64 << ofb
            } else {
                0
            },
            out_min: out_min as i64,
            out_max: out_max as i64,
            lo,
            pos,
            neg,
            forced_from,
        }
    }

    fn len(&self) -> usize {
        self.pos.len()
    }

    /// The error at index `i` when the table value (before symmetry and clamp) is `v`;
    /// the same arithmetic as the runtime and [`measure`].
    fn err_at(&self, i: usize, v: i64) -> f64 {
        let mut e = 0.0f64;
        let p = self.pos[i];
        if !p.is_nan() {
            e = abs_err(v.clamp(self.out_min, self.out_max), p);
        }
        let q = self.neg[i];
        if !q.is_nan() {
            let w = match self.symmetry {
                TableSymmetry::Odd => -v,
                TableSymmetry::Complement => self.total - v,
                TableSymmetry::None => v,
            };
            let e2 = abs_err(w.clamp(self.out_min, self.out_max), q);
            if e2 > e {
                e = e2;
            }
        }
        e
    }

    /// The value a line should follow at index `i` (chords).
    fn line_target(&self, i: usize) -> f64 {
        if i >= self.forced_from {
            return self.out_max as f64;
        }
        if !self.pos[i].is_nan() {
            return self.pos[i];
        }
        let q = self.neg[i];
        if q.is_nan() {
            return 0.0;
        }
        match self.symmetry {
            TableSymmetry::Odd => -q,
            TableSymmetry::Complement => self.total as f64 - q,
            TableSymmetry::None => q,
        }
    }

    /// Largest `d` in `0..=max_d` with `err_at(i, k0 + dir·d) <= thr` (quasiconvex in d;
    /// `d = 0` is known to pass).
    fn reach(&self, i: usize, k0: i64, dir: i64, max_d: i64, thr: f64) -> i64 {
        let ok = |d: i64| self.err_at(i, k0 + dir * d) <= thr;
        let mut good = 0i64;
        let mut bad = max_d + 1;
        let mut d = 1i64;
        while d <= max_d {
            if ok(d) {
                good = d;
                d = d.saturating_mul(2);
            } else {
                bad = d;
                break;
            }
        }
        if bad == max_d + 1 && good < max_d {
            if ok(max_d) {
                good = max_d;
            } else {
                bad = max_d;
            }
        }
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if ok(mid) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        good
    }

    /// The acceptable table values `[kmin, kmax]` at every index for tolerance `tol`.
    fn bands(&self, tol: f64) -> Vec<(i64, i64)> {
        let n = self.len();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if i >= self.forced_from {
                out.push((self.out_max, self.out_max));
                continue;
            }
            if i == 0 && self.lo == 0 {
                // Exact symmetry at x = 0.
                let pin = match self.symmetry {
                    TableSymmetry::Odd => Some(0),
                    TableSymmetry::Complement => Some(self.total / 2),
                    TableSymmetry::None => None,
                };
                if let Some(pin) = pin {
                    out.push((pin, pin));
                    continue;
                }
            }
            let guess = self.line_target(i);
            if let Some(band) = self.fast_band(i, guess, tol) {
                out.push(band);
                continue;
            }
            let center = if guess.is_finite() {
                guess.round() as i64
            } else {
                0
            };
            let center = center.clamp(self.out_min, self.out_max);
            let mut best_k = center;
            let mut best_e = self.err_at(i, center);
            for k in (center - 2)..=(center + 2) {
                if k < self.out_min || k > self.out_max {
                    continue;
                }
                let e = self.err_at(i, k);
                if e < best_e {
                    best_e = e;
                    best_k = k;
                }
            }
            let thr = if best_e > tol { best_e } else { tol };
            let up = self.reach(i, best_k, 1, self.out_max - best_k, thr);
            let down = self.reach(i, best_k, -1, best_k - self.out_min, thr);
            out.push((best_k - down, best_k + up));
        }
        out
    }

    /// The band at index `i` from `|k − g| <= tol`, if [`Grid::err_at`] confirms it
    /// exactly (both ends pass, their outer neighbours fail); `None` to search instead.
    fn fast_band(&self, i: usize, g: f64, tol: f64) -> Option<(i64, i64)> {
        if !g.is_finite() {
            return None;
        }
        let kmin = ((g - tol).ceil() as i64).max(self.out_min);
        let kmax = ((g + tol).floor() as i64).min(self.out_max);
        let exact = kmin <= kmax
            && self.err_at(i, kmin) <= tol
            && self.err_at(i, kmax) <= tol
            && (kmin == self.out_min || self.err_at(i, kmin - 1) > tol)
            && (kmax == self.out_max || self.err_at(i, kmax + 1) > tol);
        exact.then_some((kmin, kmax))
    }

    /// `(lead_end, tail_start)`: the indices before `lead_end` can be `out_min` and those
    /// from `tail_start` on can be `out_max` (each run kept only if at least 2 long).
    fn saturated_ends(&self, bands: &[(i64, i64)]) -> (usize, usize) {
        let n = bands.len();
        let contains = |b: (i64, i64), v: i64| b.0 <= v && v <= b.1;
        let mut tail = n;
        while tail > 0 && contains(bands[tail - 1], self.out_max) {
            tail -= 1;
        }
        if n - tail < 2 {
            tail = n;
        }
        let mut lead = 0;
        while lead < tail && contains(bands[lead], self.out_min) {
            lead += 1;
        }
        if lead < 2 {
            lead = 0;
        }
        (lead, tail)
    }

    fn constant(&self, start: usize, value: i64, f: u32) -> Piece {
        Piece {
            start,
            slope: 0,
            offset: (value << f) + rounding_constant(f),
        }
    }

    /// The value of `piece` at index `i` before symmetry and clamp.
    fn value(piece: &Piece, i: usize, f: u32) -> i64 {
        let t = i as i64 - piece.start as i64;
        piece.offset.saturating_add(piece.slope.saturating_mul(t)) >> f
    }

    /// The greedy sweep for the bands; `f` is the table's `frac_bits`.
    fn sweep(&self, bands: &[(i64, i64)], f: u32) -> Result<Vec<Piece>, PwlError> {
        let n = bands.len();
        let (lead, tail) = self.saturated_ends(bands);
        let mut pieces = Vec::new();
        let mut sc = Scratch::default();
        let mut prev = None;
        if lead > 0 {
            pieces.push(self.constant(0, self.out_min, f));
            prev = Some(self.out_min);
        }
        let mut s = lead;
        while s < tail {
            let (kmin, kmax) = bands[s];
            // Monotonicity: start at or above the previous piece's last value.
            let mut first_lo = prev.map_or(kmin, |p: i64| p.clamp(kmin, kmax));
            let one = match sc.start(bands, s, first_lo, f) {
                Some(p) => p,
                None => {
                    first_lo = kmin;
                    sc.start(bands, s, first_lo, f).ok_or_else(|| {
                        PwlError::Internal(format!(
                            "no single-point piece at index {s} (band [{kmin}, {kmax}], frac_bits {f})"
                        ))
                    })?
                }
            };
            // Longest acceptable piece: galloping, then binary search on the end.
            let avail = tail - s;
            let mut best = (1usize, one);
            let mut good = 1usize;
            let mut bad = avail + 1;
            let mut step = 1usize;
            while good < avail {
                let len = (good + step).min(avail);
                match sc.try_len(bands, s, good, len, first_lo, f) {
                    Some(p) => {
                        best = (len, p);
                        good = len;
                        step *= 2;
                    }
                    None => {
                        bad = len;
                        break;
                    }
                }
            }
            while bad - good > 1 {
                let mid = good + (bad - good) / 2;
                match sc.try_len(bands, s, good, mid, first_lo, f) {
                    Some(p) => {
                        best = (mid, p);
                        good = mid;
                    }
                    None => bad = mid,
                }
            }
            let (len, piece) = best;
            prev = Some(Self::value(&piece, s + len - 1, f));
            pieces.push(piece);
            s += len;
        }
        if tail < n {
            pieces.push(self.constant(tail, self.out_max, f));
        }
        Ok(pieces)
    }

    /// `frac_bits` for the sweep: the band keeps every value in `[out_min, out_max + 1)`.
    fn sweep_frac_bits(&self) -> u32 {
        let magnitude = (self.out_min.abs()).max(self.out_max + 1).max(1) as f64;
        frac_bits_for(magnitude)
    }

    /// Sweep at `tol`; if that needs more than `budget` pieces, the smallest tolerance
    /// (by bisection) that fits the budget.
    fn sweep_with_budget(&self, tol: f64, budget: usize) -> Result<(Vec<Piece>, u32), PwlError> {
        let f = self.sweep_frac_bits();
        let run = |t: f64| self.sweep(&self.bands(t), f);
        let first = run(tol)?;
        if first.len() <= budget {
            return Ok((first, f));
        }
        // Away from saturation the line may deviate by about `tol − 0.5` (the rest is
        // output rounding) and the piece count goes as `(tol − 0.5)^(−1/2)`: predict the
        // tolerance that fits the budget, then bisect.
        let predict = |t: f64, pieces: usize| {
            let ratio = pieces as f64 / budget as f64;
            let next = if t > 0.5 {
                0.5 + (t - 0.5) * ratio * ratio
            } else {
                1.0
            };
            (next * 1.01).max(t * 1.05)
        };
        let mut lo = tol;
        let mut hi = predict(tol, first.len());
        let cap = pow2(self.ofb as i32 + 2);
        let mut fitting = loop {
            let p = run(hi)?;
            if p.len() <= budget {
                break p;
            }
            if hi > cap {
                return Err(PwlError::Internal(format!(
                    "no sweep table with at most {budget} pieces even at {hi} LSB"
                )));
            }
            lo = hi;
            hi = predict(hi, p.len()).max(hi * 1.25);
        };
        for _ in 0..40 {
            if hi - lo <= hi.max(1.0) / 128.0 {
                break;
            }
            let mid = 0.5 * (lo + hi);
            let p = run(mid)?;
            if p.len() <= budget {
                hi = mid;
                fitting = p;
            } else {
                lo = mid;
            }
        }
        Ok((fitting, f))
    }

    /// `frac_bits` for chords over `[a, b]` and constants.
    fn chord_frac_bits(&self, a: usize, b: usize) -> u32 {
        let mut m = self.out_max.abs().max(self.out_min.abs()) as f64;
        for i in a..=b.min(self.len() - 1) {
            let g = self.line_target(i).abs();
            if g > m {
                m = g;
            }
        }
        frac_bits_for(m.ceil() + 1.0)
    }

    /// Quantizes specs: chords with floor-rounded intercept and slope (this keeps chord
    /// tables monotone), constants exactly.
    fn build(&self, specs: &[Spec], f: u32) -> Vec<Piece> {
        let scale = pow2(f as i32);
        specs
            .iter()
            .map(|spec| match *spec {
                Spec::Const { start, value } => self.constant(start, value, f),
                Spec::Chord { start, end } => {
                    let gs = self.line_target(start);
                    let ge = self.line_target(end);
                    let slope = if end > start {
                        (ge - gs) / (end - start) as f64
                    } else {
                        0.0
                    };
                    let a = (gs * scale).floor() as i64;
                    let b = ((slope * scale).floor() as i64).max(0);
                    Piece {
                        start,
                        slope: b,
                        offset: a + rounding_constant(f),
                    }
                }
            })
            .collect()
    }

    /// Whether every piece satisfies the `i32` bound over the indices it evaluates.
    fn bound_ok(&self, pieces: &[Piece]) -> bool {
        let n = self.len();
        pieces.iter().enumerate().all(|(k, p)| {
            let last = pieces.get(k + 1).map_or(n - 1, |q| q.start - 1);
            let first = if k == 0 { 0 } else { p.start };
            let reach = (p.start - first).max(last - p.start).max(1) as i128;
            (p.offset as i128).abs() + (p.slope as i128).abs() * reach < I32_LIMIT
        })
    }

    /// Quantizes `specs` at the largest `frac_bits <= f0` that satisfies the bound.
    fn finalize(&self, specs: &[Spec], f0: u32) -> Result<(Vec<Piece>, u32), PwlError> {
        for f in (0..=f0).rev() {
            let pieces = self.build(specs, f);
            if self.bound_ok(&pieces) {
                return Ok((pieces, f));
            }
        }
        Err(PwlError::Internal(
            "no frac_bits keeps the table within 32 bits".to_string(),
        ))
    }

    /// Error and worst index of `piece` over indices `[s, e)`.
    fn piece_error(&self, piece: &Piece, s: usize, e: usize, f: u32) -> (f64, usize) {
        let mut max = -1.0f64;
        let mut worst = s;
        for i in s..e {
            let err = self.err_at(i, Self::value(piece, i, f));
            if err > max {
                max = err;
                worst = i;
            }
        }
        (max.max(0.0), worst)
    }

    /// Error of a whole table (internal evaluator) and the worst index.
    fn table_error(&self, pieces: &[Piece], f: u32) -> (f64, usize) {
        let n = self.len();
        let mut max = 0.0f64;
        let mut worst = 0usize;
        for (k, p) in pieces.iter().enumerate() {
            let s = if k == 0 { 0 } else { p.start };
            let e = pieces.get(k + 1).map_or(n, |q| q.start);
            let (err, w) = self.piece_error(p, s, e, f);
            if err > max {
                max = err;
                worst = w;
            }
        }
        (max, worst)
    }

    fn segment(&self, start: usize, end: usize, f: u32) -> Segment {
        let spec = Spec::Chord {
            start,
            end: end.min(self.len() - 1),
        };
        let piece = self.build(&[spec], f)[0];
        let (err, worst) = self.piece_error(&piece, start, end, f);
        Segment {
            start,
            end,
            err,
            worst,
        }
    }

    /// The paper's recursive splitting, best first, keeping the best table seen.
    fn recursive(&self, tol: f64, budget: usize) -> Result<(Vec<Piece>, u32), PwlError> {
        let n = self.len();
        let bands = self.bands(tol);
        let (lead, tail) = self.saturated_ends(&bands);
        let f = self.chord_frac_bits(lead, tail);
        let mut fixed = Vec::new();
        if lead > 0 {
            fixed.push(Spec::Const {
                start: 0,
                value: self.out_min,
            });
        }
        if tail < n {
            fixed.push(Spec::Const {
                start: tail,
                value: self.out_max,
            });
        }
        let mut const_err = 0.0f64;
        if lead > 0 {
            const_err = const_err.max(
                self.piece_error(&self.constant(0, self.out_min, f), 0, lead, f)
                    .0,
            );
        }
        if tail < n {
            const_err = const_err.max(
                self.piece_error(&self.constant(tail, self.out_max, f), tail, n, f)
                    .0,
            );
        }
        let mut segs = Vec::new();
        if lead < tail {
            segs.push(self.segment(lead, tail, f));
        }
        let mut best: (f64, Vec<Segment>) = (f64::INFINITY, Vec::new());
        loop {
            let seg_max = segs.iter().map(|s| s.err).fold(0.0f64, f64::max);
            let total = seg_max.max(const_err);
            if total < best.0 {
                best = (total, segs.clone());
            }
            if total <= tol || seg_max <= tol || segs.len() + fixed.len() >= budget {
                break;
            }
            let Some(w) = segs.iter().position(|s| s.err >= seg_max) else {
                break;
            };
            let sg = segs[w];
            if sg.end - sg.start < 2 {
                break;
            }
            let p = if sg.worst > sg.start {
                sg.worst
            } else {
                sg.start + 1
            };
            let left = self.segment(sg.start, p, f);
            let right = self.segment(p, sg.end, f);
            segs.splice(w..=w, [left, right]);
        }
        let mut specs: Vec<Spec> = best
            .1
            .iter()
            .map(|s| Spec::Chord {
                start: s.start,
                end: s.end.min(n - 1),
            })
            .collect();
        specs.extend(fixed);
        specs.sort_by_key(|s| match *s {
            Spec::Chord { start, .. } | Spec::Const { start, .. } => start,
        });
        self.finalize(&specs, f)
    }

    /// Uniform pieces: `count` chords over the measured domain (exp: `count − 1` chords
    /// over `x ≤ 0` and a constant piece for `x > 0`).
    fn uniform(&self, count: usize) -> Result<(Vec<Piece>, u32), PwlError> {
        let n = self.len();
        let has_tail = self.forced_from < n;
        let end = if has_tail {
            self.forced_from - 1
        } else {
            n - 1
        };
        let chords = if has_tail {
            count.saturating_sub(1)
        } else {
            count
        }
        .max(1);
        // Knots at floor(j · end / chords): equal widths up to one input code.
        let chords = chords.min(end.max(1));
        let mut specs = Vec::with_capacity(chords + 1);
        for j in 0..chords {
            let start = j * end / chords;
            let stop = ((j + 1) * end / chords).min(end);
            specs.push(Spec::Chord { start, end: stop });
        }
        if has_tail {
            specs.push(Spec::Const {
                start: self.forced_from,
                value: self.out_max,
            });
        }
        let f = self.chord_frac_bits(0, end);
        self.finalize(&specs, f)
    }

    fn to_table(&self, pieces: &[Piece], f: u32) -> Result<PwlTable, PwlError> {
        let conv = |v: i64, what: &str| {
            i32::try_from(v)
                .map_err(|_| PwlError::Internal(format!("{what} {v} does not fit in i32")))
        };
        let mut starts = Vec::with_capacity(pieces.len());
        let mut slopes = Vec::with_capacity(pieces.len());
        let mut offsets = Vec::with_capacity(pieces.len());
        for p in pieces {
            starts.push(conv(self.lo as i64 + p.start as i64, "start")?);
            slopes.push(conv(p.slope, "slope")?);
            offsets.push(conv(p.offset, "offset")?);
        }
        Ok(PwlTable {
            function: self.function,
            input_frac_bits: self.ifb,
            output_frac_bits: self.ofb,
            symmetry: self.symmetry,
            total: self.total as i32,
            starts,
            slopes,
            offsets,
            frac_bits: f,
            out_min: self.out_min as i32,
            out_max: self.out_max as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The internal evaluator used by the fitters agrees with the runtime evaluator.
    #[test]
    fn internal_error_matches_runtime_measure() {
        for function in [Activation::Sigmoid, Activation::Tanh, Activation::Exp] {
            for method in FitMethod::ALL {
                for ifb in [9, 12] {
                    let opts = FitOptions {
                        method,
                        ..FitOptions::new(function, ifb)
                    };
                    let grid = Grid::new(function, ifb, 15);
                    let (pieces, f) = match method {
                        FitMethod::Sweep => grid.sweep_with_budget(1.0, 64).unwrap(),
                        FitMethod::Recursive => grid.recursive(1.0, 64).unwrap(),
                        FitMethod::Uniform => grid.uniform(64).unwrap(),
                    };
                    let table = grid.to_table(&pieces, f).unwrap();
                    let (internal, _) = grid.table_error(&pieces, f);
                    let m = measure(&table);
                    assert_eq!(internal, m.max_error_lsb, "{opts:?}");
                    let (fitted, report) = fit(&opts).unwrap();
                    assert_eq!(fitted, table);
                    assert_eq!(report.max_error_lsb, m.max_error_lsb);
                }
            }
        }
    }

    #[test]
    fn hull_helpers() {
        let mut h = Vec::new();
        for p in [(0, 0), (1, 5), (2, 6), (3, 6), (4, 0)] {
            push_upper(&mut h, p);
        }
        assert_eq!(h, vec![(0, 0), (1, 5), (2, 6), (3, 6), (4, 0)]);
        let mut h = Vec::new();
        for p in [(0, 0), (1, 1), (2, 2), (3, 0)] {
            push_upper(&mut h, p);
        }
        assert_eq!(h, vec![(0, 0), (2, 2), (3, 0)]);
        let mut l = Vec::new();
        for p in [(0, 3), (1, 0), (2, 1), (3, 3)] {
            push_lower(&mut l, p);
        }
        assert_eq!(l, vec![(0, 3), (1, 0), (2, 1), (3, 3)]);
    }
}
