//! The direct path's request-head reader: whatever bytes a client sends first, deciding whether
//! the head is complete and whether it asks for a stream never panics, and the answers agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::direct::{head_complete, parse_stream_request, StreamRequest};

fuzz_target!(|data: &[u8]| {
    let complete = head_complete(data);
    if complete {
        // More bytes never make a complete head incomplete (the reader stops at the first
        // complete one).
        for tail in [&b"\r\n"[..], b"x", b"\r\n\r\n", data] {
            let longer = [data, tail].concat();
            assert!(
                head_complete(&longer),
                "complete head lost by appending {tail:?}"
            );
        }
    }
    if let Some(request) = parse_stream_request(data) {
        assert!(complete, "a stream request is a complete head");
        if let Some(segment) = &request.segment {
            assert!(!segment.is_empty() && !segment.contains('/'), "{segment:?}");
        }
        // Rendering the request again and parsing it gives the same request.
        let again = render(&request);
        assert_eq!(
            parse_stream_request(&again).as_ref(),
            Some(&request),
            "{again:?}"
        );
    }
    // The same bytes as the query and the Last-Event-ID of an otherwise valid stream request.
    let mut head = b"GET /quotes?".to_vec();
    head.extend_from_slice(data);
    head.extend_from_slice(b" HTTP/1.1\r\nLast-Event-ID: ");
    head.extend_from_slice(data);
    head.extend_from_slice(b"\r\n\r\n");
    if let Some(request) = parse_stream_request(&head) {
        assert!(head_complete(&head));
        assert_eq!(request.segment, None);
    }
});

fn render(request: &StreamRequest) -> Vec<u8> {
    let mut head = b"GET /quotes".to_vec();
    if let Some(segment) = &request.segment {
        head.push(b'/');
        head.extend_from_slice(segment.as_bytes());
    }
    if !request.query.is_empty() {
        head.push(b'?');
        head.extend_from_slice(request.query.as_bytes());
    }
    head.extend_from_slice(b" HTTP/1.1\r\nHost: fuzz\r\n");
    if let Some(id) = &request.last_event_id {
        head.extend_from_slice(b"Last-Event-ID: ");
        head.extend_from_slice(id);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}
