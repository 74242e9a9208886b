//! C emitters for the op-level IR ([`crate::ir::ops`]): one function per op that
//! writes its C statements, used for the layers the back end has no fused kernel for
//! (GRU, Elman RNN). Every target-dependent choice comes in from outside: the packed
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
    /// Requantizer tables: `static const` definitions.
    pub statics: Vec<String>,
    /// Parameters of the step function (state buffers, then `x`).
    pub params: String,
    /// Body of the step function.
    pub body: Vec<String>,
    /// Uses `_q_gate_pre` (a gate sum of two accumulators).
    pub uses_gate_pre: bool,
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
) -> Result<CellCtx, GenError> {
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
    for b in &layer.buffers {
        if let Role::State { .. } = b.role {
            params.push(format!("{} *{}", b.dtype.c_type(), b.name));
        }
    }
    for b in &layer.buffers {
        if b.role == Role::Input {
            params.push(format!("const int8_t *{}", b.name));
        }
    }
    let mut body = Vec::new();
    // Scratch buffers; accumulators of packed matrices are padded to whole blocks.
    for (i, b) in layer.buffers.iter().enumerate() {
        if b.role != Role::Temp {
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
        body.push(format!(
            "{} {}[{}];",
            b.dtype.c_type(),
            b.name,
            b.len.max(pad)
        ));
    }
    let mut statics = Vec::new();
    let mut uses_gate_pre = false;
    let mut ops = Vec::new();
    let mut needs_rj = false;
    for (n, op) in layer.ops.iter().enumerate() {
        let v = |x: &View| at(layer, *x);
        ops.push(format!("/* op {n}: {} */", c_comment(&describe(op))));
        match op {
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
                        body.push(format!("int32_t {xq}[{}];", pk.groups));
                        ops.push(format!(
                            "{p}_q_prep({xq}, {}, {}, {});",
                            v(x),
                            m.cols,
                            pk.groups
                        ));
                        let call = |kind: &str| {
                            format!(
                                "{p}_q_mv_{kind}({w}, {b}, {xq}, {}, {}, {});",
                                pk.blocks,
                                pk.groups,
                                v(acc)
                            )
                        };
                        if pk.simd || !pk.vbias.is_empty() {
                            let vnni = if pk.simd {
                                String::new()
                            } else {
                                format!(" && {pu}_USE_VNNI")
                            };
                            ops.push(format!("#if {pu}_USE_SIMD{vnni}"));
                            ops.push(call("simd"));
                            ops.push("#else".into());
                            ops.push(call("scalar"));
                            ops.push("#endif".into());
                        } else {
                            ops.push(call("scalar"));
                        }
                    }
                    None => {
                        needs_rj = true;
                        ops.push(format!("for (r = 0; r < {}; ++r) {{", m.rows));
                        ops.push(format!("    int32_t sum = {b}[r];"));
                        ops.push(format!("    for (j = 0; j < {}; ++j) {{", m.cols));
                        ops.push(format!(
                            "        sum += (int32_t){w}[r][j] * (int32_t){}[j];",
                            v(x)
                        ));
                        ops.push("    }".into());
                        ops.push(format!("    {}[r] = sum;", v(acc)));
                        ops.push("}".into());
                    }
                }
            }
            Op::GateSum { a, ra, b, dst } => {
                let (ma, sa) = req_tables(&mut statics, p, id, &format!("o{n}a"), ra);
                match b {
                    Some((b, rb)) => {
                        uses_gate_pre = true;
                        let (mb, sb) = req_tables(&mut statics, p, id, &format!("o{n}b"), rb);
                        ops.push(each(
                            dst,
                            &format!(
                                "{}[k] = {p}_q_gate_pre({}[k], {ma}, {sa}, {}[k], {mb}, {sb});",
                                v(dst),
                                v(a),
                                v(b)
                            ),
                        ));
                    }
                    None => ops.push(each(
                        dst,
                        &format!(
                            "{}[k] = {p}_q_sat16({p}_q_mbqm({}[k], {ma}, {sa}));",
                            v(dst),
                            v(a)
                        ),
                    )),
                }
            }
            Op::Pwl { table, src, dst } => ops.push(format!(
                "{p}_pwl{table}_n({}, {}, {});",
                v(src),
                v(dst),
                dst.len
            )),
            Op::MulQ15 { a, b, dst } => ops.push(each(
                dst,
                &format!(
                    "{}[k] = {p}_q_sat16({p}_q_rdbpot((int32_t){}[k] * (int32_t){}[k], 15));",
                    v(dst),
                    v(a),
                    v(b)
                ),
            )),
            Op::AddSat { a, b, dst } => ops.push(each(
                dst,
                &format!(
                    "{}[k] = {p}_q_sat16((int32_t){}[k] + (int32_t){}[k]);",
                    v(dst),
                    v(a),
                    v(b)
                ),
            )),
            Op::Blend { z, a, b, dst } => ops.push(each(
                dst,
                &format!(
                    "{d}[k] = {p}_q_sat16((int32_t){a}[k] + {p}_q_rdbpot((int32_t){z}[k] * ((int32_t){b}[k] - (int32_t){a}[k]), 15));",
                    d = v(dst),
                    a = v(a),
                    b = v(b),
                    z = v(z)
                ),
            )),
            Op::Relu { src, dst } => ops.push(each(
                dst,
                &format!("{}[k] = {s}[k] > 0 ? {s}[k] : 0;", v(dst), s = v(src)),
            )),
            Op::Widen {
                src,
                zero_point,
                req,
                dst,
            } => ops.push(each(
                dst,
                &format!(
                    "{}[k] = {p}_q_sat16({p}_q_mbqm((int32_t){}[k] - {}, {}, {}));",
                    v(dst),
                    v(src),
                    lit(*zero_point),
                    lit(req.multiplier),
                    req.shift.clamp(-31, 31)
                ),
            )),
            Op::Narrow {
                a,
                b,
                req,
                zero_point,
                dst,
            } => {
                let (m, s) = req_tables(&mut statics, p, id, &format!("o{n}a"), req);
                let x = match b {
                    Some(b) => format!("(int32_t){}[k] * (int32_t){}[k]", v(a), v(b)),
                    None => format!("(int32_t){}[k]", v(a)),
                };
                ops.push(each(
                    dst,
                    &format!(
                        "{}[k] = {p}_q_sat8({p}_q_sat32((int64_t){p}_q_mbqm({x}, {m}, {s}) + {}));",
                        v(dst),
                        lit(*zero_point)
                    ),
                ));
            }
            Op::Requant32 { src, req, dst } => {
                let (m, s) = req_tables(&mut statics, p, id, &format!("o{n}a"), req);
                ops.push(each(
                    dst,
                    &format!("{}[k] = {p}_q_mbqm({}[k], {m}, {s});", v(dst), v(src)),
                ));
            }
            Op::LstmCell { .. } => {
                return Err(GenError::Unsupported(format!(
                    "layer \"{}\": an LSTM cell update outside an LSTM layer",
                    layer.name
                )))
            }
        }
    }
    body.push(if needs_rj {
        "int32_t k, r, j;".to_string()
    } else {
        "int32_t k;".to_string()
    });
    body.extend(ops);
    // `k` may be unused in a layer whose element-wise ops all went to array calls.
    body.push("(void)k;".into());
    Ok(CellCtx {
        mats: cmats,
        statics,
        params: params.join(", "),
        body,
        uses_gate_pre,
    })
}

/// `for (k = 0; k < len; ++k) { stmt }`.
fn each(dst: &View, stmt: &str) -> String {
    format!("for (k = 0; k < {}; ++k) {{ {stmt} }}", dst.len)
}

/// The multiplier and shift of a requantizer list as C expressions indexed by `k`:
/// literals when the list has one entry, else two `static const` tables (suffixes
/// `{name}m`, `{name}s`).
fn req_tables(
    statics: &mut Vec<String>,
    p: &str,
    id: &str,
    name: &str,
    req: &[Requant],
) -> (String, String) {
    if let [r] = req {
        return (lit(r.multiplier), r.shift.clamp(-31, 31).to_string());
    }
    let (m, s) = (format!("{p}_{id}_{name}m"), format!("{p}_{id}_{name}s"));
    statics.push(format!(
        "static const int32_t {m}[{}] = {{\n{}\n}};",
        req.len(),
        list(req.iter().map(|r| lit(r.multiplier)), "    ", PER_LINE_I32)
    ));
    statics.push(format!(
        "static const int8_t {s}[{}] = {{\n{}\n}};",
        req.len(),
        list(
            req.iter().map(|r| r.shift.clamp(-31, 31).to_string()),
            "    ",
            16
        )
    ));
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
