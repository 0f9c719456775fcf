//! The topics a consumer subscribes to, read from its JoinGroup metadata.
//!
//! For protocol type "consumer" the member metadata is Kafka's
//! `ConsumerProtocolSubscription`: `version: int16`, then
//! `topics: [string]` (`int32` count, `int16`-length strings),
//! `user_data: nullable bytes`, and fields of later versions. Like Kafka's
//! coordinator, this reads only the version-0 prefix, which every later
//! version starts with, so a newer client never makes it fail. The
//! coordinator needs the topics for two Kafka rules: OffsetDelete refuses
//! partitions of subscribed topics (GROUP_SUBSCRIBED_TO_TOPIC), and offset
//! retention in a Stable consumer group expires only unsubscribed topics.

use std::collections::BTreeSet;

/// The protocol type of Kafka consumers (and the only one whose metadata the
/// coordinator reads).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The subscribed topics in `metadata`, or `None` when it is not a
/// well-formed consumer subscription (Kafka then assumes "subscribed to
/// everything" where that is the safe answer).
pub fn subscribed_topics(metadata: &[u8]) -> Option<BTreeSet<String>> {
    let mut buf = metadata;
    let version = read_i16(&mut buf)?;
    if version < 0 {
        return None;
    }
    let count = read_i32(&mut buf)?;
    let count = usize::try_from(count).ok()?;
    // Each topic takes at least its 2-byte length.
    if count.saturating_mul(2) > buf.len() {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..count {
        let length = usize::try_from(read_i16(&mut buf)?).ok()?;
        let bytes = take(&mut buf, length)?;
        topics.insert(std::str::from_utf8(bytes).ok()?.to_owned());
    }
    // user_data: nullable bytes; checked so a truncated subscription is refused as Kafka does.
    let user_data_length = read_i32(&mut buf)?;
    if user_data_length >= 0 {
        take(&mut buf, usize::try_from(user_data_length).ok()?)?;
    } else if user_data_length != -1 {
        return None;
    }
    Some(topics)
}

fn take<'a>(buf: &mut &'a [u8], count: usize) -> Option<&'a [u8]> {
    if buf.len() < count {
        return None;
    }
    let (head, tail) = buf.split_at(count);
    *buf = tail;
    Some(head)
}

fn read_i16(buf: &mut &[u8]) -> Option<i16> {
    let bytes = take(buf, 2)?;
    Some(i16::from_be_bytes([bytes[0], bytes[1]]))
}

fn read_i32(buf: &mut &[u8]) -> Option<i32> {
    let bytes = take(buf, 4)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Encodes a version-0 consumer subscription (for tests and tools).
pub fn encode_subscription(topics: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_topics_of_a_v0_subscription() {
        let metadata = encode_subscription(&["orders", "payments"]);
        let topics = subscribed_topics(&metadata).unwrap();
        assert_eq!(topics.into_iter().collect::<Vec<_>>(), vec!["orders", "payments"]);
    }

    #[test]
    fn later_versions_are_read_through_their_v0_prefix() {
        let mut metadata = encode_subscription(&["orders"]);
        metadata[1] = 3; // version 3
        metadata.extend_from_slice(&[0, 0, 0, 0]); // owned partitions: empty
        assert!(subscribed_topics(&metadata).unwrap().contains("orders"));
    }

    #[test]
    fn garbage_is_not_a_subscription() {
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0xff, 0xff, 0, 0, 0, 0]), None);
    }
}
