//! Which files make the configuration, found and merged as oslo.config does.
//!
//! - Without `--config-file`, the first `zaqar.conf` found in
//!   `~/.zaqar/`, `~/`, `/etc/zaqar/`, `/etc/` is read, then the first
//!   `zaqar-server.conf` found there (the program's own name), as
//!   oslo.config's `find_config_files` does.
//! - Without `--config-dir`, the first `zaqar.conf.d` (then
//!   `zaqar-server.conf.d`) directory found in the same places is read.
//! - `--config-file` and `--config-dir` may be repeated; they are read in the
//!   order given, after the defaults that still apply. A directory
//!   contributes its `*.conf` files in name order.
//! - Files are merged option by option: a later file overrides the options
//!   it sets and leaves the others alone.
//!
//! A file named on the command line must exist (oslo.config refuses to
//! start without it); a default location that does not exist is skipped.
//! When nothing is found at all the server runs on its defaults.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The project name: `zaqar.conf`, `~/.zaqar`, `/etc/zaqar`.
pub const PROJECT: &str = "zaqar";

/// The program name: `zaqar-server.conf`.
pub const PROGRAM: &str = "zaqar-server";

/// One source named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--config-file PATH`.
    File(PathBuf),
    /// `--config-dir PATH`: its `*.conf` files in name order.
    Dir(PathBuf),
}

/// The directories oslo.config searches, most specific first: `~/.zaqar`,
/// `~`, `/etc/zaqar`, `/etc` (without a home directory, only the last two).
pub fn search_dirs(home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = home {
        dirs.push(home.join(format!(".{PROJECT}")));
        dirs.push(home.to_owned());
    }
    dirs.push(Path::new("/etc").join(PROJECT));
    dirs.push(PathBuf::from("/etc"));
    dirs
}

/// The first `<name><extension>` that exists in `dirs`, for the project's
/// name, then the program's.
fn first_found(dirs: &[PathBuf], extension: &str, want_dir: bool) -> Vec<PathBuf> {
    [PROJECT, PROGRAM]
        .iter()
        .filter_map(|name| {
            dirs.iter()
                .map(|d| d.join(format!("{name}{extension}")))
                .find(|p| if want_dir { p.is_dir() } else { p.is_file() })
        })
        .collect()
}

/// The sources read when the command line names none of a kind: default
/// files unless `sources` has a [`Source::File`], default directories
/// unless it has a [`Source::Dir`]; then `sources` in their order.
pub fn with_defaults(sources: &[Source], home: Option<&Path>) -> Vec<Source> {
    let dirs = search_dirs(home);
    let mut out = Vec::new();
    if !sources.iter().any(|s| matches!(s, Source::File(_))) {
        out.extend(
            first_found(&dirs, ".conf", false)
                .into_iter()
                .map(Source::File),
        );
    }
    if !sources.iter().any(|s| matches!(s, Source::Dir(_))) {
        out.extend(
            first_found(&dirs, ".conf.d", true)
                .into_iter()
                .map(Source::Dir),
        );
    }
    out.extend(sources.iter().cloned());
    out
}

/// The files of `sources`, in the order they are read.
///
/// # Errors
/// A named file or directory does not exist or cannot be listed.
pub fn files(sources: &[Source]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for source in sources {
        match source {
            Source::File(path) => {
                if !path.is_file() {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        reason: "no such file (--config-file)".into(),
                    });
                }
                out.push(path.clone());
            }
            Source::Dir(dir) => {
                let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::Read {
                    path: dir.clone(),
                    reason: format!("{e} (--config-dir)"),
                })?;
                let mut confs: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf"))
                    .collect();
                confs.sort();
                out.extend(confs);
            }
        }
    }
    Ok(out)
}

/// Sections and their options, as read from INI text.
pub type Sections = BTreeMap<String, HashMap<String, String>>;

