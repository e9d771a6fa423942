//! The NATS bus adapter (`async-nats`): core request-reply with queue groups, and the JetStream
//! stream `TTSCM_EVENTS` over `ttscm.events.>` for events. Replies larger than the server's
//! `max_payload` travel in chunks ([`chunks`]).

mod chunks;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ConnectOptions, RequestErrorKind};
use bytes::Bytes;
use secrecy::ExposeSecret;
use ttscm_contract::subjects::{EVENTS_ALL, EVENTS_PREFIX, EVENTS_STREAM};

use super::{BusError, Headers, Message, Requests, RequestsInner, Subscription, SubscriptionInner};
use crate::principal::MeshAuth;
use crate::settings::NatsSettings;
pub(crate) use chunks::respond;

/// `async-nats`' reply inbox prefix when the connection sets none.
const DEFAULT_INBOX_PREFIX: &str = "_INBOX";

/// How long events are kept in the stream for subscribers that replay.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A NATS connection.
#[derive(Clone, Debug)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream_replicas: usize,
    /// How principals are signed and verified on this connection (`None`: unsigned, as on the
    /// in-process bus — only for tests of the bus itself).
    auth: Option<Arc<MeshAuth>>,
    /// Chunks of replies too large for one message, on their way to the requests collecting
    /// them; the largest reply a request accepts.
    chunks: Arc<chunks::ChunkInbox>,
    /// Stops routing chunks when the last clone of this connection is dropped.
    _chunk_router: Arc<tokio_util::sync::DropGuard>,
}

/// Applies the authentication and TLS `security` asks for.
async fn secured(options: ConnectOptions, security: &NatsSettings) -> Result<ConnectOptions, BusError> {
    let mut options = match security {
        NatsSettings {
            user: Some(user),
            password: Some(password),
            ..
        } => options.user_and_password(user.clone(), password.expose_secret().to_owned()),
        NatsSettings {
            token: Some(token), ..
        } => options.token(token.expose_secret().to_owned()),
        NatsSettings {
            nkey_seed: Some(seed),
            ..
        } => options.nkey(seed.expose_secret().to_owned()),
        NatsSettings {
            creds_file: Some(path),
            ..
        } => options.credentials_file(path).await.map_err(|error| {
            BusError::Other(format!(
                "cannot read the NATS credentials file {}: {error}",
                path.display()
            ))
        })?,
        _ => options,
    };
    if let Some(ca) = &security.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&security.tls_cert, &security.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(security.tls_required))
}

