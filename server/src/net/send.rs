//! Writing a response as it is: a size prefix, the encoded parts, and the
//! stored batch chunks (tail-cache `Bytes` or DMA read buffers), handed to
//! the kernel in one `sendmsg` with an iovec per part. Nothing is copied
//! into a response buffer. When the socket is full, glommio's own write
//! path waits for it to drain (and writes what it can meanwhile).

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::AsyncWrite;
use glommio::net::TcpStream;

use crate::shard::LocalChunk;

/// One piece of a response.
#[derive(Debug)]
pub enum Part {
    Bytes(Bytes),
    Chunk(LocalChunk),
}

impl Part {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Part::Bytes(b) => b,
            Part::Chunk(c) => c,
        }
    }
}

/// A response body (without the size prefix) in parts.
#[derive(Debug, Default)]
pub struct Response {
    pub parts: Vec<Part>,
}

impl Response {
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self { parts: vec![Part::Bytes(bytes)] }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.as_slice().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Most iovecs handed to one sendmsg (Linux's IOV_MAX is 1024).
const IOVECS_MAX: usize = 512;

/// Writes `response` with its size prefix; returns the bytes written.
pub async fn write_response(stream: &Rc<RefCell<TcpStream>>, response: &Response) -> io::Result<usize> {
    let len = response.len();
    let prefix = (len as u32).to_be_bytes();
    let mut slices: Vec<&[u8]> = Vec::with_capacity(response.parts.len() + 1);
    slices.push(&prefix);
    slices.extend(response.parts.iter().map(Part::as_slice).filter(|s| !s.is_empty()));
    let fd = stream.borrow().as_raw_fd();
    let (mut index, mut within) = (0usize, 0usize);
    while index < slices.len() {
        let iovecs: Vec<libc::iovec> = slices[index..]
            .iter()
            .take(IOVECS_MAX)
            .enumerate()
            .map(|(i, s)| {
                let s = if i == 0 { &s[within..] } else { s };
                libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() }
            })
            .collect();
        // SAFETY: msghdr is zero-initialised plain data; we point it at
        // `iovecs`, which outlives the call, and whose entries point into
        // `slices`, which are borrowed for the whole function.
        let sent = unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = iovecs.as_ptr() as *mut libc::iovec;
            header.msg_iovlen = iovecs.len();
            libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        let written = if sent >= 0 {
            sent as usize
        } else {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    // Let glommio wait for room; it writes what fits of the current slice.
                    let current = &slices[index][within..];
                    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream.borrow_mut()).poll_write(cx, current))
                        .await?
                }
                _ => return Err(error),
            }
        };
        // Advance over what was written.
        let mut left = written;
        while left > 0 && index < slices.len() {
            let available = slices[index].len() - within;
            if left >= available {
                left -= available;
                index += 1;
                within = 0;
            } else {
                within += left;
                left = 0;
            }
        }
    }
    Ok(len + prefix.len())
}
