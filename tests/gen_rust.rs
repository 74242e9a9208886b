//! The Rust back end, in the four tiers: must generate, must fail with a given message,
//! generated code must build (`no_std`, `#![deny(warnings)]`, `forbid(unsafe_code)`)
//! and must run bit-exact against the interpreter.
//!
//! Every generated module goes into ONE scratch crate under
//! `<repo>/target/gen-rust-tests/` (fixed path and target dir, so reruns only rebuild
//! what changed), built once per test run: a `no_std` library holding the modules and a
//! small binary that reads inputs from a file, steps the model (with `step` and `run`,
//! carrying state and resetting between sequences) and writes the int32 outputs.

mod support;

use irnn_codegen::back::{
    generate, Fusion, GenError, GenOptions, GeneratedFile, Lang, Target, Unroll,
};
use irnn_codegen::interp::Interpreter;
use irnn_codegen::ir::{InputIr, LayerIr, Program};
use irnn_codegen::npy::{read_data, SeqData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::*;

const MODES: [Unroll; 3] = [Unroll::None, Unroll::Inner, Unroll::Full];

fn mode_name(u: Unroll) -> &'static str {
    match u {
        Unroll::None => "none",
        Unroll::Inner => "inner",
        Unroll::Full => "full",
    }
}

fn opts(unroll: Unroll) -> GenOptions {
    GenOptions {
        lang: Lang::Rust,
        target: Target::Scalar,
        unroll,
        precision: Default::default(),
        fusion: Default::default(),
    }
}

fn gen_one(program: &Program, unroll: Unroll) -> GeneratedFile {
    gen_for(program, unroll, Target::Scalar)
}

fn gen_for(program: &Program, unroll: Unroll, target: Target) -> GeneratedFile {
    gen_fused(program, unroll, target, Fusion::Auto)
}

fn gen_fused(program: &Program, unroll: Unroll, target: Target, fusion: Fusion) -> GeneratedFile {
    let o = GenOptions {
        target,
        fusion,
        ..opts(unroll)
    };
    let mut files = match generate(program, &o) {
        Ok(f) => f,
        Err(e) => panic!(
            "generating {} ({}, {}): {e}",
            program.name,
            mode_name(unroll),
            target.name()
        ),
    };
    assert_eq!(files.len(), 1, "the Rust back end writes one file");
    files.remove(0)
}

/// Inputs of one case: `n` sequences of `t` steps.
#[derive(Clone)]
enum Inputs {
    Tokens {
        n: usize,
        t: usize,
        ids: Vec<u32>,
    },
    Features {
        n: usize,
        t: usize,
        f: usize,
        codes: Vec<i8>,
    },
}

impl Inputs {
    fn dims(&self) -> (usize, usize) {
        match self {
            Inputs::Tokens { n, t, .. } | Inputs::Features { n, t, .. } => (*n, *t),
        }
    }

    /// `n: u32, t: u32`, then the ids (u32 LE) or the codes (i8).
    fn to_bytes(&self) -> Vec<u8> {
        let (n, t) = self.dims();
        let mut b = Vec::new();
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend_from_slice(&(t as u32).to_le_bytes());
        match self {
            Inputs::Tokens { ids, .. } => ids
                .iter()
                .for_each(|v| b.extend_from_slice(&v.to_le_bytes())),
            Inputs::Features { codes, .. } => b.extend(codes.iter().map(|&v| v as u8)),
        }
        b
    }
}

/// Whether the harness resets before sequence `s`: sequence 2 (mod 3) continues from
/// the state of the one before, the others start fresh.
fn resets_before(s: usize) -> bool {
    s % 3 != 2
}

/// The reference: the interpreter under the same reset rule.
///
/// The interpreter refuses token ids outside the vocabulary, while generated code reads
/// a row of the embedding's zero point for them (the embedding layer's own rule). To
/// check that, the reference runs a copy of the program whose embedding has one extra
/// row of zero points, and every out-of-range id is mapped to that row.
fn interpret(program: &Program, inputs: &Inputs) -> Vec<i32> {
    let extended = with_zero_point_row(program);
    let mut it = Interpreter::new(&extended);
    let vocab = match program.input {
        InputIr::Tokens { vocab_size } => vocab_size as u32,
        InputIr::Features { .. } => 0,
    };
    let (n, t) = inputs.dims();
    let mut out = Vec::new();
    for s in 0..n {
        if resets_before(s) {
            it.reset();
        }
        for k in 0..t {
            let y = match inputs {
                Inputs::Tokens { ids, .. } => it.step_token(ids[s * t + k].min(vocab) as i64),
                Inputs::Features { f, codes, .. } => {
                    let at = (s * t + k) * f;
                    it.step_features(&codes[at..at + f])
                }
            };
            out.extend_from_slice(y.expect("interpreter step"));
        }
    }
    out
}

/// `program` with one more token whose embedding row is all zero points.
fn with_zero_point_row(program: &Program) -> Program {
    let mut p = program.clone();
    if let InputIr::Tokens { vocab_size } = &mut p.input {
        *vocab_size += 1;
        if let Some(LayerIr::Embedding(e)) = p.layers.first_mut() {
            e.vocab_size += 1;
            let zp = e.zero_point.clamp(-128, 127) as i8;
            e.table.resize(e.table.len() + e.dim, zp);
        }
    }
    p
}

/// A tiny deterministic generator for inputs.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

fn random_inputs(program: &Program, n: usize, t: usize, seed: u64) -> Inputs {
    let mut rng = Lcg(seed);
    match program.input {
        InputIr::Tokens { vocab_size } => Inputs::Tokens {
            n,
            t,
            // Every 41st id is outside the vocabulary.
            ids: (0..n * t)
                .map(|i| match i % 41 {
                    40 => [vocab_size as u32, u32::MAX, 1 << 31][i % 3],
                    _ => rng.next() % vocab_size as u32,
                })
                .collect(),
        },
        InputIr::Features { size, .. } => Inputs::Features {
            n,
            t,
            f: size,
            // The whole int8 range, -128 included, with some runs of extremes.
            codes: (0..n * t * size)
                .map(|i| match (i / 97) % 5 {
                    0 => -128,
                    1 => 127,
                    _ => rng.next() as u8 as i8,
                })
                .collect(),
        },
    }
}

/// Models run on [`extreme_inputs`] and on one 100,000-step sequence in the checked
/// harness (overflow checks on): LSTM with token and feature input, GRU, ReLU RNN.
const EXTREME: [&str; 4] = ["tok8x16l2", "feat13x7l2", "gru_feat", "rnn_relu"];

