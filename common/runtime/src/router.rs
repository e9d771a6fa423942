//! A service's operations, declared once: [`ServiceRouter`].
//!
//! Every service builds its router in one function (`router()` in its `lib.rs`) — a health
//! operation, then one `.op::<Operation>()` line per operation it serves — and `run` serves it.
//! The handler of an operation is its [`ServiceOp`] impl, next to the code it uses. Because the
//! router can be built without any state, a test lists what every service serves
//! ([`ServiceRouter::subjects`]) and walks the contract's own operation list
//! ([`ttscm_contract::operations`]): an operation nobody serves, or two services serve, fails
//! that test instead of answering 503 "no responders" at run time.
//!
//! Adding an operation: a contract type declared with `operation!`, a `ServiceOp` impl, one
//! `.op::<NewOperation>()` line here, and an edge route.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;
use ttscm_contract::Operation;
use ttscm_contract::health::HealthReply;

use crate::bus::Message;
use crate::service::{ServiceOp, serve_fn, serve_op};
use crate::{Bus, BusError, Shutdown, Store, StoreError};

/// Why a service could not start: what `run` of every service answers.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or invalid (the CLI exits with code 64).
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What starting one operation's serving loop returns.
type Serving<'a> = Pin<Box<dyn Future<Output = Result<JoinHandle<()>, BusError>> + Send + 'a>>;

/// Starts one operation's serving loop.
type ServeOne<S> = for<'a> fn(&'a Bus, &'static str, Arc<S>, Shutdown) -> Serving<'a>;

/// One declared operation.
struct Route<S> {
    /// The operation's request type, for messages.
    name: &'static str,
    /// The subject it is served on.
    subject: &'static str,
    /// The components that may call it.
    callers: &'static [ttscm_contract::Component],
    /// Starts serving it.
    serve: ServeOne<S>,
}

/// A plain (non-request) subscription of a service, e.g. another replica's change notice.
struct Listener<S> {
    /// The subject pattern.
    pattern: &'static str,
    /// What each message does to the state.
    handle: fn(&S, &Message),
}

/// A job a service runs beside its operations until shutdown (e.g. draining an outbox).
type Job<S> = fn(Arc<S>, Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The operations one service serves on its state `S`, plus its health check, the plain
/// subscriptions it listens to and the jobs it runs beside them: everything the service does
/// with the bus and in the background, in one place.
pub struct ServiceRouter<S> {
    /// The service's name, as the health reply reports it.
    service: &'static str,
    /// The queue group every replica of the service joins.
    queue: &'static str,
    /// The health operation's subject.
    health: &'static str,
    /// Who calls the health operation.
    health_callers: &'static [ttscm_contract::Component],
    /// Serves the health operation.
    serve_health: ServeHealth,
    /// The declared operations, in declaration order.
    routes: Vec<Route<S>>,
    /// The declared listeners.
    listeners: Vec<Listener<S>>,
    /// The declared background jobs.
    jobs: Vec<Job<S>>,
    /// Subjects the service publishes on (not requests: announcements, events, audit entries).
    publishes: Vec<&'static str>,
    /// JetStream streams the service uses.
    streams: Vec<StreamUse>,
}

/// How a component uses a JetStream stream (NATS permissions are generated from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamUse {
    /// The stream's name.
    pub stream: &'static str,
    /// Whether it reads the stream through a durable consumer (otherwise it only creates the
    /// stream and publishes into it).
    pub consumes: bool,
}

/// Everything a component does on the bus, as NATS permissions need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusUse {
    /// Subjects it serves requests on (in its queue group) or listens to.
    pub subscribes: Vec<&'static str>,
    /// Subjects it publishes on besides requests to operations (announcements, events).
    pub publishes: Vec<&'static str>,
    /// Streams it uses.
    pub streams: Vec<StreamUse>,
    /// The components whose requests it answers: it publishes its replies into their inboxes
    /// (`_INBOX_<component>.>`; the reply subjects carry random tokens only the requester and
    /// the answering service see).
    pub answers: Vec<ttscm_contract::Component>,
}

/// Starts the health operation's serving loop: reports `service` and whether `store` answers.
type ServeHealth = for<'a> fn(&'a Bus, &'static str, &'static str, Option<Store>, Shutdown) -> Serving<'a>;

