//! Everything that knows Redis: keys, scripts, and how a batch lies in a stream entry.
//!
//! A feed named `F` lives in four keys, all with the hash tag `{tickcast:F}` so that a Redis
//! Cluster keeps them in one slot (a Lua script may only touch one):
//! - `…:stream`: one entry per batch, id `<last seq>-0`, so the stream id *is* the sequence
//!   and `XREAD` from an edge's newest seq gives exactly what follows, in order. Fields: `e`
//!   the run identity (epoch), `f` first seq, `b` the encoded frames, `x` the frame index,
//!   `c` the market clock after the batch, `u` the publish time (epoch µs).
//! - `…:meta`: a hash: `epoch`, `writer` (the registered simulator), `first` and `last` seq of
//!   the run, and what an edge needs to build the same bar history (`seed`, `market_start`,
//!   `history_days`, `symbols`), plus `clock`.
//! - `…:latest`: a hash of the latest frame of each symbol and kind (`<symbol>:<kind>`), as of
//!   `last`: what a snapshot needs when the stream no longer holds a quiet symbol's last quote,
//!   and what a restarted simulator continues its prices from.
//! - `…:lease`: the registered simulator's id, expiring after [`LEASE`] unless renewed: a dead
//!   simulator frees the feed, a live one keeps it.
//!
//! Every append goes through one Lua script that fences: it refuses a writer that is not the
//! registered one, a run identity that is not the stream's, and a first seq that is not the
//! stream's last + 1, so a second simulator started by mistake can never interleave.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult, Script, Value};

use crate::feed::Restored;
use crate::market::clock::ClockAnchor;
use crate::market::Kind;
use crate::sse::{Batch, FrameIndex};

/// How long a simulator's claim on a feed lasts unless renewed: a simulator killed without a
/// chance to say so frees the feed after this; a restarted one waits at most this long.
pub const LEASE: Duration = Duration::from_secs(2);

/// Longest wait for a connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the answer to an ordinary command.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks that `url` is a Redis URL, without connecting.
///
/// # Errors
/// What is wrong with it, in one line.
pub fn check_url(url: &str) -> Result<(), String> {
    let schemes = ["redis://", "rediss://", "unix://"];
    if !schemes.iter().any(|s| url.starts_with(s)) {
        return Err(format!("{url:?} does not start with redis:// or rediss://"));
    }
    Client::open(url).map(|_| ()).map_err(|e| e.to_string())
}

/// A client for `url` (checked by [`check_url`] at start-up). A `rediss://` URL connects with
/// TLS (rustls), verifying the server against `ca` (PEM) if given, else the system's store.
///
/// # Errors
/// An invalid URL or CA certificate.
pub fn client(url: &str, ca: Option<Vec<u8>>) -> RedisResult<Client> {
    match ca {
        Some(root_cert) => Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        None => Client::open(url),
    }
}

/// The client of a node's `--redis` and `--redis-ca`.
///
/// # Errors
/// The URL or the CA file cannot be used (both were checked at start-up).
pub fn client_for(config: &crate::config::Config) -> Result<Client, super::ClusterError> {
    let url = config.redis.clone().unwrap_or_default();
    let ca = config
        .redis_ca_pem()
        .map_err(|problem| super::ClusterError::RedisCa {
            path: config.redis_ca.clone().unwrap_or_default(),
            problem,
        })?;
    client(&url, ca).map_err(|source| super::ClusterError::Redis {
        url: redacted(&url),
        source,
    })
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

/// A connection whose every answer must come within `response`: [`RESPONSE_TIMEOUT`] for
/// ordinary commands, longer than the block time for a blocking read (redis-rs times out
/// answers after 500 ms by default, which a blocking `XREAD` would always hit).
///
/// # Errors
/// Redis cannot be reached in time.
pub async fn connect(client: &Client, response: Duration) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The keys of one feed.
#[derive(Debug, Clone)]
pub struct Keys {
    pub feed: String,
    stream: String,
    meta: String,
    latest: String,
    lease: String,
}

impl Keys {
    pub fn new(feed: &str) -> Keys {
        let tag = format!("{{tickcast:{feed}}}");
        Keys {
            feed: feed.to_owned(),
            stream: format!("{tag}:stream"),
            meta: format!("{tag}:meta"),
            latest: format!("{tag}:latest"),
            lease: format!("{tag}:lease"),
        }
    }
}

/// What a fresh run writes into a feed's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub seed: u64,
    pub market_start: i64,
    pub history_days: usize,
    /// The symbol names, comma-separated: edges check that theirs are the same.
    pub symbols: String,
}

