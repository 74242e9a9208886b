//! The reference interpreter: runs a lowered [`Program`] step by step, every layer as
//! its ops ([`crate::ir::ops`]) through the runtime's portable kernels. It is the
//! ground truth every back end is compared against, bit for bit.

use crate::ir::ops::{Dtype, Op, OpLayer, Role, View};
use crate::ir::*;
use irnn_runtime::kernels::{
    add_sat_i16, blend_q15, gate_preactivation, lstm_cell_update, matvec_i8, mul_q15, relu_i16,
    requant_i16, requant_i8, widen_i8,
};
use irnn_runtime::simd::{Isa, Kernel, PackedMatrix};
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

    fn get(&self, k: usize) -> i32 {
        match self {
            Store::I8(v) => v[k] as i32,
            Store::I16(v) => v[k] as i32,
            Store::I32(v) => v[k],
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

/// One layer's ops and buffers.
struct LayerRun {
    layer: OpLayer,
    stores: Vec<Store>,
    /// Per matrix, its packed form when a SIMD kernel runs the products.
    packed: Vec<Option<Packed>>,
    /// A copy of a product's input vector.
    xbuf: Vec<i8>,
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
    fn new(layer: OpLayer, kernel: Kernel) -> Self {
        let stores = layer
            .buffers
            .iter()
            .map(|b| Store::new(b.dtype, b.len))
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
        LayerRun {
            layer,
            stores,
            packed,
            xbuf: Vec::new(),
        }
    }

    fn reset(&mut self) {
        for (b, s) in self.layer.buffers.iter().zip(&mut self.stores) {
            if let Role::State { reset } = b.role {
                for k in 0..b.len {
                    s.set(k, reset);
                }
            }
        }
    }

    fn get(&self, v: View, k: usize) -> i32 {
        self.stores[v.buf].get(v.start + k)
    }

    /// Runs the layer's ops on `input` (the layer input, if it has one) and `token`.
    fn step(
        &mut self,
        input: &[i8],
        token: usize,
        tables: &[PwlTable],
        luts: &[Vec<i16>],
        scratch: &mut Vec<i32>,
        kernel: Kernel,
    ) {
        if let Some(i) = self.layer.input() {
            if let Store::I8(v) = &mut self.stores[i] {
                v.copy_from_slice(input);
            }
        }
        for n in 0..self.layer.ops.len() {
            let op = &self.layer.ops[n];
            let dst = op.writes();
            scratch.clear();
            match op {
                Op::Lookup {
                    table,
                    rows,
                    zero_point,
                    dst,
                } => match table.get(token.saturating_mul(dst.len)..) {
                    Some(row) if token < *rows => {
                        scratch.extend(row[..dst.len].iter().map(|&v| v as i32))
                    }
                    _ => scratch.resize(dst.len, saturate_i8(*zero_point) as i32),
                },
                Op::MatVec { mat, x, acc } => {
                    let m = &self.layer.mats[*mat];
                    // x and acc are different buffers (int8 and int32).
                    let mut xs = std::mem::take(&mut self.xbuf);
                    xs.clear();
                    xs.extend_from_slice(&self.stores[x.buf].i8s()[x.start..x.start + x.len]);
                    if let Store::I32(a) = &mut self.stores[acc.buf] {
                        let a = &mut a[acc.start..acc.start + acc.len];
                        match &self.packed[*mat] {
                            Some(p) => kernel.matvec(&p.matrix(m.rows, m.cols), &xs, a),
                            None => matvec_i8(&m.w, &xs, &m.bias, a),
                        }
                    }
                    self.xbuf = xs;
                    continue;
                }
                Op::GateSum { a, ra, b, dst } => {
                    for k in 0..dst.len {
                        let x = self.get(*a, k);
                        let v = match b {
                            Some((b, rb)) => {
                                gate_preactivation(x, req_at(ra, k), self.get(*b, k), req_at(rb, k))
                            }
                            None => requant_i16(x, req_at(ra, k)),
                        };
                        scratch.push(v as i32);
                    }
                }
                Op::Pwl { table, src, .. } => match luts.get(*table) {
                    Some(lut) => {
                        for k in 0..dst.len {
                            let x = self.get(*src, k) as i16;
                            scratch.push(lut[(x as u16) as usize] as i32);
                        }
                    }
                    None => {
                        let t = tables[*table].as_pwl();
                        for k in 0..dst.len {
                            scratch.push(saturate_i16(t.eval(self.get(*src, k))) as i32);
                        }
                    }
                },
                Op::MulQ15 { a, b, .. } => {
                    for k in 0..dst.len {
                        let v = mul_q15(self.get(*a, k) as i16, self.get(*b, k) as i16);
                        scratch.push(v as i32);
                    }
                }
                Op::AddSat { a, b, .. } => {
                    for k in 0..dst.len {
                        let v = add_sat_i16(self.get(*a, k) as i16, self.get(*b, k) as i16);
                        scratch.push(v as i32);
                    }
                }
                Op::Blend { z, a, b, .. } => {
                    for k in 0..dst.len {
                        let v = blend_q15(
                            self.get(*z, k) as i16,
                            self.get(*a, k) as i16,
                            self.get(*b, k) as i16,
                        );
                        scratch.push(v as i32);
                    }
                }
                Op::Relu { src, .. } => {
                    for k in 0..dst.len {
                        scratch.push(relu_i16(self.get(*src, k) as i16) as i32);
                    }
                }
                Op::Widen {
                    src,
                    zero_point,
                    req,
                    ..
                } => {
                    for k in 0..dst.len {
                        let v = widen_i8(self.get(*src, k) as i8, *zero_point, *req);
                        scratch.push(v as i32);
                    }
                }
                Op::Narrow {
                    a,
                    b,
                    req,
                    zero_point,
                    ..
                } => {
                    for k in 0..dst.len {
                        let x = match b {
                            Some(b) => self.get(*a, k) * self.get(*b, k),
                            None => self.get(*a, k),
                        };
                        scratch.push(requant_i8(x, req_at(req, k), *zero_point) as i32);
                    }
                }
                Op::Requant32 { src, req, .. } => {
                    for k in 0..dst.len {
                        scratch.push(req_at(req, k).apply(self.get(*src, k)));
                    }
                }
                Op::LstmCell {
                    i,
                    f,
                    g,
                    c,
                    cell_frac_bits,
                } => {
                    for k in 0..dst.len {
                        let v = lstm_cell_update(
                            self.get(*i, k) as i16,
                            self.get(*f, k) as i16,
                            self.get(*g, k) as i16,
                            self.get(*c, k) as i16,
                            *cell_frac_bits,
                        );
                        scratch.push(v as i32);
                    }
                }
            }
            let store = &mut self.stores[dst.buf];
            for (k, v) in scratch.iter().enumerate() {
                store.set(dst.start + k, *v);
            }
        }
    }
}

/// A stateful integer runner over one program.
pub struct Interpreter<'p> {
    program: &'p Program,
    kernel: Kernel,
    layers: Vec<LayerRun>,
    output: Vec<i32>,
    input_buf: Vec<i8>,
    scratch: Vec<i32>,
    /// With a SIMD kernel: every table's `sat16(eval(x))` for all int16 `x` (indexed by
    /// `x as u16`), made by `Pwl::eval` itself, so a lookup is that evaluation.
    luts: Vec<Vec<i16>>,
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
        let layers = program
            .layers
            .iter()
            .map(|l| LayerRun::new(l.ops(), kernel))
            .collect();
        let mut it = Interpreter {
            program,
            kernel,
            layers,
            output: vec![0; program.output.size],
            input_buf: Vec::new(),
            scratch: Vec::new(),
            luts: if kernel.isa() == Isa::Portable {
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
            },
        };
        it.reset();
        it
    }

    /// Resets the recurrent state of every layer to its reset value (`h` to its zero
    /// point, `c` to 0).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(LayerRun::reset);
    }

    /// One step on a token id.
    pub fn step_token(&mut self, token: i64) -> Result<&[i32], StepError> {
        let InputIr::Tokens { vocab_size } = self.program.input else {
            return Err(StepError::InputKind { want: "feature" });
        };
        if token < 0 || token as u64 >= vocab_size as u64 {
            return Err(StepError::TokenOutOfRange { token, vocab_size });
        }
        self.input_buf.clear();
        Ok(self.run_layers(token as usize))
    }

    /// One step on an int8 feature vector (already quantized).
    pub fn step_features(&mut self, x: &[i8]) -> Result<&[i32], StepError> {
        let InputIr::Features { size, .. } = self.program.input else {
            return Err(StepError::InputKind { want: "token" });
        };
        if x.len() != size {
            return Err(StepError::FeatureWidth {
                got: x.len(),
                want: size,
            });
        }
        self.input_buf.clear();
        self.input_buf.extend_from_slice(x);
        Ok(self.run_layers(usize::MAX))
    }

    fn run_layers(&mut self, token: usize) -> &[i32] {
        let tables = &self.program.tables;
        let mut prev: Vec<i8> = std::mem::take(&mut self.input_buf);
        for run in &mut self.layers {
            run.step(
                &prev,
                token,
                tables,
                &self.luts,
                &mut self.scratch,
                self.kernel,
            );
            let out = run.layer.output;
            let store = &run.stores[out.buf];
            prev.clear();
            match store {
                Store::I8(v) => {
                    let v = &v[out.start..out.start + out.len];
                    prev.extend_from_slice(v);
                    for (dst, x) in self.output.iter_mut().zip(v) {
                        *dst = *x as i32;
                    }
                }
                Store::I32(v) => self
                    .output
                    .copy_from_slice(&v[out.start..out.start + out.len]),
                Store::I16(_) => {}
            }
        }
        self.input_buf = prev;
        &self.output
    }

    /// The int8 output of layer `index` (into `Program::layers`) after the last step;
    /// `None` past the last layer or for a layer whose output is not int8 (a linear
    /// layer's int32 logits, which the step returns).
    pub fn layer_output_i8(&self, index: usize) -> Option<&[i8]> {
        let run = self.layers.get(index)?;
        let out = run.layer.output;
        match &run.stores[out.buf] {
            Store::I8(v) => Some(&v[out.start..out.start + out.len]),
            _ => None,
        }
    }

    /// The program being run.
    pub fn program(&self) -> &'p Program {
        self.program
    }
}
