//! `zaqar-status upgrade check`: the checks an operator runs before
//! starting a new release on an existing deployment, as the reference's
//! `zaqar-status` (oslo.upgradecheck) does.
//!
//! Each check answers success, warning or failure with details. The
//! command's exit status is the worst result: 0 success, 1 warning,
//! 2 failure (oslo.upgradecheck's codes; 255 when the checks could not run).

use std::fmt::Write as _;

use crate::api::policy::Policy;
use crate::config::{Config, StoreEngine};
use crate::storage::sqlite;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Nothing to do.
    Success,
    /// The upgrade can go on, but read the details.
    Warning,
    /// Do not upgrade before fixing this.
    Failure,
}

impl Outcome {
    /// oslo.upgradecheck's exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Warning => 1,
            Outcome::Failure => 2,
        }
    }
}

/// One check's name, outcome and details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub outcome: Outcome,
    /// Why, and what to do.
    pub details: String,
}

/// Runs every check on a configuration that was read successfully (an
/// unreadable configuration is a failure the caller reports itself).
pub fn upgrade_check(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let files = if config.files_read.is_empty() {
        "no configuration file: the defaults".to_owned()
    } else {
        let names: Vec<String> = config
            .files_read
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("read {}", names.join(", "))
    };
    checks.push(if config.ignored.is_empty() {
        Check {
            name: "Configuration",
            outcome: Outcome::Success,
            details: files,
        }
    } else {
        Check {
            name: "Configuration",
            outcome: Outcome::Warning,
            details: format!(
                "{files}; accepted but ignored: {}",
                config.ignored.join("; ")
            ),
        }
    });
    checks.push(match Policy::load(config) {
        Ok(p) => Check {
            name: "Policy file",
            outcome: Outcome::Success,
            details: match p.source() {
                Some(f) => format!("{} is valid", f.display()),
                None => "no policy file: the default rules".into(),
            },
        },
        Err(e) => Check {
            name: "Policy file",
            outcome: Outcome::Failure,
            details: e.to_string(),
        },
    });
    checks.push(match config.message_store {
        StoreEngine::Sqlite => sqlite_schema("Message store schema", &config.sqlite_path),
        other => Check {
            name: "Message store schema",
            outcome: Outcome::Success,
            details: format!(
                "the {other} store keeps no schema version in this release: nothing to migrate"
            ),
        },
    });
    if config.pooling && config.management_store == "sqlite" {
        checks.push(sqlite_schema(
            "Management store schema",
            &config.management_sqlite_path,
        ));
    }
    checks
}

/// The schema version of a SQLite file against the one this build writes.
fn sqlite_schema(name: &'static str, path: &std::path::Path) -> Check {
    let supported = sqlite::SCHEMA_VERSION;
    let (outcome, details) = match sqlite::schema_version_of(path) {
        Ok(None) => (
            Outcome::Success,
            format!(
                "{} does not exist yet: it is created at version {supported}",
                path.display()
            ),
        ),
        Ok(Some(v)) if v == supported => (
            Outcome::Success,
            format!("{} is at version {v}, current", path.display()),
        ),
        Ok(Some(v)) if v < supported => (
            Outcome::Warning,
            format!(
                "{} is at version {v}: the server migrates it to {supported} when it starts \
                 (back the file up first; older releases cannot open it afterwards)",
                path.display()
            ),
        ),
        Ok(Some(v)) => (
            Outcome::Failure,
            format!(
                "{} is at version {v}, newer than this release supports ({supported}): \
                 it was written by a newer release",
                path.display()
            ),
        ),
        Err(e) => (
            Outcome::Failure,
            format!("{} cannot be read: {e}", path.display()),
        ),
    };
    Check {
        name,
        outcome,
        details,
    }
}

/// The checks as oslo.upgradecheck prints them: one block per check.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::from("Upgrade Check Results\n");
    for c in checks {
        let result = match c.outcome {
            Outcome::Success => "Success",
            Outcome::Warning => "Warning",
            Outcome::Failure => "Failure",
        };
        let _ = write!(
            out,
            "\nCheck: {}\nResult: {result}\nDetails: {}\n",
            c.name, c.details
        );
    }
    out
}

/// The worst outcome of `checks` (success when there are none).
pub fn worst(checks: &[Check]) -> Outcome {
    checks
        .iter()
        .map(|c| c.outcome)
        .max()
        .unwrap_or(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_db(path: &std::path::Path) -> Config {
        Config::parse(&format!(
            "[drivers:message_store:sqlite]\nuri = sqlite://{}\n",
            path.display()
        ))
        .unwrap()
    }

    #[test]
    fn sqlite_schema_versions_decide_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("z.sqlite");
        let checks = upgrade_check(&config_with_db(&db));
        assert_eq!(worst(&checks), Outcome::Success, "{checks:?}");
        assert!(checks[2].details.contains("does not exist yet"));
        let set = |v: i64| {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(&format!("PRAGMA user_version = {v};"))
                .unwrap();
        };
        set(sqlite::SCHEMA_VERSION);
        assert_eq!(
            worst(&upgrade_check(&config_with_db(&db))),
            Outcome::Success
        );
        set(1);
        let checks = upgrade_check(&config_with_db(&db));
        assert_eq!(worst(&checks), Outcome::Warning);
        assert!(checks[2].details.contains("version 1"), "{checks:?}");
        set(sqlite::SCHEMA_VERSION + 1);
        let checks = upgrade_check(&config_with_db(&db));
        assert_eq!(worst(&checks), Outcome::Failure);
        assert!(render(&checks).contains("Result: Failure"));
    }

    #[test]
    fn ignored_options_warn_and_a_bad_policy_fails() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("z.sqlite");
        let mut c = Config::parse(&format!(
            "[DEFAULT]\nsharding = true\n[drivers:message_store:sqlite]\nuri = {}\n\
             [oslo_policy]\npolicy_file = {}\n",
            db.display(),
            dir.path().join("missing.yaml").display()
        ))
        .unwrap();
        c.config_dir = Some(dir.path().to_owned());
        let checks = upgrade_check(&c);
        assert_eq!(checks[0].outcome, Outcome::Warning);
        assert!(
            checks[0].details.contains("[DEFAULT] sharding"),
            "{checks:?}"
        );
        assert_eq!(checks[1].outcome, Outcome::Failure);
        assert_eq!(worst(&checks).code(), 2);
    }
}
