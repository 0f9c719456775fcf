//! Broker configuration: embedded defaults, overridden by a TOML file
//! (`--config FILE`), overridden by command-line flags. Every option is
//! documented with its default in `pinion serve --help`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use pinion_engine::{EngineConfig, LogConfig, TimestampType};

/// Coherent sets of settings for a goal (`--profile`). A profile replaces
/// the defaults; the config file and flags still override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Executors spin 200 µs before parking (no wake-up delay for the next
    /// request) and flush at once (no linger): lowest latency, a busier CPU.
    Latency,
    /// Executors park at once, the write path lingers 2 ms and writes up to
    /// 4 MiB at a time (fewer, larger O_DIRECT writes and fdatasyncs), and
    /// the heap may use transparent huge pages (where the host's mode is
    /// `always`).
    Throughput,
}

impl Profile {
    pub fn apply(self, config: &mut ServerConfig) {
        match self {
            Profile::Latency => {
                config.spin_before_park_us = 200;
                config.transparent_hugepages = false;
                config.flush_linger_us = 0;
                config.flush_bytes = 256 << 10;
                config.write_bytes_max = 1 << 20;
            }
            Profile::Throughput => {
                config.spin_before_park_us = 0;
                config.transparent_hugepages = true;
                config.flush_linger_us = 2_000;
                config.flush_bytes = 4 << 20;
                config.write_bytes_max = 4 << 20;
            }
        }
        config.profile = Some(self);
    }
}

/// The effective configuration of a broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The profile these settings started from, if any.
    pub profile: Option<Profile>,
    /// Where partition directories and broker metadata live.
    pub data_dir: PathBuf,
    /// Address every shard listens on (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// host:port clients are told to connect to; defaults to `listen`.
    pub advertised: Option<String>,
    /// Shards (pinned executors); 0 means one per available core.
    pub cores: usize,
    /// Prometheus metrics endpoint; off when unset.
    pub metrics_addr: Option<SocketAddr>,
    /// This broker's node id in metadata responses.
    pub node_id: i32,
    /// Create unknown topics on first produce or metadata request.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (or of CreateTopics with -1).
    pub num_partitions: i32,
    /// Largest request frame accepted; larger ones close the connection.
    pub socket_request_max_bytes: usize,
    /// Requests one connection may have in flight before reading pauses.
    pub connection_in_flight_max: usize,
    /// Defaults for topic configs (`retention.ms` and friends).
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_segment_bytes: u64,
    pub log_segment_ms: i64,
    pub message_max_bytes: usize,
    /// How often each shard enforces retention.
    pub log_retention_check_interval_ms: u64,
    /// Engine write path: linger before a flush while a caller on the shard
    /// waits for durability (acks=all); with only acks=0/1 appends waiting,
    /// the flush starts at once.
    pub flush_linger_us: u64,
    /// Staged bytes that start a flush without lingering.
    pub flush_bytes: usize,
    /// Largest single O_DIRECT write.
    pub write_bytes_max: usize,
    /// Executors poll this long before parking their thread; 0 parks at once.
    pub spin_before_park_us: u64,
    /// Let the broker's heap use transparent huge pages where the host's mode
    /// is `always` (the heap never asks for them, so where the mode is
    /// `madvise` this changes nothing). Off by default: the first touch of
    /// each fresh 2 MiB page zeroes it on the shard's thread, inside a
    /// request, which put the end-to-end p99 at 10,000 msgs/s at 5-6 ms
    /// instead of 1.5 ms. The O_DIRECT buffers use huge pages either way
    /// (pinion_engine::huge_pages). Applies to this process only
    /// (`PR_SET_THP_DISABLE`, with `PR_THP_DISABLE_EXCEPT_ADVISED` on
    /// Linux 6.18 and later; before it, off on an `always` host means off
    /// for the I/O buffers too).
    pub transparent_hugepages: bool,
    /// Run the host checks (memlock, io_uring, O_DIRECT, ...) before starting.
    pub startup_checks: bool,
    /// Partitions of `__consumer_offsets` (fixed when the topic is first created).
    pub offsets_topic_num_partitions: i32,
    /// Offsets of a group that stays empty this long are removed.
    pub offsets_retention_minutes: i64,
    /// The same in milliseconds; when set it wins over the minutes (short
    /// retentions for tests).
    pub offsets_retention_ms: Option<i64>,
    /// How often each shard removes expired offsets.
    pub offsets_retention_check_interval_ms: u64,
    /// Session timeouts accepted from consumers.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members.
    pub group_initial_rebalance_delay_ms: i32,
    /// Tail cache per shard.
    pub cache_bytes_max: usize,
    /// Windows read ahead after cold reads, per shard.
    pub read_ahead_bytes_max: usize,
    /// Retention keeps deleted segment files for later rolls to overwrite
    /// (faster writes, no discard stall on delete), up to
    /// `log_segment_recycling_bytes` per shard.
    pub log_segment_recycling: bool,
    /// Disk each shard may keep in deleted segment files for reuse.
    pub log_segment_recycling_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        let engine = EngineConfig::default();
        Self {
            profile: None,
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".parse().expect("valid default address"),
            advertised: None,
            cores: 0,
            metrics_addr: None,
            node_id: 0,
            auto_create_topics: true,
            num_partitions: 1,
            socket_request_max_bytes: 100 << 20,
            connection_in_flight_max: 64,
            log_retention_ms: log.retention_ms,
            log_retention_bytes: log.retention_bytes,
            log_segment_bytes: log.segment_bytes,
            log_segment_ms: log.segment_ms,
            message_max_bytes: log.max_message_bytes,
            log_retention_check_interval_ms: 300_000,
            flush_linger_us: engine.flush_linger_us,
            flush_bytes: engine.flush_bytes,
            write_bytes_max: engine.write_bytes_max,
            spin_before_park_us: 0,
            transparent_hugepages: false,
            startup_checks: true,
            offsets_topic_num_partitions: 8,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_ms: None,
            offsets_retention_check_interval_ms: 600_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 0,
            cache_bytes_max: engine.cache_bytes_max,
            read_ahead_bytes_max: engine.read_ahead_bytes_max,
            log_segment_recycling: engine.recycle_segments,
            log_segment_recycling_bytes: engine.recycle_bytes_max,
        }
    }
}

