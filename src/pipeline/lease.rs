//! One invocation at a time per object: S3 delivers events at least once and Lambda retries,
//! so two invocations may start on the same object together. The first to create a marker
//! under the state prefix (`OutputPaths::lease_key`) with a conditional write (`If-None-Match: *`) enriches; the other answers
//! `skipped`. A marker older than the lease timeout was left by an invocation that died.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::JobError;
use crate::storage::ObjectStore;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    taken_at_epoch_seconds: u64,
}

pub struct Lease {
    bucket: String,
    key: String,
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Lease {
    /// The lease at `key`, or `None` when another invocation holds a live one.
    pub async fn acquire(
        store: &dyn ObjectStore,
        bucket: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<Lease>, JobError> {
        let key = key.to_string();
        let marker = serde_json::to_vec(&Marker { taken_at_epoch_seconds: now_seconds() }).unwrap_or_default();
        if store.put_if_absent(bucket, &key, marker.clone()).await? {
            return Ok(Some(Lease { bucket: bucket.to_string(), key }));
        }
        // The marker's version first: the takeover below only replaces that very version.
        let Some(current) = store.head(bucket, &key).await? else {
            // Released between our write and our look: one more try, same rules.
            return Ok(store
                .put_if_absent(bucket, &key, marker)
                .await?
                .then(|| Lease { bucket: bucket.to_string(), key }));
        };
        let taken_at = match store.get_small(bucket, &key).await? {
            None => 0,
            Some(bytes) => serde_json::from_slice::<Marker>(&bytes).map_or(0, |m| m.taken_at_epoch_seconds),
        };
        if now_seconds().saturating_sub(taken_at) < timeout.as_secs() {
            return Ok(None);
        }
        tracing::warn!(age_seconds = now_seconds().saturating_sub(taken_at), "taking over a stale lease");
        // Several invocations may find the same stale marker; If-Match lets exactly one replace it.
        if store.put_if_match(bucket, &key, marker, &current.etag).await? {
            Ok(Some(Lease { bucket: bucket.to_string(), key }))
        } else {
            Ok(None)
        }
    }

    /// Best effort: a lease left behind only delays the next run by the lease timeout.
    pub async fn release(self, store: &dyn ObjectStore) {
        if let Err(error) = store.delete(&self.bucket, &self.key).await {
            tracing::warn!(error = %error, "could not release the lease");
        }
    }
}
