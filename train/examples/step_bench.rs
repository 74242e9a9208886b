//! Times training steps of a spec (float, QAT with range tracking, QAT with frozen
//! ranges): `cargo run --release -p irnn-train --example step_bench -- SPEC TRAIN.npy|txt
//! [VOCAB.json] [STEPS]`. Prints the median ms/step of each phase (`BENCH_PHASES=float,qat`
//! selects phases).

use irnn_train::data::{sample_batch, Rng, Tokens};
use irnn_train::model::Params;
use irnn_train::qat::{LutCache, Mode, QuantState};
use irnn_train::{train_step, State};
use std::time::Instant;

/// CPU time of this thread in ms (utime + stime of `/proc/thread-self/stat`, 10 ms
/// ticks), 0 when unavailable: less sensitive than wall time to other processes on a
/// shared machine.
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the ")" that closes the command name; utime and stime are the
            // 14th and 15th fields of the whole line.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks * 10.0)
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let spec = &a[0];
    let float = irnn_codegen::spec::FloatModel::load(spec.as_ref()).expect("spec");
    let params = Params::from_float(&float).expect("params");
    let tmp = tempfile::tempdir().unwrap();
    let data_path = if a[1].ends_with(".txt") {
        let out = tmp.path().join("train.npy");
        irnn_train::data::text_to_npy(a[1].as_ref(), a[2].as_ref(), &out, 128, 64).unwrap();
        out
    } else {
        a[1].clone().into()
    };
    let steps: usize = a.last().and_then(|s| s.parse().ok()).unwrap_or(5);
    let data = Tokens::load(&data_path, params.arch.vocab).expect("data");
    let zeros = |p: &Params| p.params.iter().map(|q| vec![0f32; q.data.len()]).collect();
    let mut st = State {
        m: zeros(&params),
        v: zeros(&params),
        params,
        step: 0,
        rng: Rng(0),
        quant: QuantState::default(),
    };
    let (b, t) = (32, 64);
    let mut luts = LutCache::default();
    for (name, mode, track) in [
        ("float", Mode::Float, false),
        ("qat+track", Mode::Qat, true),
        ("qat", Mode::Qat, false),
    ] {
        // BENCH_PHASES=float,qat (default: all three).
        if let Ok(only) = std::env::var("BENCH_PHASES") {
            if !only.split(',').any(|p| p == name) {
                continue;
            }
        }
        if mode == Mode::Qat && !st.quant.initialized {
            let tokens = sample_batch(&data, b, t, &mut st.rng);
            let dev = irnn_train::cpu();
            let dp = irnn_train::qat::DeviceParams::upload(&st.params, &dev, false);
            let f = irnn_train::qat::forward(
                &st.params,
                &dp,
                &tokens,
                b,
                t,
                Mode::Float,
                &st.quant,
                &mut luts,
                true,
                &dev,
            );
            st.quant.update(&f.stats, 0.9);
        }
        let (mut ms, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..steps {
            let tokens = sample_batch(&data, b, t, &mut st.rng);
            let (t0, c0) = (Instant::now(), cpu_ms());
            train_step(
                &mut st, &tokens, b, t, mode, track, &mut luts, 2e-4, 1.0, 0.9,
            );
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
            cpu.push(cpu_ms() - c0);
        }
        cpu.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let all = ms.clone();
        ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
        println!(
            "{name:10} median {:7.1} ms/step wall, {:7.1} ms/step cpu  (wall: {:?})",
            ms[ms.len() / 2],
            cpu[cpu.len() / 2],
            all.iter().map(|v| v.round() as i64).collect::<Vec<_>>()
        );
    }
}
