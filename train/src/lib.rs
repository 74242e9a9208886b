//! # irnn-train
//!
//! Quantization-aware training (the iRNN method) for irnn: fine-tunes (or trains from
//! scratch) a float model — token input, embedding, LSTM, GRU and Elman RNN (tanh or
//! relu) layers in any mix, linear — with the integer arithmetic of docs/NUMERICS.md
//! simulated in the forward pass — per-row int8 weights, asymmetric int8 inputs and
//! hidden states with EMA-tracked ranges, int16 power-of-two gate and cell grids, the
//! compiler's own PWL sigmoid/tanh tables, and for GRU and RNN layers the interpreter's
//! own integer ops on codes (the reset gate's `mul_q15`, the blend, the int8 output) —
//! then exports a quantized graph (`NAME.irnn.json`) that the integer interpreter
//! reproduces. See docs/TRAINING.md.
#![warn(missing_docs)]
// Gate loops index several parallel per-gate arrays by the gate number.
#![allow(clippy::needless_range_loop)]

pub mod checkpoint;
pub mod data;
pub mod export;
pub mod model;
pub mod qat;

use burn::tensor::Device;
use data::{sample_batch, Rng, Tokens};
use model::Params;
use qat::{forward, next_token_loss, DeviceParams, LutCache, Mode, QuantState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or writing a file.
    #[error("{0}")]
    Io(String),
    /// Bad data.
    #[error("{0}")]
    Data(String),
    /// The model cannot be trained or exported.
    #[error("{0}")]
    Model(String),
    /// A checkpoint that does not fit.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A spec, graph or data file that cannot be loaded (the message names the file).
    #[error(transparent)]
    Load(#[from] irnn_codegen::error::LoadError),
    /// Stopped through [`TrainOptions::cancel`] after `step` steps; the state was saved
    /// to `checkpoint` (when one is configured). Nothing was exported.
    #[error("interrupted after step {step}{}", match checkpoint {
        Some(c) => format!("; checkpoint saved to {}", c.display()),
        None => String::new(),
    })]
    Interrupted {
        /// Steps done.
        step: usize,
        /// Where the state was saved.
        checkpoint: Option<PathBuf>,
    },
}

/// Options of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Float model spec (architecture and, unless `from_scratch`, the initial weights).
    pub spec: PathBuf,
    /// Training windows, int32 `.npy` `[N, T]`.
    pub data: PathBuf,
    /// Validation windows (optional).
    pub valid: Option<PathBuf>,
    /// Output graph `NAME.irnn.json` (tensors beside it as `NAME.irnn.safetensors`).
    pub output: PathBuf,
    /// Optimizer steps (total, including resumed ones).
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Windows per batch.
    pub batch_size: usize,
    /// Steps per window (random sub-windows of the data rows; at most the data's `T`).
    pub seq_len: usize,
    /// Start from random weights instead of the spec's.
    pub from_scratch: bool,
    /// Steps trained in float before QAT starts (0: QAT from the first step).
    pub float_steps: usize,
    /// QAT steps during which activation ranges follow an EMA; frozen afterwards.
    pub range_warmup_steps: usize,
    /// EMA decay of the ranges.
    pub ema_decay: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// RNG seed (batches, initialization).
    pub seed: u64,
    /// Checkpoint file (written atomically every `checkpoint_every` steps and at the end;
    /// resumed from when it exists).
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint period in steps.
    pub checkpoint_every: usize,
    /// Validation period in steps (0: only at the end).
    pub valid_every: usize,
    /// At most this many validation windows are scored.
    pub valid_windows: usize,
    /// Cancellation flag, checked after every step: once set, `train` finishes the
    /// current step, writes the checkpoint and returns [`TrainError::Interrupted`]
    /// without exporting.
    pub cancel: Option<Arc<AtomicBool>>,
    /// At the end, also score the validation windows with the float model and with the
    /// exported graph on the integer interpreter (fills the `valid_*` fields of
    /// [`TrainReport`]).
    pub final_eval: bool,
}

impl TrainOptions {
    /// Defaults for a QAT fine-tune of `spec` on `data`, writing `output`.
    pub fn new(
        spec: impl Into<PathBuf>,
        data: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
    ) -> Self {
        TrainOptions {
            spec: spec.into(),
            data: data.into(),
            valid: None,
            output: output.into(),
            steps: 300,
            lr: 2e-4,
            batch_size: 32,
            seq_len: 64,
            from_scratch: false,
            float_steps: 0,
            range_warmup_steps: 100,
            ema_decay: 0.9,
            grad_clip: 1.0,
            seed: 0,
            checkpoint: None,
            checkpoint_every: 100,
            valid_every: 0,
            valid_windows: 64,
            cancel: None,
            final_eval: true,
        }
    }
}

