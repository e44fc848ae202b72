//! Fuzzing the api core through both transports, in-process.
//!
//! Every `cargo test` replays the corpus (`tests/fuzz-corpus/`) and runs a
//! short randomised session of each target (about a minute in all, debug
//! build, two cores; each target stops after 25 s on a loaded machine):
//!
//! - `http_requests`: grammar-generated requests of every route and method
//!   (hostile paths, queries, headers, bodies, framing);
//! - `http_raw_mutations`: generated requests and corpus entries with
//!   their bytes mutated;
//! - `websocket_json_frames`, `websocket_msgpack_frames`: frames of every
//!   action, and mutated frames, over real connections.
//!
//! Properties, for every case on every server (SQLite; Redis too when
//! `ZAQAR_TEST_REDIS_URL` is set): no panic on any server thread, the
//! server task alive, every request answered (unless it was not HTTP the
//! server could read), never a 5xx, every error a JSON body with `title`
//! (HTTP) or `error` (WebSocket), every answer within 256 KiB + 4× what
//! the case sent, `Location` within 8 KiB, and the process' resident
//! memory within +200 MiB of its size when the servers started.
//!
//! A failure is shrunk to a minimal case, printed, and written to
//! `target/tmp/fuzz-failures/<target>.json`: fix the bug, then move that
//! file to `tests/fuzz-corpus/found/<what-it-caught>.json`. A failure
//! that kills the process (a stack overflow aborts it) cannot be shrunk:
//! the case it was running is `target/tmp/fuzz-failures/<target>.in-flight.json`.
//!
//! Longer runs: `ZAQAR_FUZZ_SECONDS=3600 cargo test --release -p zaqar
//! --test fuzz` runs each target for that long; `ZAQAR_FUZZ_CASES=N` sets
//! the number of cases per target; `ZAQAR_FUZZ_SEED=N` replays a run.

mod case;
mod corpus;
mod grammar;
mod harness;

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use proptest::strategy::{BoxedStrategy, Strategy};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use case::Case;
use harness::Stats;

/// Longest a target of the default run goes on (it then stops after the
/// batch it is in): five targets, two at a time, about a minute in all.
const DEFAULT_TIME_CAP: Duration = Duration::from_secs(25);

/// Cases run alone while a server panic is being attributed.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

/// How a target runs a case (and checks its answers).
type Runner = fn(&Case, &mut Stats) -> Result<(), String>;

/// Runs a case; a panic seen during it is confirmed by running the case
/// again alone (other targets run concurrently, and a panic names no case).
fn run_attributed(case: &Case, stats: &mut Stats) -> Result<(), String> {
    run_attributed_with(harness::run_case, case, stats)
}

fn run_attributed_with(run: Runner, case: &Case, stats: &mut Stats) -> Result<(), String> {
    let before = harness::server_panics().len();
    let result = {
        let _shared = EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner());
        run(case, stats)
    };
    if harness::server_panics().len() == before {
        return result;
    }
    let _alone = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    let before = harness::server_panics().len();
    let again = run(case, stats);
    let panics = harness::server_panics();
    if panics.len() > before {
        return Err(format!(
            "the server panicked: {}",
            panics[before..].join("\n")
        ));
    }
    again
}

