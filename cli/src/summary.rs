//! The `--json` forms of the commands' summaries that have no serializable type of
//! their own (`irnn bench` rows, `irnn quantize`, `irnn run`): one JSON object on
//! stdout, the same numbers as the text.

use crate::bench::{macs_per_step, BenchRow};
use irnn_codegen::ir::Program;
use irnn_codegen::quantize::QuantizeReport;
use serde_json::{json, Value};

/// `irnn bench --json`: the model, the compiler, and one object per row of the table.
pub fn bench(program: &Program, compiler: &str, rows: &[BenchRow]) -> Value {
    let macs = macs_per_step(program);
    json!({
        "model": program.name,
        "compiler": compiler,
        "macs_per_step": macs,
        "rows": rows.iter().map(|r| json!({
            "target": r.target.name(),
            "label": r.label,
            "precision": r.precision.name(),
            "us_per_step": r.us_per_step,
            "best_us_per_step": r.best_us_per_step,
            "run_us_per_step": r.run_us_per_step,
            "ghz": r.ghz,
            "cycles_per_step": r.cycles_per_step,
            "mac_per_cycle": r.cycles_per_step.map(|c| macs as f64 / c),
            "weight_bytes": r.weight_bytes,
            "text_bytes": r.text_bytes,
            "rodata_bytes": r.rodata_bytes,
        })).collect::<Vec<_>>(),
    })
}

/// `irnn quantize --json`: what calibration ran, measured and chose.
pub fn quantize(
    model: &str,
    output: &std::path::Path,
    layers: usize,
    report: &QuantizeReport,
) -> Value {
    json!({
        "model": model,
        "output": output.display().to_string(),
        "calibration_steps": report.steps,
        "layers": layers,
        "tables": report.tables.iter().map(|(name, pieces, err)| json!({
            "name": name, "pieces": pieces, "max_error_lsb": err,
        })).collect::<Vec<_>>(),
        "ranges": report.ranges,
    })
}

/// `irnn run --json`: what was run and written.
pub fn run(sequences: usize, steps: usize, shape: &[usize], out: &std::path::Path) -> Value {
    json!({
        "sequences": sequences,
        "steps": steps,
        "shape": shape,
        "dtype": "int32",
        "output": out.display().to_string(),
    })
}
