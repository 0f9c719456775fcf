//! Fetch: read each requested partition on its owning shard, long-poll
//! (`max_wait_ms`) until `min_bytes` are available, and answer with the
//! stored batches as they are. The answer stays within `max_bytes` (past a
//! first batch, as KIP-74 allows), and so do the disk reads behind it: see
//! `read_all`.
//!
//! The response is encoded by hand (v4-v12) so that the record bytes are
//! never copied into it: the encoder emits the fields around each
//! partition's `records` into small buffers and places the stored chunks
//! (tail-cache `Bytes` or DMA buffers) between them; the connection writes
//! all parts with one vectored send.
//!
//! Fetch sessions (KIP-227) are declined the way the protocol allows: a
//! request with session id 0 is answered with session id 0, which tells the
//! client to keep sending full fetch requests; a request naming a session
//! we never created gets FETCH_SESSION_ID_NOT_FOUND.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::FetchRequest;

use super::{decode, Outcome};
use crate::errors::ErrorCode;
use crate::mesh::{CoreRequest, CoreResponse, ReadDone};
use crate::net::frame::Request;
use crate::net::send::{Part, Response};
use crate::shard::{LocalChunk, ShardContext};

/// One partition of the answer.
#[derive(Debug)]
pub struct PartitionData {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub chunks: Vec<LocalChunk>,
    pub bytes: usize,
    /// Left unread: on disk, past the response's byte budget.
    pub cold: bool,
}

impl PartitionData {
    fn empty(partition: i32, error_code: i16) -> Self {
        Self {
            partition,
            error_code,
            high_watermark: -1,
            log_start_offset: -1,
            chunks: Vec::new(),
            bytes: 0,
            cold: false,
        }
    }
}

#[derive(Debug)]
struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    known: bool,
}

/// Reads every wanted partition, at most about `max_bytes` in all. The tail
/// cache is read for every partition at once (cheap: the chunks are shared,
/// not copied); then the partitions whose data is on disk are read, in
/// request order, each with at most what is left of `max_bytes` after the
/// cached bytes and the reads before it. Reading every partition from disk
/// up to its own `partition_max_bytes` would read (and hold in memory) up to
/// that times the partition count for a response of `max_bytes`: 100
/// partitions behind the tail at 4 MiB each are 400 MiB read for a 32 MiB
/// answer, and a catching-up consumer ran at a tenth of the disk's rate.
async fn read_all(ctx: &Rc<ShardContext>, wanted: &[Wanted], max_bytes: usize) -> Vec<Option<PartitionData>> {
    // No partition needs more than the whole response may carry (past its
    // first batch, which a read returns whole).
    let cached = read_each(ctx, wanted.iter().map(|w| w.known.then_some((w, w.max_bytes.min(max_bytes), false)))).await;
    let mut budget = max_bytes.saturating_sub(cached.iter().flatten().map(|r| r.bytes).sum());
    let mut from_disk: Vec<Option<(&Wanted, usize, bool)>> = Vec::with_capacity(wanted.len());
    for (w, result) in wanted.iter().zip(&cached) {
        let cold = result.as_ref().is_some_and(|r| r.cold);
        let cap = w.max_bytes.min(budget);
        // A cold partition past the budget stays empty this time; the
        // client fetches it again from the same offset. (A read returns
        // its first batch whole, however small its cap.)
        from_disk.push((cold && budget > 0).then_some((w, cap, true)));
        if cold {
            budget -= cap;
        }
    }
    if from_disk.iter().all(Option::is_none) {
        return cached;
    }
    let read = read_each(ctx, from_disk.into_iter()).await;
    cached.into_iter().zip(read).map(|(cached, read)| read.or(cached)).collect()
}

/// One read per `Some((partition, max_bytes, disk))`, all at once, each on
/// the partition's owner; `None` where the partition is unknown.
async fn read_each<'a>(
    ctx: &Rc<ShardContext>,
    reads: impl Iterator<Item = Option<(&'a Wanted, usize, bool)>>,
) -> Vec<Option<PartitionData>> {
    let mut tasks = Vec::new();
    for read in reads {
        let Some((w, max_bytes, disk)) = read else {
            tasks.push(None);
            continue;
        };
        let owner = ctx.owner_of(&w.topic, w.partition);
        let call_ctx = ctx.clone();
        let request =
            CoreRequest::Read { topic: w.topic.clone(), partition: w.partition, offset: w.offset, max_bytes, disk };
        let task = glommio::spawn_local(async move { call_ctx.call(owner, request).await });
        tasks.push(Some((w.partition, task)));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some((partition, task)) = task else {
            out.push(None);
            continue;
        };
        out.push(Some(match task.await {
            CoreResponse::Read(Ok(ReadDone { chunks, bytes, high_watermark, log_start_offset, cold })) => {
                PartitionData { partition, error_code: 0, high_watermark, log_start_offset, chunks, bytes, cold }
            }
            CoreResponse::Read(Err(code)) => PartitionData::empty(partition, code),
            _ => PartitionData::empty(partition, ErrorCode::NotLeaderOrFollower.code()),
        }));
    }
    out
}

