//! Generates `$OUT_DIR/charlm.rs` from the quantized model in `model/`.
//!
//! The model was quantized from the float char LM in `examples/charlm` with
//! `irnn quantize examples/charlm/charlm.json --calib examples/charlm/data/calib.npy
//! -o examples/build-rs/model/charlm.irnn.json`.

fn main() {
    if let Err(e) = irnn_codegen::builder::Builder::new()
        .model("model/charlm.irnn.json")
        .unroll(irnn_codegen::back::Unroll::None)
        .compile()
    {
        // The error names the file and what is wrong; fail the build with it.
        eprintln!("{e}");
        std::process::exit(1);
    }
}
