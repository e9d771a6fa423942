//! Abuse limits at the edge: per-client-address rate limits on the anonymous sign-in routes,
//! per-caller rate limits on the authenticated API, the cap on waiting sign-in sockets, and the
//! sign-in socket's `Origin` allow-list (settings `TTSCM_EDGE__…`, see
//! [`ttscm_runtime::settings::EdgeSettings`]).
//!
//! Rates are `governor`'s keyed GCRA limiters rather than hand-written buckets: a well-kept
//! crate whose arithmetic is tested, one atomic state per key, and `retain_recent` to forget
//! keys whose allowance is full again. [`Limits::prune`] runs that every [`PRUNE_INTERVAL`]
//! (from [`crate::run`]), so the memory held is bounded by the keys active in the last
//! interval plus the time their allowance takes to refill.
//!
//! A client address is [`crate::routes::client_ip`] (the peer, or the forwarded client when the
//! peer is a trusted proxy), the same rule as the audit log's `clientIp`; an IPv6 client is
//! counted per /64, the block one host normally holds.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use ttscm_runtime::Settings;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use crate::envelope;

/// How often the limiters forget the keys whose allowance is full again.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a client refused by the socket cap is asked to wait.
const SOCKET_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Which allowance a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Starting or finishing a sign-in, per client address.
    SignIn,
    /// The authenticated API: per caller, or per client address before a caller is known
    /// (refresh).
    Api,
}

/// A request over its allowance: answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until the next request would be let through.
    pub retry_after: Duration,
}

impl Throttled {
    /// The 429 in the error envelope, with `Retry-After` in whole seconds (at least 1).
    pub fn response(self) -> Response {
        let seconds = retry_seconds(self.retry_after);
        let message = format!("Too many requests; try again in {seconds} s");
        with_retry_after(
            envelope::error(StatusCode::TOO_MANY_REQUESTS, &message, &[]),
            seconds,
        )
    }
}

/// Whole seconds to wait, rounded up, at least 1.
fn retry_seconds(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(seconds));
    response
}

/// The cap of waiting sign-in sockets is reached: answered 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketsFull;

impl SocketsFull {
    /// The 503 in the error envelope.
    pub fn response(self) -> Response {
        with_retry_after(
            envelope::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins are waiting on this server; try again shortly",
                &[],
            ),
            retry_seconds(SOCKET_RETRY_AFTER),
        )
    }
}

/// The edge's limits (one per edge process; each replica counts on its own).
#[derive(Debug)]
pub struct Limits {
    /// Anonymous sign-in routes, by client address; `None` when turned off.
    sign_in: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// The authenticated API by caller (principal id); `None` when turned off.
    api_callers: Option<DefaultKeyedRateLimiter<String>>,
    /// The authenticated API by client address, before a caller is known (refresh).
    api_addresses: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Permits for waiting sign-in sockets.
    sockets: Arc<Semaphore>,
    /// Origins whose pages may open the sign-in socket (normalized by [`origin_of`]).
    origins: Vec<String>,
    /// Whether a socket without `Origin` (a native client) is accepted.
    native_clients: bool,
}

/// A keyed limiter of `quota` (`None`: no limit).
fn limiter<K>(quota: Option<Quota>) -> Option<DefaultKeyedRateLimiter<K>>
where
    K: std::hash::Hash + Eq + Clone,
{
    quota.map(RateLimiter::keyed)
}

