//! The plan: how each layer of a program is written for one set of options, decided
//! once here and read by both back ends.
//!
//! Every recurrent layer is a list of ops ([`crate::ir::ops`]). A back end writes it
//! op by op, one emitter per op, unless the plan recognizes a pattern it has a fused
//! emitter for: today the LSTM step ([`LstmIr::from_ops`]), whose fused emitters
//! write the gates, the cell update and the output in fewer passes and pick arithmetic
//! forms that the interval analysis proves exact ([`LstmPlan`]). [`Fusion::None`]
//! turns fusion off, which gives the plain op-by-op code (the same results, bit for
//! bit). For a layer written op by op, the plan also names the op that sequence mode
//! runs for a whole chunk ([`chunk_projection`]).

use super::targets::{LstmTail, Req32};
use super::{down_half, down_shift, gate_sum_plan, GateSumPlan, GenOptions, Target, Unroll};
use crate::ir::ops::{Op, OpLayer, Role};
use crate::ir::{LayerIr, LstmIr, Program};

/// Whether the back ends may write an op pattern with a fused emitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Fusion {
    /// Fused emitters wherever a layer's ops match their pattern.
    #[default]
    Auto,
    /// Every recurrent layer op by op.
    None,
}

impl Fusion {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fusion::Auto => "auto",
            Fusion::None => "none",
        }
    }
}

/// How one layer is written.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerPlan {
    /// An embedding or a linear layer: its own emitter.
    Direct,
    /// A recurrent layer, op by op.
    Ops {
        /// In sequence mode, the index of the op that runs for a whole chunk of steps
        /// before the recurrence ([`chunk_projection`]); `None` where the target has no
        /// sequence mode (portable kernels) or the layer has no such op.
        chunk: Option<usize>,
    },
    /// An LSTM step, by the fused LSTM emitters.
    Lstm(Box<LstmPlan>),
}

/// A fused LSTM step: its parameters and every arithmetic form the back ends use for
/// it, each chosen only where its precondition holds (docs/NUMERICS.md, "Branch-free
/// requantization" and "Cortex-M (C)").
#[derive(Clone, Debug, PartialEq)]
pub struct LstmPlan {
    /// The parameters, read back from the layer's ops.
    pub ir: LstmIr,
    /// What the interval analysis proves about the gate sums.
    pub gates: GateSumPlan,
    /// The forms of the C step.
    pub c: LstmCForms,
    /// The forms of the Rust step.
    pub rust: LstmRustForms,
}

/// The forms of a fused LSTM step in C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmCForms {
    /// Every gate requantizer has the branch-free form (`GateSumPlan::down`):
    /// `_q_gate_pre_down`.
    pub down: bool,
    /// The target's `Req32::Abs` with the gate sums proven to fit int32:
    /// `_q_gate_pre32` and `_q_req32` in int32 lanes.
    pub req32: bool,
    /// The target's `Req32::Mac` with the gate sums proven to fit int32:
    /// `_q_gate_prem` and `_q_reqm`.
    pub reqm: bool,
    /// `reqm` and `GateSumPlan::acc_doubles`: `_q_gate_prer` (SMMULR).
    pub reqr: bool,
    /// x86 SIMD with the gate sums proven to fit int32 and the output requantizer in
    /// the down form: `_q_gate_pre_v` / `_q_out_v` on whole vectors.
    pub reqv: bool,
    /// `(e, half)` of the output requantizer when `down` and it has the down form
    /// (`_q_lstm_out_down`).
    pub out_down: Option<(u32, i64)>,
    /// One pass per hidden unit at the end of the step (the target's
    /// `LstmTail::Fused`, packed kernels, `out_down`, not `reqv`).
    pub fused_tail: bool,
}

/// The forms of a fused LSTM step in Rust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmRustForms {
    /// The loop form (not fully unrolled) with every gate requantizer in the
    /// branch-free form: `req_down`, which LLVM vectorizes.
    pub down: bool,
    /// With `down` on AVX2: the output requantization in int32 (`|o · tanh c| <= 2^30`).
    pub out_req32: bool,
    /// With `down`: the output requantizer's branch-free form applies.
    pub out_down: bool,
}

/// The plan of a program: one entry per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Per layer, in program order.
    pub layers: Vec<LayerPlan>,
}

