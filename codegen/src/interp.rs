//! The reference interpreter: runs a lowered [`Program`] step by step, every layer as
//! its ops ([`crate::ir::ops`]) through the runtime's portable kernels. It is the
//! ground truth every back end is compared against, bit for bit.

use crate::ir::ops::{Dtype, Op, OpLayer, Role, View};
use crate::ir::*;
use irnn_runtime::kernels::{
    add_sat_i16, blend_q15, gate_preactivation, lstm_cell_update, matvec_i8, mul_q15, relu_i16,
    requant_i16, requant_i8, widen_i8,
};
use irnn_runtime::simd::{GateReq, Isa, Kernel, PackedMatrix, RegFold, RegPwl};
use irnn_runtime::{saturate_i16, saturate_i8, Requant};

/// Error for inputs the program cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A token id outside `0..vocab_size`.
    #[error("token id {token} is outside the vocabulary 0..{vocab_size}")]
    TokenOutOfRange {
        /// The id.
        token: i64,
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// A feature vector of the wrong width.
    #[error("feature vector has {got} values; the model takes {want}")]
    FeatureWidth {
        /// Width given.
        got: usize,
        /// Width expected.
        want: usize,
    },
    /// Token input to a feature model or the reverse.
    #[error("the model takes {want} input")]
    InputKind {
        /// "token" or "feature".
        want: &'static str,
    },
}

/// The error a step of `program` on `token` returns, if any, without stepping.
pub fn check_token(program: &Program, token: i64) -> Result<(), StepError> {
    let InputIr::Tokens { vocab_size } = program.input else {
        return Err(StepError::InputKind { want: "feature" });
    };
    if token < 0 || token as u64 >= vocab_size as u64 {
        return Err(StepError::TokenOutOfRange { token, vocab_size });
    }
    Ok(())
}

/// The error a step of `program` on a feature vector of `width` values returns, if
/// any, without stepping.
pub fn check_features(program: &Program, width: usize) -> Result<(), StepError> {
    let InputIr::Features { size, .. } = program.input else {
        return Err(StepError::InputKind { want: "token" });
    };
    if width != size {
        return Err(StepError::FeatureWidth {
            got: width,
            want: size,
        });
    }
    Ok(())
}

/// The storage of one buffer.
enum Store {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
}

impl Store {
    fn new(dtype: Dtype, len: usize) -> Self {
        match dtype {
            Dtype::I8 => Store::I8(vec![0; len]),
            Dtype::I16 => Store::I16(vec![0; len]),
            Dtype::I32 => Store::I32(vec![0; len]),
        }
    }

    /// Stores `x`, which the op has already brought into the element type's range.
    fn set(&mut self, k: usize, x: i32) {
        match self {
            Store::I8(v) => v[k] = x as i8,
            Store::I16(v) => v[k] = x as i16,
            Store::I32(v) => v[k] = x,
        }
    }

    fn i8s(&self) -> &[i8] {
        match self {
            Store::I8(v) => v,
            _ => &[],
        }
    }
}

/// A matrix packed for a SIMD kernel (the layout of the generated code's target).
struct Packed {
    bytes: Vec<u8>,
    bias: Vec<i32>,
    offset_bias: Option<Vec<i32>>,
    has_min_weight: bool,
    block_rows: usize,
}

impl Packed {
    fn matrix(&self, rows: usize, cols: usize) -> PackedMatrix<'_> {
        let m = PackedMatrix::new(&self.bytes, &self.bias, rows, cols, self.block_rows);
        let m = match &self.offset_bias {
            Some(o) => m.with_offset_bias(o),
            None => m,
        };
        if self.has_min_weight {
            m
        } else {
            m.without_min_weight()
        }
    }
}

/// Rows per requantizer block of [`GateBlocks`].
const GATE_BLOCK: usize = 64;

/// The requantizers of an [`Op::GateSum`] with two terms, in blocks of [`GATE_BLOCK`]
/// rows for [`Kernel::gate_sums`] (whose vector forms the runtime tests against
/// [`gate_preactivation`], row by row); rows past the last whole block are left to
/// [`gate_preactivation`] itself.
struct GateBlocks {
    /// Per block, the requantizers of the first term (`a`).
    x: Vec<GateReq<GATE_BLOCK>>,
    /// Per block, the requantizers of the second term (`b`).
    h: Vec<GateReq<GATE_BLOCK>>,
}