/// `per_period` requests (0: no limit) a `per` period, `burst` at once.
fn quota(per_period: u32, burst: u32, per: fn(NonZeroU32) -> Quota) -> Option<Quota> {
    let rate = NonZeroU32::new(per_period)?;
    Some(per(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
}

impl Limits {
    /// The limits `settings` set.
    pub fn new(settings: &Settings) -> Self {
        let edge = &settings.edge;
        let sign_in = quota(edge.sign_in_per_minute, edge.sign_in_burst, Quota::per_minute);
        let api = quota(edge.api_per_second, edge.api_burst, Quota::per_second);
        let mut origins: Vec<String> = origin_of(&settings.public_url).into_iter().collect();
        origins.extend(edge.sign_in_origins.iter().filter_map(|o| origin_of(o)));
        Self {
            sign_in: limiter(sign_in),
            api_callers: limiter(api),
            api_addresses: limiter(api),
            sockets: Arc::new(Semaphore::new(edge.max_waiting_sockets)),
            origins,
            native_clients: edge.native_clients,
        }
    }

    /// Spends one request of `allowance` for the client at `address` (`None`: the peer is
    /// unknown, which warp's server never gives; not limited).
    pub fn by_address(&self, allowance: Allowance, address: Option<IpAddr>) -> Result<(), Throttled> {
        let limiter = match allowance {
            Allowance::SignIn => &self.sign_in,
            Allowance::Api => &self.api_addresses,
        };
        match (limiter, address) {
            (Some(limiter), Some(address)) => spend(limiter, &address_key(address)),
            _ => Ok(()),
        }
    }

    /// Spends one API request of the caller `principal_id` (a `&String`: the limiter's keys
    /// are `String`s, and a `&str` would cost a copy per request).
    #[allow(clippy::ptr_arg)]
    pub fn by_caller(&self, principal_id: &String) -> Result<(), Throttled> {
        match &self.api_callers {
            Some(limiter) => spend(limiter, principal_id),
            None => Ok(()),
        }
    }

    /// A permit for one waiting sign-in socket (held until the socket closes), unless the cap
    /// of waiting sockets is reached.
    pub fn socket_permit(&self) -> Result<OwnedSemaphorePermit, SocketsFull> {
        self.sockets.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("a sign-in socket was refused: too many are waiting");
            SocketsFull
        })
    }

    /// Whether a sign-in socket whose request carried `origin` may open: a browser's page
    /// origin must be on the allow-list; no `Origin` at all (a native client) only when
    /// native clients are enabled.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => self.native_clients,
            Some(origin) => origin_of(origin).is_some_and(|o| self.origins.contains(&o)),
        }
    }

    /// The origins allowed to call from a browser page on another site (CORS) and to open the
    /// sign-in socket: `TTSCM_PUBLIC_URL`'s and `TTSCM_EDGE__SIGN_IN_ORIGINS`.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Whether native clients (no `Origin`, a confirmation step at the redirect) are enabled.
    pub fn native_clients(&self) -> bool {
        self.native_clients
    }

    /// Forgets the keys whose allowance is full again (see the module documentation).
    pub fn prune(&self) {
        for limiter in [&self.sign_in, &self.api_addresses].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.api_callers {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys held by the limiters (for tests and diagnostics).
    pub fn tracked_keys(&self) -> usize {
        self.sign_in.as_ref().map_or(0, RateLimiter::len)
            + self.api_addresses.as_ref().map_or(0, RateLimiter::len)
            + self.api_callers.as_ref().map_or(0, RateLimiter::len)
    }
}

/// Spends one request of `key`'s allowance (the limiter copies the key only the first time
/// it sees it).
fn spend<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Throttled> {
    limiter.check_key(key).map_err(|not_until| Throttled {
        retry_after: not_until.wait_time_from(limiter.clock().now()),
    })
}

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// What a browser page on an origin not allowed is told (CORS requests and the sign-in socket).
pub const ORIGIN_REFUSED: &str = "This origin may not call TTSCM from a browser or open its sign-in socket (see TTSCM_EDGE__SIGN_IN_ORIGINS)";

/// The origin (`scheme://host[:port]`, lowercase, default port left out) of a URL or of an
/// `Origin` header; `None` for anything else (including the opaque origin `null`).
pub fn origin_of(url: &str) -> Option<String> {
    let uri: warp::http::Uri = url.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some(match uri.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(configure: impl FnOnce(&mut Settings)) -> Settings {
        let mut settings = Settings {
            public_url: "http://localhost:3000/".into(),
            ..Settings::default()
        };
        configure(&mut settings);
        settings
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port_only() {
        assert_eq!(
            origin_of("HTTP://LocalHost:3000/"),
            Some("http://localhost:3000".into())
        );
        assert_eq!(
            origin_of("https://app.example.com:443"),
            Some("https://app.example.com".into())
        );
        assert_eq!(
            origin_of("https://app.example.com/path"),
            Some("https://app.example.com".into())
        );
        assert_eq!(origin_of("null"), None);
        assert_eq!(origin_of("file:///etc/passwd"), None);
        assert_eq!(origin_of("ws://localhost:3000"), None);
    }

    #[test]
    fn the_public_origin_and_the_listed_ones_may_open_the_socket() {
        let limits = Limits::new(&settings(|s| {
            s.edge.sign_in_origins = vec!["https://app.example.com".into()]
        }));
        assert!(limits.origin_allowed(Some("http://localhost:3000")));
        assert!(limits.origin_allowed(Some("https://app.example.com")));
        assert!(!limits.origin_allowed(Some("https://evil.example.com")));
        assert!(!limits.origin_allowed(Some("http://localhost:3001")));
        assert!(!limits.origin_allowed(Some("null")));
        assert!(!limits.origin_allowed(None), "native clients are off by default");
        let native = Limits::new(&settings(|s| s.edge.native_clients = true));
        assert!(native.origin_allowed(None));
    }

    #[test]
    fn an_address_over_its_burst_waits_and_others_do_not() {
        let limits = Limits::new(&settings(|s| {
            s.edge.sign_in_per_minute = 6;
            s.edge.sign_in_burst = 2;
        }));
        let one: IpAddr = "192.0.2.1".parse().expect("an address");
        let other: IpAddr = "192.0.2.2".parse().expect("an address");
        assert!(limits.by_address(Allowance::SignIn, Some(one)).is_ok());
        assert!(limits.by_address(Allowance::SignIn, Some(one)).is_ok());
        let throttled = limits
            .by_address(Allowance::SignIn, Some(one))
            .expect_err("the burst is spent");
        // 6 a minute: the next one in at most 10 s.
        assert!(throttled.retry_after <= Duration::from_secs(10), "{throttled:?}");
        assert!(limits.by_address(Allowance::SignIn, Some(other)).is_ok());
        // The API allowance is separate.
        assert!(limits.by_address(Allowance::Api, Some(one)).is_ok());
    }

    #[test]
    fn an_ipv6_host_is_counted_per_slash_64() {
        let limits = Limits::new(&settings(|s| {
            s.edge.sign_in_per_minute = 1;
            s.edge.sign_in_burst = 1;
        }));
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("an address");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("an address");
        let next_64: IpAddr = "2001:db8:1:3::1".parse().expect("an address");
        assert!(limits.by_address(Allowance::SignIn, Some(first)).is_ok());
        assert!(limits.by_address(Allowance::SignIn, Some(same_64)).is_err());
        assert!(limits.by_address(Allowance::SignIn, Some(next_64)).is_ok());
    }

    #[test]
    fn a_zero_rate_turns_a_limit_off() {
        let limits = Limits::new(&settings(|s| {
            s.edge.sign_in_per_minute = 0;
            s.edge.api_per_second = 0;
        }));
        let address: IpAddr = "192.0.2.1".parse().expect("an address");
        for _ in 0..1000 {
            assert!(limits.by_address(Allowance::SignIn, Some(address)).is_ok());
            assert!(limits.by_caller(&"token-1".to_owned()).is_ok());
        }
        assert_eq!(limits.tracked_keys(), 0);
    }

    #[test]
    fn pruning_forgets_callers_whose_allowance_is_full_again() {
        let limits = Limits::new(&settings(|s| {
            s.edge.api_per_second = 1_000_000;
            s.edge.api_burst = 1;
        }));
        for n in 0..100 {
            assert!(limits.by_caller(&format!("token-{n}")).is_ok());
        }
        assert_eq!(limits.tracked_keys(), 100);
        // One request refills in a microsecond at this rate: poll until pruning drops them all.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while limits.tracked_keys() > 0 && std::time::Instant::now() < deadline {
            limits.prune();
        }
        assert_eq!(limits.tracked_keys(), 0);
    }

    #[test]
    fn the_socket_cap_refuses_with_503_and_frees_with_the_permit() {
        let limits = Limits::new(&settings(|s| s.edge.max_waiting_sockets = 1));
        let permit = limits.socket_permit().expect("one may wait");
        let refused = limits.socket_permit().expect_err("the cap is reached").response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "10");
        drop(permit);
        assert!(limits.socket_permit().is_ok());
    }

    #[test]
    fn a_throttled_answer_is_the_error_envelope_with_retry_after() {
        let response = Throttled {
            retry_after: Duration::from_millis(1500),
        }
        .response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(retry_seconds(Duration::ZERO), 1);
        assert_eq!(retry_seconds(Duration::from_secs(3)), 3);
    }
}
