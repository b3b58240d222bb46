//! Command-line flags (each also an environment variable), validated once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::auth::Verifier;
use crate::cors::Cors;
use crate::market::clock::{self, ClockError, MarketMs};
use crate::market::simulator::MAX_FIRST_SEQ;

/// tickcast: a stock-market simulator that broadcasts quotes as Server-Sent Events.
#[derive(Debug, Clone, Parser)]
#[command(name = "tickcast", version, about)]
pub struct Config {
    /// Address to listen on: IP:port or host:port (a host name is resolved at start-up).
    #[arg(long, env = "TICKCAST_ADDR", default_value = "127.0.0.1:3000", value_parser = parse_addr)]
    pub addr: SocketAddr,

    /// CSV file of symbols:
    /// symbol,name,price,volatility,drift,tick_size,beta,sector,adv,spread_bp,tier [default: the 120 symbols of data/symbols.csv, built into the binary].
    #[arg(long, env = "TICKCAST_SYMBOLS")]
    pub symbols: Option<PathBuf>,

    /// Seed of the simulation: the same seed gives the same updates in the same order.
    /// Without it a random seed is chosen and logged.
    #[arg(long, env = "TICKCAST_SEED")]
    pub seed: Option<u64>,

    /// Mean market events (trades and quote changes) per symbol per wall-clock second during
    /// the regular session, whatever --speed; busy symbols get more, quiet ones fewer, and
    /// pre- and post-market a tenth.
    #[arg(long, env = "TICKCAST_RATE", default_value_t = 2.0)]
    pub rate: f64,

    /// Market seconds per wall-clock second: 60 runs a market minute in a second. It does not
    /// change the event rate; trade sizes grow with it so daily volume stays realistic.
    #[arg(long, env = "TICKCAST_SPEED", default_value_t = 1.0)]
    pub speed: f64,

    /// Market time at start-up: an RFC 3339 date-time (2024-03-04T10:00:00-05:00) or a trading
    /// date (2024-03-04, meaning its 09:30 ET open) [default: 09:30 ET of the most recent
    /// trading day, so the market opens at once].
    #[arg(long, env = "TICKCAST_START")]
    pub start: Option<String>,

    /// Wait out nights, weekends and holidays in market time instead of skipping them (by
    /// default the clock jumps from the end of the post-market to the next pre-market).
    #[arg(long, env = "TICKCAST_KEEP_CLOSED_TIME")]
    pub keep_closed_time: bool,

    /// Events kept for Last-Event-ID replay (counted over all symbols and kinds).
    #[arg(long, env = "TICKCAST_HISTORY", default_value_t = 10_000)]
    pub history: usize,

    /// Seq (SSE id) of the run's first event [default: the wall-clock time at start-up in
    /// milliseconds times 1,000, so a restarted server never reuses an id of an earlier run].
    #[arg(long, env = "TICKCAST_FIRST_SEQ")]
    pub first_seq: Option<u64>,

    /// Trading days of daily bars generated before the start, so charts open with context
    /// (the previous day's minute bars are always generated).
    #[arg(long, env = "TICKCAST_HISTORY_DAYS", default_value_t = 30)]
    pub history_days: usize,

    /// Enables POST /scenario for requests that send `Authorization: Bearer <token>`.
    /// Without it, scenarios are off (404).
    #[arg(long, env = "TICKCAST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Seconds between heartbeat events.
    #[arg(long, env = "TICKCAST_HEARTBEAT_SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,

    /// Reconnection delay sent to browsers in the `retry:` field, milliseconds.
    #[arg(long, env = "TICKCAST_RETRY_MS", default_value_t = 3000)]
    pub retry_ms: u64,

    /// Most SSE streams open at once; more get 503 with Retry-After.
    #[arg(long, env = "TICKCAST_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,

    /// Most connections open at once, of every kind; more are answered 503 and closed at once
    /// [default: the open-file limit less 256].
    #[arg(long, env = "TICKCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most connections open at once from one IP address; more are answered 429 and closed
    /// at once. Load tests from one address need more.
    #[arg(long, env = "TICKCAST_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    pub max_connections_per_ip: usize,