impl GateBlocks {
    /// The blocks of `op` when it is a gate sum of two terms. No accumulator interval
    /// is promised ([`GateReq::with_acc_range`]): the kernel checks every call, so the
    /// interpreter's results never rest on the range analysis.
    fn of(op: &Op) -> Option<GateBlocks> {
        let Op::GateSum {
            ra,
            b: Some((_, rb)),
            dst,
            ..
        } = op
        else {
            return None;
        };
        let blocks = |req: &[Requant]| {
            (0..dst.len / GATE_BLOCK)
                .map(|blk| {
                    let (mut mul, mut shift) = ([0; GATE_BLOCK], [0; GATE_BLOCK]);
                    for r in 0..GATE_BLOCK {
                        let q = req_at(req, blk * GATE_BLOCK + r);
                        (mul[r], shift[r]) = (q.multiplier, q.shift);
                    }
                    GateReq::new(&mul, &shift)
                })
                .collect()
        };
        Some(GateBlocks {
            x: blocks(ra),
            h: blocks(rb),
        })
    }
}

/// One layer's ops and buffers.
struct LayerRun {
    layer: OpLayer,
    /// Per lane (sequence stepped in lock step), the layer's buffers.
    lanes: Vec<Vec<Store>>,
    /// Per matrix, its packed form when a SIMD kernel runs the products.
    packed: Vec<Option<Packed>>,
    /// The lanes' input vectors of a product, one after another.
    xbuf: Vec<i8>,
    /// The lanes' accumulators of a product, one after another.
    accbuf: Vec<i32>,
    /// Per op, its [`GateBlocks`] when a SIMD kernel runs the gate sums.
    gates: Vec<Option<GateBlocks>>,
    /// The kernel of the products, the gate sums and the register-form tables.
    kernel: Kernel,
}

/// Requantizer `k` of a list that has one entry per element or one for all.
#[inline(always)]
fn req_at(req: &[Requant], k: usize) -> Requant {
    if req.len() == 1 {
        req[0]
    } else {
        req[k]
    }
}

impl LayerRun {
    fn new(layer: OpLayer, kernel: Kernel, lanes: usize) -> Self {
        let lanes = (0..lanes)
            .map(|_| {
                layer
                    .buffers
                    .iter()
                    .map(|b| Store::new(b.dtype, b.len))
                    .collect()
            })
            .collect();
        // The target whose packed layout the kernel reads (AVX-VNNI reads AVX2's).
        let target = match kernel.isa() {
            Isa::Portable => None,
            Isa::AvxVnni => Some(crate::back::Target::Avx2),
            isa => crate::back::targets::TARGETS
                .iter()
                .find(|t| t.isa == isa)
                .map(|t| t.target),
        };
        let packed = layer
            .mats
            .iter()
            .map(|m| {
                let t = target?;
                let p = crate::back::pack::pack_matrix(
                    &layer.name,
                    &m.name,
                    &m.w,
                    &m.bias,
                    m.rows,
                    m.cols,
                    t,
                )
                .ok()?;
                Some(Packed {
                    bytes: p.data.iter().map(|&v| v as u8).collect(),
                    bias: p.bias,
                    offset_bias: p.offset_bias,
                    has_min_weight: p.has_min_weight,
                    block_rows: p.br,
                })
            })
            .collect();
        let gates = layer
            .ops
            .iter()
            .map(|op| match kernel.isa() {
                Isa::Portable => None,
                _ => GateBlocks::of(op),
            })
            .collect();
        LayerRun {
            layer,
            lanes,
            packed,
            gates,
            kernel,
            xbuf: Vec::new(),
            accbuf: Vec::new(),
        }
    }

    fn reset(&mut self) {
        for stores in &mut self.lanes {
            for (b, s) in self.layer.buffers.iter().zip(stores.iter_mut()) {
                if let Role::State { reset } = b.role {
                    for k in 0..b.len {
                        s.set(k, reset);
                    }
                }
            }
        }
    }

