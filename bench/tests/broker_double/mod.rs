//! A scripted Kafka broker for `pinion-bench run` tests: one node on a free
//! 127.0.0.1 port, answering ApiVersions, Metadata, CreateTopics,
//! ListOffsets, Produce and Fetch from memory, with the misbehaviour a test
//! asks for: stall the produce answers once for a known time, answer every
//! produce with an error code, or refuse to create topics.
//!
//! Each connection is served by its own thread, one request at a time in
//! order (as Kafka does), so a stalled answer also holds back the answers
//! queued behind it: the head-of-line blocking a real broker's stall
//! causes. Every loop is bounded by the stop flag, and every read by a
//! timeout.

#![allow(dead_code)] // Each test file uses a different part.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const NODE_ID: i32 = 1;

/// What the double does wrong, and when.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Hold the first produce answer sent this long after the first
    /// produce request for `stall` (once).
    pub stall_after: Option<Duration>,
    pub stall: Duration,
    /// Answer every produce partition with this error code.
    pub produce_error: Option<i16>,
    /// Answer every CreateTopics with this error code and message.
    pub create_topics_error: Option<(i16, String)>,
    /// Read produce requests and never answer them.
    pub produce_silent: bool,
}

/// What the double saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub produce_requests: AtomicU64,
    pub records: AtomicU64,
    /// When the stall began and ended, once it happened.
    pub stall_window: Mutex<Option<(Instant, Instant)>>,
}

struct State {
    script: Script,
    port: u16,
    topics: Mutex<BTreeMap<String, i32>>,
    /// Next offset per (topic, partition).
    offsets: Mutex<BTreeMap<(String, i32), i64>>,
    first_produce: Mutex<Option<Instant>>,
    stalled: AtomicBool,
    stop: AtomicBool,
    seen: Arc<Seen>,
}

#[derive(Debug)]
pub struct BrokerDouble {
    pub port: u16,
    pub seen: Arc<Seen>,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("port", &self.port).finish()
    }
}

