//! Every kernel this CPU runs against a plain `i64` model, on random shapes that hit
//! every tail (row blocks not a multiple of 4, partial blocks, odd group counts,
//! columns not a multiple of 4) with the extreme codes −128 and 127 on both sides.
//! Under `qemu-aarch64 -cpu max` the NEON and dot-product kernels run too
//! (tests/gen_rust.rs runs these tests that way).

use super::*;
use proptest::prelude::*;
use std::vec::Vec;

/// The workspace's one skip policy (tests/support/skip.rs).
#[path = "../../../tests/support/skip.rs"]
mod skip;

/// `bias[r] + Σ_j w[r, j]·x[j]` in i64, then wrapped to i32 (what `matvec_i8` defines).
fn model(w: &[i8], rows: usize, cols: usize, bias: &[i32], x: &[i8]) -> Vec<i32> {
    (0..rows)
        .map(|r| {
            let mut sum = bias[r] as i64;
            for j in 0..cols {
                sum += w[r * cols + j] as i64 * x[j] as i64;
            }
            sum as i32
        })
        .collect()
}

/// Codes biased towards the extremes.
fn code() -> impl Strategy<Value = i8> {
    prop_oneof![
        2 => Just(-128i8),
        2 => Just(127i8),
        1 => Just(0i8),
        1 => Just(-1i8),
        6 => any::<i8>(),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    rows: usize,
    cols: usize,
    w: Vec<i8>,
    bias: Vec<i32>,
    x: Vec<i8>,
}

fn case(max_rows: usize, max_cols: usize) -> impl Strategy<Value = Case> {
    (1..=max_rows, 0..=max_cols).prop_flat_map(|(rows, cols)| {
        (
            proptest::collection::vec(code(), rows * cols),
            proptest::collection::vec(-(1i32 << 28)..(1i32 << 28), rows),
            proptest::collection::vec(code(), cols),
        )
            .prop_map(move |(w, bias, x)| Case {
                rows,
                cols,
                w,
                bias,
                x,
            })
    })
}

struct Packed {
    weights: Vec<u8>,
    bias: Vec<i32>,
    offset: Vec<i32>,
}

fn pack_case(c: &Case, br: usize) -> Packed {
    let mut weights = std::vec![0u8; packed_len(c.rows, c.cols, br)];
    pack(&c.w, c.rows, c.cols, br, &mut weights).expect("packs");
    let mut bias = c.bias.clone();
    bias.resize(padded_rows(c.rows, br), 0);
    let mut offset = std::vec![0i32; bias.len()];
    offset_bias(&c.w, c.rows, c.cols, &c.bias, &mut offset).expect("offset bias");
    Packed {
        weights,
        bias,
        offset,
    }
}

/// Runs `kernel` on `c` packed with `br` rows per block; returns the ISA that ran.
fn run(kernel: Kernel, c: &Case, br: usize) -> Isa {
    let p = pack_case(c, br);
    let mut m =
        PackedMatrix::new(&p.weights, &p.bias, c.rows, c.cols, br).with_offset_bias(&p.offset);
    if !c.w.contains(&i8::MIN) {
        m = m.without_min_weight();
    }
    let mut acc = std::vec![i32::MIN; c.rows];
    kernel.matvec(&m, &c.x, &mut acc);
    assert_eq!(
        acc,
        model(&c.w, c.rows, c.cols, &c.bias, &c.x),
        "{:?} on {}x{} (block rows {br})",
        kernel.isa(),
        c.rows,
        c.cols
    );
    kernel.isa_for(&m)
}

/// The SIMD kernels this CPU runs (reported, so that a run shows what it covered).
fn simd_kernels() -> Vec<Kernel> {
    let ks: Vec<Kernel> = Isa::ALL[1..]
        .iter()
        .filter_map(|&i| Kernel::new(i))
        .collect();
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::eprintln!(
            "simd kernels on this CPU: {:?}",
            ks.iter().map(|k| k.isa().name()).collect::<Vec<_>>()
        )
    });
    ks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn portable_kernel_matches_model_for_any_block_height(c in case(40, 40), br in prop_oneof![Just(1usize), Just(4), Just(8), Just(16), Just(5)]) {
        prop_assert_eq!(run(Kernel::PORTABLE, &c, br), Isa::Portable);
    }

    #[test]
    fn simd_kernels_match_model(c in case(150, 70)) {
        for k in simd_kernels() {
            let br = k.isa().block_rows().unwrap();
            let ran = run(k, &c, br);
            // AVX2 refuses −128 weights (portable fallback); everything else runs SIMD.
            let want = if k.isa() == Isa::Avx2 && c.w.contains(&i8::MIN) { Isa::Portable } else { k.isa() };
            prop_assert_eq!(ran, want);
        }
    }

    /// Without −128 weights the AVX2 kernel runs too, including x = −128 (|x| = 128 is
    /// the corner of the sign trick).
    #[test]
    fn simd_kernels_match_model_without_min_weight(mut c in case(150, 70)) {
        for w in &mut c.w {
            *w = (*w).max(-127);
        }
        for k in simd_kernels() {
            let br = k.isa().block_rows().unwrap();
            prop_assert_eq!(run(k, &c, br), k.isa());
        }
    }

    /// Whatever the lengths, the total kernel computes what is there.
    #[test]
    fn portable_total_is_total(c in case(20, 20), extra_x in 0usize..3, short_acc in 0usize..3, cut_w in 0usize..9) {
        let p = pack_case(&c, 4);
        let cut = p.weights.len().saturating_sub(cut_w);
        let m = PackedMatrix::new(&p.weights[..cut], &p.bias, c.rows, c.cols, 4);
        let mut x = c.x.clone();
        x.extend(core::iter::repeat_n(5i8, extra_x));
        let mut acc = std::vec![0i32; c.rows.saturating_sub(short_acc)];
        portable_total(&m, &x, &mut acc);
        let mut w = c.w.clone();
        for r in 0..c.rows {
            for j in 0..c.cols {
                let at = ((r / 4 * c.cols.div_ceil(4) + j / 4) * 4 + r % 4) * 4 + j % 4;
                if at >= cut {
                    w[r * c.cols + j] = 0;
                }
            }
        }
        let want = model(&w, c.rows, c.cols, &c.bias, &c.x);
        prop_assert_eq!(&acc[..], &want[..acc.len()]);
    }
}

