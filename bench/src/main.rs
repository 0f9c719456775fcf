//! `pinion-bench`: measurements of pinion held against the machine's own
//! physical limits.
//!
//! Subcommands:
//! - `engine`: drives one shard's storage engine directly (no network),
//!   and in the same run measures the raw O_DIRECT bandwidth of the same
//!   directory, so every engine figure comes with the ceiling it is held
//!   against. See [`engine`].
//! - `compare`: the latency-regression gate over run files. See [`compare`].
//! - `report`: renders a run file as a self-contained HTML report. See [`html`].
//!
//! Reading order: [`engine`] (the run and its phases), [`producer`] (the
//! batches a producer would send, built before the clock starts),
//! [`raw_disk`] (the ceiling), [`latency`], [`machine`], [`report`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pinion_engine::huge_pages::IoBufferAllocator;

/// mimalloc, as the broker uses: the engine bench drives the same engine
/// (flush rounds, write buffers), and the load generator shares the CPU
/// with the broker it measures, so glibc's chunk management is cost in both.
/// The O_DIRECT buffers go on huge pages, as in the broker.
#[global_allocator]
static GLOBAL: IoBufferAllocator<mimalloc::MiMalloc> = IoBufferAllocator::new(mimalloc::MiMalloc);

mod backlog;
mod chart;
mod client;
mod compare;
mod engine;
mod histogram_codec;
mod html;
mod latency;
mod load;
mod machine;
mod producer;
mod raw_disk;
mod report;
mod results;
mod run;
mod workload;

/// Errors of a bench run: each is printed once and ends the run.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(name = "pinion-bench", version, about = "Benchmarks for pinion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append pre-built producer batches to one shard's engine, read them
    /// back, and compare with the raw O_DIRECT bandwidth of the same disk.
    Engine(Box<engine::EngineArgs>),
    /// Compare run files and fail (exit 1) when a metric regressed beyond
    /// its --max-regression threshold; exit 2 on usage errors.
    Compare(compare::CompareArgs),
    /// Drive a Kafka-compatible broker with a workload (open loop, latency
    /// corrected for coordinated omission) and write the result as JSON.
    Run(Box<run::RunArgs>),
    /// Render a run file as a self-contained HTML report.
    Report(html::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Engine(args) => engine::run(*args),
        Command::Run(args) => run::run(*args),
        // compare has its own exit codes (1 = regression, 2 = usage error).
        Command::Compare(args) => return compare::main(args),
        Command::Report(args) => html::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinion-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