/// A feed's metadata, as read from Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub epoch: String,
    pub writer: String,
    pub first: u64,
    pub last: u64,
    pub run: RunInfo,
    pub clock: Option<ClockAnchor>,
}

/// The answer to a simulator's registration.
#[derive(Debug)]
pub enum Registered {
    /// Another simulator holds the lease.
    Busy(String),
    /// Redis held no such feed: this simulator starts a run, with this epoch.
    Fresh,
    /// A run exists: continue it after `meta.last`, from the latest state.
    Continue(Meta, Vec<Restored>),
}

/// Registers `writer` as the feed's simulator if no live one holds it; creates the feed
/// (epoch `epoch`, starting at `first_seq`) if Redis holds none.
const REGISTER: &str = r"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {'busy', holder} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'writer', ARGV[1], 'first', ARGV[4],
    'last', ARGV[5], 'seed', ARGV[6], 'market_start', ARGV[7], 'history_days', ARGV[8],
    'symbols', ARGV[9])
  local n = tonumber(ARGV[10])
  if n > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, 11, 10 + n)) end
  return {'fresh'}
end
redis.call('HSET', KEYS[1], 'writer', ARGV[1])
return {'continue'}
";

/// Appends one batch if `writer` is the registered simulator, `epoch` the stream's and
/// `prev` its last seq; trims the stream by seq, updates the latest state, renews the lease.
const APPEND: &str = r"
local meta = redis.call('HMGET', KEYS[2], 'writer', 'epoch', 'last')
if not meta[2] then return {'nometa'} end
if meta[1] ~= ARGV[1] then return {'fenced', meta[1] or ''} end
if meta[2] ~= ARGV[2] then return {'epoch', meta[2]} end
if meta[3] ~= ARGV[3] then return {'seq', meta[3]} end
local n = tonumber(ARGV[8])
redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[5], ARGV[4] .. '-0', unpack(ARGV, 9, 8 + n))
if #ARGV > 8 + n then redis.call('HSET', KEYS[3], unpack(ARGV, 9 + n, #ARGV)) end
redis.call('HSET', KEYS[2], 'last', ARGV[4], 'clock', ARGV[7])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[6])
return {'ok'}
";

/// Renews the lease if `writer` is still the registered simulator.
const RENEW: &str = r"
local meta = redis.call('HMGET', KEYS[1], 'writer', 'epoch')
if not meta[2] then return {'nometa'} end
if meta[1] ~= ARGV[1] then return {'fenced', meta[1] or ''} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'ok'}
";

/// Why an append or a renewal was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Redis holds no metadata for the feed: it lost its data.
    #[error("the feed's metadata is gone")]
    NoMeta,
    #[error("simulator {0} holds the feed")]
    Fenced(String),
    #[error("the stream belongs to run {0}")]
    Epoch(String),
    #[error("the stream ends at {0}")]
    Seq(String),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// A new run identity: unique enough that two runs never share one.
pub fn new_epoch() -> String {
    format!(
        "{:x}-{:016x}",
        crate::publisher::epoch_ms(),
        rand::random::<u64>()
    )
}

