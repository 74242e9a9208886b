//! `.npy` input data (token ids or features) and output arrays.

use crate::error::LoadError;
use std::path::Path;

/// Sequences read from a `.npy` file, always as `[n, t, ...]`.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqData {
    /// Token ids `[n, t]`.
    Tokens {
        /// Number of sequences.
        n: usize,
        /// Steps per sequence.
        t: usize,
        /// `n * t` ids.
        data: Vec<i64>,
    },
    /// Float features `[n, t, f]`.
    FeaturesF32 {
        /// Number of sequences.
        n: usize,
        /// Steps per sequence.
        t: usize,
        /// Width.
        f: usize,
        /// `n * t * f` values, all finite.
        data: Vec<f32>,
    },
    /// Already-quantized int8 features `[n, t, f]`.
    FeaturesI8 {
        /// Number of sequences.
        n: usize,
        /// Steps per sequence.
        t: usize,
        /// Width.
        f: usize,
        /// `n * t * f` codes.
        data: Vec<i8>,
    },
}

impl SeqData {
    /// `(n, t)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            SeqData::Tokens { n, t, .. }
            | SeqData::FeaturesF32 { n, t, .. }
            | SeqData::FeaturesI8 { n, t, .. } => (*n, *t),
        }
    }
}

/// A data file and whether its leading `n` axis was absent (`[T]` or `[T, F]`).
#[derive(Clone, Debug, PartialEq)]
pub struct DataFile {
    /// The sequences.
    pub data: SeqData,
    /// True when the file had no sequence axis; outputs then drop it too.
    pub single: bool,
}

fn open(path: &Path) -> Result<npyz::NpyFile<std::io::BufReader<std::fs::File>>, LoadError> {
    let len = crate::limits::check_input_file(path).map_err(|m| LoadError::container(path, m))?;
    let file = std::fs::File::open(path).map_err(|e| LoadError::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    check_npy_header(&mut reader, len).map_err(|m| LoadError::container(path, m))?;
    use std::io::Seek;
    reader.rewind().map_err(|e| LoadError::io(path, e))?;
    npyz::NpyFile::new(reader)
        .map_err(|e| LoadError::container(path, format!("not a readable .npy file: {e}")))
}

/// Checks a `.npy` header before the reader sees it: the magic, the header length,
/// and that the shape's element count (a checked product) times the item size is
/// exactly the data the file holds, so no size from the header is ever allocated
/// for data that is not there. `len` is the file's size.
fn check_npy_header(r: &mut impl std::io::Read, len: u64) -> Result<(), String> {
    let mut prefix = [0u8; 12];
    let got = read_up_to(r, &mut prefix).map_err(|e| format!("cannot read: {e}"))?;
    if got < 10 || &prefix[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (it does not start with the .npy magic \\x93NUMPY)".into());
    }
    let (start, header_len) = match prefix[6] {
        1 => (10u64, u64::from(u16::from_le_bytes([prefix[8], prefix[9]]))),
        2 | 3 if got == 12 => (
            12,
            u64::from(u32::from_le_bytes([
                prefix[8], prefix[9], prefix[10], prefix[11],
            ])),
        ),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let data_at = start + header_len;
    if data_at > len || header_len > 1 << 20 {
        return Err(format!(
            "the .npy header says it is {header_len} bytes long but the file has {len} bytes (truncated file?)"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    // The bytes of the header already read with the prefix (none for version 1's
    // 10-byte prefix when the file is shorter; never more than the header).
    let skip = (got as u64).min(start) as usize;
    let already = &prefix[skip..got];
    let already = &already[..already.len().min(header.len())];
    header[..already.len()].copy_from_slice(already);
    read_up_to(r, &mut header[already.len()..]).map_err(|e| format!("cannot read: {e}"))?;
    let header = String::from_utf8_lossy(&header);
    check_nesting(&header)?;
    // The header is a Python dict literal; only what the size check needs is read
    // here (npyz parses it fully afterwards).
    let (Some(shape), Some(item)) = (dict_value(&header, "shape"), dict_value(&header, "descr"))
    else {
        return Err("the .npy header has no 'shape' or 'descr' entry".into());
    };
    let dims: Vec<u64> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("the .npy shape {shape} is not a tuple of sizes"))?;
    let item = item.trim_matches(|c| c == '\'' || c == '"');
    let item_size = item
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|n| n.parse::<u64>().ok());
    let Some(item_size) = item_size else {
        return Ok(()); // a dtype the loaders refuse anyway, with their own message
    };
    let need = dims
        .iter()
        .try_fold(item_size, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("the shape {dims:?} has more elements than can be stored"))?;
    let have = len - data_at;
    if need > have {
        return Err(format!(
            "truncated: the header declares shape {dims:?} of '{item}' ({need} bytes of data) but the file holds {have} bytes of data"
        ));
    }
    if need < have {
        return Err(format!(
            "the header declares shape {dims:?} of '{item}' ({need} bytes of data) but the file holds {have} bytes of data after it"
        ));
    }
    Ok(())
}

/// Deepest bracket nesting a `.npy` header may have (a dict holding a structured
/// dtype's list of tuples of sub-array shapes).
const MAX_HEADER_NESTING: usize = 4;

/// Refuses a header whose brackets (outside quotes) are unbalanced or nest deeper
/// than [`MAX_HEADER_NESTING`]: the header parser npyz uses backtracks exponentially
/// on deeply nested, unclosed brackets (found by fuzzing: 100 `[` hang it).
fn check_nesting(header: &str) -> Result<(), String> {
    let mut stack = Vec::new();
    let mut quote = None;
    for c in header.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                stack.push(c);
                if stack.len() > MAX_HEADER_NESTING {
                    return Err(format!(
                        "the .npy header nests brackets more than {MAX_HEADER_NESTING} deep; it is not a header numpy writes"
                    ));
                }
            }
            (None, ')' | ']' | '}') => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err("the .npy header has unbalanced brackets".into());
                }
            }
            _ => {}
        }
    }
    if !stack.is_empty() || quote.is_some() {
        return Err("the .npy header has an unclosed bracket or quote".into());
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The text of `'key': VALUE` in a `.npy` header dict (a tuple or a quoted string).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let end = match rest.chars().next()? {
        '(' => rest.find(')')? + 1,
        q @ ('\'' | '"') => rest[1..].find(q)? + 2,
        _ => rest.find([',', '}'])?,
    };
    Some(&rest[..end])
}