    /// Most symbols one request may name [default: the number of symbols loaded].
    #[arg(long, env = "TICKCAST_MAX_SYMBOLS")]
    pub max_symbols: Option<usize>,

    /// Origins whose pages may read responses: `*` for every origin, or a comma-separated list
    /// of origins (scheme://host[:port]); a listed request Origin is echoed in
    /// Access-Control-Allow-Origin (with Vary: Origin), others get none.
    #[arg(long, env = "TICKCAST_CORS_ORIGIN", default_value = "*")]
    pub cors_origin: String,

    /// Require a JWT signed with this HS256 secret (at least 16 bytes) on every stream and data
    /// route, from Authorization: Bearer, ?token= or the tickcast_token cookie.
    #[arg(
        long,
        env = "TICKCAST_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,

    /// Require a JWT verified with this RSA (RS256) or EC P-256 (ES256) public key, a PEM file;
    /// the algorithm comes from the key.
    #[arg(long, env = "TICKCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Require `Authorization: Bearer <token>` with this token on /healthz and /metrics
    /// (open without it).
    #[arg(long, env = "TICKCAST_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Serve the dashboard from this directory instead of the copy built into the binary.
    #[arg(long, env = "TICKCAST_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Seconds a write to a client may stay blocked (the client stopped reading) before the
    /// stream is closed and its slot freed.
    #[arg(long, env = "TICKCAST_WRITE_TIMEOUT_SECS", default_value_t = 30)]
    pub write_timeout_secs: u64,

    /// Longest pause, in milliseconds, between two writes to one client. While the server has
    /// time to spare every event goes out at once; as it gets busy, each client waits up to
    /// this long between writes and events due meanwhile go out together, which bounds the
    /// writes per client and so the CPU. 0 never waits. The default is about one 60 Hz frame
    /// (docs/BENCHMARKS.md#pacing).
    #[arg(long, env = "TICKCAST_FLUSH_MS", default_value_t = 20)]
    pub flush_ms: u64,

    /// Log lines as text (coloured only on a terminal) or as one JSON object per line.
    #[arg(long, env = "TICKCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Worker threads of the runtime [default: one per core].
    #[arg(long, env = "TICKCAST_THREADS")]
    pub threads: Option<usize>,

    /// What this process does: `all` runs the market and serves clients, with no external
    /// service; `simulator` runs the market and appends each batch to a Redis stream
    /// (serving /healthz and /metrics only); `edge` follows that stream and serves clients
    /// (docs/CLUSTER.md).
    #[arg(long, env = "TICKCAST_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// Redis of a cluster, as `redis://[user:password@]host[:port][/db]`, or `rediss://...`
    /// for TLS (simulator and edge roles).
    #[arg(long, env = "TICKCAST_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    /// For a `rediss://` URL: trust the CA certificates in this PEM file (a private CA, or the
    /// server's own self-signed certificate) instead of the system's store.
    #[arg(long, env = "TICKCAST_REDIS_CA", value_name = "PEM")]
    pub redis_ca: Option<PathBuf>,

    /// Name of the feed in Redis: one simulator and its edges share it; several feeds can
    /// share one Redis.
    #[arg(long, env = "TICKCAST_FEED", default_value = "tickcast")]
    pub feed: String,

    /// Events the Redis stream keeps (trimmed by seq, approximately): an edge that falls
    /// further behind than this rebuilds from the latest state. At least --history of the
    /// edges, so that a restarted edge fills its replay window.
    #[arg(long, env = "TICKCAST_STREAM_RETENTION", default_value_t = 100_000)]
    pub stream_retention: u64,

