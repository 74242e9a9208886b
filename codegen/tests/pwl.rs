//! Integration tests of the adaptive PWL fit (`irnn_codegen::pwl`).
//!
//! Errors are re-measured here independently of `pwl::measure`: every input code is run
//! through the runtime evaluator (`PwlTable::as_pwl().eval`) and compared with the f64
//! reference.

use irnn_codegen::ir::{Activation, PwlTable, TableSymmetry};
use irnn_codegen::pwl::*;

const SIGMOID: Activation = Activation::Sigmoid;
const TANH: Activation = Activation::Tanh;
const EXP: Activation = Activation::Exp;

fn opts(function: Activation, ifb: u32, method: FitMethod, tol: f64, budget: usize) -> FitOptions {
    FitOptions {
        method,
        tolerance_lsb: tol,
        max_pieces: budget,
        ..FitOptions::new(function, ifb)
    }
}

fn fit_ok(o: &FitOptions) -> (PwlTable, FitReport) {
    match fit(o) {
        Ok(v) => v,
        Err(e) => panic!("fit({o:?}) failed: {e}"),
    }
}

/// Independent exhaustive error: max over the measured inputs of |eval(x) − f(x)·2^ofb|.
fn exhaustive_max_error(table: &PwlTable) -> f64 {
    let pwl = table.as_pwl();
    let inputs: Vec<i32> = match table.function {
        Activation::Exp => (-32768..=0).collect(),
        _ => (-32768..=32767).collect(),
    };
    let in_scale = 1.0 / (1u64 << table.input_frac_bits) as f64;
    let out_scale = (1u64 << table.output_frac_bits) as f64;
    inputs
        .into_iter()
        .map(|x| {
            let reference = table.function.eval_f64(x as f64 * in_scale) * out_scale;
            (pwl.eval(x) as f64 - reference).abs()
        })
        .fold(0.0, f64::max)
}

/// Fits at 1 LSB with a generous budget and checks the exhaustive error.
fn assert_one_lsb(function: Activation, ifb: u32) -> usize {
    let (table, report) = fit_ok(&opts(function, ifb, FitMethod::Sweep, 1.0, MAX_PIECES));
    let err = exhaustive_max_error(&table);
    assert!(
        err <= 1.0,
        "{function:?} ifb {ifb}: max error {err} LSB > 1"
    );
    assert_eq!(
        report.max_error_lsb, err,
        "the report must be the measured error"
    );
    assert!(report.tolerance_met);
    assert_eq!(report.pieces, table.pieces());
    assert_eq!(report.max_error_abs, err / 32768.0);
    report.pieces
}

#[test]
fn sigmoid_is_within_one_lsb_on_every_grid() {
    for ifb in 8..=13 {
        let pieces = assert_one_lsb(SIGMOID, ifb);
        assert!(pieces <= 72, "sigmoid ifb {ifb}: {pieces} pieces");
    }
}

#[test]
fn tanh_is_within_one_lsb_on_every_grid() {
    for ifb in 8..=13 {
        let pieces = assert_one_lsb(TANH, ifb);
        assert!(pieces <= 101, "tanh ifb {ifb}: {pieces} pieces");
    }
}

#[test]
fn exp_is_within_one_lsb_for_non_positive_inputs() {
    for ifb in [8, 10, 12, 13] {
        let pieces = assert_one_lsb(EXP, ifb);
        assert!(pieces <= 120, "exp ifb {ifb}: {pieces} pieces");
    }
    // exp(0) = 1.0 has no Q0.15 code: the clamp to 32767 costs exactly 1 LSB at x = 0, so
    // a tighter tolerance is reported as not met (rather than silently exceeded).
    let (table, report) = fit_ok(&opts(EXP, 12, FitMethod::Sweep, 0.75, MAX_PIECES));
    assert_eq!(table.as_pwl().eval(0), 32767);
    assert!(!report.tolerance_met);
    assert_eq!(report.max_error_lsb, 1.0);
    assert_eq!(measure(&table).worst_input, 0);
}

