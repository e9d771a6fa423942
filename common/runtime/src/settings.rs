//! Typed, layered settings: defaults → an optional TOML file (`TTSCM_CONFIG`) → environment
//! (`TTSCM_*`, nested with `__`, plus the conventional `NATS_URL` and `MONGODB_URI`). Loaded once
//! in `main` and passed down; tests build [`Settings`] values directly and never touch the
//! process environment. Secrets are [`SecretString`]s, whose `Debug` prints `[REDACTED]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object a line, for production.
    Json,
}

/// Every setting, with its default. The README's settings table lists them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address of the edge (`TTSCM_LISTEN_ADDR`, default `0.0.0.0:3000`).
    pub listen_addr: SocketAddr,
    /// Where the embedded mode keeps its store and keys (`TTSCM_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// NATS server URL (`TTSCM_NATS_URL` or `NATS_URL`); unset means the in-process bus.
    pub nats_url: Option<String>,
    /// Replicas of TTSCM's JetStream streams (`TTSCM_NATS_STREAM_REPLICAS`, default 1): 3 on a
    /// clustered NATS, so an event or an audit entry not yet copied to MongoDB survives the
    /// loss of a NATS node. Applied when a stream is created.
    pub nats_stream_replicas: usize,
    /// MongoDB URI (`TTSCM_MONGODB_URI` or `MONGODB_URI`); unset means the embedded SQLite store.
    #[serde(serialize_with = "ser_secret_opt")]
    pub mongodb_uri: Option<SecretString>,
    /// MongoDB database name (`TTSCM_MONGODB_DATABASE`, default `ttscm`).
    pub mongodb_database: String,
    /// Public base URL of the edge, used in links (`TTSCM_PUBLIC_URL`, default `http://localhost:3000`).
    pub public_url: String,
    /// Deadline of one request over the bus in milliseconds (`TTSCM_REQUEST_TIMEOUT_MS`, default 5000).
    pub request_timeout_ms: u64,
    /// Tracing filter (`TTSCM_LOG`, default `info`).
    pub log: String,
    /// `pretty` or `json` (`TTSCM_LOG_FORMAT`, default `pretty`).
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint for traces (`TTSCM_OTLP_ENDPOINT`); unset means no export.
    pub otlp_endpoint: Option<String>,
    /// Where Prometheus scrapes `/metrics` (`TTSCM_METRICS_ADDR`, e.g. `0.0.0.0:9090`): a port
    /// of its own, not the API's; one endpoint per process (embedded: for every component).
    /// Unset (the default) means no metrics endpoint and no recorder.
    pub metrics_addr: Option<SocketAddr>,
    /// Edge settings.
    pub edge: EdgeSettings,
    /// Identity settings.
    pub identity: IdentitySettings,
    /// Vault settings.
    pub vault: VaultSettings,
    /// ConnectWise Manage settings (company sync); all unset means sync is off.
    pub connectwise: ConnectWiseSettings,
    /// Microsoft Entra ID sign-in; unset means the sign-in routes answer 503.
    pub entra: EntraSettings,
    /// How to authenticate to NATS and secure the connection (`TTSCM_NATS__…`).
    pub nats: NatsSettings,
    /// Principal keys of the mesh (`TTSCM_MESH__…`): who vouches for the caller of a request.
    pub mesh: MeshSettings,
    /// The audit log (`TTSCM_AUDIT__…`): failed sign-ins recorded, signed checkpoints.
    pub audit: AuditSettings,
    /// The credential service (`TTSCM_CREDENTIAL__…`).
    pub credential: CredentialSettings,
    /// Webhook delivery (`TTSCM_WEBHOOK__…`).
    pub webhook: WebhookSettings,
}

