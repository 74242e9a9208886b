//! The user-facing shells over the code generator: the example crates
//! (`examples/build-rs`, `examples/proc-macro`) are built with cargo and their outputs
//! compared with the interpreter, the `include_model!` errors are checked in a small
//! crate that must fail to compile, and the build.rs `Builder` is run in process.
//!
//! All crates build into `<repo>/target/examples` (a target dir shared between them and
//! across runs, so only the first run compiles irnn-codegen's dependencies).

mod support;

use irnn_codegen::graph::Graph;
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::Program;
use irnn_codegen::lower::lower;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

fn target_dir() -> PathBuf {
    repo_root().join("target").join("examples")
}

/// `cargo <cmd>` in `dir` with the shared target dir.
fn cargo(dir: &Path, cmd: &str) -> Output {
    Command::new(env!("CARGO"))
        .args([cmd, "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs")
}

/// Builds the example crate `name` and returns its binary.
fn build_example(name: &str) -> PathBuf {
    let dir = repo_root().join("examples").join(name);
    let out = cargo(&dir, "build");
    assert!(
        out.status.success(),
        "examples/{name} does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("warning"),
        "examples/{name} builds with warnings:\n{stderr}"
    );
    target_dir().join("debug").join(format!(
        "irnn-example-{name}{}",
        std::env::consts::EXE_SUFFIX
    ))
}

fn load_program(json: &Path) -> Program {
    lower(&Graph::load(json).expect("example model loads")).expect("example model lowers")
}

/// Token ids of `text` under the char LM's vocabulary (unknown characters → `~`).
fn charlm_ids(text: &str) -> Vec<u32> {
    let vocab: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/charlm/vocab.json"))
            .expect("vocab.json"),
    )
    .expect("vocab is a list of strings");
    let unknown = vocab.iter().position(|c| c == "~").expect("~ in vocab") as u32;
    text.chars()
        .map(|c| {
            vocab
                .iter()
                .position(|v| v.chars().eq(std::iter::once(c)))
                .map(|i| i as u32)
                .unwrap_or(unknown)
        })
        .collect()
}

/// Runs `bin --logits text` and checks every line against the interpreter on the
/// example's model.
fn check_logits(bin: &Path, model_json: &Path, text: &str) {
    let out = Command::new(bin)
        .args(["--logits", text])
        .output()
        .expect("example runs");
    assert!(out.status.success(), "{} failed", bin.display());
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    check_logit_lines(&stdout, model_json, &charlm_ids(text));
}

/// `model NAME HASH`, then `step t token id logits...` per step, equal to the
/// interpreter on `model_json` fed `ids`.
fn check_logit_lines(stdout: &str, model_json: &Path, ids: &[u32]) {
    let program = load_program(model_json);
    let mut lines = stdout.lines();
    let head = lines.next().expect("a model line");
    assert_eq!(
        head,
        format!("model {} {}", program.name, program.model_hash),
        "the binary was not built from {}",
        model_json.display()
    );
    let mut it = Interpreter::new(&program);
    let mut steps = 0;
    for (t, line) in lines.take_while(|l| l.starts_with("step ")).enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            &fields[..4],
            &["step", &t.to_string(), "token", &ids[t].to_string()],
            "{line}"
        );
        let got: Vec<i32> = fields[4..]
            .iter()
            .map(|v| v.parse().expect("int"))
            .collect();
        let want = it.step_token(ids[t] as i64).expect("in range");
        assert_eq!(got, want, "step {t} (token {})", ids[t]);
        steps += 1;
    }
    assert_eq!(steps, ids.len());
}

/// A text with every kind of character: letters, punctuation, newline, an unknown one.
const TEXT: &str = "ROMEO:\nBut, soft! what light through yonder window breaks?\n[Exit] 12 ~ é";

#[test]
fn build_rs_example_matches_the_interpreter() {
    let bin = build_example("build-rs");
    check_logits(
        &bin,
        &repo_root().join("examples/charlm/charlm.irnn.json"),
        TEXT,
    );
    // The default mode runs too (greedy generation).
    let out = Command::new(&bin).arg("ROMEO:").output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ROMEO:"));
}

#[test]
fn proc_macro_example_matches_the_interpreter() {
    let bin = build_example("proc-macro");
    check_logits(
        &bin,
        &repo_root().join("examples/charlm/charlm.irnn.json"),
        TEXT,
    );
    let out = Command::new(&bin).output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("next characters guessed right"));
}