#[test]
fn sweep_q3_12_piece_counts() {
    // Exhaustive 1 LSB (output rounding included): 71 pieces for sigmoid and 100 for tanh.
    // The 64-piece goal is not reachable at this metric (docs/PWL.md explains why);
    // these bounds keep the measured counts from regressing.
    let (_, s) = fit_ok(&opts(SIGMOID, 12, FitMethod::Sweep, 1.0, MAX_PIECES));
    assert!(
        s.tolerance_met && s.pieces <= 72,
        "sigmoid Q3.12 at 1 LSB: {s:?}"
    );
    let (_, t) = fit_ok(&opts(TANH, 12, FitMethod::Sweep, 1.0, MAX_PIECES));
    assert!(
        t.tolerance_met && t.pieces <= 101,
        "tanh Q3.12 at 1 LSB: {t:?}"
    );
    // A 1 LSB bound on the line before output rounding is 1.5 LSB after it: sigmoid then
    // fits in well under 64 pieces.
    let (_, s15) = fit_ok(&opts(SIGMOID, 12, FitMethod::Sweep, 1.5, MAX_PIECES));
    assert!(
        s15.tolerance_met && s15.pieces <= 52,
        "sigmoid Q3.12 at 1.5 LSB: {s15:?}"
    );
    // With the default budget of 64 pieces the best tables stay close to 1 LSB.
    let (table, s64) = fit_ok(&FitOptions::new(SIGMOID, 12));
    assert!(
        s64.pieces <= 64 && s64.max_error_lsb < 1.13,
        "sigmoid Q3.12, 64 pieces: {s64:?}"
    );
    assert_eq!(exhaustive_max_error(&table), s64.max_error_lsb);
    let (table, t64) = fit_ok(&FitOptions::new(TANH, 12));
    assert!(
        t64.pieces <= 64 && t64.max_error_lsb < 1.86,
        "tanh Q3.12, 64 pieces: {t64:?}"
    );
    assert_eq!(exhaustive_max_error(&table), t64.max_error_lsb);
}

#[test]
fn sweep_needs_fewer_pieces_than_recursive_and_uniform() {
    for function in [SIGMOID, TANH] {
        let (_, sweep) = fit_ok(&opts(function, 12, FitMethod::Sweep, 1.0, MAX_PIECES));
        let (_, rec) = fit_ok(&opts(function, 12, FitMethod::Recursive, 1.0, MAX_PIECES));
        assert!(rec.tolerance_met, "{function:?}: {rec:?}");
        assert!(
            sweep.pieces < rec.pieces,
            "{function:?}: sweep {sweep:?} recursive {rec:?}"
        );
        for budget in [32, 64, 128] {
            let (_, s) = fit_ok(&opts(function, 12, FitMethod::Sweep, 0.0, budget));
            let (_, r) = fit_ok(&opts(function, 12, FitMethod::Recursive, 0.0, budget));
            let (_, u) = fit_ok(&opts(function, 12, FitMethod::Uniform, 0.0, budget));
            assert!(
                s.max_error_lsb < r.max_error_lsb,
                "{function:?} {budget}: {s:?} {r:?}"
            );
            assert!(
                s.max_error_lsb < u.max_error_lsb,
                "{function:?} {budget}: {s:?} {u:?}"
            );
        }
    }
}

#[test]
fn every_method_reports_the_true_error_and_respects_the_budget() {
    for function in [SIGMOID, TANH, EXP] {
        for method in FitMethod::ALL {
            for (tol, budget) in [(1.0, 24), (2.0, 64), (0.5, 3)] {
                let o = opts(function, 11, method, tol, budget);
                let (table, report) = fit_ok(&o);
                assert!(table.pieces() <= budget, "{o:?}: {} pieces", table.pieces());
                assert_eq!(validate(&table), Ok(()), "{o:?}");
                let err = exhaustive_max_error(&table);
                assert_eq!(report.max_error_lsb, err, "{o:?}");
                assert_eq!(report.tolerance_met, err <= tol, "{o:?}");
                assert_eq!(report.method, method);
                if method == FitMethod::Uniform {
                    assert_eq!(report.pieces, budget, "{o:?}");
                }
            }
        }
    }
}

