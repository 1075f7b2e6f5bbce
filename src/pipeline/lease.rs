//! One invocation at a time per object: S3 delivers events at least once and Lambda retries,
//! so two invocations may start on the same object together. The first to create a marker
//! under the state prefix (`OutputPaths::lease_key`) with a conditional write
//! (`If-None-Match: *`) enriches.
//!
//! "Skipped" is a success: Lambda will not retry it, and nothing reaches the on-failure queue.
//! So another delivery answers `skipped` only when the holder is alive and enriching exactly the
//! same version. The holder proves it is alive: the marker names the ETag it is enriching and a
//! heartbeat renewed every LEASE_HEARTBEAT_SECONDS; a marker not renewed for three intervals
//! belongs to a run that died (a crash, an out-of-memory kill, a timeout) and is taken over. A
//! delivery for another version, or one that cannot read the marker, is retried later.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::storage::ObjectStore;

/// Heartbeats a lease may miss before it is taken over.
pub const MISSED_HEARTBEATS: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// When the holder last proved it is alive.
    #[serde(alias = "taken_at_epoch_seconds")]
    renewed_at_epoch_seconds: u64,
    /// The version the holder is enriching; absent in a marker of an older release.
    #[serde(default)]
    etag: Option<String>,
}

impl Marker {
    fn now(etag: &str) -> Vec<u8> {
        let marker = Marker { renewed_at_epoch_seconds: now_seconds(), etag: Some(etag.to_string()) };
        // Two plain fields: serialising cannot fail.
        serde_json::to_vec(&marker).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// What a delivery finds.
pub enum Acquired {
    /// This invocation holds the object until it releases the lease.
    Held(Lease),
    /// A live invocation is enriching this very version.
    SameVersionBusy,
    /// A live invocation holds the object for another version, or its marker cannot be read:
    /// the delivery must be retried, never dropped.
    OtherBusy(&'static str),
}

pub struct Lease {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    key: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Lease {
    /// The lease at `key` for the version `etag`, renewed every `heartbeat` until released.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        key: &str,
        etag: &str,
        heartbeat: Duration,
    ) -> Result<Acquired, JobError> {
        // A holder that releases while we watch it leaves the object free: one more try.
        for _ in 0..2 {
            match Self::try_acquire(&store, bucket, key, etag, heartbeat).await? {
                Attempt::Done(acquired) => return Ok(acquired),
                Attempt::Released => continue,
            }
        }
        Ok(Acquired::OtherBusy("the object's lease changed hands twice while this delivery waited"))
    }

    async fn try_acquire(
        store: &Arc<dyn ObjectStore>,
        bucket: &str,
        key: &str,
        etag: &str,
        heartbeat: Duration,
    ) -> Result<Attempt, JobError> {
        let held =
            |version| Attempt::Done(Acquired::Held(Self::held(store.clone(), bucket, key, etag, version, heartbeat)));
        if let Some(version) = store.put_if_absent(bucket, key, Marker::now(etag)).await? {
            return Ok(held(version));
        }
        // The marker's version first: the takeover below only replaces that very version.
        let Some(current) = store.head(bucket, key).await? else {
            return Ok(Attempt::Released);
        };
        let marker = read_marker(store.as_ref(), bucket, key).await?;
        let silent_for = marker.as_ref().map(|m| now_seconds().saturating_sub(m.renewed_at_epoch_seconds));
        let dead_after = heartbeat.as_secs() * u64::from(MISSED_HEARTBEATS);
        match (marker, silent_for) {
            (Some(marker), Some(silent)) if silent < dead_after => {
                if marker.etag.as_deref() != Some(etag) {
                    return Ok(Attempt::Done(Acquired::OtherBusy(
                        "another invocation is enriching another version of this object (or one whose lease does not \
                         say which)",
                    )));
                }
                // A run that died a moment ago looks alive until its heartbeats are missed:
                // only a renewal seen now proves it is alive.
                return watch_for_renewal(store.as_ref(), bucket, key, &current.etag, etag, heartbeat).await;
            }
            (None, _) | (_, None) => {
                // Unreadable: it cannot say whether its holder lives; only its age can.
                let age = current.last_modified_epoch_seconds.map(|at| now_seconds().saturating_sub(at));
                if age.is_none_or(|age| age < dead_after) {
                    return Ok(Attempt::Done(Acquired::OtherBusy("the object's lease cannot be read")));
                }
            }
            _ => {}
        }
        tracing::warn!(silent_seconds = silent_for, "taking over the lease of a run that stopped renewing it");
        // Several invocations may find the same dead marker; If-Match lets exactly one replace it.
        Ok(match store.put_if_match(bucket, key, Marker::now(etag), &current.etag).await? {
            Some(version) => held(version),
            None => Attempt::Done(Acquired::OtherBusy("another invocation took over the object's lease a moment ago")),
        })
    }

    fn held(
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        key: &str,
        etag: &str,
        version: String,
        heartbeat: Duration,
    ) -> Lease {
        let heartbeat = tokio::spawn(renew(
            store.clone(),
            bucket.to_string(),
            key.to_string(),
            etag.to_string(),
            version,
            heartbeat,
        ));
        Lease { store, bucket: bucket.to_string(), key: key.to_string(), heartbeat }
    }

    /// Best effort: a lease left behind is taken over once its heartbeats stop.
    pub async fn release(self) {
        self.heartbeat.abort();
        if let Err(error) = self.store.delete(&self.bucket, &self.key).await {
            tracing::warn!(error = %error, "could not release the lease");
        }
    }
}

enum Attempt {
    Done(Acquired),
    /// The holder released the lease while this delivery looked at it.
    Released,
}

async fn read_marker(store: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Option<Marker>, JobError> {
    Ok(store.get_small(bucket, key).await?.and_then(|b| serde_json::from_slice::<Marker>(&b).ok()))
}

/// Watches the lease for one heartbeat interval (and a little more): a renewal for the same
/// version proves its holder alive (`skipped` is then the truth); a release frees the object;
/// silence means the holder may have died, and the delivery is retried later.
async fn watch_for_renewal(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    seen: &str,
    etag: &str,
    heartbeat: Duration,
) -> Result<Attempt, JobError> {
    let until = tokio::time::Instant::now() + heartbeat + RENEWAL_GRACE;
    let step = (heartbeat / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(step).await;
        let Some(now) = store.head(bucket, key).await? else { return Ok(Attempt::Released) };
        if now.etag != seen {
            let renewed = read_marker(store, bucket, key).await?.is_some_and(|m| m.etag.as_deref() == Some(etag));
            return Ok(Attempt::Done(if renewed {
                Acquired::SameVersionBusy
            } else {
                Acquired::OtherBusy("another invocation took the object's lease for another version")
            }));
        }
    }
    Ok(Attempt::Done(Acquired::OtherBusy(
        "the run holding this version did not renew its lease within LEASE_HEARTBEAT_SECONDS; it may have died",
    )))
}

/// How long past one heartbeat interval a renewal is waited for (S3's latency, clock skew).
const RENEWAL_GRACE: Duration = Duration::from_secs(2);

/// Renews the marker every `interval` while the run works.
async fn renew(
    store: Arc<dyn ObjectStore>,
    bucket: String,
    key: String,
    etag: String,
    mut version: String,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        match store.put_if_match(&bucket, &key, Marker::now(&etag), &version).await {
            Ok(Some(next)) => version = next,
            Ok(None) => {
                // Another invocation took it over: this run was presumed dead (its heartbeats did
                // not reach S3). The journal keeps what it buys from being bought twice.
                tracing::warn!("the lease was taken over by another invocation");
                return;
            }
            // A missed heartbeat; three in a row and the lease is taken over.
            Err(error) => tracing::warn!(error = %error, "could not renew the lease"),
        }
    }
}
