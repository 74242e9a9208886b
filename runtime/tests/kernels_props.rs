//! Property tests of the reference kernels against straightforward `i64`/`i128`
//! formulas (docs/NUMERICS.md §6–§7).

mod common;

use common::*;
use irnn_runtime::kernels::{
    gate_preactivation, lstm_cell_update, lstm_output, lstm_step, matvec_i8, LstmParams,
    LstmScratch,
};
use irnn_runtime::{Pwl, Requant, Symmetry};
use proptest::prelude::*;

fn requant() -> impl Strategy<Value = Requant> {
    prop_oneof![
        6 => ((1i32 << 30)..=i32::MAX, -31i32..=30)
            .prop_map(|(multiplier, shift)| Requant { multiplier, shift }),
        1 => Just(Requant::ONE),
        1 => Just(Requant { multiplier: 0, shift: 0 }),
    ]
}

/// `acc[r] = bias[r] + Σ w[r][j]·x[j]` in i64 (no wrapping).
fn matvec_model(w: &[i8], x: &[i8], bias: &[i32], rows: usize) -> Vec<i64> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            let mut sum = bias.get(r).copied().unwrap_or(0) as i64;
            if (r + 1) * cols <= w.len() {
                for j in 0..cols {
                    sum += w[r * cols + j] as i64 * x[j] as i64;
                }
            }
            sum
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// With biases that satisfy the generation-time bound |b| + Σ|w|·128 < 2^31, the
    /// i32 kernel equals the i64 sum and no partial sum can leave i32.
    #[test]
    fn matvec_i8_matches_i64_loop(
        rows in 0usize..8, cols in 0usize..40, seed_w in prop::collection::vec(any::<i8>(), 320),
        x in prop::collection::vec(any::<i8>(), 40), bias_raw in prop::collection::vec(any::<i32>(), 8),
    ) {
        let w = &seed_w[..rows * cols];
        let x = &x[..cols];
        let bias: Vec<i32> = (0..rows)
            .map(|r| {
                let row_bound: i64 = w[r * cols..(r + 1) * cols].iter().map(|&v| (v as i64).abs() * 128).sum();
                let room = (1i64 << 31) - 1 - row_bound; // |bias| <= room keeps the proof
                (bias_raw[r] as i64 % (room + 1)) as i32
            })
            .collect();
        let mut acc = vec![0i32; rows];
        matvec_i8(w, x, &bias, &mut acc);
        let model = matvec_model(w, x, &bias, rows);
        for r in 0..rows {
            prop_assert_eq!(acc[r] as i64, model[r]);
            prop_assert!(model[r].abs() < 1 << 31);
        }
    }

    /// Any sizes (short weights, short bias, big biases): wrapping i32 arithmetic, never
    /// a panic; a row whose weights are missing is just its bias.
    #[test]
    fn matvec_i8_is_total_and_wraps(
        w in prop::collection::vec(any::<i8>(), 0..60), x in prop::collection::vec(any::<i8>(), 0..10),
        bias in prop::collection::vec(any::<i32>(), 0..8), rows in 0usize..10,
    ) {
        let mut acc = vec![0i32; rows];
        matvec_i8(&w, &x, &bias, &mut acc);
        let model = matvec_model(&w, &x, &bias, rows);
        for r in 0..rows {
            prop_assert_eq!(acc[r], model[r] as i32); // two's complement wrap
        }
    }

    #[test]
    fn gate_preactivation_matches_model(
        acc_x in any::<i32>(), req_x in requant(), acc_h in any::<i32>(), req_h in requant(),
    ) {
        let a = mbqm_model(acc_x, req_x.multiplier, req_x.shift) as i128;
        let b = mbqm_model(acc_h, req_h.multiplier, req_h.shift) as i128;
        prop_assert_eq!(gate_preactivation(acc_x, req_x, acc_h, req_h), sat16(a + b));
    }

    #[test]
    fn lstm_cell_update_matches_model(
        i in any::<i16>(), f in any::<i16>(), g in any::<i16>(), c in any::<i16>(), cf in 0u32..=20,
    ) {
        let forget = round_half_away_pow2(f as i128 * c as i128, 15);
        let input = round_half_away_pow2(i as i128 * g as i128, 30 - cf.min(15));
        prop_assert_eq!(lstm_cell_update(i, f, g, c, cf), sat16(forget + input));
    }

    #[test]
    fn lstm_output_matches_model(o in any::<i16>(), t in any::<i16>(), req in requant(), zp in any::<i32>()) {
        let scaled = mbqm_model(o as i32 * t as i32, req.multiplier, req.shift) as i128;
        prop_assert_eq!(lstm_output(o, t, req, zp), sat8(scaled + zp as i128));
    }
}

