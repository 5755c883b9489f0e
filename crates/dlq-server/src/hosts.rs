//! Which names a request may call the server by: the defence against DNS
//! rebinding.
//!
//! A page on `attacker.example` can make its own name resolve to
//! `127.0.0.1` after the page has loaded. Its scripts then reach this
//! server as *same-origin* requests of `attacker.example`: the browser
//! sends `Host: attacker.example:8080` and `Origin:
//! http://attacker.example:8080`, which agree, so the CSRF rule alone lets
//! them through (a stolen or guessed token aside, the static files and the
//! token check are then one step from a foreign page). Only the `Host`
//! header tells: every request, reads included, must name the server by
//! one of its own names.
//!
//! Allowed: `localhost`, `127.0.0.1` and `[::1]`, and the listen address's
//! IP, each with the port the server listens on (the one it got when port
//! 0 was asked); any IP address with that port
//! when the server listens on all interfaces (`0.0.0.0` or `[::]`: an IP
//! literal is never a rebinding, whose whole point is a name); and the
//! names of `[serve] allowed_hosts`: `name` for any port, `name:port` for
//! that port only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A name of `[serve] allowed_hosts`: a host name or IP address, with or
/// without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// The host, lower case, without a trailing dot; an IPv6 address
    /// without brackets.
    pub host: String,
    /// The port it must come with; any port when `None`.
    pub port: Option<u16>,
}

