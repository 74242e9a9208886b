//! Writing outputs: `irnn run --out` streamed into an atomic output set.

use anyhow::{anyhow, Result};
use irnn_codegen::output::OutputSet;
use std::path::Path;

/// Values (int32) held in memory at a time while `irnn run` streams its output.
pub const RUN_CHUNK_VALUES: usize = 1 << 22;

/// Writes the int32 `.npy` `out` of `shape` (`n` sequences of `per_seq` values),
/// computing `run(first..end)` a chunk of sequences at a time (about `chunk_values`
/// values, at least one sequence; `irnn run` uses [`RUN_CHUNK_VALUES`]) and appending
/// each to the file, so memory holds one chunk, never the whole array.
/// The file is staged and renamed into place only when complete: an error in any
/// chunk leaves no file behind (and an old file untouched).
pub fn write_run_output(
    out: &Path,
    shape: &[usize],
    n: usize,
    per_seq: usize,
    chunk_values: usize,
    mut run: impl FnMut(std::ops::Range<usize>) -> Result<Vec<i32>>,
) -> Result<()> {
    let total = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let total_bytes = total.and_then(|v| v.checked_mul(4));
    if total_bytes.is_none() || n.checked_mul(per_seq) != total {
        return Err(anyhow!(
            "{}: the output shape {shape:?} has more elements than this machine can address",
            out.display()
        ));
    }
    let name = out
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| anyhow!("{}: not a file name", out.display()))?
        .to_string();
    let per_chunk = (chunk_values / per_seq.max(1)).max(1);
    let mut set = OutputSet::for_file(out)?;
    let mut failure = None;
    let written = set.write_with(&name, |w| {
        let mut npy = irnn_codegen::npy::i32_npy_writer(w, shape)?;
        let mut first = 0;
        while first < n {
            let end = first.saturating_add(per_chunk).min(n);
            match run(first..end) {
                Ok(values) => npy.extend(values)?,
                Err(e) => {
                    failure = Some(e);
                    return Err(std::io::Error::other("interrupted"));
                }
            }
            first = end;
        }
        npy.finish()
    });
    if let Some(e) = failure {
        return Err(e);
    }
    written?;
    set.commit()?;
    Ok(())
}