/// Registers `writer`; a fresh feed starts at `first_seq` with `run` and `latest`.
///
/// # Errors
/// Redis fails.
pub async fn register(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    writer: &str,
    epoch: &str,
    first_seq: u64,
    run: &RunInfo,
    latest: &[(String, Vec<u8>)],
) -> RedisResult<Registered> {
    let script = Script::new(REGISTER);
    let mut invocation = script.key(&keys.meta);
    invocation
        .key(&keys.lease)
        .key(&keys.latest)
        .key(&keys.stream)
        .arg(writer)
        .arg(LEASE.as_millis() as u64)
        .arg(epoch)
        .arg(first_seq)
        .arg(first_seq - 1)
        .arg(run.seed)
        .arg(run.market_start)
        .arg(run.history_days)
        .arg(&run.symbols)
        .arg(latest.len() * 2);
    for (field, value) in latest {
        invocation.arg(field).arg(value.as_slice());
    }
    let answer: Vec<String> = invocation.invoke_async(con).await?;
    match answer.first().map(String::as_str) {
        Some("busy") => Ok(Registered::Busy(answer.get(1).cloned().unwrap_or_default())),
        Some("fresh") => Ok(Registered::Fresh),
        _ => match read_state(con, keys).await? {
            Some((meta, latest)) => Ok(Registered::Continue(meta, latest)),
            // Gone between the two calls (Redis flushed): start afresh next time.
            None => Ok(Registered::Busy(String::new())),
        },
    }
}

/// One batch to append.
#[derive(Debug)]
pub struct Append<'a> {
    pub writer: &'a str,
    pub epoch: &'a str,
    pub batch: &'a Batch,
    pub clock: ClockAnchor,
    pub published_us: u64,
    /// Events the stream keeps.
    pub retention: u64,
    /// The latest frame of each symbol and kind the batch touches: `(field, value)`.
    pub latest: &'a [(String, Vec<u8>)],
}

/// Appends a batch through the fencing script.
///
/// # Errors
/// A refusal, or Redis fails.
pub async fn append(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    a: &Append<'_>,
) -> Result<(), AppendError> {
    let batch = a.batch;
    let last = batch.last_seq();
    let minid = last.saturating_sub(a.retention).max(1);
    let script = Script::new(APPEND);
    let mut invocation = script.key(&keys.stream);
    invocation
        .key(&keys.meta)
        .key(&keys.latest)
        .key(&keys.lease)
        .arg(a.writer)
        .arg(a.epoch)
        .arg(batch.first_seq - 1)
        .arg(last)
        .arg(format!("{minid}-0"))
        .arg(LEASE.as_millis() as u64)
        .arg(clock_text(&a.clock))
        .arg(12)
        .arg("e")
        .arg(a.epoch)
        .arg("f")
        .arg(batch.first_seq)
        .arg("b")
        .arg(&batch.bytes[..])
        .arg("x")
        .arg(encode_index(&batch.frames))
        .arg("c")
        .arg(clock_text(&a.clock))
        .arg("u")
        .arg(a.published_us);
    for (field, value) in a.latest {
        invocation.arg(field).arg(value.as_slice());
    }
    let answer: Vec<String> = invocation.invoke_async(con).await?;
    refusal(&answer)
}

/// Renews `writer`'s lease.
///
/// # Errors
/// A refusal, or Redis fails.
pub async fn renew(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    writer: &str,
) -> Result<(), AppendError> {
    let answer: Vec<String> = Script::new(RENEW)
        .key(&keys.meta)
        .key(&keys.lease)
        .arg(writer)
        .arg(LEASE.as_millis() as u64)
        .invoke_async(con)
        .await?;
    refusal(&answer)
}

fn refusal(answer: &[String]) -> Result<(), AppendError> {
    let detail = || answer.get(1).cloned().unwrap_or_default();
    match answer.first().map(String::as_str) {
        Some("ok") => Ok(()),
        Some("nometa") => Err(AppendError::NoMeta),
        Some("fenced") => Err(AppendError::Fenced(detail())),
        Some("epoch") => Err(AppendError::Epoch(detail())),
        _ => Err(AppendError::Seq(detail())),
    }
}

