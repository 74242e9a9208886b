//! What the QAT test files share: a tiny spec's weights and a learnable token stream.

use irnn_codegen::tensors::TensorWriter;
use irnn_train::data::Rng;
use irnn_train::model::Params;
use irnn_train::{train, Progress, TrainOptions, TrainReport};
use std::path::{Path, PathBuf};

/// Writes `spec` as `dir/tiny.json` and the float weights `p` as `dir/tiny.safetensors`
/// (the file the spec names); returns the spec's path.
pub fn write_spec(dir: &Path, spec: &serde_json::Value, p: &Params) -> PathBuf {
    let mut w = TensorWriter::default();
    for q in &p.params {
        w.f32(&q.name, &q.shape, &q.data);
    }
    std::fs::write(dir.join("tiny.safetensors"), w.to_bytes().unwrap()).unwrap();
    let sp = dir.join("tiny.json");
    std::fs::write(&sp, serde_json::to_string(spec).unwrap()).unwrap();
    sp
}

/// Writes `dir/train.npy`: 64 sequences of 24 token ids below `vocab`, a noisy counter
/// (next = cur + 1 mod `vocab` nine times in ten). Returns its path.
pub fn write_counter_data(dir: &Path, vocab: usize) -> PathBuf {
    let mut rng = Rng(3);
    let (n, t) = (64, 24);
    let mut data = Vec::new();
    for _ in 0..n {
        let mut cur = rng.below(vocab) as i32;
        for _ in 0..t {
            data.push(cur);
            cur = if rng.below(10) == 0 {
                rng.below(vocab) as i32
            } else {
                (cur + 1) % vocab as i32
            };
        }
    }
    let dp = dir.join("train.npy");
    std::fs::write(
        &dp,
        irnn_codegen::npy::i32_npy_bytes(&[n, t], &data).unwrap(),
    )
    .unwrap();
    dp
}

/// Training options of the tiny models: `steps` steps of batches of 16 windows of 16,
/// learning rate 1e-2, ranges warmed up over 10 steps, validated on `data` (16 windows),
/// the graph written to `dir/out.irnn.json`.
pub fn opts(dir: &Path, spec: &Path, data: &Path, steps: usize) -> TrainOptions {
    let mut o = TrainOptions::new(spec, data, dir.join("out.irnn.json"));
    o.steps = steps;
    o.lr = 1e-2;
    o.batch_size = 16;
    o.seq_len = 16;
    o.range_warmup_steps = 10;
    o.valid = Some(data.to_path_buf());
    o.valid_windows = 16;
    o
}

/// Trains `steps` QAT steps with [`opts`] and a checkpoint at the end
/// (`dir/ck.safetensors`), checking every step is QAT; returns the report and the mean
/// loss (bits) of the first and of the last five steps, with the options used.
pub fn train_qat(
    dir: &Path,
    spec: &Path,
    data: &Path,
    steps: usize,
) -> (TrainOptions, TrainReport, f64, f64) {
    let mut o = opts(dir, spec, data, steps);
    o.checkpoint = Some(dir.join("ck.safetensors"));
    o.checkpoint_every = 0;
    let mut losses = Vec::new();
    let r = train(&o, &mut |p| {
        if let Progress::Step { bits, qat, .. } = p {
            assert!(*qat);
            losses.push(*bits);
        }
    })
    .unwrap();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    (o, r, first, last)
}
