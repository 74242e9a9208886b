//! Flash and RAM of the generated C for one target (`irnn inspect --target`, and a
//! comment block in the header of the Cortex-M targets).
//!
//! Read off the generated C itself, so that the figures are those of the code a user
//! compiles:
//!
//! - **constants** (exact): the sum of the `static const` arrays of the source —
//!   weights, biases, requantization and PWL tables; each is an object of that size
//!   in `.rodata`, except small ones a compiler folds into the code;
//! - **state** (exact): `sizeof(NAME_state_t)`, the struct's members laid out with
//!   their natural alignment;
//! - **step scratch**: the local arrays on the deepest call path of `NAME_step`; the
//!   compiler's frames (saved registers, spills) come on top;
//! - **run scratch**: `NAME_RUN_STACK_BYTES`, the chunk buffers `NAME_run` adds;
//! - **code** (estimate): per layer kind and kernel family, fitted to `arm-none-eabi-gcc
//!   -O2` objects of 12 models (LSTM, GRU, Elman RNN, embeddings; within
//!   [`CODE_MARGIN`] of them, checked by tests/cortex_m.rs).

use super::targets::CKernels;
use super::{GenError, GenOptions, Lang, Precision, Target, Unroll};
use crate::ir::{LayerIr, Program};
use std::collections::BTreeMap;

/// Relative margin of [`MemoryReport::code_bytes`] against the compiled object.
pub const CODE_MARGIN: f64 = 0.25;

/// Flash and RAM of one model's generated C on one target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryReport {
    /// Target name.
    pub target: &'static str,
    /// Bytes of constant arrays (exact).
    pub const_bytes: usize,
    /// Bytes of code (estimate, within [`CODE_MARGIN`] at `-O2` on Cortex-M).
    pub code_bytes: usize,
    /// `sizeof(NAME_state_t)` (exact).
    pub state_bytes: usize,
    /// Local arrays on the deepest call path of `NAME_step`.
    pub step_scratch_bytes: usize,
    /// What `NAME_run` puts on the stack on top of a step (its chunk buffers).
    pub run_scratch_bytes: usize,
}

impl MemoryReport {
    /// Flash: code and constants.
    pub fn flash_bytes(&self) -> usize {
        self.code_bytes + self.const_bytes
    }

    /// RAM for stepping: the state and the step's scratch.
    pub fn ram_bytes(&self) -> usize {
        self.state_bytes + self.step_scratch_bytes
    }

    /// The report as text lines (also the header's comment block), for the C prefix
    /// `p` of the generated code.
    pub fn lines(&self, p: &str) -> Vec<String> {
        let pu = super::names::upper(p);
        let pct = (CODE_MARGIN * 100.0).round() as u32;
        vec![
            format!("flash {:>9} bytes", self.flash_bytes()),
            format!(
                "  constants {:>9} (weights, biases, requantization and PWL tables)",
                self.const_bytes
            ),
            format!("  code      {:>9} (estimate, +-{pct}%)", self.code_bytes),
            format!("RAM   {:>9} bytes for {p}_step", self.ram_bytes()),
            format!(
                "  state     {:>9} (sizeof({p}_state_t), the caller's)",
                self.state_bytes
            ),
            format!(
                "  scratch   {:>9} (local arrays on the stack; compiler frames on top)",
                self.step_scratch_bytes
            ),
            format!(
                "{p}_run: {} more bytes of stack (chunk buffers; none with {pu}_RUN_STEPWISE)",
                self.run_scratch_bytes
            ),
        ]
    }
}

/// The memory report of `program`'s C for `target` (the int8 model).
pub fn report(program: &Program, target: Target) -> Result<MemoryReport, GenError> {
    let opts = GenOptions {
        lang: Lang::C,
        target,
        unroll: Unroll::None,
        precision: Precision::Int8,
        fusion: super::Fusion::Auto,
    };
    let files = super::generate(program, &opts)?;
    let source = files
        .iter()
        .find(|f| f.name.ends_with(".c"))
        .map(|f| f.contents.as_str())
        .unwrap_or_default();
    let header = files
        .iter()
        .find(|f| f.name.ends_with(".h"))
        .map(|f| f.contents.as_str())
        .unwrap_or_default();
    Ok(from_source(program, target, header, source))
}