/// Larger matrices than the property tests (several 4-block groups, long rows), every
/// kernel, including the all-extreme corner `W = −128 or 127`, `x = −128`.
#[test]
fn large_and_extreme_matrices() {
    for (rows, cols) in [(259usize, 131usize), (64, 512), (17, 3), (33, 4)] {
        for fill in 0..3 {
            let w: Vec<i8> = (0..rows * cols)
                .map(|i| match fill {
                    0 => (i as i32 * 37 % 255 - 127) as i8,
                    1 => [127i8, -127][i % 2],
                    _ => [-128i8, 127][(i / 3) % 2],
                })
                .collect();
            let x: Vec<i8> = (0..cols)
                .map(|j| if fill > 0 { -128 } else { (j * 11) as i8 })
                .collect();
            let bias: Vec<i32> = (0..rows).map(|r| r as i32 * 1001 - 5000).collect();
            let c = Case {
                rows,
                cols,
                w,
                bias,
                x,
            };
            run(Kernel::PORTABLE, &c, 8);
            for k in simd_kernels() {
                run(k, &c, k.isa().block_rows().unwrap());
            }
        }
    }
}

/// Every kernel test above runs only the kernels this CPU has (`Kernel::new`): under CI
/// the detection must agree with the CPU's flags, or they would pass on the portable
/// kernel alone.
#[test]
fn detection_agrees_with_the_cpu_flags() {
    for isa in Isa::ALL {
        if isa != Isa::Portable {
            skip::needs_isa("the kernel tests", isa.name(), isa.is_supported());
        }
    }
}

#[test]
fn selection_never_returns_an_unsupported_kernel() {
    for isa in Isa::ALL {
        let k = Kernel::best_for(isa);
        assert!(k.isa().is_supported());
        assert_eq!(Kernel::new(isa).is_some(), isa.is_supported());
        // AVX2's layout prefers AVX-VNNI where it runs.
        let want = if isa == Isa::Avx2 && Isa::AvxVnni.is_supported() {
            Isa::AvxVnni
        } else {
            isa
        };
        if isa.is_supported() {
            assert_eq!(k.isa(), want);
        }
    }
    // AVX-VNNI implies AVX2, and falls back to it.
    if Isa::AvxVnni.is_supported() {
        assert!(Isa::Avx2.is_supported());
    } else {
        assert_eq!(Kernel::best_for(Isa::AvxVnni), Kernel::best_for(Isa::Avx2));
    }
    assert!(Kernel::detect().isa().is_supported());
    assert_eq!(Kernel::default(), Kernel::PORTABLE);
    #[cfg(target_arch = "aarch64")]
    assert_ne!(Kernel::best_for(Isa::NeonDotprod).isa(), Isa::Portable);
    #[cfg(not(target_arch = "x86_64"))]
    assert!(Kernel::new(Isa::Avx2).is_none());
    #[cfg(not(target_arch = "aarch64"))]
    assert!(Kernel::new(Isa::Neon).is_none());
}

