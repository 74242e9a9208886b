//! The C of the op-level IR ([`crate::ir::ops`]), for the recurrent layers the plan
//! writes op by op (`back::plan`: GRU, Elman RNN, any layer with `--fusion none`):
//! [`cell_ctx`] turns each op into its operands as
//! C expressions ([`OpCtx`]), and `templates/c/source.c.tera` writes one branch of C
//! per op kind. Every target-dependent choice comes in from outside: the packed
//! matrices of the SIMD targets (`back::pack`) and each table's array evaluator
//! (`{p}_pwl{t}_n`, whose form the table context chose).

use super::c::{c_comment, list, list_i32, lit, matrix_i8, MatCtx, PER_LINE_I32};
use super::GenError;
use crate::ir::ops::{Op, OpLayer, Role, View};
use irnn_runtime::Requant;
use serde::Serialize;

/// A matrix of a cell layer: packed (SIMD targets) or plain rows.
#[derive(Serialize)]
pub(crate) struct CellMat {
    /// Identifier suffix of the weights (`m0w`); the bias is `m0b`.
    pub w: String,
    /// Identifier suffix of the bias.
    pub b: String,
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// Plain `[rows][cols]` initializer (scalar target).
    pub plain: String,
    /// Plain bias initializer (scalar target).
    pub bias: String,
    /// Packed form (SIMD targets).
    pub packed: Option<MatCtx>,
}

/// What the template needs to write one cell layer.
#[derive(Serialize)]
pub(crate) struct CellCtx {
    /// Matrices.
    pub mats: Vec<CellMat>,
    /// Per-row requantizer tables (`static const`).
    pub reqs: Vec<ReqTable>,
    /// Parameters of the step function (state buffers, then `x`).
    pub params: String,
    /// Local arrays of the step function: scratch buffers, then the prepared inputs of
    /// packed matrix products.
    pub locals: Vec<Local>,
    /// Some matrix product is plain rows (loops over `r` and `j`).
    pub needs_rj: bool,
    /// The ops, in order (templates/c/ops.c.tera writes each).
    pub ops: Vec<OpCtx>,
    /// Uses `_q_gate_pre` (a gate sum of two accumulators).
    pub uses_gate_pre: bool,
    /// Uses `_q_cell` (an LSTM cell update).
    pub uses_cell: bool,
    /// The input projection run per chunk in sequence mode (`Plan::chunk_op`): the
    /// ops (without it) then form `{p}_{id}_cell(rec_params)`, and `{p}_{id}_step` /
    /// `{p}_{id}_chunk` compute the projection for one step / a chunk and call it.
    pub proj: Option<ProjCtx>,
    /// Parameters of `{p}_{id}_cell` with `proj`: the state buffers, then the
    /// projection's accumulators.
    pub rec_params: String,
}

/// The input projection of a cell in sequence mode.
#[derive(Serialize)]
pub(crate) struct ProjCtx {
    /// The accumulator buffer's name (a parameter of `{p}_{id}_cell`).
    acc: String,
    /// Weights and bias identifier suffixes (`{p}_{id}_{w}`).
    w: String,
    b: String,
    /// The packed matrix.
    pub(crate) mat: MatCtx,
    /// Input width.
    cols: usize,
    /// The input buffer's name.
    x: String,
    /// The output (state) buffer's name and width.
    out: String,
    out_len: usize,
    /// The state buffers' names, each followed by `, ` (the leading arguments of
    /// `{p}_{id}_cell`).
    states: String,
    /// Parameters of `{p}_{id}_chunk`: the state buffers, then the chunk's inputs.
    chunk_params: String,
}

/// A local array `ctype name[len];`.
#[derive(Serialize)]
pub(crate) struct Local {
    ctype: &'static str,
    name: String,
    len: usize,
}

/// The multiplier and shift tables of a per-row requantizer list.
#[derive(Serialize)]
pub(crate) struct ReqTable {
    /// Identifier of the multipliers (`{p}_{id}_{name}m`); the shifts' ends in `s`.
    m: String,
    s: String,
    len: usize,
    /// Initializer of the multipliers.
    muls: String,
    /// Initializer of the shifts.
    shifts: String,
}