impl AllowedHost {
    /// Parses `name`, `name:port`, `1.2.3.4[:port]` or `[v6][:port]`.
    /// Wildcards are refused: a wildcard would let rebinding names in.
    pub fn parse(text: &str) -> Result<AllowedHost, String> {
        if text.contains('*') {
            return Err(format!(
                "{text:?}: wildcards are not accepted (they would let a DNS-rebinding \
                 name through); list every name"
            ));
        }
        let (host, port) = split_host(text).ok_or_else(|| {
            format!("{text:?}: expected a host name or IP address, optionally with :PORT")
        })?;
        Ok(AllowedHost { host, port })
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// Splits `host[:port]` of a `Host` header (RFC 9110 §7.2) into a
/// normalised host and its port; `None` when it is not one.
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = v6.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !host.starts_with('.')
            && !host.contains("..");
        if !valid {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Why a request's `Host` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host` header (and no authority in the request target).
    Missing,
    /// Not a `host[:port]`.
    Malformed,
    /// A name or port this server does not answer to.
    NotAllowed,
}

/// The names a request may call the server by.
#[derive(Debug, Clone)]
pub struct HostCheck {
    ports: Vec<u16>,
    ips: Vec<IpAddr>,
    any_ip: bool,
    names: Vec<AllowedHost>,
}

impl HostCheck {
    /// The names of a server listening on `listen` (the bound address, or
    /// the configured one before the server binds), plus the configured
    /// ones.
    pub fn new(listen: &[SocketAddr], configured: &[AllowedHost]) -> HostCheck {
        let mut ports: Vec<u16> = listen.iter().map(SocketAddr::port).collect();
        ports.retain(|p| *p != 0);
        ports.sort_unstable();
        ports.dedup();
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let mut any_ip = false;
        for a in listen {
            if a.ip().is_unspecified() {
                any_ip = true;
            } else if !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        HostCheck {
            ports,
            ips,
            any_ip,
            names: configured.to_vec(),
        }
    }

    /// Whether a request whose `Host` is `host` may be answered.
    pub fn check(&self, host: Option<&str>) -> Result<(), Refusal> {
        let host = host.ok_or(Refusal::Missing)?;
        let (name, port) = split_host(host).ok_or(Refusal::Malformed)?;
        // Plain HTTP: no port means 80.
        let effective = port.unwrap_or(80);
        if self
            .names
            .iter()
            .any(|n| n.host == name && n.port.is_none_or(|p| p == effective))
        {
            return Ok(());
        }
        if !self.ports.contains(&effective) {
            return Err(Refusal::NotAllowed);
        }
        let ours = match name.parse::<IpAddr>() {
            Ok(ip) => self.any_ip || self.ips.contains(&ip),
            Err(_) => name == "localhost",
        };
        if ours {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    /// The names accepted, for the message of a refusal.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        for port in &self.ports {
            out.push(format!("localhost:{port}"));
            for ip in &self.ips {
                out.push(SocketAddr::new(*ip, *port).to_string());
            }
            if self.any_ip {
                out.push(format!("any IP address:{port}"));
            }
        }
        out.extend(self.names.iter().map(ToString::to_string));
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: &[&str], configured: &[&str]) -> HostCheck {
        let listen: Vec<SocketAddr> = listen.iter().map(|a| a.parse().expect("addr")).collect();
        let configured: Vec<AllowedHost> = configured
            .iter()
            .map(|c| AllowedHost::parse(c).expect("allowed host"))
            .collect();
        HostCheck::new(&listen, &configured)
    }

    #[test]
    fn loopback_names_with_the_listen_port_are_allowed() {
        let c = check(&["127.0.0.1:8080"], &[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "localhost.:8080",
            "[::1]:8080",
        ] {
            assert_eq!(c.check(Some(ok)), Ok(()), "{ok}");
        }
        for refused in [
            "127.0.0.1:8081",
            "localhost",
            "attacker.example:8080",
            "localhost.attacker.example:8080",
            "10.0.0.5:8080",
        ] {
            assert_eq!(
                c.check(Some(refused)),
                Err(Refusal::NotAllowed),
                "{refused}"
            );
        }
        assert_eq!(c.check(None), Err(Refusal::Missing));
        for malformed in [
            "",
            "a b:8080",
            "host:port",
            "[::1",
            "[zz]:80",
            "h:99999",
            "a..b",
        ] {
            assert_eq!(
                c.check(Some(malformed)),
                Err(Refusal::Malformed),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn the_bound_port_counts_when_port_0_was_asked() {
        let c = check(&["127.0.0.1:0", "127.0.0.1:40123"], &[]);
        assert_eq!(c.check(Some("127.0.0.1:40123")), Ok(()));
        assert_eq!(c.check(Some("127.0.0.1:0")), Err(Refusal::Malformed));
        assert!(c.describe().contains("localhost:40123"), "{}", c.describe());
    }

    #[test]
    fn a_specific_listen_ip_is_allowed_and_all_interfaces_allow_any_ip() {
        let c = check(&["192.168.1.7:9000"], &[]);
        assert_eq!(c.check(Some("192.168.1.7:9000")), Ok(()));
        assert_eq!(c.check(Some("192.168.1.8:9000")), Err(Refusal::NotAllowed));
        let all = check(&["0.0.0.0:9000"], &[]);
        assert_eq!(all.check(Some("192.168.1.8:9000")), Ok(()));
        assert_eq!(all.check(Some("[fe80::1]:9000")), Ok(()));
        assert_eq!(all.check(Some("my-laptop:9000")), Err(Refusal::NotAllowed));
    }

    #[test]
    fn configured_names_match_any_port_unless_they_name_one() {
        let c = check(
            &["127.0.0.1:8080"],
            &["dlq.example.com", "Proxy.Internal:8443"],
        );
        assert_eq!(c.check(Some("dlq.example.com")), Ok(()));
        assert_eq!(c.check(Some("DLQ.example.com:443")), Ok(()));
        assert_eq!(c.check(Some("proxy.internal:8443")), Ok(()));
        assert_eq!(
            c.check(Some("proxy.internal:8080")),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            c.check(Some("evil.dlq.example.com")),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn allowed_hosts_are_parsed_strictly() {
        assert_eq!(
            AllowedHost::parse("[::1]:8080").expect("v6"),
            AllowedHost {
                host: "::1".into(),
                port: Some(8080)
            }
        );
        assert_eq!(
            AllowedHost::parse("[::1]:8080").expect("v6").to_string(),
            "[::1]:8080"
        );
        for bad in ["", "*.example.com", "http://x", "a b", "x:0", "x:", "x:y"] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            AllowedHost::parse("*")
                .expect_err("wildcard")
                .contains("wildcards")
        );
    }
}
