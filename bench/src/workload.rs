//! Workloads: what `pinion-bench run` sends, read from a small TOML file
//! (a built-in one by name, or any path) and then overridden by flags.
//!
//! The built-in files live in `bench/workloads/` and are compiled into the
//! binary, so `--workload latency` works from any directory. Unknown keys
//! are refused with the key's name: a typo must not silently run the
//! default.

use std::path::Path;

use serde::Deserialize;

use crate::results::WorkloadEcho;

/// The workloads every pinion-bench knows by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("throughput-1k", include_str!("../workloads/throughput-1k.toml")),
    ("throughput-100b", include_str!("../workloads/throughput-100b.toml")),
    ("latency", include_str!("../workloads/latency.toml")),
];

/// Smallest message: the value carries a run id and the intended send time
/// (8 + 8 bytes) so the consumer can measure end-to-end latency.
pub const MESSAGE_SIZE_MIN: u32 = 16;
/// Largest message and batch pinion-bench builds (Kafka's default
/// `message.max.bytes` is about 1 MiB).
pub const MESSAGE_SIZE_MAX: u32 = 1 << 20;
pub const BATCH_SIZE_MAX: u32 = 16 << 20;
/// Bounds on thread counts: one OS thread per producer and per consumer.
pub const PRODUCERS_MAX: u32 = 256;
pub const CONSUMERS_MAX: u32 = 256;
pub const PARTITIONS_MAX: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// Uniformly random bytes: incompressible.
    Random,
    /// JSON-like events from a seed: compresses like application events.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Keys {
    /// No key: batches fill one partition at a time (sticky partitioning).
    None,
    /// A random 16-character key per message; partition by key hash.
    Random,
    /// The message's sequence number as key; partitions in turn.
    Sequential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The low three bits of a RecordBatch's attributes.
    pub fn attributes(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// `acks`: `0`, `1`, `-1` or `"all"` in a file; `0`, `1`, `all` or `-1` as a flag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum AcksSetting {
    Number(i16),
    Word(String),
}

/// `rate`: a number of messages per second over all producers, or `"max"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum RateSetting {
    PerSecond(u64),
    Word(String),
}

/// A workload file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    topics: u32,
    partitions_per_topic: u32,
    message_size_bytes: u32,
    payload: Payload,
    #[serde(default)]
    payload_seed: u64,
    keys: Keys,
    producers: u32,
    consumers: u32,
    consumer_groups: u32,
    compression: Codec,
    acks: AcksSetting,
    linger_ms: u64,
    batch_size_bytes: u32,
    rate: RateSetting,
    warmup_secs: u64,
    duration_secs: u64,
    #[serde(default)]
    topic_prefix: Option<String>,
    #[serde(default)]
    consumer_backlog_bytes: u64,
}

/// A workload with every setting resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub name: String,
    pub topic_prefix: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    pub message_size_bytes: u32,
    pub payload: Payload,
    pub payload_seed: u64,
    pub keys: Keys,
    pub producers: u32,
    pub consumers: u32,
    pub consumer_groups: u32,
    pub compression: Codec,
    pub acks: i16,
    pub linger_ms: u64,
    pub batch_size_bytes: u32,
    /// Messages per second over all producers; `None` = max rate.
    pub rate_msgs_per_sec: Option<u64>,
    pub warmup_secs: u64,
    pub duration_secs: u64,
    /// Consumers wait until the producers have this many message bytes
    /// acknowledged, then read them back from the start (OpenMessaging
    /// Benchmark's consumer backlog): how fast a broker serves consumers
    /// far behind the tail. 0 = consumers read from the start.
    pub consumer_backlog_bytes: u64,
}

/// Flag overrides, `None` = keep the file's value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Number of topics.
    #[arg(long)]
    pub topics: Option<u32>,
    /// Partitions per topic.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Message value size in bytes (at least 16: run id and send time).
    #[arg(long)]
    pub message_size: Option<u32>,
    /// Payload: random bytes or compressible JSON-like events.
    #[arg(long, value_enum)]
    pub payload: Option<Payload>,
    /// Seed of the payload generator.
    #[arg(long)]
    pub payload_seed: Option<u64>,
    /// Message keys.
    #[arg(long, value_enum)]
    pub keys: Option<Keys>,
    /// Producer threads (each with its own connections).
    #[arg(long)]
    pub producers: Option<u32>,
    /// Consumer threads per consumer group (0 = no end-to-end latency).
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Consumer groups, each reading every message.
    #[arg(long)]
    pub consumer_groups: Option<u32>,
    /// Batch compression codec.
    #[arg(long, value_enum)]
    pub compression: Option<Codec>,
    /// Acknowledgement: 0, 1 or all (-1).
    #[arg(long)]
    pub acks: Option<String>,
    /// How long a partially filled batch waits for more messages.
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Largest batch (uncompressed records) per partition.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Produce as fast as the broker acknowledges (no target rate).
    #[arg(long, conflicts_with = "rate")]
    pub max_rate: bool,
    /// Warm-up seconds (measured, but kept out of the result histograms).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Prefix of the topic names (`PREFIX-0`, `PREFIX-1`, ...).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Hold the consumers back until this many message bytes are
    /// acknowledged, then time how long they take to read them (0 = off).
    #[arg(long, value_name = "BYTES")]
    pub consumer_backlog_bytes: Option<u64>,
}

