//! `zaqar-bench`: drives a Zaqar v2 HTTP server with producers, consumers,
//! observers and stats readers, and reports throughput, latency and
//! correctness (see the library, [`zaqar_bench`]).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: much cheaper than glibc malloc for the many small, short-lived
/// allocations of request handling.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command line: the run's settings plus output and runtime options.
#[derive(Parser, Debug)]
#[command(
    name = "zaqar-bench",
    version,
    about = "Load generator and checker for Zaqar v2 HTTP servers"
)]
struct Cli {
    #[command(flatten)]
    config: zaqar_bench::BenchConfig,
    /// Print the report as JSON (for scripts) instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.config.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zaqar-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(zaqar_bench::run(cli.config, !cli.quiet)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zaqar-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("zaqar-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.correct {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
