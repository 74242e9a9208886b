//! `irnn-train`: quantization-aware training for irnn (also run as `irnn train ...`).
//!
//! ```text
//! irnn-train SPEC.json --data TRAIN.npy --valid VALID.npy -o OUT.irnn.json [--steps N] ...
//! ```
//!
//! Fine-tunes the float weights of SPEC with the integer arithmetic simulated (or, with
//! `--from-scratch`, trains from random weights in float first), checkpointing to
//! `OUT.ckpt` (resumed automatically), then exports `OUT.irnn.json` +
//! `OUT.irnn.safetensors` and scores float / simulated / integer models on VALID.
//! See docs/TRAINING.md.

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use irnn_train::{train, Progress, TrainError, TrainOptions, TrainReport};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Quantization-aware training (QAT) of an LSTM, GRU or RNN model for irnn.
///
/// Fine-tunes the float weights of SPEC (a float model spec with PyTorch tensor names,
/// as `irnn quantize` takes) with the integer arithmetic simulated in the forward pass,
/// or trains from random weights first (--from-scratch), then writes the quantized graph
/// OUT.irnn.json (+ OUT.irnn.safetensors). The run is checkpointed (default OUT.ckpt
/// beside the output) and resumes from that checkpoint when it exists: after Ctrl-C, run
/// the same command again. At the end it prints validation bits per token of the float,
/// QAT-simulated and integer models and the top-1 agreement between the last two.
#[derive(Parser, Debug)]
#[command(name = "irnn-train", version)]
struct Args {
    /// Float model spec (JSON + safetensors weights), e.g. examples/charlm/charlm.json.
    #[arg(value_name = "SPEC.json")]
    spec: PathBuf,
    /// Training data: int32/int64 token ids `.npy` [N, T] (batches are random windows of
    /// --seq-len steps), or a `.txt` file with --vocab.
    #[arg(long, value_name = "TRAIN.npy")]
    data: PathBuf,
    /// Validation data, same forms as --data (scored from the reset state per window).
    #[arg(long, value_name = "VALID.npy")]
    valid: PathBuf,
    /// Output graph; the tensors go beside it (`NAME.irnn.json` → `NAME.irnn.safetensors`).
    #[arg(short = 'o', long = "output", value_name = "OUT.irnn.json")]
    output: PathBuf,
    /// Total optimizer steps (a resumed run counts the checkpoint's steps).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Adam learning rate [default: 2e-4, or 2e-3 with --from-scratch].
    #[arg(long)]
    lr: Option<f64>,
    /// Windows per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Steps per training window (at most the data's T).
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Start from random weights: train in float for --float-steps, then QAT.
    #[arg(long)]
    from_scratch: bool,
    /// Float steps before QAT starts [default: 0, or half of --steps with --from-scratch].
    #[arg(long, value_name = "N")]
    float_steps: Option<usize>,
    /// QAT steps during which activation ranges follow an EMA; frozen afterwards.
    #[arg(long, default_value_t = 100, value_name = "N")]
    range_warmup_steps: usize,
    /// Checkpoint file [default: OUT.ckpt beside the output]. Resumed from when it exists.
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Write the checkpoint every N steps (atomically; also at the end and on Ctrl-C).
    #[arg(long, default_value_t = 100, value_name = "N")]
    checkpoint_every: usize,
    /// Score the validation data every N steps (0: only at the end).
    #[arg(long, default_value_t = 100, value_name = "N")]
    valid_every: usize,
    /// Score at most this many validation windows.
    #[arg(long, default_value_t = 64, value_name = "N")]
    valid_windows: usize,
    /// Random seed (batches; initialization with --from-scratch).
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
    /// Vocabulary for `.txt` data: a JSON list of one-character strings
    /// (e.g. examples/charlm/vocab.json).
    #[arg(long, value_name = "VOCAB.json")]
    vocab: Option<PathBuf>,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Exit status after an interrupt (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let args = Args::parse();
    let ui = Ui::new(args.steps);
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let (cancel, handler_ui) = (cancel.clone(), ui.clone());
        let handler = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                handler_ui.say(
                    "irnn-train: second interrupt: exiting now (the last checkpoint is intact)",
                );
                std::process::exit(EXIT_INTERRUPTED as i32);
            }
            handler_ui.say("irnn-train: interrupt: stopping after the current step and saving a checkpoint (Ctrl-C again to exit now)");
        });
        if let Err(e) = handler {
            ui.say(&format!("irnn-train: warning: cannot handle Ctrl-C: {e}"));
        }
    }
    match run(&args, &ui, cancel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui.pb.abandon();
            if let Some(TrainError::Interrupted { step, checkpoint }) =
                e.downcast_ref::<TrainError>()
            {
                eprintln!("irnn-train: interrupted after step {step}; nothing was exported.");
                match checkpoint {
                    Some(c) => eprintln!(
                        "checkpoint: {}\nto resume, run the same command again:\n  {}",
                        c.display(),
                        command_line()
                    ),
                    None => eprintln!("no checkpoint was written"),
                }
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Progress display: a bar on a terminal, plain lines otherwise.
#[derive(Clone)]
struct Ui {
    pb: ProgressBar,
}

impl Ui {
    fn new(steps: usize) -> Self {
        let pb = ProgressBar::new(steps as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps {msg} (ETA {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Ui { pb }
    }

    /// A line above the bar (on stderr when the bar is hidden).
    fn say(&self, line: &str) {
        if self.pb.is_hidden() {
            eprintln!("{line}");
        } else {
            self.pb.println(line);
        }
    }
}

/// The command line, shell-quoted.
fn command_line() -> String {
    std::env::args_os()
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(a: &OsString) -> String {
    let s = a.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `NAME.irnn.json` → `NAME.ckpt` in the same directory.
fn default_checkpoint(output: &Path) -> PathBuf {
    let file = output
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = file
        .strip_suffix(".irnn.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(&file);
    output.with_file_name(format!("{stem}.ckpt"))
}

fn check_dir_of(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() {
        bail!("{}: {what} is a directory", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{}: the directory of the {what} does not exist",
            path.display()
        );
    }
    Ok(())
}

/// `.txt` data → a temporary `.npy` of windows of `t` tokens every `stride`.
fn text_data(
    path: &Path,
    args: &Args,
    tmp: &Path,
    name: &str,
    t: usize,
    stride: usize,
) -> Result<PathBuf> {
    let vocab = args
        .vocab
        .as_deref()
        .with_context(|| format!("{}: text data needs --vocab VOCAB.json", path.display()))?;
    let out = tmp.join(format!("{name}.npy"));
    let n = irnn_train::data::text_to_npy(path, vocab, &out, t, stride)
        .with_context(|| format!("{}", path.display()))?;
    if n == 0 {
        bail!(
            "{}: too short for one window of {t} characters",
            path.display()
        );
    }
    Ok(out)
}

fn is_text(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "txt")
}

fn run(args: &Args, ui: &Ui, cancel: Arc<AtomicBool>) -> Result<()> {
    let lr = args
        .lr
        .unwrap_or(if args.from_scratch { 2e-3 } else { 2e-4 });
    if !(lr.is_finite() && lr > 0.0) {
        bail!("--lr must be a positive number (got {lr})");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.seq_len < 2 {
        bail!("--seq-len must be at least 2");
    }
    if args.valid_windows == 0 {
        bail!("--valid-windows must be at least 1");
    }
    if !args.spec.is_file() {
        bail!("{}: cannot read: no such file", args.spec.display());
    }
    check_dir_of(&args.output, "output")?;
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&args.output));
    check_dir_of(&checkpoint, "checkpoint")?;

    // Text data is cut into windows in a temporary directory.
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (mut data, mut valid) = (args.data.clone(), args.valid.clone());
    if is_text(&data) || is_text(&valid) {
        if let Some(v) = &args.vocab {
            let voc: Vec<String> = serde_json::from_slice(
                &std::fs::read(v).with_context(|| format!("{}: cannot read", v.display()))?,
            )
            .with_context(|| format!("{}: expected a JSON list of strings", v.display()))?;
            let float = irnn_codegen::spec::FloatModel::load(&args.spec)?;
            if let irnn_codegen::spec::InputSpec::Tokens { vocab_size } = float.input {
                if voc.len() > vocab_size {
                    bail!(
                        "{}: {} entries, but {} has a vocabulary of {vocab_size}",
                        v.display(),
                        voc.len(),
                        args.spec.display()
                    );
                }
            }
        }
        let t = 2 * args.seq_len;
        if is_text(&data) {
            data = text_data(&data, args, tmp.path(), "train", t, args.seq_len)?;
        }
        if is_text(&valid) {
            valid = text_data(&valid, args, tmp.path(), "valid", t, t)?;
        }
    }

    let mut o = TrainOptions::new(&args.spec, data, &args.output);
    o.valid = Some(valid);
    o.steps = args.steps;
    o.lr = lr;
    o.batch_size = args.batch_size;
    o.seq_len = args.seq_len;
    o.from_scratch = args.from_scratch;
    o.float_steps = args
        .float_steps
        .unwrap_or(if args.from_scratch { args.steps / 2 } else { 0 });
    o.range_warmup_steps = args.range_warmup_steps;
    o.seed = args.seed;
    o.checkpoint = Some(checkpoint.clone());
    o.checkpoint_every = args.checkpoint_every;
    o.valid_every = args.valid_every;
    o.valid_windows = args.valid_windows;
    o.cancel = Some(cancel);

    let pb = &ui.pb;
    if !pb.is_hidden() {
        pb.enable_steady_tick(Duration::from_millis(200));
    }
    let log_every = (args.steps / 20).max(1);
    let (mut recent, mut last_valid): (Vec<f64>, Option<f64>) = (Vec::new(), None);
    let mut phase = "qat";
    let report = train(&o, &mut |p| match p {
        Progress::Step {
            step,
            bits,
            qat,
            ms,
        } => {
            recent.push(*bits);
            if recent.len() > 10 {
                recent.remove(0);
            }
            let loss = recent.iter().sum::<f64>() / recent.len() as f64;
            phase = if *qat { "qat" } else { "float" };
            let valid = last_valid
                .map(|v| format!(" | valid {v:.4}"))
                .unwrap_or_default();
            pb.set_position(*step as u64);
            pb.set_message(format!(
                "| {phase} | loss {loss:.4} bits/token{valid} | {ms:.0} ms/step"
            ));
            if pb.is_hidden() && (step % log_every == 0 || *step == 1) {
                eprintln!(
                    "step {step}/{}: loss {loss:.4} bits/token ({phase}, {ms:.0} ms/step){valid}",
                    args.steps
                );
            }
        }
        Progress::Valid { step, bits } => {
            last_valid = Some(*bits);
            let what = if phase == "qat" {
                "QAT simulated"
            } else {
                "float"
            };
            ui.say(&format!(
                "step {step}: validation {bits:.4} bits/token ({what})"
            ));
        }
        Progress::Resumed { step } => {
            pb.set_position(*step as u64);
            pb.reset_eta();
            ui.say(&format!(
                "resuming from {} at step {step} (delete it to start over)",
                checkpoint.display()
            ));
        }
        Progress::Checkpoint { step } => {
            if pb.is_hidden() {
                eprintln!(
                    "step {step}: checkpoint written to {}",
                    checkpoint.display()
                );
            }
        }
        Progress::RangesFrozen { step } => {
            ui.say(&format!("step {step}: activation ranges frozen"))
        }
        Progress::Finishing { step } => {
            phase = "qat";
            pb.set_position(*step as u64);
            pb.set_message("| exporting and scoring the final model");
        }
        Progress::Exported { .. } => {
            pb.set_message("| scoring float, simulated and integer models")
        }
    })?;
    pb.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &checkpoint);
    }
    Ok(())
}

fn print_report(r: &TrainReport, checkpoint: &Path) {
    let tensors = irnn_train::export::tensor_file_name_for(&r.output);
    println!("wrote {} (+ {tensors})", r.output.display());
    if r.ms_per_step > 0.0 {
        println!(
            "steps: {} (final training loss {:.4} bits/token; {:.0} ms/step in this run)",
            r.steps, r.final_train_bits, r.ms_per_step
        );
    } else {
        println!(
            "steps: {} (all from the checkpoint; none in this run)",
            r.steps
        );
    }
    let n = r
        .valid_steps
        .map(|n| format!(" over {n} predictions"))
        .unwrap_or_default();
    println!("validation bits per token{n}:");
    let row = |name: &str, v: Option<f64>| {
        if let Some(v) = v {
            println!("  {name:<28} {v:.4}");
        }
    };
    row("float (spec weights)", r.valid_spec_float_bits);
    row("float (trained weights)", r.valid_float_bits);
    row("QAT simulated", r.valid_bits);
    row("integer (interpreter)", r.valid_int_bits);
    if let Some(a) = r.top1_sim_vs_int {
        println!("top-1 agreement, simulated vs integer: {:.2}%", a * 100.0);
    }
    println!(
        "checkpoint: {} (running the same command again re-exports; delete it to train from the start)",
        checkpoint.display()
    );
}
