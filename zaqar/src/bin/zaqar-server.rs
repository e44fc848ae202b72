//! `zaqar-server`: runs the Zaqar v2 API (HTTP and WebSocket) from a `zaqar.conf`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;
use zaqar::config::cli::ConfigArgs;

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
    #[command(flatten)]
    config: ConfigArgs,
    /// Serve the admin routes (overrides `[DEFAULT] admin_mode`).
    #[arg(long = "admin_mode", alias = "admin-mode")]
    admin_mode: bool,
    /// Print a sample zaqar.conf (every option, its default and help) and
    /// exit; `--sample-config=json` prints the same declarations as JSON.
    #[arg(
        long = "sample-config",
        value_name = "FORMAT",
        num_args = 0..=1,
        default_missing_value = "ini",
        value_parser = ["ini", "json"]
    )]
    sample_config: Option<String>,
    /// Print a sample policy.yaml (every rule at its default) and exit.
    #[arg(long = "sample-policy")]
    sample_policy: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.sample_config.as_deref() {
        Some("json") => {
            emit(&format!("{}\n", zaqar::config::options_json()));
            return ExitCode::SUCCESS;
        }
        Some(_) => {
            emit(&zaqar::config::sample_config());
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    if cli.sample_policy {
        emit(&zaqar::api::policy::sample_policy());
        return ExitCode::SUCCESS;
    }
    // The configuration says where the log goes: until it is read, what
    // reading it has to say (files, unknown options) goes to stderr.
    let early = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .finish();
    let loaded = tracing::subscriber::with_default(early, || cli.config.load(&matches));
    let mut config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zaqar-server: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let log = match zaqar::logging::init(&config.logging) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("zaqar-server: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    for file in &config.files_read {
        tracing::info!(file = %file.display(), "configuration file read");
    }
    for ignored in &config.ignored {
        tracing::warn!("configuration option accepted but ignored: {ignored}");
    }
    raise_nofile_limit();
    reload_log_levels_on_sighup(log, config.files_read.clone());
    config.admin_mode |= cli.admin_mode;
    match zaqar::server::run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zaqar-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// On SIGHUP, reads the configuration files again and puts their log
/// levels in force (the policy is reloaded by the server itself).
fn reload_log_levels_on_sighup(log: zaqar::logging::LogHandle, files: Vec<std::path::PathBuf>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match zaqar::config::Config::load_files(&files) {
                Ok(config) => log.reload(&config.logging),
                Err(e) => tracing::error!(error = %e, "SIGHUP: configuration not re-read"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (log, files);
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
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