#[test]
fn mismatched_layouts_fall_back_to_portable() {
    let c = Case {
        rows: 9,
        cols: 7,
        w: (0..63).map(|i| i as i8).collect(),
        bias: std::vec![3; 9],
        x: std::vec![1; 7],
    };
    for k in simd_kernels() {
        let other = if k.isa().block_rows() == Some(8) {
            16
        } else {
            8
        };
        assert_eq!(run(k, &c, other), Isa::Portable, "{:?}", k.isa());
    }
    // Lengths that do not match the shape (checked once, by the constructors): a
    // weight byte short, or an offset bias of the wrong length.
    for k in simd_kernels() {
        let br = k.isa().block_rows().unwrap();
        let p = pack_case(&c, br);
        let offset = &p.offset;
        let good = PackedMatrix::new(&p.weights, &p.bias, 9, 7, br)
            .without_min_weight()
            .with_offset_bias(offset);
        assert_eq!(k.isa_for(&good), k.isa(), "{:?}", k.isa());
        let short = PackedMatrix::new(&p.weights[1..], &p.bias, 9, 7, br)
            .without_min_weight()
            .with_offset_bias(offset);
        assert_eq!(k.isa_for(&short), Isa::Portable, "{:?}", k.isa());
        let bad_offset = good.with_offset_bias(&offset[1..]);
        assert_eq!(k.isa_for(&bad_offset), Isa::Portable, "{:?}", k.isa());
    }
    // VNNI without the offset bias.
    if let Some(k) = Kernel::new(Isa::Avx512Vnni) {
        let p = pack_case(&c, 16);
        let m = PackedMatrix::new(&p.weights, &p.bias, 9, 7, 16).without_min_weight();
        assert_eq!(k.isa_for(&m), Isa::Portable);
    }
    // AVX-VNNI without the offset bias runs AVX2's sign trick (same layout), or the
    // portable kernel when a weight is -128; both exact.
    if let Some(k) = Kernel::new(Isa::AvxVnni) {
        let p = pack_case(&c, 8);
        let m = PackedMatrix::new(&p.weights, &p.bias, 9, 7, 8);
        assert_eq!(k.isa_for(&m), Isa::Portable);
        let m = m.without_min_weight();
        assert_eq!(k.isa_for(&m), Isa::Avx2);
        let mut acc = std::vec![0i32; 9];
        k.matvec(&m, &c.x, &mut acc);
        assert_eq!(acc, model(&c.w, 9, 7, &c.bias, &c.x));
    }
}

#[test]
fn pack_and_offset_bias_check_lengths() {
    let mut out = [0u8; 8];
    assert!(pack(&[1, 2, 3], 1, 3, 2, &mut out).is_ok());
    assert_eq!(out, [1, 2, 3, 0, 0, 0, 0, 0]);
    let e = pack(&[1, 2], 1, 3, 2, &mut out).unwrap_err();
    assert_eq!((e.found, e.expected), (2, 3));
    assert!(pack(&[1, 2, 3], 1, 3, 0, &mut out).is_err());
    assert!(pack(&[1, 2, 3], 1, 3, 4, &mut out).is_err());
    let mut ob = [0i32; 2];
    offset_bias(&[1, 2, 3], 1, 3, &[10], &mut ob).unwrap();
    assert_eq!(ob, [10 - 128 * 6, 0]);
    assert!(offset_bias(&[-128; 3], 1, 3, &[i32::MAX], &mut ob).is_err());
    assert!(std::format!("{e}").contains("expected 3"));
}

/// Code of the kind `Kernel::vectorize` is for (64-bit products, arithmetic shifts by
/// a lane-dependent amount, masked table reads, clamps; LLVM vectorizes it with
/// gathers where the instruction set has them).
#[inline(always)]
fn tail(x: &[i32], m: &[i32], table: &[i32; 64], out: &mut [i16]) {
    for ((o, &x), &m) in out.iter_mut().zip(x).zip(m) {
        let y = (x as i64 * m as i64 + (1 << 30)) >> 31;
        let v = (y + table[(x as usize) & 63] as i64) >> (m & 15);
        *o = v.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    }
}

/// `tail` on one element, in i128 arithmetic.
fn tail_model(x: i32, m: i32, table: &[i32; 64]) -> i16 {
    let y = (x as i128 * m as i128 + (1 << 30)) >> 31;
    let v = (y + table[(x as u32 % 64) as usize] as i128) >> (m.rem_euclid(16));
    v.clamp(i16::MIN as i128, i16::MAX as i128) as i16
}