/// Three sequences of 3,000 steps at the extremes: every feature 127, every feature
/// -128, the two alternating by step (token models: the last id, id 0, and the
/// out-of-range ids `u32::MAX` / `vocab` alternating).
fn extreme_inputs(program: &Program) -> Inputs {
    let t = 3000;
    match program.input {
        InputIr::Tokens { vocab_size } => {
            let last = vocab_size as u32 - 1;
            let mut ids = vec![last; t];
            ids.extend(std::iter::repeat_n(0, t));
            ids.extend((0..t).map(|k| {
                if k % 2 == 0 {
                    u32::MAX
                } else {
                    vocab_size as u32
                }
            }));
            Inputs::Tokens { n: 3, t, ids }
        }
        InputIr::Features { size, .. } => {
            let mut codes = vec![127i8; t * size];
            codes.extend(std::iter::repeat_n(-128i8, t * size));
            codes.extend(
                (0..t).flat_map(|k| std::iter::repeat_n(if k % 2 == 0 { 127 } else { -128 }, size)),
            );
            Inputs::Features {
                n: 3,
                t,
                f: size,
                codes,
            }
        }
    }
}

/// Inputs from a shipped `.npy` file (token ids, or float features quantized with the
/// model's input grid).
fn npy_inputs(program: &Program, path: &Path) -> Inputs {
    let data = read_data(path).expect("test data loads");
    match (data.data, &program.input) {
        (SeqData::Tokens { n, t, data }, _) => Inputs::Tokens {
            n,
            t,
            ids: data.iter().map(|&v| v as u32).collect(),
        },
        (
            SeqData::FeaturesF32 { n, t, f, data },
            InputIr::Features {
                scale_info,
                zero_point,
                ..
            },
        ) => Inputs::Features {
            n,
            t,
            f,
            codes: data
                .iter()
                .map(|&x| irnn_cli::cli::quantize_feature(x, *scale_info, *zero_point))
                .collect(),
        },
        (SeqData::FeaturesI8 { n, t, f, data }, _) => Inputs::Features {
            n,
            t,
            f,
            codes: data,
        },
        _ => panic!("{}: data does not match the model input", path.display()),
    }
}

/// One generated module in the scratch crate (keyed by its module name).
struct Case {
    program: Program,
    inputs: Inputs,
    file: GeneratedFile,
    target: Target,
}

struct Harness {
    bin: PathBuf,
    /// Command prefix that runs `bin` (qemu for the AArch64 harness).
    runner: Vec<String>,
    /// The scratch crate and its target dir.
    krate: PathBuf,
    target: PathBuf,
    cases: BTreeMap<String, Case>,
    /// Keeps the synthetic models' directories alive.
    _models: Vec<TestModel>,
}

impl Harness {
    /// Runs the built binary on one case and returns its outputs.
    fn run(&self, module: &str) -> Vec<i32> {
        self.run_with(module, None)
    }

    /// The harness binary, through the runner if there is one.
    fn command(&self) -> Command {
        match self.runner.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        }
    }

    /// Runs one case; `kernel`: SIMD models run the kernel of that name (`scalar`: the
    /// portable one) instead of the one `Model::new` picks.
    fn run_with(&self, module: &str, kernel: Option<&str>) -> Vec<i32> {
        let case = &self.cases[module];
        let dir = tempfile::tempdir().expect("tempdir");
        let (input, output) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
        std::fs::write(&input, case.inputs.to_bytes()).expect("write inputs");
        let mut cmd = self.command();
        if let Some(k) = kernel {
            cmd.env("IRNN_KERNEL", k);
        }
        let status = cmd
            .args([module.as_ref(), input.as_os_str(), output.as_os_str()])
            .status()
            .expect("harness runs");
        assert!(status.success(), "harness failed on {module}");
        std::fs::read(&output)
            .expect("harness wrote outputs")
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Checks one case and returns the outputs compared.
    fn check_bit_exact(&self, module: &str) -> Vec<i32> {
        self.check_bit_exact_with(module, None)
    }

    fn check_bit_exact_with(&self, module: &str, kernel: Option<&str>) -> Vec<i32> {
        let case = &self.cases[module];
        let want = interpret(&case.program, &case.inputs);
        let got = self.run_with(module, kernel);
        assert_eq!(got.len(), want.len(), "{module}: output length");
        if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
            let o = case.program.output.size;
            panic!(
                "{module}: first difference at step {} output {}: generated {} vs interpreter {}",
                i / o,
                i % o,
                got[i],
                want[i]
            );
        }
        got
    }
}

/// The synthetic models: odd sizes (13, 7, 5, 3 — below and off the unroll factor),
/// 1–2 layers, token and feature input.
fn synthetic_models() -> Vec<(&'static str, TestModel)> {
    vec![
        (
            "tok13x7",
            synth_model("tok13x7", Some(11), 13, 7, 1, 5, 101),
        ),
        (
            "tok8x16l2",
            synth_model("tok8x16l2", Some(20), 8, 16, 2, 20, 202),
        ),
        (
            "feat13x7l2",
            synth_model("feat13x7l2", None, 13, 7, 2, 3, 303),
        ),
        ("feat5x3", synth_model("feat5x3", None, 5, 3, 1, 1, 404)),
    ]
    .into_iter()
    .chain(cell_models().into_iter().map(|s| (s.label, s.model)))
    .collect()
}

/// The hostile name given to a copy of `tok13x7`.
const HOSTILE: &str = "fn\"; mod self */ #include <stdio.h>\n/* r#type \\ unsafe { } ";

fn hostile_copy(p: &Program) -> Program {
    let mut h = p.clone();
    h.name = HOSTILE.to_string();
    for (i, layer) in h.layers.iter_mut().enumerate() {
        let name = format!("{HOSTILE}{i} */ fn main() {{}} //");
        match layer {
            LayerIr::Embedding(e) => e.name = name,
            LayerIr::Linear(l) => l.name = name,
            LayerIr::Cell(l) => l.name = name,
        }
    }
    h
}

/// The shipped, PyTorch-trained models when they are present, quantized into a
/// temporary directory, with their test data.
fn real_models(dir: &Path) -> Vec<(&'static str, Program, Inputs)> {
    let mut out = Vec::new();
    let (spec, calib, test) = charlm_paths();
    let present = spec.exists() && calib.exists() && test.exists();
    if skip::requires("gen_rust's char LM", "examples/charlm", present) {
        let p = quantize_files(&spec, &calib, &dir.join("charlm.irnn.json"));
        let inputs = npy_inputs(&p, &test);
        out.push(("charlm", p, inputs));
    }
    let (spec, calib, test, _) = features_paths();
    let present = spec.exists() && calib.exists() && test.exists();
    if skip::requires("gen_rust's feature model", "examples/features", present) {
        let p = quantize_files(&spec, &calib, &dir.join("features.irnn.json"));
        let mut inputs = npy_inputs(&p, &test);
        // A few hundred steps are plenty.
        if let Inputs::Features { n, t, f, codes } = &mut inputs {
            let keep = (*n).min((400 / (*t).max(1)).max(2));
            *n = keep;
            codes.truncate(keep * *t * *f);
        }
        out.push(("features", p, inputs));
    }
    out
}