/// Flags of `pinion serve`. Each overrides the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the options below (snake_case keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start from a profile's settings: latency (spin before parking, no
    /// flush linger) or throughput (2 ms linger, 4 MiB writes) [default: none]
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Data directory [default: ./data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:9092]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Address advertised to clients in metadata [default: the listen address]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised: Option<String>,
    /// Number of shards (pinned cores) [default: one per available core]
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off]
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Node id reported in metadata [default: 0]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<i32>,
    /// Create unknown topics on first use: true|false [default: true]
    #[arg(long, value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1]
    #[arg(long, value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Largest request frame in bytes [default: 104857600]
    #[arg(long, value_name = "BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Default retention.ms of topics; -1 keeps forever [default: 604800000]
    #[arg(long, value_name = "MS")]
    pub log_retention_ms: Option<i64>,
    /// Default retention.bytes of topics; -1 means no limit [default: -1]
    #[arg(long, value_name = "BYTES")]
    pub log_retention_bytes: Option<i64>,
    /// Default segment.bytes of topics [default: 1073741824]
    #[arg(long, value_name = "BYTES")]
    pub log_segment_bytes: Option<u64>,
    /// Default max.message.bytes of topics [default: 1048588]
    #[arg(long, value_name = "BYTES")]
    pub message_max_bytes: Option<usize>,
    /// How often retention runs, in ms [default: 300000]
    #[arg(long, value_name = "MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// Flush linger in microseconds, while a caller waits for durability
    /// (acks=all); with only acks=0/1 appends the flush starts at once
    /// [default: 100]
    #[arg(long, value_name = "US")]
    pub flush_linger_us: Option<u64>,
    /// Tail cache per shard in bytes [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    pub cache_bytes_max: Option<usize>,
    /// Bytes per shard of the windows read ahead after cold reads, so that
    /// a consumer far behind the tail finds its next fetch in memory; 0
    /// turns read-ahead off [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    pub read_ahead_bytes_max: Option<usize>,
    /// Keep the files of segments deleted by retention and overwrite them
    /// at later rolls instead of creating new files (up to
    /// --log-segment-recycling-bytes of disk per shard): true|false
    /// [default: true]
    #[arg(long, value_name = "BOOL")]
    pub log_segment_recycling: Option<bool>,
    /// Disk each shard may keep in deleted segment files for reuse, in
    /// bytes [default: 2147483648]
    #[arg(long, value_name = "BYTES")]
    pub log_segment_recycling_bytes: Option<u64>,
    /// Executors poll this long before parking, in microseconds [default: 0]
    #[arg(long, value_name = "US")]
    pub spin_before_park_us: Option<u64>,
    /// Let the heap use transparent huge pages where the host's mode is
    /// `always` (the heap never asks, so with `madvise` nothing changes);
    /// each fresh 2 MiB page is then zeroed inside a request (a 5-6 ms
    /// instead of 1.5 ms p99 at a moderate rate). The O_DIRECT buffers use
    /// huge pages either way: true|false [default: false; the throughput
    /// profile sets true]
    #[arg(long, value_name = "BOOL")]
    pub transparent_hugepages: Option<bool>,
    /// Partitions of the __consumer_offsets topic when it is created [default: 8]
    #[arg(long, value_name = "N")]
    pub offsets_topic_num_partitions: Option<i32>,
    /// Remove the offsets of a group empty this long [default: 10080 (7 days)]
    #[arg(long, value_name = "MINUTES")]
    pub offsets_retention_minutes: Option<i64>,
    /// Offset retention in milliseconds; overrides --offsets-retention-minutes
    /// [default: unset]
    #[arg(long, value_name = "MS")]
    pub offsets_retention_ms: Option<i64>,
    /// How often expired offsets are removed, in ms [default: 600000]
    #[arg(long, value_name = "MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// Smallest consumer session timeout accepted [default: 6000]
    #[arg(long, value_name = "MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest consumer session timeout accepted [default: 1800000]
    #[arg(long, value_name = "MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Delay of the first rebalance of an empty group [default: 0]
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<i32>,
    /// Check the host before starting (memlock, io_uring, O_DIRECT...):
    /// true|false [default: true]
    #[arg(long, value_name = "BOOL")]
    pub startup_checks: Option<bool>,
}

