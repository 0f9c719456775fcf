//! The network side of a shard: accepting connections on the shared port,
//! reading request frames, and writing responses without copying stored
//! batches. Read in order: `listener.rs`, `frame.rs`, `connection.rs`, `order.rs`, `send.rs`.

pub mod connection;
pub mod frame;
pub mod listener;
pub mod order;
pub mod send;
