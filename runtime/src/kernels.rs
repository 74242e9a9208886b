//! Portable reference kernels built from the primitives: the integer semantics of each
//! layer type, written once. The interpreter runs these; every generated back end
//! (scalar or SIMD, Rust or C) must produce exactly the same values.

use crate::pwl::Pwl;
use crate::requant::{rounding_divide_by_pot, saturate_i16, saturate_i8, Requant};

/// `acc[r] = bias[r] + Σ_j w[r·cols + j] · x[j]` with wrapping `i32` arithmetic.
///
/// The code generator proves before emitting a model that no row can overflow, so
/// wrapping never happens for lowered models; it only keeps this function total.
pub fn matvec_i8(w: &[i8], x: &[i8], bias: &[i32], acc: &mut [i32]) {
    let cols = x.len();
    for (r, out) in acc.iter_mut().enumerate() {
        let mut sum = bias.get(r).copied().unwrap_or(0);
        if let Some(row) = w.get(r * cols..(r + 1) * cols) {
            for (&wv, &xv) in row.iter().zip(x) {
                sum = sum.wrapping_add(wv as i32 * xv as i32);
            }
        }
        *out = sum;
    }
}

/// `bias + Σ_j row[j] · x[j]` with wrapping `i32` arithmetic (see [`matvec_i8`]).
#[inline(always)]
pub fn dot_i8(row: &[i8], x: &[i8], bias: i32) -> i32 {
    let mut sum = bias;
    for (&wv, &xv) in row.iter().zip(x) {
        sum = sum.wrapping_add(wv as i32 * xv as i32);
    }
    sum
}

/// A linear layer with int32 output: `out[o] = req[o](bias[o] + Σ_j w[o, j] · x[j])`.
/// Rows beyond the shortest of `out`, `bias` and `req` are left untouched.
pub fn linear_i32(w: &[i8], x: &[i8], bias: &[i32], req: &[Requant], out: &mut [i32]) {
    let cols = x.len();
    for (o, ((dst, b), r)) in out.iter_mut().zip(bias).zip(req).enumerate() {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        *dst = r.apply(dot_i8(row, x, *b));
    }
}

/// A linear layer with int8 output:
/// `out[o] = sat8(req[o](bias[o] + Σ_j w[o, j] · x[j]) + zero_point)`.
pub fn linear_i8(
    w: &[i8],
    x: &[i8],
    bias: &[i32],
    req: &[Requant],
    zero_point: i32,
    out: &mut [i8],
) {
    let cols = x.len();
    for (o, ((dst, b), r)) in out.iter_mut().zip(bias).zip(req).enumerate() {
        let row = w.get(o * cols..(o + 1) * cols).unwrap_or(&[]);
        *dst = saturate_i8(r.apply(dot_i8(row, x, *b)).saturating_add(zero_point));
    }
}

/// Gate pre-activation of one row: both partial accumulators rescaled to the gate's
/// `i16` grid, added with saturation, then saturated to `i16`.
#[inline(always)]
pub fn gate_preactivation(acc_x: i32, req_x: Requant, acc_h: i32, req_h: Requant) -> i16 {
    saturate_i16(req_x.apply(acc_x).saturating_add(req_h.apply(acc_h)))
}

/// The LSTM cell update for one unit.
///
/// `i`, `f`, `g` are Q0.15 gate activations (`g` from tanh), `c` the previous cell
/// state on a `2^-cell_frac_bits` grid. Returns the new cell state:
/// `sat16(rdbpot(f·c, 15) + rdbpot(i·g, 30 − cell_frac_bits))`.
#[inline(always)]
pub fn lstm_cell_update(i: i16, f: i16, g: i16, c: i16, cell_frac_bits: u32) -> i16 {
    let forget = rounding_divide_by_pot(f as i32 * c as i32, 15);
    let input = rounding_divide_by_pot(i as i32 * g as i32, 30 - cell_frac_bits.min(15));
    saturate_i16(forget + input)
}

/// The LSTM output for one unit: `sat8(req_h(o · tanh_c) + h_zero_point)`, where `o`
/// and `tanh_c` are Q0.15 and `req_h` rescales Q0.30 to the hidden state's scale.
#[inline(always)]
pub fn lstm_output(o: i16, tanh_c: i16, req_h: Requant, h_zero_point: i32) -> i8 {
    requant_i8(o as i32 * tanh_c as i32, req_h, h_zero_point)
}

/// An int32 value requantized to the int16 grid: `sat16(req(x))` (a GRU's recurrent
/// candidate term, a pre-activation of one accumulator).
#[inline(always)]
pub fn requant_i16(x: i32, req: Requant) -> i16 {
    saturate_i16(req.apply(x))
}

/// An int32 value requantized to an int8 grid: `sat8(req(x) + zero_point)` (layer
/// outputs; [`lstm_output`] is this on the product `o · tanh c`).
#[inline(always)]
pub fn requant_i8(x: i32, req: Requant, zero_point: i32) -> i8 {
    saturate_i8(req.apply(x).saturating_add(zero_point))
}

