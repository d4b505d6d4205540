use std::process::ExitCode;

use clap::Parser;
use pitrguard::cli::{Cli, Command, validate, windows};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Windows(args) => windows::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pitrguard: {e:#}");
            ExitCode::from(2)
        }
    }
}
