//! The reference interpreter: runs a lowered [`Program`] step by step with the
//! runtime's portable kernels. It is the ground truth every back end is compared
//! against, bit for bit.

use crate::ir::*;
use irnn_runtime::kernels::{linear_i32, linear_i8, lstm_step, LstmParams, LstmScratch};
use irnn_runtime::{saturate_i8, Pwl};

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

enum LayerState {
    Embedding {
        out: Vec<i8>,
    },
    Lstm {
        h: Vec<i8>,
        c: Vec<i16>,
        acc_x: Vec<i32>,
        acc_h: Vec<i32>,
        gates: Vec<i16>,
    },
    Linear {
        acc: Vec<i32>,
        out8: Vec<i8>,
    },
}

/// A stateful integer runner over one program.
pub struct Interpreter<'p> {
    program: &'p Program,
    states: Vec<LayerState>,
    output: Vec<i32>,
    input_buf: Vec<i8>,
}

impl<'p> Interpreter<'p> {
    /// Creates an interpreter in the reset state.
    pub fn new(program: &'p Program) -> Self {
        let states = program
            .layers
            .iter()
            .map(|l| match l {
                LayerIr::Embedding(e) => LayerState::Embedding {
                    out: vec![0; e.dim],
                },
                LayerIr::Lstm(l) => LayerState::Lstm {
                    h: vec![0; l.hidden_size],
                    c: vec![0; l.hidden_size],
                    acc_x: vec![0; 4 * l.hidden_size],
                    acc_h: vec![0; 4 * l.hidden_size],
                    gates: vec![0; 4 * l.hidden_size],
                },
                LayerIr::Linear(l) => LayerState::Linear {
                    acc: vec![0; l.out_size],
                    out8: vec![0; l.out_size],
                },
            })
            .collect();
        let mut it = Interpreter {
            program,
            states,
            output: vec![0; program.output.size],
            input_buf: Vec::new(),
        };
        it.reset();
        it
    }

    /// Resets the recurrent state: `h` to its zero point, `c` to 0.
    pub fn reset(&mut self) {
        for (layer, state) in self.program.layers.iter().zip(self.states.iter_mut()) {
            if let (LayerIr::Lstm(l), LayerState::Lstm { h, c, .. }) = (layer, state) {
                h.iter_mut().for_each(|v| *v = saturate_i8(l.h_zero_point));
                c.iter_mut().for_each(|v| *v = 0);
            }
        }
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
        let program = self.program;
        let mut prev: Vec<i8> = std::mem::take(&mut self.input_buf);
        for (layer, state) in program.layers.iter().zip(self.states.iter_mut()) {
            match (layer, state) {
                (LayerIr::Embedding(e), LayerState::Embedding { out }) => {
                    match e
                        .table
                        .get(token.saturating_mul(e.dim)..token.saturating_mul(e.dim) + e.dim)
                    {
                        Some(row) if token < e.vocab_size => out.copy_from_slice(row),
                        _ => out.iter_mut().for_each(|v| *v = saturate_i8(e.zero_point)),
                    }
                    prev.clear();
                    prev.extend_from_slice(out);
                }
                (
                    LayerIr::Lstm(l),
                    LayerState::Lstm {
                        h,
                        c,
                        acc_x,
                        acc_h,
                        gates,
                    },
                ) => {
                    let t = |i: usize| -> Pwl<'_> { program.tables[i].as_pwl() };
                    let params = LstmParams {
                        input_size: l.input_size,
                        hidden_size: l.hidden_size,
                        w_ih: &l.w_ih,
                        w_hh: &l.w_hh,
                        bias_x: &l.bias_x,
                        bias_h: &l.bias_h,
                        req_x: &l.req_x,
                        req_h: &l.req_h,
                        gate_tables: [
                            t(l.gate_tables[0]),
                            t(l.gate_tables[1]),
                            t(l.gate_tables[2]),
                            t(l.gate_tables[3]),
                        ],
                        cell_tanh: t(l.cell_table),
                        cell_frac_bits: l.cell_frac_bits,
                        req_out: l.req_out,
                        h_zero_point: l.h_zero_point,
                    };
                    lstm_step(
                        &params,
                        &prev,
                        h,
                        c,
                        LstmScratch {
                            acc_x,
                            acc_h,
                            gates,
                        },
                    );
                    prev.clear();
                    prev.extend_from_slice(h);
                }
                (LayerIr::Linear(l), LayerState::Linear { acc, out8 }) => match l.output {
                    LinearOutput::I32 => {
                        linear_i32(&l.weight, &prev, &l.bias, &l.req, acc);
                        self.output.copy_from_slice(acc);
                        prev.clear();
                    }
                    LinearOutput::I8 { zero_point } => {
                        linear_i8(&l.weight, &prev, &l.bias, &l.req, zero_point, out8);
                        prev.clear();
                        prev.extend_from_slice(out8);
                        for (dst, v) in self.output.iter_mut().zip(out8.iter()) {
                            *dst = *v as i32;
                        }
                    }
                },
                _ => {}
            }
        }
        self.input_buf = prev;
        &self.output
    }

    /// The program being run.
    pub fn program(&self) -> &Program {
        self.program
    }
}
