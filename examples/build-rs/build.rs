//! Generates `$OUT_DIR/charlm.rs` from the quantized char LM shipped in
//! `examples/charlm/charlm.irnn.json`, which was made with
//! `irnn quantize examples/charlm/charlm.json --calib examples/charlm/data/calib.npy
//! -o examples/charlm/charlm.irnn.json`.

fn main() {
    if let Err(e) = irnn_codegen::builder::Builder::new()
        .model("../charlm/charlm.irnn.json")
        .unroll(irnn_codegen::back::Unroll::None)
        .compile()
    {
        // The error names the file and what is wrong; fail the build with it.
        eprintln!("{e}");
        std::process::exit(1);
    }
}