    /// Batches a simulator holds while Redis is unavailable; when they are all taken, the
    /// market waits (events due meanwhile are published together afterwards, none lost).
    #[arg(long, env = "TICKCAST_UPSTREAM_BUFFER", default_value_t = 4096)]
    pub upstream_buffer: usize,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key). ALPN offers `h2` and
    /// `http/1.1`, so browsers get HTTP/2 and many streams over one connection.
    #[arg(long, env = "TICKCAST_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "TICKCAST_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a certificate for localhost, 127.0.0.1 and ::1 generated at start-up;
    /// its SHA-256 fingerprint is logged. For local use: browsers warn about it.
    #[arg(long, env = "TICKCAST_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,

    /// Seconds an HTTP/2 (or kept-alive HTTP/1.1) connection served by hyper may stay without
    /// an open request before it is closed; HTTP/2 connections are also pinged every half of
    /// it (at most 30 s) and closed when a ping goes unanswered.
    #[arg(long, env = "TICKCAST_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// The TLS setup, loaded once from the flags above (see [`Config::load_tls`]).
    #[arg(skip)]
    pub tls: Option<crate::tls::Tls>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print an HS256 token for --jwt-secret, for demos and tests.
    Token(TokenArgs),
}

/// `tickcast token`: what the token grants and for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The server's --jwt-secret.
    #[arg(long, env = "TICKCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,

    /// Symbols the token allows, comma-separated; * for all.
    #[arg(long, default_value = "*")]
    pub symbols: String,

    /// How long the token is valid: 90s, 15m, 1h, 7d, or combinations such as 1h30m.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

/// Longest `--ttl`: a year. Longer-lived tokens are better replaced by rotating the secret.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 90s, 15m, 1h)"))?;
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err("must be between 1s and 366d".into());
    }
    Ok(ttl)
}

/// What one tickcast process does (see `--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The market and every client route in one process; no external service.
    All,
    /// The market, appending to Redis; only /healthz and /metrics.
    Simulator,
    /// Follows the simulator's stream in Redis and serves every client route.
    Edge,
}

impl Role {
    /// The role's name, as `--role` takes it and /healthz shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Simulator => "simulator",
            Role::Edge => "edge",
        }
    }
}

/// Most trading days of generated daily bars: ten years.
pub const MAX_HISTORY_DAYS: usize = 2520;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal and NO_COLOR is unset.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `IP:port` as is, or `host:port` resolved to its first address (`localhost:3000`).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("not an address or host:port ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| "the host name has no address".to_owned())
}

