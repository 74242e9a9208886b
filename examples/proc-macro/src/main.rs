//! A character-level language model (Embedding 72×64 → LSTM 2×256 → Linear 72,
//! trained in PyTorch on Shakespeare) compiled to integer-only Rust by the
//! `include_model!` proc-macro, with the dot products unrolled.
//!
//! ```text
//! cargo run --release -- "To be, or not to be"          # the model's top guesses
//! cargo run --release -- --logits "To be"               # id and int32 logits per step
//! ```
//!
//! The model is the quantized char LM shipped in `examples/charlm/charlm.irnn.json`,
//! made with `irnn quantize examples/charlm/charlm.json --calib
//! examples/charlm/data/calib.npy -o examples/charlm/charlm.irnn.json`.

/// The generated code: constants, weights and `charlm::Model`. The path is relative to
/// this crate's Cargo.toml; cargo rebuilds when the model files change.
mod charlm {
    irnn_macros::include_model!("../charlm/charlm.irnn.json", unroll = "inner");
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

/// A printable form of token `id`.
fn shown(id: usize) -> String {
    match VOCAB.chars().nth(id) {
        Some('\n') => "\\n".to_string(),
        Some(c) => c.to_string(),
        None => "?".to_string(),
    }
}

/// Ids of the `k` largest logits, best first (ties: lower id first).
fn top_k(logits: &[i32], k: usize) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b].cmp(&logits[a]).then(a.cmp(&b)));
    ids.truncate(k);
    ids
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let logits_mode = args.iter().any(|a| a == "--logits");
    let text = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "To be, or not to be, that is the question".to_string());
    assert_eq!(VOCAB.chars().count(), charlm::VOCAB_SIZE);

    // The whole sequence at once with `run`: one row of logits per character.
    let ids: Vec<u32> = text.chars().map(token_of).collect();
    let mut logits = vec![[0i32; charlm::OUTPUT_SIZE]; ids.len()];
    let mut model = charlm::Model::new();
    let steps = model.run(&ids, &mut logits);
    assert_eq!(steps, ids.len());

    if logits_mode {
        // Machine-readable: the test suite compares these with the interpreter.
        println!("model {} {}", charlm::MODEL_NAME, charlm::MODEL_HASH);
        for (t, (id, row)) in ids.iter().zip(&logits).enumerate() {
            let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            println!("step {t} token {id} {}", values.join(" "));
        }
        return;
    }

    // How often the model's first guess for the next character was right.
    let mut hits = 0;
    for (t, row) in logits.iter().enumerate() {
        let guesses = top_k(row, 3);
        let actual = ids
            .get(t + 1)
            .map(|&i| shown(i as usize))
            .unwrap_or_default();
        if ids.get(t + 1).is_some_and(|&i| i as usize == guesses[0]) {
            hits += 1;
        }
        let guesses: Vec<String> = guesses.into_iter().map(shown).collect();
        println!(
            "after {:>3} chars: next {:<2} guesses [{}]",
            t + 1,
            actual,
            guesses.join(" ")
        );
    }
    println!(
        "{hits} of {} next characters guessed right",
        ids.len().saturating_sub(1)
    );
}