impl ServerConfig {
    /// Defaults (or a profile's), then the file, then the flags.
    pub fn load(args: &ServeArgs) -> Result<Self, String> {
        let mut base = Self::default();
        if let Some(profile) = args.profile {
            profile.apply(&mut base);
        }
        let mut config = match &args.config {
            Some(path) => Self::from_file_over(path, base)?,
            None => base,
        };
        macro_rules! take {
            ($($field:ident),*) => {$( if let Some(v) = args.$field.clone() { config.$field = v; } )*};
        }
        take!(data_dir, listen, cores, node_id, auto_create_topics, num_partitions, socket_request_max_bytes);
        take!(log_retention_ms, log_retention_bytes, log_segment_bytes, message_max_bytes, log_segment_recycling);
        take!(log_segment_recycling_bytes, transparent_hugepages);
        take!(log_retention_check_interval_ms, flush_linger_us, cache_bytes_max, spin_before_park_us, startup_checks);
        take!(read_ahead_bytes_max);
        take!(offsets_topic_num_partitions, offsets_retention_minutes, group_min_session_timeout_ms);
        take!(group_max_session_timeout_ms, group_initial_rebalance_delay_ms, offsets_retention_check_interval_ms);
        if args.offsets_retention_ms.is_some() {
            config.offsets_retention_ms = args.offsets_retention_ms;
        }
        if args.advertised.is_some() {
            config.advertised = args.advertised.clone();
        }
        if args.metrics_addr.is_some() {
            config.metrics_addr = args.metrics_addr;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        Self::from_file_over(path, Self::default())
    }

    /// Reads a TOML file; keys it does not set keep their value in `base`.
    pub fn from_file_over(path: &Path, base: Self) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        let file: toml::Table = toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))?;
        let mut merged = toml::Table::try_from(&base).map_err(|e| format!("cannot merge config: {e}"))?;
        if let Some(profile) = file.get("profile").and_then(|p| p.as_str()) {
            // A profile named in the file applies before the file's own keys.
            let profile: Profile = toml::Value::String(profile.to_string()).try_into().map_err(|_| {
                format!("invalid profile {profile:?} in {}: expected latency or throughput", path.display())
            })?;
            let mut profiled = base;
            profile.apply(&mut profiled);
            merged = toml::Table::try_from(&profiled).map_err(|e| format!("cannot merge config: {e}"))?;
        }
        for (key, value) in file {
            merged.insert(key, value);
        }
        merged.try_into().map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.num_partitions < 1 {
            return Err(format!("num_partitions must be at least 1, got {}", self.num_partitions));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err("socket_request_max_bytes must be at least 1024".into());
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err("offsets_topic_num_partitions must be at least 1".into());
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err("group_min_session_timeout_ms is above group_max_session_timeout_ms".into());
        }
        if self.offsets_retention_minutes < 1 || self.offsets_retention_ms.is_some_and(|ms| ms < 1) {
            return Err("offsets_retention_minutes and offsets_retention_ms must be at least 1".into());
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return Err("offsets_retention_check_interval_ms must be at least 1".into());
        }
        if self.connection_in_flight_max == 0 {
            return Err("connection_in_flight_max must be at least 1".into());
        }
        if let Some(advertised) = &self.advertised {
            parse_host_port(advertised)?;
        }
        Ok(())
    }

    /// Shards to run: `cores`, or one per available core.
    pub fn shard_count(&self) -> usize {
        if self.cores > 0 {
            self.cores
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }

    /// How long the offsets of an empty group are kept, in milliseconds.
    pub fn offsets_retention_ms(&self) -> i64 {
        self.offsets_retention_ms.unwrap_or_else(|| self.offsets_retention_minutes.saturating_mul(60_000))
    }

    /// host and port advertised to clients.
    pub fn advertised_host_port(&self) -> (String, i32) {
        match &self.advertised {
            Some(text) => parse_host_port(text).expect("validated at load"),
            None => (self.listen.ip().to_string(), i32::from(self.listen.port())),
        }
    }

    /// Broker-wide defaults for topic configs.
    pub fn default_log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_segment_ms,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            max_message_bytes: self.message_max_bytes,
            message_timestamp_type: TimestampType::CreateTime,
            ..LogConfig::default()
        }
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            flush_linger_us: self.flush_linger_us,
            flush_bytes: self.flush_bytes,
            write_bytes_max: self.write_bytes_max,
            cache_bytes_max: self.cache_bytes_max,
            read_ahead_bytes_max: self.read_ahead_bytes_max,
            recycle_segments: self.log_segment_recycling,
            recycle_bytes_max: self.log_segment_recycling_bytes,
            ..EngineConfig::default()
        }
    }
}

