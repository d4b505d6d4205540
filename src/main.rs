use std::process::ExitCode;

use clap::Parser;
use pitrguard::cli::{Cli, Command, reconcile, serve, validate, windows};

// mimalloc, which won hack/bench-allocator.sh; glibc with `--no-default-features --features runtime`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    pitrguard::memory::purge_freed_pages_at_once();
    let cli = Cli::parse();
    // The offline commands say what went wrong themselves, in one line; RUST_LOG still shows logs.
    let level = if matches!(cli.command, Command::Serve(_) | Command::Reconcile(_)) { "info" } else { "off" };
    let _flush_logs_on_exit = match pitrguard::logging::init(level) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("pitrguard: cannot start the thread that writes the log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Windows(args) => windows::run(args),
        Command::Certs(args) => pitrguard::certs::run(args, &mut std::io::stdout().lock()),
        Command::Serve(args) => block_on(serve::run(args)),
        Command::Reconcile(args) => block_on(reconcile::run(args)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pitrguard: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a long-lived command on a multi-threaded tokio runtime.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<u8>>) -> anyhow::Result<u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(pitrguard::memory::on_worker_idle)
        .build()?
        .block_on(command)
}
