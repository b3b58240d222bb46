//! The Server-Sent-Events wire format, and the only place that knows it.
//!
//! Every market event is encoded here exactly once. A publish step's events become one
//! [`Batch`]: their frames concatenated into one shared [`Bytes`], with an index of where each
//! frame and its JSON lie and what kind and symbol it is. Clients then write slices of that
//! buffer, or copies of the frames they selected; nothing is formatted per client.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::market::{Event, Kind};

/// Event name of the list of current quotes that opens a stream.
pub const SNAPSHOT_EVENT: &str = "snapshot";
/// Event name of the periodic keep-alive.
pub const HEARTBEAT_EVENT: &str = "heartbeat";

/// Where one event's frame lies inside its batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameIndex {
    /// Index of the symbol in the symbol table, or [`crate::market::events::MARKET_WIDE`].
    pub symbol: u16,
    pub kind: Kind,
    /// Byte range of the whole frame (`event:` line to the blank line).
    pub start: u32,
    pub end: u32,
    /// Byte range of the event's JSON inside the frame.
    pub json_start: u32,
    pub json_end: u32,
}

/// The encoded events of one publish step. Sequence numbers are contiguous: frame `i` carries
/// `first_seq + i`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub first_seq: u64,
    pub bytes: Bytes,
    pub frames: Vec<FrameIndex>,
    /// Events of each kind in the batch (`Kind as usize`), and their bytes: counted once
    /// here, so the thousands of clients that take whole batches need not count them.
    pub kind_events: [u64; Kind::ALL.len()],
    pub kind_bytes: [u64; Kind::ALL.len()],
}

impl Batch {
    /// Encodes `events` (contiguous, ascending seq; at least one) into one buffer.
    ///
    /// # Panics
    /// If `events` is empty or its seqs are not contiguous: the publisher guarantees both.
    pub fn encode(events: &[Event]) -> Batch {
        let first_seq = events
            .first()
            .expect("a batch has at least one event")
            .seq();
        let mut buf = Vec::with_capacity(events.len() * 360);
        let mut frames = Vec::with_capacity(events.len());
        let mut kind_events = [0; Kind::ALL.len()];
        let mut kind_bytes = [0; Kind::ALL.len()];
        for (i, event) in events.iter().enumerate() {
            let seq = event.seq();
            assert_eq!(seq, first_seq + i as u64, "batch seqs are contiguous");
            let start = buf.len() as u32;
            let (json_start, json_end) = write_frame(&mut buf, event);
            kind_events[event.kind() as usize] += 1;
            kind_bytes[event.kind() as usize] += u64::from(buf.len() as u32 - start);
            frames.push(FrameIndex {
                symbol: event.symbol_index(),
                kind: event.kind(),
                start,
                end: buf.len() as u32,
                json_start,
                json_end,
            });
        }
        Batch {
            first_seq,
            bytes: Bytes::from(buf),
            frames,
            kind_events,
            kind_bytes,
        }
    }

    /// A batch encoded elsewhere (by the simulator of a cluster), from its bytes and frame
    /// index: checked, so that bytes from outside can never make a client read out of bounds,
    /// and counted by kind as [`Batch::encode`] does. Nothing is re-encoded.
    ///
    /// # Errors
    /// No frames, or frames that do not tile `bytes` in order with their JSON inside them.
    pub fn from_parts(
        first_seq: u64,
        bytes: Bytes,
        frames: Vec<FrameIndex>,
    ) -> Result<Batch, BatchError> {
        if frames.is_empty() {
            return Err(BatchError::Empty);
        }
        // Ids are read by JavaScript, exact only below 2^53; 0 would make `first_seq - 1`
        // (the seq before the batch) underflow wherever a feed follows it.
        if first_seq == 0 || first_seq.saturating_add(frames.len() as u64) > 1 << 53 {
            return Err(BatchError::Seq(first_seq));
        }
        let mut kind_events = [0; Kind::ALL.len()];
        let mut kind_bytes = [0; Kind::ALL.len()];
        let mut at = 0u32;
        for (i, f) in frames.iter().enumerate() {
            let inside = f.start == at
                && f.start <= f.json_start
                && f.json_start <= f.json_end
                && f.json_end <= f.end
                && f.start < f.end;
            if !inside {
                return Err(BatchError::Frame(i));
            }
            kind_events[f.kind as usize] += 1;
            kind_bytes[f.kind as usize] += u64::from(f.end - f.start);
            at = f.end;
        }
        if at as usize != bytes.len() {
            return Err(BatchError::Length);
        }
        Ok(Batch {
            first_seq,
            bytes,
            frames,
            kind_events,
            kind_bytes,
        })
    }

