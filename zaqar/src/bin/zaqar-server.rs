//! `zaqar-server`: runs the Zaqar v2 API (HTTP and WebSocket) from a `zaqar.conf`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: much cheaper than glibc malloc for the many small, short-lived
/// allocations of request handling.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line options (the reference's names).
#[derive(Parser, Debug)]
#[command(
    name = "zaqar-server",
    version,
    about = "OpenStack Zaqar messaging service"
)]
struct Cli {
    /// Path to zaqar.conf; without it the defaults run (embedded store, no auth).
    #[arg(long = "config-file")]
    config_file: Option<PathBuf>,
    /// Serve the admin routes (overrides `[DEFAULT] admin_mode`).
    #[arg(long = "admin_mode", alias = "admin-mode")]
    admin_mode: bool,
    /// Print a sample zaqar.conf (every option, its default and help) and exit.
    #[arg(long = "sample-config")]
    sample_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if cli.sample_config {
        print!("{}", zaqar::config::sample_config());
        return ExitCode::SUCCESS;
    }
    raise_nofile_limit();
    let config = match &cli.config_file {
        Some(path) => zaqar::config::Config::load(path),
        None => zaqar::config::Config::parse(""),
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zaqar-server: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    config.admin_mode |= cli.admin_mode;
    match zaqar::server::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zaqar-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit of open files to the hard limit: every WebSocket
/// and HTTP connection holds a descriptor, and the usual soft limit (1024)
/// would refuse connections long before memory runs short.
fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: finishing in-flight requests");
}
