//! Signed principals: who a request is for, vouched for by the component that may say so.
//!
//! In the mesh a principal travels in the `ttscm-principal` bus header as a compact JWT (EdDSA,
//! `jsonwebtoken`) signed with the issuing component's principal key:
//!
//! - users' and API tokens' principals are issued by the **edge** only (it authenticated them);
//! - a component's **service principal** ([`Principal::service`]) — the caller of work it
//!   starts itself — is issued by that component only, and is exactly that principal.
//!
//! Every service verifies the header before acting ([`MeshAuth::verify`]) and forwards it
//! unchanged when it passes the request on, so a component can act only as a user it was sent
//! by, for at most [`PRINCIPAL_TTL`]. Verified headers are cached by their exact text until they
//! expire, so the signature check stays off the hot path. Embedded mode (in-process bus) carries
//! principals unsigned: nothing outside the process can reach its bus.
//!
//! **Replay.** A header is not bound to one request (that would cost a signature per request on
//! the edge and a verification per request in every service). It is short-lived instead, and
//! bus permissions keep it from anyone but the services the edge sends it to: only a service's
//! NATS user may subscribe to its request subjects, and each component reads only its own
//! reply inbox. So a header can be replayed only by a component it was sent to, within a
//! minute, against operations that component may call anyway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use ttscm_contract::{Component, Principal, PrincipalKind};

use crate::cache::Cache;

/// How long a signed principal is valid. The edge signs a caller's principal once per cached
/// authentication (at most [`MAX_SIGNED_REUSE`]), so every header it sends has at least 30 s
/// left: enough for a request and the calls it makes, short for a replay.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(60);
/// How long a signer reuses one signed header (the edge's authentication cache is capped here).
pub const MAX_SIGNED_REUSE: Duration = Duration::from_secs(30);
/// Clock skew tolerated between components.
const LEEWAY_SECS: u64 = 5;
/// The audience of every signed principal.
const AUDIENCE: &str = "ttscm-mesh";
/// The JWT type of a signed principal (so no other token of ours passes as one).
const TOKEN_TYPE: &str = "ttscm-principal+jwt";
/// Verified headers kept at most.
const MAX_VERIFIED: usize = 10_000;

/// Why a principal header was refused (logged; the caller gets one generic answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The operation needs a principal and the request carried none.
    #[error("no principal")]
    Missing,
    /// Not a signed principal (malformed, unsigned, wrong type or audience).
    #[error("malformed principal")]
    Malformed,
    /// Issued by a component that is not trusted.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The signature does not verify with the issuer's keys.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// The issuer may not vouch for this principal (a user not issued by the edge, or a service
    /// principal other than the issuer's own).
    #[error("issuer may not vouch for this principal")]
    NotItsToVouch,
}

pub use crate::ed25519::KeyError;

/// A component's principal-signing key (`TTSCM_MESH__PRINCIPAL_KEY`); `Debug` never shows the
/// private half.
pub type PrincipalKey = crate::ed25519::Ed25519Key;

/// The setting a principal key comes from.
pub const PRINCIPAL_KEY_SETTING: &str = "TTSCM_MESH__PRINCIPAL_KEY";

/// Parses `TTSCM_MESH__TRUSTED_KEYS`: `component:base64url` entries separated by commas.
pub fn parse_trusted_keys(text: &str) -> Result<Vec<(Component, Vec<u8>)>, KeyError> {
    let mut keys = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || {
            KeyError(format!(
                "TTSCM_MESH__TRUSTED_KEYS: `{entry}` is not `component:base64url-public-key` \
                 (components: edge, identity, company-sync, credential, vault)"
            ))
        };
        let (name, key) = entry.split_once(':').ok_or_else(bad)?;
        let component = Component::from_name(name.trim()).ok_or_else(bad)?;
        let key = URL_SAFE_NO_PAD.decode(key.trim()).map_err(|_| bad())?;
        if key.len() != 32 {
            return Err(bad());
        }
        keys.push((component, key));
    }
    if keys.is_empty() {
        return Err(KeyError("TTSCM_MESH__TRUSTED_KEYS lists no key".into()));
    }
    Ok(keys)
}

/// The claims of a signed principal.
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: Component,
    aud: String,
    iat: u64,
    exp: u64,
    prn: Principal,
}

/// One component's view of the mesh's principals: the key it signs with (as `component`) and
/// the keys it trusts, per issuer.
pub struct MeshAuth {
    component: Component,
    signing: EncodingKey,
    trusted: HashMap<Component, Vec<DecodingKey>>,
    validation: Validation,
    verified: Cache<Arc<str>, Arc<Principal>>,
    /// This component's own service principal, signed, and when it was signed.
    service: Mutex<Option<(Instant, Arc<str>)>>,
}