fn type_str(npy: &npyz::NpyFile<std::io::BufReader<std::fs::File>>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        npyz::DType::Record(_) => "a structured (record) dtype".to_string(),
        npyz::DType::Array(..) => "a sub-array dtype".to_string(),
    }
}

/// Reads token ids (`int32`/`int64`, `[N, T]` or `[T]`) or features (`float32` or
/// `int8`, `[N, T, F]` or `[T, F]`).
pub fn read_data(path: &Path) -> Result<DataFile, LoadError> {
    let npy = open(path)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let ts = type_str(&npy);
    if shape.is_empty() || shape.contains(&0) {
        return Err(LoadError::container(
            path,
            format!("the array is empty (shape {shape:?}); it needs at least one step"),
        ));
    }
    let limits = crate::limits::Limits::get();
    // The steps axis: [T] or [N, T] token ids, [T, F] or [N, T, F] features.
    let features = matches!(&ts[1..], "f4" | "i1");
    let steps = match (features, shape.as_slice()) {
        (false, [t]) | (false, [_, t]) | (true, [t, _]) | (true, [_, t, _]) => *t,
        _ => 0,
    };
    if let Err(e) = limits.steps().check(steps as u64) {
        return Err(LoadError::container(path, format!("a sequence of {e}")));
    }
    if features && shape.len() >= 2 {
        if let Err(e) = limits.width().check(shape[shape.len() - 1] as u64) {
            return Err(LoadError::container(path, format!("feature width {e}")));
        }
    }
    if npy.order() == npyz::Order::Fortran && shape.len() > 1 {
        return Err(LoadError::container(
            path,
            "the array is stored in Fortran order; save it C-contiguous (np.ascontiguousarray)",
        ));
    }
    let kind = &ts[1..];
    let bad = |what: &str| LoadError::container(path, what.to_string());
    match kind {
        "i4" | "i8" => {
            let data: Vec<i64> = if kind == "i4" {
                npy.into_vec::<i32>()
                    .map_err(|e| bad(&format!("cannot read int32 data: {e}")))?
                    .into_iter()
                    .map(i64::from)
                    .collect()
            } else {
                npy.into_vec::<i64>()
                    .map_err(|e| bad(&format!("cannot read int64 data: {e}")))?
            };
            match shape.as_slice() {
                [t] => Ok(DataFile {
                    data: SeqData::Tokens { n: 1, t: *t, data },
                    single: true,
                }),
                [n, t] => Ok(DataFile {
                    data: SeqData::Tokens { n: *n, t: *t, data },
                    single: false,
                }),
                _ => Err(bad(&format!(
                    "token ids must have shape [N, T] or [T]; this array has shape {shape:?}"
                ))),
            }
        }
        "f4" | "i1" => {
            let (n, t, f, single) = match shape.as_slice() {
                [t, f] => (1, *t, *f, true),
                [n, t, f] => (*n, *t, *f, false),
                _ => {
                    return Err(bad(&format!(
                    "features must have shape [N, T, F] or [T, F]; this array has shape {shape:?}"
                )))
                }
            };
            if kind == "f4" {
                let data = npy
                    .into_vec::<f32>()
                    .map_err(|e| bad(&format!("cannot read float32 data: {e}")))?;
                if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
                    return Err(bad(&format!(
                        "feature value at flat index {pos} is not finite ({})",
                        data[pos]
                    )));
                }
                Ok(DataFile {
                    data: SeqData::FeaturesF32 { n, t, f, data },
                    single,
                })
            } else {
                let data = npy
                    .into_vec::<i8>()
                    .map_err(|e| bad(&format!("cannot read int8 data: {e}")))?;
                Ok(DataFile {
                    data: SeqData::FeaturesI8 { n, t, f, data },
                    single,
                })
            }
        }
        _ => Err(bad(&format!(
            "has dtype '{ts}'; expected int32/int64 token ids or float32/int8 features"
        ))),
    }
}