/// Code appended to a case's module: `check_tables()` compares every generated table
/// evaluator with the runtime's `Pwl::eval` on the whole i16 domain (their input type),
/// and on the VNNI target the register form through `Kernel::pwl_i16` (with the
/// model's kernel: AVX-512 on a CPU that has it) too, on whole and misaligned arrays.
fn table_check(p: &Program, target: Target) -> String {
    let mut body = String::new();
    let mut arrays = String::new();
    for k in p.used_tables() {
        let short = p.tables[k].short_name();
        let upper = short.to_ascii_uppercase();
        body.push_str(&format!(
            "        let (got, want) = (t{k}_{short}(x), T{k}_{upper}.eval(x as i32));\n        \
             if got != want {{\n            return Some(({k}, x as i32, got, want));\n        }}\n",
        ));
        let t = &p.tables[k];
        let idx = irnn_codegen::back::pwl_index::build(t);
        let form = match target {
            Target::Avx512Vnni => idx
                .and_then(|i| irnn_codegen::back::pwl_index::register_form(t, &i, 64))
                .map(|_| ("pwl_i16", "REGS")),
            Target::Avx2 => idx
                .and_then(|i| irnn_codegen::back::pwl_index::gather_form(t, &i))
                .map(|_| ("pwl_i16_gather", "GATHER")),
            _ => None,
        };
        if let Some((call, kind)) = form {
            arrays.push_str(&format!(
                "        for skip in [0usize, 1] {{\n            \
                 for base in 0..16i32 {{\n                \
                 let mut xs = [0i16; 4096];\n                \
                 for (j, x) in xs.iter_mut().enumerate() {{\n                    \
                 *x = (base * 4096 + j as i32 - 32768) as i16;\n                \
                 }}\n                \
                 let mut ys = xs;\n                \
                 kernel.{call}(&T{k}_{upper}_{kind}, &mut ys[skip..], t{k}_{short});\n                \
                 for j in skip..4096 {{\n                    \
                 let want = T{k}_{upper}.eval(xs[j] as i32).clamp(i16::MIN as i32, i16::MAX as i32);\n                    \
                 if ys[j] as i32 != want {{\n                        \
                 return Some(({k}, xs[j] as i32, ys[j] as i32, want));\n                    \
                 }}\n                \
                 }}\n            \
                 }}\n        \
                 }}\n"
            ));
        }
    }
    let kernel = if arrays.is_empty() {
        String::new()
    } else {
        "        let kernel = Model::new().kernel();\n".to_string()
    };
    // A model without tables (a relu RNN) has nothing to loop over.
    let scalar = if body.is_empty() {
        String::new()
    } else {
        format!("        for x in i16::MIN..=i16::MAX {{\n{body}        }}\n")
    };
    format!(
        "    /// The first input where a table evaluator differs from the runtime.\n    \
         pub fn check_tables() -> Option<(usize, i32, i32, i32)> {{\n\
         {scalar}{kernel}{arrays}        None\n    }}\n"
    )
}

fn scratch_dir() -> PathBuf {
    repo_root().join("target").join("gen-rust-tests")
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(build_harness)
}

fn build_harness() -> Harness {
    let started = std::time::Instant::now();
    let mut cases = BTreeMap::new();
    let mut add =
        |module: String, program: &Program, unroll: Unroll, inputs: &Inputs, fusion: Fusion| {
            let file = gen_fused(program, unroll, Target::Scalar, fusion);
            cases.insert(
                module,
                Case {
                    program: program.clone(),
                    inputs: inputs.clone(),
                    file,
                    target: Target::Scalar,
                },
            );
        };
    let models = synthetic_models();
    for (i, (name, m)) in models.iter().enumerate() {
        let inputs = random_inputs(&m.program, 4, 100, 1000 + i as u64);
        for u in MODES {
            add(
                format!("{name}_{}", mode_name(u)),
                &m.program,
                u,
                &inputs,
                Fusion::Auto,
            );
        }
        if EXTREME.contains(name) {
            add(
                format!("{name}_extreme"),
                &m.program,
                Unroll::None,
                &extreme_inputs(&m.program),
                Fusion::Auto,
            );
            let long = random_inputs(&m.program, 1, 100_000, 2000 + i as u64);
            add(
                format!("{name}_long"),
                &m.program,
                Unroll::None,
                &long,
                Fusion::Auto,
            );
        }
        if OP_BY_OP.contains(name) {
            // The LSTM op by op.
            add(
                format!("{name}_ops"),
                &m.program,
                Unroll::None,
                &inputs,
                Fusion::None,
            );
        }
        if *name == "tok13x7" {
            let hostile = hostile_copy(&m.program);
            for u in MODES {
                add(
                    format!("hostile_{}", mode_name(u)),
                    &hostile,
                    u,
                    &inputs,
                    Fusion::Auto,
                );
            }
        }
    }
    let real_dir = tempfile::tempdir().expect("tempdir");
    for (name, program, inputs) in real_models(real_dir.path()) {
        for u in [Unroll::None, Unroll::Inner] {
            add(
                format!("{name}_{}", mode_name(u)),
                &program,
                u,
                &inputs,
                Fusion::Auto,
            );
        }
    }
    let models = models.into_iter().map(|(_, m)| m).collect();
    build_crate(
        &scratch_dir(),
        cases,
        models,
        None,
        Profile::Checked,
        started,
    )
}

/// Cross-compilation of a scratch crate: the Rust target triple and the command that
/// runs its binaries.
struct Cross {
    triple: &'static str,
    runner: Vec<String>,
}

/// Cargo profile of a scratch crate build.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// `dev`: opt-level 1 with overflow checks (the generated code must not overflow).
    Checked,
    /// `release` (opt-level 3): what users run, where LLVM vectorizes the step inside
    /// `Kernel::vectorize` with the detected instruction set.
    Release,
}

/// Writes and builds the scratch crate under `root` (natively, or for `cross`).
fn build_crate(
    root: &Path,
    cases: BTreeMap<String, Case>,
    models: Vec<TestModel>,
    cross: Option<Cross>,
    profile: Profile,
    started: std::time::Instant,
) -> Harness {
    let krate = root.join("crate");
    write_crate(&krate, &cases);
    eprintln!(
        "gen_rust: generated {} modules for {} in {:.1?}",
        cases.len(),
        root.display(),
        started.elapsed()
    );
    let target = root.join("target");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--offline", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    if let Some(c) = &cross {
        cmd.args(["--target", c.triple]);
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            c.triple.to_ascii_uppercase().replace('-', "_")
        );
        if std::env::var_os(&var).is_none() {
            cmd.env(var, "aarch64-linux-gnu-gcc");
        }
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "the generated Rust does not build{}:\n{}",
        cross
            .as_ref()
            .map(|c| format!(" for {}", c.triple))
            .unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "gen_rust: built {} after {:.1?}",
        krate.display(),
        started.elapsed()
    );
    let dir = match profile {
        Profile::Checked => "debug",
        Profile::Release => "release",
    };
    let out_dir = match &cross {
        Some(c) => target.join(c.triple).join(dir),
        None => target.join(dir),
    };
    Harness {
        krate,
        target: target.clone(),
        bin: out_dir.join(format!("gen-rust-harness{}", std::env::consts::EXE_SUFFIX)),
        runner: cross.map(|c| c.runner).unwrap_or_default(),
        cases,
        _models: models,
    }
}