/// The field and value of a latest-state entry: the frame, after its seq and the JSON's
/// range inside it (so that nothing needs to parse the frame again).
pub fn latest_entry(batch: &Batch, i: usize) -> (String, Vec<u8>) {
    let f = &batch.frames[i];
    let mut value = Vec::with_capacity(16 + (f.end - f.start) as usize);
    value.extend_from_slice(&(batch.first_seq + i as u64).to_le_bytes());
    value.extend_from_slice(&(f.json_start - f.start).to_le_bytes());
    value.extend_from_slice(&(f.json_end - f.start).to_le_bytes());
    value.extend_from_slice(&batch.bytes[f.start as usize..f.end as usize]);
    (format!("{}:{}", f.symbol, f.kind as u8), value)
}

/// A latest-state entry read back; `None` if it is not one.
fn restored(field: &[u8], value: Vec<u8>) -> Option<Restored> {
    let field = std::str::from_utf8(field).ok()?;
    let (symbol, kind) = field.split_once(':')?;
    let symbol: u16 = symbol.parse().ok()?;
    let kind = *Kind::ALL.get(kind.parse::<usize>().ok()?)?;
    if value.len() < 16 {
        return None;
    }
    let seq = u64::from_le_bytes(value[..8].try_into().ok()?);
    let json_start = u32::from_le_bytes(value[8..12].try_into().ok()?) as usize;
    let json_end = u32::from_le_bytes(value[12..16].try_into().ok()?) as usize;
    let frame = Bytes::from(value).slice(16..);
    if !(json_start <= json_end && json_end <= frame.len()) {
        return None;
    }
    Some(Restored {
        symbol,
        kind,
        seq,
        json: frame.slice(json_start..json_end),
        frame,
    })
}

/// The feed's metadata and latest state, read together (one transaction, so the state is
/// exactly as of `meta.last`); `None` if Redis holds no such feed.
///
/// # Errors
/// Redis fails.
pub async fn read_state(
    con: &mut MultiplexedConnection,
    keys: &Keys,
) -> RedisResult<Option<(Meta, Vec<Restored>)>> {
    type Fields = Vec<(String, String)>;
    type Frames = Vec<(Vec<u8>, Vec<u8>)>;
    let (meta, latest): (Fields, Frames) = redis::pipe()
        .atomic()
        .cmd("HGETALL")
        .arg(&keys.meta)
        .cmd("HGETALL")
        .arg(&keys.latest)
        .query_async(con)
        .await?;
    let Some(meta) = parse_meta(&meta) else {
        return Ok(None);
    };
    let latest = latest
        .into_iter()
        .filter_map(|(field, value)| restored(&field, value))
        .collect();
    Ok(Some((meta, latest)))
}

fn parse_meta(fields: &[(String, String)]) -> Option<Meta> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    };
    Some(Meta {
        epoch: get("epoch")?.to_owned(),
        writer: get("writer").unwrap_or_default().to_owned(),
        first: get("first")?.parse().ok()?,
        last: get("last")?.parse().ok()?,
        run: RunInfo {
            seed: get("seed")?.parse().ok()?,
            market_start: get("market_start")?.parse().ok()?,
            history_days: get("history_days")?.parse().ok()?,
            symbols: get("symbols")?.to_owned(),
        },
        clock: get("clock").and_then(parse_clock),
    })
}

/// What an edge checks when nothing new arrives: the run identity, the stream's end, and
/// whether a simulator holds the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub epoch: Option<String>,
    pub last: Option<u64>,
    pub writer_alive: bool,
}

/// Reads the [`Probe`].
///
/// # Errors
/// Redis fails.
pub async fn probe(con: &mut MultiplexedConnection, keys: &Keys) -> RedisResult<Probe> {
    let ((epoch, last), lease): ((Option<String>, Option<String>), Option<String>) = redis::pipe()
        .cmd("HMGET")
        .arg(&keys.meta)
        .arg("epoch")
        .arg("last")
        .cmd("GET")
        .arg(&keys.lease)
        .query_async(con)
        .await?;
    Ok(Probe {
        epoch,
        last: last.and_then(|l| l.parse().ok()),
        writer_alive: lease.is_some(),
    })
}