    /// The batches `batches` (contiguous seqs, in order; at least one) as one: the bytes are
    /// copied once, the frame index shifted. A simulator catching up after Redis was away sends
    /// its backlog in a few large entries rather than one round trip per batch.
    pub fn merge(batches: &[Batch]) -> Option<Batch> {
        let (first, rest) = batches.split_first()?;
        if rest.is_empty() {
            return Some(first.clone());
        }
        let mut bytes = BytesMut::with_capacity(batches.iter().map(|b| b.bytes.len()).sum());
        let mut frames = Vec::with_capacity(batches.iter().map(Batch::len).sum());
        let mut kind_events = [0; Kind::ALL.len()];
        let mut kind_bytes = [0; Kind::ALL.len()];
        for batch in batches {
            let offset = bytes.len() as u32;
            bytes.extend_from_slice(&batch.bytes);
            frames.extend(batch.frames.iter().map(|f| FrameIndex {
                start: f.start + offset,
                end: f.end + offset,
                json_start: f.json_start + offset,
                json_end: f.json_end + offset,
                ..*f
            }));
            for k in 0..Kind::ALL.len() {
                kind_events[k] += batch.kind_events[k];
                kind_bytes[k] += batch.kind_bytes[k];
            }
        }
        Some(Batch {
            first_seq: first.first_seq,
            bytes: bytes.freeze(),
            frames,
            kind_events,
            kind_bytes,
        })
    }

    /// Seq of the last event in the batch.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.frames.len() as u64 - 1
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the batch holds no event (never true for a published batch).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame of event `i`, sharing the batch's memory.
    pub fn frame(&self, i: usize) -> Bytes {
        let f = &self.frames[i];
        self.bytes.slice(f.start as usize..f.end as usize)
    }

    /// The JSON of event `i`, sharing the batch's memory.
    pub fn json(&self, i: usize) -> Bytes {
        let f = &self.frames[i];
        self.bytes.slice(f.json_start as usize..f.json_end as usize)
    }

    /// Frames `from..` as one slice: frames are contiguous in the buffer.
    pub fn frames_from(&self, from: usize) -> Bytes {
        self.bytes.slice(self.frames[from].start as usize..)
    }
}

/// Why bytes from outside are not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("a batch has no frames")]
    Empty,
    #[error("frame {0} lies outside its batch or out of order")]
    Frame(usize),
    #[error("the frames do not cover the batch's bytes")]
    Length,
    #[error("first seq {0} is 0 or leaves no room for the batch's ids below 2^53")]
    Seq(u64),
}

/// Appends the `event:`, `id:` and `data:` lines of `event`; returns the JSON's byte range.
fn write_frame(buf: &mut Vec<u8>, event: &Event) -> (u32, u32) {
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(event_name(event.kind()).as_bytes());
    buf.extend_from_slice(b"\nid: ");
    buf.extend_from_slice(itoa::Buffer::new().format(event.seq()).as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    let json_start = buf.len() as u32;
    let written = match event {
        Event::Quote(_, e) => serde_json::to_writer(&mut *buf, e),
        Event::Trade(_, e) => serde_json::to_writer(&mut *buf, e),
        Event::Bar(_, e) => serde_json::to_writer(&mut *buf, e),
        Event::Status(_, e) => serde_json::to_writer(&mut *buf, e),
        Event::Session(e) => serde_json::to_writer(&mut *buf, e),
    };
    written.expect("market events always serialise");
    let json_end = buf.len() as u32;
    buf.extend_from_slice(b"\n\n");
    (json_start, json_end)
}

/// The `event:` name of a kind of market event.
pub fn event_name(kind: Kind) -> &'static str {
    kind.as_str()
}

/// Splits one line of an event stream into its field name and value, as the SSE spec reads it:
/// the value follows the first colon, less one leading space; a line without a colon is a field
/// with an empty value. (Comment lines, starting with a colon, are the caller's to skip.)
pub fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(c) => {
            let value = &line[c + 1..];
            (&line[..c], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
    }
}

/// `retry: <ms>`: tells EventSource how long to wait before reconnecting. A field line with no
/// blank line after it, so it belongs to the block of the event that follows (the snapshot, or
/// the first replayed event): a block of its own is dispatched by some clients as an empty
/// `message` event.
pub fn retry_frame(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n"))
}

/// `event: snapshot` with `id: <seq>` and a JSON array of the given quote objects.
pub fn snapshot_frame<'a>(seq: u64, quotes: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut buf = BytesMut::with_capacity(4096);
    buf.put_slice(b"event: snapshot\nid: ");
    buf.put_slice(itoa::Buffer::new().format(seq).as_bytes());
    buf.put_slice(b"\ndata: ");
    json_array_into(&mut buf, quotes);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// Writes `[a,b,...]` from already-encoded JSON values.