/// Settings of the credential service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialSettings {
    /// Most credentials a list answers without `page`/`rpp`
    /// (`TTSCM_CREDENTIAL__LIST_MAX_UNPAGED`, default 10000); a longer list asked for whole is a
    /// 400 naming `page` and `rpp`.
    pub list_max_unpaged: u64,
    /// Past versions kept per credential (`TTSCM_CREDENTIAL__HISTORY_KEEP_VERSIONS`, default
    /// 50; 0: no limit by count). The current version is never pruned.
    pub history_keep_versions: u64,
    /// Days a superseded version is kept (`TTSCM_CREDENTIAL__HISTORY_KEEP_DAYS`, default 0: no
    /// limit by age). With both limits a version goes when either says so.
    pub history_keep_days: u64,
    /// Seconds between runs of the history pruning (`TTSCM_CREDENTIAL__HISTORY_PRUNE_SECS`,
    /// default 3600; 0: never in the background).
    pub history_prune_secs: u64,
    /// Seconds between the rotation scheduler's sweeps, which mark credentials due once their
    /// type's `rotationDays` have passed (`TTSCM_CREDENTIAL__ROTATION_CHECK_SECS`, default 300;
    /// 0: off — break-glass and exposure marks still apply).
    pub rotation_check_secs: u64,
}

impl Default for CredentialSettings {
    fn default() -> Self {
        Self {
            list_max_unpaged: 10_000,
            history_keep_versions: 50,
            history_keep_days: 0,
            history_prune_secs: 3600,
            rotation_check_secs: 300,
        }
    }
}

/// Settings of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Failed sign-ins (and refreshes) recorded per client address per minute
    /// (`TTSCM_AUDIT__FAILED_SIGN_INS_PER_CLIENT`, default 5); the rest are counted, and the
    /// count is recorded in one entry a minute.
    pub failed_sign_ins_per_client: u32,
    /// Failed sign-ins recorded per minute from all clients together
    /// (`TTSCM_AUDIT__FAILED_SIGN_INS_PER_MINUTE`, default 60): what bounds the log's growth
    /// when a stranger has many addresses.
    pub failed_sign_ins_per_minute: u32,
    /// Seconds between signed checkpoints of the chain's head (`TTSCM_AUDIT__CHECKPOINT_SECS`,
    /// default 60; only when the head moved; 0 turns the periodic ones off).
    pub checkpoint_secs: u64,
    /// Most entries one `GET /v1/audit/verify` checks (`TTSCM_AUDIT__VERIFY_MAX_ENTRIES`, default
    /// 100000); beyond it the answer says `complete: false` and the next call goes on.
    pub verify_max_entries: u64,
    /// SIEM export as RFC 5424 syslog over TCP, octet-counted (`TTSCM_AUDIT__SYSLOG_ADDR`,
    /// `host:port`; unset: off).
    pub syslog_addr: Option<String>,
    /// SIEM export as JSON events to a Splunk HTTP Event Collector (`TTSCM_AUDIT__HEC_URL`, e.g.
    /// `https://splunk.example:8088/services/collector/event`; unset: off).
    pub hec_url: Option<String>,
    /// The HEC token (`TTSCM_AUDIT__HEC_TOKEN`), sent as `Authorization: Splunk <token>`.
    #[serde(serialize_with = "ser_secret_opt")]
    pub hec_token: Option<SecretString>,
    /// Entries sent per batch to each SIEM sink (`TTSCM_AUDIT__EXPORT_BATCH`, default 500).
    pub export_batch: u64,
    /// Milliseconds between looks for new entries to export, and between retries after a sink
    /// failed (`TTSCM_AUDIT__EXPORT_INTERVAL_MS`, default 1000).
    pub export_interval_ms: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            failed_sign_ins_per_client: 5,
            failed_sign_ins_per_minute: 60,
            checkpoint_secs: 60,
            verify_max_entries: 100_000,
            syslog_addr: None,
            hec_url: None,
            hec_token: None,
            export_batch: 500,
            export_interval_ms: 1000,
        }
    }
}