impl Plan {
    /// Plans `program` for `opts` (its target, unrolling and fusion).
    pub fn new(program: &Program, opts: &GenOptions) -> Plan {
        let layers = program
            .layers
            .iter()
            .map(|layer| match layer {
                LayerIr::Embedding(_) | LayerIr::Linear(_) => LayerPlan::Direct,
                LayerIr::Cell(l) => {
                    let lstm = match opts.fusion {
                        Fusion::Auto => LstmIr::from_ops(l, &program.tables),
                        Fusion::None => None,
                    };
                    match lstm {
                        Some(ir) => LayerPlan::Lstm(Box::new(LstmPlan::new(ir, l, opts))),
                        None => LayerPlan::Ops {
                            chunk: sequence_mode(opts).then(|| chunk_projection(l)).flatten(),
                        },
                    }
                }
            })
            .collect();
        Plan { layers }
    }

    /// The op that layer `i`, written op by op, runs for a whole chunk in sequence mode.
    pub fn chunk_op(&self, i: usize) -> Option<usize> {
        match self.layers.get(i) {
            Some(LayerPlan::Ops { chunk }) => *chunk,
            _ => None,
        }
    }

    /// The fused LSTM plan of layer `i`, if it has one.
    pub fn lstm(&self, i: usize) -> Option<&LstmPlan> {
        match self.layers.get(i) {
            Some(LayerPlan::Lstm(l)) => Some(l),
            _ => None,
        }
    }
}

impl LstmPlan {
    /// The plan of `ir`, whose ops are `layer`.
    fn new(ir: LstmIr, layer: &OpLayer, opts: &GenOptions) -> LstmPlan {
        let gates = gate_plan(layer);
        let target = opts.target;
        let info = target.info();
        let sum32 = gates.sum_i32;
        let reqm = sum32 && info.req32 == Req32::Mac;
        let out_shift = down_shift(&ir.req_out);
        let reqv =
            sum32 && matches!(target, Target::Avx2 | Target::Avx512Vnni) && out_shift.is_some();
        let out_down = out_shift.filter(|_| gates.down).map(|e| (e, down_half(e)));
        let c = LstmCForms {
            down: gates.down,
            req32: sum32 && info.req32 == Req32::Abs,
            reqm,
            reqr: reqm && gates.acc_doubles,
            reqv,
            out_down,
            fused_tail: target.c_packed()
                && info.lstm_tail == LstmTail::Fused
                && out_down.is_some()
                && !reqv,
        };
        let down = opts.unroll != Unroll::Full && gates.down;
        let rust = LstmRustForms {
            down,
            out_req32: down && target == Target::Avx2,
            out_down: down && out_shift.is_some(),
        };
        LstmPlan { ir, gates, c, rust }
    }
}

/// Whether the generated code has a sequence mode (`NAME_run` / `Model::run` over chunks
/// of steps): the targets with packed kernels in the chosen language.
fn sequence_mode(opts: &GenOptions) -> bool {
    match opts.lang {
        super::Lang::C => opts.target.c_packed(),
        super::Lang::Rust => opts.target.rust_packed(),
    }
}

/// The op a cell written op by op runs for a whole chunk of steps, ahead of the
/// recurrence: the first `MatVec` that [`OpLayer::hoistable`] allows (it reads nothing
/// that depends on state), reading the whole layer input, which no other op reads, and
/// writing a whole scratch buffer that no other op writes (the input projection
/// `W_ih · x` of every cell). The
/// chunk computes it for all steps with the batched matrix kernel, then runs the other
/// ops step by step on each step's accumulators: the same values as the step.
pub fn chunk_projection(l: &OpLayer) -> Option<usize> {
    let input = l.input()?;
    let hoistable = l.hoistable();
    l.ops.iter().enumerate().find_map(|(k, op)| match op {
        Op::MatVec { x, acc, .. }
            if hoistable[k]
                && *x == l.whole(input)
                && *acc == l.whole(acc.buf)
                && l.buffers[acc.buf].role == Role::Temp
                && l.ops.iter().enumerate().all(|(j, o)| {
                    j == k
                        || (o.writes().buf != acc.buf && o.reads().iter().all(|v| v.buf != input))
                }) =>
        {
            Some(k)
        }
        _ => None,
    })
}

/// The plan of an LSTM layer's gate sums (its one gate-sum op).
pub fn lstm_gate_plan(l: &LstmIr) -> GateSumPlan {
    gate_plan(&l.ops())
}

