//! The topic table: names, ids, partition counts and config overrides.
//!
//! The controller shard (placement::CONTROLLER_SHARD) owns the persisted
//! table at `<data_dir>/__pinion/topics.json` and is the only writer; every
//! shard keeps a copy that the controller replaces after each change, so
//! metadata lookups never leave the shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use pinion_engine::{CleanupPolicy, LogConfig, TimestampType};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_MAX_BYTES: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Config overrides set on the topic; the rest come from the broker.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicTable {
    /// Increases with every change; shards ignore tables older than theirs.
    #[serde(default)]
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
}

impl TopicTable {
    pub fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("__pinion").join("topics.json")
    }

    /// Reads the table; a missing file is an empty table.
    pub fn load(data_dir: &Path) -> Result<Self, String> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("corrupt topic table {}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read topic table {}: {e}", path.display())),
        }
    }

    /// Writes the table durably: temp file, fsync, rename, fsync the directory.
    pub fn store(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        let dir = path.parent().expect("topics.json has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Kafka's topic name rules. Returns the reason a name is invalid.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > TOPIC_NAME_MAX_BYTES {
        return Err(format!("topic name is longer than {TOPIC_NAME_MAX_BYTES} characters"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Directory of a partition, as Kafka names it.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// A topic config the broker understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    pub name: &'static str,
    pub doc: &'static str,
}

pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "retention.ms",
        doc: "Delete segments whose newest record is older than this; -1 keeps forever.",
    },
    ConfigKey {
        name: "retention.bytes",
        doc: "Delete the oldest segments while the partition is larger than this; -1 means no limit.",
    },
    ConfigKey { name: "segment.bytes", doc: "Roll to a new segment file past this size." },
    ConfigKey { name: "segment.ms", doc: "Roll to a new segment file when the active one is older than this." },
    ConfigKey {
        name: "cleanup.policy",
        doc: "delete: remove old segments by retention; compact: keep the latest record per key; compact,delete: both.",
    },
    ConfigKey { name: "delete.retention.ms", doc: "How long tombstones stay after compaction first sees them." },
    ConfigKey { name: "min.cleanable.dirty.ratio", doc: "Compact when at least this share of the log is uncompacted." },
    ConfigKey { name: "min.compaction.lag.ms", doc: "Records younger than this are not compacted." },
    ConfigKey {
        name: "message.timestamp.type",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's.",
    },
    ConfigKey { name: "max.message.bytes", doc: "Largest record batch accepted." },
    ConfigKey { name: "index.interval.bytes", doc: "Bytes between entries of the sparse offset index." },
];

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| format!("invalid value {value:?} for {key}: not a number"))
}

/// Applies one override to a log config, or says why it is invalid.
pub fn apply_config(config: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    match key {
        "retention.ms" => config.retention_ms = parse_number::<i64>(key, value)?.max(-1),
        "retention.bytes" => config.retention_bytes = parse_number::<i64>(key, value)?.max(-1),
        "segment.bytes" => {
            let bytes: u64 = parse_number(key, value)?;
            if bytes < 14 {
                return Err(format!("segment.bytes must be at least 14, got {bytes}"));
            }
            config.segment_bytes = bytes;
        }
        "segment.ms" => {
            let ms: i64 = parse_number(key, value)?;
            if ms < 1 {
                return Err(format!("segment.ms must be at least 1, got {ms}"));
            }
            config.segment_ms = ms;
        }
        "cleanup.policy" => {
            config.cleanup_policy = CleanupPolicy::from_kafka(value)
                .ok_or_else(|| format!("cleanup.policy must be delete, compact or compact,delete, got {value:?}"))?;
        }
        "delete.retention.ms" => config.delete_retention_ms = parse_number::<i64>(key, value)?.max(0),
        "min.compaction.lag.ms" => config.min_compaction_lag_ms = parse_number::<i64>(key, value)?.max(0),
        "min.cleanable.dirty.ratio" => {
            let ratio: f64 = parse_number(key, value)?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("min.cleanable.dirty.ratio must be between 0 and 1, got {ratio}"));
            }
            config.min_cleanable_dirty_ratio = ratio;
        }
        "message.timestamp.type" => {
            config.message_timestamp_type = match value {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                other => {
                    return Err(format!("message.timestamp.type must be CreateTime or LogAppendTime, got {other:?}"))
                }
            }
        }
        "max.message.bytes" => {
            let bytes: usize = parse_number(key, value)?;
            if bytes < 64 {
                return Err(format!("max.message.bytes must be at least 64, got {bytes}"));
            }
            config.max_message_bytes = bytes;
        }
        "index.interval.bytes" => {
            let bytes: u32 = parse_number(key, value)?;
            config.index_interval_bytes = bytes.max(1);
        }
        other => return Err(format!("unknown topic config {other:?}")),
    }
    Ok(())
}

/// The effective log config of a topic: broker defaults plus its overrides.
pub fn log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut config = defaults.clone();
    for (key, value) in overrides {
        // Overrides were validated when set; an invalid one (hand-edited
        // file) is reported and ignored rather than refusing to start.
        if let Err(reason) = apply_config(&mut config, key, value) {
            tracing::warn!(%key, %value, %reason, "ignoring invalid topic config");
        }
    }
    config
}

/// The value a config has for a topic, and whether it is the default.
pub fn config_value(defaults: &LogConfig, overrides: &BTreeMap<String, String>, key: &str) -> Option<(String, bool)> {
    if let Some(value) = overrides.get(key) {
        return Some((value.clone(), false));
    }
    let value = match key {
        "retention.ms" => defaults.retention_ms.to_string(),
        "retention.bytes" => defaults.retention_bytes.to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        "cleanup.policy" => defaults.cleanup_policy.as_kafka().to_string(),
        "delete.retention.ms" => defaults.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => defaults.min_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => defaults.min_cleanable_dirty_ratio.to_string(),
        "message.timestamp.type" => match defaults.message_timestamp_type {
            TimestampType::CreateTime => "CreateTime".to_string(),
            TimestampType::LogAppendTime => "LogAppendTime".to_string(),
        },
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        _ => return None,
    };
    Some((value, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name("ü").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
    }

    #[test]
    fn configs_apply_and_reject_with_reasons() {
        let mut config = LogConfig::default();
        apply_config(&mut config, "retention.ms", "1000").unwrap();
        apply_config(&mut config, "message.timestamp.type", "LogAppendTime").unwrap();
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert!(apply_config(&mut config, "retention.ms", "soon").unwrap_err().contains("retention.ms"));
        assert!(apply_config(&mut config, "no.such", "1").unwrap_err().contains("unknown"));
        apply_config(&mut config, "cleanup.policy", "compact").unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy::Compact);
        assert!(apply_config(&mut config, "cleanup.policy", "shred").is_err());
    }

    #[test]
    fn table_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = TopicTable::default();
        table.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: 6,
                configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
            },
        );
        table.store(dir.path()).unwrap();
        assert_eq!(TopicTable::load(dir.path()).unwrap(), table);
        assert_eq!(TopicTable::load(&dir.path().join("missing")).unwrap(), TopicTable::default());
    }
}
