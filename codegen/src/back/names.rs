//! The one identifier sanitizer: model and layer names from a file become legal,
//! non-keyword, unique identifiers in both C and Rust. Nothing from a model file
//! reaches generated code except through here (names) or as numeric literals; comments
//! that mention a name use [`comment_safe`].

use std::collections::BTreeSet;

/// Keywords and reserved words of C99/C11/C23 and Rust 2021 (strict and reserved),
/// plus names the generated code itself uses.
const RESERVED: &[&str] = &[
    // C
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "bool",
    "true",
    "false",
    "alignas",
    "alignof",
    "nullptr",
    "static_assert",
    "thread_local",
    "typeof",
    "typeof_unqual",
    "constexpr",
    "main",
    "errno",
    "assert",
    "NULL",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "size_t",
    // Rust
    "as",
    "async",
    "await",
    "crate",
    "dyn",
    "fn",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "self",
    "Self",
    "super",
    "trait",
    "type",
    "unsafe",
    "use",
    "where",
    "abstract",
    "become",
    "box",
    "final",
    "macro",
    "override",
    "priv",
    "try",
    "unsized",
    "virtual",
    "yield",
    "gen",
    "core",
    "std",
    "alloc",
];

/// Turns arbitrary text into a lower-case snake identifier that is legal in C and Rust:
/// only `[a-z0-9_]`, not starting with a digit or an underscore, not a keyword, never
/// empty. Different inputs may map to the same identifier; [`NameTable`] makes them
/// unique.
pub fn sanitize(raw: &str) -> String {
    let mut out = String::new();
    let mut last_underscore = false;
    for ch in raw.chars() {
        let c = ch.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
            last_underscore = false;
        } else if !last_underscore && !out.is_empty() {
            out.push('_');
            last_underscore = true;
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("model");
    }
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert_str(0, "m_");
    }
    if out.len() > 48 {
        out.truncate(48);
        while out.ends_with('_') {
            out.pop();
        }
    }
    if is_reserved(&out) {
        out.push_str("_m");
    }
    out
}

/// Whether `ident` collides with a keyword or a name the generators use.
pub fn is_reserved(ident: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(ident))
}

/// Upper-case form for C macros and Rust constants.
pub fn upper(ident: &str) -> String {
    ident.to_ascii_uppercase()
}

/// Text that is safe inside a `/* ... */` or `//` comment on one line: printable ASCII
/// only, with `*/`, `/*` and backslashes defused.
pub fn comment_safe(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect();
    // `??/` is a trigraph for a backslash in C99, even inside comments.
    while s.contains("*/") || s.contains("/*") || s.contains("??") {
        s = s
            .replace("*/", "* /")
            .replace("/*", "/ *")
            .replace("??", "?.?");
    }
    if s.len() > 80 {
        s.truncate(80);
    }
    s
}

/// Headers of the C standard library and common system headers: a generated
/// `features.h` would shadow glibc's `<features.h>` for any build that puts the output
/// directory on the `-I` path.
const SYSTEM_HEADERS: &[&str] = &[
    "assert",
    "complex",
    "ctype",
    "errno",
    "fenv",
    "float",
    "inttypes",
    "iso646",
    "limits",
    "locale",
    "math",
    "setjmp",
    "signal",
    "stdalign",
    "stdarg",
    "stdatomic",
    "stdbool",
    "stddef",
    "stdint",
    "stdio",
    "stdlib",
    "stdnoreturn",
    "string",
    "tgmath",
    "threads",
    "time",
    "uchar",
    "wchar",
    "wctype",
    "features",
    "alloca",
    "endian",
    "unistd",
    "fcntl",
    "memory",
    "malloc",
    "strings",
    "sched",
    "pthread",
    "config",
    "arm_acle",
    "arm_neon",
    "immintrin",
    "cmsis_compiler",
];

/// File stem for generated files of the model with identifier `ident`: the identifier
/// itself, or `{ident}_model` when that would shadow a system header.
pub fn file_stem(ident: &str) -> String {
    if SYSTEM_HEADERS.contains(&ident) {
        format!("{ident}_model")
    } else {
        ident.to_string()
    }
}