/// One stream entry, decoded.
#[derive(Debug, Clone)]
pub struct Entry {
    pub epoch: String,
    pub batch: Batch,
    pub clock: Option<ClockAnchor>,
    pub published_us: u64,
}

/// Entries whose batches end at or after `from_seq`, at most `count`.
///
/// # Errors
/// Redis fails.
pub async fn range(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    from_seq: u64,
    count: usize,
) -> RedisResult<Vec<Result<Entry, String>>> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(&keys.stream)
        .arg(format!("{from_seq}-0"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(con)
        .await?;
    Ok(entries(reply))
}

/// Entries after `after_seq`, waiting up to `block` for the first; empty if none came.
/// Use a connection whose response timeout is longer than `block`.
///
/// # Errors
/// Redis fails.
pub async fn read_after(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    after_seq: u64,
    block: Duration,
    count: usize,
) -> RedisResult<Vec<Result<Entry, String>>> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block.as_millis() as u64)
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(format!("{after_seq}-0"))
        .query_async(con)
        .await?;
    // [[key, entries]] (RESP2) or {key: entries} (RESP3); nil on timeout.
    let entries_of = match reply {
        Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
            Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
            _ => None,
        },
        Value::Map(mut streams) if !streams.is_empty() => Some(streams.swap_remove(0).1),
        _ => None,
    };
    Ok(entries_of.map(entries).unwrap_or_default())
}

