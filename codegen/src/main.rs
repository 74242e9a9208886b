//! The `irnn` command-line tool. All logic lives in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    irnn_codegen::cli::main()
}