impl<S> std::fmt::Debug for ServiceRouter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRouter")
            .field("service", &self.service)
            .field(
                "operations",
                &self.routes.iter().map(|r| r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S: Send + Sync + 'static> ServiceRouter<S> {
    /// A router for `service` serving in queue group `queue`, answering the health operation `H`
    /// (every service has one: its name and whether its store answers a ping).
    pub fn new<H>(service: &'static str, queue: &'static str) -> Self
    where
        H: Operation<Reply = HealthReply>,
    {
        Self {
            service,
            queue,
            health: H::SUBJECT,
            health_callers: H::CALLERS,
            serve_health: serve_health::<H>,
            routes: Vec::new(),
            listeners: Vec::new(),
            jobs: Vec::new(),
            publishes: Vec::new(),
            streams: Vec::new(),
        }
    }

    /// Declares a subject the service publishes on (an announcement other replicas listen to,
    /// the events, the audit entries): its NATS user may publish there.
    #[must_use]
    pub fn publishes(mut self, subject: &'static str) -> Self {
        self.publishes.push(subject);
        self
    }

    /// Declares a JetStream stream the service creates and publishes into, and reads through a
    /// durable consumer when `consumes`.
    #[must_use]
    pub fn stream(mut self, stream: &'static str, consumes: bool) -> Self {
        self.streams.push(StreamUse { stream, consumes });
        self
    }

    /// Every component that calls one of its operations (the health operation's included).
    fn answers(&self) -> Vec<ttscm_contract::Component> {
        let mut callers: Vec<_> = self
            .health_callers
            .iter()
            .chain(self.routes.iter().flat_map(|r| r.callers.iter()))
            .copied()
            .collect();
        callers.sort_unstable();
        callers.dedup();
        callers
    }

    /// What the service does on the bus.
    pub fn bus_use(&self) -> BusUse {
        BusUse {
            subscribes: self.subjects().chain(self.listens_to()).collect(),
            publishes: self.publishes.clone(),
            streams: self.streams.clone(),
            answers: self.answers(),
        }
    }

    /// Declares that this service serves `O` with its [`ServiceOp`] impl.
    ///
    /// # Panics
    /// When `O`'s subject is declared twice (a programming error the first test run shows).
    #[must_use]
    pub fn op<O: ServiceOp<S>>(mut self) -> Self {
        assert!(
            O::SUBJECT != self.health && self.routes.iter().all(|r| r.subject != O::SUBJECT),
            "{} is declared twice in the {} router",
            std::any::type_name::<O>(),
            self.service
        );
        self.routes.push(Route {
            name: std::any::type_name::<O>(),
            subject: O::SUBJECT,
            callers: O::CALLERS,
            serve: serve_route::<O, S>,
        });
        self
    }

    /// Declares a plain subscription to `pattern` (NATS wildcards allowed): each message is
    /// handed to `handle` with the service's state, in order, until shutdown. For notices that
    /// need no reply, such as another replica's "this changed".
    #[must_use]
    pub fn listen(mut self, pattern: &'static str, handle: fn(&S, &Message)) -> Self {
        self.listeners.push(Listener { pattern, handle });
        self
    }

    /// Declares a job that runs beside the operations from `serve` until shutdown.
    #[must_use]
    pub fn background(mut self, job: Job<S>) -> Self {
        self.jobs.push(job);
        self
    }

    /// The patterns of the plain subscriptions this router listens to.
    pub fn listens_to(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.listeners.iter().map(|l| l.pattern)
    }

    /// The service's name.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Every subject this router serves, the health operation's included.
    pub fn subjects(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.health).chain(self.routes.iter().map(|r| r.subject))
    }

    /// Serves every declared operation with `state` until `shutdown`; the health operation
    /// pings `store` (`None`: a service without a store). Answers the serving loops' handles.
    pub async fn serve(
        self,
        bus: &Bus,
        state: Arc<S>,
        store: Option<Store>,
        shutdown: Shutdown,
    ) -> Result<Vec<JoinHandle<()>>, BusError> {
        // The components that publish events create their stream (NATS may not be up yet: then
        // the first event published creates it).
        if let Bus::Nats(nats) = bus
            && self
                .streams
                .iter()
                .any(|s| s.stream == ttscm_contract::subjects::EVENTS_STREAM)
            && bus.is_connected()
            && let Err(error) = nats.ensure_events_stream().await
        {
            tracing::warn!(%error, "events stream not ensured at start");
        }
        let mut tasks = Vec::with_capacity(self.routes.len() + self.listeners.len() + self.jobs.len() + 1);
        // Listeners first: a change announced while the operations start is not missed.
        for listener in &self.listeners {
            let subscription = bus.subscribe(listener.pattern).await?;
            let (state, handle) = (state.clone(), listener.handle);
            tasks.push(tokio::spawn(
                subscription.for_each_until(shutdown.clone(), move |message| handle(&state, &message)),
            ));
        }
        for route in &self.routes {
            tasks.push((route.serve)(bus, self.queue, state.clone(), shutdown.clone()).await?);
        }
        tasks.push((self.serve_health)(bus, self.queue, self.service, store, shutdown.clone()).await?);
        for job in &self.jobs {
            tasks.push(tokio::spawn(job(state.clone(), shutdown.clone())));
        }
        Ok(tasks)
    }
}

