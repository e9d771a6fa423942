//! Every bus subject and queue group, in one place. Subjects are versioned:
//! `ttscm.<service>.v1.<verb>`; events are `ttscm.events.<aggregate>.<action>`.

/// Queue group of the identity service.
pub const IDENTITY_QUEUE: &str = "identity";
/// Queue group of the company-sync service.
pub const COMPANY_SYNC_QUEUE: &str = "company-sync";
/// Queue group of the credential service.
pub const CREDENTIAL_QUEUE: &str = "credential";
/// Queue group of the vault service.
pub const VAULT_QUEUE: &str = "vault";
/// Queue group of the webhook component.
pub const WEBHOOK_QUEUE: &str = "webhook";

/// Identity: resolve an API token (by its hash) to a principal.
pub const IDENTITY_AUTHENTICATE_TOKEN: &str = "ttscm.identity.v1.authenticate_token";
/// Identity: the public keys access tokens are verified with.
pub const IDENTITY_PUBLIC_KEYS: &str = "ttscm.identity.v1.public_keys";
/// Identity: start a sign-in (authorization URL + callback key).
pub const IDENTITY_LOGIN_BEGIN: &str = "ttscm.identity.v1.login_begin";
/// Identity: whether a sign-in is pending for a callback key (the WebSocket asks).
pub const IDENTITY_LOGIN_CHECK: &str = "ttscm.identity.v1.login_check";
/// Identity: finish a sign-in from the provider's redirect.
pub const IDENTITY_LOGIN_COMPLETE: &str = "ttscm.identity.v1.login_complete";
/// Identity: give up a socket's claim on a pending sign-in.
pub const IDENTITY_LOGIN_RELEASE: &str = "ttscm.identity.v1.login_release";
/// Identity: how a pending sign-in is bound (not consuming it).
pub const IDENTITY_LOGIN_DESCRIBE: &str = "ttscm.identity.v1.login_describe";
/// Identity: rotate a refresh token.
pub const IDENTITY_REFRESH: &str = "ttscm.identity.v1.refresh";
/// Identity: revoke a sign-in session.
pub const IDENTITY_LOGOUT: &str = "ttscm.identity.v1.logout";
/// Identity: the current principal of a user's session (roles resolved now).
pub const IDENTITY_RESOLVE_SESSION: &str = "ttscm.identity.v1.resolve_session";
/// Identity: the caller's user.
pub const IDENTITY_ME_GET: &str = "ttscm.identity.v1.me_get";
/// Identity: update the caller's user.
pub const IDENTITY_ME_UPDATE: &str = "ttscm.identity.v1.me_update";
/// Identity: list users.
pub const IDENTITY_USER_LIST: &str = "ttscm.identity.v1.user_list";
/// Identity: set a user's roles.
pub const IDENTITY_USER_ROLES_SET: &str = "ttscm.identity.v1.user_roles_set";
/// Identity: list roles.
pub const IDENTITY_ROLE_LIST: &str = "ttscm.identity.v1.role_list";
/// Identity: create a role.
pub const IDENTITY_ROLE_CREATE: &str = "ttscm.identity.v1.role_create";
/// Identity: update a role.
pub const IDENTITY_ROLE_UPDATE: &str = "ttscm.identity.v1.role_update";
/// Identity: delete a role.
pub const IDENTITY_ROLE_DELETE: &str = "ttscm.identity.v1.role_delete";
/// Identity: a user changed (payload: the user id); every identity replica drops it from its
/// user cache. Published, not requested; not an event (no stream keeps it).
pub const IDENTITY_USER_CHANGED: &str = "ttscm.identity.v1.user_changed";
/// Credential: credentials changed (payload: a credential id, or `*` for every credential); every
/// credential replica drops them from its cache. Published, not requested; not an event.
pub const CREDENTIAL_CHANGED: &str = "ttscm.credential.v1.changed";
/// Edge: delivery of a finished sign-in to the WebSocket waiting on it. The last token is the
/// SHA-256 (hex) of the callback key, never the key itself; only the edge replica holding that
/// WebSocket serves it.
pub const EDGE_LOGIN_DELIVERY_PREFIX: &str = "ttscm.edge.v1.login";
/// Identity: health (store reachable).
pub const IDENTITY_HEALTH: &str = "ttscm.identity.v1.health";