/// An int8 code moved to an int16 grid: `sat16(req(x − zero_point))` (a GRU's hidden
/// state on the Q0.15 grid of its gates).
#[inline(always)]
pub fn widen_i8(x: i8, zero_point: i32, req: Requant) -> i16 {
    saturate_i16(req.apply(x as i32 - zero_point))
}

/// The product of a Q0.15 value `a` and a value `b` on any int16 grid, on `b`'s grid:
/// `sat16(rdbpot(a · b, 15))` (a GRU's reset gate times its recurrent term).
#[inline(always)]
pub fn mul_q15(a: i16, b: i16) -> i16 {
    saturate_i16(rounding_divide_by_pot(a as i32 * b as i32, 15))
}

/// `sat16(a + b)`: two int16 values on the same grid added with saturation.
#[inline(always)]
pub fn add_sat_i16(a: i16, b: i16) -> i16 {
    saturate_i16(a as i32 + b as i32)
}

/// The blend `(1 − z) · a + z · b` for a Q0.15 weight `z` and `a`, `b` on one int16
/// grid, as `sat16(a + rdbpot(z · (b − a), 15))` (a GRU's state update with `a = n`,
/// `b = h`). `|z · (b − a)| <= 32767 · 65535 < 2^31`, so the product cannot overflow.
#[inline(always)]
pub fn blend_q15(z: i16, a: i16, b: i16) -> i16 {
    saturate_i16(a as i32 + rounding_divide_by_pot(z as i32 * (b as i32 - a as i32), 15))
}

/// `max(x, 0)`.
#[inline(always)]
pub fn relu_i16(x: i16) -> i16 {
    x.max(0)
}

/// Borrowed parameters of one integer LSTM layer (gate order i, f, g, o as in PyTorch).
#[derive(Clone, Copy, Debug)]
pub struct LstmParams<'a> {
    /// Input width `I`.
    pub input_size: usize,
    /// Hidden width `H`.
    pub hidden_size: usize,
    /// Input weights, `[4H, I]` row-major.
    pub w_ih: &'a [i8],
    /// Recurrent weights, `[4H, H]` row-major.
    pub w_hh: &'a [i8],
    /// Input-side bias with the input zero point folded in, `[4H]`.
    pub bias_x: &'a [i32],
    /// Recurrent-side bias (the folded hidden zero point), `[4H]`.
    pub bias_h: &'a [i32],
    /// Input-side accumulator to gate-grid factors, `[4H]`.
    pub req_x: &'a [Requant],
    /// Recurrent-side accumulator to gate-grid factors, `[4H]`.
    pub req_h: &'a [Requant],
    /// Activation tables of the four gates (sigmoid, sigmoid, tanh, sigmoid).
    pub gate_tables: [Pwl<'a>; 4],
    /// tanh table on the cell-state grid.
    pub cell_tanh: Pwl<'a>,
    /// Fractional bits of the cell state.
    pub cell_frac_bits: u32,
    /// Q0.30 → hidden-state factor.
    pub req_out: Requant,
    /// Hidden-state zero point.
    pub h_zero_point: i32,
}

/// Scratch space for [`lstm_step`], sized `4H` each.
#[derive(Debug)]
pub struct LstmScratch<'a> {
    /// Input-side accumulators.
    pub acc_x: &'a mut [i32],
    /// Recurrent-side accumulators.
    pub acc_h: &'a mut [i32],
    /// Gate activations (Q0.15).
    pub gates: &'a mut [i16],
}

/// One time step of an integer LSTM layer: updates `h` (int8) and `c` (int16) in place.
///
/// If any slice has the wrong length for `p` the step does nothing (the interpreter and
/// the generated code only ever pass correctly sized buffers).
pub fn lstm_step(p: &LstmParams<'_>, x: &[i8], h: &mut [i8], c: &mut [i16], s: LstmScratch<'_>) {
    let hidden = p.hidden_size;
    // Mis-sized buffers would be read with the wrong stride: leave the state untouched.
    let rows = 4 * hidden;
    if x.len() != p.input_size
        || h.len() != hidden
        || c.len() != hidden
        || [s.acc_x.len(), s.acc_h.len(), s.gates.len()] != [rows; 3]
        || [p.bias_x.len(), p.bias_h.len(), p.req_x.len(), p.req_h.len()] != [rows; 4]
    {
        return;
    }
    matvec_i8(p.w_ih, x, p.bias_x, s.acc_x);
    matvec_i8(p.w_hh, h, p.bias_h, s.acc_h);
    for r in 0..4 * hidden {
        let pre = gate_preactivation(s.acc_x[r], p.req_x[r], s.acc_h[r], p.req_h[r]);
        s.gates[r] = saturate_i16(p.gate_tables[r / hidden].eval(pre as i32));
    }
    for k in 0..hidden {
        let (i, f, g, o) = (
            s.gates[k],
            s.gates[hidden + k],
            s.gates[2 * hidden + k],
            s.gates[3 * hidden + k],
        );
        let c_new = lstm_cell_update(i, f, g, c[k], p.cell_frac_bits);
        c[k] = c_new;
        let tanh_c = saturate_i16(p.cell_tanh.eval(c_new as i32));
        h[k] = lstm_output(o, tanh_c, p.req_out, p.h_zero_point);
    }
}
