//! Structural validation of a [`Program`] before any back end writes it: the single
//! place that decides what generated code may assume.

use super::{GenError, Unroll, FULL_UNROLL_MAX_WEIGHTS};
use crate::ir::{InputIr, LayerIr, LinearOutput, Program};

fn layer_error(layer: &str, message: impl Into<String>) -> GenError {
    GenError::Layer {
        layer: layer.to_string(),
        message: message.into(),
    }
}

/// Largest dimension or element count accepted (array sizes and indices are `int32_t`).
const MAX_DIM: usize = i32::MAX as usize;

fn check_len(layer: &str, what: &str, got: usize, want: Option<usize>) -> Result<(), GenError> {
    match want {
        Some(w) if w == got && w <= MAX_DIM => Ok(()),
        Some(w) if w == got => Err(layer_error(
            layer,
            format!("{what} is too large ({got} elements)"),
        )),
        Some(w) => Err(layer_error(
            layer,
            format!("{what} has {got} elements; expected {w}"),
        )),
        None => Err(layer_error(layer, format!("{what}: the shape overflows"))),
    }
}

fn check_dim(layer: &str, what: &str, n: usize) -> Result<(), GenError> {
    if n == 0 {
        Err(layer_error(layer, format!("{what} is 0")))
    } else if n > MAX_DIM / 4 {
        Err(layer_error(layer, format!("{what} ({n}) is too large")))
    } else {
        Ok(())
    }
}

/// The accumulator bound of docs/NUMERICS.md §8 ([`crate::lower::accumulator_overflow`]),
/// re-proved on the program being written: with it, every partial sum of a row fits in
/// `i32` in any order, so generated code accumulates with plain 32-bit adds.
fn check_accumulators(
    layer: &str,
    what: &str,
    bias: &[i32],
    w: &[i8],
    cols: usize,
) -> Result<(), GenError> {
    match crate::lower::accumulator_overflow(bias, w, cols) {
        Some((r, bound)) => Err(layer_error(
            layer,
            format!("{what} row {r}: the int32 accumulator can reach {bound}, beyond 2^31 - 1"),
        )),
        None => Ok(()),
    }
}

fn check_table(program: &Program, layer: &str, index: usize) -> Result<(), GenError> {
    let Some(t) = program.tables.get(index) else {
        return Err(layer_error(
            layer,
            format!(
                "refers to PWL table {index}; the program has {}",
                program.tables.len()
            ),
        ));
    };
    let n = t.starts.len();
    if n == 0 || t.slopes.len() != n || t.offsets.len() != n {
        return Err(layer_error(
            layer,
            format!(
                "PWL table {index} has {} starts, {} slopes and {} offsets; expected the same \
                 number, at least 1",
                n,
                t.slopes.len(),
                t.offsets.len()
            ),
        ));
    }
    Ok(())
}