/// One op as the C template writes it: its index, a description for the comment, and
/// its operands as C expressions (views, requantizer multipliers and shifts indexed by
/// `k`).
#[derive(Serialize)]
pub(crate) struct OpCtx {
    n: usize,
    desc: String,
    /// Elements the op writes.
    len: usize,
    #[serde(flatten)]
    op: COp,
}

/// The operands of one op (see [`Op`] for the arithmetic).
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum COp {
    /// A packed matrix product: `_q_prep` into `xq`, then `_q_mv_simd` under `cond`
    /// (`""`: no SIMD kernel) and `_q_mv_scalar` otherwise.
    MatVecPacked {
        w: String,
        b: String,
        x: String,
        acc: String,
        xq: String,
        cols: usize,
        blocks: usize,
        groups: usize,
        cond: String,
    },
    /// A plain-rows matrix product.
    MatVecPlain {
        w: String,
        b: String,
        x: String,
        acc: String,
        rows: usize,
        cols: usize,
    },
    GateSum {
        dst: String,
        a: String,
        ma: String,
        sa: String,
        /// `""` without a second term.
        b: String,
        mb: String,
        sb: String,
    },
    Pwl {
        table: usize,
        src: String,
        dst: String,
    },
    MulQ15 {
        dst: String,
        a: String,
        b: String,
    },
    AddSat {
        dst: String,
        a: String,
        b: String,
    },
    Blend {
        dst: String,
        z: String,
        a: String,
        b: String,
    },
    Relu {
        dst: String,
        src: String,
    },
    Widen {
        dst: String,
        src: String,
        zero_point: String,
        m: String,
        s: String,
    },
    Narrow {
        dst: String,
        a: String,
        /// `""` without a second factor.
        b: String,
        m: String,
        s: String,
        zero_point: String,
    },
    Requant32 {
        dst: String,
        src: String,
        m: String,
        s: String,
    },
    /// The LSTM cell update of `dst` in place (`_q_cell`, `shift = 30 − cell bits`).
    LstmCell {
        dst: String,
        i: String,
        f: String,
        g: String,
        shift: u32,
    },
}

/// Names the C expression of a view: the buffer's name, offset by its start.
fn at(layer: &OpLayer, v: View) -> String {
    let name = &layer.buffers[v.buf].name;
    if v.start == 0 {
        name.clone()
    } else {
        format!("({name} + {})", v.start)
    }
}

