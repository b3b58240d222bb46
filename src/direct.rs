//! HTTP/1.1 SSE streams written straight to the socket.
//!
//! An SSE response is headers and then, for as long as the client stays, one chunk per
//! wake-up. Serving that through hyper costs about 19 KiB of buffers per connection and a trip
//! through its body machinery per write; at 10,000 clients that is most of the server's memory
//! and a good part of its CPU. So the accept loop reads each new connection's first request
//! head itself. A `GET /quotes...` over HTTP/1.1 that opens a stream is served here: the
//! response head once, then each chunk as one vectored write (chunk size line, the shared
//! frame bytes, CRLF), with nothing buffered per client. Everything else (other routes, errors,
//! HTTP/2, HTTP/1.0, requests with bodies) goes to hyper and warp along with the bytes already
//! read, so routing and error replies live in one place: [`crate::http`].
//!
//! The socket is plain TCP or HTTPS that negotiated `http/1.1` (anything `AsyncRead +
//! AsyncWrite`), so HTTP/1.1 over TLS keeps the same encode-once, cursor-only path. Each
//! write ends with a flush, which TLS needs to send what it encrypted and TCP ignores.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use warp::http::{HeaderName, HeaderValue, StatusCode};

use crate::auth::TokenSources;
use crate::http::quotes::{open_stream, SSE_HEADERS};
use crate::http::App;
use crate::stream::QuoteStream;

/// Largest request head read before handing the connection to hyper (which rejects it).
pub const MAX_HEAD: usize = 8 * 1024;

/// Most header fields in a request head, as hyper allows.
const MAX_HEADERS: usize = 100;

/// What the first request on a connection turned out to be.
#[derive(Debug)]
pub enum FirstRequest {
    /// An SSE stream, opened; the connection is served by [`serve_stream`] with these CORS
    /// header lines (for the request's `Origin`).
    Stream {
        stream: Box<QuoteStream>,
        cors: Vec<u8>,
    },
    /// Anything else: hyper serves the connection, starting with these bytes.
    Other(Bytes),
    /// The client closed or sent nothing in time.
    Gone,
}

