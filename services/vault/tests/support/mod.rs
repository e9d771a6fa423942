//! The vault test harness, shared by the test binaries: a vault serving on its own in-process
//! bus with a fresh data dir, and one method per operation.

use std::time::Duration;

use ttscm_contract::WireError;
use ttscm_contract::vault::{Place, Reseal, Seal, SealItem, SealedItem, Unseal};
use ttscm_runtime::bus::inproc::InProcBus;
use ttscm_runtime::service::{BusClient, CallContext};
use ttscm_runtime::{Bus, Settings, Shutdown};

/// A vault serving on its own in-process bus; stopped on drop.
pub struct TestVault {
    client: BusClient,
    settings: Settings,
    shutdown: Shutdown,
    /// Holds the data dir (and the key file) for the test's lifetime.
    _data_dir: tempfile::TempDir,
}

impl Drop for TestVault {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts vault in embedded mode (its key ring generated into a fresh data dir). Must run on
/// an actix system (`#[actix::test]`).
pub async fn spawn_vault() -> TestVault {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let settings = Settings {
        data_dir: data_dir.path().to_path_buf(),
        ..Settings::default()
    };
    let bus = Bus::InProc(InProcBus::new());
    let shutdown = Shutdown::new();
    ttscm_vault::run(&bus, &settings, shutdown.clone())
        .await
        .expect("vault starts");
    TestVault {
        client: BusClient::new(bus, Duration::from_secs(5)),
        settings,
        shutdown,
        _data_dir: data_dir,
    }
}

/// The place of field `field_id` of credential `credential_id`.
pub fn place(credential_id: &str, field_id: &str) -> Place {
    Place {
        credential_id: credential_id.into(),
        field_id: field_id.into(),
        version: None,
    }
}

/// `sealed` presented as the value at `place`.
pub fn sealed_at(place: &Place, sealed: &str) -> SealedItem {
    SealedItem {
        place: place.clone(),
        sealed: sealed.to_owned(),
    }
}

/// Each of `sealed` presented at the place of the same index.
pub fn all_at(places: &[Place], sealed: &[String]) -> Vec<SealedItem> {
    assert_eq!(places.len(), sealed.len());
    places.iter().zip(sealed).map(|(p, s)| sealed_at(p, s)).collect()
}

/// The kid a sealed value names.
pub fn kid_of(sealed: &str) -> String {
    ttscm_vault::seal::inspect(sealed)
        .expect("a sealed value's header reads")
        .kid
}

impl TestVault {
    /// Seals `plaintexts[i]` at `places[i]`.
    pub async fn seal(&self, places: &[Place], plaintexts: &[&str]) -> Result<Vec<String>, WireError> {
        assert_eq!(places.len(), plaintexts.len());
        let op = Seal {
            items: places
                .iter()
                .zip(plaintexts)
                .map(|(place, plaintext)| SealItem {
                    place: place.clone(),
                    plaintext: (*plaintext).to_owned(),
                    keep_if_equal: None,
                })
                .collect(),
        };
        self.client.call(&CallContext::new(None), &op).await
    }

    /// Opens `items`.
    /// Calls any vault operation.
    #[allow(dead_code)] // not every test binary of the crate uses it
    pub async fn call<O: ttscm_contract::Operation>(&self, op: &O) -> Result<O::Reply, WireError> {
        self.client.call(&CallContext::new(None), op).await
    }

    pub async fn unseal(&self, items: Vec<SealedItem>) -> Result<Vec<String>, WireError> {
        let op = Unseal { items };
        let mut opened = self.client.call(&CallContext::new(None), &op).await?;
        Ok(std::mem::take(&mut opened.0))
    }

    /// Moves `items` to the active key.
    pub async fn reseal(&self, items: Vec<SealedItem>) -> Result<Vec<String>, WireError> {
        self.client
            .call(
                &CallContext::new(None),
                &Reseal {
                    items,
                    to_versions: Vec::new(),
                },
            )
            .await
    }

    /// Rotates the key (`ttscm vault rotate`) and returns the new kid.
    pub fn rotate(&self) -> String {
        ttscm_vault::rotate(&self.settings).expect("rotates")
    }

    /// Reseals `items` until the running vault has picked up `kid` (within its reload interval)
    /// and every value has moved to it; returns the moved values. Until then, reseal must give
    /// the values back unchanged.
    pub async fn reseal_until_moved_to(&self, kid: &str, items: Vec<SealedItem>) -> Vec<String> {
        let before: Vec<String> = items.iter().map(|item| item.sealed.clone()).collect();
        ttscm_testkit::eventually(Duration::from_secs(10), || async {
            let resealed = self.reseal(items.clone()).await.expect("reseals");
            if resealed.iter().all(|sealed| kid_of(sealed) == kid) {
                return Some(resealed);
            }
            assert_eq!(resealed, before, "values move together, to the active key");
            None
        })
        .await
        .expect("vault picks up the rotated key without a restart")
    }
}
