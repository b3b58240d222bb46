//! GET / and the dashboard's static files.
//!
//! The files of `web/` are built into the binary, so a copied binary serves the page anywhere;
//! `--web-dir` serves them from disk instead while the page is being edited. Either way a path
//! is looked up segment by segment and any segment that could leave the directory (`..`,
//! backslashes, NUL, hidden files) is refused, so nothing outside the web directory is served.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use include_dir::{include_dir, Dir};
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{read_only, with_app, App};

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// Where the files come from.
#[derive(Debug, Clone)]
pub enum Assets {
    /// The copy of `web/` built into the binary.
    Embedded,
    /// A directory on disk (`--web-dir`), canonicalised at start-up.
    Disk(PathBuf),
}

impl Assets {
    /// The files built into the binary, or `dir` if given.
    ///
    /// # Errors
    /// A directory that cannot be canonicalised.
    pub fn new(dir: Option<&Path>) -> std::io::Result<Assets> {
        Ok(match dir {
            Some(dir) => Assets::Disk(dir.canonicalize()?),
            None => Assets::Embedded,
        })
    }

    /// The contents of the file at the relative `path` ('/'-separated, already validated).
    async fn read(&self, path: &str) -> Option<Bytes> {
        match self {
            Assets::Embedded => EMBEDDED
                .get_file(path)
                .map(|f| Bytes::from_static(f.contents())),
            Assets::Disk(root) => {
                let full = root.join(path).canonicalize().ok()?;
                // Symlinks could still point outside: only serve what resolves inside.
                if !full.starts_with(root) || !full.is_file() {
                    return None;
                }
                tokio::fs::read(full).await.ok().map(Bytes::from)
            }
        }
    }
}

/// GET /{file} — `index.html` at `/`, and the other files of the web directory.
pub fn assets(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path::tail()
        .and(warp::header::headers_cloned())
        .and(with_app(app))
        .and_then(
            |tail: warp::path::Tail, headers: HeaderMap, app: App| async move {
                let path = relative_path(tail.as_str()).ok_or_else(not_found)?;
                let body = app.assets.read(&path).await.ok_or_else(not_found)?;
                Ok::<_, Rejection>((path, body, headers))
            },
        )
        .untuple_one()
        .and(read_only())
        .map(|path: String, body: Bytes, headers: HeaderMap| file_response(&path, body, &headers))
}

fn not_found() -> Rejection {
    warp::reject::not_found()
}

/// Decodes and validates a request path; `None` if it could escape the directory.
pub fn relative_path(tail: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(tail)
        .decode_utf8()
        .ok()?;
    if decoded.is_empty() {
        return Some("index.html".into());
    }
    let safe = decoded.split('/').all(|segment| {
        !segment.is_empty() && !segment.starts_with('.') && !segment.contains(['\\', '\0', ':'])
    });
    safe.then(|| decoded.into_owned())
}

/// The file, with its content type, `Cache-Control: no-cache` and an `ETag`, or 304 when the
/// browser's copy is current. Files are not fingerprinted, so browsers must revalidate; the ETag
/// makes that cheap.
fn file_response(path: &str, body: Bytes, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(&body));
    let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(body.into());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// FNV-1a: a fast, stable hash, good enough to tell file versions apart in an ETag.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "..",
            "../Cargo.toml",
            "a/../../x",
            "%2e%2e/x",
            "a//b",
            ".git/config",
            "a\\..\\b",
            "%00",
            "C:x",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
        assert_eq!(relative_path("").as_deref(), Some("index.html"));
        assert_eq!(relative_path("app.js").as_deref(), Some("app.js"));
    }

    #[test]
    fn embedded_dashboard_exists() {
        assert!(EMBEDDED.get_file("index.html").is_some());
        assert!(EMBEDDED.get_file("favicon.ico").is_some());
    }
}
