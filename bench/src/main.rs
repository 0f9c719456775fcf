//! `pinion-bench`: measurements of pinion held against the machine's own
//! physical limits.
//!
//! Subcommands:
//! - `engine`: drives one shard's storage engine directly (no network),
//!   and in the same run measures the raw O_DIRECT bandwidth of the same
//!   directory, so every engine figure comes with the ceiling it is held
//!   against. See [`engine`].
//!
//! Reading order: [`engine`] (the run and its phases), [`producer`] (the
//! batches a producer would send, built before the clock starts),
//! [`raw_disk`] (the ceiling), [`latency`], [`machine`], [`report`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod engine;
mod latency;
mod machine;
mod producer;
mod raw_disk;
mod report;

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
    Engine(engine::EngineArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Engine(args) => engine::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinion-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