/// Every identifier the C back ends (integer and f32, every target) emit after the
/// model prefix, `{p}_NAME`, other than the per-layer ones (`{p}_{layer}_{suffix}`):
/// helpers, tables, the API. `#` stands for a number (a PWL table's index). A layer
/// identifier must not make `{p}_{layer}_{suffix}` equal to one of these
/// ([`shadows_c_global`]); a unit test scans the templates and emitters so that a new
/// helper cannot be missed.
pub const C_GLOBALS: &[&str] = &[
    // API (header.h.tera, f32.h.tera).
    "reset",
    "run",
    "state_t",
    "step",
    // Integer primitives (primitives.c.tera), every target.
    "q_arithmetic_shift_check",
    "q_asr64",
    "q_cell",
    "q_dot_avx2",
    "q_dot_avx2v",
    "q_gate_pre",
    "q_gate_pre32",
    "q_gate_pre_down",
    "q_gate_pre_v",
    "q_lstm_out",
    "q_mac_hi",
    "q_mac_lo",
    "q_mbqm",
    "q_mm_scalar",
    "q_mm_simd",
    "q_mv_scalar",
    "q_mv_simd",
    "q_out_v",
    "q_prep",
    "q_prep_abs",
    "q_rdbpot",
    "q_req32",
    "q_req_down",
    "q_req_v",
    "q_sat16",
    "q_sat32",
    "q_sat8",
    "q_sat_sub64",
    "q_srdhm",
    // Cortex-M kernels and requantization (primitives.c.tera: dsp, mve, reqm, reqr).
    "q_dsp_block",
    "q_gate_prem",
    "q_gate_prer",
    "q_mve_rows",
    "q_reqm",
    "q_reqr",
    "q_sxtb16_odd",
    "q_word",
    // PWL tables (source.c.tera, c.rs, c_ops.rs).
    "pwl#",
    "pwl#_first",
    "pwl#_intercepts",
    "pwl#_n",
    "pwl#_offsets",
    "pwl#_slopes",
    "pwl#_starts",
    "pwl#_starts_ext",
    // f32 counterpart (f32.c.tera).
    "clamp9",
    "matvec",
    "tanh_core",
];

/// Whether a layer identifier `id` could make a per-layer C name `{p}_{id}_{suffix}`
/// (or `{p}_{id}`) equal to one of [`C_GLOBALS`], for any suffix.
pub fn shadows_c_global(id: &str) -> bool {
    C_GLOBALS.iter().any(|g| match g.split_once('#') {
        None => *g == id || g.strip_prefix(id).is_some_and(|r| r.starts_with('_')),
        Some((pre, post)) => {
            let Some(rest) = id.strip_prefix(pre) else {
                return false;
            };
            let after = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            // The number is all of the id's digits here (the rest starts with a non-digit).
            after.len() < rest.len()
                && (after == post || post.strip_prefix(after).is_some_and(|r| r.starts_with('_')))
        }
    })
}

/// Hands out unique sanitized identifiers.
#[derive(Debug, Default, Clone)]
pub struct NameTable {
    used: BTreeSet<String>,
}