impl BrokerDouble {
    pub fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let state = Arc::new(State {
            script,
            port,
            topics: Mutex::new(BTreeMap::new()),
            offsets: Mutex::new(BTreeMap::new()),
            first_produce: Mutex::new(None),
            stalled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            seen: seen.clone(),
        });
        let acceptor_state = state.clone();
        let acceptor = std::thread::spawn(move || accept(listener, acceptor_state));
        Self { port, seen, state, acceptor: Some(acceptor) }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for BrokerDouble {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: TcpListener, state: Arc<State>) {
    let mut connections = Vec::new();
    // Bounded by the stop flag, polled every 10 ms.
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let state = state.clone();
                connections.push(std::thread::spawn(move || serve(stream, &state)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

fn serve(stream: TcpStream, state: &State) {
    let mut stream = stream;
    stream.set_nonblocking(false).unwrap();
    // Short reads so the stop flag is noticed; a request is read whole once it starts.
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    stream.set_nodelay(true).unwrap();
    while !state.stop.load(Ordering::SeqCst) {
        let mut size = [0u8; 4];
        match stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let size = i32::from_be_bytes(size) as usize;
        let mut body = vec![0u8; size];
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let Some(response) = answer(Bytes::from(body), state) else { continue };
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

fn frame<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

fn answer(mut body: Bytes, state: &State) -> Option<Vec<u8>> {
    let key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let key = ApiKey::try_from(key).ok()?;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version)).ok()?;
    let id = header.correlation_id;
    Some(match key {
        ApiKey::ApiVersions => {
            let keys = [
                (ApiKey::Produce, 3, 11),
                (ApiKey::Fetch, 4, 12),
                (ApiKey::ListOffsets, 1, 7),
                (ApiKey::Metadata, 1, 12),
                (ApiKey::ApiVersions, 0, 3),
                (ApiKey::CreateTopics, 2, 7),
            ];
            let response = ApiVersionsResponse::default().with_api_keys(
                keys.iter()
                    .map(|&(k, min, max)| {
                        ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max)
                    })
                    .collect(),
            );
            frame(key, version, id, &response)
        }
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut body, version).ok()?;
            let topics = state.topics.lock().unwrap();
            let entries = request
                .topics
                .unwrap_or_default()
                .iter()
                .filter_map(|t| t.name.clone())
                .map(|topic| match topics.get(topic.0.as_str()) {
                    Some(&partitions) => MetadataResponseTopic::default().with_name(Some(topic)).with_partitions(
                        (0..partitions)
                            .map(|p| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_leader_id(BrokerId(NODE_ID))
                                    .with_replica_nodes(vec![BrokerId(NODE_ID)])
                                    .with_isr_nodes(vec![BrokerId(NODE_ID)])
                            })
                            .collect(),
                    ),
                    None => MetadataResponseTopic::default().with_name(Some(topic)).with_error_code(3),
                })
                .collect();
            let response = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(i32::from(state.port))])
                .with_controller_id(BrokerId(NODE_ID))
                .with_topics(entries);
            frame(key, version, id, &response)
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(&mut body, version).ok()?;
            let mut results = Vec::new();
            for topic in request.topics {
                let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
                match &state.script.create_topics_error {
                    Some((code, message)) => {
                        result = result
                            .with_error_code(*code)
                            .with_error_message(Some(StrBytes::from_string(message.clone())));
                    }
                    None => {
                        state.topics.lock().unwrap().insert(topic.name.0.to_string(), topic.num_partitions);
                        if version >= 5 {
                            result = result.with_num_partitions(topic.num_partitions).with_replication_factor(1);
                        }
                    }
                }
                results.push(result);
            }
            frame(key, version, id, &CreateTopicsResponse::default().with_topics(results))
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut body, version).ok()?;
            let offsets = state.offsets.lock().unwrap();
            let topics = request
                .topics
                .iter()
                .map(|t| {
                    ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let offset =
                                    offsets.get(&(t.name.0.to_string(), p.partition_index)).copied().unwrap_or(0);
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_offset(offset)
                            })
                            .collect(),
                    )
                })
                .collect();
            frame(key, version, id, &ListOffsetsResponse::default().with_topics(topics))
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut body, version).ok()?;
            state.seen.produce_requests.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let first = *state.first_produce.lock().unwrap().get_or_insert(now);
            if let Some(after) = state.script.stall_after {
                if now >= first + after && !state.stalled.swap(true, Ordering::SeqCst) {
                    std::thread::sleep(state.script.stall);
                    *state.seen.stall_window.lock().unwrap() = Some((now, Instant::now()));
                }
            }
            let mut offsets = state.offsets.lock().unwrap();
            let responses = request
                .topic_data
                .iter()
                .map(|t| {
                    TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                let records = p
                                    .records
                                    .as_ref()
                                    .map_or(0, |r| i64::from(i32::from_be_bytes(r[57..61].try_into().unwrap())));
                                state.seen.records.fetch_add(records as u64, Ordering::Relaxed);
                                let response = PartitionProduceResponse::default().with_index(p.index);
                                match state.script.produce_error {
                                    Some(code) => response.with_error_code(code).with_base_offset(-1),
                                    None => {
                                        let next = offsets.entry((t.name.0.to_string(), p.index)).or_insert(0);
                                        let base = *next;
                                        *next += records;
                                        response.with_base_offset(base)
                                    }
                                }
                            })
                            .collect(),
                    )
                })
                .collect();
            if request.acks == 0 || state.script.produce_silent {
                return None;
            }
            frame(key, version, id, &ProduceResponse::default().with_responses(responses))
        }
        ApiKey::Fetch => {
            // Stores nothing: answers empty after a short long-poll.
            let request = FetchRequest::decode(&mut body, version).ok()?;
            std::thread::sleep(Duration::from_millis(request.max_wait_ms.clamp(0, 100) as u64));
            let responses = request
                .topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_records(Some(Bytes::new()))
                            })
                            .collect(),
                    )
                })
                .collect();
            frame(key, version, id, &FetchResponse::default().with_responses(responses))
        }
        _ => return None,
    })
}

#[path = "../../src/latency.rs"]
pub mod latency;
#[path = "../../src/machine.rs"]
pub mod machine;
#[path = "../../src/results.rs"]
pub mod results;

/// `results.rs` returns `crate::Error`, as in the binary.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How a `pinion-bench` process ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:.1} s\nstdout:\n{}\nstderr:\n{}",
            self.status.code(),
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `pinion-bench` with `args`, killing it (and failing the test) if
/// it runs past `timeout`.
pub fn run_bench(args: &[String], timeout: Duration) -> Outcome {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pinion-bench"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pinion-bench");
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    // Bounded by `timeout`.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pinion-bench") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pinion-bench {args:?} still running after {} s: it hangs", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: stdout_reader.join().unwrap(),
        stderr: stderr_reader.join().unwrap(),
        elapsed: started.elapsed(),
    }
}

/// Decodes one of a run file's histograms (V2 + DEFLATE, base64), with the
/// standard decoders rather than the binary's own.
pub fn decode_histogram(text: &str) -> hdrhistogram::Histogram<u64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).expect("histogram is base64");
    hdrhistogram::serialization::Deserializer::new().deserialize(&mut bytes.as_slice()).expect("histogram decodes")
}

/// `args` as owned strings.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