/// Permission violations NATS reported on this process's bus connections (tests assert none).
static PERMISSION_VIOLATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many permission violations NATS reported on this process's bus connections so far: a
/// component doing something its generated permissions do not allow.
pub fn permission_violations() -> u64 {
    PERMISSION_VIOLATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Logs what the connection reports: a refusal by the server (a permission violation means the
/// component did something its NATS user may not — a bug, or a stale generated configuration).
fn note_event(event: async_nats::Event) {
    match event {
        async_nats::Event::ServerError(error) => {
            let text = error.to_string();
            if text.to_ascii_lowercase().contains("permissions violation") {
                PERMISSION_VIOLATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::warn!(error = %text, "NATS refused an operation");
        }
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        async_nats::Event::Connected => tracing::info!("connected to NATS"),
        other => tracing::debug!(event = %other, "NATS connection event"),
    }
}

impl NatsBus {
    /// Connects to `url`. The first connection is retried in the background, so a component can
    /// start before NATS does; until connected, requests fail fast with [`BusError::Disconnected`].
    ///
    /// `security` says how to authenticate and what TLS to use ([`NatsSettings`]); secrets go to
    /// the client only, never to a log or an error.
    pub async fn connect(url: &str, name: &str, security: &NatsSettings) -> Result<Self, BusError> {
        Self::connect_with_inbox(url, name, security, None).await
    }

    /// [`NatsBus::connect`] with reply inboxes under `inbox_prefix` (a component's own,
    /// `_INBOX_<component>`, the only inboxes its NATS user may subscribe to).
    pub async fn connect_with_inbox(
        url: &str,
        name: &str,
        security: &NatsSettings,
        inbox_prefix: Option<String>,
    ) -> Result<Self, BusError> {
        let mut options = secured(ConnectOptions::new(), security).await?;
        let chunks_pattern = chunks::chunks_pattern(inbox_prefix.as_deref().unwrap_or(DEFAULT_INBOX_PREFIX));
        if let Some(prefix) = inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        let client = options
            .event_callback(|event| async move { note_event(event) })
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| BusError::Other(format!("cannot connect to NATS: {e}")))?;
        let jetstream = jetstream::new(client.clone());
        // Subscribed once, before any request: chunks sent to nobody would be lost.
        let chunk_subscriber = client
            .subscribe(chunks_pattern)
            .await
            .map_err(|e| BusError::Other(format!("cannot subscribe to reply chunks: {e}")))?;
        let max_reply = usize::try_from(security.max_reply_bytes).unwrap_or(usize::MAX);
        let chunks = Arc::new(chunks::ChunkInbox::new(max_reply));
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(chunks.clone().route(chunk_subscriber, stop.clone()));
        let bus = Self {
            client,
            jetstream,
            stream_replicas: 1,
            auth: None,
            chunks,
            _chunk_router: Arc::new(stop.drop_guard()),
        };
        Ok(bus)
    }

    /// Signs and verifies principals with `auth` (every component in the mesh does).
    pub fn with_auth(mut self, auth: MeshAuth) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// How principals are signed and verified on this connection.
    pub fn auth(&self) -> Option<&Arc<MeshAuth>> {
        self.auth.as_ref()
    }

    /// Creates streams with `replicas` copies (at least 1).
    pub fn with_stream_replicas(mut self, replicas: usize) -> Self {
        self.stream_replicas = replicas.max(1);
        self
    }

    /// How many copies of each stream TTSCM creates.
    pub fn stream_replicas(&self) -> usize {
        self.stream_replicas
    }

    /// Creates the events stream if it is absent.
    /// Whether a failed event publish means the events stream does not exist. "No responders"
    /// says so; an unanswered ack may too — a core subscriber on the subject keeps the server
    /// from answering "no responders" — so then one stream lookup decides (an overloaded server
    /// that does not answer it either: not missing, the event goes to the outbox).
    async fn events_stream_missing(&self, error: &jetstream::context::PublishError) -> bool {
        use jetstream::context::{GetStreamErrorKind, PublishErrorKind};
        match error.kind() {
            PublishErrorKind::StreamNotFound => true,
            PublishErrorKind::TimedOut => matches!(
                self.jetstream.get_stream(EVENTS_STREAM).await.map_err(|e| e.kind()),
                Err(GetStreamErrorKind::JetStream(e))
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ),
            _ => false,
        }
    }

    pub async fn ensure_events_stream(&self) -> Result<(), BusError> {
        self.jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: EVENTS_STREAM.to_owned(),
                subjects: vec![EVENTS_ALL.to_owned()],
                max_age: EVENTS_MAX_AGE,
                storage: jetstream::stream::StorageType::File,
                num_replicas: self.stream_replicas,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| BusError::Other(format!("cannot create stream {EVENTS_STREAM}: {e}")))
    }

    /// Waits until the connection is up or `deadline` passes; answers whether it is up.
    pub async fn wait_connected(&self, deadline: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while !self.is_connected() {
            if start.elapsed() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The underlying client, for tests and JetStream consumers.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub(super) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn check_payload(&self, payload: &Bytes) -> Result<(), BusError> {
        let max = self.client.server_info().max_payload;
        if max > 0 && payload.len() > max {
            return Err(BusError::PayloadTooLarge {
                size: payload.len(),
                max,
            });
        }
        Ok(())
    }

    /// Sends a request on the client's muxed inbox and waits for its reply until `timeout`: the
    /// one message, or, when it starts a chunked reply, the whole reply ([`chunks`]).
    pub(super) async fn request(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        if !self.is_connected() {
            return Err(BusError::Disconnected);
        }
        self.check_payload(&payload)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(to_nats_headers(&headers))
            .timeout(Some(timeout));
        match self.client.send_request(subject.to_owned(), request).await {
            Ok(message) if chunks::is_chunked(&message) => {
                match self.chunks.collect(subject, message, deadline).await {
                    Err(BusError::TimedOut { .. }) if !self.is_connected() => Err(BusError::Disconnected),
                    collected => collected,
                }
            }
            Ok(message) => Ok(Message {
                subject: message.subject.to_string(),
                headers: from_nats_headers(message.headers.as_ref()),
                payload: message.payload,
            }),
            Err(error) => Err(match error.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders {
                    subject: subject.to_owned(),
                },
                RequestErrorKind::TimedOut => {
                    if self.is_connected() {
                        BusError::TimedOut {
                            subject: subject.to_owned(),
                        }
                    } else {
                        BusError::Disconnected
                    }
                }
                _ => BusError::Other(error.to_string()),
            }),
        }
    }

    pub(super) async fn serve(&self, subject: &str, queue: &str) -> Result<Requests, BusError> {
        let subscriber = self
            .client
            .queue_subscribe(subject.to_owned(), queue.to_owned())
            .await
            .map_err(|e| BusError::Other(e.to_string()))?;
        Ok(Requests(RequestsInner::Nats {
            client: self.client.clone(),
            subscriber,
            max_reply: self.chunks.max_reply(),
        }))
    }

    pub(super) async fn publish(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.check_payload(&payload)?;
        let is_event = subject
            .strip_prefix(EVENTS_PREFIX)
            .is_some_and(|rest| rest.starts_with('.'));
        if !is_event {
            return self
                .client
                .publish_with_headers(subject.to_owned(), to_nats_headers(&headers), payload)
                .await
                .map_err(|e| BusError::Other(e.to_string()));
        }
        if !self.is_connected() {
            return Err(BusError::Disconnected);
        }
        let mut created_stream = false;
        loop {
            let ack = self
                .jetstream
                .publish_with_headers(subject.to_owned(), to_nats_headers(&headers), payload.clone())
                .await
                .map_err(|e| BusError::Other(e.to_string()))?;
            match ack.await {
                Ok(_) => return Ok(()),
                // No stream captures the subject yet (first start, or the stream was deleted).
                // Only then: an unanswered ack from an overloaded server is not published again
                // here — that would add a second publish (and its wait) to the load; the caller
                // keeps the event in its outbox, and `Nats-Msg-Id` makes a stored twin harmless.
                Err(error) if !created_stream && self.events_stream_missing(&error).await => {
                    tracing::info!(%error, "event not stored; creating the events stream and retrying");
                    self.ensure_events_stream().await?;
                    created_stream = true;
                }
                Err(error) => return Err(BusError::Other(error.to_string())),
            }
        }
    }

    pub(super) async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        let subscriber = self
            .client
            .subscribe(pattern.to_owned())
            .await
            .map_err(|e| BusError::Other(e.to_string()))?;
        Ok(Subscription(SubscriptionInner::Nats(subscriber)))
    }
}

pub(super) fn to_nats_headers(headers: &Headers) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers.iter() {
        map.insert(name, value);
    }
    map
}