fn parse_acks(text: &str) -> Result<i16, crate::Error> {
    match text.trim() {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(format!("acks must be 0, 1 or all, not {other:?}").into()),
    }
}

impl Workload {
    /// Reads a built-in workload by name, or a file by path.
    pub fn load(name_or_path: &str) -> Result<Self, crate::Error> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
            return Self::parse(name, text).map_err(|e| format!("workload {name}: {e}").into());
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILT_IN.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "workload {name_or_path:?} is neither a built-in workload ({}) nor a file",
                names.join(", ")
            )
            .into());
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read workload {}: {e}", path.display()))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| name_or_path.into());
        Self::parse(&name, &text).map_err(|e| format!("workload {}: {e}", path.display()).into())
    }

    /// Parses one workload file's text; errors do not repeat the name.
    pub fn parse(name: &str, text: &str) -> Result<Self, crate::Error> {
        let file: WorkloadFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let acks = match &file.acks {
            AcksSetting::Number(n) => parse_acks(&n.to_string())?,
            AcksSetting::Word(w) => parse_acks(w)?,
        };
        let rate_msgs_per_sec = match &file.rate {
            RateSetting::PerSecond(n) => Some(*n),
            RateSetting::Word(w) if w == "max" => None,
            RateSetting::Word(w) => {
                return Err(format!("rate must be a number of messages per second or \"max\", not {w:?}").into())
            }
        };
        let workload = Self {
            name: name.to_string(),
            topic_prefix: file.topic_prefix.unwrap_or_else(|| format!("pinion-bench-{name}")),
            topics: file.topics,
            partitions_per_topic: file.partitions_per_topic,
            message_size_bytes: file.message_size_bytes,
            payload: file.payload,
            payload_seed: file.payload_seed,
            keys: file.keys,
            producers: file.producers,
            consumers: file.consumers,
            consumer_groups: file.consumer_groups,
            compression: file.compression,
            acks,
            linger_ms: file.linger_ms,
            batch_size_bytes: file.batch_size_bytes,
            rate_msgs_per_sec,
            warmup_secs: file.warmup_secs,
            duration_secs: file.duration_secs,
            consumer_backlog_bytes: file.consumer_backlog_bytes,
        };
        workload.validate()?;
        Ok(workload)
    }

    /// Applies flag overrides (`--duration` and `--rate` come separately:
    /// they are part of the command shape scripts rely on).
    pub fn apply(
        &mut self,
        overrides: &Overrides,
        duration_secs: Option<u64>,
        rate: Option<u64>,
    ) -> Result<(), crate::Error> {
        let o = overrides;
        macro_rules! set {
            ($field:ident, $value:expr) => {
                if let Some(v) = $value {
                    self.$field = v;
                }
            };
        }
        set!(topics, o.topics);
        set!(partitions_per_topic, o.partitions);
        set!(message_size_bytes, o.message_size);
        set!(payload, o.payload);
        set!(payload_seed, o.payload_seed);
        set!(keys, o.keys);
        set!(producers, o.producers);
        set!(consumers, o.consumers);
        set!(consumer_groups, o.consumer_groups);
        set!(compression, o.compression);
        set!(linger_ms, o.linger_ms);
        set!(batch_size_bytes, o.batch_size);
        set!(warmup_secs, o.warmup);
        set!(duration_secs, duration_secs);
        set!(topic_prefix, o.topic_prefix.clone());
        set!(consumer_backlog_bytes, o.consumer_backlog_bytes);
        if let Some(acks) = &o.acks {
            self.acks = parse_acks(acks)?;
        }
        if let Some(rate) = rate {
            self.rate_msgs_per_sec = Some(rate);
        }
        if o.max_rate {
            self.rate_msgs_per_sec = None;
        }
        self.validate()
    }

    fn validate(&self) -> Result<(), crate::Error> {
        let check = |ok: bool, what: &str| -> Result<(), crate::Error> {
            if ok {
                Ok(())
            } else {
                Err(what.to_string().into())
            }
        };
        check((1..=1000).contains(&self.topics), "topics must be 1 to 1000")?;
        check(
            (1..=PARTITIONS_MAX).contains(&self.partitions_per_topic)
                && u64::from(self.topics) * u64::from(self.partitions_per_topic) <= u64::from(PARTITIONS_MAX),
            "partitions must be at least 1 and at most 100000 over all topics",
        )?;
        check(
            (MESSAGE_SIZE_MIN..=MESSAGE_SIZE_MAX).contains(&self.message_size_bytes),
            "message size must be 16 bytes (run id and send time) to 1 MiB",
        )?;
        check((1..=PRODUCERS_MAX).contains(&self.producers), "producers must be 1 to 256")?;
        check(self.consumers <= CONSUMERS_MAX, "consumers must be 0 to 256")?;
        check(self.consumers == 0 || (1..=16).contains(&self.consumer_groups), "consumer groups must be 1 to 16")?;
        check(self.linger_ms <= 60_000, "linger must be at most 60000 ms")?;
        check(
            (self.message_size_bytes..=BATCH_SIZE_MAX).contains(&self.batch_size_bytes),
            "batch size must be at least the message size and at most 16 MiB",
        )?;
        if let Some(rate) = self.rate_msgs_per_sec {
            check((1..=100_000_000).contains(&rate), "rate must be 1 to 100000000 messages per second")?;
        }
        check(self.duration_secs >= 1 && self.duration_secs <= 86_400, "duration must be 1 s to 1 day")?;
        check(self.warmup_secs <= 3600, "warm-up must be at most 3600 s")?;
        check(
            self.consumer_backlog_bytes == 0 || self.consumers > 0,
            "a consumer backlog needs consumers (--consumers 1 or more)",
        )?;
        check(
            !self.topic_prefix.is_empty()
                && self.topic_prefix.len() <= 200
                && self.topic_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "topic prefix must be 1 to 200 characters of [a-zA-Z0-9._-]",
        )?;
        Ok(())
    }

    pub fn topic_names(&self) -> Vec<String> {
        (0..self.topics).map(|i| format!("{}-{i}", self.topic_prefix)).collect()
    }

    pub fn echo(&self) -> WorkloadEcho {
        WorkloadEcho {
            name: self.name.clone(),
            topics: self.topics,
            partitions_per_topic: self.partitions_per_topic,
            message_size_bytes: self.message_size_bytes,
            payload: match self.payload {
                Payload::Random => "random".into(),
                Payload::Json => "json".into(),
            },
            payload_seed: self.payload_seed,
            keys: match self.keys {
                Keys::None => "none".into(),
                Keys::Random => "random".into(),
                Keys::Sequential => "sequential".into(),
            },
            producers: self.producers,
            consumers: self.consumers,
            consumer_groups: if self.consumers == 0 { 0 } else { self.consumer_groups },
            compression: self.compression.name().into(),
            acks: self.acks,
            linger_ms: self.linger_ms,
            batch_size_bytes: self.batch_size_bytes,
            rate_msgs_per_sec: self.rate_msgs_per_sec,
            warmup_secs: self.warmup_secs,
            duration_secs: self.duration_secs,
            consumer_backlog_bytes: self.consumer_backlog_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_workloads_parse() {
        for (name, _) in BUILT_IN {
            let w = Workload::load(name).unwrap();
            assert_eq!(&w.name, name);
        }
        let latency = Workload::load("latency").unwrap();
        assert_eq!(latency.rate_msgs_per_sec, Some(10_000));
        assert_eq!(latency.acks, -1);
        let throughput = Workload::load("throughput-1k").unwrap();
        assert_eq!((throughput.partitions_per_topic, throughput.message_size_bytes), (100, 1024));
        assert_eq!(throughput.rate_msgs_per_sec, None);
        assert_eq!(throughput.compression, Codec::Lz4);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{}\nlinger_msec = 3\n", BUILT_IN[0].1);
        let error = Workload::parse("typo", &text).unwrap_err().to_string();
        assert!(error.contains("linger_msec"), "{error}");
    }

    #[test]
    fn flags_override_the_file() {
        let mut w = Workload::load("throughput-1k").unwrap();
        let overrides = Overrides {
            partitions: Some(3),
            acks: Some("1".into()),
            compression: Some(Codec::Zstd),
            ..Overrides::default()
        };
        w.apply(&overrides, Some(7), Some(500)).unwrap();
        assert_eq!((w.partitions_per_topic, w.acks, w.duration_secs), (3, 1, 7));
        assert_eq!((w.compression, w.rate_msgs_per_sec), (Codec::Zstd, Some(500)));
        let bad = Overrides { message_size: Some(8), ..Overrides::default() };
        assert!(w.apply(&bad, None, None).is_err());
    }

    #[test]
    fn a_consumer_backlog_comes_from_the_file_or_the_flag_and_needs_consumers() {
        let text = format!("{}\nconsumer_backlog_bytes = 1073741824\n", BUILT_IN[0].1);
        let mut w = Workload::parse("backlog", &text).unwrap();
        assert_eq!(w.consumer_backlog_bytes, 1 << 30);
        assert_eq!(w.echo().consumer_backlog_bytes, 1 << 30);
        let smaller = Overrides { consumer_backlog_bytes: Some(4 << 20), ..Overrides::default() };
        w.apply(&smaller, None, None).unwrap();
        assert_eq!(w.consumer_backlog_bytes, 4 << 20);
        let no_consumers = Overrides { consumers: Some(0), ..Overrides::default() };
        let error = w.apply(&no_consumers, None, None).unwrap_err().to_string();
        assert!(error.contains("consumer backlog needs consumers"), "{error}");
        assert_eq!(Workload::load("latency").unwrap().consumer_backlog_bytes, 0);
    }
}