fn serve_route<'a, O: ServiceOp<S>, S: Send + Sync + 'static>(
    bus: &'a Bus,
    queue: &'static str,
    state: Arc<S>,
    shutdown: Shutdown,
) -> Serving<'a> {
    Box::pin(serve_op::<O, S>(bus, queue, state, shutdown))
}

fn serve_health<'a, H: Operation<Reply = HealthReply>>(
    bus: &'a Bus,
    queue: &'static str,
    service: &'static str,
    store: Option<Store>,
    shutdown: Shutdown,
) -> Serving<'a> {
    Box::pin(serve_fn::<H, _, _>(bus, queue, shutdown, move |_, _| {
        let store = store.clone();
        async move {
            let store_ok = match &store {
                Some(store) => Some(store.ping().await.is_ok()),
                None => None,
            };
            Ok(HealthReply {
                service: service.into(),
                store_ok,
            })
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use ttscm_contract::health::CredentialHealth;
    use ttscm_contract::{ErrorCode, WireError};

    use super::*;
    use crate::Headers;
    use crate::bus::inproc::InProcBus;
    use crate::service::{BusClient, CallContext};

    /// Test-only operation (not declared with `operation!`, so not in the contract's list).
    #[derive(Debug, Serialize, Deserialize)]
    struct Double(u32);

    impl Operation for Double {
        const SUBJECT: &'static str = "ttscm.test.v1.double";
        type Reply = u32;
    }

    #[derive(Debug, Default)]
    struct State {
        heard: AtomicUsize,
        jobs_running: AtomicUsize,
    }

    impl ServiceOp<State> for Double {
        async fn run(self, _: Arc<State>, _: CallContext) -> Result<u32, WireError> {
            self.0
                .checked_mul(2)
                .ok_or_else(|| WireError::new(ErrorCode::Validation, "too large"))
        }
    }

    fn router() -> ServiceRouter<State> {
        ServiceRouter::new::<CredentialHealth>("test", "test-queue")
            .op::<Double>()
            .listen("ttscm.test.v1.changed.>", |state, _| {
                state.heard.fetch_add(1, Ordering::SeqCst);
            })
            .background(|state, shutdown| {
                Box::pin(async move {
                    state.jobs_running.fetch_add(1, Ordering::SeqCst);
                    shutdown.cancelled().await;
                    state.jobs_running.fetch_sub(1, Ordering::SeqCst);
                })
            })
    }

    #[test]
    fn a_router_lists_its_health_operation_operations_and_listeners() {
        let router = router();
        let subjects: Vec<_> = router.subjects().collect();
        assert_eq!(subjects, [CredentialHealth::SUBJECT, Double::SUBJECT]);
        assert_eq!(
            router.listens_to().collect::<Vec<_>>(),
            ["ttscm.test.v1.changed.>"]
        );
        assert_eq!(router.service(), "test");
    }

    #[test]
    fn declaring_an_operation_twice_is_refused() {
        let twice = std::panic::catch_unwind(|| router().op::<Double>());
        assert!(twice.is_err(), "a second .op::<Double>() must be refused");
    }

    #[tokio::test]
    async fn a_served_router_answers_operations_and_health_hears_its_listeners_and_runs_its_jobs() {
        let bus = Bus::InProc(InProcBus::new());
        let state = Arc::new(State::default());
        let shutdown = Shutdown::new();
        let tasks = router()
            .serve(&bus, state.clone(), None, shutdown.clone())
            .await
            .expect("serves");
        let client = BusClient::new(bus.clone(), Duration::from_secs(2));
        let ctx = CallContext::new(None);
        assert_eq!(client.call(&ctx, &Double(21)).await.expect("answers"), 42);
        let refused = client.call(&ctx, &Double(u32::MAX)).await.expect_err("too large");
        assert_eq!(refused.code, ErrorCode::Validation);
        let health = client.call(&ctx, &CredentialHealth {}).await.expect("health");
        assert_eq!(health.service, "test");
        assert_eq!(health.store_ok, None);

        bus.publish("ttscm.test.v1.changed.one", Headers::new(), bytes::Bytes::new())
            .await
            .expect("published");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while state.heard.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listener never heard the notice"
            );
            tokio::task::yield_now().await;
        }

        while state.jobs_running.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the background job never started"
            );
            tokio::task::yield_now().await;
        }

        shutdown.cancel();
        for task in tasks {
            task.await.expect("a serving loop ends on shutdown");
        }
        assert_eq!(
            state.jobs_running.load(Ordering::SeqCst),
            0,
            "the job stopped on shutdown"
        );
        let after = client
            .call(&ctx, &Double(1))
            .await
            .expect_err("nobody serves after shutdown");
        assert_eq!(after.code, ErrorCode::Unavailable);
    }
}
