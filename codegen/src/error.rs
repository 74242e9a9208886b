//! Error types shared by the loaders and passes.
//!
//! Every error says *where* (file, and within it the layer, tensor or JSON field) and
//! *what* is wrong. Validation collects every problem it finds in a file before
//! reporting, so a user fixes them in one round.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found while validating a file: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Layer, tensor or field path, e.g. `layer "rnn.l0": tensor "rnn.weight_ih_l0"`.
    pub location: String,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl Problem {
    /// Creates a problem at `location`.
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            location: location.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Formats a list of problems, one per line, under the file name.
fn format_problems(file: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{}: {} problem{}",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string());
    }
    out
}

/// Failure to load a file: a float model spec, a quantized graph, weights or data.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read: {error}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// The file is not valid JSON, or does not have the expected structure.
    #[error("{}: malformed JSON at line {line}, column {column}: {message}", file.display())]
    Json {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde said.
        message: String,
    },
    /// The file is not a readable safetensors or npy container.
    #[error("{}: {message}", file.display())]
    Container {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file parsed but its content is invalid.
    #[error("{}", format_problems(file, problems))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl LoadError {
    /// Wraps a serde_json error with the file name and position.
    pub fn json(file: &Path, err: serde_json::Error) -> Self {
        let full = err.to_string();
        let position = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&position).unwrap_or(&full).to_string();
        LoadError::Json {
            file: file.to_path_buf(),
            line: err.line(),
            column: err.column(),
            message,
        }
    }

    /// An I/O error on `file`.
    pub fn io(file: &Path, error: std::io::Error) -> Self {
        LoadError::Io {
            file: file.to_path_buf(),
            error,
        }
    }

    /// A single problem in `file`.
    pub fn invalid(file: &Path, location: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError::Invalid {
            file: file.to_path_buf(),
            problems: vec![Problem::new(location, message)],
        }
    }

    /// A container-level problem in `file`.
    pub fn container(file: &Path, message: impl Into<String>) -> Self {
        LoadError::Container {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Turns a list of problems into `Ok(())` or [`LoadError::Invalid`].
pub fn check_problems(file: &Path, problems: Vec<Problem>) -> Result<(), LoadError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Invalid {
            file: file.to_path_buf(),
            problems,
        })
    }
}