/// Parses INI text into sections (options before any header are
/// `[DEFAULT]`); values are taken literally, trimmed.
///
/// # Errors
/// Text that is not INI.
pub fn parse_ini(text: &str) -> Result<Sections, String> {
    let opts = ini::ParseOption {
        enabled_escape: false,
        enabled_quote: false,
        ..Default::default()
    };
    let ini = ini::Ini::load_from_str_opt(text, opts).map_err(|e| e.to_string())?;
    let mut sections = Sections::new();
    for (name, props) in ini.iter() {
        let entry = sections
            .entry(name.unwrap_or("DEFAULT").to_owned())
            .or_default();
        for (k, v) in props.iter() {
            entry.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    Ok(sections)
}

/// Reads `files` in order and merges them option by option (a later file
/// wins).
///
/// # Errors
/// A file cannot be read or is not INI.
pub fn read_merged(files: &[PathBuf]) -> Result<Sections, ConfigError> {
    let mut merged = Sections::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let sections = parse_ini(&text).map_err(|reason| ConfigError::Read {
            path: path.clone(),
            reason,
        })?;
        for (name, options) in sections {
            merged.entry(name).or_default().extend(options);
        }
    }
    Ok(merged)
}

/// The directories a relative file name given in the configuration (such as
/// `[oslo_policy] policy_file`) is looked up in, as oslo.config's
/// `find_file`: the directories of the files read, last first, then the
/// default search directories.
pub fn lookup_dirs(files: &[PathBuf], home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for f in files.iter().rev() {
        let dir = match f.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    if !files.is_empty() {
        for d in search_dirs(home) {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs
}

/// The user's home directory (`$HOME`), if set.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_found_in_oslo_order_and_only_when_not_named() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        // Nothing there: nothing found (unless the machine has /etc/zaqar).
        let none = with_defaults(&[], Some(h));
        assert!(none.iter().all(|s| match s {
            Source::File(p) | Source::Dir(p) => p.starts_with("/etc"),
        }));
        std::fs::create_dir_all(h.join(".zaqar/zaqar.conf.d")).unwrap();
        std::fs::write(h.join(".zaqar/zaqar.conf"), "").unwrap();
        std::fs::write(h.join("zaqar.conf"), "").unwrap();
        std::fs::write(h.join("zaqar-server.conf"), "").unwrap();
        let found = with_defaults(&[], Some(h));
        assert_eq!(
            found,
            vec![
                Source::File(h.join(".zaqar/zaqar.conf")),
                Source::File(h.join("zaqar-server.conf")),
                Source::Dir(h.join(".zaqar/zaqar.conf.d")),
            ]
        );
        // A named file replaces the default files, not the default dirs.
        let named = with_defaults(&[Source::File("/x.conf".into())], Some(h));
        assert_eq!(
            named,
            vec![
                Source::Dir(h.join(".zaqar/zaqar.conf.d")),
                Source::File("/x.conf".into())
            ]
        );
    }

    #[test]
    fn later_files_override_and_dirs_read_conf_files_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("a.conf"),
            "[DEFAULT]\nadmin_mode = true\n[transport]\nmax_messages_per_page = 5\n",
        )
        .unwrap();
        std::fs::create_dir(p.join("conf.d")).unwrap();
        std::fs::write(
            p.join("conf.d/20-b.conf"),
            "[transport]\nmax_messages_per_page = 7\n",
        )
        .unwrap();
        std::fs::write(
            p.join("conf.d/10-a.conf"),
            "[transport]\nmax_messages_per_page = 6\n",
        )
        .unwrap();
        std::fs::write(
            p.join("conf.d/99-z.conf.bak"),
            "[transport]\nmax_messages_per_page = 9\n",
        )
        .unwrap();
        let files = files(&[
            Source::File(p.join("a.conf")),
            Source::Dir(p.join("conf.d")),
        ])
        .unwrap();
        assert_eq!(
            files,
            vec![
                p.join("a.conf"),
                p.join("conf.d/10-a.conf"),
                p.join("conf.d/20-b.conf")
            ]
        );
        let merged = read_merged(&files).unwrap();
        assert_eq!(merged["transport"]["max_messages_per_page"], "7");
        assert_eq!(merged["DEFAULT"]["admin_mode"], "true");
        // A named file that is missing is an error.
        let e = super::files(&[Source::File(p.join("missing.conf"))]).unwrap_err();
        assert!(e.to_string().contains("missing.conf"), "{e}");
        let e = super::files(&[Source::Dir(p.join("missing.d"))]).unwrap_err();
        assert!(e.to_string().contains("missing.d"), "{e}");
    }

    #[test]
    fn relative_names_are_looked_up_next_to_the_last_file_first() {
        let dirs = lookup_dirs(
            &[PathBuf::from("/a/zaqar.conf"), PathBuf::from("/b/c.conf")],
            None,
        );
        assert_eq!(&dirs[..2], &[PathBuf::from("/b"), PathBuf::from("/a")]);
        assert!(lookup_dirs(&[], None).is_empty());
    }
}