/// Writes the scratch crate, touching only files whose contents changed.
fn write_crate(dir: &Path, cases: &BTreeMap<String, Case>) {
    use irnn_codegen::util::write_if_changed;
    let src = dir.join("src");
    let gen = src.join("generated");
    std::fs::create_dir_all(&gen).expect("mkdir");
    let runtime = repo_root().join("runtime");
    let cargo_toml = format!(
        "[package]\nname = \"gen-rust-harness\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nirnn-runtime = {{ path = {:?}, features = [\"std\"] }}\n\n\
         [profile.dev]\nopt-level = 1\noverflow-checks = true\ndebug = false\n\n\
         [profile.release]\nopt-level = 3\ndebug = false\n\n\
         # Not part of the irnn workspace.\n[workspace]\n",
        runtime.display().to_string()
    );
    write_if_changed(&dir.join("Cargo.toml"), cargo_toml.as_bytes()).expect("write");
    let mut lib = String::from(
        "//! Generated modules under test: no_std, no warnings, no unsafe.\n\
         #![no_std]\n#![deny(warnings, missing_docs)]\n#![forbid(unsafe_code)]\n\n",
    );
    let mut arms = String::new();
    let mut checks = String::new();
    let mut kernels = String::new();
    for (module, case) in cases {
        write_if_changed(
            &gen.join(format!("{module}.rs")),
            case.file.contents.as_bytes(),
        )
        .expect("write");
        lib.push_str(&format!(
            "/// Case {module}.\npub mod {module} {{\n    include!(\"generated/{module}.rs\");\n{}}}\n",
            table_check(&case.program, case.target)
        ));
        checks.push_str(&format!(
            "        (\"{module}\", gen_rust_harness::{module}::check_tables),\n"
        ));
        let kind = match case.inputs {
            Inputs::Tokens { .. } => "tokens",
            Inputs::Features { .. } => "features",
        };
        let new = if case.target == Target::Scalar {
            format!("gen_rust_harness::{module}::Model::new()")
        } else {
            kernels.push_str(&format!(
                "        (\"{module}\", gen_rust_harness::{module}::Model::new().kernel().isa().name()),\n"
            ));
            format!(
                "match forced {{ Some(k) => gen_rust_harness::{module}::Model::with_kernel(k), None => gen_rust_harness::{module}::Model::new() }}"
            )
        };
        arms.push_str(&format!(
            "        \"{module}\" => {kind}!(gen_rust_harness::{module}, &input, {new}),\n"
        ));
    }
    write_if_changed(&src.join("lib.rs"), lib.as_bytes()).expect("write");
    let main = format!(
        r#"//! Usage: gen-rust-harness MODULE INPUT OUTPUT
use std::convert::TryInto;

fn header(input: &[u8]) -> (usize, usize, &[u8]) {{
    let n = u32::from_le_bytes(input[0..4].try_into().unwrap()) as usize;
    let t = u32::from_le_bytes(input[4..8].try_into().unwrap()) as usize;
    (n, t, &input[8..])
}}

/// Sequence 2 (mod 3) continues from the previous state; even sequences use `step`,
/// odd ones `run`.
macro_rules! drive {{
    ($m:path, $input:expr, $decode:expr, $new:expr) => {{{{
        use $m as m;
        let (n, t, data) = header($input);
        let xs: Vec<_> = $decode(data);
        assert_eq!(xs.len(), n * t);
        let mut model = $new;
        let mut out: Vec<i32> = Vec::with_capacity(n * t * m::OUTPUT_SIZE);
        for s in 0..n {{
            if s % 3 != 2 {{
                model.reset();
            }}
            let seq = &xs[s * t..(s + 1) * t];
            if s % 2 == 0 {{
                for x in seq {{
                    out.extend_from_slice(model.step(step_arg!(x)));
                }}
            }} else {{
                // One spare row: run must stop at the end of the inputs.
                let mut rows = vec![[i32::MIN; m::OUTPUT_SIZE]; t + 1];
                assert_eq!(model.run(seq, &mut rows), t);
                assert!(rows[t].iter().all(|&v| v == i32::MIN));
                for r in &rows[..t] {{
                    out.extend_from_slice(r);
                }}
            }}
        }}
        out
    }}}};
}}

macro_rules! tokens {{
    ($m:path, $input:expr, $new:expr) => {{{{
        macro_rules! step_arg {{ ($x:expr) => {{ *$x }}; }}
        drive!($m, $input, |d: &[u8]| d
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect(), $new)
    }}}};
}}

macro_rules! features {{
    ($m:path, $input:expr, $new:expr) => {{{{
        macro_rules! step_arg {{ ($x:expr) => {{ $x }}; }}
        use $m as mm;
        drive!($m, $input, |d: &[u8]| d
            .chunks_exact(mm::INPUT_SIZE)
            .map(|c| {{
                let mut v = [0i8; mm::INPUT_SIZE];
                for (dst, src) in v.iter_mut().zip(c) {{
                    *dst = *src as i8;
                }}
                v
            }})
            .collect(), $new)
    }}}};
}}

fn main() {{
    let args: Vec<String> = std::env::args().collect();
    if args[1] == "--tables" {{
        type Check = fn() -> Option<(usize, i32, i32, i32)>;
        let checks: &[(&str, Check)] = &[
{checks}        ];
        for (module, check) in checks {{
            if let Some((table, x, got, want)) = check() {{
                eprintln!("{{module}}: table {{table}} at {{x}}: generated {{got}}, runtime {{want}}");
                std::process::exit(1);
            }}
        }}
        println!("{{}} modules checked", checks.len());
        return;
    }}
    if args[1] == "--kernels" {{
        let kernels: &[(&str, &str)] = &[
{kernels}        ];
        for (module, isa) in kernels {{
            println!("{{module}} {{isa}}");
        }}
        return;
    }}
    // SIMD models: the kernel named by IRNN_KERNEL (scalar: the portable one) instead
    // of the detected one.
    let forced: Option<irnn_runtime::simd::Kernel> = std::env::var("IRNN_KERNEL").ok().map(|name| {{
        irnn_runtime::simd::Isa::ALL
            .into_iter()
            .find(|i| i.name() == name)
            .and_then(irnn_runtime::simd::Kernel::new)
            .unwrap_or_else(|| panic!("kernel {{name}} does not run here"))
    }});
    let _ = forced;
    let input = std::fs::read(&args[2]).expect("read input");
    let out: Vec<i32> = match args[1].as_str() {{
{arms}        other => panic!("unknown module {{other}}"),
    }};
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&args[3], bytes).expect("write output");
}}
"#
    );
    write_if_changed(&src.join("main.rs"), main.as_bytes()).expect("write");
    // Drop modules of earlier runs that are no longer generated.
    if let Ok(entries) = std::fs::read_dir(&gen) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name
                .strip_suffix(".rs")
                .is_some_and(|m| !cases.contains_key(m))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Must build and run bit-exact.