impl std::fmt::Debug for MeshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshAuth")
            .field("component", &self.component)
            .field("issuers", &self.trusted.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MeshAuth {
    /// `component` signing with `key` and trusting `trusted`. Fails when `key`'s public half is
    /// not among the keys trusted for `component` (a mix-up of generated files).
    pub fn new(
        component: Component,
        key: &PrincipalKey,
        trusted: &[(Component, Vec<u8>)],
    ) -> Result<Self, KeyError> {
        if !trusted
            .iter()
            .any(|(c, k)| *c == component && k.as_slice() == key.public())
        {
            return Err(KeyError(format!(
                "TTSCM_MESH__PRINCIPAL_KEY is not the key TTSCM_MESH__TRUSTED_KEYS lists for {component}: \
                 use the files `ttscm mesh init` wrote for this component"
            )));
        }
        let mut by_issuer: HashMap<Component, Vec<DecodingKey>> = HashMap::new();
        for (issuer, public) in trusted {
            by_issuer
                .entry(*issuer)
                .or_default()
                .push(DecodingKey::from_ed_der(public));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Ok(Self {
            component,
            signing: key.encoding_key(),
            trusted: by_issuer,
            validation,
            verified: Cache::new(PRINCIPAL_TTL, MAX_VERIFIED),
            service: Mutex::new(None),
        })
    }

    /// One process running every component on one connection: a key made now, trusted for
    /// every component (nothing outside the process holds it).
    pub fn ephemeral() -> Self {
        let key = PrincipalKey::generate();
        let trusted: Vec<_> = Component::ALL
            .iter()
            .map(|c| (*c, key.public().to_vec()))
            .collect();
        Self::new(Component::Edge, &key, &trusted).expect("the key is trusted for the edge")
    }

    /// The component this signs as.
    pub fn component(&self) -> Component {
        self.component
    }

    /// Signs `principal` as this component, valid for [`PRINCIPAL_TTL`].
    pub fn sign(&self, principal: &Principal) -> String {
        let now = crate::clock::unix_now();
        let claims = Claims {
            iss: self.component,
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + PRINCIPAL_TTL.as_secs(),
            prn: principal.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.component.name().to_owned());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .expect("Ed25519 signing of serializable claims cannot fail")
    }

    /// This component's service principal, signed (re-signed once it is half its life old).
    pub fn service_header(&self) -> Arc<str> {
        let mut held = self.service.lock();
        if let Some((signed_at, header)) = held.as_ref()
            && signed_at.elapsed() < MAX_SIGNED_REUSE
        {
            return header.clone();
        }
        let header: Arc<str> = self.sign(&Principal::service(self.component)).into();
        *held = Some((Instant::now(), header.clone()));
        header
    }

    /// The principal a header vouches for, if its issuer may vouch for it, its signature
    /// verifies and it has not expired.
    pub fn verify(&self, header: &str) -> Result<(Arc<Principal>, Arc<str>), Refusal> {
        if let Some((text, principal)) = self.verified.get_key_value(header) {
            return Ok((principal, text));
        }
        let decoded = jsonwebtoken::decode_header(header).map_err(|_| Refusal::Malformed)?;
        if decoded.alg != Algorithm::EdDSA || decoded.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(Refusal::Malformed);
        }
        let issuer = decoded
            .kid
            .as_deref()
            .and_then(Component::from_name)
            .ok_or(Refusal::Malformed)?;
        let keys = self.trusted.get(&issuer).ok_or(Refusal::UnknownIssuer)?;
        let mut last = Refusal::BadSignature;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(header, key, &self.validation) {
                Ok(token) => return self.accept(issuer, header, token.claims),
                Err(error) => {
                    last = match error.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => return Err(Refusal::Expired),
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::BadSignature,
                        _ => Refusal::Malformed,
                    }
                }
            }
        }
        Err(last)
    }

    fn accept(
        &self,
        issuer: Component,
        header: &str,
        claims: Claims,
    ) -> Result<(Arc<Principal>, Arc<str>), Refusal> {
        if claims.iss != issuer {
            return Err(Refusal::Malformed);
        }
        let allowed = match claims.prn.kind {
            PrincipalKind::User | PrincipalKind::ApiToken => issuer == Component::Edge,
            PrincipalKind::Service => claims.prn == Principal::service(issuer),
            PrincipalKind::Anonymous => false,
        };
        if !allowed {
            return Err(Refusal::NotItsToVouch);
        }
        let left = claims.exp.saturating_sub(crate::clock::unix_now());
        let principal = Arc::new(claims.prn);
        let text: Arc<str> = Arc::from(header);
        self.verified
            .insert_for(text.clone(), principal.clone(), Duration::from_secs(left));
        Ok((principal, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttscm_contract::{Permission, PermissionSet};

    fn user() -> Principal {
        Principal {
            id: "u1".into(),
            kind: PrincipalKind::User,
            name: "Zoë".into(),
            permissions: PermissionSet::new(vec![Permission::parse("credential.fetch").unwrap()]),
            scopes: Vec::new(),
            session_id: Some("s1".into()),
        }
    }

    struct Mesh {
        keys: HashMap<Component, PrincipalKey>,
        trusted: Vec<(Component, Vec<u8>)>,
    }

    fn mesh() -> Mesh {
        let keys: HashMap<_, _> = Component::ALL
            .iter()
            .map(|c| (*c, PrincipalKey::generate()))
            .collect();
        let trusted = keys.iter().map(|(c, k)| (*c, k.public().to_vec())).collect();
        Mesh { keys, trusted }
    }

    fn auth(mesh: &Mesh, component: Component) -> MeshAuth {
        MeshAuth::new(component, &mesh.keys[&component], &mesh.trusted).unwrap()
    }

    #[test]
    fn the_edge_vouches_for_users_and_each_component_for_itself_only() {
        let mesh = mesh();
        let edge = auth(&mesh, Component::Edge);
        let credential = auth(&mesh, Component::Credential);
        let vault = auth(&mesh, Component::Vault);

        let (principal, _) = vault
            .verify(&edge.sign(&user()))
            .expect("the edge vouches for a user");
        assert_eq!(*principal, user());
        let (service, _) = vault
            .verify(&credential.service_header())
            .expect("its own service principal");
        assert_eq!(*service, Principal::service(Component::Credential));

        assert_eq!(
            vault.verify(&credential.sign(&user())),
            Err(Refusal::NotItsToVouch)
        );
        assert_eq!(
            vault.verify(&credential.sign(&Principal::service(Component::Edge))),
            Err(Refusal::NotItsToVouch)
        );
        let mut greedy = Principal::service(Component::Credential);
        greedy.permissions = PermissionSet::new(vec![Permission::parse("*").unwrap()]);
        assert_eq!(
            vault.verify(&credential.sign(&greedy)),
            Err(Refusal::NotItsToVouch)
        );
    }

    #[test]
    fn forged_altered_unsigned_and_foreign_headers_are_refused() {
        let mesh = mesh();
        let edge = auth(&mesh, Component::Edge);
        let credential = auth(&mesh, Component::Credential);
        let signed = edge.sign(&user());

        // Altered: the payload swapped for one granting everything, the signature kept.
        let parts: Vec<&str> = signed.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["prn"]["permissions"] = serde_json::json!(["*"]);
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        assert_eq!(credential.verify(&altered), Err(Refusal::BadSignature));

        // Forged: signed by a key nobody trusts, claiming to be the edge.
        let stranger = Mesh {
            keys: [(Component::Edge, PrincipalKey::generate())].into(),
            trusted: Vec::new(),
        };
        let mut trusted = mesh.trusted.clone();
        trusted.push((Component::Edge, stranger.keys[&Component::Edge].public().to_vec()));
        let forger = MeshAuth::new(Component::Edge, &stranger.keys[&Component::Edge], &trusted).unwrap();
        assert_eq!(
            credential.verify(&forger.sign(&user())),
            Err(Refusal::BadSignature)
        );

        // The unsigned form embedded mode uses, and junk.
        let unsigned = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&user()).unwrap());
        assert_eq!(credential.verify(&unsigned), Err(Refusal::Malformed));
        assert_eq!(credential.verify("a.b.c"), Err(Refusal::Malformed));
    }

    #[test]
    fn an_expired_principal_is_refused() {
        let mesh = mesh();
        let edge = auth(&mesh, Component::Edge);
        let credential = auth(&mesh, Component::Credential);
        let past = crate::clock::unix_now() - 3600;
        let claims = Claims {
            iss: Component::Edge,
            aud: AUDIENCE.into(),
            iat: past,
            exp: past + 60,
            prn: user(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some("edge".into());
        let expired = jsonwebtoken::encode(&header, &claims, &edge.signing).unwrap();
        assert_eq!(credential.verify(&expired), Err(Refusal::Expired));
    }

    #[test]
    fn a_key_must_be_the_one_trusted_for_its_component() {
        let mesh = mesh();
        let wrong = MeshAuth::new(Component::Edge, &mesh.keys[&Component::Vault], &mesh.trusted);
        assert!(wrong.is_err());
        let text: String = mesh
            .trusted
            .iter()
            .map(|(c, k)| format!("{c}:{}", URL_SAFE_NO_PAD.encode(k)))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_trusted_keys(&text).unwrap().len(), Component::ALL.len());
        assert!(parse_trusted_keys("edge:abc").is_err());
        assert!(parse_trusted_keys("janitor:AAAA").is_err());
    }
}