    /// Runs the layer's ops for every lane: lane `l` on `inputs[l · width ..]` (the
    /// layer input, if it has one; `width` = `inputs.len() / lanes`) and `tokens[l]`.
    /// A matrix product runs once for all lanes ([`Kernel::matvec_seq`]: each lane's
    /// sums are the exact integer sums of one product); every other op runs lane by
    /// lane, on that lane's buffers alone.
    fn step(
        &mut self,
        inputs: &[i8],
        tokens: &[usize],
        tables: &[PwlTable],
        luts: &[Vec<i16>],
        regs: &[Option<RegPwl>],
        scratch: &mut Scratch,
    ) {
        let (lanes, kernel) = (self.lanes.len(), self.kernel);
        if let Some(i) = self.layer.input() {
            let width = inputs.len() / lanes.max(1);
            for (stores, x) in self.lanes.iter_mut().zip(inputs.chunks_exact(width.max(1))) {
                if let Store::I8(v) = &mut stores[i] {
                    v.copy_from_slice(x);
                }
            }
        }
        for n in 0..self.layer.ops.len() {
            let op = &self.layer.ops[n];
            if let Op::MatVec { mat, x, acc } = op {
                let m = &self.layer.mats[*mat];
                // x and acc are different buffers (int8 and int32).
                let mut xs = std::mem::take(&mut self.xbuf);
                let mut accs = std::mem::take(&mut self.accbuf);
                xs.clear();
                for stores in &self.lanes {
                    xs.extend_from_slice(&stores[x.buf].i8s()[x.start..x.start + x.len]);
                }
                accs.clear();
                accs.resize(lanes * acc.len, 0);
                match &self.packed[*mat] {
                    Some(p) if lanes == 1 => {
                        kernel.matvec(&p.matrix(m.rows, m.cols), &xs, &mut accs)
                    }
                    Some(p) => kernel.matvec_seq(&p.matrix(m.rows, m.cols), &xs, &mut accs),
                    None => {
                        for (x, a) in xs
                            .chunks_exact(x.len.max(1))
                            .zip(accs.chunks_exact_mut(acc.len.max(1)))
                        {
                            matvec_i8(&m.w, x, &m.bias, a);
                        }
                    }
                }
                for (stores, a) in self.lanes.iter_mut().zip(accs.chunks_exact(acc.len.max(1))) {
                    if let Store::I32(v) = &mut stores[acc.buf] {
                        v[acc.start..acc.start + acc.len].copy_from_slice(a);
                    }
                }
                self.xbuf = xs;
                self.accbuf = accs;
                continue;
            }
            for (stores, &token) in self.lanes.iter_mut().zip(tokens) {
                let fast = (luts, regs, self.gates[n].as_ref(), kernel);
                if !run_op_direct(op, stores, fast) {
                    run_op(op, stores, token, tables, luts, scratch);
                }
            }
        }
    }
}

/// Scratch vectors of [`run_op`]: its sources as int32 values and its result.
#[derive(Default)]
struct Scratch {
    src: [Vec<i32>; 4],
    out: Vec<i32>,
}

/// Elements `v.start .. v.start + len` of `v`'s buffer as int32 values, into `out`
/// (an op reads `len` = its destination's length elements of each source).
fn load(stores: &[Store], v: View, len: usize, out: &mut Vec<i32>) {
    out.clear();
    let r = v.start..v.start + len;
    match &stores[v.buf] {
        Store::I8(x) => out.extend(x[r].iter().map(|&x| x as i32)),
        Store::I16(x) => out.extend(x[r].iter().map(|&x| x as i32)),
        Store::I32(x) => out.extend_from_slice(&x[r]),
    }
}

/// Stores `vals`, which the op has already brought into the element type's range, at
/// `dst`.
fn store(stores: &mut [Store], dst: View, vals: &[i32]) {
    let r = dst.start..dst.start + vals.len();
    match &mut stores[dst.buf] {
        Store::I8(x) => x[r].iter_mut().zip(vals).for_each(|(d, &v)| *d = v as i8),
        Store::I16(x) => x[r].iter_mut().zip(vals).for_each(|(d, &v)| *d = v as i16),
        Store::I32(x) => x[r].copy_from_slice(vals),
    }
}

/// What the fast paths of [`run_op_direct`] use: the tables' lookup tables and
/// register forms ([`Interpreter`]), the op's gate blocks and the kernel.
type Fast<'a> = (
    &'a [Vec<i16>],
    &'a [Option<RegPwl>],
    Option<&'a GateBlocks>,
    Kernel,
);