#[test]
fn synthetic_models_run_bit_exact_in_every_unroll_mode() {
    let h = harness();
    let mut compared = BTreeMap::new();
    for name in SYNTHETIC {
        for u in MODES {
            let module = format!("{name}_{}", mode_name(u));
            let outputs = h.check_bit_exact(&module);
            compared.insert(module, outputs);
        }
    }
    // Each module matched on every output of its inputs' steps, and on outputs that
    // vary: agreeing on nothing, or on a constant, would not test the generated code.
    for (module, outputs) in &compared {
        let case = &h.cases[module];
        let (n, t) = case.inputs.dims();
        assert_eq!(outputs.len(), n * t * case.program.output.size, "{module}");
        assert!(
            outputs.iter().any(|&v| v != outputs[0]),
            "{module}: {} outputs compared, all equal to {:?}",
            outputs.len(),
            outputs.first()
        );
    }
    let ran = compared.values().filter(|o| !o.is_empty()).count();
    assert_eq!(
        ran,
        SYNTHETIC.len() * MODES.len(),
        "modules that ran and matched"
    );
}

const SYNTHETIC: [&str; 4] = ["tok13x7", "tok8x16l2", "feat13x7l2", "feat5x3"];

/// LSTM models also generated with `Fusion::None`: every layer written op by op.
const OP_BY_OP: [&str; 2] = ["tok8x16l2", "feat13x7l2"];

/// The LSTM written op by op (`--fusion none`, no fused LSTM step) is bit-exact too.
#[test]
fn lstm_op_by_op_runs_bit_exact() {
    let h = harness();
    for name in OP_BY_OP {
        let module = format!("{name}_ops");
        let code = &h.cases[&module].file.contents;
        assert!(
            code.contains("lstm step, op by op") && !code.contains("one LSTM step"),
            "{module}: not written op by op"
        );
        let outputs = h.check_bit_exact(&module);
        assert!(outputs.iter().any(|&v| v != outputs[0]), "{module}");
    }
}

/// Saturating and extreme inputs and a 100,000-step run, with overflow checks on (the
/// checked harness): every output equals the interpreter's, for LSTM, GRU and RNN.
#[test]
fn extreme_inputs_and_long_runs_are_bit_exact_with_overflow_checks() {
    let h = harness();
    for name in EXTREME {
        for kind in ["extreme", "long"] {
            let module = format!("{name}_{kind}");
            let outputs = h.check_bit_exact(&module);
            let (n, t) = h.cases[&module].inputs.dims();
            assert_eq!(
                outputs.len(),
                n * t * h.cases[&module].program.output.size,
                "{module}"
            );
        }
    }
}

#[test]
fn real_models_run_bit_exact() {
    let h = harness();
    let real: Vec<&String> = h
        .cases
        .keys()
        .filter(|m| m.starts_with("charlm_") || m.starts_with("features_"))
        .collect();
    if !skip::requires(
        "real_models_run_bit_exact",
        "every shipped model",
        !real.is_empty(),
    ) {
        return;
    }
    for m in real {
        h.check_bit_exact(m);
    }
}

