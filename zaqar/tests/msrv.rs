//! The declared minimum Rust version (`rust-version` of the workspace's
//! Cargo.toml) is what the lock file truly needs: the highest
//! `rust-version` among the locked dependencies built for this platform. Declaring less lets a
//! packager try a toolchain that cannot build us; declaring more turns
//! away toolchains that can.
//!
//! Where the declared toolchain is installed (`rustup toolchain list`), CI
//! can build with it: `cargo +1.89 build --locked` (run_tests.sh `msrv`
//! does when it finds one).

use std::process::Command;

fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The target the tests were built for: only its dependencies are
/// downloaded by a build, and `--offline` can read no others.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host")
}

#[test]
fn rust_version_is_what_the_lock_file_needs() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The packages of this platform: a fresh machine has downloaded only
    // those (a dependency of Android or Windows only was never fetched).
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "zaqar")
        .and_then(|p| p["rust_version"].as_str())
        .expect("zaqar declares a rust-version");
    let members: Vec<&serde_json::Value> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let (needed, by) = packages
        .iter()
        .filter(|p| !members.contains(&&p["id"]))
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?)))
        .max()
        .expect("dependencies declare rust versions");
    let declared = version(ours);
    let mut needed_cmp = needed.clone();
    needed_cmp.resize(declared.len().max(needed.len()), 0);
    let mut declared_cmp = declared.clone();
    declared_cmp.resize(needed_cmp.len(), 0);
    assert_eq!(
        declared_cmp, needed_cmp,
        "rust-version = {ours} but the lock file needs {needed:?} (for {by})"
    );
}