/// `len` elements of `v`'s buffer from `v.start`, when it is an int8 buffer.
fn i8_at(stores: &[Store], v: View, len: usize) -> Option<&[i8]> {
    match &stores[v.buf] {
        Store::I8(x) => x.get(v.start..v.start + len),
        _ => None,
    }
}

/// `len` elements of `v`'s buffer from `v.start`, when it is an int16 buffer.
fn i16_at(stores: &[Store], v: View, len: usize) -> Option<&[i16]> {
    match &stores[v.buf] {
        Store::I16(x) => x.get(v.start..v.start + len),
        _ => None,
    }
}

/// `len` elements of `v`'s buffer from `v.start`, when it is an int32 buffer.
fn i32_at(stores: &[Store], v: View, len: usize) -> Option<&[i32]> {
    match &stores[v.buf] {
        Store::I32(x) => x.get(v.start..v.start + len),
        _ => None,
    }
}

/// Runs the element-wise op `op` straight on one lane's typed buffers, with the same
/// kernel calls as [`run_op`] but without its int32 copies; `false` (and nothing
/// written) for an op this does not cover, which [`run_op`] then runs.
///
/// The destination's buffer is moved out of `stores` while the op runs, so a source in
/// that buffer reads as missing (the empty placeholder) and the op is left to
/// [`run_op`]: a destination never overlaps a source here, except where an op reads
/// and writes the same elements one by one (the cell state of [`Op::LstmCell`], a
/// [`Op::Pwl`] in place), which the arms below do explicitly.
fn run_op_direct(op: &Op, stores: &mut [Store], fast: Fast<'_>) -> bool {
    let dst = op.writes();
    let placeholder = Store::I32(Vec::new());
    let mut d = std::mem::replace(&mut stores[dst.buf], placeholder);
    let done = direct(op, stores, &mut d, fast).is_some();
    stores[dst.buf] = d;
    done
}