#[test]
fn hostile_names_compile_and_match_the_plain_model() {
    let h = harness();
    for u in MODES {
        let plain = format!("tok13x7_{}", mode_name(u));
        let hostile = format!("hostile_{}", mode_name(u));
        h.check_bit_exact(&hostile);
        assert_eq!(h.run(&hostile), h.run(&plain), "{hostile} vs {plain}");
        let file = &h.cases[&hostile].file;
        assert!(
            file.name.strip_suffix(".rs").is_some_and(|s| s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
            "{}",
            file.name
        );
        // Outside comments and string literals the code is word for word the plain
        // model's: nothing from the names reached the code.
        assert_eq!(
            code_words(&file.contents),
            code_words(&h.cases[&plain].file.contents),
            "{hostile}"
        );
    }
}

/// The generated PWL evaluators (bucket index, then int32 piece arithmetic or the
/// runtime on one piece) equal `Pwl::eval` on every input of every table of every case.
#[test]
fn table_evaluators_match_the_runtime_exhaustively() {
    run_table_checks(harness());
}

/// `--tables` of a harness: every table evaluator of every case, and on the VNNI
/// target the register forms through `Kernel::pwl_i16`.
fn run_table_checks(h: &Harness) {
    let out = h.command().arg("--tables").output().expect("harness runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The VNNI cases' register-form tables through `Kernel::pwl_i16` (AVX-512 on a CPU
/// that has it, the scalar evaluator otherwise) and the AVX2 cases' gather-form tables
/// through `Kernel::pwl_i16_gather` equal `Pwl::eval` on every int16, in the checked
/// build and in the release build (where the SIMD code is optimized).
#[test]
fn array_form_tables_match_the_runtime_exhaustively() {
    if !cpu_runs(Target::Avx512Vnni) {
        eprintln!("note: this CPU lacks AVX-512 VNNI: pwl_i16 runs its scalar path here");
    }
    // The cases must use the forms at all: every table of every AVX2 and VNNI case has
    // one (at most 64 pieces, int32 arithmetic, at most two starts per bucket).
    for (module, case) in &x86_harness().cases {
        for k in case.program.used_tables() {
            let t = &case.program.tables[k];
            let i = irnn_codegen::back::pwl_index::build(t).expect("index");
            let has = match case.target {
                Target::Avx2 => irnn_codegen::back::pwl_index::gather_form(t, &i).is_some(),
                _ => irnn_codegen::back::pwl_index::register_form(t, &i, 64).is_some(),
            };
            assert!(has, "{module}: table {k} has no whole-array form");
        }
    }
    run_table_checks(x86_harness());
    run_table_checks(x86_release_harness());
}

/// The generated code lands in users' crates: it must pass clippy's default lints.
#[test]
fn generated_code_is_clippy_clean() {
    let h = harness();
    let has_clippy = Command::new(env!("CARGO"))
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !skip::requires("generated_code_is_clippy_clean", "cargo clippy", has_clippy) {
        return;
    }
    let out = Command::new(env!("CARGO"))
        .args(["clippy", "--quiet", "--offline", "--manifest-path"])
        .arg(h.krate.join("Cargo.toml"))
        .args(["--", "-D", "warnings"])
        .env("CARGO_TARGET_DIR", &h.target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo clippy runs");
    assert!(
        out.status.success(),
        "clippy finds problems in the generated code:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------
// Must generate: determinism, header, API, forbidden tokens.

#[test]
fn generation_is_deterministic() {
    let m = synth_model("det", Some(9), 6, 5, 2, 4, 7);
    for u in MODES {
        let a = gen_one(&m.program, u);
        let b = gen_one(&m.program.clone(), u);
        assert_eq!(a, b, "{}", mode_name(u));
        // Loading and lowering the same files again gives the same bytes too.
        let again =
            irnn_codegen::lower::lower(&irnn_codegen::graph::Graph::load(&m.graph).unwrap())
                .unwrap();
        assert_eq!(gen_one(&again, u), a, "{} after reloading", mode_name(u));
    }
}

#[test]
fn header_and_api_are_as_documented() {
    let m = synth_model("api", None, 13, 7, 1, 3, 9);
    let f = gen_one(&m.program, Unroll::Inner);
    assert_eq!(f.name, "api.rs");
    let head: Vec<&str> = f.contents.lines().take(3).collect();
    assert!(head[0].starts_with("// Generated by irnn "), "{}", head[0]);
    assert!(head[1].contains(&m.program.model_hash), "{}", head[1]);
    assert!(
        head[2].contains("unroll=inner") && head[2].contains("target=scalar"),
        "{}",
        head[2]
    );
    for needle in [
        "pub const INPUT_SIZE: usize = 13;",
        "pub const OUTPUT_SIZE: usize = 3;",
        "pub const INPUT_ZERO_POINT: i32 = ",
        "pub const INPUT_SCALE: (i32, i32) = (",
        "pub const OUTPUT_SCALE: (i32, i32) = (",
        "pub struct Model {",
        "pub const fn new() -> Self",
        "pub fn reset(&mut self)",
        "pub fn step(&mut self, x: &[i8; INPUT_SIZE]) -> &[i32; OUTPUT_SIZE]",
        "pub fn run(&mut self, inputs: &[[i8; INPUT_SIZE]], out: &mut [[i32; OUTPUT_SIZE]]) -> usize",
    ] {
        assert!(squash(&f.contents).contains(&squash(needle)), "missing `{needle}` in\n{}", f.contents);
    }
    assert!(
        !f.contents.contains("#!["),
        "no inner attributes in a module body"
    );
    let t = synth_model("api_tok", Some(30), 4, 3, 1, 30, 9);
    let f = gen_one(&t.program, Unroll::None);
    for needle in [
        "pub const VOCAB_SIZE: usize = 30;",
        "pub const INPUT_SIZE: usize = 30;",
        "pub fn step(&mut self, token: u32) -> &[i32; OUTPUT_SIZE]",
        "pub fn run(&mut self, inputs: &[u32], out: &mut [[i32; OUTPUT_SIZE]]) -> usize",
    ] {
        assert!(
            squash(&f.contents).contains(&squash(needle)),
            "missing `{needle}`"
        );
    }
}

/// `s` without whitespace and trailing commas (prettyplease breaks long signatures).
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .replace(",)", ")")
}

/// Identifiers and numbers of `code` outside comments and string literals.
fn code_words(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let (mut i, mut words, mut cur) = (0, Vec::new(), String::new());
    let flush = |cur: &mut String, words: &mut Vec<String>| {
        if !cur.is_empty() {
            words.push(std::mem::take(cur));
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                flush(&mut cur, &mut words);
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                flush(&mut cur, &mut words);
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphanumeric()
                || c == b'_'
                || (c == b'.'
                    && !cur.is_empty()
                    && cur.bytes().all(|d| d.is_ascii_digit())
                    && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                cur.push(c as char);
                i += 1;
            }
            _ => {
                flush(&mut cur, &mut words);
                i += 1;
            }
        }
    }
    flush(&mut cur, &mut words);
    words
}

#[test]
fn generated_code_has_no_float_unsafe_heap_or_std() {
    let m = synth_model("words", Some(12), 13, 7, 2, 12, 11);
    for u in MODES {
        let f = gen_one(&m.program, u);
        for w in code_words(&f.contents) {
            assert!(
                !["f32", "f64", "unsafe", "std", "alloc", "Vec", "Box", "String"]
                    .contains(&w.as_str()),
                "{}: forbidden word `{w}`",
                mode_name(u)
            );
            assert!(!w.contains('.'), "{}: float literal `{w}`", mode_name(u));
        }
        // Guard the scanner itself.
        assert!(code_words("let x: f32 = 1.5; // f64\n\"unsafe\"").contains(&"f32".to_string()));
        assert!(code_words("let x = 1.5;").contains(&"1.5".to_string()));
        assert!(!code_words("// f64\n\"unsafe\"")
            .iter()
            .any(|w| w == "f64" || w == "unsafe"));
    }
}

// ---------------------------------------------------------------------------------
// Must fail with a given message.

#[test]
fn full_unroll_refuses_large_layers() {
    // 4 · 64 · (64 + 64) = 32768 LSTM weights > FULL_UNROLL_MAX_WEIGHTS.
    let m = synth_model("big", Some(5), 64, 64, 1, 5, 3);
    let lstm = m.program.layers[lstm_layers(&m.program)[0]]
        .name()
        .to_string();
    match generate(&m.program, &opts(Unroll::Full)) {
        Err(e @ GenError::Layer { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&lstm), "{msg}");
            assert!(msg.contains("32768 weights"), "{msg}");
            assert!(
                msg.contains(&irnn_codegen::back::FULL_UNROLL_MAX_WEIGHTS.to_string()),
                "{msg}"
            );
            assert!(msg.contains("inner"), "{msg}");
        }
        other => panic!("expected a layer error, got {:?}", other.map(|f| f.len())),
    }
    // The other modes take the same model.
    for u in [Unroll::None, Unroll::Inner] {
        gen_one(&m.program, u);
    }
}

#[test]
fn broken_programs_are_refused_not_miscompiled() {
    let m = synth_model("broken", None, 4, 3, 1, 2, 5);
    let mut p = m.program.clone();
    edit_lstm(&mut p, lstm_layers(&m.program)[0], |l| {
        l.w_ih.pop();
    });
    let err = generate(&p, &opts(Unroll::None)).unwrap_err().to_string();
    assert!(err.contains("w_ih has 47 elements; expected 48"), "{err}");
    let mut p = m.program.clone();
    if let Some(LayerIr::Linear(l)) = p.layers.last_mut() {
        l.bias[0] = i32::MAX;
    }
    let err = generate(&p, &opts(Unroll::None)).unwrap_err().to_string();
    assert!(err.contains("accumulator"), "{err}");
}

// ---------------------------------------------------------------------------------
// SIMD targets: the runtime's packed kernels, bit-exact with the interpreter.
//
// x86 (avx2, avx512vnni) runs natively; AArch64 (neon, neon-dotprod) is cross-built
// with `aarch64-linux-gnu-gcc` as the linker and run under `qemu-aarch64 -cpu max`.
// Every SIMD model also runs with `Kernel::PORTABLE` (the fallback on the same packed
// weights), and every harness is built twice: `dev` at opt-level 1 with overflow checks,
// and `release` (opt-level 3), where LLVM vectorizes the step that runs inside
// `Kernel::vectorize` for the picked kernel's instruction set. Synthetic shapes hit every kernel tail: rows = 4·hidden not a multiple of
// four blocks (80 rows: 10 AVX2 blocks, 5 VNNI blocks; 28 rows: 7 NEON blocks), single
// partial blocks (outputs 3, 5, 7, 10), odd group counts (9 and 20 columns) and
// columns not a multiple of 4 (9, 13); one model has −128 weights in one matrix (the
// AVX2 sign trick cannot take them: that matrix runs the portable kernel).

const X86_TARGETS: [Target; 2] = [Target::Avx2, Target::Avx512Vnni];
const ARM_TARGETS: [Target; 2] = [Target::Neon, Target::NeonDotprod];

/// SIMD shapes also generated with `Fusion::None` (module `{label}_ops_{target}`): the
/// LSTM op by op on the packed kernels.
const SIMD_OP_BY_OP: [&str; 2] = ["tok_mid", "feat_mid"];

fn module_name(label: &str, target: Target) -> String {
    format!("{label}_{}", target.name().replace('-', "_"))
}

/// The shipped char LM graph and its test data (the same files the README uses).
fn charlm_case() -> (Program, Inputs) {
    let root = repo_root();
    let graph = root.join("examples/charlm/charlm.irnn.json");
    let program = irnn_codegen::lower::lower(
        &irnn_codegen::graph::Graph::load(&graph).expect("the shipped charlm graph loads"),
    )
    .expect("lowers");
    let inputs = npy_inputs(&program, &root.join("examples/charlm/data/test_small.npy"));
    let (n, t) = inputs.dims();
    assert!(n * t >= 200, "charlm test data: {n} x {t} steps");
    (program, inputs)
}

/// `program` with −128 in every fifth weight of the first LSTM layer's `W_hh`.
fn with_min_weights(program: &Program) -> Program {
    let mut p = program.clone();
    p.name = format!("{}_min", p.name);
    edit_lstm(&mut p, lstm_layers(program)[0], |l| {
        for (k, w) in l.w_hh.iter_mut().enumerate() {
            if k % 5 == 0 {
                *w = -128;
            }
        }
    });
    irnn_codegen::back::validate::check_program(&p, Unroll::None)
        .expect("the -128 model still passes the accumulator bound");
    p
}

/// `program` with one gate requantizer that scales up (factor 1: `Requant::ONE`), so
/// that its layer's gate pre-activations leave the branch-free forms
/// (`Kernel::gate_sums` then applies `Requant::apply` to every row).
fn with_upscaled_gate(program: &Program) -> Program {
    let mut p = program.clone();
    p.name = format!("{}_up", p.name);
    edit_lstm(&mut p, lstm_layers(program)[0], |l| {
        l.req_h[3] = irnn_runtime::Requant::ONE;
    });
    irnn_codegen::back::validate::check_program(&p, Unroll::None)
        .expect("the model with an upscaling gate requantizer still validates");
    p
}

fn simd_harness(
    targets: &[Target],
    root: PathBuf,
    cross: Option<Cross>,
    profile: Profile,
) -> Harness {
    let started = std::time::Instant::now();
    let mut programs: Vec<(String, Program, Inputs, Fusion)> = Vec::new();
    let mut models = Vec::new();
    for (k, &(label, vocab, input, hidden, layers, outputs, seed)) in SIMD_SHAPES.iter().enumerate()
    {
        let m = synth_model(label, vocab, input, hidden, layers, outputs, seed);
        let inputs = random_inputs(&m.program, 4, 100, 2000 + k as u64);
        if label == "feat_mid" {
            programs.push((
                "min128".into(),
                with_min_weights(&m.program),
                inputs.clone(),
                Fusion::Auto,
            ));
            programs.push((
                "upscale".into(),
                with_upscaled_gate(&m.program),
                inputs.clone(),
                Fusion::Auto,
            ));
        }
        if SIMD_OP_BY_OP.contains(&label) {
            let (label, program) = (format!("{label}_ops"), m.program.clone());
            programs.push((label, program, inputs.clone(), Fusion::None));
        }
        programs.push((label.into(), m.program.clone(), inputs, Fusion::Auto));
        models.push(m);
    }
    for (k, s) in cell_models().into_iter().enumerate() {
        let inputs = random_inputs(&s.model.program, 4, 100, 3000 + k as u64);
        programs.push((
            s.label.into(),
            s.model.program.clone(),
            inputs,
            Fusion::Auto,
        ));
        models.push(s.model);
    }
    let (charlm, inputs) = charlm_case();
    programs.push(("charlm".into(), charlm, inputs, Fusion::Auto));
    let mut cases = BTreeMap::new();
    for &target in targets {
        for (label, program, inputs, fusion) in &programs {
            cases.insert(
                module_name(label, target),
                Case {
                    program: program.clone(),
                    inputs: inputs.clone(),
                    file: gen_fused(program, Unroll::None, target, *fusion),
                    target,
                },
            );
        }
    }
    build_crate(&root, cases, models, cross, profile, started)
}

fn x86_harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        simd_harness(
            &X86_TARGETS,
            repo_root().join("target").join("gen-rust-tests-x86"),
            None,
            Profile::Checked,
        )
    })
}

fn x86_release_harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        simd_harness(
            &X86_TARGETS,
            repo_root()
                .join("target")
                .join("gen-rust-tests-x86-release"),
            None,
            Profile::Release,
        )
    })
}