/// Reads the first request head on `socket` (within `timeout`) and opens a stream if it asks
/// for one over HTTP/1.1.
///
/// Requests that cannot be answered at all (malformed, too large, incomplete at the deadline)
/// get their JSON error here and the connection is closed; so does a refused stream request,
/// whose connection then goes on to hyper for any further request. Either way hyper never
/// reads the head again, and the request's parameters are parsed once.
pub async fn first_request<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    app: &App,
    timeout: Duration,
) -> FirstRequest {
    let mut head = BytesMut::with_capacity(1024);
    let read_head = async {
        loop {
            if head_complete(&head) || head.len() >= MAX_HEAD {
                return true;
            }
            match socket.read_buf(&mut head).await {
                Ok(0) | Err(_) => return !head.is_empty(),
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout(timeout, read_head).await {
        Ok(true) => {}
        Ok(false) if head.is_empty() => return FirstRequest::Gone,
        // The client closed its side mid-head: it may still read the answer.
        Ok(false) => {}
        Err(_) => {
            app.feed
                .metrics()
                .connections_header_timed_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // No whole head in time (a byte, a dripped HTTP/2 preface): close. Handed to hyper,
            // its protocol detection would wait for the rest with no deadline. An HTTP/1 client
            // is told why first.
            if !head.is_empty() && !H2_PREFACE.starts_with(&head) {
                answer_and_close(socket, app, HeadError::Timeout).await;
            }
            return FirstRequest::Gone;
        }
    }
    match classify(&head) {
        // A simulator serves no streams: its routes answer 404.
        Head::Stream(_) if !app.serves_clients() => FirstRequest::Other(head.freeze()),
        Head::Stream(request) => {
            let tokens = TokenSources {
                authorization: request.authorization.as_deref(),
                query: None,
                cookie: request.cookie.as_deref(),
            };
            let cors = app.cors.head_lines(request.origin.as_deref());
            match open_stream(
                app,
                request.segment.as_deref(),
                &request.query,
                request.last_event_id.as_deref(),
                tokens,
            ) {
                Ok(stream) => FirstRequest::Stream {
                    stream: Box::new(stream),
                    cors,
                },
                Err(e) => {
                    let headers = e.extra_headers();
                    let body = e.body();
                    let written = write_error(socket, e.status(), &body, &cors, &headers);
                    match tokio::time::timeout(app.config.write_timeout(), written).await {
                        // Any further request on the connection is hyper's.
                        Ok(Ok(())) => FirstRequest::Other(Bytes::new()),
                        _ => FirstRequest::Gone,
                    }
                }
            }
        }
        Head::Other => FirstRequest::Other(head.freeze()),
        Head::Bad(error) => {
            answer_and_close(socket, app, error).await;
            FirstRequest::Gone
        }
    }
}

/// Answers a head no route can read with its JSON error and closes the connection, within the
/// write deadline.
async fn answer_and_close<S: AsyncWrite + Unpin>(socket: &mut S, app: &App, error: HeadError) {
    let cors = app.cors.head_lines(None);
    let _ = tokio::time::timeout(app.config.write_timeout(), async {
        write_error(socket, error.status(), &error.body(), &cors, &CLOSE).await?;
        socket.shutdown().await
    })
    .await;
}

/// The header of an answer after which the connection is closed.
const CLOSE: [(HeaderName, HeaderValue); 1] = [(
    warp::http::header::CONNECTION,
    HeaderValue::from_static("close"),
)];

/// What the first bytes of a connection are. Public for the fuzz targets.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A stream request this module serves.
    Stream(StreamRequest),
    /// A well-formed request (or the HTTP/2 preface) for hyper.
    Other,
    /// Bytes no request can be read from: answered here and closed.
    Bad(HeadError),
}

/// Why a first request head cannot be answered by any route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP: httparse's reason.
    Malformed(String),
    /// The client closed before the head was complete.
    Incomplete,
    /// The request line alone is longer than [`MAX_HEAD`].
    UriTooLong,
    /// The head is longer than [`MAX_HEAD`].
    TooLarge,
    /// No whole head within the header timeout.
    Timeout,
}

impl HeadError {
    /// The status of the error reply: always a 4xx.
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::Malformed(_) | HeadError::Incomplete => StatusCode::BAD_REQUEST,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The JSON body, in the shape of every other error reply.
    pub fn body(&self) -> Vec<u8> {
        let (code, message) = match self {
            HeadError::Malformed(why) => ("bad_request", format!("malformed request head: {why}")),
            HeadError::Incomplete => (
                "bad_request",
                "the connection closed before the request head was complete".to_owned(),
            ),
            HeadError::UriTooLong => (
                "uri_too_long",
                format!("the request line is longer than {MAX_HEAD} bytes"),
            ),
            HeadError::TooLarge => (
                "headers_too_large",
                format!("the request head is longer than {MAX_HEAD} bytes or has more than {MAX_HEADERS} fields"),
            ),
            HeadError::Timeout => (
                "request_timeout",
                "no whole request head arrived within the header timeout".to_owned(),
            ),
        };
        serde_json::to_vec(&crate::http::rejection::error_json(code, &message))
            .expect("a JSON object of strings serialises")
    }
}

/// Sorts the first bytes of a connection, read until a whole head, [`MAX_HEAD`] bytes or the
/// client closing. Public for the fuzz targets.
pub fn classify(head: &[u8]) -> Head {
    if head.starts_with(H2_PREFACE) {
        return Head::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Head::Bad(HeadError::TooLarge),
        Err(e) => return Head::Bad(HeadError::Malformed(e.to_string())),
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {
            return Head::Bad(HeadError::Incomplete)
        }
        Ok(httparse::Status::Partial) => {
            return Head::Bad(if memchr::memchr(b'\n', head).is_none() {
                HeadError::UriTooLong
            } else {
                HeadError::TooLarge
            })
        }
    }
    match parse_stream_request(head) {
        Some(request) => Head::Stream(request),
        None => Head::Other,
    }
}

/// Writes a whole JSON error response with the headers warp would give it (the CORS header
/// lines `cors`, `date`, and `extra` such as `retry-after`), as one write.
async fn write_error<S: AsyncWrite + Unpin>(
    socket: &mut S,
    status: StatusCode,
    body: &[u8],
    cors: &[u8],
    extra: &[(HeaderName, HeaderValue)],
) -> io::Result<()> {
    let mut response = Vec::with_capacity(256 + body.len());
    response.extend_from_slice(b"HTTP/1.1 ");
    response.extend_from_slice(status.as_str().as_bytes());
    response.push(b' ');
    response.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    response.extend_from_slice(b"\r\ncontent-type: application/json\r\n");
    for (name, value) in extra {
        response.extend_from_slice(name.as_str().as_bytes());
        response.extend_from_slice(b": ");
        response.extend_from_slice(value.as_bytes());
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(cors);
    response.extend_from_slice(b"content-length: ");
    response.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    response.extend_from_slice(b"\r\ndate: ");
    response.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    response.extend_from_slice(b"\r\n\r\n");
    response.extend_from_slice(body);
    socket.write_all(&response).await?;
    socket.flush().await
}

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `head` holds a whole request head as httparse reads it (CRLF or bare LF line
/// endings), the whole HTTP/2 preface, or bytes that can never become either (hyper will
/// answer them). Once true it stays true as more bytes arrive. Public for the fuzz targets.
pub fn head_complete(head: &[u8]) -> bool {
    if H2_PREFACE.starts_with(head) {
        return head.len() == H2_PREFACE.len();
    }
    if head.starts_with(H2_PREFACE) {
        return true;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    !matches!(
        httparse::Request::new(&mut headers).parse(head),
        Ok(httparse::Status::Partial)
    )
}

/// The parts of a stream request that decide what the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// `None` for `/quotes`, the symbol for `/quotes/{symbol}` (still percent-encoded).
    pub segment: Option<String>,
    /// The raw query string, without the `?`.
    pub query: String,
    /// The first `Last-Event-ID` header's value, as sent.
    pub last_event_id: Option<Vec<u8>>,
    /// The first `Origin` header's value, for the CORS allow-list.
    pub origin: Option<Vec<u8>>,
    /// The first `Authorization` and `Cookie` headers' values, where a token may be.
    pub authorization: Option<Vec<u8>>,
    pub cookie: Option<Vec<u8>>,
}

/// A `GET` over HTTP/1.1 to `/quotes` or `/quotes/{symbol}` with no body; `None` for anything
/// that hyper should handle. Public for the fuzz targets, which feed it arbitrary bytes.
pub fn parse_stream_request(head: &[u8]) -> Option<StreamRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(n)) if n == head.len()) {
        return None;
    }
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let target = request.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segment = match path.strip_prefix("/quotes")? {
        "" => None,
        rest => {
            let symbol = rest.strip_prefix('/')?;
            if symbol.is_empty() || symbol.contains('/') {
                return None;
            }
            Some(symbol.to_owned())
        }
    };
    let mut last_event_id = None;
    let (mut origin, mut authorization, mut cookie) = (None, None, None);
    for h in request.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") && h.value != b"0" {
            return None;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("upgrade") {
            return None;
        }
        // The first of each, as hyper's `HeaderMap::get` takes it on the other path.
        for (wanted, slot) in [
            ("last-event-id", &mut last_event_id),
            ("origin", &mut origin),
            ("authorization", &mut authorization),
            ("cookie", &mut cookie),
        ] {
            if name.eq_ignore_ascii_case(wanted) && slot.is_none() {
                *slot = Some(h.value.to_vec());
            }
        }
    }
    Some(StreamRequest {
        segment,
        query: query.to_owned(),
        last_event_id,
        origin,
        authorization,
        cookie,
    })
}

