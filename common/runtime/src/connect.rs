//! Opens the bus and the store the settings ask for: NATS and MongoDB when configured, the
//! in-process bus and the embedded SQLite file otherwise.

use secrecy::ExposeSecret;

use ttscm_contract::Component;

use crate::bus::{Bus, inproc::InProcBus, nats::NatsBus};
use crate::principal::{MeshAuth, PrincipalKey, parse_trusted_keys};
use crate::settings::Settings;
use crate::store::{Store, StoreError, mongo::MongoStore, sqlite::SqliteStore};

/// File name of the embedded store inside the data dir.
pub const SQLITE_FILE: &str = "ttscm.sqlite3";

/// Connects to NATS when `nats_url` is set; otherwise a fresh in-process bus.
///
/// `component` is the one component this process runs (`serve --only`): its connection uses the
/// component's own reply inboxes (`_INBOX_<component>`) and signs as it, with the principal
/// keys the settings give (required). `None` is a process running every component on one
/// connection: it signs with a key made at start, trusted by nothing outside the process.
pub async fn bus(settings: &Settings, component: Option<Component>) -> Result<Bus, crate::BusError> {
    match &settings.nats_url {
        Some(url) => {
            let auth = mesh_auth(settings, component)?;
            let name = component.map_or("ttscm", Component::name);
            let inbox = component.map(Component::inbox_prefix);
            let bus = NatsBus::connect_with_inbox(url, name, &settings.nats, inbox)
                .await?
                .with_stream_replicas(settings.nats_stream_replicas)
                .with_auth(auth);
            if !bus.wait_connected(std::time::Duration::from_secs(2)).await {
                tracing::warn!("NATS is not reachable yet; requests answer 503 until it is");
            }
            Ok(Bus::Nats(Box::new(bus)))
        }
        None => Ok(Bus::InProc(InProcBus::new())),
    }
}

/// The principal keys of `component` from the settings (see [`bus`]).
pub fn mesh_auth(settings: &Settings, component: Option<Component>) -> Result<MeshAuth, crate::BusError> {
    let config = |message: String| crate::BusError::Other(message);
    let Some(component) = component else {
        return Ok(MeshAuth::ephemeral());
    };
    let (Some(key), Some(trusted)) = (&settings.mesh.principal_key, &settings.mesh.trusted_keys) else {
        return Err(config(format!(
            "{component} on NATS needs TTSCM_MESH__PRINCIPAL_KEY and TTSCM_MESH__TRUSTED_KEYS \
             (every request's principal is signed and verified); generate them with `ttscm mesh init`"
        )));
    };
    let key = PrincipalKey::from_base64(crate::principal::PRINCIPAL_KEY_SETTING, key.expose_secret())
        .map_err(|e| config(e.to_string()))?;
    let trusted = parse_trusted_keys(trusted).map_err(|e| config(e.to_string()))?;
    MeshAuth::new(component, &key, &trusted).map_err(|e| config(e.to_string()))
}

/// Opens MongoDB when `mongodb_uri` is set; otherwise the SQLite file in the data dir.
pub async fn store(settings: &Settings) -> Result<Store, StoreError> {
    match &settings.mongodb_uri {
        Some(uri) => Ok(Store::Mongo(
            MongoStore::connect(uri.expose_secret(), &settings.mongodb_database).await?,
        )),
        None => {
            std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create data dir {}: {e}",
                    settings.data_dir.display()
                ))
            })?;
            Ok(Store::Sqlite(SqliteStore::open(
                &settings.data_dir.join(SQLITE_FILE),
            )?))
        }
    }
}