/// Reads integer class labels `[N]` (int32 or int64).
pub fn read_labels(path: &Path) -> Result<Vec<i64>, LoadError> {
    let npy = open(path)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let ts = type_str(&npy);
    if shape.len() != 1 || shape[0] == 0 {
        return Err(LoadError::container(
            path,
            format!("labels must be a non-empty 1-D array [N]; this array has shape {shape:?}"),
        ));
    }
    let err = |e: std::io::Error| LoadError::container(path, format!("cannot read labels: {e}"));
    match &ts[1..] {
        "i4" => Ok(npy
            .into_vec::<i32>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect()),
        "i8" => npy.into_vec::<i64>().map_err(err),
        _ => Err(LoadError::container(
            path,
            format!("labels have dtype '{ts}'; expected int32 or int64"),
        )),
    }
}

/// Serializes an int32 array of the given shape as `.npy` bytes.
pub fn i32_npy_bytes(shape: &[usize], data: &[i32]) -> std::io::Result<Vec<u8>> {
    npy_bytes(shape, data)
}

/// Serializes a float32 array of the given shape as `.npy` bytes.
pub fn f32_npy_bytes(shape: &[usize], data: &[f32]) -> std::io::Result<Vec<u8>> {
    npy_bytes(shape, data)
}

/// Starts a streamed int32 `.npy` of the given shape on `w`: push the values in
/// order (`extend`), then `finish` (which checks that the count matched the shape).
pub fn i32_npy_writer<W: std::io::Write>(
    w: W,
    shape: &[usize],
) -> std::io::Result<npyz::NpyWriter<i32, W>> {
    let shape_u64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    use npyz::WriterBuilder;
    npyz::WriteOptions::<i32>::new()
        .default_dtype()
        .shape(&shape_u64)
        .writer(w)
        .begin_nd()
}

fn npy_bytes<T: npyz::AutoSerialize + Copy>(
    shape: &[usize],
    data: &[T],
) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let shape_u64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(&shape_u64)
            .writer(&mut buf)
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
    }
    Ok(buf)
}
