//! The audit log's write-ahead stream on a real nats-server (JetStream) and a real FerretDB:
//! replicas keep one chain, a chain begun in the store continues, a half-finished copy is
//! finished without duplicates, and a NATS restart loses nothing.

use std::time::Duration;

use futures_util::future::join_all;
use ttscm_credential::audit::{self, AUDIT_ENTRIES, AuditLog, AuditRecord};
use ttscm_credential::audit_stream::AuditStream;
use ttscm_runtime::service::CallContext;
use ttscm_runtime::store::{FindOptions, Order, mongo::MongoStore};
use ttscm_runtime::{Filter, Shutdown, Store};
use ttscm_testkit::{MongoFixture, NatsServer};

struct Parts {
    nats: NatsServer,
    _mongo: MongoFixture,
    store: Store,
    shutdown: Shutdown,
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn parts() -> Parts {
    ttscm_testkit::init_tracing();
    let nats = NatsServer::start();
    let mongo = MongoFixture::start();
    let store = Store::Mongo(
        MongoStore::connect(&mongo.uri, &mongo.database)
            .await
            .expect("connects"),
    );
    AuditLog::prepare(&store).await.expect("indexes");
    Parts {
        nats,
        _mongo: mongo,
        store,
        shutdown: Shutdown::new(),
    }
}

impl Parts {
    /// A streamed log on its own NATS connection, as one credential replica has; with its
    /// copier running when `copying`.
    async fn replica(&self, copying: bool) -> AuditLog {
        let client = async_nats::connect(self.nats.url()).await.expect("connects");
        let stream = AuditStream::new(client, self.store.clone());
        if copying {
            tokio::spawn(stream.clone().copy_forever(self.shutdown.clone()));
        }
        AuditLog::new(self.store.clone(), Some(stream))
    }

    async fn verified(&self, log: &AuditLog) -> (bool, u64) {
        log.settled().await.expect("settles");
        let verification = audit::verify(&self.store).await.expect("verifies");
        (verification.valid, verification.entries)
    }

    async fn stored_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .store
            .find(
                AUDIT_ENTRIES,
                &FindOptions::new(Filter::All).sort("seq", Order::Asc),
            )
            .await
            .expect("reads")
            .iter()
            .map(|d| ttscm_runtime::store::text(d, "id"))
            .collect();
        ids.dedup();
        ids
    }
}

fn record(n: usize) -> AuditRecord {
    AuditRecord {
        action: "credential.revealed",
        target_kind: "credential",
        target_id: format!("c{n}"),
        credential_id: Some(format!("c{n}")),
        type_id: None,
        company_id: None,
    }
}

async fn append(log: &AuditLog, n: usize) {
    log.append(&CallContext::default(), record(n))
        .await
        .expect("appended");
}

#[tokio::test]
async fn two_replicas_appending_at_once_keep_one_chain() {
    let parts = parts().await;
    let (a, b) = (parts.replica(true).await, parts.replica(true).await);
    let appends = (0..60).map(|n| {
        let log = if n % 2 == 0 { &a } else { &b };
        append(log, n)
    });
    join_all(appends).await;
    assert_eq!(parts.verified(&a).await, (true, 60));
    assert_eq!(parts.stored_ids().await.len(), 60, "each entry stored once");
}

#[tokio::test]
async fn a_chain_begun_in_the_store_continues_through_the_stream() {
    let parts = parts().await;
    let direct = AuditLog::new(parts.store.clone(), None);
    for n in 0..3 {
        append(&direct, n).await;
    }
    let streamed = parts.replica(true).await;
    for n in 3..5 {
        append(&streamed, n).await;
    }
    assert_eq!(parts.verified(&streamed).await, (true, 5));
}

/// A copier that stopped after inserting some entries but before acknowledging their message
/// gets the message again: it inserts the rest and skips what is stored.
#[tokio::test]
async fn a_half_finished_copy_is_finished_without_duplicates() {
    let parts = parts().await;
    let log = parts.replica(false).await;
    for n in 0..3 {
        append(&log, n).await;
    }
    assert!(
        parts.stored_ids().await.is_empty(),
        "nothing copied without a copier"
    );
    // Copy the first entry by hand, as the stopped copier had.
    let client = async_nats::connect(parts.nats.url()).await.expect("connects");
    let stream = async_nats::jetstream::new(client)
        .get_stream("TTSCM_AUDIT")
        .await
        .expect("the stream exists");
    let first = stream.get_raw_message(1).await.expect("first message");
    let entry: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&first.payload).expect("one entry per message here");
    parts.store.insert(AUDIT_ENTRIES, entry).await.expect("inserted");

    let copier = AuditStream::new(
        async_nats::connect(parts.nats.url()).await.expect("connects"),
        parts.store.clone(),
    );
    tokio::spawn(copier.copy_forever(parts.shutdown.clone()));
    assert_eq!(parts.verified(&log).await, (true, 3));
    assert_eq!(parts.stored_ids().await.len(), 3);
}

#[tokio::test]
async fn entries_survive_a_nats_restart_and_the_chain_goes_on() {
    let mut parts = parts().await;
    let log = parts.replica(false).await;
    append(&log, 0).await;
    append(&log, 1).await;
    parts.nats.restart();
    // Appends fail fast while the client reconnects, then work again.
    let appended = ttscm_testkit::eventually(Duration::from_secs(20), || async {
        log.append(&CallContext::default(), record(2)).await.ok()
    })
    .await;
    assert!(appended.is_some(), "appends work again after the restart");
    // The copier starts only now: the entries from before the restart are still in the stream.
    let copier = AuditStream::new(
        async_nats::connect(parts.nats.url()).await.expect("connects"),
        parts.store.clone(),
    );
    tokio::spawn(copier.copy_forever(parts.shutdown.clone()));
    // An append that failed on an unanswered publish may still have been stored (the log errs
    // on the side of recording), so there are at least three entries, in one chain.
    let (valid, entries) = parts.verified(&log).await;
    assert!(valid && entries >= 3, "valid {valid}, {entries} entries");
}