/// Settings of webhook delivery (the webhook component).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Allow endpoints whose address is loopback, link-local, private (RFC 1918, ULA), shared
    /// (100.64/10) or unspecified (`TTSCM_WEBHOOK__ALLOW_PRIVATE`, default false: refused at
    /// registration and again at each delivery, against server-side request forgery).
    pub allow_private: bool,
    /// Allow `http://` endpoints (`TTSCM_WEBHOOK__ALLOW_HTTP`, default false: `https://` only).
    pub allow_http: bool,
    /// Failed attempts in a row after which an endpoint is disabled, with a
    /// `webhook.endpoint_disabled` event (`TTSCM_WEBHOOK__DISABLE_AFTER_FAILURES`, default 50;
    /// 0 never disables).
    pub disable_after_failures: u32,
    /// Seconds the previous secret keeps signing after a rotation
    /// (`TTSCM_WEBHOOK__ROTATION_GRACE_SECS`, default 86400).
    pub rotation_grace_secs: u64,
    /// Seconds one attempt may take (`TTSCM_WEBHOOK__TIMEOUT_SECS`, default 10).
    pub timeout_secs: u64,
    /// Deliveries in flight at once per replica (`TTSCM_WEBHOOK__CONCURRENCY`, default 32).
    pub concurrency: usize,
    /// Days the delivery log is kept (`TTSCM_WEBHOOK__KEEP_DAYS`, default 30).
    pub keep_days: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            allow_http: false,
            disable_after_failures: 50,
            rotation_grace_secs: 86_400,
            timeout_secs: 10,
            concurrency: 32,
            keep_days: 30,
        }
    }
}

/// Keys of signed principals (mesh mode). Made by `ttscm mesh init`, which writes one
/// `<component>.env` per component (its NATS nkey seed and its principal key) and `mesh.env`
/// (the public keys every component trusts).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSettings {
    /// This component's Ed25519 principal-signing key, base64 PKCS#8
    /// (`TTSCM_MESH__PRINCIPAL_KEY`); never printed. The edge signs callers' principals with
    /// it; every component signs its own service principal with it.
    #[serde(serialize_with = "ser_secret_opt")]
    pub principal_key: Option<SecretString>,
    /// The public principal keys of every component, `component:base64url,…`
    /// (`TTSCM_MESH__TRUSTED_KEYS`); a component may appear twice while its key is rotated.
    pub trusted_keys: Option<String>,
}

/// Settings of the edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// Largest request body in bytes (`TTSCM_EDGE__BODY_LIMIT`, default 1 MiB).
    pub body_limit: u64,
    /// How long a resolved API token is trusted before asking identity again, in seconds
    /// (`TTSCM_EDGE__TOKEN_CACHE_SECS`, default 5): the upper bound on how long a revoked
    /// token keeps working.
    pub token_cache_secs: u64,
    /// Reverse proxies (ingress, load balancer) whose `X-Forwarded-For` is believed
    /// (`TTSCM_EDGE__TRUSTED_PROXIES`, comma-separated IP addresses or CIDRs, default none). A
    /// request's client address (audited as `clientIp`) is its peer, unless the peer is one of
    /// these: then it is the right-most `X-Forwarded-For` address that is not one of these.
    #[serde(deserialize_with = "proxy_list")]
    pub trusted_proxies: Vec<IpNet>,
    /// Requests per minute one client address may make to the anonymous sign-in routes
    /// (`/v1/auth/uri`, `/v1/auth/ws`, `/v1/auth/redirect`) (`TTSCM_EDGE__SIGN_IN_PER_MINUTE`,
    /// default 60; 0 turns the limit off). Beyond it: 429 with `Retry-After`. IPv6 clients are
    /// counted per /64.
    pub sign_in_per_minute: u32,
    /// How many of those requests one address may make at once before the per-minute pace
    /// applies (`TTSCM_EDGE__SIGN_IN_BURST`, default 30).
    pub sign_in_burst: u32,
    /// Requests per second one caller may make to the authenticated API — per API token or
    /// user once authenticated, per client address for `/v1/auth/refresh`
    /// (`TTSCM_EDGE__API_PER_SECOND`, default 100000; 0 turns the limit off). The default is
    /// above what one edge serves on the benchmark host, so it only stops a runaway client on
    /// larger hosts; set it to what your integrations need.
    pub api_per_second: u32,
    /// How many API requests one caller may make at once before the per-second pace applies
    /// (`TTSCM_EDGE__API_BURST`, default 100000).
    pub api_burst: u32,
    /// Sign-in WebSockets one edge keeps waiting at most (`TTSCM_EDGE__MAX_WAITING_SOCKETS`,
    /// default 10000); beyond it a new socket is refused with 503 and `Retry-After`.
    pub max_waiting_sockets: usize,
    /// Web origins (`https://app.example.com`) whose pages may open the sign-in WebSocket,
    /// besides the origin of `TTSCM_PUBLIC_URL`, which always may
    /// (`TTSCM_EDGE__SIGN_IN_ORIGINS`, comma-separated, default none). A browser always sends
    /// its page's origin; any other is refused with 403.
    #[serde(deserialize_with = "origin_list")]
    pub sign_in_origins: Vec<String>,
    /// Whether a sign-in WebSocket without an `Origin` header — a native (desktop) client, not
    /// a browser — is accepted (`TTSCM_EDGE__NATIVE_CLIENTS`, default `false`).
    pub native_clients: bool,
    /// How long the public `/readyz` answer is reused, in milliseconds
    /// (`TTSCM_EDGE__READINESS_CACHE_MS`, default 1000): anonymous probes cost at most one
    /// round of health calls per period. A "not ready" answer is kept a fifth as long, so a
    /// starting server turns ready promptly. Authenticated callers get a fresh, detailed report.
    pub readiness_cache_ms: u64,
}

