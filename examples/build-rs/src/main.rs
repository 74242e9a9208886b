//! A character-level language model (Embedding 72×64 → LSTM 2×256 → Linear 72,
//! trained in PyTorch on Shakespeare) running as integer-only Rust generated at build
//! time by `build.rs`.
//!
//! ```text
//! cargo run --release -- "ROMEO:"        # read the prompt, then write 200 characters
//! cargo run --release -- --logits "To be" # one line per prompt step: id and int32 logits
//! cargo run --release -- --check TOKENS.npy REFERENCE.npy
//!                                         # compare with `irnn run` output, bit for bit
//! ```

/// The generated code: constants, weights and `charlm::Model`.
mod charlm {
    include!(concat!(env!("OUT_DIR"), "/charlm.rs"));
}

/// Characters in token-id order (`examples/charlm/vocab.json`); `~` (the last id)
/// stands for every character not in the list.
const VOCAB: &str = "\n !\"&'(),-.12:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~";

fn token_of(c: char) -> u32 {
    VOCAB
        .chars()
        .position(|v| v == c)
        .unwrap_or(charlm::VOCAB_SIZE - 1) as u32
}

fn char_of(token: u32) -> char {
    VOCAB.chars().nth(token as usize).unwrap_or('~')
}

/// Index of the largest logit (the first one on ties): greedy decoding, integers only.
fn argmax(logits: &[i32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Reads a C-ordered little-endian int32 `.npy` file: (shape, values).
fn read_i32_npy(path: &str) -> Result<(Vec<usize>, Vec<i32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{path}: not a .npy file"));
    }
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        let b = bytes.get(8..12).ok_or(format!("{path}: truncated"))?;
        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
    };
    let header = std::str::from_utf8(bytes.get(start..start + len).ok_or("truncated")?)
        .map_err(|e| format!("{path}: {e}"))?;
    if !header.contains("'<i4'") || header.contains("'fortran_order': True") {
        return Err(format!(
            "{path}: expected a C-ordered int32 array, got {header}"
        ));
    }
    let dims = header
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or(format!("{path}: no shape"))?;
    let shape: Vec<usize> = dims
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

/// `--check`: runs every sequence of `tokens` (state reset per sequence, as `irnn run`
/// does) and compares each logit with `reference`.
fn check(tokens: &str, reference: &str) -> Result<String, String> {
    let (ts, toks) = read_i32_npy(tokens)?;
    let (rs, want) = read_i32_npy(reference)?;
    let [n, t] = ts[..] else {
        return Err(format!("{tokens}: expected shape [N, T], got {ts:?}"));
    };
    if rs != [n, t, charlm::OUTPUT_SIZE] {
        return Err(format!(
            "{reference}: shape {rs:?} does not match [{n}, {t}, {}]",
            charlm::OUTPUT_SIZE
        ));
    }
    let mut model = charlm::Model::new();
    let mut mismatches = 0usize;
    for s in 0..n {
        model.reset();
        for step in 0..t {
            let at = s * t + step;
            let got = model.step(toks[at] as u32);
            let expected = &want[at * charlm::OUTPUT_SIZE..(at + 1) * charlm::OUTPUT_SIZE];
            mismatches += got.iter().zip(expected).filter(|(a, b)| a != b).count();
        }
    }
    if mismatches > 0 {
        return Err(format!(
            "MISMATCH: {mismatches} of {} logits differ",
            want.len()
        ));
    }
    Ok(format!(
        "bit-identical: {n} sequences x {t} steps x {} logits match irnn run",
        charlm::OUTPUT_SIZE
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--check") {
        match (args.get(1), args.get(2)) {
            (Some(tokens), Some(reference)) => match check(tokens, reference) {
                Ok(msg) => println!("{msg}"),
                Err(msg) => {
                    eprintln!("{msg}");
                    std::process::exit(1);
                }
            },
            _ => {
                eprintln!("usage: --check TOKENS.npy REFERENCE.npy");
                std::process::exit(2);
            }
        }
        return;
    }
    let logits_mode = args.iter().any(|a| a == "--logits");
    let prompt = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "ROMEO:\nWhat ".to_string());
    assert_eq!(VOCAB.chars().count(), charlm::VOCAB_SIZE);

    let mut model = charlm::Model::new();
    if logits_mode {
        // Machine-readable: the test suite compares these with the interpreter.
        println!("model {} {}", charlm::MODEL_NAME, charlm::MODEL_HASH);
        for (t, c) in prompt.chars().enumerate() {
            let id = token_of(c);
            let logits = model.step(id);
            let values: Vec<String> = logits.iter().map(|v| v.to_string()).collect();
            println!("step {t} token {id} {}", values.join(" "));
        }
        return;
    }

    let mut next = 0;
    for c in prompt.chars() {
        next = argmax(model.step(token_of(c)));
    }
    let mut text = prompt.clone();
    for _ in 0..200 {
        text.push(char_of(next));
        next = argmax(model.step(next));
    }
    println!("{text}");
}