#[test]
fn lstm_cell_update_edge_cases() {
    let edges = [
        i16::MIN,
        i16::MIN + 1,
        -16384,
        -1,
        0,
        1,
        16384,
        i16::MAX - 1,
        i16::MAX,
    ];
    for cf in 0..=16u32 {
        for &i in &edges {
            for &f in &edges {
                for &g in &edges {
                    for &c in &edges {
                        let forget = round_half_away_pow2(f as i128 * c as i128, 15);
                        let input = round_half_away_pow2(i as i128 * g as i128, 30 - cf.min(15));
                        assert_eq!(lstm_cell_update(i, f, g, c, cf), sat16(forget + input));
                    }
                }
            }
        }
    }
    // f = 1.0 (32767 ≈ 1 − 2^-15) keeps c up to rounding; i·g = 0.5·0.5 on a 2^-11 grid.
    assert_eq!(lstm_cell_update(0, i16::MAX, 0, 1000, 11), 1000);
    assert_eq!(lstm_cell_update(1 << 14, 0, 1 << 14, 0, 11), 1 << 9);
}

/// Owned LSTM parameters for the step test.
#[derive(Clone, Debug)]
struct Layer {
    input: usize,
    hidden: usize,
    w_ih: Vec<i8>,
    w_hh: Vec<i8>,
    bias_x: Vec<i32>,
    bias_h: Vec<i32>,
    req_x: Vec<Requant>,
    req_h: Vec<Requant>,
    cell_frac_bits: u32,
    req_out: Requant,
    h_zero_point: i32,
}

// Tables: a 3-piece sigmoid-like (Complement), a 3-piece tanh-like (Odd) on Q3.12, and
// a tanh on the cell grid. Their values do not matter; they only have to differ.
const SIG_STARTS: [i32; 3] = [0, 4096, 16384];
const SIG_SLOPES: [i32; 3] = [1 << 16, 1 << 14, 0];
const SIG_OFFSETS: [i32; 3] = [
    (16384 << 14) + (1 << 13),
    (20480 << 14) + (1 << 13),
    (32000 << 14) + (1 << 13),
];
const TANH_STARTS: [i32; 3] = [0, 2048, 12288];
const TANH_SLOPES: [i32; 3] = [1 << 17, 1 << 15, 1 << 10];
const TANH_OFFSETS: [i32; 3] = [
    1 << 13,
    (16384 << 14) + (1 << 13),
    (28000 << 14) + (1 << 13),
];

fn sigmoid() -> Pwl<'static> {
    Pwl {
        symmetry: Symmetry::Complement { total: 1 << 15 },
        starts: &SIG_STARTS,
        slopes: &SIG_SLOPES,
        offsets: &SIG_OFFSETS,
        frac_bits: 14,
        out_min: 0,
        out_max: 32767,
    }
}

fn tanh() -> Pwl<'static> {
    Pwl {
        symmetry: Symmetry::Odd,
        starts: &TANH_STARTS,
        slopes: &TANH_SLOPES,
        offsets: &TANH_OFFSETS,
        frac_bits: 14,
        out_min: -32767,
        out_max: 32767,
    }
}

