//! Opens the bus and the store the settings ask for: NATS and MongoDB when configured, the
//! in-process bus and the embedded SQLite file otherwise.

use secrecy::ExposeSecret;

use crate::bus::{Bus, inproc::InProcBus, nats::NatsBus};
use crate::settings::Settings;
use crate::store::{Store, StoreError, mongo::MongoStore, sqlite::SqliteStore};

/// File name of the embedded store inside the data dir.
pub const SQLITE_FILE: &str = "ttscm.sqlite3";

/// Connects to NATS when `nats_url` is set; otherwise a fresh in-process bus.
pub async fn bus(settings: &Settings, client_name: &str) -> Result<Bus, crate::BusError> {
    match &settings.nats_url {
        Some(url) => {
            let bus = NatsBus::connect(url, client_name, &settings.nats)
                .await?
                .with_stream_replicas(settings.nats_stream_replicas);
            // NATS may not be up yet: then the stream is created on the first event published.
            if !bus.wait_connected(std::time::Duration::from_secs(2)).await {
                tracing::warn!("NATS is not reachable yet; requests answer 503 until it is");
            } else if let Err(error) = bus.ensure_events_stream().await {
                tracing::warn!(%error, "events stream not ensured at start");
            }
            Ok(Bus::Nats(Box::new(bus)))
        }
        None => Ok(Bus::InProc(InProcBus::new())),
    }
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
