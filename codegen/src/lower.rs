//! Lowering: quantized graph → integer IR.
//!
//! The passes, in order, for each layer:
//! 1. **fold scales**: every real ratio of scales becomes a [`Requant`] (a 32-bit
//!    multiplier in `[2^30, 2^31)` and a power-of-two shift), computed in `f64`;
//! 2. **fold zero points**: `b' = b − z_x · rowsum(W)` so the kernels multiply raw
//!    int8 codes;
//! 3. **bind tables**: PWL tables are validated and referenced by index;
//! 4. **prove accumulators**: for every row, `|b'| + 128 · Σ|w|` must stay below 2^31,
//!    or lowering refuses the model with the row named.
//!
//! The result is deterministic: the same graph always lowers to the same program.

use crate::error::Problem;
use crate::graph::{input_quant_of, AffineQuant, Graph, GraphInput, GraphLayer, LinearOutputSpec};
use crate::ir::ops::{CellKind, Dtype, LayerBuilder, Matrix, Op, OpLayer, Role};
use crate::ir::*;
use crate::spec::Nonlinearity;
use irnn_runtime::Requant;
use std::collections::BTreeMap;

/// Lowering failed; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot lower the model:{}", file, problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
pub struct LowerError {
    /// The graph file.
    pub file: String,
    /// What is wrong, per layer.
    pub problems: Vec<Problem>,
}

/// Splits a finite positive `real` into `(q31, exp)` with `real ≈ q31 · 2^(exp − 31)` and
/// `q31` in `[2^30, 2^31)`: the mantissa is rounded half away from zero to 31 bits and
/// renormalized if it rounds up to 2^31. Returns `(0, 0)` for zero, negative or
/// non-finite values. Halving and doubling are exact, so the result depends only on
/// `real`.
pub fn mantissa_exponent(real: f64) -> (i32, i32) {
    if !(real.is_finite() && real > 0.0) {
        return (0, 0);
    }
    let (mut q, mut exp) = (real, 0i32);
    while q >= 1.0 {
        q *= 0.5;
        exp += 1;
    }
    while q < 0.5 {
        q *= 2.0;
        exp -= 1;
    }
    let mut m = (q * 2f64.powi(31)).round() as i64;
    if m == 1i64 << 31 {
        m /= 2;
        exp += 1;
    }
    (m as i32, exp)
}

/// Converts a real factor to a [`Requant`] (see [`mantissa_exponent`]).
///
/// `real` must be finite and non-negative; 0 gives the zero factor. Factors whose shift
/// would leave `[-31, 30]` are refused (a factor below 2^-32 maps every `i32` to 0 or
/// ±1, which always indicates a broken scale).
pub fn quantize_multiplier(real: f64) -> Result<Requant, String> {
    if !real.is_finite() || real < 0.0 {
        return Err(format!(
            "scale ratio {real} is not a finite non-negative number"
        ));
    }
    if real == 0.0 {
        return Ok(Requant {
            multiplier: 0,
            shift: 0,
        });
    }
    let (multiplier, exp) = mantissa_exponent(real);
    if !(-31..=30).contains(&exp) {
        return Err(format!(
            "scale ratio {real:e} needs a shift of {exp}, outside the supported range [-31, 30]"
        ));
    }
    Ok(Requant {
        multiplier,
        shift: exp,
    })
}

/// The real value of a [`Requant`] (for reports and tests).
pub fn requant_value(r: Requant) -> f64 {
    r.multiplier as f64 / 2f64.powi(31) * 2f64.powi(r.shift)
}

struct Ctx<'a> {
    graph: &'a Graph,
    problems: Vec<Problem>,
    table_index: BTreeMap<String, usize>,
}

impl Ctx<'_> {
    fn req(&mut self, loc: &str, what: &str, real: f64) -> Requant {
        match quantize_multiplier(real) {
            Ok(r) => r,
            Err(e) => {
                self.problems
                    .push(Problem::new(loc, format!("{what}: {e}")));
                Requant::ONE
            }
        }
    }

    fn table(&mut self, name: &str) -> usize {
        self.table_index.get(name).copied().unwrap_or(0)
    }

    fn i8(&mut self, name: &str, loc: &str) -> Vec<i8> {
        match self.graph.tensors.i8(name, loc) {
            Ok(t) => t.data,
            Err(p) => {
                self.problems.push(p);
                Vec::new()
            }
        }
    }

    fn i32(&mut self, name: &str, loc: &str) -> Vec<i32> {
        match self.graph.tensors.i32(name, loc) {
            Ok(t) => t.data,
            Err(p) => {
                self.problems.push(p);
                Vec::new()
            }
        }
    }

    fn f32(&mut self, name: &str, loc: &str) -> Vec<f32> {
        match self.graph.tensors.f32(name, loc) {
            Ok(t) => t.data,
            Err(p) => {
                self.problems.push(p);
                Vec::new()
            }
        }
    }
}

