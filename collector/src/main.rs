//! The `kiroku` command.

fn main() -> std::process::ExitCode {
    kiroku_collector::cli::main()
}
