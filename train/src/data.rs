//! Token data: `.npy` int32 `[N, T]` windows, a text → token helper and batch sampling.

use crate::TrainError;
use irnn_codegen::npy::{read_data, SeqData};
use std::path::Path;

/// Token windows `[n, t]`, row-major.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// Number of windows.
    pub n: usize,
    /// Steps per window.
    pub t: usize,
    /// `n * t` ids.
    pub data: Vec<i64>,
}

impl Tokens {
    /// Reads an int32/int64 `.npy` of shape `[N, T]` (or `[T]`) and checks ids against `vocab`.
    pub fn load(path: &Path, vocab: usize) -> Result<Self, TrainError> {
        let file = read_data(path)?;
        let SeqData::Tokens { n, t, data } = file.data else {
            return Err(TrainError::Data(format!(
                "{}: expected token ids (int32/int64 [N, T]), found {}",
                path.display(),
                match file.data {
                    SeqData::FeaturesF32 { .. } => "float32 features",
                    SeqData::FeaturesI8 { .. } => "int8 features",
                    SeqData::Tokens { .. } => "token ids",
                }
            )));
        };
        if t < 2 {
            return Err(TrainError::Data(format!(
                "{}: windows need at least 2 steps",
                path.display()
            )));
        }
        if let Some(p) = data.iter().position(|&v| v < 0 || v as u64 >= vocab as u64) {
            return Err(TrainError::Data(format!(
                "{}: token {} at window {}, step {} is outside the vocabulary 0..{vocab}",
                path.display(),
                data[p],
                p / t,
                p % t
            )));
        }
        Ok(Tokens { n, t, data })
    }

    /// Window `i`.
    pub fn row(&self, i: usize) -> &[i64] {
        &self.data[i * self.t..(i + 1) * self.t]
    }
}

/// Maps text to token ids with a vocabulary given as a JSON list of strings (one
/// character each, as in `examples/charlm/vocab.json`). Characters outside the
/// vocabulary are an error.
pub fn encode_text(text: &str, vocab: &[String]) -> Result<Vec<i32>, TrainError> {
    let mut map = std::collections::HashMap::new();
    for (i, s) in vocab.iter().enumerate() {
        let mut cs = s.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => {
                map.insert(c, i as i32);
            }
            _ => {
                return Err(TrainError::Data(format!(
                    "vocabulary entry {i} ({s:?}) is not a single character"
                )))
            }
        }
    }
    text.chars()
        .enumerate()
        .map(|(k, c)| {
            map.get(&c).copied().ok_or_else(|| {
                TrainError::Data(format!("character {c:?} at {k} is not in the vocabulary"))
            })
        })
        .collect()
}

/// Cuts a token stream into windows of `t` tokens every `stride` tokens.
pub fn windows(ids: &[i32], t: usize, stride: usize) -> (usize, Vec<i32>) {
    let mut out = Vec::new();
    let mut n = 0;
    let mut s = 0;
    while s + t <= ids.len() {
        out.extend_from_slice(&ids[s..s + t]);
        n += 1;
        s += stride.max(1);
    }
    (n, out)
}

/// Text file + vocabulary JSON → int32 `.npy` `[N, T]` of windows. Returns `N`.
pub fn text_to_npy(
    text: &Path,
    vocab: &Path,
    out: &Path,
    t: usize,
    stride: usize,
) -> Result<usize, TrainError> {
    let io = |p: &Path, e: std::io::Error| TrainError::Io(format!("{}: {e}", p.display()));
    let txt = std::fs::read_to_string(text).map_err(|e| io(text, e))?;
    let voc: Vec<String> = serde_json::from_slice(&std::fs::read(vocab).map_err(|e| io(vocab, e))?)
        .map_err(|e| TrainError::Data(format!("{}: {e}", vocab.display())))?;
    let ids = encode_text(&txt, &voc)?;
    let (n, data) = windows(&ids, t, stride);
    let bytes = irnn_codegen::npy::i32_npy_bytes(&[n, t], &data).map_err(|e| io(out, e))?;
    std::fs::write(out, bytes).map_err(|e| io(out, e))?;
    Ok(n)
}

/// A small deterministic RNG (splitmix64).
#[derive(Clone, Copy, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
    }
}

/// Samples `b` random windows of `t` steps (random row, random offset inside the row).
pub fn sample_batch(data: &Tokens, b: usize, t: usize, rng: &mut Rng) -> Vec<i64> {
    let t = t.min(data.t);
    let mut out = Vec::with_capacity(b * t);
    for _ in 0..b {
        let r = rng.below(data.n);
        let off = rng.below(data.t - t + 1);
        out.extend_from_slice(&data.row(r)[off..off + t]);
    }
    out
}
