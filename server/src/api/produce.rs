//! Produce: split the request by partition, append each on the shard that
//! owns it (over the mesh when that is another shard), and answer per
//! partition once every append is acknowledged as `acks` asks: 0 sends no
//! response at all, 1 waits for the O_DIRECT write, -1 (all) for the
//! group-committed fdatasync.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::TopicName;

use super::{decode, respond, str_bytes, Outcome};
use crate::errors::ErrorCode;
use crate::mesh::{CoreRequest, CoreResponse, ProduceDone};
use crate::net::frame::Request;
use crate::net::order::DispatchTurn;
use crate::shard::ShardContext;

fn partition_error(index: i32, code: i16) -> PartitionProduceResponse {
    // log_start_offset stays at its default (-1): it exists only from v5.
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
}

/// One partition's records, in a buffer of their own.
struct PartitionRecords {
    index: i32,
    records: BytesMut,
}

struct TopicRecords {
    name: String,
    partitions: Vec<PartitionRecords>,
}

/// Takes the records of every partition of `body` out of the request
/// frame, each as its own mutable buffer, without copying them: the
/// engine patches offsets in place, and copying 1 MiB produce frames was
/// 7 % of the broker's CPU. Every view of the frame that decoding made is
/// dropped first, so the frame comes back as one uniquely owned buffer
/// that is split into disjoint pieces. Records that are not a slice of the
/// frame (never, with this decoder) are copied.
fn take_records(request: &mut Request, mut body: ProduceRequest) -> Vec<TopicRecords> {
    let frame_start = request.body.as_ptr() as usize;
    let frame_len = request.body.len();
    let mut topics = Vec::with_capacity(body.topic_data.len());
    // Per partition: where its records lie in the frame, or a copy.
    let mut located: Vec<Result<std::ops::Range<usize>, BytesMut>> = Vec::new();
    // Where the last records located in the frame end: pieces are split
    // off in order, so each must start at or after it.
    let mut located_end = 0;
    for topic in std::mem::take(&mut body.topic_data) {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in topic.partition_data {
            let records = partition.records.unwrap_or_default();
            let offset = (records.as_ptr() as usize).wrapping_sub(frame_start);
            let in_frame = !records.is_empty() && offset <= frame_len && records.len() <= frame_len - offset;
            located.push(if in_frame && offset >= located_end {
                located_end = offset + records.len();
                Ok(offset..located_end)
            } else {
                Err(BytesMut::from(&records[..]))
            });
            partitions.push(PartitionRecords { index: partition.index, records: BytesMut::new() });
        }
        topics.push(TopicRecords { name: topic.name.0.to_string(), partitions });
    }
    drop(body);
    let mut frame = std::mem::take(&mut request.body).try_into_mut();
    let mut consumed = 0;
    let slots = topics.iter_mut().flat_map(|t| t.partitions.iter_mut());
    for (slot, place) in slots.zip(located) {
        slot.records = match (place, &mut frame) {
            (Err(copy), _) => copy,
            (Ok(range), Ok(rest)) => {
                rest.advance(range.start - consumed);
                consumed = range.end;
                rest.split_to(range.len())
            }
            (Ok(range), Err(shared)) => BytesMut::from(&shared[range]),
        };
    }
    topics
}

