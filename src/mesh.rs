//! The mesh's NATS accounts, permissions and keys, generated from the code (`ttscm mesh init`).
//!
//! Each component gets its own NATS user (an nkey: the server holds only the public key) whose
//! permissions are derived from what the component declares: the subjects its router serves
//! and listens to, the operations whose contract names it as a caller, what it publishes, and
//! the JetStream streams it uses. Nothing else is allowed, so a component's credentials reach
//! only what it needs and the lists cannot drift from the code (the whole mesh suite runs
//! under them). Each user may subscribe only to its own reply inboxes (`_INBOX_<component>`).
//! The `integrator` user is for other MSP tools: it reads the events stream and nothing else.
//!
//! Each component also gets its principal key (see `ttscm_runtime::principal`), and every
//! component trusts every component's public principal key.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use secrecy::SecretString;
use ttscm_contract::subjects::{EVENTS_ALL, EVENTS_STREAM};
use ttscm_contract::{Component, operations};
use ttscm_runtime::principal::PrincipalKey;
use ttscm_runtime::router::BusUse;

/// The NATS account every TTSCM user lives in.
pub const ACCOUNT: &str = "TTSCM";
/// The NATS user name other MSP tools connect as (for its permissions, see [`integrator_permissions`]).
pub const INTEGRATOR: &str = "integrator";

/// What one NATS user may do.
///
/// Replies go to the requester's inbox by an explicit publish permission on the inboxes of the
/// components that call the user's operations (`_INBOX_<caller>.>`), not by NATS'
/// `allow_responses`: with it nats-server added about 0.6 ms to a mesh reveal (measured, see
/// `bench/README.md`). Reply subjects end in random tokens that only the requester and the
/// service it asked see, so the permission lets a service answer its callers, not read or
/// guess anyone's replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish on.
    pub publish: BTreeSet<String>,
    /// Subjects it may subscribe to.
    pub subscribe: BTreeSet<String>,
}

/// What `component` does on the bus, from its router (the edge: its own declaration).
pub fn bus_use(component: Component) -> BusUse {
    match component {
        Component::Edge => ttscm_edge::bus_use(),
        Component::Identity => ttscm_identity::router().bus_use(),
        Component::CompanySync => ttscm_company_sync::router().bus_use(),
        Component::Credential => ttscm_credential::router().bus_use(),
        Component::Vault => ttscm_vault::router().bus_use(),
        Component::Webhook => ttscm_webhook::router().bus_use(),
    }
}

/// The JetStream API subjects a component needs for `stream`: look it up, create it and read a
/// message by sequence (a writer of the audit chain reads the last one, the head), and, when it
/// consumes it, its durable consumers, their messages and acknowledgements. A writer that does
/// not consume cannot acknowledge (and so delete) another writer's audit entries.
fn stream_api(stream: &str, consumes: bool) -> Vec<String> {
    let mut subjects = vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.CREATE.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
    ];
    if consumes {
        subjects.extend([
            format!("$JS.API.CONSUMER.INFO.{stream}.*"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"),
            format!("$JS.ACK.{stream}.>"),
        ]);
    }
    subjects
}

/// The permissions of `component`'s NATS user, derived from the code.
pub fn permissions(component: Component) -> Permissions {
    let usage = bus_use(component);
    let mut publish: BTreeSet<String> = operations()
        .filter(|op| op.callers.contains(&component))
        .map(|op| op.subject.to_owned())
        .collect();
    publish.extend(usage.publishes.iter().map(|s| (*s).to_owned()));
    for stream in &usage.streams {
        publish.extend(stream_api(stream.stream, stream.consumes));
    }
    publish.extend(
        usage
            .answers
            .iter()
            .map(|caller| format!("{}.>", caller.inbox_prefix())),
    );
    let mut subscribe: BTreeSet<String> = usage.subscribes.iter().map(|s| (*s).to_owned()).collect();
    subscribe.insert(format!("{}.>", component.inbox_prefix()));
    Permissions { publish, subscribe }
}

