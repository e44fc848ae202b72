//! `zaqar-status upgrade check`: checks a configuration and the stores'
//! schema versions before an upgrade (see [`zaqar::status`]).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use zaqar::config::cli::ConfigArgs;

/// Command-line options, as oslo.upgradecheck's.
#[derive(Parser, Debug)]
#[command(
    name = "zaqar-status",
    version,
    about = "Checks a Zaqar deployment before an upgrade"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

/// The command groups.
#[derive(Subcommand, Debug)]
enum Command {
    /// Upgrade checks.
    Upgrade {
        #[command(subcommand)]
        action: UpgradeAction,
    },
}

/// `upgrade` actions.
#[derive(Subcommand, Debug)]
enum UpgradeAction {
    /// Check the configuration, the policy file and the stores' schema
    /// versions; exit 0 (success), 1 (warning) or 2 (failure).
    Check,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let Command::Upgrade {
        action: UpgradeAction::Check,
    } = cli.command;
    let checks = match cli.config.load(&matches) {
        Ok(config) => zaqar::status::upgrade_check(&config),
        Err(e) => vec![zaqar::status::Check {
            name: "Configuration",
            outcome: zaqar::status::Outcome::Failure,
            details: e.to_string(),
        }],
    };
    print!("{}", zaqar::status::render(&checks));
    ExitCode::from(zaqar::status::worst(&checks).code())
}