/// The report from the generated header and source.
pub(crate) fn from_source(
    program: &Program,
    target: Target,
    header: &str,
    source: &str,
) -> MemoryReport {
    let p = super::names::sanitize(&program.name);
    let pu = super::names::upper(&p);
    MemoryReport {
        target: target.name(),
        const_bytes: const_bytes(source),
        code_bytes: code_estimate(program, target),
        state_bytes: state_size(header, &p),
        step_scratch_bytes: stack_of(source, &format!("{p}_step")),
        run_scratch_bytes: run_stack(header, &pu),
    }
}

/// Bytes of a C integer type of the generated code.
fn type_bytes(t: &str) -> Option<usize> {
    match t {
        "int8_t" | "uint8_t" => Some(1),
        "int16_t" | "uint16_t" => Some(2),
        "int32_t" | "uint32_t" => Some(4),
        "int64_t" | "uint64_t" => Some(8),
        _ => None,
    }
}

/// `(type bytes, count)` of a declaration `TYPE NAME[N]...[M]` at the start of `decl`.
fn array_decl(decl: &str) -> Option<(usize, usize)> {
    array_decl_named(decl).map(|(_, s, n)| (s, n))
}

/// `(name, type bytes, count)` of a declaration `TYPE NAME[N]...[M]`.
fn array_decl_named(decl: &str) -> Option<(&str, usize, usize)> {
    let mut words = decl.split_whitespace();
    let size = type_bytes(words.next()?)?;
    let mut rest = words.next()?;
    let name = &rest[..rest.find('[')?];
    rest = &rest[rest.find('[')?..];
    let mut n = 1usize;
    while let Some(dims) = rest.strip_prefix('[') {
        let close = dims.find(']')?;
        n = n.checked_mul(dims[..close].parse().ok()?)?;
        rest = &dims[close + 1..];
    }
    Some((name, size, n))
}

/// `(name, bytes)` of every `static const` array of a generated C source.
pub fn const_arrays(source: &str) -> Vec<(String, usize)> {
    source
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("static const "))
        .filter_map(array_decl_named)
        .map(|(name, s, n)| (name.to_string(), s * n))
        .collect()
}

/// The sum of the `static const` arrays of a source.
fn const_bytes(source: &str) -> usize {
    const_arrays(source).iter().map(|(_, b)| b).sum()
}

/// `sizeof(p_state_t)` from the header's struct members (natural alignment).
fn state_size(header: &str, p: &str) -> usize {
    let end = format!("}} {p}_state_t;");
    let mut size = 0usize;
    let mut align = 1usize;
    let mut inside = false;
    for line in header.lines() {
        if line.starts_with("typedef struct {") {
            inside = true;
            size = 0;
            align = 1;
        } else if inside && line.trim() == end {
            break;
        } else if inside {
            if let Some((s, n)) = array_decl(line.trim()) {
                size = size.next_multiple_of(s) + s * n;
                align = align.max(s);
            }
        }
    }
    size.next_multiple_of(align)
}