/// The integrator's permissions: read the events (live, or replayed through consumers of its
/// own on `TTSCM_EVENTS`) and nothing else — no request subject, no other stream, no other
/// component's inbox, no publishing of events.
pub fn integrator_permissions() -> Permissions {
    let stream = EVENTS_STREAM;
    let publish = [
        "$JS.API.INFO".to_owned(),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.CONSUMER.INFO.{stream}.*"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.*"),
        format!("$JS.API.CONSUMER.LIST.{stream}"),
        format!("$JS.API.CONSUMER.NAMES.{stream}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.*"),
        format!("$JS.ACK.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ];
    let subscribe = [
        EVENTS_ALL.to_owned(),
        format!("_INBOX_{INTEGRATOR}.>"),
        "_INBOX.>".to_owned(),
        "ttscm.integrations.>".to_owned(),
    ];
    Permissions {
        publish: publish.into_iter().collect(),
        subscribe: subscribe.into_iter().collect(),
    }
}

/// The keys of a mesh: per component its NATS nkey and its principal key, and the integrator's
/// nkey.
pub struct MeshKeys {
    components: Vec<(Component, nkeys::KeyPair, PrincipalKey)>,
    integrator: nkeys::KeyPair,
}

impl MeshKeys {
    /// New random keys for every component and the integrator.
    pub fn generate() -> Self {
        Self {
            components: Component::ALL
                .iter()
                .map(|c| (*c, nkeys::KeyPair::new_user(), PrincipalKey::generate()))
                .collect(),
            integrator: nkeys::KeyPair::new_user(),
        }
    }

    fn of(&self, component: Component) -> &(Component, nkeys::KeyPair, PrincipalKey) {
        self.components
            .iter()
            .find(|(c, ..)| *c == component)
            .expect("every component has keys")
    }

    /// `component`'s principal key.
    pub fn principal_key(&self, component: Component) -> &PrincipalKey {
        &self.of(component).2
    }

    /// `TTSCM_MESH__TRUSTED_KEYS`: every component's public principal key.
    pub fn trusted_keys(&self) -> String {
        self.components
            .iter()
            .map(|(c, _, key)| format!("{c}:{}", key.public_base64()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `component`'s NATS nkey seed (`SU…`).
    pub fn nkey_seed(&self, component: Component) -> String {
        self.of(component)
            .1
            .seed()
            .expect("generated user keys have seeds")
    }

    /// The integrator's nkey seed.
    pub fn integrator_seed(&self) -> String {
        self.integrator.seed().expect("generated user keys have seeds")
    }

    /// The integrator's public nkey (`U…`).
    pub fn integrator_public(&self) -> String {
        self.integrator.public_key()
    }

    /// Gives `settings` `component`'s bus credentials and principal keys.
    pub fn apply(&self, component: Component, settings: &mut ttscm_runtime::Settings) {
        let (_, _, principal) = self.of(component);
        settings.nats.nkey_seed = Some(SecretString::from(self.nkey_seed(component)));
        settings.mesh.principal_key = Some(SecretString::from(principal.to_base64()));
        settings.mesh.trusted_keys = Some(self.trusted_keys());
    }

    /// `<component>.env`: the component's secrets, as environment variables.
    pub fn component_env(&self, component: Component) -> String {
        let (_, _, principal) = self.of(component);
        format!(
            "# {component}: its own NATS user and principal key. Secret: give it to {component} only.\n\
             TTSCM_NATS__NKEY_SEED={}\nTTSCM_MESH__PRINCIPAL_KEY={}\n",
            self.nkey_seed(component),
            principal.to_base64()
        )
    }

    /// `mesh.env`: what every component trusts (public).
    pub fn mesh_env(&self) -> String {
        format!(
            "# Every component's public principal key. Not secret; every component needs it.\n\
             TTSCM_MESH__TRUSTED_KEYS={}\n",
            self.trusted_keys()
        )
    }

    /// The nats-server configuration: the `TTSCM` account with JetStream and one user per
    /// component plus the integrator, each with its permissions. `tls_dir` adds a `tls` block
    /// with `tls.crt`, `tls.key` and `ca.crt` from that directory; `extra_users` are appended
    /// to the account's users verbatim (tests add an observer).
    pub fn nats_conf(&self, tls_dir: Option<&str>, extra_users: &str) -> String {
        let mut conf = String::new();
        conf.push_str(
            "# Generated by `ttscm mesh init`: TTSCM's NATS users and permissions, derived from the\n\
             # code. Regenerate rather than edit. Holds public keys only.\n\
             listen: 0.0.0.0:4222\nhttp: 0.0.0.0:8222\n\
             # Replies as large as a page of credentials with long notes (NATS' advised ceiling).\n\
             max_payload: 8MB\n\
             jetstream {\n  store_dir: \"/data\"\n}\n",
        );
        if let Some(dir) = tls_dir {
            let _ = write!(
                conf,
                "tls {{\n  cert_file: \"{dir}/tls.crt\"\n  key_file: \"{dir}/tls.key\"\n  ca_file: \"{dir}/ca.crt\"\n}}\n"
            );
        }
        let _ = writeln!(
            conf,
            "accounts {{\n  {ACCOUNT} {{\n    jetstream: enabled\n    users: ["
        );
        for (component, nkey, _) in &self.components {
            let _ = writeln!(conf, "      # {component}");
            write_user(&mut conf, &nkey.public_key(), &permissions(*component));
        }
        let _ = writeln!(conf, "      # {INTEGRATOR}: other MSP tools reading the events");
        write_user(
            &mut conf,
            &self.integrator.public_key(),
            &integrator_permissions(),
        );
        conf.push_str(extra_users);
        conf.push_str("    ]\n  }\n}\n");
        conf
    }

    /// Writes every file of the mesh into `dir` (secrets readable by the owner only).
    pub fn write(&self, dir: &Path, tls_dir: Option<&str>) -> std::io::Result<Vec<String>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        let mut put = |name: String, text: String, secret: bool| -> std::io::Result<()> {
            let path = dir.join(&name);
            write_file(&path, text.as_bytes(), secret)?;
            written.push(name);
            Ok(())
        };
        put("nats.conf".into(), self.nats_conf(tls_dir, ""), false)?;
        put("mesh.env".into(), self.mesh_env(), false)?;
        for component in Component::ALL {
            put(format!("{component}.env"), self.component_env(component), true)?;
        }
        put(
            "integrator.nk".into(),
            format!("{}\n", self.integrator_seed()),
            true,
        )?;
        Ok(written)
    }
}

fn write_user(conf: &mut String, nkey: &str, permissions: &Permissions) {
    let list = |subjects: &BTreeSet<String>| {
        subjects
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(conf, "      {{");
    let _ = writeln!(conf, "        nkey: {nkey}");
    let _ = writeln!(conf, "        permissions: {{");
    let _ = writeln!(
        conf,
        "          publish: {{ allow: [{}] }}",
        list(&permissions.publish)
    );
    let _ = writeln!(
        conf,
        "          subscribe: {{ allow: [{}] }}",
        list(&permissions.subscribe)
    );
    let _ = writeln!(conf, "        }}");
    let _ = writeln!(conf, "      }}");
}

/// Writes a file, replacing it; `secret` files are created readable by the owner only.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    options.open(path)?.write_all(bytes)
}

/// A readable listing of every user's permissions (`ttscm mesh permissions`), for reviews.
pub fn describe() -> String {
    let mut out = String::new();
    let mut users: Vec<(String, Permissions)> = Component::ALL
        .iter()
        .map(|c| (c.name().to_owned(), permissions(*c)))
        .collect();
    users.push((INTEGRATOR.to_owned(), integrator_permissions()));
    for (name, permissions) in users {
        let _ = writeln!(out, "{name}:");
        let _ = writeln!(out, "  publish:");
        for subject in &permissions.publish {
            let _ = writeln!(out, "    {subject}");
        }
        let _ = writeln!(out, "  subscribe:");
        for subject in &permissions.subscribe {
            let _ = writeln!(out, "    {subject}");
        }
    }
    out
}