/// A scratch crate `target/.../NAME` (its `src/` made) depending on irnn-macros and on
/// irnn-runtime with `runtime_extra` appended to its dependency line; returns its
/// directory.
fn macro_crate(name: &str, runtime_extra: &str) -> PathBuf {
    let dir = target_dir().join(name);
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    let root = repo_root();
    let toml = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nirnn-macros = {{ path = {:?} }}\nirnn-runtime = {{ path = {:?}{runtime_extra} }}\n\n[workspace]\n",
        root.join("macros").display().to_string(),
        root.join("runtime").display().to_string(),
    );
    irnn_codegen::util::write_if_changed(&dir.join("Cargo.toml"), toml.as_bytes()).expect("write");
    dir
}

/// `include_model!` errors: a missing file, an invalid model and a bad option, each
/// a compile error at the offending literal.
#[test]
fn include_model_errors_point_at_the_literal() {
    let dir = macro_crate("macro-errors", "");
    let write = |p: PathBuf, s: &str| {
        irnn_codegen::util::write_if_changed(&p, s.as_bytes()).expect("write")
    };
    write(
        dir.join("bad.irnn.json"),
        "{ \"format\": \"irnn-graph\", oops }\n",
    );
    let main = "mod missing {\n    irnn_macros::include_model!(\"no/such/model.irnn.json\");\n}\n\
                mod invalid {\n    irnn_macros::include_model!(\"bad.irnn.json\");\n}\n\
                mod option {\n    irnn_macros::include_model!(\"bad.irnn.json\", unroll = \"sideways\");\n}\n\
                mod target {\n    irnn_macros::include_model!(\"bad.irnn.json\", target = \"sse9\");\n}\n\
                fn main() {}\n";
    write(dir.join("src/main.rs"), main);
    let out = cargo(&dir, "check");
    assert!(!out.status.success(), "the crate must not compile");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Where each literal starts (1-based line and column), as rustc reports it.
    let at = |needle: &str| -> String {
        let (n, line) = main
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .expect("needle");
        format!("src/main.rs:{}:{}", n + 1, line.find(needle).unwrap() + 1)
    };
    for (needle, message) in [
        (
            "\"no/such/model.irnn.json\"",
            "irnn model not found: \"no/such/model.irnn.json\"",
        ),
        ("\"bad.irnn.json\");", "bad.irnn.json: malformed JSON"),
        ("\"sideways\"", "unknown unroll \"sideways\""),
        ("\"sse9\"", "unknown target \"sse9\""),
    ] {
        assert!(stderr.contains(message), "missing `{message}` in\n{stderr}");
        let place = at(needle);
        assert!(stderr.contains(&place), "no error at {place} in\n{stderr}");
    }
}