/// An IP network, `address/prefix` (a bare address is a `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.network, ip.to_canonical()) {
            (V4(net), V4(ip)) => mask(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32),
            (V6(net), V6(ip)) => mask(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

/// Whether `a` and `b` agree in their first `prefix` of `bits` bits.
fn mask(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a ^ b) >> shift == 0
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("'{text}' is not an IP address or CIDR (e.g. 10.0.0.0/8)");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let network = network.to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(invalid)?
            }
            Some(_) => return Err(invalid()),
        };
        Ok(Self { network, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// [`comma_list`] of [`IpNet`]s; an invalid entry is an error naming it.
fn proxy_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    comma_list(deserializer)?
        .iter()
        .map(|entry| {
            entry
                .parse()
                .map_err(|e| serde::de::Error::custom(format!("TTSCM_EDGE__TRUSTED_PROXIES: {e}")))
        })
        .collect()
}

/// [`comma_list`] of web origins (`scheme://host[:port]`, no path); an invalid entry is an error
/// naming it.
fn origin_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let origins = comma_list(deserializer)?;
    for origin in &origins {
        let (scheme, host) = origin.split_once("://").unwrap_or_default();
        if !["http", "https"].contains(&scheme.to_ascii_lowercase().as_str())
            || host.is_empty()
            || host.contains(['/', '?', '#', '@'])
        {
            return Err(serde::de::Error::custom(format!(
                "TTSCM_EDGE__SIGN_IN_ORIGINS: '{origin}' is not an origin (e.g. https://app.example.com)"
            )));
        }
    }
    Ok(origins)
}