/// `NAME_RUN_STACK_BYTES` of the header (0 without it).
fn run_stack(header: &str, pu: &str) -> usize {
    let key = format!("#define {pu}_RUN_STACK_BYTES ");
    header
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The local arrays of `function` plus the deepest of the functions it calls, over the
/// function definitions of the source (a definition starts at column 0 and ends at a
/// `}` at column 0; locals are `TYPE NAME[N];` lines inside, not `static`).
fn stack_of(source: &str, function: &str) -> usize {
    let mut bodies: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut current: Option<(String, usize, String)> = None;
    for line in source.lines() {
        if let Some((name, locals, body)) = current.as_mut() {
            if line == "}" {
                bodies.insert(std::mem::take(name), (*locals, std::mem::take(body)));
                current = None;
                continue;
            }
            let t = line.trim_start();
            if line.starts_with(' ') && !t.starts_with("static") && t.ends_with(';') {
                if let Some((s, n)) = array_decl(t) {
                    *locals += s * n;
                }
            }
            body.push_str(line);
            body.push('\n');
        } else if !line.starts_with(' ') && !line.starts_with('#') && line.contains('(') {
            // `[static [inline]] TYPE NAME(...`: the word before the first '('.
            // Comments and initializers have other characters before the '('.
            let head = &line[..line.find('(').unwrap_or(0)];
            let words: Vec<&str> = head.split_whitespace().collect();
            let ident = |w: &&str| {
                w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*')
            };
            if words.len() >= 2 && words.iter().all(ident) && !line.trim_end().ends_with(';') {
                let name = words[words.len() - 1].trim_start_matches('*');
                current = Some((name.to_string(), 0, String::new()));
            }
        }
    }
    fn deepest(f: &str, bodies: &BTreeMap<String, (usize, String)>, depth: usize) -> usize {
        let Some((locals, body)) = bodies.get(f) else {
            return 0;
        };
        if depth > 16 {
            return *locals;
        }
        let callees = bodies
            .keys()
            .filter(|g| g.as_str() != f && body.contains(&format!("{g}(")))
            .map(|g| deepest(g, bodies, depth + 1))
            .max()
            .unwrap_or(0);
        locals + callees
    }
    deepest(function, &bodies, 0)
}

/// Code bytes per layer kind and kernel family at `-O2` for Cortex-M (least squares
/// over 12 models, rounded): `(base, lstm, gru, rnn, embedding, per PWL table)`.
fn code_weights(kernels: CKernels) -> [usize; 6] {
    match kernels {
        CKernels::ArmDsp => [400, 1940, 3920, 2170, 280, 170],
        CKernels::Mve => [400, 2040, 3810, 2050, 310, 200],
        // Portable C (Thumb-1 figures; other portable targets are of the same order)
        // and the other families.
        _ => [400, 1780, 4470, 1970, 320, 20],
    }
}

/// Estimated code bytes of `program`'s C on `target`.
pub fn code_estimate(program: &Program, target: Target) -> usize {
    let [base, lstm, gru, rnn, emb, table] = code_weights(target.info().c_kernels);
    let mut bytes = base + table * program.used_tables().len();
    for l in &program.layers {
        bytes += match l {
            LayerIr::Embedding(_) => emb,
            LayerIr::Linear(_) => 0,
            LayerIr::Cell(c) => match c.kind {
                crate::ir::ops::CellKind::Lstm => lstm,
                crate::ir::ops::CellKind::Gru => gru,
                _ => rnn,
            },
        };
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_read() {
        let src = "/* one (with a parenthesis) */\nstatic const int8_t m_w[12] M_ALIGN = {\n};\n\
                   static const int32_t m_b[3] = {1, 2, 3};\n\
                   static const int16_t m_e[6][3] = {{0}};\n\
                   static void m_cell(int8_t *h)\n{\n    int16_t pre[8];\n    int32_t k;\n    static const int32_t t[4] = {0};\n}\n\
                   void m_step(m_state_t *s)\n{\n    int32_t acc[5];\n    m_cell(s->h);\n}\n";
        assert_eq!(const_bytes(src), 12 + 12 + 36 + 16);
        assert_eq!(stack_of(src, "m_step"), 20 + 16);
        let header = "typedef struct {\n    int8_t a[3];\n    int16_t c[3];\n    int8_t b[1];\n} m_state_t;\n\
                      #define M_RUN_STACK_BYTES 320\n";
        // 3 + pad 1 + 6 + 1 = 11, rounded up to 12.
        assert_eq!(state_size(header, "m"), 12);
        assert_eq!(run_stack(header, "M"), 320);
    }
}