/// [`run_op_direct`] with the destination's buffer `d` moved out of `stores`.
fn direct(op: &Op, stores: &[Store], d: &mut Store, fast: Fast<'_>) -> Option<()> {
    let (luts, regs, gates, kernel) = fast;
    let dst = op.writes();
    let n = dst.len;
    let r = dst.start..dst.start + n;
    match (op, d) {
        (Op::GateSum { a, ra, b, .. }, Store::I16(d)) => {
            let (x, out) = (i32_at(stores, *a, n)?, d.get_mut(r)?);
            match b {
                Some((b, rb)) => {
                    let y = i32_at(stores, *b, n)?;
                    let mut done = 0;
                    if let Some(g) = gates {
                        const B: usize = GATE_BLOCK;
                        let rows = x.chunks_exact(B).zip(y.chunks_exact(B));
                        let reqs = g.x.iter().zip(&g.h);
                        for (((x, y), o), (rx, rh)) in rows.zip(out.chunks_exact_mut(B)).zip(reqs) {
                            let block = "chunks of GATE_BLOCK rows";
                            let (x, y) = (x.try_into().expect(block), y.try_into().expect(block));
                            kernel.gate_sums(x, rx, y, rh, o.try_into().expect(block));
                            done += B;
                        }
                    }
                    for (k, o) in out.iter_mut().enumerate().skip(done) {
                        *o = gate_preactivation(x[k], req_at(ra, k), y[k], req_at(rb, k));
                    }
                }
                None => {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = requant_i16(x[k], req_at(ra, k));
                    }
                }
            }
        }
        (Op::Pwl { table, src, .. }, Store::I16(d)) => {
            let lut = luts.get(*table)?;
            let xs = if src.buf == dst.buf {
                // In place (the source is the destination itself), element by element.
                if src.start != dst.start {
                    return None;
                }
                d.get_mut(r)?
            } else {
                let (x, out) = (i16_at(stores, *src, n)?, d.get_mut(r)?);
                out.copy_from_slice(x);
                out
            };
            let at = |x: i16| lut[x as u16 as usize];
            match regs.get(*table) {
                Some(Some(reg)) => kernel.pwl_i16(reg, xs, |x| at(x) as i32),
                _ => xs.iter_mut().for_each(|x| *x = at(*x)),
            }
        }
        (Op::MulQ15 { a, b, .. }, Store::I16(d)) => {
            let (a, b, out) = (
                i16_at(stores, *a, n)?,
                i16_at(stores, *b, n)?,
                d.get_mut(r)?,
            );
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = mul_q15(a, b);
            }
        }
        (Op::AddSat { a, b, .. }, Store::I16(d)) => {
            let (a, b, out) = (
                i16_at(stores, *a, n)?,
                i16_at(stores, *b, n)?,
                d.get_mut(r)?,
            );
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = add_sat_i16(a, b);
            }
        }
        (Op::Blend { z, a, b, .. }, Store::I16(d)) => {
            let z = i16_at(stores, *z, n)?;
            let (a, b, out) = (
                i16_at(stores, *a, n)?,
                i16_at(stores, *b, n)?,
                d.get_mut(r)?,
            );
            for (((o, &z), &a), &b) in out.iter_mut().zip(z).zip(a).zip(b) {
                *o = blend_q15(z, a, b);
            }
        }
        (Op::Relu { src, .. }, Store::I16(d)) => {
            let (x, out) = (i16_at(stores, *src, n)?, d.get_mut(r)?);
            out.iter_mut().zip(x).for_each(|(o, &x)| *o = relu_i16(x));
        }
        (
            Op::Widen {
                src,
                zero_point,
                req,
                ..
            },
            Store::I16(d),
        ) => {
            let (x, out) = (i8_at(stores, *src, n)?, d.get_mut(r)?);
            out.iter_mut()
                .zip(x)
                .for_each(|(o, &x)| *o = widen_i8(x, *zero_point, *req));
        }
        (
            Op::Narrow {
                a,
                b,
                req,
                zero_point,
                ..
            },
            Store::I8(d),
        ) => {
            let out = d.get_mut(r)?;
            let zp = *zero_point;
            match (b, i16_at(stores, *a, n), i32_at(stores, *a, n)) {
                (Some(b), Some(x), _) => {
                    let y = i16_at(stores, *b, n)?;
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = requant_i8(x[k] as i32 * y[k] as i32, req_at(req, k), zp);
                    }
                }
                (None, Some(x), _) => {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = requant_i8(x[k] as i32, req_at(req, k), zp);
                    }
                }
                (None, None, Some(x)) => {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = requant_i8(x[k], req_at(req, k), zp);
                    }
                }
                _ => return None,
            }
        }
        (Op::Requant32 { src, req, .. }, Store::I32(d)) => {
            let (x, out) = (i32_at(stores, *src, n)?, d.get_mut(r)?);
            for (k, o) in out.iter_mut().enumerate() {
                *o = req_at(req, k).apply(x[k]);
            }
        }
        (
            Op::LstmCell {
                i,
                f,
                g,
                cell_frac_bits,
                ..
            },
            Store::I16(c),
        ) => {
            // The cell state is read and written element by element, in place.
            let (i, f, g) = (
                i16_at(stores, *i, n)?,
                i16_at(stores, *f, n)?,
                i16_at(stores, *g, n)?,
            );
            let c = c.get_mut(r)?;
            for (k, c) in c.iter_mut().enumerate() {
                *c = lstm_cell_update(i[k], f[k], g[k], *c, *cell_frac_bits);
            }
        }
        _ => return None,
    }
    Some(())
}

