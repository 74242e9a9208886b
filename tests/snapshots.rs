//! Tier "generates": the Rust and C output for every model in `tests/models/` is
//! snapshotted (reviewed like code), for each unroll mode on the scalar target and for
//! every SIMD target. A change to a back end shows up here as a diff.

use irnn_codegen::back::{generate, GenOptions, Lang, Target, Unroll};
use irnn_codegen::graph::Graph;
use irnn_codegen::lower::lower;

fn render(path: &std::path::Path, lang: Lang, unroll: Unroll) -> String {
    render_for(path, lang, Target::Scalar, unroll)
}

fn render_for(path: &std::path::Path, lang: Lang, target: Target, unroll: Unroll) -> String {
    let graph = Graph::load(path).expect("model loads");
    let program = lower(&graph).expect("model lowers");
    let files = generate(
        &program,
        &GenOptions {
            lang,
            target,
            unroll,
            precision: Default::default(),
            fusion: Default::default(),
        },
    )
    .expect("generates");
    let mut out = String::new();
    for f in files {
        out.push_str(&format!("===== {} =====\n{}", f.name, f.contents));
    }
    out
}

#[test]
fn rust_output() {
    insta::glob!("models/*.irnn.json", |path| {
        for (unroll, tag) in [
            (Unroll::None, "none"),
            (Unroll::Inner, "inner"),
            (Unroll::Full, "full"),
        ] {
            insta::assert_snapshot!(format!("rust_{tag}"), render(path, Lang::Rust, unroll));
        }
    });
}

#[test]
fn c_output() {
    insta::glob!("models/*.irnn.json", |path| {
        for (unroll, tag) in [
            (Unroll::None, "none"),
            (Unroll::Inner, "inner"),
            (Unroll::Full, "full"),
        ] {
            insta::assert_snapshot!(format!("c_{tag}"), render(path, Lang::C, unroll));
        }
    });
}

/// The SIMD targets (packed weights, kernels, array PWL forms), both languages.
#[test]
fn simd_output() {
    insta::glob!("models/*.irnn.json", |path| {
        for target in [
            Target::Avx2,
            Target::Avx512Vnni,
            Target::Neon,
            Target::NeonDotprod,
        ] {
            for (lang, tag) in [(Lang::C, "c"), (Lang::Rust, "rust")] {
                insta::assert_snapshot!(
                    format!("{tag}_{}", target.name()),
                    render_for(path, lang, target, Unroll::None)
                );
            }
        }
    });
}

/// The Cortex-M C with its own kernels: DSP (`cortex-m4`; `cortex-m7` differs only in
/// its name) and Helium (`cortex-m55`). `cortex-m0` is the portable C.
#[test]
fn cortex_m_output() {
    insta::glob!("models/*.irnn.json", |path| {
        for target in [Target::CortexM4, Target::CortexM55] {
            insta::assert_snapshot!(
                format!("c_{}", target.name()),
                render_for(path, Lang::C, target, Unroll::None)
            );
        }
    });
}

/// Generation is deterministic: twice the same bytes, for every model and option.
#[test]
fn output_is_deterministic() {
    insta::glob!("models/*.irnn.json", |path| {
        for lang in [Lang::Rust, Lang::C] {
            for unroll in [Unroll::None, Unroll::Inner, Unroll::Full] {
                assert_eq!(render(path, lang, unroll), render(path, lang, unroll));
            }
        }
    });
}
