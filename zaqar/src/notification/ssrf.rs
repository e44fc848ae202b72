//! Server-side request forgery guard for webhook and `trust+` subscribers.
//!
//! A subscriber URL makes the server send requests wherever the tenant
//! says, from inside the cloud's network. So a target whose address is
//! loopback, private (RFC 1918), shared (RFC 6598), link-local (which holds
//! the cloud metadata service 169.254.169.254), unique-local, unspecified,
//! multicast or broadcast is refused, both when the subscription is made
//! (400) and at every delivery (the HTTP client resolves names through
//! [`GuardedResolver`], so a name that later resolves elsewhere — DNS
//! rebinding — is caught too). `[notification] allowed_subscriber_networks`
//! lists networks that are allowed all the same (tests allow 127.0.0.0/8).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// How long a subscription-time name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Which addresses subscribers may be sent to.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allowed: Arc<Vec<IpNet>>,
}

/// Why an address is refused.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[..6] == [0, 0, 0, 0, 0, 0] {
                // IPv4-compatible (deprecated): judge the embedded address.
                v4_kind(Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                ))
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64: the embedded IPv4 address is where it really goes.
                v4_kind(Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                ))
            } else {
                None
            }
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local or metadata")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT) or metadata")
    } else if o[0] == 0 {
        Some("unspecified")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment")
    } else {
        None
    }
}

impl AddressPolicy {
    /// A policy allowing `allowed` on top of every public address.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        AddressPolicy {
            allowed: Arc::new(allowed),
        }
    }

    /// `Err(reason)` when `ip` may not be contacted.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let Some(kind) = forbidden_kind(ip) else {
            return Ok(());
        };
        let unmapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self
            .allowed
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&unmapped))
        {
            return Ok(());
        }
        Err(format!(
            "The subscriber address {ip} is not allowed: it is a {kind} address. Such addresses can only be \
             subscribed when [notification] allowed_subscriber_networks includes them."
        ))
    }

    /// Checks the host of a webhook URL at subscription time: an IP
    /// literal directly, a name through the resolver (every address it
    /// resolves to must be allowed). A name that does not resolve now is
    /// accepted: it is checked again at each delivery.
    ///
    /// # Errors
    /// The reason, when the host is or resolves to a refused address.
    pub async fn check_host(&self, host: &str, port: u16) -> Result<(), String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check(ip);
        }
        let lookup =
            tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((bare, port))).await;
        match lookup {
            Ok(Ok(addrs)) => {
                for a in addrs {
                    self.check(a.ip())?;
                }
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(host, error = %e, "subscriber host does not resolve now");
                Ok(())
            }
            Err(_) => {
                tracing::debug!(host, "subscriber host lookup timed out");
                Ok(())
            }
        }
    }
}

/// A DNS resolver for the delivery HTTP client that drops refused
/// addresses (and fails when none is left), so the address checked is the
/// address connected to.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    /// The policy applied to every resolved address.
    pub policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused = Some(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} has no address"));
                return Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    why,
                ))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_ranges_unless_allowed() {
        let p = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::",
        ] {
            assert!(
                p.check(ip.parse().unwrap()).is_err(),
                "{ip} must be refused"
            );
        }
        for ip in ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"] {
            assert!(p.check(ip.parse().unwrap()).is_ok(), "{ip} must be allowed");
        }
        let p = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("10.0.0.1".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn literal_and_named_hosts() {
        let p = AddressPolicy::default();
        assert!(p.check_host("[::1]", 80).await.is_err());
        assert!(p.check_host("127.0.0.1", 80).await.is_err());
        assert!(p.check_host("localhost", 80).await.is_err());
        let allowed = AddressPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(allowed.check_host("localhost", 80).await.is_ok());
    }
}