/// Company-sync: company summaries by id.
pub const COMPANY_SUMMARIES: &str = "ttscm.company-sync.v1.summaries";
/// Company-sync: health (store reachable).
pub const COMPANY_SYNC_HEALTH: &str = "ttscm.company-sync.v1.health";
/// Company-sync: a page of companies (search, pagination).
pub const COMPANY_LIST: &str = "ttscm.company-sync.v1.list";
/// Company-sync: one company by id.
pub const COMPANY_GET: &str = "ttscm.company-sync.v1.get";
/// Company-sync: create a manual company.
pub const COMPANY_CREATE: &str = "ttscm.company-sync.v1.create";
/// Company-sync: rename a manual company.
pub const COMPANY_UPDATE: &str = "ttscm.company-sync.v1.update";
/// Company-sync: delete a manual company.
pub const COMPANY_DELETE: &str = "ttscm.company-sync.v1.delete";
/// Company-sync: run a ConnectWise sync now.
pub const COMPANY_SYNC_RUN: &str = "ttscm.company-sync.v1.sync_run";
/// Company-sync: the last sync's report.
pub const COMPANY_SYNC_STATUS: &str = "ttscm.company-sync.v1.sync_status";
/// Company-sync: a company's ConnectWise configurations.
pub const COMPANY_CONFIGURATIONS: &str = "ttscm.company-sync.v1.configurations";
/// Check a ConnectWise ticket for a ticket-bound reveal.
pub const COMPANY_CHECK_TICKET: &str = "ttscm.company-sync.v1.check-ticket";
/// Queue an internal note on a ConnectWise ticket.
pub const COMPANY_QUEUE_TICKET_NOTE: &str = "ttscm.company-sync.v1.queue-ticket-note";

/// Credential: list credential types.
pub const CREDENTIAL_TYPE_LIST: &str = "ttscm.credential.v1.type_list";
/// Credential: get a credential type.
pub const CREDENTIAL_TYPE_GET: &str = "ttscm.credential.v1.type_get";
/// Credential: create a credential type.
pub const CREDENTIAL_TYPE_CREATE: &str = "ttscm.credential.v1.type_create";
/// Credential: update a credential type.
pub const CREDENTIAL_TYPE_UPDATE: &str = "ttscm.credential.v1.type_update";
/// Credential: delete a credential type (cascading).
pub const CREDENTIAL_TYPE_DELETE: &str = "ttscm.credential.v1.type_delete";
/// Credential: credentials of a type.
pub const CREDENTIAL_LIST_BY_TYPE: &str = "ttscm.credential.v1.list_by_type";
/// Credential: credentials of a company.
pub const CREDENTIAL_LIST_BY_COMPANY: &str = "ttscm.credential.v1.list_by_company";
/// Credential: credentials across companies (e.g. those due for rotation).
pub const CREDENTIAL_LIST: &str = "ttscm.credential.v1.list";
/// Credential: how many credentials a company has.
pub const CREDENTIAL_COUNT_BY_COMPANY: &str = "ttscm.credential.v1.count_by_company";
/// Credential: get a credential.
pub const CREDENTIAL_GET: &str = "ttscm.credential.v1.get";
/// Credential: create a credential.
pub const CREDENTIAL_CREATE: &str = "ttscm.credential.v1.create";
/// Credential: rename a credential.
pub const CREDENTIAL_UPDATE: &str = "ttscm.credential.v1.update";
/// Credential: replace a credential's values.
pub const CREDENTIAL_FIELDS_UPDATE: &str = "ttscm.credential.v1.fields_update";
/// Credential: a credential's values, secure ones sealed.
pub const CREDENTIAL_FIELDS_GET: &str = "ttscm.credential.v1.fields_get";
/// Credential: reveal secure values (audited).
pub const CREDENTIAL_REVEAL: &str = "ttscm.credential.v1.reveal";
/// The current code of a credential's `totp` field.
pub const CREDENTIAL_TOTP: &str = "ttscm.credential.v1.totp";
/// A credential's versions.
pub const CREDENTIAL_HISTORY: &str = "ttscm.credential.v1.history";
/// Reveal a past version's secure values.
pub const CREDENTIAL_HISTORY_REVEAL: &str = "ttscm.credential.v1.history_reveal";
/// Restore a past version.
pub const CREDENTIAL_RESTORE: &str = "ttscm.credential.v1.restore";
/// Check every credential's version against the audit log.
pub const CREDENTIAL_VERIFY_VERSIONS: &str = "ttscm.credential.v1.verify_versions";
/// Credential: delete a credential.
pub const CREDENTIAL_DELETE: &str = "ttscm.credential.v1.delete";
/// Credential: query the audit log.
pub const AUDIT_LIST: &str = "ttscm.credential.v1.audit_list";
/// Credential: verify the audit chain.
pub const AUDIT_VERIFY: &str = "ttscm.credential.v1.audit_verify";
/// Credential: the newest signed checkpoint of the audit chain.
pub const AUDIT_CHECKPOINT_GET: &str = "ttscm.credential.v1.audit_checkpoint_get";
/// Credential: sign the audit chain's head now.
pub const AUDIT_CHECKPOINT_CREATE: &str = "ttscm.credential.v1.audit_checkpoint_create";
/// Credential: what an actor revealed that is still in use (the exposure report).
pub const AUDIT_EXPOSURE: &str = "ttscm.credential.v1.audit_exposure";
/// Credential: mark an actor's exposed credentials due for rotation.
pub const AUDIT_EXPOSURE_MARK: &str = "ttscm.credential.v1.audit_exposure_mark";
/// Credential: health (store reachable).
pub const CREDENTIAL_HEALTH: &str = "ttscm.credential.v1.health";