/// Settings of the identity service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// Ed25519 private key, base64 PKCS#8 (`TTSCM_IDENTITY__SIGNING_KEY`). Required in mesh
    /// mode; generated once and kept in the data dir in embedded mode.
    #[serde(serialize_with = "ser_secret_opt")]
    pub signing_key: Option<SecretString>,
    /// Key id of the signing key (`TTSCM_IDENTITY__SIGNING_KID`).
    pub signing_kid: Option<String>,
    /// `iss` of access tokens (`TTSCM_IDENTITY__ISSUER`, default `ttscm`).
    pub issuer: String,
    /// `aud` of access tokens (`TTSCM_IDENTITY__AUDIENCE`, default `ttscm-api`).
    pub audience: String,
    /// Access-token lifetime in seconds (`TTSCM_IDENTITY__ACCESS_TOKEN_TTL_SECS`, default 900).
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime in seconds (`TTSCM_IDENTITY__REFRESH_TOKEN_TTL_SECS`, default 14
    /// days); each refresh issues a new one, so an active session keeps going.
    pub refresh_token_ttl_secs: u64,
    /// Longest a sign-in session lasts, however often it is refreshed, in seconds
    /// (`TTSCM_IDENTITY__SESSION_TTL_SECS`, default 30 days).
    pub session_ttl_secs: u64,
    /// E-mail addresses that receive the `admin` role at their first sign-in
    /// (`TTSCM_IDENTITY__ADMIN_EMAILS`, comma-separated; bootstrap). Matched against the `email`
    /// claim (else `preferred_username`) only when `TTSCM_ENTRA__TENANT_ID` is set, only for
    /// users of that tenant, and only when the sign-in creates the user; unset
    /// `TTSCM_ENTRA__TENANT_ID` (multi-tenant), they match nobody — use
    /// `TTSCM_IDENTITY__ADMIN_OBJECT_IDS` with `tid:oid` entries instead. A bootstrap grant
    /// happens once per user: an admin's later demotion sticks.
    #[serde(deserialize_with = "comma_list")]
    pub admin_emails: Vec<String>,
    /// Entra users that receive the `admin` role at sign-in
    /// (`TTSCM_IDENTITY__ADMIN_OBJECT_IDS`, comma-separated; bootstrap): `tid:oid` (tenant id
    /// and object id) entries, or bare object ids (`oid`), which match only in
    /// `TTSCM_ENTRA__TENANT_ID`'s tenant (nowhere when it is unset). Granted at the first
    /// sign-in that matches, once per user: after an admin demotes the user, later sign-ins
    /// grant nothing.
    #[serde(deserialize_with = "comma_list")]
    pub admin_object_ids: Vec<String>,
    /// Sign-ins started and not yet finished or expired that identity keeps at most
    /// (`TTSCM_IDENTITY__MAX_PENDING_LOGINS`, default 10000); beyond it `/v1/auth/uri` answers
    /// 503 with a message saying so until some finish or expire (10 minutes).
    pub max_pending_logins: u64,
}

/// How TTSCM authenticates to NATS and secures the connection. At most one way to
/// authenticate: user and password, a token, an nkey seed, or a `.creds` file (JWT + nkey, the
/// NATS operator/account model). TLS: a CA to trust (a private CA), a client certificate and key
/// (servers that verify clients), or `tls_required`; a `tls://` URL also requires TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// User name (`TTSCM_NATS__USER`), with `password`.
    pub user: Option<String>,
    /// Password (`TTSCM_NATS__PASSWORD`); never printed.
    #[serde(serialize_with = "ser_secret_opt")]
    pub password: Option<SecretString>,
    /// Authorization token (`TTSCM_NATS__TOKEN`); never printed.
    #[serde(serialize_with = "ser_secret_opt")]
    pub token: Option<SecretString>,
    /// Nkey seed, `SU…` (`TTSCM_NATS__NKEY_SEED`); never printed.
    #[serde(serialize_with = "ser_secret_opt")]
    pub nkey_seed: Option<SecretString>,
    /// Path of a `.creds` file (`TTSCM_NATS__CREDS_FILE`).
    pub creds_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for the server's certificate (`TTSCM_NATS__TLS_CA`).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (`TTSCM_NATS__TLS_CERT`), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the client certificate (`TTSCM_NATS__TLS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS (`TTSCM_NATS__TLS_REQUIRED`, default false; a `tls://`
    /// URL requires it too).
    pub tls_required: bool,
    /// Largest reply a request accepts, in bytes (`TTSCM_NATS__MAX_REPLY_BYTES`, default 256 MiB).
    /// A reply larger than the server's `max_payload` travels in chunks; this bounds what a
    /// requester collects (a broken or hostile replier cannot exhaust its memory), and a service
    /// answers a larger reply with 413 instead.
    pub max_reply_bytes: u64,
}

/// Smallest [`NatsSettings::max_reply_bytes`]: replies as large as one default NATS message.
const MIN_MAX_REPLY_BYTES: u64 = 1024 * 1024;