/// Decodes `[[id, [field, value, ...]], ...]`.
fn entries(reply: Value) -> Vec<Result<Entry, String>> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Array(mut pair) if pair.len() == 2 => {
                let fields = pair.pop().unwrap_or(Value::Nil);
                let id = pair.pop().unwrap_or(Value::Nil);
                decode_entry(&text(&id).unwrap_or_default(), fields)
            }
            other => Err(format!("not a stream entry: {other:?}")),
        })
        .collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn decode_entry(id: &str, fields: Value) -> Result<Entry, String> {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = match fields {
        Value::Array(values) => {
            let mut pairs = Vec::with_capacity(values.len() / 2);
            let mut it = values.into_iter();
            while let (Some(Value::BulkString(f)), Some(Value::BulkString(v))) =
                (it.next(), it.next())
            {
                pairs.push((f, v));
            }
            pairs
        }
        Value::Map(values) => values
            .into_iter()
            .filter_map(|(f, v)| match (f, v) {
                (Value::BulkString(f), Value::BulkString(v)) => Some((f, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut epoch = None;
    let mut first = None;
    let mut bytes = None;
    let mut index = None;
    let mut clock = None;
    let mut published_us = 0;
    for (f, v) in pairs {
        let as_text = || String::from_utf8(v.clone()).unwrap_or_default();
        match f.as_slice() {
            b"e" => epoch = Some(as_text()),
            b"f" => first = as_text().parse::<u64>().ok(),
            b"b" => bytes = Some(Bytes::from(v)),
            b"x" => index = Some(v),
            b"c" => clock = parse_clock(&as_text()),
            b"u" => published_us = as_text().parse().unwrap_or(0),
            _ => {}
        }
    }
    let bad = |what: &str| format!("stream entry {id}: {what}");
    let first = first.ok_or_else(|| bad("no first seq"))?;
    let frames = decode_index(&index.ok_or_else(|| bad("no frame index"))?)
        .ok_or_else(|| bad("bad frame index"))?;
    let batch = Batch::from_parts(first, bytes.ok_or_else(|| bad("no bytes"))?, frames)
        .map_err(|e| bad(&e.to_string()))?;
    let id_seq = id.split('-').next().and_then(|s| s.parse::<u64>().ok());
    if id_seq != Some(batch.last_seq()) {
        return Err(bad("id is not the batch's last seq"));
    }
    Ok(Entry {
        epoch: epoch.ok_or_else(|| bad("no epoch"))?,
        batch,
        clock,
        published_us,
    })
}

/// Bytes of one frame in the packed index.
const INDEX_ENTRY: usize = 19;

/// The frame index as 19 bytes a frame: symbol (u16), kind (u8), then frame start and end and
/// JSON start and end (u32 each), little-endian.
fn encode_index(frames: &[FrameIndex]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len() * INDEX_ENTRY);
    for f in frames {
        out.extend_from_slice(&f.symbol.to_le_bytes());
        out.push(f.kind as u8);
        for n in [f.start, f.end, f.json_start, f.json_end] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out
}

fn decode_index(bytes: &[u8]) -> Option<Vec<FrameIndex>> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY) {
        return None;
    }
    bytes
        .chunks_exact(INDEX_ENTRY)
        .map(|c| {
            let u32_at = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            Some(FrameIndex {
                symbol: u16::from_le_bytes([c[0], c[1]]),
                kind: *Kind::ALL.get(c[2] as usize)?,
                start: u32_at(3),
                end: u32_at(7),
                json_start: u32_at(11),
                json_end: u32_at(15),
            })
        })
        .collect()
}

fn clock_text(c: &ClockAnchor) -> String {
    format!("{} {} {}", c.market_ms, c.speed, c.until_ms)
}

fn parse_clock(text: &str) -> Option<ClockAnchor> {
    let mut parts = text.split(' ');
    let clock = ClockAnchor {
        market_ms: parts.next()?.parse().ok()?,
        speed: parts.next()?.parse().ok()?,
        until_ms: parts.next()?.parse().ok()?,
    };
    Some(clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_hide_the_password() {
        assert_eq!(
            redacted("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(
            redacted("rediss://app:s3cret@redis.example:6380/0"),
            "rediss://app:***@redis.example:6380/0"
        );
        assert_eq!(redacted("redis://:s3cret@h"), "redis://:***@h");
        assert_eq!(redacted("no scheme"), "no scheme");
    }

    #[test]
    fn tls_urls_are_accepted() {
        assert!(check_url("rediss://127.0.0.1:6380").is_ok());
        assert!(check_url("redis://127.0.0.1:6379/1").is_ok());
        assert!(check_url("http://127.0.0.1").is_err());
    }

    #[test]
    fn the_frame_index_and_latest_entries_read_back() {
        let frames = vec![
            FrameIndex {
                symbol: 3,
                kind: Kind::Trade,
                start: 0,
                end: 40,
                json_start: 20,
                json_end: 38,
            },
            FrameIndex {
                symbol: u16::MAX,
                kind: Kind::Session,
                start: 40,
                end: 90,
                json_start: 61,
                json_end: 88,
            },
        ];
        assert_eq!(decode_index(&encode_index(&frames)), Some(frames.clone()));
        assert_eq!(decode_index(&[0; 18]), None);
        let mut bad = encode_index(&frames);
        bad[2] = 9;
        assert_eq!(decode_index(&bad), None, "no such kind");
        let batch = Batch::from_parts(77, Bytes::from(vec![b'x'; 90]), frames).unwrap();
        let (field, value) = latest_entry(&batch, 1);
        assert_eq!(field, "65535:4");
        let r = restored(field.as_bytes(), value).unwrap();
        assert_eq!((r.symbol, r.kind, r.seq), (u16::MAX, Kind::Session, 78));
        assert_eq!((r.frame.len(), r.json.len()), (50, 27));
        assert!(restored(b"1:9", vec![0; 20]).is_none());
    }

    #[test]
    fn clocks_and_urls() {
        let c = ClockAnchor {
            market_ms: 1_709_566_200_000,
            speed: 60.0,
            until_ms: 1_709_586_000_000,
        };
        assert_eq!(parse_clock(&clock_text(&c)), Some(c));
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("http://127.0.0.1").is_err());
    }
}