fn parse_host_port(text: &str) -> Result<(String, i32), String> {
    let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("expected HOST:PORT, got {text:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("invalid port in {text:?}"))?;
    if host.is_empty() {
        return Err(format!("empty host in {text:?}"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinion.toml");
        std::fs::write(&path, "num_partitions = 6\nlisten = \"127.0.0.1:19092\"\nauto_create_topics = false\n")
            .unwrap();
        let args = ServeArgs { config: Some(path), num_partitions: Some(3), ..ServeArgs::default() };
        let config = ServerConfig::load(&args).unwrap();
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.listen.port(), 19092);
        assert!(!config.auto_create_topics);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn a_profile_sets_defaults_that_files_and_flags_override() {
        let config =
            ServerConfig::load(&ServeArgs { profile: Some(Profile::Throughput), ..ServeArgs::default() }).unwrap();
        assert_eq!(config.flush_linger_us, 2_000);
        assert_eq!(config.write_bytes_max, 4 << 20);
        assert!(config.transparent_hugepages);
        assert!(!ServerConfig::load(&ServeArgs::default()).unwrap().transparent_hugepages);
        let throughput_without_thp = ServeArgs {
            profile: Some(Profile::Throughput),
            transparent_hugepages: Some(false),
            ..ServeArgs::default()
        };
        assert!(!ServerConfig::load(&throughput_without_thp).unwrap().transparent_hugepages);
        let latency = ServeArgs { profile: Some(Profile::Latency), flush_linger_us: Some(7), ..ServeArgs::default() };
        let config = ServerConfig::load(&latency).unwrap();
        assert_eq!(config.spin_before_park_us, 200);
        assert_eq!(config.flush_linger_us, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "profile = \"throughput\"\nflush_linger_us = 5\n").unwrap();
        let config = ServerConfig::load(&ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap();
        assert_eq!((config.flush_linger_us, config.flush_bytes), (5, 4 << 20));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "num_partitons = 6\n").unwrap();
        let err = ServerConfig::load(&ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap_err();
        assert!(err.contains("num_partitons"), "{err}");
        let err = ServerConfig::load(&ServeArgs { num_partitions: Some(0), ..ServeArgs::default() }).unwrap_err();
        assert!(err.contains("num_partitions"), "{err}");
        let err =
            ServerConfig::load(&ServeArgs { advertised: Some("nohost".into()), ..ServeArgs::default() }).unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
        let err = ServerConfig::load(&ServeArgs { offsets_retention_ms: Some(0), ..ServeArgs::default() }).unwrap_err();
        assert!(err.contains("offsets_retention_ms"), "{err}");
    }

    #[test]
    fn offsets_retention_in_ms_wins_over_minutes() {
        let config = ServerConfig::load(&ServeArgs::default()).unwrap();
        assert_eq!(config.offsets_retention_ms(), 7 * 24 * 3600 * 1000);
        let args = ServeArgs {
            offsets_retention_minutes: Some(2),
            offsets_retention_ms: Some(1500),
            offsets_retention_check_interval_ms: Some(100),
            ..ServeArgs::default()
        };
        let config = ServerConfig::load(&args).unwrap();
        assert_eq!((config.offsets_retention_ms(), config.offsets_retention_check_interval_ms), (1500, 100));
    }
}