/// Runs the element-wise op `op` (any op but [`Op::MatVec`]) on one lane's buffers:
/// its sources are read into int32 vectors first and its result written after, so a
/// destination may overlap a source.
fn run_op(
    op: &Op,
    stores: &mut [Store],
    token: usize,
    tables: &[PwlTable],
    luts: &[Vec<i16>],
    sc: &mut Scratch,
) {
    let dst = op.writes();
    let n = dst.len;
    let Scratch {
        src: [s0, s1, s2, s3],
        out,
    } = sc;
    out.clear();
    match op {
        Op::Lookup {
            table,
            rows,
            zero_point,
            dst,
        } => match table.get(token.saturating_mul(dst.len)..) {
            Some(row) if token < *rows => out.extend(row[..dst.len].iter().map(|&v| v as i32)),
            _ => out.resize(dst.len, saturate_i8(*zero_point) as i32),
        },
        Op::MatVec { .. } => return,
        Op::GateSum { a, ra, b, .. } => {
            load(stores, *a, n, s0);
            match b {
                Some((b, rb)) => {
                    load(stores, *b, n, s1);
                    out.extend(s0.iter().zip(s1.iter()).enumerate().map(|(k, (&x, &y))| {
                        gate_preactivation(x, req_at(ra, k), y, req_at(rb, k)) as i32
                    }));
                }
                None => out.extend(
                    s0.iter()
                        .enumerate()
                        .map(|(k, &x)| requant_i16(x, req_at(ra, k)) as i32),
                ),
            }
        }
        Op::Pwl { table, src, .. } => {
            load(stores, *src, n, s0);
            match luts.get(*table) {
                Some(lut) => out.extend(s0.iter().map(|&x| lut[(x as i16 as u16) as usize] as i32)),
                None => {
                    let t = tables[*table].as_pwl();
                    out.extend(s0.iter().map(|&x| saturate_i16(t.eval(x)) as i32));
                }
            }
        }
        Op::MulQ15 { a, b, .. } => {
            load(stores, *a, n, s0);
            load(stores, *b, n, s1);
            out.extend(
                s0.iter()
                    .zip(s1.iter())
                    .map(|(&a, &b)| mul_q15(a as i16, b as i16) as i32),
            );
        }
        Op::AddSat { a, b, .. } => {
            load(stores, *a, n, s0);
            load(stores, *b, n, s1);
            out.extend(
                s0.iter()
                    .zip(s1.iter())
                    .map(|(&a, &b)| add_sat_i16(a as i16, b as i16) as i32),
            );
        }
        Op::Blend { z, a, b, .. } => {
            load(stores, *z, n, s0);
            load(stores, *a, n, s1);
            load(stores, *b, n, s2);
            out.extend(
                s0.iter()
                    .zip(s1.iter())
                    .zip(s2.iter())
                    .map(|((&z, &a), &b)| blend_q15(z as i16, a as i16, b as i16) as i32),
            );
        }
        Op::Relu { src, .. } => {
            load(stores, *src, n, s0);
            out.extend(s0.iter().map(|&x| relu_i16(x as i16) as i32));
        }
        Op::Widen {
            src,
            zero_point,
            req,
            ..
        } => {
            load(stores, *src, n, s0);
            out.extend(
                s0.iter()
                    .map(|&x| widen_i8(x as i8, *zero_point, *req) as i32),
            );
        }
        Op::Narrow {
            a,
            b,
            req,
            zero_point,
            ..
        } => {
            load(stores, *a, n, s0);
            if let Some(b) = b {
                load(stores, *b, n, s1);
                for (x, &y) in s0.iter_mut().zip(s1.iter()) {
                    *x *= y;
                }
            }
            out.extend(
                s0.iter()
                    .enumerate()
                    .map(|(k, &x)| requant_i8(x, req_at(req, k), *zero_point) as i32),
            );
        }
        Op::Requant32 { src, req, .. } => {
            load(stores, *src, n, s0);
            out.extend(s0.iter().enumerate().map(|(k, &x)| req_at(req, k).apply(x)));
        }
        Op::LstmCell {
            i,
            f,
            g,
            c,
            cell_frac_bits,
        } => {
            load(stores, *i, n, s0);
            load(stores, *f, n, s1);
            load(stores, *g, n, s2);
            load(stores, *c, n, s3);
            out.extend(s0.iter().zip(s1.iter()).zip(s2.iter()).zip(s3.iter()).map(
                |(((&i, &f), &g), &c)| {
                    lstm_cell_update(i as i16, f as i16, g as i16, c as i16, *cell_frac_bits) as i32
                },
            ));
        }
    }
    store(stores, dst, out);
}

