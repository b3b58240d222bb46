//! The direct path's request-head reader: whatever bytes a client sends first, deciding whether
//! the head is complete, what it is and whether it asks for a stream never panics, and the
//! answers agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::direct::{
    classify, head_complete, parse_stream_request, Head, HeadError, StreamRequest, MAX_HEAD,
};

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
    check_classify(data, complete);
    // The reader also stops at MAX_HEAD bytes, longer than libFuzzer's inputs usually are:
    // the same bytes repeated past it reach those paths.
    if !data.is_empty() && data.len() < 256 {
        let long = data.repeat(MAX_HEAD / data.len() + 1);
        check_classify(&long, head_complete(&long));
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

/// What the reader does with `data` once it stops reading (a whole head, [`MAX_HEAD`] bytes or
/// the client closing) agrees with the two parsers, and an error reply is a 4xx JSON body.
fn check_classify(data: &[u8], complete: bool) {
    match classify(data) {
        Head::Stream(request) => {
            assert_eq!(parse_stream_request(data).as_ref(), Some(&request));
        }
        Head::Other => assert!(complete && parse_stream_request(data).is_none()),
        Head::Bad(error) => {
            assert!(parse_stream_request(data).is_none());
            match error {
                HeadError::Incomplete => assert!(!complete && data.len() < MAX_HEAD),
                HeadError::UriTooLong => assert!(!complete && !data.contains(&b'\n')),
                HeadError::Timeout => panic!("classify never times out"),
                // A client that closed mid-preface of HTTP/2 gets an HTTP/1 error it ignores.
                HeadError::Malformed(_) | HeadError::TooLarge => {
                    assert!(
                        complete
                            || data.len() >= MAX_HEAD
                            || b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".starts_with(data),
                        "{data:?}"
                    )
                }
            }
            assert!(error.status().is_client_error());
            let body: serde_json::Value =
                serde_json::from_slice(&error.body()).expect("the error body is JSON");
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{body}"
            );
        }
    }
}

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