/// Builds the cell context of `layer` (C identifiers `{p}_{id}_…`).
pub(crate) fn cell_ctx(
    p: &str,
    pu: &str,
    id: &str,
    layer: &OpLayer,
    mats: Vec<Option<MatCtx>>,
    chunk: Option<usize>,
) -> Result<CellCtx, GenError> {
    // The projection run per chunk: its accumulators come in as a parameter.
    let proj_op = chunk.and_then(|k| match layer.ops.get(k) {
        Some(Op::MatVec { mat, x, acc }) => mats
            .get(*mat)
            .cloned()
            .flatten()
            .map(|pk| (k, *mat, *x, *acc, pk)),
        _ => None,
    });
    let mut cmats = Vec::new();
    for (k, (m, packed)) in layer.mats.iter().zip(mats).enumerate() {
        cmats.push(CellMat {
            w: format!("m{k}w"),
            b: format!("m{k}b"),
            rows: m.rows,
            cols: m.cols,
            plain: if packed.is_none() {
                matrix_i8(&m.w, m.cols)
            } else {
                String::new()
            },
            bias: if packed.is_none() {
                list_i32(&m.bias)
            } else {
                String::new()
            },
            packed,
        });
    }
    let mut params = Vec::new();
    let mut states = String::new();
    for b in &layer.buffers {
        if let Role::State { .. } = b.role {
            params.push(format!("{} *{}", b.dtype.c_type(), b.name));
            states.push_str(&format!("{}, ", b.name));
        }
    }
    let mut rec_params = params.clone();
    let mut chunk_params = params.clone();
    chunk_params.push("const int8_t *const *xs".to_string());
    let proj = proj_op.clone().map(|(_, mat, x, acc, pk)| {
        let acc_name = layer.buffers[acc.buf].name.clone();
        rec_params.push(format!("const int32_t *{acc_name}"));
        let out = &layer.buffers[layer.output.buf];
        ProjCtx {
            acc: acc_name,
            w: format!("m{mat}w"),
            b: format!("m{mat}b"),
            mat: pk,
            cols: x.len,
            x: layer.buffers[x.buf].name.clone(),
            out: out.name.clone(),
            out_len: layer.output.len,
            states: states.clone(),
            chunk_params: chunk_params.join(", "),
        }
    });
    for b in &layer.buffers {
        if b.role == Role::Input {
            params.push(format!("const int8_t *{}", b.name));
        }
    }
    let mut locals = Vec::new();
    // Scratch buffers; accumulators of packed matrices are padded to whole blocks.
    for (i, b) in layer.buffers.iter().enumerate() {
        if b.role != Role::Temp || proj_op.as_ref().is_some_and(|p| p.3.buf == i) {
            continue;
        }
        let pad = layer
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::MatVec { mat, acc, .. } if acc.buf == i => {
                    cmats[*mat].packed.as_ref().map(|m| acc.start + m.rows_pad)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        locals.push(Local {
            ctype: b.dtype.c_type(),
            name: b.name.clone(),
            len: b.len.max(pad),
        });
    }
    let mut reqs = Vec::new();
    let mut uses_gate_pre = false;
    let mut uses_cell = false;
    let mut ops = Vec::new();
    let mut needs_rj = false;
    for (n, op) in layer.ops.iter().enumerate() {
        if proj_op.as_ref().is_some_and(|p| p.0 == n) {
            continue;
        }
        let v = |x: &View| at(layer, *x);
        let mut req = |name: &str, r: &[Requant]| req_tables(&mut reqs, p, id, name, r);
        let c = match op {
            Op::Lookup { .. } => {
                return Err(GenError::Unsupported(format!(
                    "layer \"{}\": a lookup inside a cell",
                    layer.name
                )))
            }
            Op::MatVec { mat, x, acc } => {
                let m = &cmats[*mat];
                let (w, b) = (format!("{p}_{id}_{}", m.w), format!("{p}_{id}_{}", m.b));
                match &m.packed {
                    Some(pk) => {
                        let xq = format!("xq{n}");
                        locals.push(Local {
                            ctype: "int32_t",
                            name: xq.clone(),
                            len: pk.groups,
                        });
                        let cond = if pk.simd {
                            format!("{pu}_USE_SIMD")
                        } else if !pk.vbias.is_empty() {
                            format!("{pu}_USE_SIMD && {pu}_USE_VNNI")
                        } else {
                            String::new()
                        };
                        COp::MatVecPacked {
                            w,
                            b,
                            x: v(x),
                            acc: v(acc),
                            xq,
                            cols: m.cols,
                            blocks: pk.blocks,
                            groups: pk.groups,
                            cond,
                        }
                    }
                    None => {
                        needs_rj = true;
                        COp::MatVecPlain {
                            w,
                            b,
                            x: v(x),
                            acc: v(acc),
                            rows: m.rows,
                            cols: m.cols,
                        }
                    }
                }
            }
            Op::GateSum { a, ra, b, dst } => {
                let (ma, sa) = req(&format!("o{n}a"), ra);
                let (bv, mb, sb) = match b {
                    Some((b, rb)) => {
                        uses_gate_pre = true;
                        let (mb, sb) = req(&format!("o{n}b"), rb);
                        (v(b), mb, sb)
                    }
                    None => Default::default(),
                };
                COp::GateSum {
                    dst: v(dst),
                    a: v(a),
                    ma,
                    sa,
                    b: bv,
                    mb,
                    sb,
                }
            }
            Op::Pwl { table, src, dst } => COp::Pwl {
                table: *table,
                src: v(src),
                dst: v(dst),
            },
            Op::MulQ15 { a, b, dst } => COp::MulQ15 {
                dst: v(dst),
                a: v(a),
                b: v(b),
            },
            Op::AddSat { a, b, dst } => COp::AddSat {
                dst: v(dst),
                a: v(a),
                b: v(b),
            },
            Op::Blend { z, a, b, dst } => COp::Blend {
                dst: v(dst),
                z: v(z),
                a: v(a),
                b: v(b),
            },
            Op::Relu { src, dst } => COp::Relu {
                dst: v(dst),
                src: v(src),
            },
            Op::Widen {
                src,
                zero_point,
                req: r,
                dst,
            } => COp::Widen {
                dst: v(dst),
                src: v(src),
                zero_point: lit(*zero_point),
                m: lit(r.multiplier),
                s: r.shift.clamp(-31, 31).to_string(),
            },
            Op::Narrow {
                a,
                b,
                req: r,
                zero_point,
                dst,
            } => {
                let (m, s) = req(&format!("o{n}a"), r);
                COp::Narrow {
                    dst: v(dst),
                    a: v(a),
                    b: b.map(|b| v(&b)).unwrap_or_default(),
                    m,
                    s,
                    zero_point: lit(*zero_point),
                }
            }
            Op::Requant32 { src, req: r, dst } => {
                let (m, s) = req(&format!("o{n}a"), r);
                COp::Requant32 {
                    dst: v(dst),
                    src: v(src),
                    m,
                    s,
                }
            }
            Op::LstmCell {
                i,
                f,
                g,
                c,
                cell_frac_bits,
            } => {
                uses_cell = true;
                COp::LstmCell {
                    dst: v(c),
                    i: v(i),
                    f: v(f),
                    g: v(g),
                    shift: 30 - (*cell_frac_bits).min(15),
                }
            }
        };
        ops.push(OpCtx {
            n,
            desc: c_comment(&describe(op)),
            len: op.writes().len,
            op: c,
        });
    }
    Ok(CellCtx {
        mats: cmats,
        reqs,
        params: params.join(", "),
        locals,
        needs_rj,
        ops,
        uses_gate_pre,
        uses_cell,
        proj,
        rec_params: rec_params.join(", "),
    })
}

/// The multiplier and shift of a requantizer list as C expressions indexed by `k`:
/// literals when the list has one entry, else two `static const` tables (suffixes
/// `{name}m`, `{name}s`).
fn req_tables(
    reqs: &mut Vec<ReqTable>,
    p: &str,
    id: &str,
    name: &str,
    req: &[Requant],
) -> (String, String) {
    if let [r] = req {
        return (lit(r.multiplier), r.shift.clamp(-31, 31).to_string());
    }
    let (m, s) = (format!("{p}_{id}_{name}m"), format!("{p}_{id}_{name}s"));
    reqs.push(ReqTable {
        m: m.clone(),
        s: s.clone(),
        len: req.len(),
        muls: list(req.iter().map(|r| lit(r.multiplier)), "    ", PER_LINE_I32),
        shifts: list(
            req.iter().map(|r| r.shift.clamp(-31, 31).to_string()),
            "    ",
            16,
        ),
    });
    (format!("{m}[k]"), format!("{s}[k]"))
}

/// A one-line description of an op for the generated comment.
fn describe(op: &Op) -> String {
    match op {
        Op::Lookup { .. } => "embedding lookup".into(),
        Op::MatVec { .. } => "acc = bias + W x".into(),
        Op::GateSum { b: Some(_), .. } => "pre = sat16(req_a(a) + req_b(b))".into(),
        Op::GateSum { b: None, .. } => "v = sat16(req(a))".into(),
        Op::Pwl { table, .. } => format!("y = sat16(pwl{table}(x))"),
        Op::MulQ15 { .. } => "y = sat16(rdbpot(a * b, 15))".into(),
        Op::AddSat { .. } => "y = sat16(a + b)".into(),
        Op::Blend { .. } => "y = sat16(a + rdbpot(z * (b - a), 15))".into(),
        Op::Relu { .. } => "y = max(x, 0)".into(),
        Op::Widen { .. } => "y = sat16(req(x - zero_point))".into(),
        Op::Narrow { b: Some(_), .. } => "h = sat8(req(a * b) + zero_point)".into(),
        Op::Narrow { b: None, .. } => "h = sat8(req(a) + zero_point)".into(),
        Op::Requant32 { .. } => "y = req(acc)".into(),
        Op::LstmCell { .. } => "LSTM cell update".into(),
    }
}