/// `qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu`, or what
/// `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER` says.
fn arm_runner() -> Vec<String> {
    std::env::var("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER")
        .unwrap_or_else(|_| "qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu".into())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Whether the AArch64 tests can run: the cross linker and qemu must be installed
/// (`.ci/run` installs them); the policy is `support::skip::cross_tools`'s.
fn cross_tools_present(test: &str) -> bool {
    let runner = arm_runner();
    let linker = std::env::var("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER")
        .unwrap_or_else(|_| "aarch64-linux-gnu-gcc".into());
    let missing: Vec<&str> = [linker.as_str(), runner[0].as_str()]
        .into_iter()
        .filter(|tool| {
            !Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    skip::cross_tools(test, &missing)
}

fn arm_harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        simd_harness(
            &ARM_TARGETS,
            repo_root().join("target").join("gen-rust-tests-arm"),
            Some(Cross {
                triple: "aarch64-unknown-linux-gnu",
                runner: arm_runner(),
            }),
            Profile::Checked,
        )
    })
}

fn arm_release_harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        simd_harness(
            &ARM_TARGETS,
            repo_root()
                .join("target")
                .join("gen-rust-tests-arm-release"),
            Some(Cross {
                triple: "aarch64-unknown-linux-gnu",
                runner: arm_runner(),
            }),
            Profile::Release,
        )
    })
}

