//! The command-line options that choose the configuration files, shared by
//! `zaqar-server` and `zaqar-status`: `--config-file` and `--config-dir`,
//! repeatable and read in the order given (see [`super::discovery`]).

use std::path::PathBuf;

use clap::{ArgMatches, Args};

use super::discovery::{self, Source};
use super::{Config, ConfigError};

/// `--config-file` and `--config-dir`.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Path to a config file to use; may be repeated, later files override
    /// earlier ones. Default: the first zaqar.conf found in ~/.zaqar/, ~/,
    /// /etc/zaqar/, /etc/ (then zaqar-server.conf).
    #[arg(long = "config-file", value_name = "PATH")]
    pub config_file: Vec<PathBuf>,
    /// Path to a directory of *.conf files, read in name order after the
    /// files before it on the command line; may be repeated. Default: the
    /// first zaqar.conf.d found in the same places.
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
}

impl ConfigArgs {
    /// The sources in command-line order (`matches` tells the order of
    /// `--config-file` and `--config-dir` between them).
    pub fn sources(&self, matches: &ArgMatches) -> Vec<Source> {
        let mut indexed: Vec<(usize, Source)> = Vec::new();
        let positions = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        for (i, p) in positions("config_file").into_iter().zip(&self.config_file) {
            indexed.push((i, Source::File(p.clone())));
        }
        for (i, p) in positions("config_dir").into_iter().zip(&self.config_dir) {
            indexed.push((i, Source::Dir(p.clone())));
        }
        indexed.sort_by_key(|(i, _)| *i);
        indexed.into_iter().map(|(_, s)| s).collect()
    }

    /// Finds the files (the defaults where none of a kind is named), reads
    /// and merges them ([`Config::files_read`] names them); logs when none
    /// was found.
    ///
    /// # Errors
    /// A named file or directory is missing, or a value is invalid.
    pub fn load(&self, matches: &ArgMatches) -> Result<Config, ConfigError> {
        let sources =
            discovery::with_defaults(&self.sources(matches), discovery::home_dir().as_deref());
        let files = discovery::files(&sources)?;
        if files.is_empty() {
            tracing::info!(
                "no configuration file found (looked for zaqar.conf in ~/.zaqar, ~, /etc/zaqar, \
                 /etc): running on the defaults"
            );
            return Config::parse("");
        }
        Config::load_files(&files)
    }
}
