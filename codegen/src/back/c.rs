//! Placeholder while the back end is written.
use super::{GenError, GenOptions, GeneratedFile};
use crate::ir::Program;

/// Writes the files for `program`.
pub fn write(_program: &Program, _opts: &GenOptions) -> Result<Vec<GeneratedFile>, GenError> {
    Err(GenError::Unsupported("not written yet".into()))
}
