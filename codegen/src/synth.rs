//! Synthetic models: random float LSTM models with PyTorch's tensor names and
//! initialization, plus random input data. Used for benchmarks at reference sizes and
//! by the test suite where a trained model is not needed.

use crate::output::OutputSet;
use crate::spec::Cell;
use crate::tensors::TensorWriter;
use std::path::{Path, PathBuf};

/// A small deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1A4_F87B)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-a, a)`.
    pub fn sym(&mut self, a: f64) -> f32 {
        ((self.unit() * 2.0 - 1.0) * a) as f32
    }

    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Shape of a synthetic model.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    /// Model name.
    pub name: String,
    /// `Some(vocab)` for token input (with an embedding of width `input_size`), `None`
    /// for float features of width `input_size`.
    pub vocab_size: Option<usize>,
    /// Embedding width or feature width.
    pub input_size: usize,
    /// The recurrent cell.
    pub cell: Cell,
    /// Hidden size of the recurrent layers.
    pub hidden_size: usize,
    /// Number of stacked recurrent layers.
    pub num_layers: usize,
    /// Output width of the final linear layer.
    pub output_size: usize,
    /// Weight scale multiplier over PyTorch's default `U(-1/√H, 1/√H)`; larger values
    /// give livelier (more saturated) dynamics.
    pub gain: f64,
    /// Random seed.
    pub seed: u64,
}

/// Writes `{dir}/{name}.json` and `{dir}/{name}.safetensors` (one output set: both
/// or neither); returns the spec path.
pub fn write_float_model(dir: &Path, s: &SynthSpec) -> std::io::Result<PathBuf> {
    let mut set = OutputSet::new(dir).map_err(std::io::Error::other)?;
    let spec_name = stage_float_model(&mut set, s)?;
    set.commit().map_err(std::io::Error::other)?;
    Ok(dir.join(spec_name))
}

/// Stages `{name}.json` and `{name}.safetensors` in `set`; returns the spec's file name.
pub fn stage_float_model(set: &mut OutputSet, s: &SynthSpec) -> std::io::Result<String> {
    let mut rng = Rng::new(s.seed);
    let mut w = TensorWriter::default();
    let k = s.gain / (s.hidden_size as f64).sqrt();
    let mut rand = |n: usize, a: f64| -> Vec<f32> { (0..n).map(|_| rng.sym(a)).collect() };
    let mut layers = Vec::new();
    let input = match s.vocab_size {
        Some(v) => {
            w.f32(
                "embed.weight",
                &[v, s.input_size],
                &rand(v * s.input_size, 1.0),
            );
            layers.push(serde_json::json!({"op": "embedding", "prefix": "embed"}));
            serde_json::json!({"kind": "tokens", "vocab_size": v})
        }
        None => serde_json::json!({"kind": "features", "size": s.input_size}),
    };
    let h = s.hidden_size;
    let g = s.cell.gates();
    for l in 0..s.num_layers {
        let i = if l == 0 { s.input_size } else { h };
        w.f32(
            &format!("rnn.weight_ih_l{l}"),
            &[g * h, i],
            &rand(g * h * i, k),
        );
        w.f32(
            &format!("rnn.weight_hh_l{l}"),
            &[g * h, h],
            &rand(g * h * h, k),
        );
        w.f32(&format!("rnn.bias_ih_l{l}"), &[g * h], &rand(g * h, k));
        w.f32(&format!("rnn.bias_hh_l{l}"), &[g * h], &rand(g * h, k));
    }
    layers.push(match s.cell {
        Cell::Lstm => {
            serde_json::json!({"op": "lstm", "prefix": "rnn", "num_layers": s.num_layers})
        }
        Cell::Gru => serde_json::json!({"op": "gru", "prefix": "rnn", "num_layers": s.num_layers}),
        Cell::Rnn(act) => serde_json::json!({
            "op": "rnn", "prefix": "rnn", "num_layers": s.num_layers, "nonlinearity": act
        }),
    });
    let kh = 1.0 / (h as f64).sqrt();
    w.f32(
        "head.weight",
        &[s.output_size, h],
        &rand(s.output_size * h, kh),
    );
    w.f32("head.bias", &[s.output_size], &rand(s.output_size, kh));
    layers.push(serde_json::json!({"op": "linear", "prefix": "head"}));
    let spec = serde_json::json!({
        "name": s.name,
        "weights": format!("{}.safetensors", s.name),
        "input": input,
        "layers": layers,
    });
    let bytes = w.to_bytes().map_err(std::io::Error::other)?;
    set.write(&format!("{}.safetensors", s.name), &bytes)
        .map_err(std::io::Error::other)?;
    let spec_name = format!("{}.json", s.name);
    let mut text = serde_json::to_string_pretty(&spec)?;
    text.push('\n');
    set.write(&spec_name, text.as_bytes())
        .map_err(std::io::Error::other)?;
    Ok(spec_name)
}

/// Random data for a synthetic model: token ids `[n, t]` (int32 `.npy`) or float
/// features `[n, t, f]` in `[-amplitude, amplitude)` (float32 `.npy`).
pub fn random_data_npy(
    s: &SynthSpec,
    n: usize,
    t: usize,
    amplitude: f64,
    seed: u64,
) -> std::io::Result<Vec<u8>> {
    let mut rng = Rng::new(seed);
    match s.vocab_size {
        Some(v) => {
            let data: Vec<i32> = (0..n * t).map(|_| rng.below(v as u64) as i32).collect();
            crate::npy::i32_npy_bytes(&[n, t], &data)
        }
        None => {
            let f = s.input_size;
            let data: Vec<f32> = (0..n * t * f).map(|_| rng.sym(amplitude)).collect();
            crate::npy::f32_npy_bytes(&[n, t, f], &data)
        }
    }
}
