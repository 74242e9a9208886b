//! The `irnn` command line: `quantize`, `run`, `eval`, `inspect`, `pwl`, `gen`.
//!
//! Each subcommand is a thin shell over the library; errors are reported as one
//! message naming the file and the offending layer, tensor or field, with a non-zero
//! exit code. Output files are written atomically, so a failing command leaves none.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use irnn_codegen::float_ref::{FloatBatch, BATCH_LANES};
use irnn_codegen::graph::{stage_graph, Graph};
use irnn_codegen::interp::{check_features, check_token, Interpreter};
use irnn_codegen::ir::{Activation, InputIr, LayerIr, Program};
use irnn_codegen::lower::lower;
use irnn_codegen::metrics::{argmax, bits};
use irnn_codegen::npy::{read_data, read_labels, DataFile, SeqData};
use irnn_codegen::output::OutputSet;
use irnn_codegen::pwl::FitMethod;
use irnn_codegen::quantize::{quantize_with_progress, QuantizeOptions, RangeMethod};
use irnn_codegen::spec::FloatModel;
use std::path::{Path, PathBuf};

/// irnn: compile recurrent networks to integer-only code.
#[derive(Parser, Debug)]
#[command(name = "irnn", version, about, long_about = None)]
pub struct Cli {
    /// No progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    Sweep,
    Recursive,
    Uniform,
}