/// `module isa` lines: the kernel `Model::new` picked in the harness process.
fn picked_kernels(h: &Harness) -> BTreeMap<String, String> {
    let out = h.command().arg("--kernels").output().expect("harness runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(m, k)| (m.to_string(), k.to_string()))
        .collect()
}

/// Every case of `targets` bit-exact with the picked kernel and with the portable one;
/// `expect_kernel(target)` is the kernel `Model::new` must pick.
fn check_simd(h: &Harness, targets: &[Target], expect_kernel: impl Fn(Target) -> &'static str) {
    let picked = picked_kernels(h);
    let mut checked = 0;
    for (module, case) in &h.cases {
        if !targets.contains(&case.target) {
            continue;
        }
        assert_eq!(
            picked.get(module).map(String::as_str),
            Some(expect_kernel(case.target)),
            "{module}: kernel picked by Model::new"
        );
        if module.contains("_ops_") {
            let code = &case.file.contents;
            assert!(
                code.contains("lstm step, op by op") && !code.contains("one LSTM step"),
                "{module}: not written op by op"
            );
        }
        h.check_bit_exact_with(module, None);
        h.check_bit_exact_with(module, Some("scalar"));
        // AVX2's layout picks AVX-VNNI where the CPU has it: the sign trick too.
        if case.target == Target::Avx2 && picked.get(module).is_some_and(|k| k == "avx-vnni") {
            h.check_bit_exact_with(module, Some("avx2"));
        }
        checked += 1;
    }
    // Per target: the SIMD shapes, min128, upscale, the char LM, the GRU/RNN models
    // and the op-by-op LSTMs.
    assert_eq!(
        checked,
        (SIMD_SHAPES.len() + 3 + cell_models_count() + SIMD_OP_BY_OP.len()) * targets.len()
    );
}

/// The kernel `Model::new` must pick on this CPU for an x86 target (AVX-VNNI for
/// AVX2's layout where the CPU has it).
fn x86_kernel(t: Target) -> &'static str {
    if t == Target::Avx2 && cpu_has_avx_vnni() {
        "avx-vnni"
    } else if cpu_runs_or_skip(
        t,
        &format!("the {} kernel (the portable fallback still runs)", t.name()),
    ) {
        t.name()
    } else {
        "scalar"
    }
}

#[test]
fn x86_simd_targets_run_bit_exact() {
    check_simd(x86_harness(), &X86_TARGETS, x86_kernel);
}

/// The same in a release build: the step runs inside `Kernel::vectorize`, so at
/// opt-level 3 LLVM vectorizes its element-wise code for the picked kernel's
/// instruction set (AVX-512 gathers and 64-bit shifts on a VNNI CPU); the portable runs
/// cover the baseline copy of the same step.
#[test]
fn x86_simd_targets_run_bit_exact_in_release_builds() {
    check_simd(x86_release_harness(), &X86_TARGETS, x86_kernel);
}

#[test]
fn arm_simd_targets_run_bit_exact_under_qemu() {
    if !cross_tools_present("arm_simd_targets_run_bit_exact_under_qemu") {
        return;
    }
    let h = arm_harness();
    // qemu's `max` CPU has the dot-product extension.
    check_simd(h, &ARM_TARGETS, |t| t.name());
}

/// The AArch64 targets in a release build (the step vectorized for NEON / dot product
/// inside `Kernel::vectorize`), under qemu.
#[test]
fn arm_simd_targets_run_bit_exact_in_release_builds_under_qemu() {
    if !cross_tools_present("arm_simd_targets_run_bit_exact_in_release_builds_under_qemu") {
        return;
    }
    check_simd(arm_release_harness(), &ARM_TARGETS, |t| t.name());
}

/// The runtime's own kernel property tests (NEON and dot product against an i64 model)
/// under qemu: `cargo test -p irnn-runtime --lib simd --target aarch64-unknown-linux-gnu`
/// with its own target dir and fewer proptest cases.
#[test]
fn runtime_simd_kernels_pass_under_qemu() {
    if !cross_tools_present("runtime_simd_kernels_pass_under_qemu") {
        return;
    }
    let root = repo_root();
    let triple = "aarch64-unknown-linux-gnu";
    let out = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--offline", "--manifest-path"])
        .arg(root.join("runtime").join("Cargo.toml"))
        .args(["--target", triple, "--lib", "simd", "--", "--nocapture"])
        .env(
            "CARGO_TARGET_DIR",
            root.join("target")
                .join("gen-rust-tests-arm")
                .join("runtime"),
        )
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            arm_runner().join(" "),
        )
        .env("PROPTEST_CASES", "48")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "runtime simd tests under qemu:\n{text}"
    );
    assert!(
        text.contains("\"neon\", \"neon-dotprod\""),
        "the NEON kernels did not run:\n{text}"
    );
}

#[test]
fn simd_rust_is_safe_code_with_aligned_packed_weights() {
    let m = synth_model("words_simd", Some(12), 13, 7, 2, 12, 11);
    for target in X86_TARGETS.into_iter().chain(ARM_TARGETS) {
        let f = gen_for(&m.program, Unroll::None, target);
        for w in code_words(&f.contents) {
            assert!(
                !["f32", "f64", "unsafe", "std", "alloc", "Vec", "Box", "String"]
                    .contains(&w.as_str()),
                "{}: forbidden word `{w}`",
                target.name()
            );
        }
        let c = squash(&f.contents);
        assert!(c.contains("Aligned64<[u8;"), "{}", target.name());
        assert!(
            c.contains("kernel.matvec(&L1_MAT_X,x,&mutacc_x);"),
            "{}",
            target.name()
        );
        // The VNNI kernels' offset biases (AVX-512 VNNI; AVX-VNNI on AVX2's layout).
        assert_eq!(
            c.contains(".with_offset_bias("),
            matches!(target, Target::Avx512Vnni | Target::Avx2),
            "{}",
            target.name()
        );
        for u in [Unroll::Inner, Unroll::Full] {
            let err = generate(&m.program, &GenOptions { target, ..opts(u) })
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--unroll applies to targets with portable kernels only"),
                "{err}"
            );
        }
    }
}