/// Writes the response head and then the stream's chunks until the stream ends (shutdown)
/// or the client goes away; ends the chunked body cleanly on shutdown. A client whose write
/// stays blocked for `write_timeout` (it stopped reading) is disconnected and counted, so it
/// cannot hold its `--max-clients` slot forever.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    mut stream: QuoteStream,
    cors: &[u8],
    write_timeout: Duration,
    metrics: &crate::metrics::Metrics,
) {
    let mut head = String::with_capacity(256);
    head.push_str("HTTP/1.1 200 OK\r\n");
    for (name, value) in SSE_HEADERS {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&String::from_utf8_lossy(cors));
    head.push_str("transfer-encoding: chunked\r\ndate: ");
    head.push_str(&httpdate::fmt_http_date(std::time::SystemTime::now()));
    head.push_str("\r\n\r\n");
    // TLS holds what it encrypts until a flush; plain TCP sends at once and ignores it.
    let sent = tokio::time::timeout(write_timeout, async {
        socket.write_all(head.as_bytes()).await?;
        socket.flush().await
    });
    if !matches!(sent.await, Ok(Ok(()))) {
        return;
    }
    let mut probe = [0u8; 64];
    loop {
        let chunk = tokio::select! {
            chunk = stream.next_chunk() => chunk,
            // The client has nothing to send after its request: a read completing means it
            // closed, which frees its slot without waiting for a write, or it sent more bytes
            // (a pipelined request, junk), which a stream cannot answer: close either way.
            _ = socket.read(&mut probe) => return,
        };
        let Some(chunk) = chunk else {
            // The end of the body (shutdown, or the token expired), under the same deadline:
            // a client that stopped reading must not keep its slot here either.
            let _ = tokio::time::timeout(write_timeout, async {
                socket.write_all(b"0\r\n\r\n").await?;
                socket.shutdown().await
            })
            .await;
            return;
        };
        let mut shutdown = stream.shutdown_signal();
        let write = tokio::time::timeout(write_timeout, write_chunk(&mut socket, chunk.parts));
        tokio::pin!(write);
        let written = tokio::select! {
            written = &mut write => written,
            // Shutdown during a write: a client that reads gets the rest of the chunk and then
            // the end of the body; one that does not read must not hold up shutdown.
            () = shutdown.wait() => match tokio::time::timeout(SHUTDOWN_WRITE_GRACE, &mut write).await {
                Ok(written) => written,
                Err(_) => return,
            },
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                metrics
                    .streams_evicted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    }
}

/// How long a write in progress when shutdown begins may take to finish, so that the stream
/// can still end with the last chunk (a clean end of body, not a cut connection).
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);