/// Fails when a server thread panicked at any time in this process, even
/// where no case could be blamed (a panic in a background task, a case
/// that did not panic again alone): a panic is a bug whoever caused it.
fn check_no_panic(target: &str) {
    let panics = harness::server_panics();
    assert!(
        panics.is_empty(),
        "{target}: a server thread panicked during the run:\n{}",
        panics.join("\n")
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn failure_path(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-failures")
        .join(format!("{target}.json"))
}

fn in_flight_path(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-failures")
        .join(format!("{target}.in-flight.json"))
}

/// Runs `strategy`'s cases: `default_cases` of them, or what
/// `ZAQAR_FUZZ_CASES` / `ZAQAR_FUZZ_SECONDS` ask for.
fn fuzz(target: &str, default_cases: u64, strategy: BoxedStrategy<Case>, min_api_share: f64) {
    // Every case runs on every store: with Redis there too, half as many
    // cases keep the run as long.
    let per_store = default_cases / harness::servers().len().max(1) as u64;
    fuzz_with(
        harness::run_case,
        target,
        per_store,
        strategy,
        min_api_share,
        true,
    )
}

fn fuzz_with(
    run: Runner,
    target: &str,
    default_cases: u64,
    strategy: BoxedStrategy<Case>,
    min_api_share: f64,
    expect_success: bool,
) {
    harness::servers();
    let explicit_cases = env_u64("ZAQAR_FUZZ_CASES");
    let cases = explicit_cases.unwrap_or(default_cases);
    let deadline = env_u64("ZAQAR_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    // The default run is part of every `cargo test`: on a loaded machine it
    // stops early rather than run long (the cases it ran are reported).
    let soft_limit =
        (explicit_cases.is_none() && deadline.is_none()).then(|| Instant::now() + DEFAULT_TIME_CAP);
    let seed = env_u64("ZAQAR_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let stats = Mutex::new(Stats::default());
    let started = Instant::now();
    let mut done = 0u64;
    let mut batch_no = 0u64;
    loop {
        let batch = match deadline {
            Some(_) => 64,
            None => (cases - done).min(64),
        };
        if batch == 0 {
            break;
        }
        let config = Config {
            cases: batch as u32,
            failure_persistence: None,
            max_shrink_iters: 4096,
            max_shrink_time: 300_000,
            ..Config::default()
        };
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&batch_no.to_le_bytes());
        key[16..16 + target.len().min(16)]
            .copy_from_slice(&target.as_bytes()[..target.len().min(16)]);
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        let in_flight = in_flight_path(target);
        let result = runner.run(&strategy, |case| {
            let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
            // If the process dies (a stack overflow aborts it), this is
            // the case that killed it.
            corpus::write(&in_flight, &case);
            run_attributed_with(run, &case, &mut stats).map_err(|e| {
                // The last failure written is the minimal one.
                corpus::write(&failure_path(target), &case);
                TestCaseError::fail(e)
            })
        });
        match result {
            Ok(()) => {
                let _ = std::fs::remove_file(&in_flight);
            }
            Err(TestError::Fail(reason, case)) => {
                let path = failure_path(target);
                corpus::write(&path, &case);
                panic!(
                    "{target}: {reason}\nminimal case (seed {seed}, saved to {}):\n{}",
                    path.display(),
                    serde_json::to_string_pretty(&case).unwrap()
                );
            }
            Err(TestError::Abort(reason)) => panic!("{target}: aborted: {reason}"),
        }
        done += batch;
        batch_no += 1;
        if deadline.is_some() && batch_no.is_multiple_of(16) {
            eprintln!(
                "{target}: {done} cases, {:.0}s, RSS {} MiB",
                started.elapsed().as_secs_f64(),
                harness::rss_bytes() >> 20
            );
        }
        if let Err(e) = harness::check_memory() {
            panic!("{target}: after {done} cases: {e}");
        }
        if deadline.or(soft_limit).is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    if let Err(e) = harness::check_alive() {
        panic!("{target}: after {done} cases: {e}");
    }
    check_no_panic(target);
    let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{target}: {done} cases in {:.1}s (seed {seed}); answers: none {}, 1xx {}, 2xx {}, 3xx {}, 4xx {}, 5xx {}; from the api core: {}; RSS {} MiB",
        started.elapsed().as_secs_f64(),
        stats.by_class[0],
        stats.by_class[1],
        stats.by_class[2],
        stats.by_class[3],
        stats.by_class[4],
        stats.by_class[5],
        stats.from_api,
        harness::rss_bytes() >> 20
    );
    let answers: u64 = stats.by_class.iter().sum();
    assert!(
        stats.from_api as f64 >= min_api_share * answers as f64,
        "{target}: only {} of {answers} answers came from the api core: the generator is broken",
        stats.from_api
    );
    assert!(
        !expect_success || stats.by_class[2] > 0 || done < 20,
        "{target}: no request succeeded: the generator is broken"
    );
}

#[test]
fn corpus_replays() {
    let entries = corpus::load();
    assert!(!entries.is_empty(), "the corpus is empty");
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for (path, case) in &entries {
        if let Err(e) = run_attributed(case, &mut stats) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus cases failed:\n{}",
        failures.join("\n")
    );
    harness::check_alive().unwrap();
    check_no_panic("corpus_replays");
    harness::check_memory().unwrap();
}

#[test]
fn seeds_succeed() {
    // Every seed is a valid request: it must succeed, so the seeds (and
    // the setup they rely on) keep reaching the operations they are for.
    let mut failures = Vec::new();
    for (name, case) in corpus::seed_cases() {
        let mut stats = Stats::default();
        if let Err(e) = run_attributed(&case, &mut stats) {
            failures.push(format!("{name}: {e}"));
        } else if stats.by_class[2] + stats.by_class[3] != stats.runs
            && !name.contains("pool")
            && !name.contains("flavor")
            && !name.contains("authenticate")
            && !name.contains("health")
        {
            failures.push(format!("{name}: not answered with success: {stats:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "seeds failed:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "writes the seed corpus; run by hand after the api grows"]
fn write_seed_corpus() {
    let seeds = corpus::dir().join("seeds");
    let _ = std::fs::remove_dir_all(&seeds);
    for (name, case) in corpus::seed_cases() {
        corpus::write(&seeds.join(format!("{name}.json")), &case);
    }
}

#[test]
fn http_requests() {
    let strategy = proptest::prop_oneof![
        3 => grammar::http_case().prop_map(Case::Http),
        1 => grammar::http_sequence(),
    ]
    .boxed();
    fuzz("http_requests", 3000, strategy, 0.5);
}

#[test]
fn http_raw_mutations() {
    let corpus: Vec<Case> = corpus::load().into_iter().map(|(_, c)| c).collect();
    fuzz(
        "http_raw_mutations",
        1400,
        grammar::http_raw_case(corpus),
        0.0,
    );
}

#[test]
fn websocket_json_frames() {
    fuzz("websocket_json_frames", 2500, grammar::ws_case(false), 0.9);
}

#[test]
fn websocket_msgpack_frames() {
    fuzz(
        "websocket_msgpack_frames",
        2500,
        grammar::ws_case(true),
        0.9,
    );
}

#[test]
fn keystone_mode_lets_nothing_through() {
    let strategy = proptest::prop_oneof![
        grammar::http_case().prop_map(Case::Http),
        grammar::ws_case(false),
        grammar::ws_case(true),
    ]
    .boxed();
    fuzz_with(
        harness::run_keystone_case,
        "keystone_mode",
        1000,
        strategy,
        0.5,
        false,
    );
}

#[test]
#[ignore = "prints generated cases (to look at the grammar)"]
fn print_samples() {
    use proptest::strategy::ValueTree;
    let mut runner = TestRunner::default();
    let which = std::env::var("SAMPLES").unwrap_or_default();
    let strategy = match which.as_str() {
        "ws" => grammar::ws_case(false),
        "raw" => grammar::http_raw_case(Vec::new()),
        "seq" => grammar::http_sequence(),
        _ => grammar::http_case().prop_map(Case::Http).boxed(),
    };
    for _ in 0..env_u64("N").unwrap_or(10) {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        println!("{}", serde_json::to_string(&case).unwrap());
    }
}
