fn main() -> std::process::ExitCode {
    // ggml's abort handler otherwise runs gdb from PATH and prints its backtrace to stdout,
    // into the command's output (`--json` included). Set before any thread starts.
    std::env::set_var("GGML_NO_BACKTRACE", "1");
    gemlet::cli::main()
}