/// Default of [`NatsSettings::max_reply_bytes`].
pub const DEFAULT_MAX_REPLY_BYTES: u64 = 256 * 1024 * 1024;

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

impl NatsSettings {
    /// Checks that the settings name one way to authenticate and complete pairs.
    pub fn check(&self) -> Result<(), SettingsError> {
        let ways = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ];
        if ways.iter().filter(|set| **set).count() > 1 {
            return Err(SettingsError(
                "TTSCM_NATS__USER/PASSWORD, TTSCM_NATS__TOKEN, TTSCM_NATS__NKEY_SEED and \
                 TTSCM_NATS__CREDS_FILE are alternatives: set one of them"
                    .into(),
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(SettingsError(
                "TTSCM_NATS__USER and TTSCM_NATS__PASSWORD go together".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(SettingsError(
                "TTSCM_NATS__TLS_CERT and TTSCM_NATS__TLS_KEY go together".into(),
            ));
        }
        if self.max_reply_bytes < MIN_MAX_REPLY_BYTES || usize::try_from(self.max_reply_bytes).is_err() {
            return Err(SettingsError(format!(
                "TTSCM_NATS__MAX_REPLY_BYTES must be at least {MIN_MAX_REPLY_BYTES} (1 MiB, \
                 nats-server's default max_payload) and fit this machine's memory addresses"
            )));
        }
        for (name, path) in [
            ("TTSCM_NATS__CREDS_FILE", &self.creds_file),
            ("TTSCM_NATS__TLS_CA", &self.tls_ca),
            ("TTSCM_NATS__TLS_CERT", &self.tls_cert),
            ("TTSCM_NATS__TLS_KEY", &self.tls_key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(SettingsError(format!("{name}: {} is not a file", path.display())));
            }
        }
        Ok(())
    }
}

/// Settings of Microsoft Entra ID sign-in (OpenID Connect code flow). Sign-in works when
/// `tenant_id` (or `issuer`), `client_id`, `client_secret` and `redirect_url` are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntraSettings {
    /// Directory (tenant) id GUID (`TTSCM_ENTRA__TENANT_ID`); the issuer is then
    /// `https://login.microsoftonline.com/{tenant}/v2.0`.
    pub tenant_id: Option<String>,
    /// Issuer URL to use instead of the one derived from `tenant_id` (`TTSCM_ENTRA__ISSUER`):
    /// another OpenID provider, or the local one the tests run.
    pub issuer: Option<String>,
    /// Application (client) id (`TTSCM_ENTRA__CLIENT_ID`).
    pub client_id: Option<String>,
    /// Client secret (`TTSCM_ENTRA__CLIENT_SECRET`); never printed.
    #[serde(serialize_with = "ser_secret_opt")]
    pub client_secret: Option<SecretString>,
    /// The redirect URL registered with the app, ending in `/v1/auth/redirect`
    /// (`TTSCM_ENTRA__REDIRECT_URL`).
    pub redirect_url: Option<String>,
    /// Multi-tenant: accept ID tokens of these tenant ids (`TTSCM_ENTRA__ALLOWED_TENANTS`,
    /// comma-separated). Uses the `organizations` authority; `iss` must be
    /// `https://login.microsoftonline.com/{tid}/v2.0` with `tid` in this list.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_tenants: Vec<String>,
}

/// A list from either a sequence (TOML) or a comma-separated string (environment).
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::List(list) => list,
        Raw::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    }
    .into_iter()
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
    .collect())
}

/// Settings of the vault service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    /// Key ring `kid:base64key,…` with 32-byte keys (`TTSCM_VAULT__KEYS`). Required in mesh
    /// mode; generated once and kept in the data dir in embedded mode.
    #[serde(serialize_with = "ser_secret_opt")]
    pub keys: Option<SecretString>,
    /// The kid new values are sealed with (`TTSCM_VAULT__ACTIVE_KID`; default: the last key).
    pub active_kid: Option<String>,
    /// Ed25519 key that signs the audit log's checkpoints, base64 PKCS#8
    /// (`TTSCM_VAULT__CHECKPOINT_KEY`; `ttscm keys checkpoint-key` makes one). Required where
    /// `keys` is set; generated once and kept in the data dir in embedded mode.
    #[serde(serialize_with = "ser_secret_opt")]
    pub checkpoint_key: Option<SecretString>,
}

