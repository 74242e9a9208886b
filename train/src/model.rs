//! The trainable model on the host: float parameters with PyTorch tensor names.

use crate::data::Rng;
use crate::TrainError;
use irnn_codegen::spec::{Cell, FloatLayer, FloatModel, InputSpec, Matrix, Nonlinearity};

/// The recurrent cell of one layer (PyTorch's `nn.LSTM`, `nn.GRU`, `nn.RNN`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// LSTM, gates i, f, g, o.
    #[default]
    Lstm,
    /// GRU, gates r, z, n.
    Gru,
    /// Elman RNN with tanh.
    RnnTanh,
    /// Elman RNN with relu.
    RnnRelu,
}

impl CellKind {
    /// Rows of `weight_ih` per hidden unit.
    pub fn gates(self) -> usize {
        self.cell().gates()
    }

    /// The spec's cell.
    pub fn cell(self) -> Cell {
        match self {
            CellKind::Lstm => Cell::Lstm,
            CellKind::Gru => Cell::Gru,
            CellKind::RnnTanh => Cell::Rnn(Nonlinearity::Tanh),
            CellKind::RnnRelu => Cell::Rnn(Nonlinearity::Relu),
        }
    }

    /// From the spec's cell.
    pub fn of(cell: Cell) -> Self {
        match cell {
            Cell::Lstm => CellKind::Lstm,
            Cell::Gru => CellKind::Gru,
            Cell::Rnn(Nonlinearity::Tanh) => CellKind::RnnTanh,
            Cell::Rnn(Nonlinearity::Relu) => CellKind::RnnRelu,
        }
    }
}

/// Architecture supported: token input → embedding → recurrent layers (LSTM, GRU,
/// Elman RNN with tanh or relu, in any mix) → linear (int32 logits).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Arch {
    /// Model name.
    pub name: String,
    /// Vocabulary size (embedding rows).
    pub vocab: usize,
    /// Embedding width.
    pub embed_dim: usize,
    /// Hidden width of each recurrent layer.
    pub hidden: Vec<usize>,
    /// The cell of each recurrent layer. Empty means all LSTM (checkpoints written
    /// before GRU and RNN layers were supported); see [`Arch::cell`].
    #[serde(default)]
    pub cells: Vec<CellKind>,
    /// Output width of the final linear layer.
    pub out: usize,
    /// Graph layer names: embedding, each recurrent layer, linear.
    pub layer_names: Vec<String>,
}

impl Arch {
    /// The cell of recurrent layer `k` (LSTM when `cells` is empty).
    pub fn cell(&self, k: usize) -> CellKind {
        self.cells.get(k).copied().unwrap_or_default()
    }

    /// The same architecture with `cells` filled in (one per layer).
    pub fn normalized(&self) -> Arch {
        let mut a = self.clone();
        a.cells = (0..a.hidden.len()).map(|k| self.cell(k)).collect();
        a
    }
}

/// One named float parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// PyTorch name, e.g. `rnn.weight_ih_l0`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// All parameters, in a fixed order: embedding weight; for each recurrent layer `w_ih`,
/// `w_hh`, `b_ih`, `b_hh` (`[gates·H, ·]`, PyTorch's gate order); linear weight, linear
/// bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// The architecture.
    pub arch: Arch,
    /// The parameters.
    pub params: Vec<Param>,
}

fn recurrent_names(layer_name: &str) -> [String; 4] {
    // FloatModel names recurrent layers `{prefix}.l{k}`.
    let (prefix, k) = layer_name
        .rsplit_once(".l")
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .unwrap_or((layer_name.to_string(), "0".to_string()));
    [
        format!("{prefix}.weight_ih_l{k}"),
        format!("{prefix}.weight_hh_l{k}"),
        format!("{prefix}.bias_ih_l{k}"),
        format!("{prefix}.bias_hh_l{k}"),
    ]
}