/// `bias[r] − zero_point · Σ_j w[r, j]`, checked for `i32` range.
fn fold_zero_points(
    ctx: &mut Ctx<'_>,
    loc: &str,
    what: &str,
    bias: &[i32],
    w: &[i8],
    cols: usize,
    zero_point: i32,
) -> Vec<i32> {
    let rows = bias.len();
    let mut out = Vec::with_capacity(rows);
    // One problem for the root cause, with a count of the rows affected.
    let mut bad: Option<(usize, i64)> = None;
    let mut count = 0usize;
    for r in 0..rows {
        let rowsum: i64 = w[r * cols..(r + 1) * cols].iter().map(|&v| v as i64).sum();
        let folded = bias[r] as i64 - zero_point as i64 * rowsum;
        if folded < i32::MIN as i64 || folded > i32::MAX as i64 {
            bad.get_or_insert((r, folded));
            count += 1;
            out.push(0);
        } else {
            out.push(folded as i32);
        }
    }
    if let Some((r, folded)) = bad {
        ctx.problems.push(Problem::new(
            loc,
            format!(
                "{what}: the bias with the folded zero point overflows int32 in {count} of {rows} rows (first: row {r}, {folded})"
            ),
        ));
    }
    out
}

/// The first row `r` (and its bound) where `|bias[r]| + 128 · Σ_j |w[r, j]|` exceeds
/// `i32::MAX`, i.e. where an int32 accumulator over int8 inputs could overflow; `None`
/// when every row is safe. Rows whose weights are missing count only their bias.
pub fn accumulator_overflow(bias: &[i32], w: &[i8], cols: usize) -> Option<(usize, i64)> {
    bias.iter().enumerate().find_map(|(r, b)| {
        let row = w.get(r * cols..(r + 1) * cols).unwrap_or(&[]);
        let abs_sum: i64 = row.iter().map(|&v| (v as i64).abs()).sum();
        let bound = (*b as i64).abs() + 128 * abs_sum;
        (bound > i32::MAX as i64).then_some((r, bound))
    })
}

/// Proves `|bias[r]| + 128 · Σ|w[r]| < 2^31` for every row.
fn prove_accumulators(
    ctx: &mut Ctx<'_>,
    loc: &str,
    what: &str,
    bias: &[i32],
    w: &[i8],
    cols: usize,
) {
    if let Some((r, bound)) = accumulator_overflow(bias, w, cols) {
        ctx.problems.push(Problem::new(
            loc,
            format!(
                "{what} row {r}: the int32 accumulator can reach {bound}, beyond 2^31 − 1; \
                 reduce the layer width or the weight range"
            ),
        ));
    }
}

/// The weights of a recurrent cell with their zero points folded into the biases and
/// the accumulator bounds proven.
struct CellWeights {
    w_ih: Vec<i8>,
    w_hh: Vec<i8>,
    s_ih: Vec<f32>,
    s_hh: Vec<f32>,
    bias_x: Vec<i32>,
    bias_h: Vec<i32>,
    input_size: usize,
    hidden_size: usize,
}

