//! The `--url` argument: parsing, and the rule that only loopback targets are allowed unless
//! `--allow-remote` is given. Nothing here touches the network except resolving a remote host
//! name after `--allow-remote`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// A parsed `http(s)://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https://`: connect with TLS.
    pub tls: bool,
    /// Host as written, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!("--url {s:?} is not an http:// or https:// URL"));
        };
        let tls = scheme.eq_ignore_ascii_case("https");
        if !tls && !scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "--url {s:?}: only http:// and https:// URLs are supported"
            ));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let mut path = rest[end..]
            .split('#')
            .next()
            .unwrap_or_default()
            .to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if authority.contains('@') {
            return Err(format!("--url {s:?}: user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(format!("--url {s:?}: unclosed '[' in the host"));
            };
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("--url {s:?}: bad port"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None | Some("") if tls => 443,
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("--url {s:?}: bad port {p:?}"))?,
        };
        if host.is_empty() {
            return Err(format!("--url {s:?} has no host"));
        }
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path,
        })
    }

    /// The host as a loopback address, if it is one: an IP in 127.0.0.0/8, `::1`, or
    /// `localhost` (taken as 127.0.0.1, without asking a resolver).
    pub fn loopback_ip(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let ip: IpAddr = self.host.parse().ok()?;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback().then_some(ip)
    }

    /// The address to connect to. Without `allow_remote` anything but loopback is refused
    /// here, before any connection or name lookup.
    pub fn resolve(&self, allow_remote: bool) -> Result<SocketAddr, String> {
        if let Some(ip) = self.loopback_ip() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        if !allow_remote {
            return Err(format!(
                "refusing non-loopback target {:?}: only 127.0.0.0/8, ::1 and localhost are allowed without --allow-remote",
                self.host
            ));
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {:?}: {e}", self.host))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{:?} resolves to no address", self.host))
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The URL as an HTTP/2 request target.
    pub fn uri(&self) -> Result<http::Uri, String> {
        format!("{}://{}{}", self.scheme(), self.authority, self.path)
            .parse()
            .map_err(|e| format!("--url: {e}"))
    }

    /// The request every connection sends, with `token` as `Authorization: Bearer`.
    pub fn request(&self, token: Option<&str>) -> Vec<u8> {
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: tickcast-load/{}\r\n{authorization}\r\n",
            self.path,
            self.authority,
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes()
    }
}

/// Connections per source address that the automatic `--source-ips` plans for.
pub const PER_SOURCE_IP: u64 = 25_000;

/// Source addresses to spread connections over: `None` lets the kernel choose (one address).
/// `requested` is `--source-ips`; automatic is one per [`PER_SOURCE_IP`] connections.
pub fn source_ips(
    target: SocketAddr,
    clients: u64,
    requested: Option<u32>,
) -> Result<Vec<IpAddr>, String> {
    let v4_loopback = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let n = match requested {
        Some(n) if !(1..=254).contains(&n) => {
            return Err(format!("--source-ips must be 1 to 254, got {n}"));
        }
        Some(n) if n > 1 && !v4_loopback => {
            return Err(
                "--source-ips above 1 needs an IPv4 loopback target (127.0.0.0/8)".to_string(),
            );
        }
        Some(n) => n,
        None if v4_loopback => clients.div_ceil(PER_SOURCE_IP).clamp(1, 254) as u32,
        None => 1,
    };
    if n == 1 {
        return Ok(Vec::new());
    }
    Ok((1..=n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:3000/quotes?symbols=AAPL#x").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 3000);
        assert_eq!(u.authority, "127.0.0.1:3000");
        assert_eq!(u.path, "/quotes?symbols=AAPL");
        let u = Url::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        let u = Url::parse("HTTP://localhost?x=1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/?x=1"));
        let u = Url::parse("https://localhost/quotes").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 443);
        assert_eq!(u.uri().unwrap().to_string(), "https://localhost/quotes");
        assert!(!Url::parse("http://localhost/").unwrap().tls);
        assert!(Url::parse("127.0.0.1:3000/quotes").is_err());
        assert!(Url::parse("ftp://127.0.0.1/").is_err());
        assert!(Url::parse("http://127.0.0.1:99999/").is_err());
        assert!(Url::parse("http://127.0.0.1:0/").is_err());
        assert!(Url::parse("http:///quotes").is_err());
        assert!(Url::parse("http://u:p@127.0.0.1/").is_err());
    }

    #[test]
    fn only_loopback_without_allow_remote() {
        for ok in [
            "http://127.0.0.1:1/",
            "http://127.9.8.7:1/",
            "http://[::1]:1/",
            "http://LocalHost:1/",
            "http://[::ffff:127.0.0.1]:1/",
        ] {
            assert!(Url::parse(ok).unwrap().resolve(false).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:80/quotes",
            "http://192.168.1.1/",
            "http://0.0.0.0:3000/",
            "http://[::]:3000/",
            "http://example.com/",
            "http://localhost.example.com/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let err = Url::parse(bad).unwrap().resolve(false).unwrap_err();
            assert!(
                err.starts_with("refusing non-loopback target"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            Url::parse("http://10.0.0.1:80/").unwrap().resolve(true),
            Ok("10.0.0.1:80".parse().unwrap())
        );
    }

    #[test]
    fn writes_the_request() {
        let u = Url::parse("http://localhost:3000/quotes?symbols=A").unwrap();
        let req = String::from_utf8(u.request(None)).unwrap();
        assert!(req.starts_with(
            "GET /quotes?symbols=A HTTP/1.1\r\nHost: localhost:3000\r\nAccept: text/event-stream\r\n"
        ));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(!req.contains("Authorization"));
        let req = String::from_utf8(u.request(Some("a.b.c"))).unwrap();
        assert!(
            req.ends_with("\r\nAuthorization: Bearer a.b.c\r\n\r\n"),
            "{req}"
        );
    }

    #[test]
    fn spreads_over_source_addresses() {
        let v4: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let v6: SocketAddr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 3000);
        assert!(source_ips(v4, 25_000, None).unwrap().is_empty());
        let ips = source_ips(v4, 25_001, None).unwrap();
        assert_eq!(
            ips,
            vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])]
        );
        assert_eq!(source_ips(v4, 10, Some(3)).unwrap().len(), 3);
        assert!(source_ips(v4, 10, Some(0)).is_err());
        assert!(source_ips(v4, 10, Some(255)).is_err());
        assert!(source_ips(v6, 50_000, None).unwrap().is_empty());
        assert!(source_ips(v6, 10, Some(2)).is_err());
    }
}