#[test]
fn tanh_symmetry_is_exact() {
    for method in FitMethod::ALL {
        for ifb in [8, 12, 13] {
            let (table, _) = fit_ok(&opts(TANH, ifb, method, 1.0, 128));
            assert_eq!(table.symmetry, TableSymmetry::Odd);
            let pwl = table.as_pwl();
            assert_eq!(pwl.eval(0), 0);
            for x in 1..=32767 {
                assert_eq!(pwl.eval(-x), -pwl.eval(x), "{method:?} ifb {ifb} x {x}");
            }
        }
    }
}

#[test]
fn sigmoid_symmetry_is_exact_except_at_clamps() {
    for method in FitMethod::ALL {
        for ifb in [8, 12, 13] {
            let (table, _) = fit_ok(&opts(SIGMOID, ifb, method, 1.0, 128));
            assert_eq!(table.symmetry, TableSymmetry::Complement);
            assert_eq!(table.total, 32768);
            let pwl = table.as_pwl();
            assert_eq!(pwl.eval(0), 16384);
            for x in 1..=32767 {
                let (p, n) = (pwl.eval(x), pwl.eval(-x));
                if p < table.out_max {
                    assert_eq!(n, 32768 - p, "{method:?} ifb {ifb} x {x}");
                } else {
                    // The positive side clamped: the negative side is 0 or 1.
                    assert!(n <= 1, "{method:?} ifb {ifb} x {x}: {p} {n}");
                }
            }
        }
    }
}

#[test]
fn fitted_outputs_are_monotone() {
    for function in [SIGMOID, TANH, EXP] {
        for method in FitMethod::ALL {
            for ifb in [8, 12] {
                let (table, _) = fit_ok(&opts(function, ifb, method, 1.0, 128));
                let pwl = table.as_pwl();
                let mut prev = pwl.eval(-32768);
                for x in -32767..=32767 {
                    let y = pwl.eval(x);
                    assert!(
                        y >= prev,
                        "{function:?} {method:?} ifb {ifb}: eval({x}) = {y} < {prev}"
                    );
                    prev = y;
                }
            }
        }
    }
}

#[test]
fn tables_fit_32_bit_kernels() {
    for function in [SIGMOID, TANH, EXP] {
        for method in FitMethod::ALL {
            let (table, _) = fit_ok(&opts(function, 12, method, 1.0, 128));
            let (lo, hi) = match table.symmetry {
                TableSymmetry::None => (-32768i64, 32767i64),
                _ => (0, 32768),
            };
            let n = table.pieces();
            for i in 0..n {
                let first = if i == 0 { lo } else { table.starts[i] as i64 };
                let last = if i + 1 < n {
                    table.starts[i + 1] as i64 - 1
                } else {
                    hi
                };
                for u in [first, last] {
                    let t = (u - table.starts[i] as i64).abs();
                    let worst =
                        (table.offsets[i] as i64).abs() + (table.slopes[i] as i64).abs() * t;
                    assert!(
                        worst < 1 << 31,
                        "{function:?} {method:?} piece {i}: {worst}"
                    );
                }
            }
            assert!(
                table.frac_bits >= 15 && table.frac_bits <= 30,
                "{function:?} {method:?}"
            );
            if method == FitMethod::Sweep {
                // 15-bit outputs leave exactly 16 fractional bits under 2^31.
                assert_eq!(table.frac_bits, 16, "{function:?}");
            }
        }
    }
}

/// Piece `i` is the flat piece at `code`: slope 0 and offset `code·2^F + 2^(F−1)` (the
/// rounding constant is part of the offset).
fn assert_flat(table: &PwlTable, i: usize, code: i32) {
    let f = table.frac_bits;
    assert_eq!(table.slopes[i], 0, "piece {i} of {table:?}");
    assert_eq!(table.offsets[i], (code << f) + (1 << (f - 1)), "piece {i}");
}