impl CellWeights {
    /// Loads `[w_ih, w_ih_scale, w_hh, w_hh_scale]` and the input-side bias (and the
    /// recurrent-side one, if the format has it) of a cell with `rows` gate rows, folds
    /// the input zero point into the input bias and the hidden zero point into the
    /// recurrent one, and proves both accumulators; `None` when anything failed.
    fn load(
        ctx: &mut Ctx<'_>,
        loc: &str,
        [w_ih, w_ih_scale, w_hh, w_hh_scale]: [&String; 4],
        (bias_x, bias_h): (&String, Option<&String>),
        (input_size, hidden_size, rows): (usize, usize, usize),
        (in_q, out_q): (AffineQuant, AffineQuant),
    ) -> Option<CellWeights> {
        let w_ih = ctx.i8(w_ih, loc);
        let w_hh = ctx.i8(w_hh, loc);
        let s_ih = ctx.f32(w_ih_scale, loc);
        let s_hh = ctx.f32(w_hh_scale, loc);
        let bx = ctx.i32(bias_x, loc);
        let bh = match bias_h {
            Some(b) => ctx.i32(b, loc),
            None => vec![0; rows],
        };
        if !ctx.problems.is_empty() {
            return None;
        }
        let bias_x = fold_zero_points(ctx, loc, "w_ih", &bx, &w_ih, input_size, in_q.zero_point);
        let bias_h = fold_zero_points(ctx, loc, "w_hh", &bh, &w_hh, hidden_size, out_q.zero_point);
        prove_accumulators(ctx, loc, "w_ih", &bias_x, &w_ih, input_size);
        prove_accumulators(ctx, loc, "w_hh", &bias_h, &w_hh, hidden_size);
        Some(CellWeights {
            w_ih,
            w_hh,
            s_ih,
            s_hh,
            bias_x,
            bias_h,
            input_size,
            hidden_size,
        })
    }

    /// Per-row factors from each accumulator to the grid `grid(r)` of row `r`.
    fn requants(
        &self,
        ctx: &mut Ctx<'_>,
        loc: &str,
        (in_q, out_q): (AffineQuant, AffineQuant),
        grid: impl Fn(usize) -> f64,
    ) -> (Vec<Requant>, Vec<Requant>) {
        let rows = self.bias_x.len();
        let mut req_x = Vec::with_capacity(rows);
        let mut req_h = Vec::with_capacity(rows);
        for r in 0..rows {
            let rx = in_q.scale * self.s_ih[r] as f64 / grid(r);
            let rh = out_q.scale * self.s_hh[r] as f64 / grid(r);
            req_x.push(ctx.req(loc, &format!("input row {r}"), rx));
            req_h.push(ctx.req(loc, &format!("recurrent row {r}"), rh));
        }
        (req_x, req_h)
    }

    /// The two matrices of the cell (`w_ih`, `w_hh`).
    fn matrices(self) -> Vec<Matrix> {
        let rows = self.bias_x.len();
        vec![
            Matrix {
                name: "w_ih".into(),
                rows,
                cols: self.input_size,
                w: self.w_ih,
                bias: self.bias_x,
            },
            Matrix {
                name: "w_hh".into(),
                rows,
                cols: self.hidden_size,
                w: self.w_hh,
                bias: self.bias_h,
            },
        ]
    }
}

