//! Incremental Server-Sent-Events parsing that does not allocate per event.
//!
//! Lines (ended by LF, CRLF or a lone CR) are read straight from the input slices; only a line
//! cut by the end of a read is copied, into a buffer reused for the connection's lifetime. An
//! event is dispatched at a blank line if it had at least one `data:` line, as EventSource does.
//! Only what the load generator needs is kept: the event name, a numeric `id`, and the epoch
//! `ts` of JSON-object data.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Longest line accepted (a snapshot of many quotes is one long `data:` line).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// A carried-over line buffer larger than this is freed after use.
const KEEP_CAPACITY: usize = 4 * 1024;

static TS_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ts\":"));

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` name, `message` when absent.
    pub name: &'a [u8],
    /// The event's own `id:` line, when it is a decimal integer.
    pub id: Option<u64>,
    /// The integer after the first `"ts":` when the data is a JSON object (starts with `{`).
    pub ts: Option<u64>,
}

/// Receives dispatched events.
pub trait Sink {
    fn event(&mut self, event: Event<'_>);
}

/// A line longer than [`MAX_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Parser state of one stream.
#[derive(Debug, Default)]
pub struct Parser {
    /// Start of a line cut by the end of the previous input.
    carry: Vec<u8>,
    /// The previous line ended with CR: a LF right after it belongs to it.
    skip_lf: bool,
    event: Pending,
}

/// Fields of the event being read.
#[derive(Debug, Default)]
struct Pending {
    name: Vec<u8>,
    id: Option<u64>,
    has_data: bool,
    object: bool,
    ts: Option<u64>,
}

impl Parser {
    /// Parses `input`, calling `sink` for each complete event.
    pub fn feed(&mut self, mut input: &[u8], sink: &mut impl Sink) -> Result<(), LineTooLong> {
        loop {
            if self.skip_lf {
                match input.first() {
                    None => return Ok(()),
                    Some(b'\n') => input = &input[1..],
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', input) else {
                if self.carry.len() + input.len() > MAX_LINE {
                    return Err(LineTooLong);
                }
                self.carry.extend_from_slice(input);
                return Ok(());
            };
            if self.carry.is_empty() {
                self.event.line(&input[..end], sink);
            } else {
                if self.carry.len() + end > MAX_LINE {
                    return Err(LineTooLong);
                }
                self.carry.extend_from_slice(&input[..end]);
                self.event.line(&self.carry, sink);
                self.carry.clear();
                if self.carry.capacity() > KEEP_CAPACITY {
                    self.carry = Vec::new();
                }
            }
            self.skip_lf = input[end] == b'\r';
            input = &input[end + 1..];
        }
    }
}

impl Pending {
    fn line(&mut self, line: &[u8], sink: &mut impl Sink) {
        if line.is_empty() {
            self.dispatch(sink);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = tickcast::sse::split_field(line);
        match field {
            b"data" => {
                if !self.has_data {
                    self.has_data = true;
                    self.object = value.trim_ascii_start().first() == Some(&b'{');
                }
                if self.object && self.ts.is_none() {
                    self.ts = find_ts(value);
                }
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            b"id" => self.id = parse_u64(value),
            _ => {}
        }
    }

    fn dispatch(&mut self, sink: &mut impl Sink) {
        if self.has_data {
            let name = if self.name.is_empty() {
                &b"message"[..]
            } else {
                &self.name
            };
            sink.event(Event {
                name,
                id: self.id,
                ts: self.ts,
            });
        }
        self.name.clear();
        self.id = None;
        self.has_data = false;
        self.object = false;
        self.ts = None;
    }
}

/// The integer value of the first `"ts":` key in `json`.
pub fn find_ts(json: &[u8]) -> Option<u64> {
    let at = TS_KEY.find(json)? + 5;
    let rest = json[at..].trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    parse_u64(&rest[..digits])
}

/// A plain decimal `u64` (no sign, no spaces).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        name: String,
        id: Option<u64>,
        ts: Option<u64>,
    }

    #[derive(Default)]
    struct Collect(Vec<Owned>);

    impl Sink for Collect {
        fn event(&mut self, e: Event<'_>) {
            self.0.push(Owned {
                name: String::from_utf8(e.name.to_vec()).unwrap(),
                id: e.id,
                ts: e.ts,
            });
        }
    }

    fn ev(name: &str, id: Option<u64>, ts: Option<u64>) -> Owned {
        Owned {
            name: name.into(),
            id,
            ts,
        }
    }

    fn parse_parts(parts: &[&[u8]]) -> Vec<Owned> {
        let mut parser = Parser::default();
        let mut sink = Collect::default();
        for p in parts {
            parser.feed(p, &mut sink).unwrap();
        }
        sink.0
    }

    const STREAM: &str = concat!(
        "retry: 3000\n\n",
        ": a comment\n",
        "event: snapshot\nid: 41\ndata: [{\"symbol\":\"A\",\"ts\":5}]\n\n",
        "event: quote\r\nid: 42\r\ndata: {\"symbol\":\"AAPL\",\"seq\":42,\"ts\":1732480000123,\"p\":1}\r\n\r\n",
        "event: heartbeat\rdata: {\"ts\": 1732480000200,\"seq\":42}\r\r",
        "data: first line\ndata: {\"ts\":9}\n\n",
        "data: {\"a\":1,\n:comment inside\ndata: \"ts\":77}\nid: x\n\n",
        "event: lonely\nid: 50\n\n",
        "data\n\n",
        "event: quote\nid: 43\ndata:{\"ts\":1732480000300}\n\n",
        "event: trailing\ndata: no blank line yet",
    );

    fn expected() -> Vec<Owned> {
        vec![
            ev("snapshot", Some(41), None),
            ev("quote", Some(42), Some(1732480000123)),
            ev("heartbeat", None, Some(1732480000200)),
            ev("message", None, None),
            ev("message", None, Some(77)),
            ev("message", None, None),
            ev("quote", Some(43), Some(1732480000300)),
        ]
    }

    #[test]
    fn parses_a_stream_in_one_piece() {
        assert_eq!(parse_parts(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn parses_a_stream_split_at_every_byte_position() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(
                parse_parts(&[&bytes[..cut], &bytes[cut..]]),
                expected(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn parses_a_stream_split_at_every_pair_of_positions() {
        let bytes = STREAM.as_bytes();
        for a in (0..=bytes.len()).step_by(3) {
            for b in a..=bytes.len() {
                assert_eq!(
                    parse_parts(&[&bytes[..a], &bytes[a..b], &bytes[b..]]),
                    expected(),
                    "cuts at {a} and {b}"
                );
            }
        }
    }

    #[test]
    fn parses_a_stream_one_byte_at_a_time() {
        let parts: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(parse_parts(&parts), expected());
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_end() {
        let got = parse_parts(&[b"data: {\"ts\":1}\r", b"\n\r", b"\ndata: x\r\n\r\n"]);
        assert_eq!(
            got,
            vec![ev("message", None, Some(1)), ev("message", None, None)]
        );
    }

    #[test]
    fn rejects_endless_lines() {
        let mut parser = Parser::default();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut sink = Collect::default();
        let mut result = Ok(());
        for _ in 0..=16 {
            result = parser.feed(&chunk, &mut sink);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(LineTooLong));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(find_ts(b"{\"ts\":  123,\"x\":1}"), Some(123));
        assert_eq!(find_ts(b"{\"ts\":\"123\"}"), None);
        assert_eq!(find_ts(b"{\"tss\":1}"), None);
    }
}
