//! Resource limits on what a model or data file may ask for, checked before anything
//! is allocated from a size the file states.
//!
//! Every size read from a file (shapes, layer counts, widths, vocabulary, sequence
//! lengths, file sizes) is checked against a limit, with checked arithmetic for
//! products, before a buffer of that size exists; a file beyond a limit is refused
//! with a message naming the limit and the environment variable that raises it. Only
//! regular files are read (a device, FIFO or directory given as a model, tensor or
//! data file is refused before it is opened for reading).
//!
//! The defaults are far above any model this compiler targets (the shipped char LM
//! has 3 layers of width ≤ 256) and far below what exhausts a machine. Each can be set
//! by an environment variable, read once per process ([`Limits::get`]):
//!
//! | limit | variable | default |
//! |---|---|---|
//! | bytes of one input file (spec, graph, tensors, data) | `IRNN_MAX_FILE_BYTES` | 4 GiB |
//! | layers (after expanding `num_layers`) | `IRNN_MAX_LAYERS` | 1024 |
//! | width of any layer or input (hidden, input, output, embedding dim) | `IRNN_MAX_WIDTH` | 65536 |
//! | vocabulary (token ids, embedding rows) | `IRNN_MAX_VOCAB` | 16777216 |
//! | steps per sequence in a data file | `IRNN_MAX_STEPS` | 100000000 |
//! | parameters of a model (all weights) | `IRNN_MAX_PARAMETERS` | 1000000000 |

use std::path::Path;

/// The limits in force (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one input file.
    pub max_file_bytes: u64,
    /// Layers of a model.
    pub max_layers: usize,
    /// Width of any layer or input.
    pub max_width: usize,
    /// Vocabulary size.
    pub max_vocab: usize,
    /// Steps per sequence in a data file.
    pub max_steps: usize,
    /// Parameters of a model.
    pub max_parameters: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 4 << 30,
            max_layers: 1024,
            max_width: 65536,
            max_vocab: 1 << 24,
            max_steps: 100_000_000,
            max_parameters: 1_000_000_000,
        }
    }
}

/// One limit: its description, its variable and its value.
pub struct Limit {
    /// What it bounds, e.g. "layers".
    pub what: &'static str,
    /// The environment variable that sets it.
    pub var: &'static str,
    /// Its value.
    pub value: u64,
}

impl Limit {
    /// "`n` exceeds the limit of N layers (IRNN_MAX_LAYERS)".
    pub fn exceeded(&self, n: impl std::fmt::Display) -> String {
        format!(
            "{n} exceeds the limit of {} {} (set {} to raise it)",
            self.value, self.what, self.var
        )
    }

    /// `Err(message)` when `n` is above the limit.
    pub fn check(&self, n: u64) -> Result<(), String> {
        if n > self.value {
            Err(self.exceeded(n))
        } else {
            Ok(())
        }
    }
}