impl NameTable {
    /// A table that already holds `taken`.
    pub fn with_taken(taken: &[&str]) -> Self {
        NameTable {
            used: taken.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A unique identifier for `raw`: [`sanitize`]d, suffixed `_2`, `_3`, … on
    /// collision.
    pub fn unique(&mut self, raw: &str) -> String {
        let base = sanitize(raw);
        let mut candidate = base.clone();
        let mut k = 2;
        while self.used.contains(&candidate) || shadows_c_global(&candidate) {
            candidate = format!("{base}_{k}");
            k += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_plain_identifiers() {
        for raw in [
            "a\"; system(\"rm -rf /\"); //",
            "*/ #include <stdio.h> /*",
            "line\nbreak",
            "fn",
            "struct",
            "",
            "9lives",
            "__reserved",
            "ünïcödé",
            "r#type",
        ] {
            let s = sanitize(raw);
            assert!(!s.is_empty());
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{s}"
            );
            assert!(
                !s.starts_with('_') && !s.as_bytes()[0].is_ascii_digit(),
                "{s}"
            );
            assert!(!is_reserved(&s), "{s}");
        }
    }

    #[test]
    fn unique_names_do_not_collide() {
        let mut t = NameTable::default();
        let a = t.unique("rnn.l0");
        let b = t.unique("rnn_l0");
        let c = t.unique("RNN L0");
        assert_eq!(a, "rnn_l0");
        assert_eq!(b, "rnn_l0_2");
        assert_eq!(c, "rnn_l0_3");
    }

    #[test]
    fn layer_ids_never_shadow_c_globals() {
        let mut t = NameTable::default();
        assert_eq!(t.unique("q"), "q_2");
        assert_eq!(t.unique("q_prep"), "q_prep_2");
        assert_eq!(t.unique("q_gate"), "q_gate_2");
        assert_eq!(t.unique("pwl0"), "pwl0_2");
        assert_eq!(t.unique("pwl12_starts"), "pwl12_starts_2");
        assert_eq!(t.unique("matvec"), "matvec_2");
        assert_eq!(t.unique("q_x"), "q_x");
        assert_eq!(t.unique("pwl"), "pwl");
        assert_eq!(t.unique("pwl1x"), "pwl1x");
        assert_eq!(t.unique("rnn.l0"), "rnn_l0");
        assert!(shadows_c_global("step") && shadows_c_global("state"));
    }

    /// Every `{p}_NAME` in the C templates and emitters is in [`C_GLOBALS`] (with
    /// template numbers as `#`), so a helper added later cannot collide with a layer.
    #[test]
    fn c_globals_list_every_emitted_name() {
        let sources = [
            include_str!("../../../templates/c/macros.tera"),
            include_str!("../../../templates/c/primitives.c.tera"),
            include_str!("../../../templates/c/header.h.tera"),
            include_str!("../../../templates/c/source.c.tera"),
            include_str!("../../../templates/c/f32.h.tera"),
            include_str!("../../../templates/c/f32.c.tera"),
            include_str!("c.rs"),
            include_str!("c_f32.rs"),
            include_str!("c_ops.rs"),
        ];
        let ident = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        let mut seen = 0;
        for src in sources {
            for marker in ["{{ p }}_", "{p}_"] {
                for (at, _) in src.match_indices(marker) {
                    let rest = &src[at + marker.len()..];
                    if rest.starts_with('{') {
                        continue; // a per-layer or per-array name
                    }
                    // The name, with `{...}` / `{{ ... }}` inside it read as `#` (a
                    // tera `{% if %}` ends it: its variants are listed separately).
                    let mut name = String::new();
                    let mut r = rest;
                    loop {
                        let n = r.find(|c: char| !ident(c)).unwrap_or(r.len());
                        name.push_str(&r[..n]);
                        r = &r[n..];
                        if n > 0 && r.starts_with('{') && !r.starts_with("{%") {
                            let close = if r.starts_with("{{") { "}}" } else { "}" };
                            let end = r.find(close).unwrap() + close.len();
                            if r[..end].contains("kind") {
                                name.push_str("scalar"); // q_mv_{kind}: scalar and simd
                            } else {
                                name.push('#');
                            }
                            r = &r[end..];
                        } else {
                            break;
                        }
                    }
                    if name.is_empty() || name.ends_with('_') {
                        continue;
                    }
                    seen += 1;
                    assert!(
                        C_GLOBALS.contains(&name.as_str()),
                        "{name} is not in C_GLOBALS"
                    );
                }
            }
        }
        assert!(seen > 50, "{seen}");
    }

    #[test]
    fn file_stems_do_not_shadow_system_headers() {
        assert_eq!(file_stem("features"), "features_model");
        assert_eq!(file_stem("charlm"), "charlm");
    }

    #[test]
    fn comments_cannot_be_closed() {
        let s = comment_safe("x */ evil(); /* y\n*/");
        assert!(!s.contains("*/") && !s.contains("/*") && !s.contains('\n'));
    }
}