pub fn json_array_into<'a>(buf: &mut BytesMut, items: impl IntoIterator<Item = &'a [u8]>) {
    buf.put_u8(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(item);
    }
    buf.put_u8(b']');
}

/// `event: heartbeat` with `{"ts":..,"market_ts":..,"seq":..}` and deliberately no `id:` line,
/// so the browser's last event id stays that of the last quote.
pub fn heartbeat_frame(ts_ms: u64, market_ts: i64, seq: u64) -> Bytes {
    let mut buf = Vec::with_capacity(80);
    write!(
        buf,
        "event: heartbeat\ndata: {{\"ts\":{ts_ms},\"market_ts\":{market_ts},\"seq\":{seq}}}\n\n"
    )
    .expect("writing to a Vec cannot fail");
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::bars::Bar;
    use crate::market::clock::SessionState;
    use crate::market::events::{
        BarEvent, Header, Reason, SessionEvent, StatusEvent, TradeEvent, MARKET_WIDE,
    };
    use crate::market::{Conditions, Quote, Status, Symbol, Trade};
    use rust_decimal::Decimal;
    use std::str::FromStr;

    pub(crate) fn sample_quote(seq: u64) -> Quote {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        Quote {
            symbol: Symbol::from_str("AAPL").unwrap(),
            seq,
            ts: 1732480000123,
            market_ts: 1732458600000,
            status: crate::market::Status::Trading,
            limit_up: Some(d("196.59")),
            limit_down: Some(d("177.87")),
            price: d("187.23"),
            bid: d("187.22"),
            ask: d("187.24"),
            bid_size: 300,
            ask_size: 500,
            last_size: 100,
            volume: 1234567,
            open: d("185.00"),
            high: d("188.10"),
            low: d("184.90"),
            prev_close: d("185.50"),
            change: d("1.73"),
            change_pct: d("0.93"),
        }
    }

    #[test]
    fn quote_frame_has_the_documented_text() {
        let batch = Batch::encode(&[Event::Quote(0, sample_quote(1234))]);
        let expected = "event: quote\nid: 1234\ndata: {\"symbol\":\"AAPL\",\"seq\":1234,\"ts\":1732480000123,\"market_ts\":1732458600000,\"status\":\"trading\",\"limit_up\":\"196.59\",\"limit_down\":\"177.87\",\"price\":\"187.23\",\"bid\":\"187.22\",\"ask\":\"187.24\",\"bid_size\":300,\"ask_size\":500,\"last_size\":100,\"volume\":1234567,\"open\":\"185.00\",\"high\":\"188.10\",\"low\":\"184.90\",\"prev_close\":\"185.50\",\"change\":\"1.73\",\"change_pct\":\"0.93\"}\n\n";
        assert_eq!(std::str::from_utf8(&batch.bytes).unwrap(), expected);
        assert_eq!(
            batch.json(0),
            Bytes::from(serde_json::to_vec(&sample_quote(1234)).unwrap())
        );
    }

    #[test]
    fn batch_indexes_each_frame() {
        let events: Vec<Event> = (5..8)
            .map(|seq| Event::Quote(seq as u16, sample_quote(seq)))
            .collect();
        let batch = Batch::encode(&events);
        assert_eq!(batch.last_seq(), 7);
        assert!(batch.frame(1).starts_with(b"event: quote\nid: 6\n"));
        assert!(batch.frames_from(2).starts_with(b"event: quote\nid: 7\n"));
        assert_eq!(batch.frames[2].symbol, 7);
        assert_eq!(batch.frames[2].kind, Kind::Quote);
        assert_eq!(batch.kind_events, [3, 0, 0, 0, 0]);
        assert_eq!(batch.kind_bytes[0], batch.bytes.len() as u64);
    }

    #[test]
    fn parts_from_outside_are_checked_and_merges_shift_the_index() {
        let events: Vec<Event> = (5..8)
            .map(|seq| Event::Quote(seq as u16, sample_quote(seq)))
            .collect();
        let one = Batch::encode(&events[..1]);
        let two = Batch::encode(&events[1..]);
        let merged = Batch::merge(&[one.clone(), two]).unwrap();
        let whole = Batch::encode(&events);
        assert_eq!(merged.bytes, whole.bytes);
        assert_eq!(merged.frames, whole.frames);
        assert_eq!(merged.kind_bytes, whole.kind_bytes);
        let rebuilt = Batch::from_parts(5, whole.bytes.clone(), whole.frames.clone()).unwrap();
        assert_eq!(rebuilt.kind_events, whole.kind_events);
        assert_eq!(rebuilt.last_seq(), 7);
        let mut bad = whole.frames.clone();
        bad[1].end += 1;
        assert_eq!(
            Batch::from_parts(5, whole.bytes.clone(), bad).unwrap_err(),
            BatchError::Frame(2)
        );
        assert_eq!(
            Batch::from_parts(5, one.bytes.clone(), whole.frames.clone()).unwrap_err(),
            BatchError::Length
        );
        assert_eq!(
            Batch::from_parts(5, Bytes::new(), Vec::new()).unwrap_err(),
            BatchError::Empty
        );
        for first in [0, 1 << 53] {
            assert_eq!(
                Batch::from_parts(first, whole.bytes.clone(), whole.frames.clone()).unwrap_err(),
                BatchError::Seq(first)
            );
        }
    }

    #[test]
    fn every_kind_has_the_documented_text() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        let aapl = Symbol::from_str("AAPL").unwrap();
        let header = |seq| Header {
            seq,
            ts: 1732480000123,
            market_ts: 1709566200000,
        };
        let events = [
            Event::Trade(
                3,
                TradeEvent {
                    symbol: aapl.clone(),
                    header: header(10),
                    trade: Trade {
                        price: d("187.23"),
                        size: 40,
                        conditions: Conditions::ODD_LOT,
                    },
                },
            ),
            Event::Bar(
                3,
                BarEvent {
                    symbol: aapl.clone(),
                    header: header(11),
                    interval: "1m",
                    bar: Bar {
                        start: 1709566140000,
                        open: d("187.20"),
                        high: d("187.25"),
                        low: d("187.19"),
                        close: d("187.23"),
                        volume: 1240,
                        trades: 9,
                        vwap: d("187.2214"),
                    },
                },
            ),
            Event::Status(
                3,
                StatusEvent {
                    symbol: aapl,
                    header: header(12),
                    status: Status::Halted,
                    reason: Reason::LuldPause,
                    limit_up: Some(d("196.59")),
                    limit_down: None,
                    resumes_at: Some(1709566500000),
                },
            ),
            Event::Session(SessionEvent {
                header: header(13),
                state: SessionState::Open,
                next_open: 1709649000000,
                next_close: 1709586000000,
            }),
        ];
        let batch = Batch::encode(&events);
        let text = std::str::from_utf8(&batch.bytes).unwrap();
        let expected = [
            r#"event: trade
id: 10
data: {"symbol":"AAPL","seq":10,"ts":1732480000123,"market_ts":1709566200000,"price":"187.23","size":40,"conditions":["I"]}"#,
            r#"event: bar
id: 11
data: {"symbol":"AAPL","seq":11,"ts":1732480000123,"market_ts":1709566200000,"interval":"1m","start":1709566140000,"open":"187.20","high":"187.25","low":"187.19","close":"187.23","volume":1240,"trades":9,"vwap":"187.2214"}"#,
            r#"event: status
id: 12
data: {"symbol":"AAPL","seq":12,"ts":1732480000123,"market_ts":1709566200000,"status":"halted","reason":"luld_pause","limit_up":"196.59","limit_down":null,"resumes_at":1709566500000}"#,
            r#"event: session
id: 13
data: {"seq":13,"ts":1732480000123,"market_ts":1709566200000,"state":"open","next_open":1709649000000,"next_close":1709586000000}"#,
        ]
        .map(|frame| format!("{frame}\n\n"))
        .concat();
        assert_eq!(text, expected);
        assert_eq!(batch.frames[3].symbol, MARKET_WIDE);
        assert_eq!(
            batch.frames.iter().map(|f| f.kind).collect::<Vec<_>>(),
            [Kind::Trade, Kind::Bar, Kind::Status, Kind::Session]
        );
    }

    #[test]
    fn field_lines_split_as_the_spec_says() {
        assert_eq!(
            split_field(b"data: {\"a\":1}"),
            (&b"data"[..], &b"{\"a\":1}"[..])
        );
        assert_eq!(split_field(b"data:x: y"), (&b"data"[..], &b"x: y"[..]));
        assert_eq!(split_field(b"data:  two"), (&b"data"[..], &b" two"[..]));
        assert_eq!(split_field(b"data"), (&b"data"[..], &b""[..]));
    }

    #[test]
    fn control_frames_have_the_documented_text() {
        assert_eq!(retry_frame(3000), Bytes::from("retry: 3000\n"));
        assert_eq!(
            heartbeat_frame(17, 1_709_573_400_000, 42),
            Bytes::from(
                "event: heartbeat\ndata: {\"ts\":17,\"market_ts\":1709573400000,\"seq\":42}\n\n"
            )
        );
        let snap = snapshot_frame(9, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
        assert_eq!(
            snap,
            Bytes::from("event: snapshot\nid: 9\ndata: [{\"a\":1},{\"b\":2}]\n\n")
        );
    }
}