#[test]
fn saturated_regions_are_single_flat_pieces() {
    for method in [FitMethod::Sweep, FitMethod::Recursive] {
        // Sigmoid on Q7.8 rounds to 32767 from x ≈ 9.7 on: one flat piece to the end.
        let (table, _) = fit_ok(&opts(SIGMOID, 8, method, 1.0, MAX_PIECES));
        let last = table.pieces() - 1;
        assert_flat(&table, last, 32767);
        assert!(
            table.starts[last] < 2600,
            "{method:?}: flat from {}",
            table.starts[last]
        );
        // ... and nothing before it reaches 32767 at its start.
        let pwl = table.as_pwl();
        assert!(pwl.eval(table.starts[last - 1]) < 32767, "{method:?}");
        // Tanh on Q3.12 saturates well before x = 8.
        let (table, _) = fit_ok(&opts(TANH, 12, method, 1.0, MAX_PIECES));
        let last = table.pieces() - 1;
        assert_flat(&table, last, 32767);
        assert!(
            table.starts[last] < 24000,
            "{method:?}: flat from {}",
            table.starts[last]
        );
        // Exp on Q7.8: flat 0 far to the left, flat 32767 for x >= 0.
        let (table, _) = fit_ok(&opts(EXP, 8, method, 1.0, MAX_PIECES));
        assert_eq!(table.starts[0], -32768);
        assert_flat(&table, 0, 0);
        assert!(
            table.starts[1] > -3000 && table.starts[1] < -2000,
            "{method:?}"
        );
        let last = table.pieces() - 1;
        assert_flat(&table, last, 32767);
        assert_eq!(table.starts[last], 0);
        assert_eq!(table.as_pwl().eval(32767), 32767);
    }
    // The uniform LUT keeps exp's x > 0 region as one flat piece too.
    let (table, _) = fit_ok(&opts(EXP, 12, FitMethod::Uniform, 1.0, 64));
    assert_flat(&table, 63, 32767);
    assert_eq!(table.starts[63], 1);
}

#[test]
fn fitting_is_deterministic() {
    for function in [SIGMOID, TANH, EXP] {
        for method in FitMethod::ALL {
            let o = opts(function, 10, method, 1.0, 64);
            let (a, ra) = fit_ok(&o);
            let (b, rb) = fit_ok(&o);
            assert_eq!(a, b);
            assert_eq!(ra, rb);
            let ja = serde_json::to_string(&a).expect("serialize");
            let jb = serde_json::to_string(&b).expect("serialize");
            assert_eq!(ja, jb);
            let back: PwlTable = serde_json::from_str(&ja).expect("deserialize");
            assert_eq!(back, a);
        }
    }
}

#[test]
fn validate_accepts_every_fitted_table() {
    for function in [SIGMOID, TANH, EXP] {
        for method in FitMethod::ALL {
            for ifb in [0, 8, 15] {
                let (table, _) = fit_ok(&opts(function, ifb, method, 1.0, 64));
                assert_eq!(
                    validate(&table),
                    Ok(()),
                    "{function:?} {method:?} ifb {ifb}"
                );
            }
        }
    }
}

fn good_table() -> PwlTable {
    fit_ok(&opts(SIGMOID, 12, FitMethod::Sweep, 2.0, 64)).0
}

fn rejected(table: &PwlTable, needle: &str) {
    match validate(table) {
        Ok(()) => panic!("validate accepted a broken table ({needle})"),
        Err(e) => assert!(
            e.contains(needle),
            "message `{e}` should mention `{needle}`"
        ),
    }
}

