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

/// Exit status of a command whose standard output (or error) was closed by its
/// reader, as the shell reports a Unix tool ended by `SIGPIPE` (128 + 13).
pub const BROKEN_PIPE_EXIT: u8 = 141;

/// Whether a panic payload is the standard library's "failed printing to stdout/
/// stderr: Broken pipe" (what `println!` does when the reader has gone).
fn is_broken_pipe_panic(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

/// Whether an error was caused by writing to a closed pipe.
fn is_broken_pipe_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs a command, reporting its error on stderr. A reader that closes the pipe
/// early (`irnn inspect M | head -1`) ends the command quietly, with no panic message
/// and the status [`BROKEN_PIPE_EXIT`]; the unwinding runs every destructor, so
/// staged output sets are removed.
pub fn run_reporting(f: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe_panic(info.payload()) {
            default_hook(info);
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) if is_broken_pipe_error(&e) => std::process::ExitCode::from(BROKEN_PIPE_EXIT),
        Ok(Err(e)) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            std::process::ExitCode::FAILURE
        }
        Err(payload) if is_broken_pipe_panic(payload.as_ref()) => {
            std::process::ExitCode::from(BROKEN_PIPE_EXIT)
        }
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
