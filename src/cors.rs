//! The CORS allow-list (`--cors-origin`): which origins' pages may read responses, decided in
//! one place for the warp routes and the direct stream path alike.
//!
//! `*` (the default) answers `Access-Control-Allow-Origin: *` to everyone. A list of origins
//! echoes the request's `Origin` when it is on the list, with `Vary: Origin` so caches keep
//! the answers apart, and answers nothing for other origins, which the browser then blocks.
//! When tokens are on (they may come from the `tickcast_token` cookie) an echoed origin also
//! gets `Access-Control-Allow-Credentials: true`, so pages on it can send the cookie
//! (`new EventSource(url, {withCredentials: true})`); browsers never send credentials to `*`.

use warp::http::header::{ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, VARY};
use warp::http::{HeaderMap, HeaderName, HeaderValue};

/// An invalid `--cors-origin` list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    #[error("--cors-origin must list at least one origin, or be *")]
    Empty,
    #[error("--cors-origin: * allows every origin, so it must stand alone")]
    StarInList,
    #[error("--cors-origin: {0:?} is not an origin (scheme://host[:port], with no path)")]
    NotAnOrigin(String),
}

/// The allow-list, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// `*`: every origin, answered with `*`.
    any: bool,
    /// Allowed origins, lower-case (origins compare case-insensitively in scheme and host).
    origins: Vec<String>,
    /// Whether echoed origins get `Access-Control-Allow-Credentials: true`.
    credentials: bool,
}

impl Cors {
    /// Parses a comma-separated list of origins, or `*`. `credentials` is whether requests may
    /// carry credentials (a token cookie).
    ///
    /// # Errors
    /// An empty list, `*` among other entries, or an entry that is not `scheme://host[:port]`.
    pub fn parse(list: &str, credentials: bool) -> Result<Cors, CorsError> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries.iter().all(|e| e.is_empty()) {
            return Err(CorsError::Empty);
        }
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err(CorsError::StarInList);
            }
            return Ok(Cors {
                any: true,
                origins: Vec::new(),
                credentials,
            });
        }
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            if !is_origin(entry) {
                return Err(CorsError::NotAnOrigin(entry.chars().take(100).collect()));
            }
            origins.push(entry.to_ascii_lowercase());
        }
        Ok(Cors {
            any: false,
            origins,
            credentials,
        })
    }

    /// The CORS headers of a response to a request with this `Origin` header (if any).
    pub fn headers(&self, origin: Option<&[u8]>) -> Vec<(HeaderName, HeaderValue)> {
        if self.any {
            return vec![(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"))];
        }
        let mut headers = vec![(VARY, HeaderValue::from_static("origin"))];
        let allowed = origin.filter(|o| {
            self.origins
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(o))
        });
        if let Some(value) = allowed.and_then(|o| HeaderValue::from_bytes(o).ok()) {
            headers.push((ACCESS_CONTROL_ALLOW_ORIGIN, value));
            if self.credentials {
                headers.push((
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                ));
            }
        }
        headers
    }

    /// Adds the CORS headers for a request with this `Origin` to `response`.
    pub fn apply(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        for (name, value) in self.headers(origin.map(HeaderValue::as_bytes)) {
            if name == VARY {
                response.append(name, value);
            } else {
                response.insert(name, value);
            }
        }
    }

    /// The CORS headers as response-head lines (`name: value\r\n`), for the direct path.
    pub fn head_lines(&self, origin: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        for (name, value) in self.headers(origin) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// `scheme://host[:port]` as a browser serialises an origin: a scheme of letters, digits, `+`,
/// `-` and `.` starting with a letter; a non-empty host of letters, digits, `-`, `.`, `_` and `~`
/// (or a bracketed IPv6 address); an optional port of 1 to 65535; no path, query or user.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return false;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => ("v6", None),
            p => match p.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && {
            let n: u32 = p.parse().unwrap_or(0);
            (1..=65535).contains(&n)
        }
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(headers: &[(HeaderName, HeaderValue)]) -> Vec<String> {
        headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn origins_are_validated() {
        for good in [
            "http://localhost:3000",
            "https://example.com",
            "http://127.0.0.1:1",
            "http://[::1]:8080",
            "app+x://a.b",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "",
            "localhost:3000",
            "http://",
            "http://a/",
            "http://a/path",
            "http://a:0",
            "http://a:99999",
            "http://a:",
            "http://u@a",
            "http://a?x",
            "1http://a",
            "http://[zz]:1",
            "http://a b",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        assert_eq!(Cors::parse(" , ", false), Err(CorsError::Empty));
        assert_eq!(Cors::parse("*,http://a", false), Err(CorsError::StarInList));
        assert!(matches!(
            Cors::parse("http://a,b", false),
            Err(CorsError::NotAnOrigin(e)) if e == "b"
        ));
    }

    #[test]
    fn listed_origins_are_echoed_and_others_get_nothing() {
        let star = Cors::parse("*", true).unwrap();
        assert_eq!(
            names(&star.headers(Some(b"http://x"))),
            ["access-control-allow-origin: *"]
        );
        let list = Cors::parse("http://a:1, HTTPS://B.example", false).unwrap();
        assert_eq!(
            names(&list.headers(Some(b"https://b.example"))),
            [
                "vary: origin",
                "access-control-allow-origin: https://b.example"
            ]
        );
        assert_eq!(names(&list.headers(Some(b"http://a:2"))), ["vary: origin"]);
        assert_eq!(names(&list.headers(None)), ["vary: origin"]);
        let creds = Cors::parse("http://a:1", true).unwrap();
        assert_eq!(
            names(&creds.headers(Some(b"http://a:1"))),
            [
                "vary: origin",
                "access-control-allow-origin: http://a:1",
                "access-control-allow-credentials: true"
            ]
        );
        assert_eq!(
            String::from_utf8(creds.head_lines(Some(b"http://a:1"))).unwrap(),
            "vary: origin\r\naccess-control-allow-origin: http://a:1\r\naccess-control-allow-credentials: true\r\n"
        );
    }
}
