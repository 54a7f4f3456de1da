fn main() -> std::process::ExitCode {
    gemlet::cli::main()
}