/// A GRU layer's ops (docs/NUMERICS.md "GRU"): r and z from both accumulators; the
/// candidate's recurrent term `W_hn h + b_hn` on n's grid, times r, plus the input
/// term; `h' = n + z · (h − n)` on Q0.15 (h widened from int8), back to int8.
#[allow(clippy::too_many_arguments)]
fn gru_ops(
    name: &str,
    w: CellWeights,
    req_x: Vec<Requant>,
    req_h: Vec<Requant>,
    [t_r, t_z, t_n]: [usize; 3],
    widen: Requant,
    narrow: Requant,
    out_q: AffineQuant,
) -> OpLayer {
    let h = w.hidden_size;
    let mut b = LayerBuilder::default();
    let reset = irnn_runtime::saturate_i8(out_q.zero_point) as i32;
    let ([_, hs, acc_x, acc_h], products) = b.recurrent(w.input_size, h, 3 * h, reset);
    let pre = b.buffer("pre_rz", Dtype::I16, 2 * h, Role::Temp);
    let gates = b.buffer("rz", Dtype::I16, 2 * h, Role::Temp);
    let hn = b.buffer("h_n", Dtype::I16, h, Role::Temp);
    let rhn = b.buffer("r_h_n", Dtype::I16, h, Role::Temp);
    let xn = b.buffer("x_n", Dtype::I16, h, Role::Temp);
    let pre_n = b.buffer("pre_n", Dtype::I16, h, Role::Temp);
    let n = b.buffer("n", Dtype::I16, h, Role::Temp);
    let hq = b.buffer("h_q15", Dtype::I16, h, Role::Temp);
    let hnew = b.buffer("h_new", Dtype::I16, h, Role::Temp);
    let (r, z) = (gates.part(0, 2), gates.part(1, 2));
    let rows_n = 2 * h..3 * h;
    let mut ops = products.to_vec();
    ops.extend([
        Op::GateSum {
            a: acc_x.slice(0, 2 * h),
            ra: req_x[..2 * h].to_vec(),
            b: Some((acc_h.slice(0, 2 * h), req_h[..2 * h].to_vec())),
            dst: pre,
        },
        Op::Pwl {
            table: t_r,
            src: pre.part(0, 2),
            dst: r,
        },
        Op::Pwl {
            table: t_z,
            src: pre.part(1, 2),
            dst: z,
        },
        Op::GateSum {
            a: acc_h.slice(2 * h, h),
            ra: req_h[rows_n.clone()].to_vec(),
            b: None,
            dst: hn,
        },
        Op::MulQ15 {
            a: r,
            b: hn,
            dst: rhn,
        },
        Op::GateSum {
            a: acc_x.slice(2 * h, h),
            ra: req_x[rows_n].to_vec(),
            b: None,
            dst: xn,
        },
        Op::AddSat {
            a: xn,
            b: rhn,
            dst: pre_n,
        },
        Op::Pwl {
            table: t_n,
            src: pre_n,
            dst: n,
        },
        Op::Widen {
            src: hs,
            zero_point: out_q.zero_point,
            req: widen,
            dst: hq,
        },
        Op::Blend {
            z,
            a: n,
            b: hq,
            dst: hnew,
        },
        Op::Narrow {
            a: hnew,
            b: None,
            req: vec![narrow],
            zero_point: out_q.zero_point,
            dst: hs,
        },
    ]);
    OpLayer {
        name: name.to_string(),
        kind: CellKind::Gru,
        buffers: b.finish(),
        mats: w.matrices(),
        ops,
        output: hs,
    }
}

/// An Elman RNN layer's ops: the pre-activation from both accumulators, then tanh
/// (a PWL table, `act`) or relu, then int8.
fn rnn_ops(
    name: &str,
    w: CellWeights,
    req_x: Vec<Requant>,
    req_h: Vec<Requant>,
    act: Option<usize>,
    narrow: Requant,
    out_q: AffineQuant,
) -> OpLayer {
    let h = w.hidden_size;
    let mut b = LayerBuilder::default();
    let reset = irnn_runtime::saturate_i8(out_q.zero_point) as i32;
    let ([_, hs, acc_x, acc_h], products) = b.recurrent(w.input_size, h, h, reset);
    let pre = b.buffer("pre", Dtype::I16, h, Role::Temp);
    let y = b.buffer("y", Dtype::I16, h, Role::Temp);
    let mut ops = products.to_vec();
    ops.extend([Op::GateSum {
        a: acc_x,
        ra: req_x,
        b: Some((acc_h, req_h)),
        dst: pre,
    }]);
    ops.push(match act {
        Some(table) => Op::Pwl {
            table,
            src: pre,
            dst: y,
        },
        None => Op::Relu { src: pre, dst: y },
    });
    ops.push(Op::Narrow {
        a: y,
        b: None,
        req: vec![narrow],
        zero_point: out_q.zero_point,
        dst: hs,
    });
    OpLayer {
        name: name.to_string(),
        kind: if act.is_some() {
            CellKind::RnnTanh
        } else {
            CellKind::RnnRelu
        },
        buffers: b.finish(),
        mats: w.matrices(),
        ops,
        output: hs,
    }
}

