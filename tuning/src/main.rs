//! The `pinion-tune` command: `check` prints the host checks as a table or
//! JSON, `apply` carries out the safe fixes (or prints them with
//! `--dry-run`), `iotune` measures the data disk and writes
//! `io-properties.toml`. All the work lives in the library; this file
//! parses arguments and prints.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use pinion_tune::checks::{self, Check, CheckConfig, HostObservation, Status};
use pinion_tune::units::format_rate;
use pinion_tune::{apply, iotune};

#[derive(Debug, Parser)]
#[command(name = "pinion-tune", version, about = "Check, tune and measure a host for the pinion broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the host: exit 0 if nothing FAILs, 1 otherwise.
    Check {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Print a JSON array of {name, status, found, remedy}.
        #[arg(long)]
        json: bool,
    },
    /// Apply the safe runtime fixes (sysctls, IRQ affinity, governor, THP,
    /// disk scheduler); say what cannot be changed and why.
    Apply {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Print what would be done without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Measure the data disk with O_DIRECT and write io-properties.toml.
    Iotune {
        /// The directory to measure (created if missing).
        #[arg(long)]
        data_dir: PathBuf,
        /// Total seconds to spend measuring.
        #[arg(long, default_value_t = iotune::DEFAULT_DURATION.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        duration: u64,
        /// Where to write the properties [default: <data-dir>/io-properties.toml].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// What the broker will run with.
#[derive(Debug, Args)]
struct BrokerArgs {
    /// The broker's data directory.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Shards (one per CPU) the broker will run [default: CPUs usable here].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=8192))]
    shards: Option<u64>,
    /// io_memory each shard's executor registers, in bytes.
    #[arg(long, default_value_t = checks::DEFAULT_IO_MEMORY_BYTES_PER_SHARD)]
    io_memory_bytes: usize,
}

impl BrokerArgs {
    fn config(&self) -> CheckConfig {
        let mut config = CheckConfig::new(&self.data_dir);
        if let Some(shards) = self.shards {
            config.shards = shards as usize;
        }
        config.io_memory_bytes_per_shard = self.io_memory_bytes;
        config
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { broker, json } => check(&broker.config(), json),
        Command::Apply { broker, dry_run } => apply(&broker.config(), dry_run),
        Command::Iotune { data_dir, duration, out } => measure(data_dir, Duration::from_secs(duration), out),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pinion-tune: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &CheckConfig, json: bool) -> io::Result<ExitCode> {
    let checks = checks::run_all(config);
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &checks)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &checks, terminal_width())?;
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The width of the terminal on stdout, or 120 when it is not one.
fn terminal_width() -> usize {
    // SAFETY: winsize is plain data; all-zero is a valid value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let result = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    if result == 0 && size.ws_col >= 80 {
        size.ws_col as usize
    } else {
        120
    }
}

/// Splits text into lines of at most `width` characters at spaces (a
/// longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn write_table(out: &mut dyn Write, checks: &[Check], width: usize) -> io::Result<()> {
    let name_width = checks.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
    let status_width = "STATUS".len();
    let text_width = width.saturating_sub(name_width + status_width + 6).max(60);
    let found_width = text_width * 3 / 5;
    let remedy_width = text_width - found_width;
    writeln!(out, "{:<name_width$}  {:<status_width$}  {:<found_width$}  REMEDY", "NAME", "STATUS", "FOUND")?;
    for check in checks {
        let found = wrap(&check.found, found_width);
        let remedy = wrap(check.remedy.as_deref().unwrap_or(""), remedy_width);
        for row in 0..found.len().max(remedy.len()) {
            let (name, status) =
                if row == 0 { (check.name.as_str(), check.status.to_string()) } else { ("", String::new()) };
            let found = found.get(row).map_or("", String::as_str);
            let remedy = remedy.get(row).map_or("", String::as_str);
            let line = format!("{name:<name_width$}  {status:<status_width$}  {found:<found_width$}  {remedy}");
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    writeln!(
        out,
        "\n{} checks: {} OK, {} WARN, {} FAIL",
        checks.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    )
}

fn apply(config: &CheckConfig, dry_run: bool) -> io::Result<ExitCode> {
    let host = HostObservation::capture(config);
    let plan = apply::plan(&host, config);
    let mut out = io::stdout().lock();
    if dry_run {
        writeln!(out, "dry run: nothing is changed\n")?;
    }
    let outcome = apply::execute(&plan, dry_run, &mut out)?;
    writeln!(
        out,
        "\n{} {}, {} unchanged, {} failed, {} need more than apply can do",
        outcome.changed,
        if dry_run { "to change" } else { "changed" },
        outcome.unchanged,
        outcome.failed,
        outcome.cannot_change
    )?;
    Ok(if outcome.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn measure(data_dir: PathBuf, duration: Duration, out: Option<PathBuf>) -> io::Result<ExitCode> {
    let out = out.unwrap_or_else(|| data_dir.join(iotune::PROPERTIES_FILE_NAME));
    let options = iotune::IotuneOptions { data_dir, duration };
    eprintln!("iotune: measuring {} for about {} s", options.data_dir.display(), duration.as_secs());
    let properties = iotune::run(&options, &mut |line| eprintln!("{line}"))?;
    properties.save(&out)?;
    println!(
        "write {} (knee at {} KiB x {}), read {} (knee at {} KiB x {}), 4 KiB IOPS write {} read {}, fdatasync p50 {} us p99 {} us",
        format_rate(properties.write_bandwidth_bytes_per_sec as f64),
        properties.best_write_block_bytes / 1024,
        properties.best_write_queue_depth,
        format_rate(properties.read_bandwidth_bytes_per_sec as f64),
        properties.best_read_block_bytes / 1024,
        properties.best_read_queue_depth,
        properties.write_iops,
        properties.read_iops,
        properties.fdatasync_latency_us_p50,
        properties.fdatasync_latency_us_p99,
    );
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("", 6), [""]);
        assert_eq!(wrap("longerthanwidth x", 4), ["longerthanwidth", "x"]);
    }

    #[test]
    fn table_rows_align_and_wrap() {
        let checks = [
            Check::ok("kernel", "6.1.0"),
            Check::fail("memlock", "soft 64 KiB, hard 64 KiB", "raise it: `ulimit -l unlimited`"),
        ];
        let mut out = Vec::new();
        write_table(&mut out, &checks, 120).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME     STATUS  FOUND"), "{text}");
        assert!(lines[1].starts_with("kernel   OK      6.1.0"), "{text}");
        assert!(lines[2].starts_with("memlock  FAIL    soft 64 KiB, hard 64 KiB"), "{text}");
        assert!(lines[2].ends_with("raise it: `ulimit -l unlimited`"), "{text}");
        assert!(text.ends_with("2 checks: 1 OK, 0 WARN, 1 FAIL\n"), "{text}");
    }
}