/// The register form of `t` for [`Kernel::pwl_i16`], as the Rust back end makes it for
/// the AVX-512 VNNI target (`back::pwl_index::register_form` with 64 entries).
fn reg_pwl(t: &PwlTable) -> Option<RegPwl> {
    use crate::back::pwl_index::{build, register_form};
    let r = register_form(t, &build(t)?, 64)?;
    let mut probes = [[i32::MAX; 32]; 5];
    for (p, (_, v)) in probes.iter_mut().zip(r.probes()) {
        p.get_mut(..v.len())?.copy_from_slice(&v);
    }
    let fold = match t.symmetry {
        TableSymmetry::None => RegFold::None,
        TableSymmetry::Odd => RegFold::Odd,
        TableSymmetry::Complement => RegFold::Complement(t.total),
    };
    Some(RegPwl::new(
        *r.starts.get(32)?,
        probes,
        r.slopes.as_slice().try_into().ok()?,
        r.intercepts.as_slice().try_into().ok()?,
        t.frac_bits,
        fold,
        r.clamp.then_some((t.out_min, t.out_max)),
    ))
}

/// Whether [`Kernel::pwl_i16`] with `r` gives `lut[x as u16]` (`sat16(Pwl::eval(x))`)
/// for every int16 `x`.
fn same_as_lut(kernel: Kernel, r: &RegPwl, lut: &[i16]) -> bool {
    let mut xs: Vec<i16> = (0..=u16::MAX).map(|u| u as i16).collect();
    kernel.pwl_i16(r, &mut xs, |x| lut[x as u16 as usize] as i32);
    xs.iter().enumerate().all(|(u, &y)| lut.get(u) == Some(&y))
}

/// A stateful integer runner over one program.
pub struct Interpreter<'p> {
    program: &'p Program,
    layers: Vec<LayerRun>,
    lanes: usize,
    /// The lanes' outputs one after another.
    output: Vec<i32>,
    input_buf: Vec<i8>,
    /// The lanes' token ids of the current step (`usize::MAX` for features).
    tokens: Vec<usize>,
    scratch: Scratch,
    /// With a SIMD kernel: every table's `sat16(eval(x))` for all int16 `x` (indexed by
    /// `x as u16`), made by `Pwl::eval` itself, so a lookup is that evaluation.
    luts: Vec<Vec<i16>>,
    /// With the AVX-512 VNNI kernel: per table, its register form for
    /// [`Kernel::pwl_i16`] where it has one, kept only when it gives the lookup table's
    /// value for every int16 input (checked on all 65 536 when the interpreter is made).
    regs: Vec<Option<RegPwl>>,
}

impl<'p> Interpreter<'p> {
    /// Creates an interpreter in the reset state, with the runtime's portable kernels
    /// only: the ground truth the tests compare generated code with.
    pub fn new(program: &'p Program) -> Self {
        Self::with_kernel(program, Kernel::PORTABLE)
    }

    /// The same interpreter with matrix products by `kernel` on packed weights
    /// (`irnn_runtime::simd`, tested bit-exact against the portable kernel; integer sums
    /// are exact in any order): the same outputs, several times faster. `irnn run` and
    /// `irnn eval` use [`Kernel::detect`].
    pub fn with_kernel(program: &'p Program, kernel: Kernel) -> Self {
        Self::with_lanes(program, kernel, 1)
    }

    /// An interpreter for `lanes` sequences (at least 1) stepped in lock step
    /// ([`Interpreter::step_tokens`], [`Interpreter::step_features_lanes`]): each
    /// lane's outputs are those of an interpreter of its own on its sequence, bit for
    /// bit (every op but the matrix products runs lane by lane on the lane's own
    /// buffers; a product runs for all lanes at once, as exact integer sums), while
    /// each matrix is read once per step for all lanes.
    pub fn with_lanes(program: &'p Program, kernel: Kernel, lanes: usize) -> Self {
        let lanes = lanes.max(1);
        let layers = program
            .layers
            .iter()
            .map(|l| LayerRun::new(l.ops(), kernel, lanes))
            .collect();
        let luts: Vec<Vec<i16>> = if kernel.isa() == Isa::Portable {
            Vec::new()
        } else {
            program
                .tables
                .iter()
                .map(|t| {
                    let p = t.as_pwl();
                    (0..=u16::MAX)
                        .map(|u| saturate_i16(p.eval(u as i16 as i32)))
                        .collect()
                })
                .collect()
        };
        let regs = match kernel.isa() {
            Isa::Avx512Vnni => (program.tables.iter().zip(&luts))
                .map(|(t, lut)| reg_pwl(t).filter(|r| same_as_lut(kernel, r, lut)))
                .collect(),
            _ => Vec::new(),
        };
        let mut it = Interpreter {
            program,
            layers,
            lanes,
            output: vec![0; lanes * program.output.size],
            input_buf: Vec::new(),
            tokens: Vec::new(),
            scratch: Scratch::default(),
            luts,
            regs,
        };
        it.reset();
        it
    }

