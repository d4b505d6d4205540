use std::process::ExitCode;

use clap::Parser;
use pitrguard::cli::{Cli, Command, reconcile, serve, validate, windows};

// mimalloc, which won hack/bench-allocator.sh; glibc with `--no-default-features --features runtime`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The offline commands say what went wrong themselves, in one line; RUST_LOG still shows logs.
    let _flush_logs_on_exit =
        init_tracing(if matches!(cli.command, Command::Serve(_) | Command::Reconcile(_)) { "info" } else { "off" });
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
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(command)
}

/// Logs go to stderr; `PITRGUARD_LOG_FORMAT=json` for one JSON object per line,
/// `RUST_LOG` for the level (default `default_level`).
///
/// A line is formatted where it is logged and written to stderr by a thread of its own, so a
/// request never waits on the write (the per-decision line cost the webhook ~20% of its
/// requests/s when written in place). Lines are not dropped: when the writer falls 128k lines
/// behind, logging waits. The guard flushes what is left when dropped.
fn init_tracing(default_level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("pitrguard-log")
        // The writer drains what is queued, then flushes: under load, one write for many lines.
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("PITRGUARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
}
