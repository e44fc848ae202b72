//! The log, set up from oslo.log's options of `[DEFAULT]`
//! ([`crate::config::LoggingSection`]): `debug`, `log_file`, `log_dir`,
//! `use_json`, `default_log_levels`, `log_date_format`. `use_syslog` and
//! `use_journal` are accepted and listed as ignored at start-up.
//!
//! `RUST_LOG`, when set and not empty, replaces the levels the
//! configuration gives. The levels can be changed while the server runs
//! ([`LogHandle::reload`], on SIGHUP); where the log goes and its format
//! are fixed at start-up.
//!
//! One line per request is logged at INFO under the target
//! `zaqar::access` (method, path, status, time, request id), as the
//! reference's WSGI server does; `default_log_levels = zaqar.access=WARN`
//! silences it.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::LoggingSection;

/// The target of the one line per request.
pub const ACCESS_TARGET: &str = "zaqar::access";

/// The filter directives the options ask for: the base level (`debug` or
/// `info`), then `default_log_levels` with dotted names as Rust targets
/// and Python's level names.
pub fn directives(options: &LoggingSection) -> String {
    let mut out = vec![if options.debug { "debug" } else { "info" }.to_owned()];
    for pair in &options.default_log_levels {
        let Some((name, level)) = pair.split_once('=') else {
            continue;
        };
        let level = match level.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" | "FATAL" | "ERROR" => "error",
            "WARN" | "WARNING" => "warn",
            "INFO" => "info",
            "DEBUG" => "debug",
            "TRACE" => "trace",
            _ => continue,
        };
        let target = name.trim().replace('.', "::");
        if target.is_empty()
            || !target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
        {
            continue;
        }
        out.push(format!("{target}={level}"));
    }
    out.join(",")
}

/// The filter in force: `RUST_LOG` when set, else the options'.
fn filter(options: &LoggingSection) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).unwrap_or_else(|_| EnvFilter::new(directives(options)))
        }
        _ => EnvFilter::new(directives(options)),
    }
}

/// Where the log goes: `log_dir`/`log_file`, or stderr.
pub fn log_path(options: &LoggingSection) -> Option<PathBuf> {
    match (&options.log_file, &options.log_dir) {
        (Some(f), Some(d)) if PathBuf::from(f).is_relative() => Some(PathBuf::from(d).join(f)),
        (Some(f), _) => Some(PathBuf::from(f)),
        (None, Some(d)) => Some(PathBuf::from(d).join("zaqar-server.log")),
        (None, None) => None,
    }
}

/// The time of a text line, in `log_date_format`, with milliseconds.
struct OsloTime(String);

impl FormatTime for OsloTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = chrono::Local::now();
        let mut text = String::new();
        // A format chrono cannot render falls back to the default.
        if std::fmt::Write::write_fmt(&mut text, format_args!("{}", now.format(&self.0))).is_err() {
            text = now.format("%Y-%m-%d %H:%M:%S").to_string();
        }
        write!(w, "{text}.{:03}", now.timestamp_subsec_millis())
    }
}

/// The registry behind the reloadable level filter.
type Filtered = tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>;

/// Changes the levels of the installed log.
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    /// Puts the levels of `options` (or `RUST_LOG`) in force.
    pub fn reload(&self, options: &LoggingSection) {
        let directives = directives(options);
        match self.handle.reload(filter(options)) {
            Ok(()) => tracing::info!(levels = %directives, "log levels reloaded"),
            Err(e) => tracing::warn!(error = %e, "log levels not reloaded"),
        }
    }
}

/// Installs the process's log as the options ask.
///
/// # Errors
/// The log file cannot be opened.
pub fn init(options: &LoggingSection) -> Result<LogHandle, String> {
    let (filter, handle) = reload::Layer::new(filter(options));
    let path = log_path(options);
    let file = match &path {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("log directory {}: {e}", dir.display()))?;
            }
            Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("log file {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match (file, options.use_json) {
        (Some(f), true) => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(Mutex::new(f))
            .boxed(),
        (Some(f), false) => tracing_subscriber::fmt::layer()
            .with_timer(OsloTime(options.log_date_format.clone()))
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .boxed(),
        (None, true) => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
        (None, false) => tracing_subscriber::fmt::layer()
            .with_timer(OsloTime(options.log_date_format.clone()))
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    Registry::default()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LogHandle { handle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_levels_become_filter_directives() {
        let mut o = LoggingSection::default();
        assert_eq!(directives(&o), "info");
        o.debug = true;
        o.default_log_levels = vec![
            "zaqar.access=WARN".into(),
            "amqp=WARNING".into(),
            "keystonemiddleware=CRITICAL".into(),
            "bad=LOUD".into(),
            "no-level".into(),
            "x[y]=INFO".into(),
        ];
        assert_eq!(
            directives(&o),
            "debug,zaqar::access=warn,amqp=warn,keystonemiddleware=error"
        );
    }

    #[test]
    fn log_file_and_dir() {
        let mut o = LoggingSection::default();
        assert_eq!(log_path(&o), None);
        o.log_dir = Some("/var/log/zaqar".into());
        assert_eq!(
            log_path(&o),
            Some(PathBuf::from("/var/log/zaqar/zaqar-server.log"))
        );
        o.log_file = Some("z.log".into());
        assert_eq!(log_path(&o), Some(PathBuf::from("/var/log/zaqar/z.log")));
        o.log_file = Some("/tmp/z.log".into());
        assert_eq!(log_path(&o), Some(PathBuf::from("/tmp/z.log")));
    }
}
