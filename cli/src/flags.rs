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