/// A flag value that parses but makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("--rate must be > 0 and <= 100000, got {0}")]
    Rate(f64),
    #[error("--speed must be > 0 and <= 1000000, got {0}")]
    Speed(f64),
    #[error("--history must be at least 1")]
    History,
    #[error("--history-days must be at most {MAX_HISTORY_DAYS}, got {0}")]
    HistoryDays(usize),
    #[error("--admin-token must be 16 to 256 visible ASCII characters")]
    AdminToken,
    #[error("--first-seq must be from 1 to {MAX_FIRST_SEQ}, got {0}")]
    FirstSeq(u64),
    #[error("--write-timeout-secs must be between 1 and 3600, got {0}")]
    WriteTimeout(u64),
    #[error("--heartbeat-secs must be between 1 and 3600, got {0}")]
    Heartbeat(u64),
    #[error("--retry-ms must be between 1 and 3600000, got {0}")]
    Retry(u64),
    #[error("--max-clients must be at least 1")]
    MaxClients,
    #[error("--max-connections must be at least 1")]
    MaxConnections,
    #[error("--max-connections-per-ip must be at least 1")]
    MaxConnectionsPerIp,
    #[error("--max-symbols must be at least 1")]
    MaxSymbols,
    #[error(transparent)]
    CorsOrigin(#[from] crate::cors::CorsError),
    #[error(transparent)]
    JwtKey(#[from] crate::auth::KeyError),
    #[error("cannot read --jwt-public-key {0}: {1}")]
    JwtKeyFile(PathBuf, String),
    #[error("--metrics-token must be 16 to 256 visible ASCII characters")]
    MetricsToken,
    #[error("--flush-ms must be at most 10000, got {0}")]
    Flush(u64),
    #[error("--tls-cert and --tls-key must be given together")]
    TlsPair,
    #[error("--idle-timeout-secs must be between 1 and 3600, got {0}")]
    IdleTimeout(u64),
    #[error("--threads must be between 1 and 1024, got {0}")]
    Threads(usize),
    #[error("--web-dir {0} is not a directory")]
    WebDir(PathBuf),
    #[error(transparent)]
    Start(#[from] ClockError),
    #[error("--role {0} needs --redis URL")]
    RedisMissing(&'static str),
    #[error("--redis is only for --role simulator or edge")]
    RedisUnused,
    #[error("--redis is not a Redis URL (redis://host:port or rediss://host:port): {0}")]
    RedisUrl(String),
    #[error("--redis-ca is for a rediss:// URL (Redis over TLS)")]
    RedisCaUnused,
    #[error("--redis-ca {path}: {problem}")]
    RedisCa { path: PathBuf, problem: String },
    #[error("--feed must be 1 to 64 letters, digits, '-', '_' or '.', got {0:?}")]
    FeedName(String),
    #[error("--stream-retention must be between 1000 and 100000000, got {0}")]
    StreamRetention(u64),
    #[error("--upstream-buffer must be between 1 and 1000000, got {0}")]
    UpstreamBuffer(usize),
}

impl Config {
    /// Checks every value that clap cannot check alone.
    ///
    /// # Errors
    /// The first invalid value, named by its flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err(ConfigError::Rate(self.rate));
        }
        if !(self.speed > 0.0 && self.speed <= 1_000_000.0) {
            return Err(ConfigError::Speed(self.speed));
        }
        if self.history == 0 {
            return Err(ConfigError::History);
        }
        if let Some(seq) = self.first_seq {
            if !(1..=MAX_FIRST_SEQ).contains(&seq) {
                return Err(ConfigError::FirstSeq(seq));
            }
        }
        if !(1..=3600).contains(&self.write_timeout_secs) {
            return Err(ConfigError::WriteTimeout(self.write_timeout_secs));
        }
        if self.history_days > MAX_HISTORY_DAYS {
            return Err(ConfigError::HistoryDays(self.history_days));
        }
        if let Some(token) = &self.admin_token {
            let visible = token.bytes().all(|b| b.is_ascii_graphic());
            if !(16..=256).contains(&token.len()) || !visible {
                return Err(ConfigError::AdminToken);
            }
        }
        if !(1..=3600).contains(&self.heartbeat_secs) {
            return Err(ConfigError::Heartbeat(self.heartbeat_secs));
        }
        if !(1..=3_600_000).contains(&self.retry_ms) {
            return Err(ConfigError::Retry(self.retry_ms));
        }
        if self.max_clients == 0 {
            return Err(ConfigError::MaxClients);
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::MaxConnections);
        }
        if self.max_connections_per_ip == 0 {
            return Err(ConfigError::MaxConnectionsPerIp);
        }
        if self.max_symbols == Some(0) {
            return Err(ConfigError::MaxSymbols);
        }
        self.cors()?;
        self.jwt_verifier()?;
        if let Some(token) = &self.metrics_token {
            let visible = token.bytes().all(|b| b.is_ascii_graphic());
            if !(16..=256).contains(&token.len()) || !visible {
                return Err(ConfigError::MetricsToken);
            }
        }
        if self.flush_ms > 10_000 {
            return Err(ConfigError::Flush(self.flush_ms));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsPair);
        }
        if !(1..=3600).contains(&self.idle_timeout_secs) {
            return Err(ConfigError::IdleTimeout(self.idle_timeout_secs));
        }
        if let Some(t) = self.threads {
            if !(1..=1024).contains(&t) {
                return Err(ConfigError::Threads(t));
            }
        }
        self.validate_cluster()?;
        self.market_start(0)?;
        if let Some(dir) = &self.web_dir {
            if !dir.is_dir() {
                return Err(ConfigError::WebDir(dir.clone()));
            }
        }
        Ok(())
    }

    /// The cluster flags: a Redis URL exactly for the roles that use one.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        match (self.role, &self.redis) {
            (Role::All, Some(_)) => return Err(ConfigError::RedisUnused),
            (Role::All, None) => {}
            (role, None) => return Err(ConfigError::RedisMissing(role.as_str())),
            (_, Some(url)) => {
                crate::cluster::stream::check_url(url).map_err(ConfigError::RedisUrl)?;
            }
        }
        if let Some(path) = &self.redis_ca {
            let tls = self
                .redis
                .as_deref()
                .is_some_and(|u| u.starts_with("rediss://"));
            if !tls {
                return Err(ConfigError::RedisCaUnused);
            }
            self.redis_ca_pem()
                .map_err(|problem| ConfigError::RedisCa {
                    path: path.clone(),
                    problem,
                })?;
        }
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.feed.is_empty() || self.feed.len() > 64 || !self.feed.chars().all(name_ok) {
            return Err(ConfigError::FeedName(self.feed.chars().take(64).collect()));
        }
        if !(1000..=100_000_000).contains(&self.stream_retention) {
            return Err(ConfigError::StreamRetention(self.stream_retention));
        }
        if !(1..=1_000_000).contains(&self.upstream_buffer) {
            return Err(ConfigError::UpstreamBuffer(self.upstream_buffer));
        }
        Ok(())
    }

    /// The PEM text of `--redis-ca`, if given: read, and checked to hold a certificate.
    ///
    /// # Errors
    /// The file cannot be read or holds no PEM certificate.
    pub fn redis_ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = &self.redis_ca else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| e.to_string())?;
        let has_certificate = pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----");
        if !has_certificate {
            return Err("holds no PEM certificate".into());
        }
        Ok(Some(pem))
    }

    /// Seq of the run's first event: `--first-seq`, or `now_ms` (wall-clock epoch ms at
    /// start-up) times 1,000. Runs started later begin higher, and a run would have to publish
    /// more than 1,000 events per millisecond since its start (a million a second, the
    /// simulator's limit on one core) to reach the ids of the next one. Below 2^52 until 2112.
    pub fn first_seq_at(&self, now_ms: u64) -> u64 {
        self.first_seq
            .unwrap_or_else(|| now_ms.saturating_mul(1000).clamp(1, MAX_FIRST_SEQ))
    }

    /// The CORS allow-list; echoed origins may send credentials when tokens are required.
    ///
    /// # Errors
    /// An invalid `--cors-origin`.
    pub fn cors(&self) -> Result<Cors, ConfigError> {
        let credentials = self.jwt_secret.is_some() || self.jwt_public_key.is_some();
        Ok(Cors::parse(&self.cors_origin, credentials)?)
    }

    /// The token verifier, if `--jwt-secret` or `--jwt-public-key` is set.
    ///
    /// # Errors
    /// A short secret, or a key file that cannot be read or holds no public key.
    pub fn jwt_verifier(&self) -> Result<Option<Verifier>, ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            return Ok(Some(Verifier::hs256(secret.as_bytes())?));
        }
        if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::JwtKeyFile(path.clone(), e.kind().to_string()))?;
            return Ok(Some(Verifier::from_public_pem(&pem)?));
        }
        Ok(None)
    }

    /// `--write-timeout-secs` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// Reads the certificate and key of `--tls-cert`/`--tls-key`, or generates one for
    /// `--tls-self-signed`, into [`Config::tls`]; nothing when TLS is off or already loaded.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable PEM, or a key that is not the
    /// certificate's.
    pub fn load_tls(&mut self) -> Result<(), crate::tls::TlsError> {
        if self.tls.is_some() {
            return Ok(());
        }
        self.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::Tls::from_pem_files(cert, key)?),
            _ if self.tls_self_signed => Some(crate::tls::Tls::self_signed()?),
            _ => None,
        };
        Ok(())
    }

    /// `--idle-timeout-secs` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The configuration with every default, as a test or bench would start from.
    pub fn defaults() -> Config {
        Config::parse_from(["tickcast"])
    }

    /// Market time at start-up, epoch ms: `--start`, or the default start relative to the
    /// wall-clock `now_ms`.
    ///
    /// # Errors
    /// A `--start` that is not a date-time or a trading date.
    pub fn market_start(&self, now_ms: i64) -> Result<MarketMs, ClockError> {
        match &self.start {
            Some(text) => clock::parse_start(text),
            None => Ok(clock::default_start(now_ms)),
        }
    }

    /// Interval between heartbeats.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// Minimum interval between two publishes (and so between two writes to one client).
    pub fn flush(&self) -> Duration {
        Duration::from_millis(self.flush_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("tickcast").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults();
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.rate, 2.0);
        assert_eq!(c.history, 10_000);
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn nonsense_values_are_refused_with_the_flag_name() {
        assert_eq!(
            parse(&["--rate", "0"]).validate(),
            Err(ConfigError::Rate(0.0))
        );
        assert!(parse(&["--rate", "NaN"])
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--rate"));
        assert_eq!(
            parse(&["--history", "0"]).validate(),
            Err(ConfigError::History)
        );
        assert_eq!(
            parse(&["--heartbeat-secs", "0"]).validate(),
            Err(ConfigError::Heartbeat(0))
        );
        assert!(parse(&["--cors-origin", "a\u{7f}b"]).validate().is_err());
        assert!(parse(&["--cors-origin", "http://a:1,http://b"])
            .validate()
            .is_ok());
        assert!(parse(&["--cors-origin", "http://a/"]).validate().is_err());
        assert!(parse(&["--jwt-secret", "short"]).validate().is_err());
        assert!(parse(&["--jwt-public-key", "/nonexistent.pem"])
            .validate()
            .is_err());
        assert!(parse(&["--metrics-token", "x"]).validate().is_err());
        assert!(Config::try_parse_from(["tickcast", "--addr", "nope"]).is_err());
        assert!(parse(&["--addr", "localhost:3000"]).addr.ip().is_loopback());
        assert_eq!(parse(&["--addr", "[::1]:80"]).addr.to_string(), "[::1]:80");
    }

    #[test]
    fn cluster_roles_need_a_good_redis_url() {
        assert_eq!(
            parse(&["--role", "edge"]).validate(),
            Err(ConfigError::RedisMissing("edge"))
        );
        assert_eq!(
            parse(&["--redis", "redis://127.0.0.1:6379"]).validate(),
            Err(ConfigError::RedisUnused)
        );
        assert!(matches!(
            parse(&["--role", "simulator", "--redis", "http://x"]).validate(),
            Err(ConfigError::RedisUrl(_))
        ));
        assert!(matches!(
            parse(&[
                "--role",
                "edge",
                "--redis",
                "redis://127.0.0.1:6379",
                "--feed",
                "a b"
            ])
            .validate(),
            Err(ConfigError::FeedName(_))
        ));
        assert_eq!(
            parse(&["--role", "edge", "--redis", "redis://127.0.0.1:6379/2"]).validate(),
            Ok(())
        );
    }

    #[test]
    fn a_redis_ca_needs_tls_and_a_certificate() {
        let dir = std::env::temp_dir().join(format!("tickcast-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, bad) = (dir.join("ca.pem"), dir.join("not.pem"));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&good, cert.cert.pem()).unwrap();
        std::fs::write(&bad, "not a certificate").unwrap();
        let edge = |url: &str, ca: &std::path::Path| {
            let ca = ca.to_str().unwrap().to_owned();
            parse(&["--role", "edge", "--redis", url, "--redis-ca", &ca]).validate()
        };
        assert_eq!(edge("rediss://127.0.0.1:6380", &good), Ok(()));
        assert_eq!(
            edge("redis://127.0.0.1:6379", &good),
            Err(ConfigError::RedisCaUnused)
        );
        assert!(matches!(
            edge("rediss://127.0.0.1:6380", &bad),
            Err(ConfigError::RedisCa { problem, .. }) if problem == "holds no PEM certificate"
        ));
        assert!(matches!(
            edge("rediss://127.0.0.1:6380", &dir.join("missing.pem")),
            Err(ConfigError::RedisCa { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