/// Resolves when any of the partitions gets data past its fetch offset, or
/// after `timeout_ms`.
async fn wait_for_any(ctx: &Rc<ShardContext>, wanted: &[Wanted], timeout_ms: u64) {
    let (sender, receiver) = glommio::channels::local_channel::new_unbounded::<()>();
    let sender = Rc::new(sender);
    for w in wanted.iter().filter(|w| w.known) {
        let owner = ctx.owner_of(&w.topic, w.partition);
        let call_ctx = ctx.clone();
        let request =
            CoreRequest::WaitForData { topic: w.topic.clone(), partition: w.partition, offset: w.offset, timeout_ms };
        let sender = sender.clone();
        glommio::spawn_local(async move {
            call_ctx.call(owner, request).await;
            let _ = sender.try_send(());
        })
        .detach();
    }
    let timeout = glommio::timer::sleep(Duration::from_millis(timeout_ms));
    futures_lite::future::or(async { receiver.recv().await.unwrap_or(()) }, timeout).await;
}

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: FetchRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.api_version;
    if version >= 7 && body.session_id != 0 {
        let encoder = ResponseEncoder::new(version, request.correlation_id, ErrorCode::FetchSessionIdNotFound.code());
        return Outcome::Respond(encoder.finish_empty());
    }
    let mut wanted = Vec::new();
    let mut layout: Vec<(String, usize)> = Vec::new();
    {
        let table = ctx.topics.borrow();
        for topic in &body.topics {
            let name = topic.topic.0.to_string();
            let meta = table.get(&name);
            layout.push((name.clone(), topic.partitions.len()));
            for p in &topic.partitions {
                let known = meta.is_some_and(|m| p.partition >= 0 && p.partition < m.partitions);
                wanted.push(Wanted {
                    topic: name.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    known,
                });
            }
        }
    }
    let min_bytes = body.min_bytes.max(0) as usize;
    let max_bytes = if body.max_bytes > 0 { body.max_bytes as usize } else { usize::MAX };
    let mut results = read_all(ctx, &wanted, max_bytes).await;
    let available: usize = results.iter().flatten().map(|r| r.bytes).sum();
    let any_error = results.iter().flatten().any(|r| r.error_code != 0);
    if available < min_bytes.max(1) && !any_error && body.max_wait_ms > 0 && !wanted.is_empty() {
        wait_for_any(ctx, &wanted, body.max_wait_ms as u64).await;
        results = read_all(ctx, &wanted, max_bytes).await;
    }
    let mut results: Vec<PartitionData> = results
        .into_iter()
        .zip(&wanted)
        .map(|(result, w)| {
            result.unwrap_or_else(|| PartitionData::empty(w.partition, ErrorCode::UnknownTopicOrPartition.code()))
        })
        .collect();
    // Enforce the response-wide max_bytes: the first non-empty partition is
    // always whole (KIP-74); later ones that would pass the limit go empty.
    let mut total = 0usize;
    for result in &mut results {
        if result.bytes == 0 {
            continue;
        }
        if total > 0 && total + result.bytes > max_bytes {
            result.chunks.clear();
            result.bytes = 0;
            continue;
        }
        total += result.bytes;
    }
    let mut encoder = ResponseEncoder::new(version, request.correlation_id, 0);
    let mut results = results.into_iter();
    encoder.array_len(layout.len());
    for (topic, count) in layout {
        encoder.string(&topic);
        encoder.array_len(count);
        for _ in 0..count {
            let result = results.next().expect("one result per wanted partition");
            encoder.partition(result);
        }
        encoder.tagged_fields();
    }
    Outcome::Respond(encoder.finish())
}

/// Writes a Fetch response of version 4-12 in parts.
#[derive(Debug)]
pub struct ResponseEncoder {
    version: i16,
    flexible: bool,
    current: BytesMut,
    parts: Vec<Part>,
}