impl Limits {
    /// The limits of this process: the defaults, each overridden by its environment
    /// variable when that is set to a number (read once).
    pub fn get() -> &'static Limits {
        static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();
        LIMITS.get_or_init(|| Limits::from_vars(|v| std::env::var(v).ok()))
    }

    /// The defaults overridden by `var(name)` where it parses as a number (an
    /// unparsable value keeps the default).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Limits {
        let d = Limits::default();
        let num = |name: &str, default: u64| {
            var(name)
                .and_then(|v| v.trim().replace('_', "").parse::<u64>().ok())
                .unwrap_or(default)
        };
        let size = |name: &str, default: usize| {
            usize::try_from(num(name, default as u64)).unwrap_or(usize::MAX)
        };
        Limits {
            max_file_bytes: num("IRNN_MAX_FILE_BYTES", d.max_file_bytes),
            max_layers: size("IRNN_MAX_LAYERS", d.max_layers),
            max_width: size("IRNN_MAX_WIDTH", d.max_width),
            max_vocab: size("IRNN_MAX_VOCAB", d.max_vocab),
            max_steps: size("IRNN_MAX_STEPS", d.max_steps),
            max_parameters: num("IRNN_MAX_PARAMETERS", d.max_parameters),
        }
    }

    /// The file size limit.
    pub fn file_bytes(&self) -> Limit {
        Limit {
            what: "bytes per input file",
            var: "IRNN_MAX_FILE_BYTES",
            value: self.max_file_bytes,
        }
    }

    /// The layer count limit.
    pub fn layers(&self) -> Limit {
        Limit {
            what: "layers",
            var: "IRNN_MAX_LAYERS",
            value: self.max_layers as u64,
        }
    }

    /// The width limit.
    pub fn width(&self) -> Limit {
        Limit {
            what: "units of width",
            var: "IRNN_MAX_WIDTH",
            value: self.max_width as u64,
        }
    }

    /// The vocabulary limit.
    pub fn vocab(&self) -> Limit {
        Limit {
            what: "token ids of vocabulary",
            var: "IRNN_MAX_VOCAB",
            value: self.max_vocab as u64,
        }
    }

    /// The sequence length limit.
    pub fn steps(&self) -> Limit {
        Limit {
            what: "steps per sequence",
            var: "IRNN_MAX_STEPS",
            value: self.max_steps as u64,
        }
    }

    /// The parameter count limit.
    pub fn parameters(&self) -> Limit {
        Limit {
            what: "parameters",
            var: "IRNN_MAX_PARAMETERS",
            value: self.max_parameters,
        }
    }
}

/// The product of `dims`, or `None` when it overflows `usize`.
pub fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Checks that `path` is a regular file (after following links) within the file size
/// limit; returns its size. The message says what the path is instead.
pub fn check_input_file(path: &Path) -> Result<u64, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if is_fifo(&ft) {
            "a FIFO (named pipe)"
        } else {
            "a device or other special file"
        };
        return Err(format!(
            "is {what}, not a regular file; irnn reads only regular files"
        ));
    }
    Limits::get()
        .file_bytes()
        .check(meta.len())
        .map_err(|e| format!("its size, {e}"))?;
    Ok(meta.len())
}

#[cfg(unix)]
fn is_fifo(ft: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}

/// Reads a whole input file after [`check_input_file`], never more than the size it
/// had when checked plus one byte (a file that grows meanwhile is refused).
pub fn read_input_file(path: &Path) -> Result<Vec<u8>, crate::error::LoadError> {
    use std::io::Read;
    let len = check_input_file(path).map_err(|m| crate::error::LoadError::container(path, m))?;
    let file = std::fs::File::open(path).map_err(|e| crate::error::LoadError::io(path, e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| crate::error::LoadError::io(path, e))?;
    if bytes.len() as u64 > len {
        return Err(crate::error::LoadError::container(
            path,
            "the file grew while it was read",
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_defaults() {
        let l = Limits::from_vars(|v| match v {
            "IRNN_MAX_LAYERS" => Some("7".into()),
            "IRNN_MAX_WIDTH" => Some("1_000".into()),
            "IRNN_MAX_VOCAB" => Some("lots".into()),
            _ => None,
        });
        assert_eq!(l.max_layers, 7);
        assert_eq!(l.max_width, 1000);
        assert_eq!(l.max_vocab, Limits::default().max_vocab);
        assert_eq!(
            l.layers().check(8).unwrap_err(),
            "8 exceeds the limit of 7 layers (set IRNN_MAX_LAYERS to raise it)"
        );
    }

    #[test]
    fn special_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = check_input_file(d.path()).unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        #[cfg(unix)]
        {
            let e = check_input_file(Path::new("/dev/zero")).unwrap_err();
            assert!(e.contains("device"), "{e}");
        }
    }

    #[test]
    fn products_are_checked() {
        assert_eq!(product(&[3, 4]), Some(12));
        assert_eq!(product(&[usize::MAX, 2]), None);
        assert_eq!(product(&[]), Some(1));
    }
}