impl Params {
    /// Takes the architecture and the float weights of a loaded spec.
    pub fn from_float(model: &FloatModel) -> Result<Self, TrainError> {
        let unsupported = |why: &str| {
            TrainError::Model(format!(
                "{}: {why}; training supports token input → embedding → recurrent layers \
                 (LSTM, GRU, RNN) → linear",
                model.name
            ))
        };
        let InputSpec::Tokens { vocab_size } = model.input else {
            return Err(unsupported("feature input is not supported yet"));
        };
        let mut params = Vec::new();
        let mut hidden = Vec::new();
        let mut cells = Vec::new();
        let mut names = Vec::new();
        let n = model.layers.len();
        if n < 3 {
            return Err(unsupported("too few layers"));
        }
        let (mut embed_dim, mut out) = (0, 0);
        for (i, layer) in model.layers.iter().enumerate() {
            names.push(layer.name().to_string());
            let mat = |name: String, m: &Matrix| Param {
                name,
                shape: vec![m.rows, m.cols],
                data: m.data.clone(),
            };
            match (i, layer) {
                (0, FloatLayer::Embedding { name, weight }) => {
                    embed_dim = weight.cols;
                    params.push(mat(format!("{name}.weight"), weight));
                }
                (
                    i,
                    FloatLayer::Recurrent {
                        name,
                        cell,
                        w_ih,
                        w_hh,
                        b_ih,
                        b_hh,
                    },
                ) if i > 0 && i + 1 < n => {
                    let [a, b, c, d] = recurrent_names(name);
                    hidden.push(w_hh.cols);
                    cells.push(CellKind::of(*cell));
                    params.push(mat(a, w_ih));
                    params.push(mat(b, w_hh));
                    params.push(Param {
                        name: c,
                        shape: vec![b_ih.len()],
                        data: b_ih.clone(),
                    });
                    params.push(Param {
                        name: d,
                        shape: vec![b_hh.len()],
                        data: b_hh.clone(),
                    });
                }
                (i, FloatLayer::Linear { name, weight, bias }) if i + 1 == n => {
                    out = weight.rows;
                    params.push(mat(format!("{name}.weight"), weight));
                    params.push(Param {
                        name: format!("{name}.bias"),
                        shape: vec![bias.len()],
                        data: bias.clone(),
                    });
                }
                _ => return Err(unsupported(&format!("layer {i} (\"{}\")", layer.name()))),
            }
        }
        Ok(Params {
            arch: Arch {
                name: model.name.clone(),
                vocab: vocab_size,
                embed_dim,
                hidden,
                cells,
                out,
                layer_names: names,
            },
            params,
        })
    }

    /// Fresh parameters for `arch` (PyTorch-style uniform initialization: every
    /// recurrent tensor `U(−1/√H, 1/√H)`, as `nn.LSTM`, `nn.GRU` and `nn.RNN` do).
    pub fn init(arch: &Arch, seed: u64) -> Self {
        let mut rng = Rng(seed ^ 0x5EED);
        let mut params = Vec::new();
        let mut u = |name: String, shape: Vec<usize>, bound: f32, rng: &mut Rng| {
            let n = shape.iter().product();
            params.push(Param {
                name,
                shape,
                data: (0..n).map(|_| rng.uniform() * bound).collect(),
            });
        };
        u(
            format!("{}.weight", arch.layer_names[0]),
            vec![arch.vocab, arch.embed_dim],
            1.0,
            &mut rng,
        );
        let mut input = arch.embed_dim;
        for (k, &h) in arch.hidden.iter().enumerate() {
            let [a, b, c, d] = recurrent_names(&arch.layer_names[1 + k]);
            let bound = 1.0 / (h as f32).sqrt();
            let rows = arch.cell(k).gates() * h;
            u(a, vec![rows, input], bound, &mut rng);
            u(b, vec![rows, h], bound, &mut rng);
            u(c, vec![rows], bound, &mut rng);
            u(d, vec![rows], bound, &mut rng);
            input = h;
        }
        let last = arch.layer_names.last().unwrap();
        let bound = 1.0 / (input as f32).sqrt();
        u(
            format!("{last}.weight"),
            vec![arch.out, input],
            bound,
            &mut rng,
        );
        u(format!("{last}.bias"), vec![arch.out], bound, &mut rng);
        Params {
            arch: arch.clone(),
            params,
        }
    }

    /// Back to a [`FloatModel`] (for the float reference and `irnn quantize`).
    pub fn to_float(&self, template: &FloatModel) -> FloatModel {
        let mut m = template.clone();
        let mut it = self.params.iter();
        let mat = |p: &Param| Matrix {
            rows: p.shape[0],
            cols: p.shape[1],
            data: p.data.clone(),
        };
        for layer in m.layers.iter_mut() {
            match layer {
                FloatLayer::Embedding { weight, .. } => *weight = mat(it.next().unwrap()),
                FloatLayer::Recurrent {
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    ..
                } => {
                    *w_ih = mat(it.next().unwrap());
                    *w_hh = mat(it.next().unwrap());
                    *b_ih = it.next().unwrap().data.clone();
                    *b_hh = it.next().unwrap().data.clone();
                }
                FloatLayer::Linear { weight, bias, .. } => {
                    *weight = mat(it.next().unwrap());
                    *bias = it.next().unwrap().data.clone();
                }
            }
        }
        m
    }

    /// Number of scalar parameters.
    pub fn count(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }
}
