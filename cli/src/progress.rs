//! Progress bars (indicatif) on stderr: shown only when stderr is a terminal and the
//! command line did not say `--quiet`, so pipes, logs and tests see no bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns every later bar off (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether bars and chatter on stderr are off.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether a bar would be drawn: stderr is a terminal and not `--quiet`.
pub fn visible() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// A bar of `len` units labelled `what` (hidden unless [`visible`]).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:32}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// A spinner labelled `what` for work of unknown length (hidden unless [`visible`]).
pub fn spinner(what: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new_spinner();
    b.set_message(what.to_string());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}
