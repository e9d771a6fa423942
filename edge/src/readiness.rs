//! `GET /readyz` as anyone sees it: the full check ([`crate::misc_routes::readiness`]) asks
//! every service over the bus, so an anonymous caller gets only its outcome — 200 "Ready" or
//! 503 "Not ready", no component names or error text — reused for
//! `TTSCM_EDGE__READINESS_CACHE_MS` (a "not ready" a fifth as long), with one check at a time.
//! A caller presenting a valid token (an operator, a monitoring job with an API token) gets the
//! fresh per-component report.

use std::time::Duration;

use ttscm_contract::WireError;
use ttscm_runtime::cache::Cache;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::envelope;
use crate::routes::{Input, RequestCtx, RouteSpec};

/// The last public readiness outcome, and the lock that lets one request at a time check.
#[derive(Debug)]
pub struct Readiness {
    /// `true` when ready; one entry (key `()`).
    outcome: Cache<(), bool>,
    /// How long a "ready" is reused.
    ttl: Duration,
    /// Held while one request checks; the others wait for its outcome instead of fanning out.
    checking: tokio::sync::Mutex<()>,
}

impl Readiness {
    /// Reuses an outcome for `ttl` (a "not ready" for a fifth of it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            outcome: Cache::new(ttl, 1),
            ttl,
            checking: tokio::sync::Mutex::new(()),
        }
    }

    /// The reused outcome, or `check`'s (then kept).
    async fn ready(&self, check: impl Future<Output = bool>) -> bool {
        if let Some(ready) = self.outcome.get(&()) {
            return ready;
        }
        let _checking = self.checking.lock().await;
        if let Some(ready) = self.outcome.get(&()) {
            return ready;
        }
        let ready = check.await;
        let ttl = if ready { self.ttl } else { self.ttl / 5 };
        self.outcome.insert_for((), ready, ttl);
        ready
    }
}

/// `GET /readyz`: the public outcome, or the detailed report for an authenticated caller (401
/// when the token presented is not valid).
pub(crate) async fn readiness(
    mut ctx: RequestCtx,
    route: &'static RouteSpec,
    input: Input,
) -> Result<Response, WireError> {
    if ctx.authorization.is_some() {
        ctx.authorize(&[]).await?;
        return crate::misc_routes::readiness(ctx, route, input).await;
    }
    let state = ctx.state.clone();
    let check = async move {
        crate::misc_routes::readiness(ctx, route, input)
            .await
            .is_ok_and(|response| response.status() == StatusCode::OK)
    };
    Ok(if state.readiness.ready(check).await {
        envelope::success(route.status, route.message, &serde_json::Value::Null)
    } else {
        envelope::error(StatusCode::SERVICE_UNAVAILABLE, "Not ready", &[])
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outcome_is_reused_for_its_time_and_not_ready_for_a_fifth_of_it() {
        let readiness = Readiness::new(Duration::from_secs(1));
        let checks = AtomicUsize::new(0);
        let check = |ready: bool| {
            let checks = &checks;
            async move {
                checks.fetch_add(1, Ordering::SeqCst);
                ready
            }
        };
        assert!(readiness.ready(check(true)).await);
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(readiness.ready(check(false)).await, "the ready is reused");
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!readiness.ready(check(false)).await, "checked again after 1 s");
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(
            !readiness.ready(check(true)).await,
            "the not-ready is reused for 200 ms"
        );
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(readiness.ready(check(true)).await);
        assert_eq!(checks.load(Ordering::SeqCst), 3);
    }
}
