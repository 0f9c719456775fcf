//! Accepting connections. Every shard binds the same address with
//! SO_REUSEPORT (glommio's `TcpListener::bind` sets it), so the kernel
//! spreads new connections across shards; a connection lives on the shard
//! that accepted it.

use std::rc::Rc;

use glommio::net::TcpListener;

use crate::net::connection;
use crate::shard::ShardContext;

pub async fn accept_loop(ctx: Rc<ShardContext>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(connection::serve(ctx.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
