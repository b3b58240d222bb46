//! Connection admission: caps checked at accept, before a connection costs more than its
//! socket.
//!
//! Every connection holds a file descriptor until it closes. Without a cap, a few thousand
//! idle sockets take the process to its open-file limit and then `accept` fails for everyone,
//! `/healthz` included. So the accept loop admits a connection only while the total is under
//! `--max-connections` (by default the open-file limit less [`FD_HEADROOM`]) and the peer's
//! address holds fewer than `--max-connections-per-ip`; the excess is answered with a short
//! JSON error and closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// File descriptors kept free below the open-file limit for what is not a client connection:
/// the listener, the runtime's own descriptors, web files served from `--web-dir`, logs, and
/// the refusals themselves (a refused connection is accepted before it is closed).
pub const FD_HEADROOM: usize = 256;

/// The connection cap that fits an open-file limit of `nofile`.
pub fn default_max_connections(nofile: u64) -> usize {
    usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_HEADROOM)
        .max(1)
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` connections are open.
    Total,
    /// The peer's address holds `--max-connections-per-ip` connections.
    PerIp,
}

impl Refusal {
    /// The whole HTTP/1.1 response sent before closing: the request has not been read, so it
    /// cannot be anything but a self-contained reply with `connection: close`.
    pub fn response(self) -> &'static [u8] {
        match self {
            Refusal::Total => concat!(
                "HTTP/1.1 503 Service Unavailable\r\n",
                "content-type: application/json\r\n",
                "retry-after: 1\r\n",
                "connection: close\r\n",
                "content-length: 95\r\n\r\n",
                r#"{"error":"too_many_connections","message":"the server is at its connection limit; retry later"}"#,
            )
            .as_bytes(),
            Refusal::PerIp => concat!(
                "HTTP/1.1 429 Too Many Requests\r\n",
                "content-type: application/json\r\n",
                "retry-after: 1\r\n",
                "connection: close\r\n",
                "content-length: 95\r\n\r\n",
                r#"{"error":"too_many_connections","message":"too many connections from your address; close some"}"#,
            )
            .as_bytes(),
        }
    }
}

/// The live connection counts, shared by the accept loop and every connection's permit.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// The most connections open at once.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Admits a connection from `ip`, or says why not. The permit gives the place back when
    /// the connection ends.
    ///
    /// # Errors
    /// The limit that is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        if self.total.fetch_add(1, Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Relaxed);
            return Err(Refusal::Total);
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let held = per_ip.entry(ip).or_insert(0);
        if *held >= self.max_per_ip {
            if *held == 0 {
                per_ip.remove(&ip);
            }
            drop(per_ip);
            self.total.fetch_sub(1, Relaxed);
            return Err(Refusal::PerIp);
        }
        *held += 1;
        Ok(ConnectionPermit {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Relaxed)
    }
}

/// One admitted connection's place in the counts, returned on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = per_ip.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                // Forget the address, so the map holds only addresses with open connections.
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.limits.total.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_ip_and_total_caps_hold_and_permits_give_places_back() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.admit(ip(1)).unwrap();
        let a2 = limits.admit(ip(1)).unwrap();
        assert_eq!(limits.admit(ip(1)).unwrap_err(), Refusal::PerIp);
        let b1 = limits.admit(ip(2)).unwrap();
        assert_eq!(limits.admit(ip(3)).unwrap_err(), Refusal::Total);
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let a3 = limits.admit(ip(1)).unwrap();
        drop((a2, a3, b1));
        assert_eq!(limits.open(), 0);
        assert!(limits.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn refusals_are_complete_responses_with_the_right_length() {
        for refusal in [Refusal::Total, Refusal::PerIp] {
            let text = std::str::from_utf8(refusal.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(length, body.len(), "{head}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"], "too_many_connections");
        }
    }

    #[test]
    fn the_default_cap_leaves_headroom() {
        assert_eq!(default_max_connections(20_000), 20_000 - FD_HEADROOM);
        assert_eq!(default_max_connections(100), 1);
    }
}