#[test]
fn vectorize_calls_f_once_and_returns_what_it_computes() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s as i32
    };
    let n = 1001; // not a multiple of any vector width
    let mut x: Vec<i32> = (0..n).map(|_| next()).collect();
    let m: Vec<i32> = (0..n).map(|_| next()).collect();
    x[..4].copy_from_slice(&[i32::MIN, i32::MAX, 0, -1]);
    let table: [i32; 64] = core::array::from_fn(|_| next() >> 8);
    let expected: Vec<i16> = x
        .iter()
        .zip(&m)
        .map(|(&x, &m)| tail_model(x, m, &table))
        .collect();
    let c = Case {
        rows: 37,
        cols: 29,
        w: (0..37 * 29).map(|_| (next() as i8).max(-127)).collect(), // AVX2 needs > −128
        bias: (0..37).map(|_| next() >> 4).collect(),
        x: (0..29).map(|_| next() as i8).collect(),
    };
    let kernels: Vec<Kernel> = std::iter::once(Kernel::PORTABLE)
        .chain(simd_kernels())
        .collect();
    for k in kernels {
        let mut calls = 0;
        let moved = std::vec![7u8; 3]; // FnOnce: `f` may consume what it captures
        let (out, isa, moved) = k.vectorize(
            #[inline(always)]
            || {
                calls += 1;
                let mut out = std::vec![0i16; n];
                tail(&x, &m, &table, &mut out);
                let br = k.isa().block_rows().unwrap_or(8);
                (out, run(k, &c, br), moved)
            },
        );
        assert_eq!(calls, 1, "{:?}: f called {calls} times", k.isa());
        assert_eq!(out, expected, "{:?}", k.isa());
        assert_eq!(isa, k.isa(), "the kernel's own matvec ran inside");
        assert_eq!(moved, [7, 7, 7]);
    }
}

// ---------------------------------------------------------------------------------
// Kernel::pwl_i16 (the register form; the generator's tables are checked end to end in
// tests/gen_rust.rs, these cover the clamp and every fold on hand-made tables)
// ---------------------------------------------------------------------------------

/// `offsets[k] − slopes[k] · starts[k]` in wrapping `i32` (what both array forms hold).
fn intercept(p: &crate::Pwl<'_>, k: usize) -> i32 {
    p.offsets[k].wrapping_sub(p.slopes[k].wrapping_mul(p.starts[k]))
}

/// The array forms' fold of `p`'s symmetry.
fn fold_of(p: &crate::Pwl<'_>) -> RegFold {
    match p.symmetry {
        crate::Symmetry::None => RegFold::None,
        crate::Symmetry::Odd => RegFold::Odd,
        crate::Symmetry::Complement { total } => RegFold::Complement(total),
    }
}

/// The register form of `p` (at most 64 pieces, piece arithmetic in i32 on int16
/// inputs), with the clamp kept.
fn reg_of(p: &crate::Pwl<'_>) -> RegPwl {
    let n = p.starts.len();
    assert!(n <= 64);
    let start = |k: usize| p.starts.get(k).copied().unwrap_or(i32::MAX);
    let mut probes = [[i32::MAX; 32]; 5];
    for (level, row) in probes.iter_mut().enumerate() {
        let d = 16 >> level;
        for (j, v) in row.iter_mut().take(64 / (2 * d)).enumerate() {
            *v = start((2 * j + 1) * d);
        }
    }
    let mut slopes = [0; 64];
    let mut intercepts = [0; 64];
    for k in 0..n {
        slopes[k] = p.slopes[k];
        intercepts[k] = intercept(p, k);
    }
    RegPwl::new(
        start(32),
        probes,
        slopes,
        intercepts,
        p.frac_bits,
        fold_of(p),
        Some((p.out_min, p.out_max)),
    )
}

