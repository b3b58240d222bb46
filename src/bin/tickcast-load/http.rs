//! Incremental HTTP/1.1 response decoding without allocation per read: the status line and
//! headers, then the body framed by `Transfer-Encoding: chunked`, `Content-Length`, or the end
//! of the connection. Body bytes come out as slices of the input.

use std::fmt;

/// Longest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// What the status line and headers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// `Content-Type` is `text/event-stream`.
    pub event_stream: bool,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    UntilEof,
}

/// A response that is not HTTP/1.x as we understand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Length of the head in `buf` including the blank line that ends it (`\r\n\r\n` or `\n\n`),
/// or `None` while it is incomplete.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let nl = from + i;
        // The next line is empty if it is `\n` or `\r\n`.
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        from = nl + 1;
    }
    None
}

/// Parses a complete head (as delimited by [`head_len`]).
pub fn parse_head(head: &[u8]) -> Result<Head, ProtocolError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let version = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") {
        return Err(ProtocolError("not an HTTP/1.x response"));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.iter().all(u8::is_ascii_digit))
        .map(|s| s.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
        .ok_or(ProtocolError("bad status line"))?;
    let mut chunked = false;
    let mut length = None;
    let mut event_stream = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(ProtocolError("bad header line"));
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides; `chunked` must be it when present.
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(parse_dec(value).ok_or(ProtocolError("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            let mime = value.split(|&b| b == b';').next().unwrap_or_default();
            event_stream = mime.trim_ascii().eq_ignore_ascii_case(b"text/event-stream");
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilEof,
    };
    Ok(Head {
        status,
        framing,
        event_stream,
    })
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Decodes a body incrementally according to its framing.
#[derive(Debug, Clone)]
pub enum Body {
    Chunked(Chunked),
    Length(u64),
    UntilEof,
}

impl Body {
    pub fn new(framing: Framing) -> Body {
        match framing {
            Framing::Chunked => Body::Chunked(Chunked::default()),
            Framing::Length(n) => Body::Length(n),
            Framing::UntilEof => Body::UntilEof,
        }
    }

    /// Passes the body bytes in `input` to `out`; returns `true` once the body is complete
    /// (bytes after its end are ignored).
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut impl FnMut(&'a [u8]),
    ) -> Result<bool, ProtocolError> {
        match self {
            Body::Chunked(c) => c.decode(input, out),
            Body::Length(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                if n > 0 {
                    out(&input[..n]);
                }
                *left -= n as u64;
                Ok(*left == 0)
            }
            Body::UntilEof => {
                if !input.is_empty() {
                    out(input);
                }
                Ok(false)
            }
        }
    }
}

/// `Transfer-Encoding: chunked` decoder state.
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: ChunkState,
    /// Chunk size being parsed, then bytes of the chunk still to come.
    size: u64,
    digits: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the size.
    #[default]
    Size,
    /// After the digits: extensions and CR up to the LF.
    SizeRest,
    Data,
    /// CR LF after the data.
    DataEnd,
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Inside a non-empty trailer line.
    Trailer,
    /// `\r` of the blank line that ends the body.
    TrailerCr,
    Done,
}

impl Chunked {
    /// Like [`Body::decode`].
    pub fn decode<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut impl FnMut(&'a [u8]),
    ) -> Result<bool, ProtocolError> {
        while !input.is_empty() {
            if self.state == ChunkState::Data {
                let n = input
                    .len()
                    .min(usize::try_from(self.size).unwrap_or(usize::MAX));
                out(&input[..n]);
                input = &input[n..];
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataEnd;
                }
                continue;
            }
            let b = input[0];
            input = &input[1..];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.size > u64::MAX >> 4 || self.digits >= 16 {
                            return Err(ProtocolError("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self.size << 4 | u64::from(d);
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' | b'\r' => self.state = ChunkState::SizeRest,
                    b'\n' => self.end_size_line()?,
                    _ => return Err(ProtocolError("bad chunk size")),
                },
                ChunkState::SizeRest => {
                    if b == b'\n' {
                        self.end_size_line()?;
                    }
                }
                ChunkState::DataEnd => match b {
                    b'\r' => {}
                    b'\n' => {
                        self.state = ChunkState::Size;
                        self.size = 0;
                        self.digits = 0;
                    }
                    _ => return Err(ProtocolError("chunk data longer than its size")),
                },
                ChunkState::TrailerStart => match b {
                    b'\n' => self.state = ChunkState::Done,
                    b'\r' => self.state = ChunkState::TrailerCr,
                    _ => self.state = ChunkState::Trailer,
                },
                ChunkState::TrailerCr => match b {
                    b'\n' => self.state = ChunkState::Done,
                    _ => self.state = ChunkState::Trailer,
                },
                ChunkState::Trailer => {
                    if b == b'\n' {
                        self.state = ChunkState::TrailerStart;
                    }
                }
                ChunkState::Done => return Ok(true),
                ChunkState::Data => unreachable!("handled above"),
            }
        }
        Ok(self.state == ChunkState::Done)
    }

    fn end_size_line(&mut self) -> Result<(), ProtocolError> {
        if self.digits == 0 {
            return Err(ProtocolError("missing chunk size"));
        }
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` split at `cut`, returning the body and whether it completed.
    fn decode_split(
        body: &mut Body,
        input: &[u8],
        cut: usize,
    ) -> Result<(Vec<u8>, bool), ProtocolError> {
        let mut got = Vec::new();
        let mut done = false;
        for part in [&input[..cut], &input[cut..]] {
            done = body.decode(part, &mut |s| got.extend_from_slice(s))?;
        }
        Ok((got, done))
    }

    const CHUNKED: &[u8] =
        b"5\r\nhello\r\n1;ext=1\r\n \r\nB\r\nworld, SSE!\r\n0\r\nX-Trailer: 1\r\n\r\n";

    #[test]
    fn chunked_decodes_at_every_split() {
        for cut in 0..=CHUNKED.len() {
            let mut body = Body::new(Framing::Chunked);
            let (got, done) = decode_split(&mut body, CHUNKED, cut).unwrap();
            assert_eq!(got, b"hello world, SSE!", "cut at {cut}");
            assert!(done, "cut at {cut}");
        }
    }

    #[test]
    fn chunked_decodes_one_byte_at_a_time() {
        let mut body = Body::new(Framing::Chunked);
        let mut got = Vec::new();
        let mut done = false;
        for b in CHUNKED.chunks(1) {
            assert!(!done, "done before the end");
            done = body.decode(b, &mut |s| got.extend_from_slice(s)).unwrap();
        }
        assert!(done);
        assert_eq!(got, b"hello world, SSE!");
    }

    #[test]
    fn chunked_accepts_bare_lf_and_ignores_bytes_after_the_end() {
        let mut body = Body::new(Framing::Chunked);
        let mut got = Vec::new();
        let done = body
            .decode(b"3\nabc\n0\n\nGARBAGE", &mut |s| got.extend_from_slice(s))
            .unwrap();
        assert!(done);
        assert_eq!(got, b"abc");
    }

    #[test]
    fn chunked_is_not_done_mid_stream() {
        let mut body = Body::new(Framing::Chunked);
        let done = body.decode(b"a\r\n0123456789\r\n", &mut |_| {}).unwrap();
        assert!(!done);
    }

    #[test]
    fn chunked_rejects_garbage() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"3\r\nabcd\r\n",
            b"11111111111111111\r\n",
        ] {
            let mut body = Body::new(Framing::Chunked);
            assert!(body.decode(bad, &mut |_| {}).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn length_and_eof_bodies() {
        let mut body = Body::new(Framing::Length(4));
        let (got, done) = decode_split(&mut body, b"abcdef", 2).unwrap();
        assert_eq!((got.as_slice(), done), (&b"abcd"[..], true));
        let mut body = Body::new(Framing::UntilEof);
        let (got, done) = decode_split(&mut body, b"abcdef", 3).unwrap();
        assert_eq!((got.as_slice(), done), (&b"abcdef"[..], false));
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(head_len(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"), Some(25));
        assert_eq!(head_len(b"HTTP/1.1 200 OK\nA: b\n\nbody"), Some(22));
        assert_eq!(head_len(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(head_len(b"HTTP/1.1 200 OK\r\nA: b\r\n\r"), None);
    }

    #[test]
    fn parses_heads() {
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            head,
            Head {
                status: 200,
                framing: Framing::Chunked,
                event_stream: true
            }
        );
        let head =
            parse_head(b"HTTP/1.0 503 Busy\nContent-Length: 12\nContent-Type: text/plain\n\n")
                .unwrap();
        assert_eq!(
            head,
            Head {
                status: 503,
                framing: Framing::Length(12),
                event_stream: false
            }
        );
        let head =
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: TEXT/EVENT-STREAM\r\n\r\n").unwrap();
        assert_eq!(head.framing, Framing::UntilEof);
        assert!(head.event_stream);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
    }
}
