//! Operating errors of the engine. Each keeps its cause; the broker maps
//! them to Kafka error codes at one boundary. Broken invariants are not
//! errors: they are assertions.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use crate::batch::BatchError;
use crate::producer_state::ProducerError;

/// Why an append was refused.
#[derive(Debug, Clone)]
pub enum AppendError {
    /// The batch failed validation; nothing was stored.
    Batch(BatchError),
    /// An idempotent producer's batch broke its epoch or sequence; nothing
    /// was stored.
    Producer(ProducerError),
    /// A write or fdatasync failed earlier; the log refuses writes. The
    /// reason names the failed operation and its OS error.
    Poisoned(Rc<str>),
    /// The log was closed or deleted.
    Closed,
    /// A file operation failed while appending (for example creating the
    /// next segment).
    Io(Rc<io::Error>),
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Batch(e) => write!(f, "{e}"),
            Self::Producer(e) => write!(f, "{e}"),
            Self::Poisoned(reason) => write!(f, "log refuses writes after a failed write: {reason}"),
            Self::Closed => write!(f, "log is closed"),
            Self::Io(e) => write!(f, "append failed: {e}"),
        }
    }
}

impl std::error::Error for AppendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Batch(e) => Some(e),
            Self::Producer(e) => Some(e),
            Self::Io(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<BatchError> for AppendError {
    fn from(e: BatchError) -> Self {
        Self::Batch(e)
    }
}

impl From<ProducerError> for AppendError {
    fn from(e: ProducerError) -> Self {
        Self::Producer(e)
    }
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The offset is before the log start or after the log end.
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OffsetOutOfRange { offset, log_start_offset, log_end_offset } => {
                write!(f, "offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")
            }
            Self::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::OffsetOutOfRange { .. } => None,
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Why a log could not be opened (recovered).
#[derive(Debug)]
pub struct OpenError {
    pub dir: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open log {}: {}", self.dir.display(), self.source)
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
