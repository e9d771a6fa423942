//! Server-side request forgery: an endpoint URL must not lead into the network TTSCM runs in.
//!
//! A URL is checked when it is registered and again at every delivery, since DNS can change
//! between the two: deliveries resolve names through [`CheckedResolver`], which refuses a name
//! with any address in a refused range, so the address checked is the address connected to (no
//! window for DNS rebinding). Refused: loopback, unspecified, link-local, private (RFC 1918,
//! IPv6 unique-local), shared (100.64/10), multicast, broadcast, documentation and benchmark
//! ranges, and IPv4 addresses mapped into IPv6. `TTSCM_WEBHOOK__ALLOW_PRIVATE=true` allows them
//! (tests, a receiver on the same network).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, if it is.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4).or(Some("an IPv4-mapped address")),
            None => refused_v6(v6),
        },
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast or reserved address")
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        Some("a documentation address")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address")
    } else if a == 192 && b == 0 && c == 0 {
        Some("a protocol-assignment address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique-local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("a documentation address")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        Some("a NAT64 address")
    } else {
        None
    }
}

/// Why the addresses of a name are refused: the first refused one decides.
pub fn refused_any(addrs: &[SocketAddr]) -> Option<(IpAddr, &'static str)> {
    addrs
        .iter()
        .find_map(|addr| refused(addr.ip()).map(|why| (addr.ip(), why)))
}

/// Resolves `host:port` and checks every address (registration's check).
pub async fn check_host(host: &str, port: u16, allow_private: bool) -> Result<(), String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return match refused(ip) {
            Some(why) if !allow_private => Err(format!("the URL's address is {why}")),
            _ => Ok(()),
        };
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("the URL's host '{host}' does not resolve"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("the URL's host '{host}' does not resolve"));
    }
    match refused_any(&addrs) {
        Some((_, why)) if !allow_private => Err(format!("the URL's host '{host}' resolves to {why}")),
        _ => Ok(()),
    }
}

/// The resolver of deliveries: the system's, refusing names that resolve into refused ranges.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    /// Whether refused ranges are allowed after all.
    pub allow_private: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && let Some((_, why)) = refused_any(&addrs) {
                return Err(format!("the host resolves to {why}").into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges_are_refused_and_public_ones_not() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = internal.parse().expect("an address");
            assert!(refused(ip).is_some(), "{internal} must be refused");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "93.184.216.34"] {
            let ip: IpAddr = public.parse().expect("an address");
            assert_eq!(refused(ip), None, "{public} must be allowed");
        }
    }
}