/// `include_model!` with `target` and `precision`: the char LM with the AVX-512 VNNI
/// kernels (picked at run time, portable on other CPUs) must equal the interpreter bit
/// for bit, and its f32 counterpart must agree with it on the top-1 prediction at
/// >= 95% of the steps (measured 99.6% on the test split).
#[test]
fn include_model_takes_target_and_precision() {
    let dir = macro_crate("macro-options", ", features = [\"std\"]");
    let root = repo_root();
    let json = root.join("examples/charlm/charlm.irnn.json");
    let main = format!(
        "mod simd {{\n    irnn_macros::include_model!({json:?}, target = \"avx512vnni\");\n}}\n\
         mod float {{\n    irnn_macros::include_model!({json:?}, precision = \"f32\");\n}}\n\
         fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {{\n    \
             (0..v.len()).fold(0, |b, i| if v[i] > v[b] {{ i }} else {{ b }})\n}}\n\
         fn main() {{\n    \
             let ids: Vec<u32> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();\n    \
             let (mut m, mut f) = (simd::Model::new(), float::Model::new());\n    \
             println!(\"model {{}} {{}}\", simd::MODEL_NAME, simd::MODEL_HASH);\n    \
             let mut agree = 0;\n    \
             for (t, &id) in ids.iter().enumerate() {{\n        \
                 let q = *m.step(id);\n        \
                 let v: Vec<String> = q.iter().map(|x| x.to_string()).collect();\n        \
                 println!(\"step {{t}} token {{id}} {{}}\", v.join(\" \"));\n        \
                 agree += (argmax(&q) == argmax(f.step(id))) as usize;\n    \
             }}\n    \
             println!(\"agree {{agree}} of {{}}\", ids.len());\n    \
             println!(\"kernel {{}}\", m.kernel().isa().name());\n\
         }}\n"
    );
    irnn_codegen::util::write_if_changed(&dir.join("src/main.rs"), main.as_bytes()).expect("write");
    let out = cargo(&dir, "build");
    assert!(
        out.status.success(),
        "the crate does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir()
        .join("debug")
        .join(format!("macro-options{}", std::env::consts::EXE_SUFFIX));
    let text: String = std::fs::read_to_string(root.join("examples/charlm/data/test.txt"))
        .expect("the char LM's test text")
        .chars()
        .take(400)
        .collect();
    let ids = charlm_ids(&text);
    let out = Command::new(&bin)
        .args(ids.iter().map(u32::to_string))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    check_logit_lines(&stdout, &json, &ids);
    let agree: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("agree "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("an agree line");
    // The target option reached the generator: the model runs the VNNI kernel (or, on a
    // CPU without it, the portable kernel on the packed layout).
    let kernel = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kernel "))
        .expect("a kernel line");
    let vnni = irnn_cli::bench::host_runs(irnn_codegen::back::Target::Avx512Vnni);
    assert_eq!(kernel, if vnni { "avx512vnni" } else { "scalar" });
    assert!(
        agree * 100 >= ids.len() * 95,
        "f32 and int8 top-1 agree at only {agree} of {} steps",
        ids.len()
    );
}

/// The build.rs shell, in process: writes the generated file once, leaves it alone
/// when nothing changed, and names the file in its errors.
#[test]
fn builder_writes_only_when_changed() {
    use irnn_codegen::back::Unroll;
    use irnn_codegen::builder::Builder;
    let m = synth_model("built", Some(6), 4, 3, 1, 6, 21);
    let out = tempfile::tempdir().expect("tempdir");
    let mut b = Builder::new();
    b.model(&m.graph)
        .unroll(Unroll::Inner)
        .out_dir(out.path())
        .emit_rerun_if_changed(false);
    let files = b.compile().expect("compiles");
    assert_eq!(files, vec![out.path().join("built.rs")]);
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let first = mtime(&files[0]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(b.compile().expect("compiles again"), files);
    assert_eq!(
        mtime(&files[0]),
        first,
        "an unchanged file must not be rewritten"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("unroll=inner") && text.contains("pub struct Model"));

    // The same model twice: two files of one name.
    let err = Builder::new()
        .model(&m.graph)
        .model(&m.graph)
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .compile()
        .unwrap_err()
        .to_string();
    assert!(err.contains("both generate built.rs"), "{err}");
    // A broken model: the error names the file.
    let broken = out.path().join("broken.irnn.json");
    std::fs::write(&broken, "[]").unwrap();
    let err = Builder::new()
        .model(&broken)
        .out_dir(out.path())
        .emit_rerun_if_changed(false)
        .compile()
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.irnn.json"), "{err}");
}

/// The README's check, on the test split's small file: `make -C examples/c check`
/// runs `irnn run` and the generated C and compares every logit; the build.rs example's
/// `--check` compares the generated Rust with the same `irnn run` output.
#[test]
fn generated_c_and_rust_match_irnn_run_on_real_data() {
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("cbuild");
    let data = repo_root().join("examples/charlm/data/test_small.npy");
    let out = Command::new("make")
        .arg("-C")
        .arg(repo_root().join("examples/c"))
        .arg("check")
        .arg(format!("IRNN={}", irnn_bin().display()))
        .arg(format!("BUILD={}", build.display()))
        .arg(format!("DATA={}", data.display()))
        .output()
        .expect("make runs (apt-get install make)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bit-identical: 4 sequences x 64 steps x 72 logits"),
        "{stdout}"
    );

    let bin = build_example("build-rs");
    let out = Command::new(&bin)
        .arg("--check")
        .arg(&data)
        .arg(build.join("reference.npy"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("bit-identical: 4 sequences x 64 steps x 72 logits"),
        "{stdout}"
    );

    // The check can fail: a corrupted reference is reported as a mismatch.
    let reference = std::fs::read(build.join("reference.npy")).unwrap();
    let mut corrupted = reference.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 1;
    let bad = tmp.path().join("bad.npy");
    std::fs::write(&bad, corrupted).unwrap();
    let out = Command::new(&bin)
        .arg("--check")
        .arg(&data)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MISMATCH: 1 of"));
}