pub(super) fn from_nats_headers(headers: Option<&async_nats::HeaderMap>) -> Headers {
    let mut out = Headers::new();
    if let Some(map) = headers {
        for (name, values) in map.iter() {
            if let Some(value) = values.first() {
                out.insert(name.to_string(), value.as_str());
            }
        }
    }
    out
}

/// The next batch of a JetStream pull consumer (the audit copier's, the webhook component's):
/// waits for the first message — `None` when `shutdown` comes first — then gathers what
/// arrives within `window`, up to `max`, so one store write covers many messages. Answers the
/// batch and, when the consumer's stream ended or failed, why (the caller handles the batch,
/// then starts over).
pub async fn next_batch(
    messages: &mut jetstream::consumer::pull::Stream,
    max: usize,
    window: Duration,
    shutdown: &crate::Shutdown,
) -> Option<(Vec<jetstream::Message>, Option<String>)> {
    use futures_util::StreamExt;
    let mut next = tokio::select! {
        () = shutdown.cancelled() => return None,
        next = messages.next() => next,
    };
    let mut batch = Vec::new();
    let until = tokio::time::Instant::now() + window;
    loop {
        match next {
            None => return Some((batch, Some("the consumer ended".to_owned()))),
            Some(Err(error)) => return Some((batch, Some(error.to_string()))),
            Some(Ok(message)) => batch.push(message),
        }
        if batch.len() >= max {
            return Some((batch, None));
        }
        match tokio::time::timeout_at(until, messages.next()).await {
            Ok(more) => next = more,
            Err(_) => return Some((batch, None)),
        }
    }
}
