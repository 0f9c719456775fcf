//! Kafka error codes, and the one boundary where engine errors become them.

use pinion_engine::batch::BatchError;
use pinion_engine::producer_state::ProducerError;
use pinion_engine::AppendError;

/// The Kafka error codes pinion answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum ErrorCode {
    UnknownServerError = -1,
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    MessageTooLarge = 10,
    InvalidTopicException = 17,
    InvalidRequiredAcks = 21,
    ClusterAuthorizationFailed = 31,
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidConfig = 40,
    InvalidRequest = 42,
    TransactionalIdAuthorizationFailed = 53,
    KafkaStorageError = 56,
    FetchSessionIdNotFound = 70,
    OutOfOrderSequenceNumber = 45,
    InvalidProducerEpoch = 47,
    UnknownProducerId = 59,
    InvalidRecord = 87,
    UnknownTopicId = 100,
}

impl ErrorCode {
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// What a producer is told when its batch is refused or the log fails.
pub fn append_error_code(error: &AppendError) -> i16 {
    let code = match error {
        AppendError::Batch(BatchError::TooLarge { .. }) => ErrorCode::MessageTooLarge,
        AppendError::Batch(BatchError::RecordCount { .. } | BatchError::Records { .. }) => ErrorCode::InvalidRecord,
        AppendError::Batch(
            BatchError::Crc { .. }
            | BatchError::Magic { .. }
            | BatchError::Truncated { .. }
            | BatchError::Length { .. },
        ) => ErrorCode::CorruptMessage,
        AppendError::Poisoned(_) | AppendError::Io(_) => ErrorCode::KafkaStorageError,
        // The partition was closed under the request (topic deleted or shutting down).
        AppendError::Closed => ErrorCode::NotLeaderOrFollower,
        AppendError::Producer(ProducerError::InvalidProducerEpoch { .. }) => ErrorCode::InvalidProducerEpoch,
        AppendError::Producer(ProducerError::OutOfOrderSequence { .. }) => ErrorCode::OutOfOrderSequenceNumber,
        AppendError::Producer(ProducerError::UnknownProducerId { .. }) => ErrorCode::UnknownProducerId,
    };
    code.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_map_to_the_documented_codes() {
        let crc = AppendError::Batch(BatchError::Crc { stored: 1, computed: 2 });
        assert_eq!(append_error_code(&crc), 2);
        let large = AppendError::Batch(BatchError::TooLarge { size: 10, max: 5 });
        assert_eq!(append_error_code(&large), 10);
        let records = AppendError::Batch(BatchError::Records { reason: "x" });
        assert_eq!(append_error_code(&records), 87);
        assert_eq!(append_error_code(&AppendError::Poisoned("eio".into())), 56);
    }
}