/// Lowers a validated graph to the integer IR.
pub fn lower(graph: &Graph) -> Result<Program, LowerError> {
    let f = &graph.file;
    let mut ctx = Ctx {
        graph,
        problems: Vec::new(),
        table_index: BTreeMap::new(),
    };
    let mut tables = Vec::new();
    for (i, (name, table)) in f.tables.iter().enumerate() {
        ctx.table_index.insert(name.clone(), i);
        tables.push(table.clone());
    }
    let input = match &f.input {
        GraphInput::Tokens { vocab_size } => InputIr::Tokens {
            vocab_size: *vocab_size,
        },
        GraphInput::Features { size, quant } => InputIr::Features {
            size: *size,
            zero_point: quant.zero_point,
            scale_info: quant.scale,
        },
    };
    let mut layers = Vec::new();
    let mut output = OutputIr {
        size: 0,
        scale_info: 1.0,
        zero_point: 0,
    };
    for (index, layer) in f.layers.iter().enumerate() {
        let loc = format!("layer \"{}\"", layer.name());
        let in_q = input_quant_of(f, index).unwrap_or(AffineQuant {
            scale: 1.0,
            zero_point: 0,
        });
        match layer {
            GraphLayer::Embedding {
                name,
                vocab_size,
                dim,
                table,
                output,
            } => {
                let table = ctx.i8(table, &loc);
                layers.push(LayerIr::Embedding(EmbeddingIr {
                    name: name.clone(),
                    vocab_size: *vocab_size,
                    dim: *dim,
                    table,
                    zero_point: output.zero_point,
                }));
            }
            GraphLayer::Lstm {
                name,
                input_size,
                hidden_size,
                w_ih,
                w_ih_scale,
                w_hh,
                w_hh_scale,
                bias,
                gate_frac_bits,
                gate_tables,
                cell_frac_bits,
                cell_table,
                output,
            } => {
                let (i_sz, h_sz) = (*input_size, *hidden_size);
                let w_ih_v = ctx.i8(w_ih, &loc);
                let w_hh_v = ctx.i8(w_hh, &loc);
                let s_ih = ctx.f32(w_ih_scale, &loc);
                let s_hh = ctx.f32(w_hh_scale, &loc);
                let bias_v = ctx.i32(bias, &loc);
                if !ctx.problems.is_empty() {
                    continue;
                }
                let bias_x = fold_zero_points(
                    &mut ctx,
                    &loc,
                    "w_ih",
                    &bias_v,
                    &w_ih_v,
                    i_sz,
                    in_q.zero_point,
                );
                let zeros = vec![0i32; 4 * h_sz];
                let bias_h = fold_zero_points(
                    &mut ctx,
                    &loc,
                    "w_hh",
                    &zeros,
                    &w_hh_v,
                    h_sz,
                    output.zero_point,
                );
                prove_accumulators(&mut ctx, &loc, "w_ih", &bias_x, &w_ih_v, i_sz);
                prove_accumulators(&mut ctx, &loc, "w_hh", &bias_h, &w_hh_v, h_sz);
                let mut req_x = Vec::with_capacity(4 * h_sz);
                let mut req_h = Vec::with_capacity(4 * h_sz);
                for r in 0..4 * h_sz {
                    let gate_scale = 2f64.powi(-(gate_frac_bits[r / h_sz] as i32));
                    let rx = in_q.scale * s_ih[r] as f64 / gate_scale;
                    let rh = output.scale * s_hh[r] as f64 / gate_scale;
                    req_x.push(ctx.req(&loc, &format!("input row {r}"), rx));
                    req_h.push(ctx.req(&loc, &format!("recurrent row {r}"), rh));
                }
                let req_out = ctx.req(&loc, "hidden output", 2f64.powi(-30) / output.scale);
                let gate_tables = [
                    ctx.table(&gate_tables[0]),
                    ctx.table(&gate_tables[1]),
                    ctx.table(&gate_tables[2]),
                    ctx.table(&gate_tables[3]),
                ];
                let cell_table = ctx.table(cell_table);
                layers.push(LayerIr::from(LstmIr {
                    name: name.clone(),
                    input_size: i_sz,
                    hidden_size: h_sz,
                    w_ih: w_ih_v,
                    w_hh: w_hh_v,
                    bias_x,
                    bias_h,
                    req_x,
                    req_h,
                    gate_tables,
                    gate_frac_bits: *gate_frac_bits,
                    cell_table,
                    cell_frac_bits: *cell_frac_bits,
                    req_out,
                    h_zero_point: output.zero_point,
                }));
            }
            GraphLayer::Gru {
                name,
                input_size,
                hidden_size,
                w_ih,
                w_ih_scale,
                w_hh,
                w_hh_scale,
                bias_ih,
                bias_hh,
                gate_frac_bits,
                gate_tables,
                output,
            } => {
                let (i_sz, h_sz) = (*input_size, *hidden_size);
                let w = CellWeights::load(
                    &mut ctx,
                    &loc,
                    [w_ih, w_ih_scale, w_hh, w_hh_scale],
                    (bias_ih, Some(bias_hh)),
                    (i_sz, h_sz, 3 * h_sz),
                    (in_q, *output),
                );
                let Some(w) = w else { continue };
                let grid = |r: usize| 2f64.powi(-(gate_frac_bits[r / h_sz] as i32));
                let (req_x, req_h) = w.requants(&mut ctx, &loc, (in_q, *output), grid);
                let tables = [
                    ctx.table(&gate_tables[0]),
                    ctx.table(&gate_tables[1]),
                    ctx.table(&gate_tables[2]),
                ];
                // h (int8) onto Q0.15 for the blend, and the blend back to int8.
                let widen = ctx.req(&loc, "hidden to Q0.15", output.scale * 32768.0);
                let narrow = ctx.req(&loc, "hidden output", 2f64.powi(-15) / output.scale);
                layers.push(LayerIr::Cell(gru_ops(
                    name, w, req_x, req_h, tables, widen, narrow, *output,
                )));
            }
            GraphLayer::Rnn {
                name,
                input_size,
                hidden_size,
                nonlinearity,
                w_ih,
                w_ih_scale,
                w_hh,
                w_hh_scale,
                bias,
                pre_frac_bits,
                table,
                output,
            } => {
                let (i_sz, h_sz) = (*input_size, *hidden_size);
                let w = CellWeights::load(
                    &mut ctx,
                    &loc,
                    [w_ih, w_ih_scale, w_hh, w_hh_scale],
                    (bias, None),
                    (i_sz, h_sz, h_sz),
                    (in_q, *output),
                );
                let Some(w) = w else { continue };
                let grid = 2f64.powi(-(*pre_frac_bits as i32));
                let (req_x, req_h) = w.requants(&mut ctx, &loc, (in_q, *output), |_| grid);
                // tanh's Q0.15 output, or relu's value on the pre-activation grid, to int8.
                let (act, from) = match (nonlinearity, table) {
                    (Nonlinearity::Tanh, Some(t)) => (Some(ctx.table(t)), 2f64.powi(-15)),
                    _ => (None, grid),
                };
                let narrow = ctx.req(&loc, "hidden output", from / output.scale);
                layers.push(LayerIr::Cell(rnn_ops(
                    name, w, req_x, req_h, act, narrow, *output,
                )));
            }
            GraphLayer::Linear {
                name,
                in_size,
                out_size,
                weight,
                weight_scale,
                bias,
                output: out_spec,
            } => {
                let w = ctx.i8(weight, &loc);
                let s_w = ctx.f32(weight_scale, &loc);
                let b = ctx.i32(bias, &loc);
                if !ctx.problems.is_empty() {
                    continue;
                }
                let folded =
                    fold_zero_points(&mut ctx, &loc, "weight", &b, &w, *in_size, in_q.zero_point);
                prove_accumulators(&mut ctx, &loc, "weight", &folded, &w, *in_size);
                let out_scale = out_spec.scale();
                let mut req = Vec::with_capacity(*out_size);
                for (o, s) in s_w.iter().enumerate() {
                    req.push(ctx.req(
                        &loc,
                        &format!("row {o}"),
                        in_q.scale * *s as f64 / out_scale,
                    ));
                }
                let (lin_out, zp) = match out_spec {
                    LinearOutputSpec::I32 { .. } => (LinearOutput::I32, 0),
                    LinearOutputSpec::I8 { zero_point, .. } => (
                        LinearOutput::I8 {
                            zero_point: *zero_point,
                        },
                        *zero_point,
                    ),
                };
                output = OutputIr {
                    size: *out_size,
                    scale_info: out_scale,
                    zero_point: zp,
                };
                layers.push(LayerIr::Linear(LinearIr {
                    name: name.clone(),
                    in_size: *in_size,
                    out_size: *out_size,
                    weight: w,
                    bias: folded,
                    req,
                    output: lin_out,
                }));
            }
        }
    }
    for l in &layers {
        if let LayerIr::Cell(c) = l {
            if let Err(e) = c.validate() {
                ctx.problems.push(Problem::new(
                    format!("layer \"{}\"", c.name),
                    format!("internal error in the lowered ops: {e}"),
                ));
            }
        }
    }
    if !ctx.problems.is_empty() {
        return Err(LowerError {
            file: graph.path.display().to_string(),
            problems: ctx.problems,
        });
    }
    Ok(Program {
        name: f.name.clone(),
        model_hash: graph.hash.clone(),
        input,
        layers,
        tables,
        output,
    })
}
