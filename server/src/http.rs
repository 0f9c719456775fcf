//! A minimal HTTP endpoint for Prometheus: `GET /metrics` answers every
//! shard's metrics in the text exposition format; anything else is 404.
//! Served by shard 0, which gathers the other shards' text over the mesh.

use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::broker::gather_metrics;
use crate::shard::ShardContext;

const REQUEST_BYTES_MAX: usize = 8192;

async fn serve_one(ctx: Rc<ShardContext>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || request.len() + n > REQUEST_BYTES_MAX {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) =
        if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            ("200 OK", "text/plain; version=0.0.4", gather_metrics(&ctx).await)
        } else {
            ("404 Not Found", "text/plain", "not found: try /metrics\n".to_string())
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.close().await
}

pub async fn serve_metrics(ctx: Rc<ShardContext>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    if let Err(e) = serve_one(ctx, stream).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