impl From<MethodArg> for FitMethod {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Sweep => FitMethod::Sweep,
            MethodArg::Recursive => FitMethod::Recursive,
            MethodArg::Uniform => FitMethod::Uniform,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LangArg {
    Rust,
    C,
}

impl From<LangArg> for irnn_codegen::back::Lang {
    fn from(l: LangArg) -> Self {
        match l {
            LangArg::Rust => irnn_codegen::back::Lang::Rust,
            LangArg::C => irnn_codegen::back::Lang::C,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    Scalar,
    Avx2,
    Avx512vnni,
    Neon,
    NeonDotprod,
    #[value(name = "cortex-m0")]
    CortexM0,
    #[value(name = "cortex-m4")]
    CortexM4,
    #[value(name = "cortex-m7")]
    CortexM7,
    #[value(name = "cortex-m55")]
    CortexM55,
}

impl From<TargetArg> for irnn_codegen::back::Target {
    fn from(t: TargetArg) -> Self {
        match t {
            TargetArg::Scalar => irnn_codegen::back::Target::Scalar,
            TargetArg::Avx2 => irnn_codegen::back::Target::Avx2,
            TargetArg::Avx512vnni => irnn_codegen::back::Target::Avx512Vnni,
            TargetArg::Neon => irnn_codegen::back::Target::Neon,
            TargetArg::NeonDotprod => irnn_codegen::back::Target::NeonDotprod,
            TargetArg::CortexM0 => irnn_codegen::back::Target::CortexM0,
            TargetArg::CortexM4 => irnn_codegen::back::Target::CortexM4,
            TargetArg::CortexM7 => irnn_codegen::back::Target::CortexM7,
            TargetArg::CortexM55 => irnn_codegen::back::Target::CortexM55,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lower")]
enum PrecisionArg {
    Int8,
    F32,
}

impl From<PrecisionArg> for irnn_codegen::back::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Int8 => irnn_codegen::back::Precision::Int8,
            PrecisionArg::F32 => irnn_codegen::back::Precision::F32,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum FusionArg {
    Auto,
    None,
}

impl From<FusionArg> for irnn_codegen::back::Fusion {
    fn from(f: FusionArg) -> Self {
        match f {
            FusionArg::Auto => Self::Auto,
            FusionArg::None => Self::None,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum UnrollArg {
    None,
    Inner,
    Full,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum FunctionArg {
    Sigmoid,
    Tanh,
    Exp,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Quantize a float model by calibration (post-training quantization).
    Quantize {
        /// The float model spec (JSON naming a safetensors file of PyTorch weights).
        spec: PathBuf,
        /// Calibration data: int32/int64 token ids [N, T] or [T], or float32 features [N, T, F].
        #[arg(long)]
        calib: PathBuf,
        /// Output graph, NAME.irnn.json; the tensors go beside it as NAME.irnn.safetensors.
        #[arg(short, long)]
        output: PathBuf,
        /// Take activation ranges at this percentile (e.g. 99.99) instead of min/max.
        #[arg(long)]
        percentile: Option<f64>,
        /// PWL tolerance in output LSBs.
        #[arg(long, default_value_t = 1.0)]
        pwl_tolerance: f64,
        /// PWL piece budget per table.
        #[arg(long, default_value_t = 64)]
        pwl_max_pieces: usize,
        /// PWL fitting method.
        #[arg(long, value_enum, default_value_t = MethodArg::Sweep)]
        pwl_method: MethodArg,
        /// Print the summary (steps, tables, ranges) as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run the reference interpreter: int32 outputs per step, [N, T, O] or [T, O].
    Run {
        /// The quantized graph.
        model: PathBuf,
        /// Input data (.npy): token ids, float32 features (quantized with the model's
        /// input parameters) or int8 features (taken as already quantized).
        #[arg(long)]
        data: PathBuf,
        /// Output .npy (int32).
        #[arg(long)]
        out: PathBuf,
        /// Print the summary as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Compare the integer model with the float model.
    Eval {
        /// The quantized graph.
        model: PathBuf,
        /// The float model spec.
        #[arg(long = "float")]
        float_spec: PathBuf,
        /// Evaluation data.
        #[arg(long)]
        data: PathBuf,
        /// Class labels [N] (classifier: logits of the last step).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write an HTML report of what quantization did: PWL activations against the exact
    /// functions, calibrated ranges against observed activations, float vs integer per
    /// layer and per step, the end metric of `irnn eval`, sizes per target.
    Report {
        /// The quantized graph.
        model: PathBuf,
        /// The float model spec.
        #[arg(long = "float")]
        float_spec: PathBuf,
        /// Data to run both models on (as for `irnn eval`).
        #[arg(long)]
        data: PathBuf,
        /// Class labels [N] (classifier: accuracy of the last step).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Output HTML file (one self-contained file: inline SVG, no script).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Describe a quantized graph: layers, shapes, bit widths, scales, PWL tables, sizes.
    Inspect {
        /// The quantized graph.
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also report flash (code + constants) and RAM (state + scratch) of the
        /// generated C for this target (e.g. cortex-m4).
        #[arg(long, value_enum)]
        target: Option<TargetArg>,
    },
    /// Quantization-aware training (runs the `irnn-train` program, built from the
    /// `train/` crate: `cargo build --release -p irnn-train`). `irnn train --help` shows
    /// its options.
    #[command(disable_help_flag = true)]
    Train {
        /// Arguments passed to `irnn-train` unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Generate Rust or C source for a quantized model.
    Gen {
        /// The quantized graph.
        model: PathBuf,
        /// Output language.
        #[arg(long, value_enum)]
        lang: LangArg,
        /// Instruction-set target.
        #[arg(long, value_enum, default_value_t = TargetArg::Scalar)]
        target: TargetArg,
        /// Loop unrolling: none (constant-trip loops), inner (unrolled dot products) or
        /// full (straight-line code, small layers only).
        #[arg(long, value_enum, default_value_t = UnrollArg::None)]
        unroll: UnrollArg,
        /// int8: the integer model; f32: the same model in f32 (weights dequantized from
        /// the graph), the float counterpart for speed comparisons.
        #[arg(long, value_enum, default_value_t = PrecisionArg::Int8)]
        precision: PrecisionArg,
        /// auto: fused kernels where a layer matches one (the LSTM step); none: every
        /// recurrent layer op by op (the same results; plainer, slower code).
        #[arg(long, value_enum, default_value_t = FusionArg::Auto)]
        fusion: FusionArg,
        /// Output directory (created if missing).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write a random float recurrent model (PyTorch names and init) and random data,
    /// for benchmarks and experiments.
    Synth {
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Model name.
        #[arg(long, default_value = "synth")]
        name: String,
        /// Token input with this vocabulary (an embedding of width --input); default: float features.
        #[arg(long)]
        vocab: Option<usize>,
        /// Input (feature or embedding) width.
        #[arg(long, default_value_t = 40)]
        input: usize,
        /// The recurrent cell: lstm, gru, rnn (tanh) or rnn-relu.
        #[arg(long, default_value = "lstm", value_parser = ["lstm", "gru", "rnn", "rnn-relu"])]
        cell: String,
        /// Hidden size.
        #[arg(long, default_value_t = 64)]
        hidden: usize,
        /// Stacked recurrent layers.
        #[arg(long, default_value_t = 1)]
        layers: usize,
        /// Output width.
        #[arg(long, default_value_t = 10)]
        outputs: usize,
        /// Sequences and steps of the random data written as data.npy.
        #[arg(long, default_value_t = 8)]
        sequences: usize,
        /// Steps per sequence of data.npy.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Time the generated C of a model (µs per step of NAME_step, and for int8 of one
    /// NAME_run over the whole sequence; weight bytes, code size) for one or more
    /// targets, with the system C compiler ($CC; default clang if installed, else cc) at -O3.
    Bench {
        /// The quantized graph.
        model: PathBuf,
        /// Targets to time (repeat or comma-separate); the first row is the baseline
        /// of the speed-up column. Default: scalar, then every SIMD target this CPU has.
        /// Cortex-M targets report guest instructions per step on their emulated board
        /// (needs arm-none-eabi-gcc and qemu-system-arm).
        #[arg(long, value_enum, value_delimiter = ',')]
        target: Vec<TargetArg>,
        /// Steps per timed run.
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Precisions to time per target (comma-separated): the integer code and its f32
        /// counterpart (same generator, same SIMD care).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PrecisionArg::Int8, PrecisionArg::F32])]
        precision: Vec<PrecisionArg>,
        /// Language of the timed code: the generated C (system C compiler) or the
        /// generated Rust (a scratch crate built with cargo against irnn-runtime; targets
        /// this CPU runs only).
        #[arg(long, value_enum, default_value_t = LangArg::C)]
        lang: LangArg,
        /// Fusion of the int8 code, as for `irnn gen`: none times the op-by-op code.
        #[arg(long, value_enum, default_value_t = FusionArg::Auto)]
        fusion: FusionArg,
        /// Print the rows as one JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Fit a PWL table and print its report, or the error-versus-pieces comparison.
    Pwl {
        /// Function to fit.
        #[arg(long, value_enum, default_value_t = FunctionArg::Sigmoid)]
        function: FunctionArg,
        /// Fractional bits of the int16 input grid.
        #[arg(long, default_value_t = 12)]
        input_frac_bits: u32,
        /// Tolerance in output LSBs.
        #[arg(long, default_value_t = 1.0)]
        tolerance: f64,
        /// Piece budget.
        #[arg(long, default_value_t = 64)]
        max_pieces: usize,
        /// Fitting method.
        #[arg(long, value_enum, default_value_t = MethodArg::Sweep)]
        method: MethodArg,
        /// Print the error-versus-pieces table of all methods instead.
        #[arg(long)]
        compare: bool,
        /// Print the fitted table as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the `irnn` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    crate::output::run_reporting(|| run_cli(cli))
}

/// Runs a parsed command line.
pub fn run_cli(cli: Cli) -> Result<()> {
    crate::progress::set_quiet(cli.quiet);
    match cli.command {
        Command::Quantize {
            spec,
            calib,
            output,
            percentile,
            pwl_tolerance,
            pwl_max_pieces,
            pwl_method,
            json,
        } => cmd_quantize(
            &spec,
            &calib,
            &output,
            json,
            QuantizeOptions {
                range: match percentile {
                    Some(p) if (50.0..=100.0).contains(&p) => RangeMethod::Percentile(p),
                    Some(p) => bail!("--percentile {p}: must be between 50 and 100"),
                    None => RangeMethod::MinMax,
                },
                pwl_tolerance_lsb: pwl_tolerance,
                pwl_max_pieces,
                pwl_method: pwl_method.into(),
                ..QuantizeOptions::default()
            },
        ),
        Command::Run {
            model,
            data,
            out,
            json,
        } => cmd_run(&model, &data, &out, json),
        Command::Train { args } => cmd_train(&args),
        Command::Gen {
            model,
            lang,
            target,
            unroll,
            precision,
            fusion,
            output,
        } => {
            let opts = irnn_codegen::compile::CompileOptions {
                lang: lang.into(),
                target: target.into(),
                unroll: match unroll {
                    UnrollArg::None => irnn_codegen::back::Unroll::None,
                    UnrollArg::Inner => irnn_codegen::back::Unroll::Inner,
                    UnrollArg::Full => irnn_codegen::back::Unroll::Full,
                },
                precision: precision.into(),
                fusion: fusion.into(),
            };
            cmd_gen(&model, &opts, &output)
        }
        Command::Synth {
            output,
            name,
            vocab,
            input,
            cell,
            hidden,
            layers,
            outputs,
            sequences,
            steps,
            seed,
        } => {
            if input == 0
                || hidden == 0
                || layers == 0
                || outputs == 0
                || sequences == 0
                || steps == 0
            {
                bail!("--input, --hidden, --layers, --outputs, --sequences and --steps must be at least 1");
            }
            crate::flags::check_synth(vocab, input, hidden, layers, outputs, sequences, steps)?;
            let spec = irnn_codegen::synth::SynthSpec {
                name,
                vocab_size: vocab,
                input_size: input,
                cell: match cell.as_str() {
                    "gru" => irnn_codegen::spec::Cell::Gru,
                    "rnn" => irnn_codegen::spec::Cell::Rnn(irnn_codegen::spec::Nonlinearity::Tanh),
                    "rnn-relu" => {
                        irnn_codegen::spec::Cell::Rnn(irnn_codegen::spec::Nonlinearity::Relu)
                    }
                    _ => irnn_codegen::spec::Cell::Lstm,
                },
                hidden_size: hidden,
                num_layers: layers,
                output_size: outputs,
                gain: 2.0,
                seed,
            };
            // Model, weights and data: one output set.
            let mut set = OutputSet::new(&output)?;
            let spec_name = irnn_codegen::synth::stage_float_model(&mut set, &spec)?;
            let data =
                irnn_codegen::synth::random_data_npy(&spec, sequences, steps, 1.0, seed + 1)?;
            set.write("data.npy", &data)?;
            set.commit()?;
            let path = output.join(spec_name);
            eprintln!(
                "wrote {} and {}",
                path.display(),
                output.join("data.npy").display()
            );
            Ok(())
        }
        Command::Eval {
            model,
            float_spec,
            data,
            labels,
            json,
        } => cmd_eval(&model, &float_spec, &data, labels.as_deref(), json),
        Command::Inspect {
            model,
            json,
            target,
        } => cmd_inspect(&model, json, target.map(Into::into)),
        Command::Report {
            model,
            float_spec,
            data,
            labels,
            output,
        } => crate::report::cmd_report(&model, &float_spec, &data, labels.as_deref(), &output),
        Command::Bench {
            model,
            target,
            steps,
            runs,
            precision,
            lang,
            fusion,
            json,
        } => {
            let graph = Graph::load(&model)?;
            let program = lower(&graph)?;
            let precisions: Vec<irnn_codegen::back::Precision> =
                precision.into_iter().map(Into::into).collect();
            let f32_program = if precisions.contains(&irnn_codegen::back::Precision::F32) {
                Some(irnn_codegen::back::float::F32Program::from_graph(&graph)?)
            } else {
                None
            };
            let targets: Vec<irnn_codegen::back::Target> = if target.is_empty() {
                crate::bench::default_targets()
            } else {
                target.into_iter().map(Into::into).collect()
            };
            // Cortex-M targets: instructions counted on the emulated board (int8 C).
            let (cortex_m, targets): (Vec<_>, Vec<_>) =
                targets.into_iter().partition(|t| t.is_cortex_m());
            let cm_rows = cortex_m
                .iter()
                .map(|&t| crate::bench_cm::bench_target(&program, t))
                .collect::<Result<Vec<_>>>()?;
            if !cm_rows.is_empty() && !json {
                print!("{}", crate::bench_cm::table(&program, &cm_rows));
            }
            if targets.is_empty() {
                if json {
                    let v = serde_json::json!({ "model": program.name, "cortex_m": cm_rows });
                    println!("{}", serde_json::to_string(&v)?);
                }
                return Ok(());
            }
            let opts = crate::bench::BenchOptions {
                targets,
                precisions,
                steps,
                runs,
                cc: crate::bench::default_cc(),
                lang: lang.into(),
                fusion: fusion.into(),
            };
            let compiler = match opts.lang {
                irnn_codegen::back::Lang::C => {
                    format!("{} {}", opts.cc, crate::bench::OPT_LEVEL)
                }
                irnn_codegen::back::Lang::Rust => format!(
                    "cargo build --release with the target's -C target-feature \
                     (irnn-runtime from {})",
                    crate::bench::runtime_dir()?.display()
                ),
            };
            if !json {
                match opts.lang {
                    irnn_codegen::back::Lang::C => {
                        println!("compiler: {compiler} (set $CC to change)")
                    }
                    irnn_codegen::back::Lang::Rust => println!("compiler: {compiler}"),
                }
            }
            let rows = crate::bench::bench(&program, f32_program.as_ref(), &opts)?;
            if json {
                let mut v = crate::summary::bench(&program, &compiler, &rows);
                if let (Some(o), false) = (v.as_object_mut(), cm_rows.is_empty()) {
                    o.insert("cortex_m".into(), serde_json::to_value(&cm_rows)?);
                }
                println!("{}", serde_json::to_string(&v)?);
                return Ok(());
            }
            print!("{}", crate::bench::table(&program, &rows));
            Ok(())
        }
        Command::Pwl {
            function,
            input_frac_bits,
            tolerance,
            max_pieces,
            method,
            compare,
            json,
        } => {
            let function = match function {
                FunctionArg::Sigmoid => Activation::Sigmoid,
                FunctionArg::Tanh => Activation::Tanh,
                FunctionArg::Exp => Activation::Exp,
            };
            if compare {
                print!(
                    "{}",
                    irnn_codegen::pwl::error_vs_pieces_markdown(function, input_frac_bits)
                );
                return Ok(());
            }
            let opts = irnn_codegen::pwl::FitOptions {
                function,
                input_frac_bits,
                output_frac_bits: 15,
                tolerance_lsb: tolerance,
                max_pieces,
                method: method.into(),
            };
            let (table, report) = irnn_codegen::pwl::fit(&opts).map_err(|e| anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&table)?);
            } else {
                let m = irnn_codegen::pwl::measure(&table);
                println!(
                    "{}: {} pieces, max error {:.3} LSB ({:.3e} absolute), at most {} code(s) from the correctly rounded output; method {:?}, tolerance {} LSB {}",
                    table.short_name(),
                    report.pieces,
                    report.max_error_lsb,
                    report.max_error_abs,
                    m.max_code_error,
                    report.method,
                    tolerance,
                    if report.tolerance_met { "met" } else { "NOT met" }
                );
            }
            Ok(())
        }
    }
}

/// `NAME.irnn.json` → `NAME.irnn.safetensors` (file name only).
pub fn tensor_file_name_for(output: &Path) -> Result<String> {
    let file_name = output
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| anyhow!("{}: not a file name", output.display()))?;
    let stem = file_name
        .strip_suffix(".irnn.json")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "{}: the output must be named NAME.irnn.json",
                output.display()
            )
        })?;
    Ok(format!("{stem}.irnn.safetensors"))
}

/// Refuses to go on when an output path is one of the inputs (the same file after
/// resolving links and `..`): writing it would destroy the input.
fn refuse_overwriting_inputs(outputs: &[&Path], inputs: &[&Path]) -> Result<()> {
    for o in outputs {
        let Ok(out) = std::fs::canonicalize(o) else {
            continue; // a file that does not exist yet is no input
        };
        for i in inputs {
            if std::fs::canonicalize(i).is_ok_and(|inp| inp == out) {
                bail!(
                    "{}: this output is also an input of the command ({}); choose another output path",
                    o.display(),
                    i.display()
                );
            }
        }
    }
    Ok(())
}

fn cmd_quantize(
    spec: &Path,
    calib: &Path,
    output: &Path,
    json: bool,
    opts: QuantizeOptions,
) -> Result<()> {
    crate::flags::check_quantize(&opts)?;
    let tensor_name = tensor_file_name_for(output)?;
    let tensor_path = output.with_file_name(&tensor_name);
    let model = FloatModel::load(spec)?;
    // The float weights the spec names are an input too.
    let weights = std::fs::read_to_string(spec)
        .ok()
        .and_then(|t| serde_json::from_str::<irnn_codegen::spec::SpecFile>(&t).ok())
        .map(|f| irnn_codegen::util::resolve_relative(spec, &f.weights));
    let mut inputs = vec![spec, calib];
    inputs.extend(weights.as_deref());
    refuse_overwriting_inputs(&[output, &tensor_path], &inputs)?;
    let data = read_data(calib)?;
    let bar = crate::progress::bar(data.data.dims().0 as u64, "calibrating");
    let (file, writer, report) =
        quantize_with_progress(&model, &data, calib, &tensor_name, &opts, &mut |done| {
            bar.set_position(done as u64)
        })?;
    bar.finish_and_clear();
    // Both files staged and checked beside the output, then renamed into place
    // together: a graph that fails its own check leaves nothing behind.
    let mut set = OutputSet::for_file(output)?;
    let tmp_json = stage_graph(&mut set, output, &file, &writer).map_err(|e| anyhow!("{e}"))?;
    // Prove the written file loads and lowers before declaring success.
    let graph = Graph::load(&tmp_json).map_err(|e| {
        anyhow!(
            "{}: the quantized graph does not load: {e}",
            output.display()
        )
    })?;
    lower(&graph).map_err(|e| {
        anyhow!(
            "{}: the quantized graph does not lower: {e}",
            output.display()
        )
    })?;
    set.commit()?;
    if json {
        let v = crate::summary::quantize(&model.name, output, file.layers.len(), &report);
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    eprintln!(
        "quantized {} over {} calibration steps: {} layers, {} PWL tables",
        model.name,
        report.steps,
        file.layers.len(),
        report.tables.len()
    );
    for (name, pieces, err) in &report.tables {
        eprintln!("  table {name}: {pieces} pieces, max error {err:.3} LSB");
    }
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// Finds `irnn-train` next to the running executable, else on `PATH`.
fn find_train_program() -> Option<PathBuf> {
    let name = format!("irnn-train{}", std::env::consts::EXE_SUFFIX);
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    })
}

fn cmd_train(args: &[std::ffi::OsString]) -> Result<()> {
    let program = find_train_program().ok_or_else(|| {
        anyhow!(
            "`irnn train` runs the irnn-train program, which is not built: run \
             `cargo build --release -p irnn-train` (it sits next to `irnn` in target/release), \
             or put irnn-train on PATH"
        )
    })?;
    let status = std::process::Command::new(&program)
        .args(args)
        .status()
        .with_context(|| format!("{}: cannot run", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        bail!("{} failed ({status})", program.display())
    }
}

fn cmd_gen(model: &Path, opts: &irnn_codegen::compile::CompileOptions, dir: &Path) -> Result<()> {
    let compiled = irnn_codegen::compile::compile(model, opts)?;
    // A graph or tensor file named like a generated file (`m.rs`, `m.c`) in the output
    // directory would be overwritten.
    let dests: Vec<PathBuf> = compiled.files.iter().map(|f| dir.join(&f.name)).collect();
    let dests: Vec<&Path> = dests.iter().map(PathBuf::as_path).collect();
    let inputs: Vec<&Path> = compiled.inputs.iter().map(PathBuf::as_path).collect();
    refuse_overwriting_inputs(&dests, &inputs)?;
    // All files (header + source, or the Rust module) or none.
    let mut set = OutputSet::new(dir)?;
    for f in &compiled.files {
        set.write(&f.name, f.contents.as_bytes())?;
    }
    set.commit()?;
    for f in &compiled.files {
        let path = dir.join(&f.name);
        eprintln!("wrote {} ({} bytes)", path.display(), f.contents.len());
    }
    Ok(())
}

/// Loads and lowers a graph.
pub fn load_program(path: &Path) -> Result<Program> {
    let graph = Graph::load(path)?;
    Ok(lower(&graph)?)
}

/// Quantizes a float feature with an affine int8 grid (round half away from zero).
pub fn quantize_feature(x: f32, scale: f64, zero_point: i32) -> i8 {
    ((x as f64 / scale).round() + zero_point as f64).clamp(-128.0, 127.0) as i8
}

/// Runs the interpreter over every sequence of `data`, resetting between sequences.
/// Returns `n * t * output_size` int32 values. The sequences are spread over the CPU's
/// cores (each from its reset state, so the outputs are those of one sequential run)
/// and the matrix products run on the CPU's SIMD kernel (the portable interpreter's
/// outputs: tests/interp_pin.rs).
pub fn run_program(program: &Program, data: &DataFile, data_path: &Path) -> Result<Vec<i32>> {
    let (n, _) = data.data.dims();
    run_program_seqs(program, data, data_path, 0..n)
}

/// [`run_program`] over the sequences `seqs` of `data` only (`irnn run` streams its
/// output a few sequences at a time).
pub fn run_program_seqs(
    program: &Program,
    data: &DataFile,
    data_path: &Path,
    seqs: std::ops::Range<usize>,
) -> Result<Vec<i32>> {
    let (start, end) = (seqs.start, seqs.end);
    let n = seqs.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, n.max(1));
    let per = n.div_ceil(threads).max(1);
    let bar = crate::progress::bar(n as u64, "integer");
    let parts: Vec<Result<Vec<i32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (start..end)
            .step_by(per)
            .map(|first| {
                let range = first..(first + per).min(end);
                let bar = &bar;
                scope.spawn(move || run_sequences(program, data, data_path, range, bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("an interpreter thread panicked")))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// [`run_program`] over the sequences `seqs` of `data`, on one thread: in groups of up
/// to [`BATCH_LANES`] sequences stepped in lock step by one interpreter
/// ([`Interpreter::with_lanes`]: each lane's outputs are those of an interpreter on its
/// sequence alone, bit for bit).
fn run_sequences(
    program: &Program,
    data: &DataFile,
    data_path: &Path,
    seqs: std::ops::Range<usize>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<i32>> {
    let (_, t) = data.data.dims();
    let out_size = program.output.size;
    // Every input is checked before any sequence runs, in the order of one sequential
    // run and by the interpreter's own checks, so that an error names the same
    // sequence and step, with the same message, as that run would.
    for s in seqs.clone() {
        for step in 0..t {
            let r = match (&data.data, &program.input) {
                (SeqData::Tokens { data, .. }, _) => check_token(program, data[s * t + step]),
                (SeqData::FeaturesF32 { .. }, InputIr::Tokens { .. }) => {
                    bail!(
                        "{}: the model takes token ids, not float features",
                        data_path.display()
                    )
                }
                (SeqData::FeaturesF32 { f, .. }, _) | (SeqData::FeaturesI8 { f, .. }, _) => {
                    check_features(program, *f)
                }
            };
            r.map_err(|e| anyhow!("{}: sequence {s}, step {step}: {e}", data_path.display()))?;
        }
    }
    let kernel = irnn_runtime::simd::Kernel::detect();
    let mut out = Vec::with_capacity(seqs.len() * t * out_size);
    let (mut tokens, mut buf) = (Vec::new(), Vec::new());
    let mut it: Option<Interpreter> = None;
    for group in lane_groups(seqs, BATCH_LANES) {
        let lanes = group.len();
        let it = match &mut it {
            Some(it) if it.lanes() == lanes => {
                it.reset();
                it
            }
            slot => slot.insert(Interpreter::with_lanes(program, kernel, lanes)),
        };
        let base = out.len();
        out.resize(base + lanes * t * out_size, 0);
        for step in 0..t {
            let at = || {
                format!(
                    "{}: {} sequences from {}, step {step}",
                    data_path.display(),
                    lanes,
                    group.start
                )
            };
            let y = match (&data.data, &program.input) {
                (SeqData::Tokens { data, .. }, _) => {
                    tokens.clear();
                    tokens.extend(group.clone().map(|s| data[s * t + step]));
                    it.step_tokens(&tokens)
                        .map_err(|e| anyhow!("{}: {e}", at()))?
                }
                (
                    SeqData::FeaturesF32 { f, data, .. },
                    InputIr::Features {
                        scale_info,
                        zero_point,
                        ..
                    },
                ) => {
                    buf.clear();
                    for s in group.clone() {
                        let off = (s * t + step) * f;
                        buf.extend(
                            data[off..off + f]
                                .iter()
                                .map(|&x| quantize_feature(x, *scale_info, *zero_point)),
                        );
                    }
                    it.step_features_lanes(&buf)
                        .map_err(|e| anyhow!("{}: {e}", at()))?
                }
                (SeqData::FeaturesI8 { f, data, .. }, _) => {
                    buf.clear();
                    for s in group.clone() {
                        let off = (s * t + step) * f;
                        buf.extend_from_slice(&data[off..off + f]);
                    }
                    it.step_features_lanes(&buf)
                        .map_err(|e| anyhow!("{}: {e}", at()))?
                }
                (SeqData::FeaturesF32 { .. }, InputIr::Tokens { .. }) => {
                    bail!(
                        "{}: the model takes token ids, not float features",
                        data_path.display()
                    )
                }
            };
            scatter_lanes(&mut out[base..], y, t, step, out_size);
        }
        bar.inc(lanes as u64);
    }
    Ok(out)
}

fn cmd_run(model: &Path, data_path: &Path, out: &Path, json: bool) -> Result<()> {
    let graph = Graph::load(model)?;
    let tensors = irnn_codegen::util::resolve_relative(model, &graph.file.tensors);
    refuse_overwriting_inputs(&[out], &[model, &tensors, data_path])?;
    let program = lower(&graph)?;
    drop(graph);
    let data = read_data(data_path)?;
    let (n, t) = data.data.dims();
    let o = program.output.size;
    let shape: Vec<usize> = if data.single {
        vec![t, o]
    } else {
        vec![n, t, o]
    };
    let per_seq = t
        .checked_mul(o)
        .ok_or_else(|| anyhow!("{}: {t} steps x {o} outputs is too large", out.display()))?;
    crate::output::write_run_output(
        out,
        &shape,
        n,
        per_seq,
        crate::output::RUN_CHUNK_VALUES,
        |seqs| run_program_seqs(&program, &data, data_path, seqs),
    )?;
    if json {
        let v = crate::summary::run(n, t, &shape, out);
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    eprintln!(
        "ran {} sequence(s) of {t} steps; wrote {} {shape:?} int32",
        n,
        out.display()
    );
    Ok(())
}

/// Runs the float model over `data`, returning `n * t * O` float outputs. Like
/// [`run_program`], the sequences are spread over the CPU's cores, each from its reset
/// state, so the outputs are those of one sequential run.
pub fn run_float(model: &FloatModel, data: &DataFile, data_path: &Path) -> Result<Vec<f32>> {
    let (n, _) = data.data.dims();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, n.max(1));
    let per = n.div_ceil(threads).max(1);
    let bar = crate::progress::bar(n as u64, "float");
    let parts: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|first| {
                let range = first..(first + per).min(n);
                let bar = &bar;
                scope.spawn(move || run_float_sequences(model, data, data_path, range, bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a float reference thread panicked")))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// [`run_float`] over the sequences `seqs` of `data`, on one thread: in groups of up
/// to [`BATCH_LANES`] sequences stepped in lock step by a [`FloatBatch`] (each lane's
/// outputs are those of a [`irnn_codegen::float_ref::FloatRunner`] on its sequence alone, bit for bit).
fn run_float_sequences(
    model: &FloatModel,
    data: &DataFile,
    data_path: &Path,
    seqs: std::ops::Range<usize>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<f32>> {
    let (_, t) = data.data.dims();
    let o = model.output_size();
    // Every input is checked before any sequence runs, in the order of one sequential
    // run, so that an error names the same sequence and step as that run would.
    for s in seqs.clone().filter(|_| t > 0) {
        match &data.data {
            SeqData::Tokens { data, .. } => {
                let vocab = match model.input {
                    irnn_codegen::spec::InputSpec::Tokens { vocab_size } => vocab_size,
                    _ => bail!(
                        "{}: the float model takes features, not token ids",
                        data_path.display()
                    ),
                };
                for step in 0..t {
                    let tok = data[s * t + step];
                    if tok < 0 || tok as u64 >= vocab as u64 {
                        bail!(
                            "{}: sequence {s}, step {step}: token id {tok} is outside the vocabulary 0..{vocab}",
                            data_path.display()
                        );
                    }
                }
            }
            SeqData::FeaturesF32 { .. } => {}
            SeqData::FeaturesI8 { .. } => bail!(
                "{}: the float model needs float32 features, not int8",
                data_path.display()
            ),
        }
    }
    let mut out = Vec::with_capacity(seqs.len() * t * o);
    let (mut tokens, mut feats) = (Vec::new(), Vec::new());
    let mut batch: Option<FloatBatch> = None;
    for group in lane_groups(seqs, BATCH_LANES) {
        let lanes = group.len();
        let batch = match &mut batch {
            Some(b) if b.lanes() == lanes => {
                b.reset();
                b
            }
            slot => slot.insert(FloatBatch::new(model, lanes)),
        };
        let base = out.len();
        out.resize(base + lanes * t * o, 0.0);
        for step in 0..t {
            let y = match &data.data {
                SeqData::Tokens { data, .. } => {
                    tokens.clear();
                    tokens.extend(group.clone().map(|s| data[s * t + step] as usize));
                    batch.step_tokens(&tokens)
                }
                SeqData::FeaturesF32 { f, data, .. } => {
                    feats.clear();
                    for s in group.clone() {
                        let off = (s * t + step) * f;
                        feats.extend_from_slice(&data[off..off + f]);
                    }
                    batch.step_features(&feats)
                }
                SeqData::FeaturesI8 { .. } => unreachable!("refused above"),
            };
            scatter_lanes(&mut out[base..], y, t, step, o);
        }
        bar.inc(lanes as u64);
    }
    Ok(out)
}

/// Puts the outputs `ys` of one lock-step step (`width` values per lane) into `out`,
/// which holds the group's sequences one after another (`t` steps of `width` each), at
/// step `step` of each lane's sequence.
fn scatter_lanes<T: Copy>(out: &mut [T], ys: &[T], t: usize, step: usize, width: usize) {
    for (l, y) in ys.chunks_exact(width.max(1)).enumerate() {
        let at = (l * t + step) * width;
        out[at..at + width].copy_from_slice(y);
    }
}

/// `seqs` cut into consecutive groups of at most `width` sequences, as even as
/// possible (100 sequences in groups of 8: four of 7 and nine of 8).
fn lane_groups(
    seqs: std::ops::Range<usize>,
    width: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let n = seqs.len();
    let groups = n.div_ceil(width.max(1));
    (0..groups).map(move |g| {
        let first = seqs.start + g * n / groups;
        let end = seqs.start + (g + 1) * n / groups;
        first..end
    })
}

/// Results of `irnn eval`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalResult {
    /// Float model metrics.
    pub float: serde_json::Value,
    /// Integer model metrics.
    pub integer: serde_json::Value,
    /// Classifier: fraction of sequences where both predict the same class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// Token model: fraction of steps where both give the same top-1 prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
    /// Number of predictions evaluated.
    pub predictions: usize,
}

/// Evaluates the integer model against the float model.
pub fn evaluate(
    program: &Program,
    float_model: &FloatModel,
    data: &DataFile,
    data_path: &Path,
    labels: Option<(&[i64], &Path)>,
) -> Result<EvalResult> {
    if program.output.size != float_model.output_size() {
        bail!(
            "the quantized model has {} outputs but the float model has {}; are they the same model?",
            program.output.size,
            float_model.output_size()
        );
    }
    crate::flags::check_same_input(program, float_model)?;
    let ints = run_program(program, data, data_path)?;
    let floats = run_float(float_model, data, data_path)?;
    let (n, t) = data.data.dims();
    let o = program.output.size;
    let scale = program.output.scale_info;
    let zp = program.output.zero_point as f64;
    let deq = |i: usize| -> Vec<f64> {
        ints[i * o..(i + 1) * o]
            .iter()
            .map(|&v| (v as f64 - zp) * scale)
            .collect()
    };
    let flo = |i: usize| -> Vec<f64> {
        floats[i * o..(i + 1) * o]
            .iter()
            .map(|&v| v as f64)
            .collect()
    };
    match labels {
        Some((labels, lpath)) => {
            if labels.len() != n {
                bail!(
                    "{}: {} labels for {n} sequences in {}",
                    lpath.display(),
                    labels.len(),
                    data_path.display()
                );
            }
            let (mut fc, mut ic, mut agree) = (0usize, 0usize, 0usize);
            for (s, &label) in labels.iter().enumerate() {
                if label < 0 || label as u64 >= o as u64 {
                    bail!(
                        "{}: label {label} at index {s} is outside 0..{o}",
                        lpath.display()
                    );
                }
                let last = s * t + t - 1;
                let pf = argmax(&flo(last));
                let pi = argmax(&deq(last));
                fc += (pf == label as usize) as usize;
                ic += (pi == label as usize) as usize;
                agree += (pf == pi) as usize;
            }
            Ok(EvalResult {
                float: serde_json::json!({"accuracy": fc as f64 / n as f64}),
                integer: serde_json::json!({"accuracy": ic as f64 / n as f64}),
                agreement: Some(agree as f64 / n as f64),
                top1_agreement: None,
                predictions: n,
            })
        }
        None => {
            let SeqData::Tokens { data: toks, .. } = &data.data else {
                bail!(
                    "{}: without --labels, eval measures next-token bits per token and needs token data",
                    data_path.display()
                );
            };
            if t < 2 {
                bail!(
                    "{}: sequences need at least 2 steps to predict a next token",
                    data_path.display()
                );
            }
            let (mut fb, mut ib, mut agree, mut count) = (0f64, 0f64, 0usize, 0usize);
            for s in 0..n {
                for step in 0..t - 1 {
                    let i = s * t + step;
                    let target = toks[i + 1];
                    if target < 0 || target as u64 >= o as u64 {
                        bail!(
                            "{}: token {target} cannot be a prediction target of a model with {o} outputs",
                            data_path.display()
                        );
                    }
                    let (lf, li) = (flo(i), deq(i));
                    fb += bits(&lf, target as usize);
                    ib += bits(&li, target as usize);
                    agree += (argmax(&lf) == argmax(&li)) as usize;
                    count += 1;
                }
            }
            Ok(EvalResult {
                float: serde_json::json!({"bits_per_token": fb / count as f64}),
                integer: serde_json::json!({"bits_per_token": ib / count as f64}),
                agreement: None,
                top1_agreement: Some(agree as f64 / count as f64),
                predictions: count,
            })
        }
    }
}

fn cmd_eval(
    model: &Path,
    spec: &Path,
    data_path: &Path,
    labels: Option<&Path>,
    json: bool,
) -> Result<()> {
    let program = load_program(model)?;
    let float_model = FloatModel::load(spec)?;
    let data = read_data(data_path)?;
    let labels_v = match labels {
        Some(p) => Some((read_labels(p)?, p)),
        None => None,
    };
    let r = evaluate(
        &program,
        &float_model,
        &data,
        data_path,
        labels_v.as_ref().map(|(l, p)| (l.as_slice(), *p)),
    )?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let get =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    println!(
        "model: {}  data: {}  predictions: {}",
        program.name,
        data_path.display(),
        r.predictions
    );
    if let Some(a) = r.agreement {
        let (f, i) = (get(&r.float, "accuracy"), get(&r.integer, "accuracy"));
        println!("| model   | accuracy |");
        println!("|---------|----------|");
        println!("| float   | {:>7.2}% |", f * 100.0);
        println!("| integer | {:>7.2}% |", i * 100.0);
        println!("agreement (same predicted class): {:.2}%", a * 100.0);
    } else {
        let (f, i) = (
            get(&r.float, "bits_per_token"),
            get(&r.integer, "bits_per_token"),
        );
        println!("| model   | bits/token | vs float |");
        println!("|---------|------------|----------|");
        println!("| float   | {f:>10.4} |          |");
        println!("| integer | {i:>10.4} | {:>+7.2}% |", (i / f - 1.0) * 100.0);
        if let Some(a) = r.top1_agreement {
            println!("top-1 agreement per step: {:.2}%", a * 100.0);
        }
    }
    Ok(())
}

/// Sizes of a program: parameter bytes as int and as f32, and state bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    /// Bytes of integer parameters: weights, biases, requantization factors (4-byte
    /// multiplier + 1-byte shift) and PWL tables (12 bytes a piece).
    pub int_param_bytes: usize,
    /// Bytes the same parameters take in f32.
    pub float_param_bytes: usize,
    /// Bytes of recurrent state (h int8 + c int16 per LSTM unit).
    pub state_bytes: usize,
}

/// Computes the parameter and state sizes of a program.
pub fn sizes(p: &Program) -> Sizes {
    let mut int_b = 0;
    let mut float_b = 0;
    let mut state = 0;
    for l in &p.layers {
        match l {
            LayerIr::Embedding(e) => {
                int_b += e.table.len();
                float_b += 4 * e.table.len();
            }
            LayerIr::Linear(l) => {
                int_b += l.weight.len() + 4 * l.out_size + 5 * l.out_size;
                float_b += 4 * (l.weight.len() + l.out_size);
            }
            LayerIr::Cell(l) => {
                int_b += l.param_bytes();
                float_b += 4 * l
                    .mats
                    .iter()
                    .map(|m| m.w.len() + m.bias.len())
                    .sum::<usize>();
                state += l.state_bytes();
            }
        }
    }
    for t in &p.tables {
        int_b += 12 * t.pieces();
    }
    Sizes {
        int_param_bytes: int_b,
        float_param_bytes: float_b,
        state_bytes: state,
    }
}

fn cmd_inspect(path: &Path, json: bool, target: Option<irnn_codegen::back::Target>) -> Result<()> {
    let graph = Graph::load(path)?;
    let program = lower(&graph)?;
    let s = sizes(&program);
    let memory = target
        .map(|t| irnn_codegen::back::memory::report(&program, t))
        .transpose()?;
    let tables: Vec<serde_json::Value> = graph
        .file
        .tables
        .iter()
        .map(|(name, t)| {
            let m = irnn_codegen::pwl::measure(t);
            serde_json::json!({
                "name": name, "function": t.function.as_str(), "input_frac_bits": t.input_frac_bits,
                "output_frac_bits": t.output_frac_bits, "pieces": t.pieces(),
                "max_error_lsb": m.max_error_lsb, "max_error_abs": m.max_error_abs,
                "max_code_error": m.max_code_error,
            })
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "name": graph.file.name,
            "hash": graph.hash,
            "input": graph.file.input,
            "layers": graph.file.layers,
            "tables": tables,
            "sizes": s,
            "memory": memory,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "model {}  (format {} v{}, sha256 {})",
        graph.file.name,
        graph.file.format,
        graph.file.version,
        &graph.hash[..16]
    );
    match &graph.file.input {
        irnn_codegen::graph::GraphInput::Tokens { vocab_size } => {
            println!("input: token ids 0..{vocab_size}")
        }
        irnn_codegen::graph::GraphInput::Features { size, quant } => println!(
            "input: int8[{size}] features, scale {:.6e}, zero point {}",
            quant.scale, quant.zero_point
        ),
    }
    println!("layers:");
    for l in &graph.file.layers {
        match l {
            irnn_codegen::graph::GraphLayer::Embedding {
                name,
                vocab_size,
                dim,
                output,
                ..
            } => println!(
                "  {name:<12} embedding  [{vocab_size} x {dim}] int8 -> int8, scale {:.4e}, zp {}",
                output.scale, output.zero_point
            ),
            irnn_codegen::graph::GraphLayer::Lstm {
                name,
                input_size,
                hidden_size,
                gate_frac_bits,
                gate_tables,
                cell_frac_bits,
                cell_table,
                output,
                ..
            } => {
                println!(
                    "  {name:<12} lstm       in {input_size}, hidden {hidden_size}; int8 weights (per-row), int32 bias"
                );
                println!(
                    "  {:<12}            gates int16 Q{}.{} / Q{}.{} / Q{}.{} / Q{}.{} (i f g o) via {}, {}, {}, {}",
                    "",
                    15 - gate_frac_bits[0], gate_frac_bits[0], 15 - gate_frac_bits[1], gate_frac_bits[1],
                    15 - gate_frac_bits[2], gate_frac_bits[2], 15 - gate_frac_bits[3], gate_frac_bits[3],
                    gate_tables[0], gate_tables[1], gate_tables[2], gate_tables[3]
                );
                println!(
                    "  {:<12}            cell int16 Q{}.{} via {cell_table}; h int8 scale {:.4e}, zp {}",
                    "", 15 - cell_frac_bits, cell_frac_bits, output.scale, output.zero_point
                );
            }
            irnn_codegen::graph::GraphLayer::Gru {
                name,
                input_size,
                hidden_size,
                gate_frac_bits: f,
                gate_tables: t,
                output,
                ..
            } => {
                println!(
                    "  {name:<12} gru        in {input_size}, hidden {hidden_size}; int8 weights (per-row), int32 biases"
                );
                println!(
                    "  {:<12}            gates int16 Q{}.{} / Q{}.{} / Q{}.{} (r z n) via {}, {}, {}; h int8 scale {:.4e}, zp {}",
                    "", 15 - f[0], f[0], 15 - f[1], f[1], 15 - f[2], f[2], t[0], t[1], t[2],
                    output.scale, output.zero_point
                );
            }
            irnn_codegen::graph::GraphLayer::Rnn {
                name,
                input_size,
                hidden_size,
                nonlinearity,
                pre_frac_bits: f,
                table,
                output,
                ..
            } => println!(
                "  {name:<12} rnn        in {input_size}, hidden {hidden_size}, {nonlinearity:?}; pre-activation int16 Q{}.{}{}; h int8 scale {:.4e}, zp {}",
                15 - f, f,
                table.as_deref().map(|t| format!(" via {t}")).unwrap_or_default(),
                output.scale, output.zero_point
            ),
            irnn_codegen::graph::GraphLayer::Linear {
                name,
                in_size,
                out_size,
                output,
                ..
            } => println!(
                "  {name:<12} linear     [{out_size} x {in_size}] int8 -> {:?}",
                output
            ),
        }
    }
    println!("PWL tables:");
    for t in &tables {
        println!(
            "  {:<16} {:>3} pieces  max error {:.3} LSB ({:.2e}); at most {} code(s) from the correctly rounded output",
            t["name"].as_str().unwrap_or(""),
            t["pieces"],
            t["max_error_lsb"].as_f64().unwrap_or(f64::NAN),
            t["max_error_abs"].as_f64().unwrap_or(f64::NAN),
            t["max_code_error"]
        );
    }
    println!(
        "parameters: {} bytes integer vs {} bytes f32 ({:.2}x smaller); state {} bytes",
        s.int_param_bytes,
        s.float_param_bytes,
        s.float_param_bytes as f64 / s.int_param_bytes.max(1) as f64,
        s.state_bytes
    );
    if let Some(m) = memory {
        println!("memory of the generated C on {}:", m.target);
        for line in m.lines(&irnn_codegen::back::names::sanitize(&program.name)) {
            println!("  {line}");
        }
    }
    Ok(())
}