/// Progress events.
#[derive(Clone, Debug)]
pub enum Progress {
    /// One optimizer step done.
    Step {
        /// Step number (1-based).
        step: usize,
        /// Training loss in bits per token.
        bits: f64,
        /// Whether this step ran QAT.
        qat: bool,
        /// Milliseconds for the step.
        ms: f64,
    },
    /// A validation result (simulated integer model when QAT is on).
    Valid {
        /// Step.
        step: usize,
        /// Bits per token.
        bits: f64,
    },
    /// Resumed from a checkpoint at this step.
    Resumed {
        /// Step.
        step: usize,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Step.
        step: usize,
    },
    /// The activation ranges were frozen.
    RangesFrozen {
        /// Step.
        step: usize,
    },
    /// Training is done; exporting and scoring the final model.
    Finishing {
        /// Steps done.
        step: usize,
    },
    /// The graph was written.
    Exported {
        /// The graph file.
        path: PathBuf,
    },
}

/// What [`train`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    /// Steps done in total.
    pub steps: usize,
    /// Mean training loss (bits per token) over the last 20 steps.
    pub final_train_bits: f64,
    /// Validation bits per token of the simulated (QAT) model at the end.
    pub valid_bits: Option<f64>,
    /// Validation bits per token of the spec's float weights (fine-tuning only;
    /// `final_eval`).
    pub valid_spec_float_bits: Option<f64>,
    /// Validation bits per token of the trained weights run in float (`final_eval`).
    pub valid_float_bits: Option<f64>,
    /// Validation bits per token of the exported graph on the integer interpreter
    /// (`final_eval`).
    pub valid_int_bits: Option<f64>,
    /// Fraction of scored validation steps whose top-1 prediction agrees between the
    /// simulated and the integer model (`final_eval`).
    pub top1_sim_vs_int: Option<f64>,
    /// Validation windows × steps scored.
    pub valid_steps: Option<usize>,
    /// Mean milliseconds per step (this run).
    pub ms_per_step: f64,
    /// Where the graph was written.
    pub output: PathBuf,
}

/// The complete training state (what a checkpoint holds).
#[derive(Clone, Debug)]
pub struct State {
    /// Parameters.
    pub params: Params,
    /// Adam first moments.
    pub m: Vec<Vec<f32>>,
    /// Adam second moments.
    pub v: Vec<Vec<f32>>,
    /// Steps done.
    pub step: usize,
    /// Batch RNG.
    pub rng: Rng,
    /// Quantization ranges.
    pub quant: QuantState,
}

/// The CPU device (burn's pure-Rust `flex` backend).
pub fn cpu() -> Device {
    Device::flex()
}

/// One optimizer step: forward, backward, Adam. Returns the loss in bits per token.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    st: &mut State,
    tokens: &[i64],
    b: usize,
    t: usize,
    mode: Mode,
    track: bool,
    luts: &mut LutCache,
    lr: f64,
    clip: f64,
    ema_decay: f64,
) -> f64 {
    let device = cpu().autodiff();
    let dp = DeviceParams::upload(&st.params, &device, true);
    let f = forward(
        &st.params, &dp, tokens, b, t, mode, &st.quant, luts, track, &device,
    );
    if track {
        st.quant.update(&f.stats, ema_decay);
    }
    let loss = next_token_loss(f.logits, tokens, b, t, &device);
    let grads = loss.backward();
    let lv: f32 = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    let mut gs: Vec<Vec<f32>> = dp
        .tensors
        .iter()
        .map(|p| {
            p.grad(&grads)
                .map(|g| g.into_data().try_to_vec::<f32>().unwrap())
                .unwrap_or_default()
        })
        .collect();
    let norm: f64 = gs
        .iter()
        .flatten()
        .map(|g| (*g as f64) * (*g as f64))
        .sum::<f64>()
        .sqrt();
    let scale = if clip > 0.0 && norm > clip {
        (clip / norm) as f32
    } else {
        1.0
    };
    st.step += 1;
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let c1 = 1.0 - b1.powi(st.step as i32);
    let c2 = 1.0 - b2.powi(st.step as i32);
    for (k, p) in st.params.params.iter_mut().enumerate() {
        let g = &mut gs[k];
        if g.len() != p.data.len() {
            continue;
        }
        let (m, v) = (&mut st.m[k], &mut st.v[k]);
        for j in 0..p.data.len() {
            let gj = (g[j] * scale) as f64;
            let mj = b1 * m[j] as f64 + (1.0 - b1) * gj;
            let vj = b2 * v[j] as f64 + (1.0 - b2) * gj * gj;
            m[j] = mj as f32;
            v[j] = vj as f32;
            p.data[j] -= (lr * (mj / c1) / ((vj / c2).sqrt() + eps)) as f32;
        }
    }
    lv as f64 / std::f64::consts::LN_2
}