#[test]
fn validate_rejects_broken_tables() {
    let good = good_table();
    assert_eq!(validate(&good), Ok(()));
    assert!(good.pieces() >= 4);

    let mut t = good.clone();
    t.starts.swap(1, 2);
    rejected(&t, "strictly increasing");

    let mut t = good.clone();
    t.starts[2] = t.starts[1];
    rejected(&t, "strictly increasing");

    let mut t = good.clone();
    t.slopes.pop();
    rejected(&t, "length mismatch");

    let mut t = good.clone();
    t.offsets.push(0);
    rejected(&t, "length mismatch");

    let mut t = good.clone();
    t.starts.clear();
    t.slopes.clear();
    t.offsets.clear();
    rejected(&t, "no pieces");

    // A slope that overflows 32 bits over the piece's range.
    let mut t = good.clone();
    t.slopes[1] = 1 << 24;
    rejected(&t, "overflows 32 bits");
    // The last piece extends to the end of the domain.
    let mut t = good.clone();
    let last = t.pieces() - 1;
    t.slopes[last] = 1 << 20;
    rejected(&t, "overflows 32 bits");
    let mut t = good.clone();
    t.offsets[0] = i32::MAX;
    t.slopes[0] = 1;
    rejected(&t, "overflows 32 bits");

    let mut t = good.clone();
    t.starts = (0..257).collect();
    t.slopes = vec![0; 257];
    t.offsets = vec![0; 257];
    rejected(&t, "at most 256");

    let mut t = good.clone();
    t.frac_bits = 31;
    rejected(&t, "frac_bits");

    let mut t = good.clone();
    t.input_frac_bits = 16;
    rejected(&t, "input_frac_bits");

    let mut t = good.clone();
    t.output_frac_bits = 16;
    rejected(&t, "output_frac_bits");

    let mut t = good.clone();
    t.out_min = 40;
    t.out_max = 30;
    rejected(&t, "out_min");

    let mut t = good.clone();
    t.out_max = 40000;
    rejected(&t, "int16");

    let mut t = good.clone();
    t.total = 32767;
    rejected(&t, "total");

    let mut t = good.clone();
    t.symmetry = TableSymmetry::Odd;
    rejected(&t, "total");

    let mut t = good.clone();
    t.starts[0] = -1;
    rejected(&t, "outside the input domain");

    let mut t = good.clone();
    let last = t.pieces() - 1;
    t.starts[last] = 40000;
    rejected(&t, "outside the input domain");
}

#[test]
fn measure_is_exact_and_total() {
    // A one-piece constant table at 16384 (sigmoid): the error is largest at the ends.
    let mut t = good_table();
    t.starts = vec![0];
    t.slopes = vec![0];
    t.offsets = vec![(16384 << t.frac_bits) + (1 << (t.frac_bits - 1))];
    assert_eq!(validate(&t), Ok(()));
    let m = measure(&t);
    let expected = 16384.0 - target_lsb(SIGMOID, 12, 15, -32768);
    assert!((m.max_error_lsb - expected).abs() < 1e-9, "{m:?}");
    assert_eq!(m.max_error_lsb, exhaustive_max_error(&t));
    assert_eq!(m.worst_input, -32768);
    assert_eq!(m.inputs, 65536);
    assert_eq!(m.max_error_abs, m.max_error_lsb / 32768.0);
    assert!(m.mean_error_lsb > 0.0 && m.mean_error_lsb < m.max_error_lsb);

    // Garbage does not panic.
    let mut g = good_table();
    g.starts.clear();
    g.input_frac_bits = 99;
    g.output_frac_bits = 99;
    g.frac_bits = 200;
    let _ = measure(&g);
    let mut g = good_table();
    g.out_min = 100;
    g.out_max = -100;
    g.slopes[0] = i32::MAX;
    g.offsets[0] = i32::MIN;
    assert!(validate(&g).is_err());
    let _ = measure(&g);

    // Exp is measured on x <= 0 only.
    let (e, _) = fit_ok(&opts(EXP, 12, FitMethod::Sweep, 1.0, 200));
    assert_eq!(measure(&e).inputs, 32769);
}

#[test]
fn fit_rejects_unsupported_options() {
    let base = FitOptions::new(SIGMOID, 12);
    let err = fit(&FitOptions {
        input_frac_bits: 16,
        ..base
    })
    .unwrap_err();
    assert_eq!(err, PwlError::UnsupportedInputFracBits(16));
    assert!(err.to_string().contains("input_frac_bits"));
    assert!(matches!(
        fit(&FitOptions {
            output_frac_bits: 0,
            ..base
        }),
        Err(PwlError::UnsupportedOutputFracBits(0))
    ));
    assert!(matches!(
        fit(&FitOptions {
            output_frac_bits: 16,
            ..base
        }),
        Err(PwlError::UnsupportedOutputFracBits(16))
    ));
    for tol in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            fit(&FitOptions {
                tolerance_lsb: tol,
                ..base
            }),
            Err(PwlError::InvalidTolerance(_))
        ));
    }
    for budget in [0, 2, 257] {
        assert_eq!(
            fit(&FitOptions {
                max_pieces: budget,
                ..base
            })
            .unwrap_err(),
            PwlError::InvalidBudget(budget)
        );
    }
    assert_eq!(base.check(), Ok(()));
}

