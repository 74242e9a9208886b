//! Command-line sizes checked against the resource limits before anything is
//! allocated, with the flag named in the message.

use anyhow::{bail, Result};
use irnn_codegen::limits::{Limit, Limits};

/// Checks the size flags of `irnn synth` (each blamed on its flag): widths,
/// vocabulary and layers against their limits, the model's parameter count, and the
/// data file's size against the file size limit (so irnn can read what it writes).
pub fn check_synth(
    vocab: Option<usize>,
    input: usize,
    hidden: usize,
    layers: usize,
    outputs: usize,
    sequences: usize,
    steps: usize,
) -> Result<()> {
    let l = Limits::get();
    let flag = |name: &str, n: usize, limit: Limit| -> Result<()> {
        if let Err(e) = limit.check(n as u64) {
            bail!("{name} {n}: {e}");
        }
        Ok(())
    };
    if let Some(v) = vocab {
        flag("--vocab", v, l.vocab())?;
    }
    flag("--input", input, l.width())?;
    flag("--hidden", hidden, l.width())?;
    flag("--outputs", outputs, l.width())?;
    flag("--layers", layers, l.layers())?;
    flag("--steps", steps, l.steps())?;
    // Saturating: the limits are configurable, so the factors may be large.
    let (i, h, o) = (input as u128, hidden as u128, outputs as u128);
    let per_layer = |x: u128| {
        h.saturating_mul(4)
            .saturating_mul(x.saturating_add(h).saturating_add(2))
    };
    let params = vocab
        .map_or(0, |v| (v as u128).saturating_mul(i))
        .saturating_add(per_layer(i))
        .saturating_add((layers as u128 - 1).saturating_mul(per_layer(h)))
        .saturating_add(o.saturating_mul(h + 1));
    if params > u128::from(l.max_parameters) {
        bail!(
            "--input {input}, --hidden {hidden}, --layers {layers}, --outputs {outputs}: the model would have too many parameters: {}",
            l.parameters().exceeded(params)
        );
    }
    let per_step: u128 = if vocab.is_some() {
        4
    } else {
        i.saturating_mul(4)
    };
    let bytes = (sequences as u128)
        .saturating_mul(steps as u128)
        .saturating_mul(per_step);
    if bytes > u128::from(l.max_file_bytes) {
        bail!(
            "--sequences {sequences}, --steps {steps}: the data file would be too large: {}",
            l.file_bytes().exceeded(bytes)
        );
    }
    Ok(())
}

/// Checks `irnn quantize`'s PWL flags once, blamed on the flag (the fitter would
/// otherwise report the same bad option once per table, against a layer).
pub fn check_quantize(opts: &irnn_codegen::quantize::QuantizeOptions) -> Result<()> {
    use irnn_codegen::pwl::{MAX_PIECES, MIN_PIECES};
    let tol = opts.pwl_tolerance_lsb;
    if !tol.is_finite() || tol < 0.0 {
        bail!("--pwl-tolerance {tol}: must be a finite number of LSB, at least 0");
    }
    let n = opts.pwl_max_pieces;
    if !(MIN_PIECES..=MAX_PIECES).contains(&n) {
        bail!("--pwl-max-pieces {n}: must be between {MIN_PIECES} and {MAX_PIECES}");
    }
    Ok(())
}

/// Checks that the quantized model and the float model given to `eval` (`--float`)
/// take the same input (kind and width, or vocabulary): otherwise the comparison
/// would read the data two different ways and mean nothing.
pub fn check_same_input(
    program: &irnn_codegen::ir::Program,
    float_model: &irnn_codegen::spec::FloatModel,
) -> Result<()> {
    use irnn_codegen::ir::InputIr;
    use irnn_codegen::spec::InputSpec;
    let describe_q = match program.input {
        InputIr::Tokens { vocab_size } => format!("token ids 0..{vocab_size}"),
        InputIr::Features { size, .. } => format!("features of width {size}"),
    };
    let describe_f = match float_model.input {
        InputSpec::Tokens { vocab_size } => format!("token ids 0..{vocab_size}"),
        InputSpec::Features { size } => format!("features of width {size}"),
    };
    if describe_q != describe_f {
        bail!(
            "--float {}: the float model takes {describe_f} but the quantized model takes {describe_q}; are they the same model?",
            float_model.spec_path.display()
        );
    }
    Ok(())
}
