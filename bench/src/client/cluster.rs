//! Admin work before a run: find the partitions' leaders (Metadata),
//! create missing topics (CreateTopics, or auto-creation through Metadata
//! on a broker without CreateTopics), and read the log end offsets the
//! consumers start from (ListOffsets).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::{error_name, Connection};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// How long new topics may take to get a leader for every partition.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);
const METADATA_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Offsets by (topic, partition).
pub type PartitionOffsets = BTreeMap<(String, i32), i64>;

/// One partition of the workload and the broker that leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLeader {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
}

/// The workload's partitions and where to reach their leaders.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Broker id to `host:port`.
    pub brokers: BTreeMap<i32, String>,
    /// Every partition of every topic, in topic then partition order.
    pub partitions: Vec<PartitionLeader>,
}

impl ClusterView {
    pub fn address_of(&self, broker: i32) -> Result<&str, crate::Error> {
        self.brokers.get(&broker).map(String::as_str).ok_or_else(|| {
            format!("metadata names broker {broker} as a leader but does not say where it listens").into()
        })
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn metadata(
    connection: &mut Connection,
    topics: &[String],
    auto_create: bool,
) -> Result<MetadataResponse, crate::Error> {
    let version = connection.versions.require(ApiKey::Metadata)?;
    let mut request = MetadataRequest::default().with_topics(Some(
        topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t)))).collect(),
    ));
    if version >= 4 {
        request.allow_auto_topic_creation = auto_create;
    }
    connection.call(ApiKey::Metadata, version, &request)
}

/// Makes sure every topic exists with at least `partitions` partitions and
/// every partition has a leader; returns the leaders.
pub fn ensure_topics(
    connection: &mut Connection,
    topics: &[String],
    partitions: u32,
) -> Result<ClusterView, crate::Error> {
    let response = metadata(connection, topics, false)?;
    let missing: Vec<String> = response
        .topics
        .iter()
        .filter(|t| t.error_code == UNKNOWN_TOPIC_OR_PARTITION)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    if !missing.is_empty() {
        create_topics(connection, &missing, partitions)?;
    }
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    let mut last_problem = String::new();
    // Bounded by TOPIC_READY_TIMEOUT: new partitions may need a moment to get a leader.
    while Instant::now() < deadline {
        let auto_create = connection.versions.chosen(ApiKey::CreateTopics).is_none();
        let response = metadata(connection, topics, auto_create)?;
        match view_of(&response, topics, partitions) {
            Ok(view) => return Ok(view),
            Err(Problem::Fatal(e)) => return Err(e.into()),
            Err(Problem::NotYet(e)) => last_problem = e,
        }
        std::thread::sleep(METADATA_RETRY_INTERVAL);
    }
    Err(format!("topics not ready after {} s: {last_problem}", TOPIC_READY_TIMEOUT.as_secs()).into())
}

enum Problem {
    NotYet(String),
    Fatal(String),
}

fn view_of(response: &MetadataResponse, topics: &[String], partitions: u32) -> Result<ClusterView, Problem> {
    let mut view = ClusterView::default();
    for broker in &response.brokers {
        view.brokers.insert(broker.node_id.0, format!("{}:{}", broker.host.as_str(), broker.port));
    }
    for name in topics {
        let Some(topic) = response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name)) else {
            return Err(Problem::NotYet(format!("metadata does not list topic {name}")));
        };
        match topic.error_code {
            0 => {}
            UNKNOWN_TOPIC_OR_PARTITION | LEADER_NOT_AVAILABLE => {
                return Err(Problem::NotYet(format!("topic {name}: {}", error_name(topic.error_code))))
            }
            code => return Err(Problem::Fatal(format!("topic {name}: {}", error_name(code)))),
        }
        if topic.partitions.len() < partitions as usize {
            return Err(Problem::Fatal(format!(
                "topic {name} exists with {} partitions; the workload wants {partitions} (use another --topic-prefix or --partitions {})",
                topic.partitions.len(),
                topic.partitions.len()
            )));
        }
        for p in 0..partitions as i32 {
            let Some(partition) = topic.partitions.iter().find(|x| x.partition_index == p) else {
                return Err(Problem::NotYet(format!("topic {name} partition {p} is missing from metadata")));
            };
            if partition.error_code != 0 && partition.error_code != LEADER_NOT_AVAILABLE {
                return Err(Problem::Fatal(format!(
                    "topic {name} partition {p}: {}",
                    error_name(partition.error_code)
                )));
            }
            if partition.leader_id.0 < 0 || !view.brokers.contains_key(&partition.leader_id.0) {
                return Err(Problem::NotYet(format!("topic {name} partition {p} has no leader yet")));
            }
            view.partitions.push(PartitionLeader { topic: name.clone(), partition: p, leader: partition.leader_id.0 });
        }
    }
    Ok(view)
}

fn create_topics(connection: &mut Connection, topics: &[String], partitions: u32) -> Result<(), crate::Error> {
    let Some(version) = connection.versions.chosen(ApiKey::CreateTopics) else {
        eprintln!("pinion-bench: the broker has no CreateTopics; relying on auto-creation for {}", topics.join(", "));
        return Ok(());
    };
    let request = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(
        topics
            .iter()
            .map(|t| {
                CreatableTopic::default()
                    .with_name(topic_name(t))
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(-1)
            })
            .collect(),
    );
    let response: CreateTopicsResponse = connection.call(ApiKey::CreateTopics, version, &request)?;
    for result in &response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            let message = result.error_message.as_ref().map(|m| format!(": {}", m.as_str())).unwrap_or_default();
            return Err(format!(
                "cannot create topic {} ({partitions} partitions): {}{message}",
                result.name.0.as_str(),
                error_name(result.error_code)
            )
            .into());
        }
    }
    Ok(())
}

/// Log end offsets of `partitions` (all led by the broker behind
/// `connection`), or `None` when the broker has no ListOffsets.
pub fn latest_offsets(
    connection: &mut Connection,
    partitions: &[(String, i32)],
) -> Result<Option<PartitionOffsets>, crate::Error> {
    let Some(version) = connection.versions.chosen(ApiKey::ListOffsets) else {
        return Ok(None);
    };
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let topics = by_topic
        .iter()
        .map(|(topic, ps)| {
            ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(
                ps.iter()
                    .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(-1))
                    .collect(),
            )
        })
        .collect();
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
    let response: ListOffsetsResponse = connection.call(ApiKey::ListOffsets, version, &request)?;
    let mut offsets = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                return Err(format!(
                    "ListOffsets for {} partition {}: {}",
                    topic.name.0.as_str(),
                    partition.partition_index,
                    error_name(partition.error_code)
                )
                .into());
            }
            offsets.insert((topic.name.0.to_string(), partition.partition_index), partition.offset);
        }
    }
    for key in partitions {
        if !offsets.contains_key(key) {
            return Err(format!("ListOffsets did not answer for {} partition {}", key.0, key.1).into());
        }
    }
    Ok(Some(offsets))
}