/// Checks everything the back ends rely on: shapes, widths from layer to layer, table
/// indices, int32 outputs only at the end, the accumulator bound and the full-unroll
/// limit. A program from `lower` passes; any other program is refused with an error
/// instead of producing wrong or broken code.
pub fn check_program(program: &Program, unroll: Unroll) -> Result<(), GenError> {
    if program.layers.is_empty() {
        return Err(GenError::Unsupported("the program has no layers".into()));
    }
    // Width of the int8 vector the next layer reads (None: no vector, e.g. token input).
    let mut width: Option<usize> = match program.input {
        InputIr::Tokens { vocab_size } => {
            if vocab_size == 0 || vocab_size > MAX_DIM {
                return Err(GenError::Unsupported(format!(
                    "vocabulary size {vocab_size} is not supported"
                )));
            }
            None
        }
        InputIr::Features { size, .. } => {
            if size == 0 || size > MAX_DIM / 4 {
                return Err(GenError::Unsupported(format!(
                    "feature width {size} is not supported"
                )));
            }
            Some(size)
        }
    };
    let last = program.layers.len() - 1;
    for (index, layer) in program.layers.iter().enumerate() {
        let name = layer.name();
        let needs_width = |width: Option<usize>, want: usize| -> Result<(), GenError> {
            match width {
                Some(w) if w == want => Ok(()),
                Some(w) => Err(layer_error(
                    name,
                    format!("takes width {want} but the previous layer produces {w}"),
                )),
                None => Err(layer_error(
                    name,
                    "needs an int8 vector input (token input goes through an embedding first)",
                )),
            }
        };
        let weights = match layer {
            LayerIr::Embedding(e) => {
                match program.input {
                    InputIr::Tokens { vocab_size } if index == 0 => {
                        if vocab_size != e.vocab_size {
                            return Err(layer_error(
                                name,
                                format!(
                                    "vocab_size {} differs from the input vocabulary {vocab_size}",
                                    e.vocab_size
                                ),
                            ));
                        }
                    }
                    _ => {
                        return Err(layer_error(
                            name,
                            "an embedding must be the first layer of a token model",
                        ))
                    }
                }
                check_dim(name, "dim", e.dim)?;
                check_len(
                    name,
                    "table",
                    e.table.len(),
                    e.vocab_size.checked_mul(e.dim),
                )?;
                width = Some(e.dim);
                0
            }
            LayerIr::Cell(l) => {
                let input = l.input().map(|b| l.buffers[b].len).ok_or_else(|| {
                    layer_error(name, "a recurrent layer without an input buffer")
                })?;
                needs_width(width, input)?;
                for m in &l.mats {
                    check_len(name, &m.name, m.w.len(), m.rows.checked_mul(m.cols))?;
                    check_len(
                        name,
                        &format!("{} bias", m.name),
                        m.bias.len(),
                        Some(m.rows),
                    )?;
                }
                l.validate().map_err(|e| layer_error(name, e))?;
                for b in &l.buffers {
                    check_dim(name, &b.name, b.len)?;
                }
                for op in &l.ops {
                    if let crate::ir::ops::Op::Pwl { table, .. } = op {
                        check_table(program, name, *table)?;
                    }
                }
                for m in &l.mats {
                    check_accumulators(name, &m.name, &m.bias, &m.w, m.cols)?;
                }
                width = Some(l.output_size());
                l.mats.iter().map(|m| m.w.len()).sum()
            }
            LayerIr::Linear(l) => {
                needs_width(width, l.in_size)?;
                check_dim(name, "in_size", l.in_size)?;
                check_dim(name, "out_size", l.out_size)?;
                check_len(
                    name,
                    "weight",
                    l.weight.len(),
                    l.out_size.checked_mul(l.in_size),
                )?;
                check_len(name, "bias", l.bias.len(), Some(l.out_size))?;
                check_len(name, "req", l.req.len(), Some(l.out_size))?;
                check_accumulators(name, "weight", &l.bias, &l.weight, l.in_size)?;
                width = match l.output {
                    LinearOutput::I8 { .. } => Some(l.out_size),
                    LinearOutput::I32 if index == last => None,
                    LinearOutput::I32 => {
                        return Err(layer_error(
                            name,
                            "only the last layer may produce int32 output",
                        ))
                    }
                };
                if index == last && l.out_size != program.output.size {
                    return Err(layer_error(
                        name,
                        format!(
                            "writes {} values but the program output has {}",
                            l.out_size, program.output.size
                        ),
                    ));
                }
                l.weight.len()
            }
        };
        if unroll == Unroll::Full && weights > FULL_UNROLL_MAX_WEIGHTS {
            return Err(layer_error(
                name,
                format!(
                    "has {weights} weights; full unrolling takes at most {FULL_UNROLL_MAX_WEIGHTS} \
                     per layer (use unroll \"inner\" or \"none\")"
                ),
            ));
        }
    }
    if !matches!(program.layers[last], LayerIr::Linear(_)) {
        return Err(layer_error(
            program.layers[last].name(),
            "the last layer must be a linear layer producing the model output",
        ));
    }
    Ok(())
}