    /// The number of lanes (sequences stepped in lock step).
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Resets the recurrent state of every layer (of every lane) to its reset value
    /// (`h` to its zero point, `c` to 0).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(LayerRun::reset);
    }

    /// One step on a token id.
    ///
    /// # Panics
    /// If the interpreter has more than one lane.
    pub fn step_token(&mut self, token: i64) -> Result<&[i32], StepError> {
        self.step_tokens(&[token])
    }

    /// One step of every lane on its token id (`tokens[l]` for lane `l`). Returns the
    /// lanes' outputs one after another; an error for the first lane (in lane order)
    /// whose token the program cannot take, before any lane steps.
    ///
    /// # Panics
    /// If `tokens.len()` is not the number of lanes.
    pub fn step_tokens(&mut self, tokens: &[i64]) -> Result<&[i32], StepError> {
        assert_eq!(tokens.len(), self.lanes, "one token per lane");
        for &token in tokens {
            check_token(self.program, token)?;
        }
        self.input_buf.clear();
        self.tokens.clear();
        self.tokens.extend(tokens.iter().map(|&t| t as usize));
        Ok(self.run_layers())
    }

    /// One step on an int8 feature vector (already quantized).
    ///
    /// # Panics
    /// If the interpreter has more than one lane.
    pub fn step_features(&mut self, x: &[i8]) -> Result<&[i32], StepError> {
        assert_eq!(self.lanes, 1, "step_features steps one lane");
        self.step_features_lanes(x)
    }

    /// One step of every lane on its int8 feature vector (`xs` holds the lanes'
    /// vectors one after another). Returns the lanes' outputs one after another.
    pub fn step_features_lanes(&mut self, xs: &[i8]) -> Result<&[i32], StepError> {
        if !xs.len().is_multiple_of(self.lanes) {
            check_features(self.program, xs.len())?;
        }
        check_features(self.program, xs.len() / self.lanes)?;
        self.input_buf.clear();
        self.input_buf.extend_from_slice(xs);
        self.tokens.clear();
        self.tokens.resize(self.lanes, usize::MAX);
        Ok(self.run_layers())
    }

    fn run_layers(&mut self) -> &[i32] {
        let tables = &self.program.tables;
        let osize = self.program.output.size;
        let mut prev: Vec<i8> = std::mem::take(&mut self.input_buf);
        for run in &mut self.layers {
            run.step(
                &prev,
                &self.tokens,
                tables,
                &self.luts,
                &self.regs,
                &mut self.scratch,
            );
            let out = run.layer.output;
            prev.clear();
            for (stores, output) in run
                .lanes
                .iter()
                .zip(self.output.chunks_exact_mut(osize.max(1)))
            {
                match &stores[out.buf] {
                    Store::I8(v) => {
                        let v = &v[out.start..out.start + out.len];
                        prev.extend_from_slice(v);
                        for (dst, x) in output.iter_mut().zip(v) {
                            *dst = *x as i32;
                        }
                    }
                    Store::I32(v) => output.copy_from_slice(&v[out.start..out.start + out.len]),
                    Store::I16(_) => {}
                }
            }
        }
        self.input_buf = prev;
        &self.output
    }

    /// The int8 output of layer `index` (into `Program::layers`) after the last step;
    /// `None` past the last layer or for a layer whose output is not int8 (a linear
    /// layer's int32 logits, which the step returns).
    pub fn layer_output_i8(&self, index: usize) -> Option<&[i8]> {
        self.lane_layer_output_i8(0, index)
    }

    /// [`Interpreter::layer_output_i8`] of lane `lane`.
    pub fn lane_layer_output_i8(&self, lane: usize, index: usize) -> Option<&[i8]> {
        let run = self.layers.get(index)?;
        let out = run.layer.output;
        match &run.lanes.get(lane)?[out.buf] {
            Store::I8(v) => Some(&v[out.start..out.start + out.len]),
            _ => None,
        }
    }

    /// The program being run.
    pub fn program(&self) -> &'p Program {
        self.program
    }
}