pub async fn handle(ctx: &Rc<ShardContext>, mut request: Request, turn: Option<DispatchTurn>) -> Outcome {
    let body: ProduceRequest = match decode(&request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    // Earlier Produce requests on this connection queue their appends first.
    if let Some(turn) = &turn {
        turn.wait().await;
    }
    let acks = body.acks;
    let acks_valid = matches!(acks, -1..=1);
    let transactional = body.transactional_id.is_some();
    let topic_records = take_records(&mut request, body);
    let mut topics = Vec::with_capacity(topic_records.len());
    let mut pending = Vec::new();
    for topic in topic_records {
        let name = topic.name;
        let mut responses = Vec::with_capacity(topic.partitions.len());
        let meta = if !acks_valid || transactional { Err(ErrorCode::None) } else { ctx.ensure_topic(&name).await };
        for PartitionRecords { index, records } in topic.partitions {
            let code = match &meta {
                _ if !acks_valid => Some(ErrorCode::InvalidRequiredAcks),
                _ if transactional => Some(ErrorCode::TransactionalIdAuthorizationFailed),
                Err(code) => Some(*code),
                Ok(meta) if index < 0 || index >= meta.partitions => Some(ErrorCode::UnknownTopicOrPartition),
                Ok(_) => None,
            };
            if let Some(code) = code {
                responses.push(partition_error(index, code.code()));
                continue;
            }
            let owner = ctx.owner_of(&name, index);
            let call_ctx = ctx.clone();
            let topic_name = name.clone();
            let task = glommio::spawn_local(async move {
                call_ctx.call(owner, CoreRequest::Produce { topic: topic_name, partition: index, records, acks }).await
            });
            pending.push((topics.len(), responses.len(), task));
            responses.push(partition_error(index, 0));
        }
        topics.push(
            TopicProduceResponse::default().with_name(TopicName(str_bytes(&name))).with_partition_responses(responses),
        );
    }
    // The appends are queued on their partitions (spawned tasks start in
    // spawn order): later requests may go ahead.
    drop(turn);
    for (topic_index, partition_slot, task) in pending {
        let slot = &mut topics[topic_index].partition_responses[partition_slot];
        match task.await {
            CoreResponse::Produce(Ok(ProduceDone { base_offset, log_append_time_ms, log_start_offset })) => {
                slot.base_offset = base_offset;
                slot.log_append_time_ms = log_append_time_ms;
                if request.api_version >= 5 {
                    slot.log_start_offset = log_start_offset;
                }
            }
            CoreResponse::Produce(Err(code)) => slot.error_code = code,
            _ => slot.error_code = ErrorCode::NotLeaderOrFollower.code(),
        }
    }
    if acks == 0 {
        return Outcome::NoResponse;
    }
    respond(&request, &ProduceResponse::default().with_responses(topics))
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, HeaderVersion};

    use super::take_records;
    use crate::api::{decode, str_bytes};
    use crate::net::frame::parse_request;

    /// Partitions of one topic: index and records.
    type Partitions<'a> = &'a [(i32, &'a [u8])];

    fn frame(version: i16, topics: &[(&str, Partitions<'_>)]) -> Bytes {
        let body = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(
            topics
                .iter()
                .map(|(name, partitions)| {
                    TopicProduceData::default().with_name(TopicName(str_bytes(name))).with_partition_data(
                        partitions
                            .iter()
                            .map(|(index, records)| {
                                PartitionProduceData::default()
                                    .with_index(*index)
                                    .with_records(Some(Bytes::copy_from_slice(records)))
                            })
                            .collect(),
                    )
                })
                .collect(),
        );
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        header.encode(&mut buf, ProduceRequest::header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn records_are_taken_from_the_frame_without_copying() {
        for version in [3, 8, 9] {
            let frame = frame(version, &[("a", &[(0, b"first"), (1, b"second")]), ("b", &[(2, b"third")])]);
            let allocation = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
            let mut request = parse_request(frame).unwrap();
            let body = decode(&request).unwrap();
            let topics = take_records(&mut request, body);
            let seen: Vec<(String, i32, Vec<u8>, bool)> = topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        let in_frame = allocation.contains(&(p.records.as_ptr() as usize));
                        (t.name.clone(), p.index, p.records.to_vec(), in_frame)
                    })
                })
                .collect();
            assert_eq!(
                seen,
                vec![
                    ("a".to_string(), 0, b"first".to_vec(), true),
                    ("a".to_string(), 1, b"second".to_vec(), true),
                    ("b".to_string(), 2, b"third".to_vec(), true),
                ],
                "v{version}"
            );
        }
    }

    #[test]
    fn missing_records_become_an_empty_buffer() {
        let body = ProduceRequest::default().with_acks(1).with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(str_bytes("t")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0)])]);
        let mut buf = BytesMut::new();
        body.encode(&mut buf, 9).unwrap();
        let mut request = crate::net::frame::Request {
            api_key: ApiKey::Produce,
            api_version: 9,
            correlation_id: 1,
            client_id: None,
            body: buf.freeze(),
        };
        let body = decode(&request).unwrap();
        let topics = take_records(&mut request, body);
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions[0].index, 0);
        assert!(topics[0].partitions[0].records.is_empty());
    }
}