/// Initializes the activation ranges from one float forward pass over a random batch
/// (what calibration does), before the first QAT step or the export.
fn init_ranges(st: &mut State, data: &Tokens, opts: &TrainOptions, t: usize, luts: &mut LutCache) {
    let tokens = sample_batch(data, opts.batch_size, t, &mut st.rng);
    let dev = cpu();
    let dp = DeviceParams::upload(&st.params, &dev, false);
    let f = forward(
        &st.params,
        &dp,
        &tokens,
        opts.batch_size,
        t,
        Mode::Float,
        &st.quant,
        luts,
        true,
        &dev,
    );
    st.quant.update(&f.stats, opts.ema_decay);
}

/// Validation bits per token (float or simulated QAT), from the reset state per window.
/// Simulated bits per token on windows (QAT mode when `qat`).
pub fn valid_bits(st: &State, data: &Tokens, windows: usize, qat: bool) -> f64 {
    let n = windows.min(data.n);
    let w = &data.data[..n * data.t];
    let mode = if qat { Mode::Qat } else { Mode::Float };
    let l = export::sim_logits(&st.params, &st.quant, w, n, data.t, mode, &cpu());
    export::bits_per_token(&l, w, n, data.t)
}

/// Trains and exports. `progress` is called after every step and event.
pub fn train(
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainReport, TrainError> {
    let float = irnn_codegen::spec::FloatModel::load(&opts.spec)?;
    let mut params = Params::from_float(&float)?;
    let spec_params = (!opts.from_scratch).then(|| params.clone());
    if opts.from_scratch {
        params = Params::init(&params.arch, opts.seed);
    }
    let data = Tokens::load(&opts.data, params.arch.vocab)?;
    let valid = match &opts.valid {
        Some(p) => Some(Tokens::load(p, params.arch.vocab)?),
        None => None,
    };
    let zeros = |p: &Params| {
        p.params
            .iter()
            .map(|q| vec![0f32; q.data.len()])
            .collect::<Vec<_>>()
    };
    let mut st = State {
        m: zeros(&params),
        v: zeros(&params),
        params,
        step: 0,
        rng: Rng(opts.seed),
        quant: QuantState::default(),
    };
    if let Some(ck) = &opts.checkpoint {
        if ck.exists() {
            st = checkpoint::load(ck, &st.params.arch)?;
            progress(&Progress::Resumed { step: st.step });
        }
    }
    let t = opts.seq_len.min(data.t).max(2);
    let mut luts = LutCache::default();
    let mut recent = Vec::new();
    let started = Instant::now();
    let first = st.step;
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    };
    let interrupted =
        |st: &State, progress: &mut dyn FnMut(&Progress)| -> Result<TrainReport, TrainError> {
            if let Some(ck) = &opts.checkpoint {
                checkpoint::save(ck, st)?;
                progress(&Progress::Checkpoint { step: st.step });
            }
            Err(TrainError::Interrupted {
                step: st.step,
                checkpoint: opts.checkpoint.clone(),
            })
        };
    while st.step < opts.steps {
        if cancelled() {
            return interrupted(&st, progress);
        }
        let qat_on = st.step >= opts.float_steps;
        let mode = if qat_on { Mode::Qat } else { Mode::Float };
        if qat_on && !st.quant.initialized {
            // Initialize the ranges from float statistics (as calibration does).
            init_ranges(&mut st, &data, opts, t, &mut luts);
        }
        let track = qat_on && !st.quant.frozen;
        let tokens = sample_batch(&data, opts.batch_size, t, &mut st.rng);
        let t0 = Instant::now();
        let bits = train_step(
            &mut st,
            &tokens,
            opts.batch_size,
            t,
            mode,
            track,
            &mut luts,
            opts.lr,
            opts.grad_clip,
            opts.ema_decay,
        );
        if !bits.is_finite() {
            return Err(TrainError::Model(format!(
                "loss is not finite at step {}",
                st.step
            )));
        }
        recent.push(bits);
        if recent.len() > 20 {
            recent.remove(0);
        }
        progress(&Progress::Step {
            step: st.step,
            bits,
            qat: qat_on,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        });
        if qat_on && !st.quant.frozen && st.step >= opts.float_steps + opts.range_warmup_steps {
            st.quant.frozen = true;
            progress(&Progress::RangesFrozen { step: st.step });
        }
        if let (Some(v), true) = (
            &valid,
            opts.valid_every > 0 && st.step.is_multiple_of(opts.valid_every),
        ) {
            progress(&Progress::Valid {
                step: st.step,
                bits: valid_bits(&st, v, opts.valid_windows, qat_on),
            });
        }
        if let (Some(ck), true) = (
            &opts.checkpoint,
            opts.checkpoint_every > 0 && st.step.is_multiple_of(opts.checkpoint_every),
        ) {
            checkpoint::save(ck, &st)?;
            progress(&Progress::Checkpoint { step: st.step });
        }
    }
    if !st.quant.initialized {
        // No QAT step ran (steps <= float_steps): initialize ranges from float statistics.
        init_ranges(&mut st, &data, opts, t, &mut luts);
    }
    if cancelled() {
        return interrupted(&st, progress);
    }
    if let Some(ck) = &opts.checkpoint {
        checkpoint::save(ck, &st)?;
        progress(&Progress::Checkpoint { step: st.step });
    }
    progress(&Progress::Finishing { step: st.step });
    // The exported model uses the current ranges, frozen.
    st.quant.frozen = true;
    let valid_n = valid.as_ref().map(|v| (opts.valid_windows.min(v.n), v));
    let sim = valid_n.map(|(n, v)| {
        let w = &v.data[..n * v.t];
        let l = export::sim_logits(&st.params, &st.quant, w, n, v.t, Mode::Qat, &cpu());
        (export::bits_per_token(&l, w, n, v.t), l)
    });
    let valid_bits = sim.as_ref().map(|s| s.0);
    if let Some(b) = valid_bits {
        progress(&Progress::Valid {
            step: st.step,
            bits: b,
        });
    }
    if cancelled() {
        // Nothing exported yet; the checkpoint holds the finished run.
        return Err(TrainError::Interrupted {
            step: st.step,
            checkpoint: opts.checkpoint.clone(),
        });
    }
    let producer = serde_json::json!({
        "tool": "irnn-train (QAT)",
        "version": env!("CARGO_PKG_VERSION"),
        "steps": st.step,
        "lr": opts.lr,
        "from_scratch": opts.from_scratch,
        "range_warmup_steps": opts.range_warmup_steps,
        "pwl": {"tolerance_lsb": 1.0, "max_pieces": 64, "method": "sweep"},
    });
    export::export(
        &st.params,
        &st.quant,
        &opts.output,
        producer,
        float.metadata.clone(),
    )?;
    progress(&Progress::Exported {
        path: opts.output.clone(),
    });
    let done = st.step - first;
    let ms_per_step = if done > 0 {
        started.elapsed().as_secs_f64() * 1e3 / done as f64
    } else {
        0.0
    };
    let (mut spec_float, mut float_bits, mut int_bits, mut top1, mut valid_steps) =
        (None, None, None, None, None);
    if let (true, Some((n, v)), Some((_, sim))) = (opts.final_eval, valid_n, &sim) {
        let w = &v.data[..n * v.t];
        let none = QuantState::default();
        let fl = |p: &Params| {
            export::bits_per_token(
                &export::sim_logits(p, &none, w, n, v.t, Mode::Float, &cpu()),
                w,
                n,
                v.t,
            )
        };
        spec_float = spec_params.as_ref().map(fl);
        float_bits = Some(fl(&st.params));
        let int = export::integer_logits(&opts.output, w, n, v.t)?;
        let ag = export::agreement(sim, &int, w, n, v.t);
        int_bits = Some(ag.bpt_b);
        top1 = Some(ag.top1);
        valid_steps = Some(ag.steps);
    }
    Ok(TrainReport {
        steps: st.step,
        final_train_bits: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        valid_bits,
        valid_spec_float_bits: spec_float,
        valid_float_bits: float_bits,
        valid_int_bits: int_bits,
        top1_sim_vs_int: top1,
        valid_steps,
        ms_per_step,
        output: opts.output.clone(),
    })
}
