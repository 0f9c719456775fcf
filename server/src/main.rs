//! `pinion`: the broker binary.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use pinion_engine::huge_pages::IoBufferAllocator;
use pinion_server::broker;
use pinion_server::config::{ServeArgs, ServerConfig};

/// mimalloc instead of glibc malloc: frames, write buffers and flush rounds
/// are allocated and freed at hundreds of thousands per second, and glibc's
/// chunk management (`_int_malloc`, `malloc_consolidate`) took about 9 % of
/// a broker's CPU in a 1 KiB produce profile. mimalloc is built without
/// transparent huge pages; the O_DIRECT buffers get them from
/// [`IoBufferAllocator`] (pinion_engine::huge_pages).
#[global_allocator]
static GLOBAL: IoBufferAllocator<mimalloc::MiMalloc> = IoBufferAllocator::new(mimalloc::MiMalloc);

#[derive(Debug, Parser)]
#[command(name = "pinion", version, about = "A Kafka-compatible broker on a thread-per-core io_uring storage engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the broker. Options come from --config FILE (TOML, snake_case
    /// keys) and are overridden by these flags.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match ServerConfig::load(&args) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("pinion: {e}");
                    return ExitCode::from(2);
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
                    eprintln!("pinion: cannot handle signal {signal}: {e}");
                    return ExitCode::from(2);
                }
            }
            match broker::run(config, stop) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pinion: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