/// Settings of the ConnectWise Manage client (company-sync). Sync runs only when `site`,
/// `company_id`, `public_key`, `private_key` and `client_id` are all set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectWiseSettings {
    /// Host of the site, with or without the cloud `api-` prefix, e.g. `na.myconnectwise.net`
    /// (`TTSCM_CONNECTWISE__SITE`). A full `http(s)://` URL is taken as the base as is (tests).
    pub site: Option<String>,
    /// Codebase, e.g. `v4_6_release/` (`TTSCM_CONNECTWISE__CODEBASE`); unset means discovered
    /// through `/login/companyinfo/{companyId}`.
    pub codebase: Option<String>,
    /// The ConnectWise company id used to log in (`TTSCM_CONNECTWISE__COMPANY_ID`).
    pub company_id: Option<String>,
    /// API member public key (`TTSCM_CONNECTWISE__PUBLIC_KEY`).
    pub public_key: Option<String>,
    /// API member private key (`TTSCM_CONNECTWISE__PRIVATE_KEY`); never printed.
    #[serde(serialize_with = "ser_secret_opt")]
    pub private_key: Option<SecretString>,
    /// The integrator's client id GUID (`TTSCM_CONNECTWISE__CLIENT_ID`).
    pub client_id: Option<String>,
    /// Seconds between incremental syncs (`TTSCM_CONNECTWISE__SYNC_INTERVAL_SECS`, default 900).
    pub sync_interval_secs: u64,
    /// Seconds a ticket check's answer is reused for the same ticket
    /// (`TTSCM_CONNECTWISE__TICKET_CACHE_SECS`, default 10; 0: every check asks ConnectWise).
    pub ticket_cache_secs: u64,
}

impl Default for ConnectWiseSettings {
    fn default() -> Self {
        Self {
            site: None,
            codebase: None,
            company_id: None,
            public_key: None,
            private_key: None,
            client_id: None,
            sync_interval_secs: 900,
            ticket_cache_secs: 10,
        }
    }
}

fn ser_secret_opt<S: serde::Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    // Settings are serialized only as the defaults layer; a secret is never written back out.
    match value {
        Some(_) => serializer.serialize_some("***"),
        None => serializer.serialize_none(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 3000)),
            data_dir: PathBuf::from("./data"),
            nats_url: None,
            nats_stream_replicas: 1,
            mongodb_uri: None,
            mongodb_database: "ttscm".into(),
            public_url: "http://localhost:3000".into(),
            request_timeout_ms: 5000,
            log: "info".into(),
            log_format: LogFormat::Pretty,
            otlp_endpoint: None,
            metrics_addr: None,
            edge: EdgeSettings::default(),
            identity: IdentitySettings::default(),
            vault: VaultSettings::default(),
            connectwise: ConnectWiseSettings::default(),
            entra: EntraSettings::default(),
            nats: NatsSettings::default(),
            mesh: MeshSettings::default(),
            audit: AuditSettings::default(),
            credential: CredentialSettings::default(),
            webhook: WebhookSettings::default(),
        }
    }
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            token_cache_secs: 5,
            trusted_proxies: Vec::new(),
            sign_in_per_minute: 60,
            sign_in_burst: 30,
            api_per_second: 100_000,
            api_burst: 100_000,
            max_waiting_sockets: 10_000,
            sign_in_origins: Vec::new(),
            native_clients: false,
            readiness_cache_ms: 1000,
        }
    }
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            signing_key: None,
            signing_kid: None,
            issuer: "ttscm".into(),
            audience: "ttscm-api".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            session_ttl_secs: 30 * 24 * 3600,
            admin_emails: Vec::new(),
            admin_object_ids: Vec::new(),
            max_pending_logins: 10_000,
        }
    }
}

