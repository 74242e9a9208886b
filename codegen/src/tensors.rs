//! Reading and writing safetensors files with typed, shape-checked access.

use crate::error::{LoadError, Problem};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A safetensors file held in memory.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// A tensor read from a file: its shape and its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major elements.
    pub data: Vec<T>,
}

impl TensorFile {
    /// Reads and parses the header of `path`.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
        SafeTensors::deserialize(&bytes).map_err(|e| {
            LoadError::container(path, format!("not a valid safetensors file: {e}"))
        })?;
        Ok(TensorFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw bytes of the file (for hashing).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn view(&self) -> Result<SafeTensors<'_>, Problem> {
        // Parsing succeeded in `open` and the bytes are immutable, so this cannot fail.
        SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Problem::new("", format!("{}: {e}", self.path.display())))
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self.view() {
            Ok(v) => v.names().into_iter().cloned().collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.view().map(|v| v.tensor(name).is_ok()).unwrap_or(false)
    }

    fn tensor_view(&self, name: &str, location: &str) -> Result<TensorView<'_>, Problem> {
        self.view()?.tensor(name).map_err(|_| {
            Problem::new(
                location,
                format!("tensor \"{name}\" is missing from {}", self.path.display()),
            )
        })
    }

    /// Reads a floating-point tensor (F32 or F64) as f32, checking that every element
    /// is finite.
    pub fn f32(&self, name: &str, location: &str) -> Result<Tensor<f32>, Problem> {
        let t = self.tensor_view(name, location)?;
        let shape = t.shape().to_vec();
        let data: Vec<f32> = match t.dtype() {
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(Problem::new(
                    location,
                    format!("tensor \"{name}\" has dtype {other:?}; expected F32 or F64"),
                ))
            }
        };
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(Problem::new(
                location,
                format!(
                    "tensor \"{name}\" holds a non-finite value ({}) at flat index {pos}",
                    data[pos]
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// Reads an I8 tensor.
    pub fn i8(&self, name: &str, location: &str) -> Result<Tensor<i8>, Problem> {
        let t = self.tensor_view(name, location)?;
        if t.dtype() != Dtype::I8 {
            return Err(Problem::new(
                location,
                format!("tensor \"{name}\" has dtype {:?}; expected I8", t.dtype()),
            ));
        }
        Ok(Tensor {
            shape: t.shape().to_vec(),
            data: t.data().iter().map(|&b| b as i8).collect(),
        })
    }

    /// Reads an I32 tensor.
    pub fn i32(&self, name: &str, location: &str) -> Result<Tensor<i32>, Problem> {
        let t = self.tensor_view(name, location)?;
        if t.dtype() != Dtype::I32 {
            return Err(Problem::new(
                location,
                format!("tensor \"{name}\" has dtype {:?}; expected I32", t.dtype()),
            ));
        }
        Ok(Tensor {
            shape: t.shape().to_vec(),
            data: t
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

/// Checks a tensor's shape against `expected`.
pub fn expect_shape<T>(
    t: &Tensor<T>,
    name: &str,
    expected: &[usize],
    location: &str,
) -> Result<(), Problem> {
    if t.shape != expected {
        return Err(Problem::new(
            location,
            format!(
                "tensor \"{name}\" has shape {:?}; expected {:?}",
                t.shape, expected
            ),
        ));
    }
    Ok(())
}

/// Builder for a safetensors file of integer and float tensors.
#[derive(Default)]
pub struct TensorWriter {
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
}

impl TensorWriter {
    /// Adds an I8 tensor.
    pub fn i8(&mut self, name: &str, shape: &[usize], data: &[i8]) {
        let bytes = data.iter().map(|&v| v as u8).collect();
        self.tensors
            .insert(name.to_string(), (Dtype::I8, shape.to_vec(), bytes));
    }

    /// Adds an I32 tensor.
    pub fn i32(&mut self, name: &str, shape: &[usize], data: &[i32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors
            .insert(name.to_string(), (Dtype::I32, shape.to_vec(), bytes));
    }

    /// Adds an F32 tensor.
    pub fn f32(&mut self, name: &str, shape: &[usize], data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors
            .insert(name.to_string(), (Dtype::F32, shape.to_vec(), bytes));
    }

    /// Serializes all tensors (sorted by name, so output is deterministic).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut views = Vec::new();
        for (name, (dtype, shape, bytes)) in &self.tensors {
            let view = TensorView::new(*dtype, shape.clone(), bytes)
                .map_err(|e| format!("tensor \"{name}\": {e}"))?;
            views.push((name.clone(), view));
        }
        safetensors::serialize(views, &None).map_err(|e| e.to_string())
    }
}