#[test]
fn options_defaults_and_method_names() {
    let o = FitOptions::new(TANH, 11);
    assert_eq!(o.output_frac_bits, 15);
    assert_eq!(o.tolerance_lsb, 1.0);
    assert_eq!(o.max_pieces, 64);
    assert_eq!(o.method, FitMethod::Sweep);
    assert_eq!(FitOptions::default(), FitOptions::new(SIGMOID, 12));
    for m in FitMethod::ALL {
        assert_eq!(
            serde_json::to_string(&m).expect("json"),
            format!("\"{}\"", m.as_str())
        );
        assert_eq!(m.as_str().parse::<FitMethod>(), Ok(m));
    }
    assert_eq!("Uniform".parse::<FitMethod>(), Ok(FitMethod::Uniform));
    assert!(matches!(
        "chord".parse::<FitMethod>(),
        Err(PwlError::UnknownMethod(_))
    ));
    let r = fit_ok(&o).1;
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["method"], "sweep");
    assert_eq!(symmetry_for(EXP), TableSymmetry::None);
    assert_eq!(output_range(TANH, 15), (-32767, 32767));
    assert_eq!(output_range(EXP, 7), (0, 127));
}

#[test]
fn other_output_grids_work() {
    for (function, ofb) in [(SIGMOID, 7), (TANH, 7), (EXP, 10)] {
        let (table, report) = fit_ok(&FitOptions {
            output_frac_bits: ofb,
            ..FitOptions::new(function, 10)
        });
        assert_eq!(validate(&table), Ok(()));
        assert!(report.tolerance_met, "{function:?} ofb {ofb}: {report:?}");
        assert_eq!(exhaustive_max_error(&table), report.max_error_lsb);
        assert!(report.pieces < 40, "{function:?} ofb {ofb}: {report:?}");
    }
}

#[test]
fn markdown_compares_the_three_methods() {
    let md = error_vs_pieces_markdown(SIGMOID, 12);
    assert!(md.contains("sigmoid: input Q3.12, output Q0.15"), "{md}");
    assert!(
        md.contains("| tolerance (LSB) | sweep (minimax) | recursive (paper) | uniform (LUT) |")
    );
    assert!(md.contains("| pieces | sweep (minimax) | recursive (paper) | uniform (LUT) |"));
    for row in [
        "| 0.6 |", "| 0.75 |", "| 1 |", "| 2 |", "| 4 |", "| 8 |", "| 16 |", "| 256 |",
    ] {
        assert!(md.contains(row), "missing row {row}:\n{md}");
    }
    // The 1 LSB row: sweep's count matches a direct fit.
    let (_, s) = fit_ok(&opts(SIGMOID, 12, FitMethod::Sweep, 1.0, MAX_PIECES));
    assert!(md.contains(&format!("| 1 | {} |", s.pieces)), "{md}");
    let bad = error_vs_pieces_markdown(SIGMOID, 16);
    assert!(
        bad.contains("error: unsupported input_frac_bits 16"),
        "{bad}"
    );
}

#[test]
fn fitting_a_model_worth_of_tables_is_fast() {
    // Sigmoid and tanh on every gate grid with the default options. Typically ~0.3 s at
    // the test profile's opt-level 1; the bound only catches pathological slowdowns.
    let start = std::time::Instant::now();
    for function in [SIGMOID, TANH] {
        for ifb in 8..=13 {
            fit_ok(&FitOptions::new(function, ifb));
        }
    }
    let elapsed = start.elapsed();
    assert!(elapsed.as_secs_f64() < 10.0, "fitting took {elapsed:?}");
}
