//! The `irnn` command-line tool. All logic lives in the library (`irnn_cli::cli`).

fn main() -> std::process::ExitCode {
    irnn_cli::cli::main()
}