/// One HTTP chunk (`{len:x}\r\n{parts...}\r\n`) as vectored writes: the frame bytes are
/// shared, never copied.
async fn write_chunk<S: AsyncWrite + Unpin>(
    socket: &mut S,
    mut parts: Vec<Bytes>,
) -> io::Result<()> {
    let len = parts.iter().map(Bytes::len).sum();
    let mut size_line = [0u8; 18];
    let size_len = hex_size_line(len, &mut size_line);
    parts.insert(0, Bytes::copy_from_slice(&size_line[..size_len]));
    parts.push(Bytes::from_static(b"\r\n"));
    write_all_vectored(socket, &mut parts).await?;
    socket.flush().await
}

/// Writes every buffer in order, as few `writev` calls as the socket allows.
async fn write_all_vectored<S: AsyncWrite + Unpin>(
    socket: &mut S,
    bufs: &mut [Bytes],
) -> io::Result<()> {
    /// Buffers passed to one `writev`; far below the kernel's limit of 1024.
    const MAX_SLICES: usize = 64;
    let mut first = 0;
    while first < bufs.len() {
        let end = bufs.len().min(first + MAX_SLICES);
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        for (slice, buf) in slices.iter_mut().zip(&bufs[first..end]) {
            *slice = IoSlice::new(buf);
        }
        let mut written = socket.write_vectored(&slices[..end - first]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while first < bufs.len() && written >= bufs[first].len() {
            written -= bufs[first].len();
            first += 1;
        }
        if first < bufs.len() {
            bufs[first].advance(written);
        }
    }
    Ok(())
}

/// Writes `{len:x}\r\n` into `out`; returns its length.
fn hex_size_line(len: usize, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = ((usize::BITS - len.leading_zeros()).div_ceil(4)).max(1) as usize;
    for i in 0..digits {
        out[digits - 1 - i] = HEX[(len >> (4 * i)) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

/// A connection whose first bytes were already read: replays them before reading on, so hyper
/// sees the whole request.
#[derive(Debug)]
pub struct Prefixed<S = TcpStream> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_request_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_stream_request(&bytes);
            let mut head = b"GET /quotes?".to_vec();
            head.extend_from_slice(&bytes);
            head.extend_from_slice(b" HTTP/1.1\r\nLast-Event-ID: ");
            head.extend_from_slice(&bytes);
            head.extend_from_slice(b"\r\n\r\n");
            let _ = parse_stream_request(&head);
        }
    }

    #[test]
    fn size_lines_are_lower_hex() {
        let mut out = [0u8; 18];
        for (len, text) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
        ] {
            let n = hex_size_line(len, &mut out);
            assert_eq!(&out[..n], text.as_bytes());
        }
    }

    #[test]
    fn only_plain_http11_gets_to_quotes_are_taken() {
        let ok = parse_stream_request(
            b"GET /quotes?symbols=AAPL HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
        )
        .unwrap();
        assert_eq!(ok.segment, None);
        assert_eq!(ok.query, "symbols=AAPL");
        assert_eq!(ok.last_event_id.as_deref(), Some(&b"7"[..]));
        let one = parse_stream_request(b"GET /quotes/aapl HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(one.segment.as_deref(), Some("aapl"));
        for other in [
            &b"GET /quotes HTTP/1.0\r\n\r\n"[..],
            b"HEAD /quotes HTTP/1.1\r\n\r\n",
            b"POST /quotes HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"GET /quotesx HTTP/1.1\r\n\r\n",
            b"GET /quotes/ HTTP/1.1\r\n\r\n",
            b"GET /quotes/A/B HTTP/1.1\r\n\r\n",
            b"GET /symbols HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /quotes HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"\x00\x01garbage\r\n\r\n",
        ] {
            assert_eq!(
                parse_stream_request(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_stream_request_with_many_header_fields_is_still_served_here() {
        // classify accepts up to MAX_HEADERS fields; the stream parser used to stop at 32 and
        // sent such a request to hyper instead.
        let mut head = b"GET /quotes HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("x-field-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert!(matches!(classify(&head), Head::Stream(_)));
    }
}