/// Top-level setting names, as environment keys (lowercase, after the `TTSCM_` prefix).
const KNOWN_KEYS: &[&str] = &[
    "listen_addr",
    "data_dir",
    "nats_url",
    "nats_stream_replicas",
    "mongodb_uri",
    "mongodb_database",
    "public_url",
    "request_timeout_ms",
    "log",
    "log_format",
    "otlp_endpoint",
    "metrics_addr",
    "edge",
    "identity",
    "vault",
    "connectwise",
    "entra",
    "nats",
    "mesh",
    "audit",
    "credential",
    "webhook",
];

/// Settings that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(String);

impl Settings {
    /// Loads settings from the process environment (and the file `TTSCM_CONFIG` names).
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(
            Env::var("TTSCM_CONFIG").map(PathBuf::from),
            Env::prefixed("TTSCM_").split("__"),
        )
    }

    fn load_from(file: Option<PathBuf>, env: Env) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(SettingsError(format!(
                    "settings file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only variables naming a known setting count: `TTSCM_TEST_*` and other tools' variables
        // share the prefix. Inside a section (`TTSCM_EDGE__…`) unknown keys are still errors.
        figment = figment
            .merge(Env::raw().only(&["NATS_URL", "MONGODB_URI"]))
            .merge(env.filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                let top = key
                    .split("__")
                    .next()
                    .unwrap_or_default()
                    .split('.')
                    .next()
                    .unwrap_or_default();
                KNOWN_KEYS.contains(&top)
            }));
        let mut settings: Settings = figment.extract().map_err(|e| SettingsError(e.to_string()))?;
        // Empty variables mean "unset", as they would in a shell.
        settings.nats_url = settings.nats_url.filter(|u| !u.trim().is_empty());
        settings.nats.check()?;
        settings.mongodb_uri = settings
            .mongodb_uri
            .filter(|u| !secrecy::ExposeSecret::expose_secret(u).trim().is_empty());
        Ok(settings)
    }

    /// The bus request deadline.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings =
            Settings::load_from(None, Env::prefixed("TTSCM_TEST_NOTHING_")).expect("defaults load");
        assert_eq!(settings.listen_addr.port(), 3000);
        assert_eq!(settings.nats_stream_replicas, 1);
        assert!(settings.nats_url.is_none() || std::env::var("NATS_URL").is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let settings = Settings {
            mongodb_uri: Some(SecretString::from("mongodb://user:hunter2@db/")),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    fn load_toml(toml: &str) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("ttscm.toml");
        std::fs::write(&file, toml).expect("written");
        Settings::load_from(Some(file), Env::prefixed("TTSCM_TEST_NOTHING_"))
    }

    #[test]
    fn nats_credentials_load_from_the_settings_and_stay_secret() {
        let settings = load_toml("[nats]\nuser = \"edge\"\npassword = \"pa55-word\"\ntls_required = true\n")
            .expect("valid");
        assert_eq!(settings.nats.user.as_deref(), Some("edge"));
        assert!(settings.nats.tls_required);
        assert!(!format!("{settings:?}").contains("pa55-word"));
    }

    #[test]
    fn nats_settings_name_one_way_to_authenticate_and_complete_pairs() {
        let refused = |toml: &str| load_toml(toml).expect_err(toml).to_string();
        assert!(refused("[nats]\nuser = \"u\"\npassword = \"p\"\ntoken = \"t\"\n").contains("alternatives"));
        assert!(refused("[nats]\nuser = \"u\"\n").contains("TTSCM_NATS__PASSWORD"));
        assert!(refused("[nats]\ntls_cert = \"/etc/hostname\"\n").contains("TTSCM_NATS__TLS_KEY"));
        assert!(refused("[nats]\ncreds_file = \"/nonexistent/ttscm.creds\"\n").contains("is not a file"));
        assert!(refused("[nats]\npasword = \"typo\"\n").contains("pasword"));
    }
}
