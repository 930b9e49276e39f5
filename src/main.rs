use clap::Parser;

fn main() {
    let cli = bgd::cli::Cli::parse();
    std::process::exit(bgd::run(cli));
}
