//! One client connection, on the shard that accepted it.
//!
//! A reader loop takes frames off the socket and starts a handler task for
//! each; a writer loop awaits those tasks in arrival order and writes their
//! responses, so pipelined requests (Kafka clients keep several in flight)
//! are answered in request order. At most `connection_in_flight_max`
//! requests are in flight; past that the reader stops reading, which
//! bounds the memory a connection can hold to that many frames of at most
//! `socket_request_max_bytes`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::AsyncRead;
use glommio::channels::local_channel;
use glommio::net::TcpStream;

use crate::api::{self, Outcome};
use crate::net::frame::{self, FrameError};
use crate::net::order::DispatchOrder;
use crate::net::send::write_response;
use crate::shard::ShardContext;

/// Reads into `buf` until it is full; `Ok(false)` on a clean end of stream
/// before the first byte.
async fn read_exact(stream: &Rc<RefCell<TcpStream>>, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream.borrow_mut()).poll_read(cx, &mut buf[filled..]))
                .await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a frame"));
        }
        filled += n;
    }
    Ok(true)
}

/// Bytes of the buffer a connection reads into while it waits for the
/// socket; frames are otherwise received straight into their own buffer.
const WAIT_READ_BYTES: usize = 64 * 1024;

/// Reads one frame body of `size` bytes, growing the buffer as bytes arrive
/// so that a client announcing a large frame and sending nothing holds
/// little memory.
///
/// Bytes already queued on the socket are received straight into the
/// frame's uninitialised capacity (no zero-fill: for 1 MiB produce frames
/// that memset was 6 % of the broker's CPU). Only when the socket is empty
/// does it wait, through the stream, reading what arrives first into the
/// connection's small `wait_buf` and copying it over.
async fn read_frame(stream: &Rc<RefCell<TcpStream>>, size: usize, wait_buf: &mut [u8]) -> std::io::Result<BytesMut> {
    const STEP_BYTES: usize = 1 << 20;
    let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a frame");
    let mut buf = BytesMut::new();
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(STEP_BYTES));
        }
        let want = (size - buf.len()).min(buf.capacity() - buf.len());
        match recv_queued(&stream.borrow(), &mut buf, want) {
            Ok(0) => return Err(closed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let wait_len = want.min(wait_buf.len());
        let n = std::future::poll_fn(|cx| {
            std::pin::Pin::new(&mut *stream.borrow_mut()).poll_read(cx, &mut wait_buf[..wait_len])
        })
        .await?;
        if n == 0 {
            return Err(closed());
        }
        buf.extend_from_slice(&wait_buf[..n]);
    }
    Ok(buf)
}

/// One non-blocking `recv` of at most `want` bytes into `buf`'s spare
/// capacity (which must hold `want`); the bytes received are appended.
fn recv_queued(stream: &TcpStream, buf: &mut BytesMut, want: usize) -> std::io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    assert!(spare.len() >= want, "recv_queued: {want} bytes wanted, {} spare", spare.len());
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    // SAFETY: `spare` is writable memory of at least `want` bytes owned by
    // `buf`; recv writes at most `want` bytes into it and reads nothing.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` (<= `want`) spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

pub async fn serve(ctx: Rc<ShardContext>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(RefCell::new(stream));
    let (sender, receiver) = local_channel::new_bounded(ctx.config.connection_in_flight_max);
    ctx.metrics.connections_accepted.set(ctx.metrics.connections_accepted.get() + 1);
    ctx.metrics.connections_open.set(ctx.metrics.connections_open.get() + 1);

    let writer_stream = stream.clone();
    let writer_ctx = ctx.clone();
    let writer_peer = peer.clone();
    let writer = glommio::spawn_local(async move {
        while let Some(task) = receiver.recv().await {
            let task: glommio::Task<Outcome> = task;
            match task.await {
                Outcome::Respond(response) => {
                    if let Err(e) = write_response(&writer_stream, &response).await {
                        tracing::debug!(peer = %writer_peer, error = %e, "write failed; closing");
                        break;
                    }
                }
                Outcome::NoResponse => {}
                Outcome::Disconnect(reason) => {
                    writer_ctx.metrics.bad_frames.set(writer_ctx.metrics.bad_frames.get() + 1);
                    tracing::warn!(peer = %writer_peer, %reason, "closing connection");
                    break;
                }
            }
        }
        // Unblocks the reader if it is waiting for bytes. A plain
        // shutdown(2): no borrow of the stream is held across an await.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*writer_stream.borrow());
        // SAFETY: `fd` is the open socket owned by `writer_stream`, which
        // outlives this call; shutdown does not close or free it.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    });

    let max = ctx.config.socket_request_max_bytes;
    let produce_order = DispatchOrder::default();
    let mut wait_buf = vec![0u8; WAIT_READ_BYTES];
    loop {
        let mut size_prefix = [0u8; 4];
        match read_exact(&stream, &mut size_prefix).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break;
            }
        }
        let size = match frame::check_size(i32::from_be_bytes(size_prefix), max) {
            Ok(size) => size,
            Err(e) => {
                let _ = sender.send(glommio::spawn_local(async move { Outcome::Disconnect(e.to_string()) })).await;
                break;
            }
        };
        let body = match read_frame(&stream, size, &mut wait_buf).await {
            Ok(body) => body.freeze(),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "truncated frame");
                break;
            }
        };
        let started = Instant::now();
        let handler_ctx = ctx.clone();
        // Taken here, in read order, not inside the task.
        let turn = frame::is_produce(&body).then(|| produce_order.turn());
        let task = glommio::spawn_local(async move {
            match frame::parse_request(body) {
                Ok(request) => {
                    let api_name = api::api_name(request.api_key);
                    let outcome = api::handle(&handler_ctx, request, turn).await;
                    handler_ctx.metrics.record_request(api_name, started.elapsed().as_micros() as u64);
                    outcome
                }
                Err(
                    e @ (FrameError::UnknownApiKey { .. }
                    | FrameError::BadHeader { .. }
                    | FrameError::Short { .. }
                    | FrameError::Size { .. }),
                ) => Outcome::Disconnect(e.to_string()),
            }
        });
        if sender.send(task).await.is_err() {
            break;
        }
    }
    drop(sender);
    writer.await;
    ctx.metrics.connections_open.set(ctx.metrics.connections_open.get().saturating_sub(1));
}
