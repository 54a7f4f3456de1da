use clap::Parser;

/// Run quantized Gemma models from GGUF files on laptops and Raspberry-Pi-class CPUs.
#[derive(Parser)]
#[command(name = "gemlet", version = long_version(), long_version = long_version())]
struct Cli {}

fn long_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            gemlet::ggml::build_info()
        )
    })
}

fn main() {
    let _cli = Cli::parse();
}