fn layer() -> impl Strategy<Value = Layer> {
    (1usize..5, 1usize..5, 6u32..=13, -20i32..20).prop_flat_map(|(input, hidden, cf, hz)| {
        let g = 4 * hidden;
        (
            prop::collection::vec(any::<i8>(), g * input),
            prop::collection::vec(any::<i8>(), g * hidden),
            prop::collection::vec(-100_000i32..100_000, g),
            prop::collection::vec(-100_000i32..100_000, g),
            prop::collection::vec(((1i32 << 30)..=i32::MAX, -12i32..=-1), g),
            prop::collection::vec(((1i32 << 30)..=i32::MAX, -12i32..=-1), g),
            ((1i32 << 30)..=i32::MAX, -24i32..=-20),
        )
            .prop_map(move |(w_ih, w_hh, bias_x, bias_h, rx, rh, ro)| Layer {
                input,
                hidden,
                w_ih,
                w_hh,
                bias_x,
                bias_h,
                req_x: rx
                    .into_iter()
                    .map(|(multiplier, shift)| Requant { multiplier, shift })
                    .collect(),
                req_h: rh
                    .into_iter()
                    .map(|(multiplier, shift)| Requant { multiplier, shift })
                    .collect(),
                cell_frac_bits: cf,
                req_out: Requant {
                    multiplier: ro.0,
                    shift: ro.1,
                },
                h_zero_point: hz,
            })
    })
}

/// The LSTM step written out directly from docs/NUMERICS.md §6 with the i128 models.
fn lstm_step_model(l: &Layer, x: &[i8], h: &[i8], c: &[i16]) -> (Vec<i8>, Vec<i16>) {
    let hs = l.hidden;
    let acc_x = matvec_model(&l.w_ih, x, &l.bias_x, 4 * hs);
    let acc_h = matvec_model(&l.w_hh, h, &l.bias_h, 4 * hs);
    let tables = [sigmoid(), sigmoid(), tanh(), sigmoid()];
    let gate = |r: usize| -> i16 {
        let a = mbqm_model(acc_x[r] as i32, l.req_x[r].multiplier, l.req_x[r].shift) as i128;
        let b = mbqm_model(acc_h[r] as i32, l.req_h[r].multiplier, l.req_h[r].shift) as i128;
        let pre = sat16(a + b);
        sat16(tables[r / hs].eval(pre as i32) as i128)
    };
    let mut h_new = vec![0i8; hs];
    let mut c_new = vec![0i16; hs];
    for k in 0..hs {
        let (i, f, g, o) = (gate(k), gate(hs + k), gate(2 * hs + k), gate(3 * hs + k));
        let cn = sat16(
            round_half_away_pow2(f as i128 * c[k] as i128, 15)
                + round_half_away_pow2(i as i128 * g as i128, 30 - l.cell_frac_bits),
        );
        c_new[k] = cn;
        let t = sat16(tanh().eval(cn as i32) as i128);
        let out = mbqm_model(o as i32 * t as i32, l.req_out.multiplier, l.req_out.shift) as i128;
        h_new[k] = sat8(out + l.h_zero_point as i128);
    }
    (h_new, c_new)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn lstm_step_matches_model(
        l in layer(), xs in prop::collection::vec(any::<i8>(), 4), h0 in prop::collection::vec(any::<i8>(), 4),
        c0 in prop::collection::vec(any::<i16>(), 4), steps in 1usize..4,
    ) {
        let x = &xs[..l.input];
        let mut h = h0[..l.hidden].to_vec();
        let mut c = c0[..l.hidden].to_vec();
        let (mut h_ref, mut c_ref) = (h.clone(), c.clone());
        let p = LstmParams {
            input_size: l.input,
            hidden_size: l.hidden,
            w_ih: &l.w_ih,
            w_hh: &l.w_hh,
            bias_x: &l.bias_x,
            bias_h: &l.bias_h,
            req_x: &l.req_x,
            req_h: &l.req_h,
            gate_tables: [sigmoid(), sigmoid(), tanh(), sigmoid()],
            cell_tanh: tanh(),
            cell_frac_bits: l.cell_frac_bits,
            req_out: l.req_out,
            h_zero_point: l.h_zero_point,
        };
        let (mut acc_x, mut acc_h, mut gates) = (vec![0; 4 * l.hidden], vec![0; 4 * l.hidden], vec![0; 4 * l.hidden]);
        for _ in 0..steps {
            lstm_step(&p, x, &mut h, &mut c, LstmScratch { acc_x: &mut acc_x, acc_h: &mut acc_h, gates: &mut gates });
            let (hn, cn) = lstm_step_model(&l, x, &h_ref, &c_ref);
            h_ref = hn;
            c_ref = cn;
            prop_assert_eq!(&h, &h_ref);
            prop_assert_eq!(&c, &c_ref);
        }
    }
}
