//! A character-level language model (Embedding 72×64 → LSTM 2×256 → Linear 72,
//! trained in PyTorch on Shakespeare) running as integer-only Rust generated at build
//! time by `build.rs`.
//!
//! ```text
//! cargo run --release -- "ROMEO:"        # read the prompt, then write 200 characters
//! cargo run --release -- --logits "To be" # one line per prompt step: id and int32 logits
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
