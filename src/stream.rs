//! One client's SSE stream: a cursor and a subscription, nothing else.
//!
//! The stream sleeps until the feed announces a new batch (one wake-up per batch, whatever the
//! number of updates in it), then writes everything pending for the client in one chunk. A
//! client that was scheduled late finds several batches pending and writes them at once, so
//! batches grow under load by themselves. Nothing is queued per client: what is pending lives in
//! the shared history, and a client that falls out of it is conflated to the latest quotes.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use crate::feed::{ClientGuard, Cursor, Feed, Subscription};
use crate::metrics::EventKind;
use crate::shutdown::Shutdown;
use crate::sse;

/// One write to a client: frames and how many events they hold.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub bytes: Bytes,
    pub events: u64,
}

/// How a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With a snapshot of the current quotes.
    Snapshot,
    /// By replaying the updates after this id, if the history still holds them; otherwise
    /// with a snapshot.
    Resume(u64),
}

/// The state of one SSE client.
#[derive(Debug)]
pub struct QuoteStream {
    feed: Feed,
    sub: Subscription,
    cursor: Cursor,
    /// Frames to send before anything else (`retry:` and the snapshot).
    prelude: Option<Chunk>,
    newest: watch::Receiver<u64>,
    heartbeat: watch::Receiver<Bytes>,
    shutdown: Shutdown,
    _slot: ClientGuard,
}

impl QuoteStream {
    /// Opens a stream for `sub`. `slot` is the client's `--max-clients` slot, held until the
    /// stream is dropped.
    pub fn open(
        feed: Feed,
        sub: Subscription,
        start: Start,
        retry_ms: u64,
        shutdown: Shutdown,
        slot: ClientGuard,
    ) -> QuoteStream {
        let metrics = feed.metrics();
        let retry = sse::retry_frame(retry_ms);
        metrics.sent(EventKind::Retry, 1, retry.len() as u64);
        // Subscribe before reading the state, so a batch published in between still wakes us.
        let newest = feed.subscribe_newest();
        let mut heartbeat = feed.subscribe_heartbeat();
        heartbeat.mark_unchanged();
        let resumed = match start {
            Start::Resume(id) => feed.resume_from(id, &sub),
            Start::Snapshot => None,
        };
        let (cursor, prelude) = match resumed {
            Some(cursor) => {
                metrics
                    .replays_served
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let prelude = Chunk {
                    bytes: retry,
                    events: 1,
                };
                (cursor, prelude)
            }
            None => {
                let (seq, quotes, cursor) = feed.snapshot(&sub);
                let snapshot = sse::snapshot_frame(seq, quotes.iter().map(|q| &q.json[..]));
                metrics.sent(EventKind::Snapshot, 1, snapshot.len() as u64);
                let mut prelude = Vec::with_capacity(retry.len() + snapshot.len());
                prelude.extend_from_slice(&retry);
                prelude.extend_from_slice(&snapshot);
                let prelude = Chunk {
                    bytes: Bytes::from(prelude),
                    events: 2,
                };
                (cursor, prelude)
            }
        };
        tracing::debug!(
            clients = feed.clients(),
            ?sub,
            cursor = cursor.seq,
            "stream opened"
        );
        QuoteStream {
            feed,
            sub,
            cursor,
            prelude: Some(prelude),
            newest,
            heartbeat,
            shutdown,
            _slot: slot,
        }
    }

    /// The next chunk to write, or `None` when the stream ends (shutdown).
    pub async fn next_chunk(&mut self) -> Option<Chunk> {
        if let Some(prelude) = self.prelude.take() {
            return Some(prelude);
        }
        loop {
            if self.shutdown.is_fired() {
                return None;
            }
            let newest = *self.newest.borrow_and_update();
            if newest > self.cursor.seq {
                let collected = self.feed.collect(&mut self.cursor, &self.sub);
                if let Some(bytes) = collected.chunk {
                    let metrics = self.feed.metrics();
                    metrics.sent(EventKind::Quote, collected.quotes, bytes.len() as u64);
                    metrics
                        .writes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Some(Chunk {
                        bytes,
                        events: collected.quotes,
                    });
                }
                continue;
            }
            tokio::select! {
                biased;
                () = self.shutdown.wait() => return None,
                changed = self.newest.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                changed = self.heartbeat.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let frame = self.heartbeat.borrow_and_update().clone();
                    let metrics = self.feed.metrics();
                    metrics.sent(EventKind::Heartbeat, 1, frame.len() as u64);
                    metrics.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Some(Chunk {
                        bytes: frame,
                        events: 1,
                    });
                }
            }
        }
    }

    /// A listener for the shutdown that ends this stream.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The stream as the body of an HTTP response.
    pub fn into_body(
        self,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Sync + 'static {
        futures_util::stream::unfold(self, |mut stream| async move {
            let chunk = stream.next_chunk().await?;
            Some((Ok(chunk.bytes), stream))
        })
    }
}

impl Drop for QuoteStream {
    fn drop(&mut self) {
        tracing::debug!(cursor = self.cursor.seq, "stream closed");
    }
}
