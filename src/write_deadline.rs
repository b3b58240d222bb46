//! A write deadline for connections that hyper serves.
//!
//! hyper has a deadline for reading request heads but none for writing: a client that stops
//! reading an SSE response (or any large one) leaves hyper's write pending forever, and the
//! connection holds its socket, its buffers and its `--max-clients` slot. The direct path bounds
//! each of its writes itself; this wrapper gives every other connection the same bound at the
//! I/O layer, where it holds for HTTP/1.1 and HTTP/2 alike: once a write has stayed pending
//! for the deadline, the write fails with `TimedOut` and hyper closes the connection.

use std::future::Future as _;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` with a bound on how long a write may stay pending.
#[derive(Debug)]
pub struct WriteDeadline<IO> {
    inner: IO,
    timeout: Duration,
    /// The deadline's timer, made at the first `Pending` write and re-armed after.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether a write is pending now: set by a `Pending` write, cleared by progress.
    armed: bool,
    timed_out: Arc<AtomicBool>,
}

impl<IO> WriteDeadline<IO> {
    /// Wraps `inner`; a write pending for longer than `timeout` fails.
    pub fn new(inner: IO, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            sleep: None,
            armed: false,
            timed_out: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set once a write has failed on the deadline, so the owner can count it after the
    /// connection ends.
    pub fn timed_out_flag(&self) -> Arc<AtomicBool> {
        self.timed_out.clone()
    }

    /// After a write returned `Pending`: arms the deadline, or fails if it has passed. The
    /// timer is allocated once per connection and re-armed, since a client that reads slowly
    /// makes writes pend often.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if !self.armed {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        ready!(sleep.as_mut().poll(cx));
        self.timed_out.store(true, Relaxed);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "write blocked past the write timeout",
        ))
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => match self.check_deadline(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_stays_blocked_fails_after_the_deadline() {
        // A pipe with room for 16 bytes, never read.
        let (client, _server) = tokio::io::duplex(16);
        let mut io = WriteDeadline::new(client, Duration::from_secs(30));
        let flag = io.timed_out_flag();
        io.write_all(&[0u8; 16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = io.write_all(&[0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(flag.load(Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_progresses_resets_the_deadline() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut io = WriteDeadline::new(client, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 16];
            let mut total = 0;
            // Reads 16 bytes every 20 s: each write waits 20 s, under the deadline.
            while total < 64 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += server.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[0u8; 64]).await.unwrap();
        reader.await.unwrap();
        assert!(!io.timed_out_flag().load(Relaxed));
    }
}