/// Vault: seal values with the active key.
pub const VAULT_SEAL: &str = "ttscm.vault.v1.seal";
/// Vault: open sealed values.
pub const VAULT_UNSEAL: &str = "ttscm.vault.v1.unseal";
/// Compute a TOTP code from a sealed seed (the seed stays in vault).
pub const VAULT_TOTP: &str = "ttscm.vault.v1.totp";
/// Vault: re-seal values with the active key.
pub const VAULT_RESEAL: &str = "ttscm.vault.v1.reseal";
/// Vault: sign a head of the audit chain (a checkpoint).
pub const VAULT_SIGN_AUDIT_HEAD: &str = "ttscm.vault.v1.sign_audit_head";
/// Vault: the public key checkpoints are signed with.
pub const VAULT_CHECKPOINT_KEY: &str = "ttscm.vault.v1.checkpoint_key";
/// Vault: seal a webhook endpoint's signing secret.
pub const VAULT_WEBHOOK_SEAL: &str = "ttscm.vault.v1.webhook_secret_seal";
/// Vault: open a webhook endpoint's signing secrets.
pub const VAULT_WEBHOOK_OPEN: &str = "ttscm.vault.v1.webhook_secret_open";
/// Vault: health (key ring loaded).
pub const VAULT_HEALTH: &str = "ttscm.vault.v1.health";

/// Webhook: list endpoints.
pub const WEBHOOK_LIST: &str = "ttscm.webhook.v1.list";
/// Webhook: get an endpoint.
pub const WEBHOOK_GET: &str = "ttscm.webhook.v1.get";
/// Webhook: register an endpoint.
pub const WEBHOOK_CREATE: &str = "ttscm.webhook.v1.create";
/// Webhook: change an endpoint.
pub const WEBHOOK_UPDATE: &str = "ttscm.webhook.v1.update";
/// Webhook: delete an endpoint.
pub const WEBHOOK_DELETE: &str = "ttscm.webhook.v1.delete";
/// Webhook: rotate an endpoint's secret.
pub const WEBHOOK_ROTATE: &str = "ttscm.webhook.v1.rotate_secret";
/// Webhook: an endpoint's delivery log.
pub const WEBHOOK_DELIVERIES: &str = "ttscm.webhook.v1.deliveries";
/// Webhook: replay one delivery.
pub const WEBHOOK_REPLAY_ONE: &str = "ttscm.webhook.v1.replay_one";
/// Webhook: replay an endpoint's deliveries in a time range.
pub const WEBHOOK_REPLAY_RANGE: &str = "ttscm.webhook.v1.replay_range";
/// Webhook: health (store reachable).
pub const WEBHOOK_HEALTH: &str = "ttscm.webhook.v1.health";

/// Prefix of every event subject; the JetStream stream `TTSCM_EVENTS` captures `ttscm.events.>`.
pub const EVENTS_PREFIX: &str = "ttscm.events";
/// Wildcard pattern matching every event.
pub const EVENTS_ALL: &str = "ttscm.events.>";
/// Name of the JetStream stream holding events.
pub const EVENTS_STREAM: &str = "TTSCM_EVENTS";

/// Audit entries on their way to the store (mesh mode): the JetStream stream `TTSCM_AUDIT`
/// captures them until they are copied into the `audit_entries` collection.
pub const AUDIT_SUBJECT: &str = "ttscm.credential.v1.audit_entries";
/// Name of the JetStream stream holding audit entries not yet copied to the store.
pub const AUDIT_STREAM: &str = "TTSCM_AUDIT";

/// Bus header carrying an event's CloudEvent `id` (NATS's own name for it): JetStream stores a
/// message whose id it has seen within the stream's duplicate window (2 minutes) only once, so
/// an event published again (the outbox retried, two replicas draining it) is not a second copy.
pub const HEADER_EVENT_ID: &str = "Nats-Msg-Id";
/// Bus header carrying the request id.
pub const HEADER_REQUEST_ID: &str = "ttscm-request-id";
/// Bus header carrying the W3C trace context.
pub const HEADER_TRACEPARENT: &str = "traceparent";
/// Bus header carrying the caller ([`crate::Principal`], JSON then base64url).
pub const HEADER_PRINCIPAL: &str = "ttscm-principal";
/// Bus header on every message of a reply split into chunks (over NATS, a reply larger than the
/// server's `max_payload`): the chunk's place in the reply, from 0.
pub const HEADER_CHUNK_INDEX: &str = "ttscm-chunk-index";
/// Bus header on every message of a chunked reply: how many messages the reply has.
pub const HEADER_CHUNK_COUNT: &str = "ttscm-chunk-count";
/// Bus header on the first message of a chunked reply: the whole reply's size in bytes, which
/// the requester checks against its cap before collecting the rest.
pub const HEADER_REPLY_BYTES: &str = "ttscm-reply-bytes";
/// Last token of the subject a chunked reply's later messages travel on: `<reply subject>.chunks`,
/// inside the requester's inbox (the reply subject itself takes one message only).
pub const REPLY_CHUNKS_TOKEN: &str = "chunks";