/// Hand-made tables for the array evaluators: 45 and 20 pieces over [0, 32768) (or all
/// of int16 without symmetry), slopes up to 2^9 and offsets of both signs; out ranges
/// that clip. Calls `f` with each.
fn with_test_tables(mut f: impl FnMut(&crate::Pwl<'_>)) {
    for (symmetry, pieces, lo, hi) in [
        (crate::Symmetry::Odd, 45usize, -20000, 20000),
        (crate::Symmetry::Complement { total: 32768 }, 45, 0, 32767),
        (crate::Symmetry::None, 20, -32768, 32767),
        (crate::Symmetry::Odd, 64, -40000, 40000),
    ] {
        let none = symmetry == crate::Symmetry::None;
        let (from, width) = if none { (-32768, 65536) } else { (0, 32768) };
        let starts: Vec<i32> = (0..pieces as i32)
            .map(|k| from + k * width / pieces as i32)
            .collect();
        let slopes: Vec<i32> = (0..pieces as i32).map(|k| 512 - 23 * k).collect();
        let offsets: Vec<i32> = (0..pieces as i32).map(|k| 1000 * k - 7000).collect();
        f(&crate::Pwl {
            symmetry,
            starts: &starts,
            slopes: &slopes,
            offsets: &offsets,
            frac_bits: 4,
            out_min: lo,
            out_max: hi,
        });
    }
}

/// `eval(kernel, xs)` (an array evaluator of `p`, in place) gives `saturate_i16(p.eval)`
/// on every int16 input, for every kernel in `kernels`, on whole and misaligned arrays.
fn check_array_evaluator(
    p: &crate::Pwl<'_>,
    kernels: &[Kernel],
    eval: impl Fn(Kernel, &mut [i16]),
) {
    let xs: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    for &kernel in kernels {
        for skip in [0, 1, 7] {
            let mut ys = xs.clone();
            eval(kernel, &mut ys[skip..]);
            for (&x, &y) in xs.iter().zip(&ys).skip(skip) {
                let want = p.eval(x as i32).clamp(i16::MIN as i32, i16::MAX as i32);
                assert_eq!(
                    y as i32,
                    want,
                    "{:?}, {} pieces, x = {x} ({kernel:?})",
                    p.symmetry,
                    p.starts.len()
                );
            }
        }
    }
}

#[test]
fn pwl_i16_equals_eval_on_every_int16() {
    with_test_tables(|p| {
        let reg = reg_of(p);
        check_array_evaluator(p, &[Kernel::detect(), Kernel::PORTABLE], |kernel, xs| {
            kernel.pwl_i16(&reg, xs, |x| p.eval(x as i32))
        });
    });
}

/// The gather form of `p` with buckets of `2^shift` inputs (the generator's layout,
/// `back::pwl_index::GatherForm`), leaked to `'static`.
fn gather_of(p: &crate::Pwl<'_>, shift: u32) -> GatherPwl {
    let none = p.symmetry == crate::Symmetry::None;
    let (bias, max_u) = if none { (32768, 32767) } else { (0, 32768) };
    let cap = (*p.starts.last().unwrap()).min(max_u) + bias;
    let mask = (1i64 << shift) - 1;
    let piece = |u: i32| p.starts.iter().rposition(|&s| s <= u).unwrap_or(0);
    let buckets: Vec<i32> = (0..=(cap >> shift))
        .map(|b| {
            let first = (b as i64) << shift;
            let k0 = piece((first - bias as i64) as i32);
            let pos = |k: usize| {
                p.starts
                    .get(k)
                    .map_or(mask, |&s| (s as i64 + bias as i64 - 1 - first).min(mask))
            };
            (k0 as i64 | (pos(k0 + 1) | pos(k0 + 2) << shift) << 8) as i32
        })
        .collect();
    let intercepts: Vec<i32> = (0..p.starts.len()).map(|k| intercept(p, k)).collect();
    let leak = |v: Vec<i32>| -> &'static [i32] { Box::leak(v.into_boxed_slice()) };
    GatherPwl::new(
        leak(buckets),
        bias,
        cap,
        shift,
        2,
        leak(p.slopes.to_vec()),
        leak(intercepts),
        p.frac_bits,
        fold_of(p),
        Some((p.out_min, p.out_max)),
    )
}

#[test]
fn pwl_i16_gather_equals_eval_on_every_int16() {
    // Buckets of 1024 inputs: up to two starts inside one (45 pieces are ~728 inputs
    // apart), so both compares matter.
    with_test_tables(|p| {
        let g = gather_of(p, 10);
        let kernels: Vec<Kernel> = [
            Kernel::new(Isa::Avx2),
            Kernel::new(Isa::AvxVnni),
            Some(Kernel::PORTABLE),
        ]
        .into_iter()
        .flatten()
        .collect();
        check_array_evaluator(p, &kernels, |kernel, xs| {
            kernel.pwl_i16_gather(&g, xs, |x| p.eval(x as i32))
        });
    });
}

#[test]
#[should_panic(expected = "bucket piece out of range")]
fn gather_form_with_a_piece_beyond_the_tables_is_refused() {
    static BUCKETS: [i32; 2] = [0, 3 | (5 << 8)]; // piece 3, then a start at 6: piece 4
    static SLOPES: [i32; 4] = [0; 4];
    let _ = GatherPwl::new(
        &BUCKETS,
        0,
        9,
        3,
        1,
        &SLOPES,
        &SLOPES,
        4,
        RegFold::Odd,
        None,
    );
}

#[test]
#[should_panic(expected = "GatherPwl: bias")]
fn gather_form_with_negative_indices_is_refused() {
    static BUCKETS: [i32; 1] = [0];
    static SLOPES: [i32; 1] = [0];
    let _ = GatherPwl::new(
        &BUCKETS,
        0,
        0,
        3,
        0,
        &SLOPES,
        &SLOPES,
        4,
        RegFold::None,
        None,
    );
}

// ---------------------------------------------------------------------------------
// Kernel::matvec_seq (row tiles across several vectors)
// ---------------------------------------------------------------------------------

#[test]
fn matvec_seq_equals_the_model_for_every_vector() {
    // Shapes with one tile and with many (1031 x 700 is ~720 KB: dozens of tiles and a
    // partial last block), columns not a multiple of 4, and 0, 1, 5 and 8 vectors.
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    for (rows, cols) in [(1usize, 3usize), (37, 64), (300, 257), (1031, 700)] {
        // No weight is -128 (the AVX2 sign trick).
        let w: Vec<i8> = (0..rows * cols)
            .map(|_| ((next() % 255) as i32 - 127) as i8)
            .collect();
        let bias: Vec<i32> = (0..rows).map(|_| next() as i32 >> 4).collect();
        let mut kernels = simd_kernels();
        kernels.push(Kernel::PORTABLE);
        for kernel in kernels {
            let br = kernel.isa().block_rows().unwrap_or(4);
            let c = Case {
                rows,
                cols,
                w: w.clone(),
                bias: bias.clone(),
                x: Vec::new(),
            };
            let p = pack_case(&c, br);
            let m = PackedMatrix::new(&p.weights, &p.bias, rows, cols, br)
                .with_offset_bias(&p.offset)
                .without_min_weight();
            for n in [0usize, 1, 5, 8] {
                let xs: Vec<i8> = (0..n * cols).map(|_| next() as i8).collect();
                let mut accs = std::vec![i32::MIN; n * rows];
                kernel.matvec_seq(&m, &xs, &mut accs);
                for t in 0..n {
                    let want = model(&w, rows, cols, &bias, &xs[t * cols..(t + 1) * cols]);
                    assert_eq!(
                        &accs[t * rows..(t + 1) * rows],
                        &want[..],
                        "{:?}, {rows}x{cols}, vector {t} of {n}",
                        kernel.isa()
                    );
                }
            }
        }
    }
}

/// Tables in the 16-bit form's domain (symmetric, `frac_bits` 16, no clamp needed):
/// a sigmoid-like complement table of 64 even pieces, and an odd tanh-like one whose
/// first 8 pieces are 128 inputs wide with slopes above 2^17 (so the slopes' high
/// halves matter and some intercepts are negative). On every int16 input the AVX-512
/// evaluator (32 at a time in 16-bit lanes) must equal `Pwl::eval`.
#[test]
fn pwl_i16_16_bit_form_equals_eval_on_every_int16() {
    // Symmetry, starts, slopes and the bucket search's compare-adds (`None`: the
    // binary search).
    type Case = (crate::Symmetry, Vec<i32>, Vec<i32>, Option<u32>);
    let tables: [Case; 3] = [
        (
            crate::Symmetry::Complement { total: 32768 },
            (0..64).map(|k| k * 512).collect(),
            (0..64).map(|k| 32000 - 400 * k).collect(),
            Some(0),
        ),
        (
            crate::Symmetry::Odd,
            (0..8)
                .map(|k| k * 128)
                .chain((0..56).map(|k| 1024 + k * 567))
                .collect(),
            (0..8)
                .map(|k| 150_000 - 3000 * k)
                .chain((0..56).map(|k| 20_000 - 300 * k))
                .collect(),
            // Buckets of 512: 128, 256 and 384 inside the first.
            Some(3),
        ),
        // 40 starts in 0..40, then spread: no bucket width keeps both apart.
        (
            crate::Symmetry::Complement { total: 32768 },
            (0..40).chain((0..24).map(|k| 1000 + k * 1300)).collect(),
            (0..64).map(|k| 9000 - 100 * k).collect(),
            None,
        ),
    ];
    for (symmetry, starts, slopes, extra) in tables {
        // Offsets continue the previous piece (value in Q16 at each start).
        let mut offsets = std::vec![0i32; starts.len()];
        for k in 1..starts.len() {
            offsets[k] = offsets[k - 1] + slopes[k - 1] * (starts[k] - starts[k - 1]);
        }
        if symmetry != crate::Symmetry::Odd {
            for o in &mut offsets {
                *o += 16384 << 16;
            }
        }
        let p = crate::Pwl {
            symmetry,
            starts: &starts,
            slopes: &slopes,
            offsets: &offsets,
            frac_bits: 16,
            out_min: i16::MIN as i32,
            out_max: i16::MAX as i32,
        };
        // No input needs the clamp or the int16 saturation.
        assert!((-32768..=32767).all(|x| (-32768..=32767).contains(&p.eval(x))));
        let r = reg_of(&p);
        let reg = RegPwl::new(
            r.half_start,
            r.probes,
            r.slopes,
            r.intercepts,
            r.frac_bits,
            r.fold,
            None,
        );
        assert!(reg.w16.is_some() && r.w16.is_none(), "{symmetry:?}");
        let w16 = reg.w16.as_ref().unwrap();
        assert_eq!(w16.bucket.as_ref().map(|b| b.extra), extra, "{symmetry:?}");
        check_array_evaluator(&p, &[Kernel::detect(), Kernel::PORTABLE], |kernel, xs| {
            kernel.pwl_i16(&reg, xs, |x| p.eval(x as i32))
        });
    }
}

/// A xorshift64* stream (deterministic test data without proptest's shrinking, for
/// the many-row gate cases below).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Rows of the gate-sum tests: 12 AVX-512 vectors and 8 rows left, 25 AVX2 vectors.
const GN: usize = 200;

/// Requantizers that scale down, as the quantizer makes them (multipliers in
/// `[2^30, 2^31)`, shifts in `−31..=0`, small shifts most often), with a few zero and
/// odd multipliers.
fn gate_req(rng: &mut Rng) -> GateReq<GN> {
    let mut mul = [0i32; GN];
    let mut shift = [0i32; GN];
    for r in 0..GN {
        mul[r] = match rng.range(0, 19) {
            0 => 0,
            1 => rng.range(1, 1 << 30) as i32,
            2 => rng.pick(&[i32::MAX, 1 << 30, -(1 << 30), i32::MIN + 1]),
            _ => rng.range(1 << 30, i32::MAX as i64) as i32,
        };
        shift[r] = match rng.range(0, 9) {
            0 => rng.pick(&[0, -31, -30, -1]),
            1..=3 => rng.range(-31, 0) as i32,
            _ => rng.range(-8, 0) as i32,
        };
    }
    GateReq::new(&mul, &shift)
}

/// Accumulators inside the vector forms' range `−2^29 ..< 2^29`, its ends included,
/// spread over magnitudes (small ones make ties of the rounding common).
fn gate_acc(rng: &mut Rng) -> [i32; GN] {
    let lim = 1i64 << 29;
    core::array::from_fn(|_| match rng.range(0, 9) {
        0 => rng.pick(&[-lim, lim - 1, 0, 1, -1, -lim + 1, lim - 2]) as i32,
        1..=3 => rng.range(-(1 << 8), 1 << 8) as i32,
        4..=6 => rng.range(-(1 << 20), 1 << 20) as i32,
        _ => rng.range(-lim, lim - 1) as i32,
    })
}

fn check_gate_sums(
    kernel: Kernel,
    what: &str,
    ax: &[i32; GN],
    rx: &GateReq<GN>,
    ah: &[i32; GN],
    rh: &GateReq<GN>,
) {
    let mut out = [0i16; GN];
    kernel.gate_sums(ax, rx, ah, rh, &mut out);
    for r in 0..GN {
        let want = crate::kernels::gate_preactivation(ax[r], rx.requant(r), ah[r], rh.requant(r));
        assert_eq!(
            out[r],
            want,
            "{} kernel, {what}, row {r}: acc_x {} with {:?}, acc_h {} with {:?}",
            kernel.isa().name(),
            ax[r],
            rx.requant(r),
            ah[r],
            rh.requant(r)
        );
    }
}

#[test]
fn gate_sums_equal_gate_preactivation() {
    let mut kernels = simd_kernels();
    kernels.insert(0, Kernel::PORTABLE);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for trial in 0..300 {
        let (rx, rh) = (gate_req(&mut rng), gate_req(&mut rng));
        let (mut ax, mut ah) = (gate_acc(&mut rng), gate_acc(&mut rng));
        for &k in &kernels {
            check_gate_sums(k, &format!("trial {trial}"), &ax, &rx, &ah, &rh);
        }
        // Beyond the vector forms' range (their results are dropped): one accumulator
        // just past each end, then the extremes.
        let big = [1 << 29, -(1 << 29) - 1, i32::MIN, i32::MAX];
        let row = rng.range(0, GN as i64 - 1) as usize;
        if trial % 2 == 0 {
            ax[row] = big[trial / 2 % 4];
        } else {
            ah[row] = big[trial / 2 % 4];
        }
        for &k in &kernels {
            check_gate_sums(
                k,
                &format!("trial {trial}, one large accumulator"),
                &ax,
                &rx,
                &ah,
                &rh,
            );
        }
    }
    // Requantizers outside the branch-free forms' domain: a shift that scales up, and a
    // multiplier of i32::MIN. In row 9 (shift 0) the recurrent term is i32::MIN ·
    // i32::MIN, whose doubling high product saturates to 2^31 − 1, and the input term
    // i32::MIN · (2^31 − 1) gives 1 − 2^31: the sum is 0 only with the saturation.
    let mut mul = [1 << 30; GN];
    let mut shift = [-3; GN];
    shift[7] = 2;
    let up = GateReq::new(&mul, &shift);
    shift[7] = -3;
    shift[9] = 0;
    mul[9] = i32::MAX;
    let max_mul = GateReq::new(&mul, &shift);
    mul[9] = i32::MIN;
    let min_mul = GateReq::new(&mul, &shift);
    let down = GateReq::new(&[1 << 30; GN], &[-3; GN]);
    let (mut ax, mut ah) = (gate_acc(&mut rng), gate_acc(&mut rng));
    ax[9] = i32::MIN;
    ah[9] = i32::MIN;
    for &k in &kernels {
        check_gate_sums(k, "a shift > 0", &ax, &up, &ah, &down);
        check_gate_sums(k, "an i32::MIN multiplier", &ax, &max_mul, &ah, &min_mul);
    }
}

/// The vector forms run on accumulators up to their range's ends and refuse (return 0)
/// past them: [`gate_sums_equal_gate_preactivation`] would pass without them.
#[cfg(target_arch = "x86_64")]
#[test]
fn gate_sum_vector_forms_run_and_refuse_large_accumulators() {
    let mut rng = Rng(7);
    let (rx, rh) = (gate_req(&mut rng), gate_req(&mut rng));
    let (mut ax, ah) = (gate_acc(&mut rng), gate_acc(&mut rng));
    ax[3] = -(1 << 29);
    ax[4] = (1 << 29) - 1;
    let mut out = [0i16; GN];
    if !skip::needs_isa(
        "the vector gate sums",
        "avx2",
        x86::Avx2::detect().is_some(),
    ) {
        return;
    }
    let run = |ax: &[i32; GN], out: &mut [i16; GN]| {
        let mut done = std::vec![];
        if let Some(k) = x86::Avx512Vnni::detect() {
            done.push((
                16 * (GN / 16),
                k.gate_sums((ax, rx.terms()), (&ah, rh.terms()), out, true),
            ));
        }
        if let Some(k) = x86::Avx2::detect() {
            done.push((
                GN,
                k.gate_sums((ax, rx.terms()), (&ah, rh.terms()), out, true),
            ));
        }
        done
    };
    let runs = run(&ax, &mut out);
    assert!(!runs.is_empty());
    for (whole, done) in runs {
        assert_eq!(done, whole, "accumulators in −2^29 ..< 2^29");
    }
    ax[4] = 1 << 29;
    for (_, done) in run(&ax, &mut out) {
        assert_eq!(done, 0, "an accumulator of 2^29");
    }
    // Unchecked (the caller proved the range): no refusal.
    if let Some(k) = x86::Avx2::detect() {
        let done = k.gate_sums((&ax, rx.terms()), (&ah, rh.terms()), &mut out, false);
        assert_eq!(done, GN, "unchecked");
    }
}

/// Requantizers with a proven accumulator interval ([`GateReq::with_acc_range`]): inside
/// `−2^29 ..< 2^29` the vector forms skip their check and give `gate_preactivation`;
/// an interval reaching `2^29` keeps the check (an accumulator of `2^29` is still right).
#[test]
fn gate_sums_with_a_proven_interval() {
    let mut rng = Rng(11);
    let lim = 1i64 << 29;
    let (rx, rh) = (gate_req(&mut rng), gate_req(&mut rng));
    let (mut ax, mut ah) = (gate_acc(&mut rng), gate_acc(&mut rng));
    ax[3] = -(1 << 29);
    ah[4] = (1 << 29) - 1;
    let inside = |r: &GateReq<GN>| r.clone().with_acc_range(-lim, lim - 1);
    let wide = |r: &GateReq<GN>| r.clone().with_acc_range(i32::MIN as i64, i32::MAX as i64);
    // Which intervals let the vector forms skip their check.
    #[cfg(target_arch = "x86_64")]
    {
        assert!(inside(&rx).proven_in_vector_range());
        assert!(!wide(&rx).proven_in_vector_range());
        assert!(!rx.proven_in_vector_range(), "no interval: checked");
        assert!(!rx
            .clone()
            .with_acc_range(-lim, lim)
            .proven_in_vector_range());
        assert!(!rx
            .clone()
            .with_acc_range(-lim - 1, 0)
            .proven_in_vector_range());
    }
    let mut kernels = simd_kernels();
    kernels.insert(0, Kernel::PORTABLE);
    for &k in &kernels {
        check_gate_sums(k, "proven inside", &ax, &inside(&rx), &ah, &inside(&rh));
        check_gate_sums(k, "one term proven", &ax, &inside(&rx), &ah, &wide(&rh));
    }
    ax[5] = 1 << 29;
    ah[6] = i32::MIN;
    for &k in &kernels {
        check_gate_sums(k, "proven wide, checked", &ax, &wide(&rx), &ah, &wide(&rh));
    }
}
