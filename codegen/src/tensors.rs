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
    /// The file must be a regular file within the size limit
    /// ([`crate::limits`]); its header is checked here, in the project's words
    /// (file and tensor named, with checked arithmetic), before the safetensors crate
    /// sees it.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let bytes = crate::limits::read_input_file(path)?;
        check_header(&bytes).map_err(|m| {
            LoadError::container(path, format!("not a valid safetensors file: {m}"))
        })?;
        SafeTensors::deserialize(&bytes).map_err(|_| {
            LoadError::container(
                path,
                "not a valid safetensors file: its header does not describe its data",
            )
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

/// Largest header the safetensors format allows.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes per element of a safetensors dtype name (`None`: unknown).
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Validates a safetensors header against the file: the length field, the JSON,
/// each tensor's dtype, shape (checked product) and data offsets, and that the
/// tensors' data exactly tile the rest of the file. Returns what is wrong, naming the
/// tensor.
pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    let total = bytes.len() as u64;
    let Some(len_field) = bytes.get(..8) else {
        return Err(format!(
            "the file has {total} bytes; a safetensors file starts with an 8-byte header length"
        ));
    };
    let n = u64::from_le_bytes(len_field.try_into().unwrap_or([0; 8]));
    if n > MAX_HEADER_BYTES {
        return Err(format!(
            "the header length field says {n} bytes, more than the {MAX_HEADER_BYTES} the format allows"
        ));
    }
    if n > total - 8 {
        return Err(format!(
            "the header length field says {n} bytes but only {} follow (truncated file?)",
            total - 8
        ));
    }
    let header = &bytes[8..8 + n as usize];
    let text =
        std::str::from_utf8(header).map_err(|_| "the header is not UTF-8 text".to_string())?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the header is not valid JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("the header is not a JSON object".into());
    };
    let data_len = total - 8 - n;
    let mut spans = Vec::new();
    for (name, entry) in &map {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: String| format!("tensor \"{name}\": {what}");
        let dtype = entry.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<u64>> = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let offsets: Option<Vec<u64>> = entry
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let (Some(dtype), Some(shape), Some(offsets)) = (dtype, shape, offsets) else {
            return Err(bad(
                "its header entry needs \"dtype\" (a string), \"shape\" (a list of sizes) and \"data_offsets\" ([start, end])".into(),
            ));
        };
        let [start, end] = offsets[..] else {
            return Err(bad(format!(
                "data_offsets has {} numbers; expected [start, end]",
                offsets.len()
            )));
        };
        let size = dtype_size(dtype).ok_or_else(|| bad(format!("unknown dtype \"{dtype}\"")))?;
        let need = shape
            .iter()
            .try_fold(size, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                bad(format!(
                    "shape {shape:?} has more elements than can be stored"
                ))
            })?;
        if start > end || end > data_len {
            return Err(bad(format!(
                "its data_offsets [{start}, {end}] lie outside the {data_len} bytes of data in the file (truncated file?)"
            )));
        }
        if end - start != need {
            return Err(bad(format!(
                "shape {shape:?} of dtype {dtype} needs {need} bytes but data_offsets [{start}, {end}] hold {}",
                end - start
            )));
        }
        spans.push((start, end, name));
    }
    spans.sort();
    let mut at = 0;
    for (start, end, name) in &spans {
        if *start != at {
            return Err(format!(
                "tensor \"{name}\": its data starts at byte {start} but the previous tensor ends at {at} (overlapping or gapped data)"
            ));
        }
        at = *end;
    }
    if at != data_len {
        return Err(format!(
            "the tensors' data ends at byte {at} but the file holds {data_len} bytes of data"
        ));
    }
    Ok(())
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

#[cfg(test)]
mod header_tests {
    use super::*;

    /// A safetensors file from a raw header and `data` bytes of data.
    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    fn err(header: &str, data: usize) -> String {
        check_header(&file(header, data)).unwrap_err()
    }

    #[test]
    fn headers_are_checked_in_our_words() {
        let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert_eq!(check_header(&file(ok, 8)), Ok(()));
        assert!(
            err(ok, 4).contains("tensor \"a\": its data_offsets [0, 8] lie outside the 4 bytes")
        );
        assert!(err(ok, 12).contains("ends at byte 8 but the file holds 12"));
        let wrap = r#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#;
        assert!(
            err(wrap, 0).contains("tensor \"w\": shape [4611686018427387904, 4] has more elements")
        );
        // An end offset whose sum with the header length wraps (what the crate adds).
        let far = format!(
            r#"{{"x":{{"dtype":"U8","shape":[{e}],"data_offsets":[0,{e}]}}}}"#,
            e = u64::MAX - 100
        );
        assert!(err(&far, 0).contains("tensor \"x\": its data_offsets"));
        let size = r#"{"b":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(err(size, 8)
            .contains("shape [3] of dtype F32 needs 12 bytes but data_offsets [0, 8] hold 8"));
        let q = r#"{"c":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#;
        assert!(err(q, 1).contains("unknown dtype \"Q4\""));
        let overlap = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
        assert!(err(overlap, 6).contains("tensor \"b\": its data starts at byte 2"));
        assert!(err("[1,2]", 0).contains("not a JSON object"));
        assert!(err("{", 0).contains("not valid JSON"));
        assert!(check_header(b"abc").unwrap_err().contains("3 bytes"));
        let mut huge = (1u64 << 40).to_le_bytes().to_vec();
        huge.extend(b"{}");
        assert!(check_header(&huge)
            .unwrap_err()
            .contains("more than the 100000000"));
        let mut short = 100u64.to_le_bytes().to_vec();
        short.extend(b"{}");
        assert!(check_header(&short).unwrap_err().contains("only 2 follow"));
    }
}
