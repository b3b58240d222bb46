//! tickcast: a stock-market simulator that broadcasts quotes as Server-Sent Events.
//!
//! # Layout
//! - [`market`]: symbols, quotes, the random walk and the deterministic simulator.
//! - [`sse`]: the wire format; each update is encoded here once.
//! - [`feed`]: latest quotes (`watch` channels), history for replay, client cursors.
//! - [`stream`]: one client's stream: a cursor plus a subscription.
//! - [`publisher`]: the tasks that run the simulator and the heartbeat on tokio's clock.
//! - [`http`]: warp filters for every route, and the JSON error replies.
//! - [`server`]: the accept loop (HTTP/1.1 and h2c) and graceful shutdown.
//! - [`direct`]: HTTP/1.1 SSE streams written straight to the socket, bypassing hyper.
//! - [`cluster`]: `--role simulator` and `--role edge`: one market, many edges, on a Redis
//!   stream that carries the encoded batches.
//! - [`tls`]: HTTPS (rustls) with ALPN `h2` and `http/1.1`.
//! - [`guard`]: deadlines and buffer bounds for connections that hyper serves (HTTP/2).
//! - [`limits`], [`write_deadline`]: connection caps at accept and a deadline on writes.
//! - [`auth`], [`cors`]: token checks and the CORS allow-list, shared by both HTTP paths.
//! - [`config`], [`shutdown`], [`metrics`]: flags, shutdown signalling, counters.
//!
//! Data flows one way: simulator → encoder → feed → client streams → sockets.

pub mod auth;
pub mod bar_store;
pub mod cluster;
pub mod config;
pub mod cors;
pub mod direct;
pub mod feed;
pub mod guard;
pub mod http;
pub mod limits;
pub mod market;
pub mod metrics;
pub mod publisher;
pub mod server;
pub mod shutdown;
pub mod sse;
pub mod stream;
pub mod tls;
pub mod write_deadline;

pub use config::Config;
pub use server::{listen, run};