impl ResponseEncoder {
    pub fn new(version: i16, correlation_id: i32, error_code: i16) -> Self {
        assert!((4..=12).contains(&version), "fetch encoder covers v4-v12");
        let flexible = version >= 12;
        let mut current = BytesMut::with_capacity(256);
        current.put_i32(correlation_id);
        if flexible {
            current.put_u8(0); // response header tagged fields
        }
        current.put_i32(0); // throttle_time_ms
        if version >= 7 {
            current.put_i16(error_code);
            current.put_i32(0); // session_id: sessions declined
        }
        Self { version, flexible, current, parts: Vec::new() }
    }

    fn uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.current.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.current.put_u8(value as u8);
    }

    pub fn array_len(&mut self, len: usize) {
        if self.flexible {
            self.uvarint(len as u64 + 1);
        } else {
            self.current.put_i32(len as i32);
        }
    }

    pub fn string(&mut self, text: &str) {
        if self.flexible {
            self.uvarint(text.len() as u64 + 1);
        } else {
            self.current.put_i16(text.len() as i16);
        }
        self.current.put_slice(text.as_bytes());
    }

    pub fn tagged_fields(&mut self) {
        if self.flexible {
            self.current.put_u8(0);
        }
    }

    pub fn partition(&mut self, data: PartitionData) {
        self.current.put_i32(data.partition);
        self.current.put_i16(data.error_code);
        self.current.put_i64(data.high_watermark);
        self.current.put_i64(data.high_watermark); // last_stable_offset: no transactions
        if self.version >= 5 {
            self.current.put_i64(data.log_start_offset);
        }
        self.array_len(0); // aborted_transactions
        if self.version >= 11 {
            self.current.put_i32(-1); // preferred_read_replica
        }
        if self.flexible {
            self.uvarint(data.bytes as u64 + 1);
        } else {
            self.current.put_i32(data.bytes as i32);
        }
        if !data.chunks.is_empty() {
            let head = std::mem::take(&mut self.current).freeze();
            self.parts.push(Part::Bytes(head));
            self.parts.extend(data.chunks.into_iter().map(Part::Chunk));
            self.current = BytesMut::with_capacity(128);
        }
        self.tagged_fields();
    }

    pub fn finish(mut self) -> Response {
        self.tagged_fields();
        self.parts.push(Part::Bytes(self.current.freeze()));
        Response { parts: self.parts }
    }

    /// A response with no topics (for top-level errors).
    pub fn finish_empty(mut self) -> Response {
        self.array_len(0);
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    use pinion_engine::Chunk;

    /// The hand encoder must produce what Kafka's schema says, for every
    /// version it covers: decode it with the schema-generated decoder.
    #[test]
    fn hand_encoded_response_decodes_with_the_schema_for_every_version() {
        for version in 4..=12i16 {
            let mut encoder = ResponseEncoder::new(version, 42, 0);
            encoder.array_len(1);
            encoder.string("orders");
            encoder.array_len(2);
            let records = Bytes::from_static(b"0123456789");
            encoder.partition(PartitionData {
                partition: 0,
                error_code: 0,
                high_watermark: 100,
                log_start_offset: 5,
                chunks: vec![Chunk::Memory(records.slice(0..4)), Chunk::Memory(records.slice(4..))],
                bytes: 10,
                cold: false,
            });
            encoder.partition(PartitionData {
                partition: 1,
                error_code: 1,
                high_watermark: -1,
                log_start_offset: -1,
                chunks: vec![],
                bytes: 0,
                cold: false,
            });
            encoder.tagged_fields();
            let response = encoder.finish();
            let mut flat = BytesMut::new();
            for part in &response.parts {
                flat.extend_from_slice(part.as_slice());
            }
            let mut buf = flat.freeze();
            let header = ResponseHeader::decode(&mut buf, if version >= 12 { 1 } else { 0 }).unwrap();
            assert_eq!(header.correlation_id, 42);
            let decoded = FetchResponse::decode(&mut buf, version).unwrap();
            assert!(buf.is_empty(), "v{version}: {} bytes left over", buf.len());
            assert_eq!(decoded.responses.len(), 1);
            assert_eq!(decoded.responses[0].topic.0.as_str(), "orders");
            let p0 = &decoded.responses[0].partitions[0];
            assert_eq!(p0.high_watermark, 100);
            assert_eq!(p0.records.as_deref(), Some(&b"0123456789"[..]));
            if version >= 5 {
                assert_eq!(p0.log_start_offset, 5);
            }
            assert_eq!(decoded.responses[0].partitions[1].error_code, 1);
        }
    }
}