/// The plan of the first gate-sum op of an LSTM step's ops.
fn gate_plan(layer: &OpLayer) -> GateSumPlan {
    let ranges = layer.ranges();
    layer
        .ops
        .iter()
        .find_map(|op| gate_sum_plan(&ranges, op))
        .expect("an LSTM step has a gate sum")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Activation, PwlTable, TableSymmetry};
    use irnn_runtime::Requant;

    fn table(input_frac_bits: u32) -> PwlTable {
        PwlTable {
            function: Activation::Sigmoid,
            input_frac_bits,
            output_frac_bits: 15,
            symmetry: TableSymmetry::None,
            total: 0,
            starts: vec![i16::MIN as i32],
            slopes: vec![0],
            offsets: vec![0],
            frac_bits: 0,
            out_min: 0,
            out_max: 0,
        }
    }

    /// A 3 → 2 LSTM over tables 0..=4 (gate grids 2^-10..2^-13).
    fn lstm() -> (LstmIr, Vec<PwlTable>) {
        let (i, h) = (3, 2);
        let req = |k: usize| Requant {
            multiplier: (1 << 30) + k as i32,
            shift: -(k as i32 % 7),
        };
        let l = LstmIr {
            name: "l".into(),
            input_size: i,
            hidden_size: h,
            w_ih: (0..4 * h * i).map(|k| (k as i8).wrapping_mul(37)).collect(),
            w_hh: (0..4 * h * h)
                .map(|k| (k as i8).wrapping_mul(-11))
                .collect(),
            bias_x: (0..4 * h as i32).collect(),
            bias_h: (0..4 * h as i32).map(|k| -k).collect(),
            req_x: (0..4 * h).map(req).collect(),
            req_h: (0..4 * h).map(|k| req(k + 3)).collect(),
            gate_tables: [0, 1, 2, 3],
            gate_frac_bits: [10, 11, 12, 13],
            cell_table: 4,
            cell_frac_bits: 11,
            req_out: req(5),
            h_zero_point: -3,
        };
        let tables = [10, 11, 12, 13, 11].map(table).to_vec();
        (l, tables)
    }

    #[test]
    fn the_lstm_pattern_is_read_back_exactly() {
        let (l, tables) = lstm();
        assert_eq!(LstmIr::from_ops(&l.ops(), &tables), Some(l.clone()));
        // Any other op list is not the pattern: a swapped gate table, a changed view,
        // one op less.
        let mut swapped = l.ops();
        let pwls: Vec<usize> = (0..swapped.ops.len())
            .filter(|&k| matches!(swapped.ops[k], Op::Pwl { .. }))
            .collect();
        swapped.ops.swap(pwls[0], pwls[1]);
        assert_eq!(LstmIr::from_ops(&swapped, &tables), None);
        let mut moved = l.ops();
        if let Some(Op::LstmCell { f, .. }) = moved
            .ops
            .iter_mut()
            .find(|o| matches!(o, Op::LstmCell { .. }))
        {
            f.start += 1;
        }
        assert_eq!(LstmIr::from_ops(&moved, &tables), None);
        let mut short = l.ops();
        short.ops.pop();
        assert_eq!(LstmIr::from_ops(&short, &tables), None);
        // A table index the program does not have.
        assert_eq!(LstmIr::from_ops(&l.ops(), &tables[..4]), None);
    }

    #[test]
    fn fusion_none_writes_every_layer_op_by_op() {
        let (l, tables) = lstm();
        let program = Program {
            name: "p".into(),
            model_hash: String::new(),
            input: crate::ir::InputIr::Features {
                size: 3,
                zero_point: 0,
                scale_info: 1.0,
            },
            layers: vec![l.clone().into()],
            tables,
            output: crate::ir::OutputIr {
                size: 2,
                scale_info: 1.0,
                zero_point: 0,
            },
        };
        for target in Target::ALL {
            let opts = GenOptions {
                target,
                ..GenOptions::default()
            };
            let plan = Plan::new(&program, &opts);
            let lp = plan.lstm(0).expect("the LSTM is fused by default");
            assert_eq!(lp.ir, l);
            assert_eq!(lp.gates, lstm_gate_plan(&l));
            let none = Plan::new(
                &program,
                &GenOptions {
                    fusion: Fusion::None,
                    ..opts
                },
            );
            // The input projection (op 0) runs per chunk where the Rust (the default
            // language) has sequence mode.
            let chunk = target.rust_packed().then_some(0);
            assert_eq!(
                none.layers,
                vec![LayerPlan::Ops { chunk }],
                "{}",
                target.name()
            );
        }
    }
}
