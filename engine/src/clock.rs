//! The wall clock behind a seam, so tests can age segments (`segment_ms`,
//! `retention_ms`) without sleeping.

use std::cell::Cell;
use std::fmt::Debug;
use std::rc::Rc;

pub trait Clock: Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_ms: Rc<Cell<i64>>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self { now_ms: Rc::new(Cell::new(now_ms)) }
    }
    pub fn set(&self, now_ms: i64) {
        self.now_ms.set(now_ms);
    }
    pub fn advance(&self, ms: i64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }
}
