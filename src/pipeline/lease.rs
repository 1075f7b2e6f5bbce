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

use super::progress::{Progress, ProgressCell, Source};
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
    /// The object and how far its run has got, for `status`; absent in older markers.
    #[serde(default)]
    source: Option<Source>,
    #[serde(default)]
    progress: Option<Progress>,
}

/// How long a marker may go unrenewed before its run counts as dead, in seconds.
fn dead_after(heartbeat: Duration) -> u64 {
    heartbeat.as_secs() * u64::from(MISSED_HEARTBEATS)
}

impl Marker {
    /// Whether its holder renewed it within the heartbeats a lease may miss.
    fn is_alive(&self, heartbeat: Duration) -> bool {
        now_seconds().saturating_sub(self.renewed_at_epoch_seconds) < dead_after(heartbeat)
    }

    /// A marker renewed now, with the run's progress, written as a `Value`, whose encoding
    /// cannot fail.
    fn now(etag: &str, progress: &ProgressCell) -> Vec<u8> {
        let mut marker = serde_json::json!({"renewed_at_epoch_seconds": now_seconds(), "etag": etag});
        if let (Ok(source), Ok(figures)) =
            (serde_json::to_value(progress.source()), serde_json::to_value(progress.snapshot()))
        {
            marker["source"] = source;
            marker["progress"] = figures;
        }
        marker.to_string().into_bytes()
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
    /// `progress` is what each renewal carries.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        bucket: &str,
        key: &str,
        etag: &str,
        heartbeat: Duration,
        progress: Arc<ProgressCell>,
    ) -> Result<Acquired, JobError> {
        // A holder that releases while we watch it leaves the object free: one more try.
        for _ in 0..2 {
            match Self::try_acquire(&store, bucket, key, etag, heartbeat, &progress).await? {
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
        progress: &Arc<ProgressCell>,
    ) -> Result<Attempt, JobError> {
        let held = |version| {
            Attempt::Done(Acquired::Held(Self::held(store.clone(), bucket, key, etag, version, heartbeat, progress)))
        };
        if let Some(version) = store.put_if_absent(bucket, key, Marker::now(etag, progress)).await? {
            return Ok(held(version));
        }
        // The marker's version first: the takeover below only replaces that very version.
        let Some(current) = store.head(bucket, key).await? else {
            return Ok(Attempt::Released);
        };
        let marker = read_marker(store.as_ref(), bucket, key).await?;
        let silent_for = marker.as_ref().map(|m| now_seconds().saturating_sub(m.renewed_at_epoch_seconds));
        let dead_after = dead_after(heartbeat);
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
        Ok(match store.put_if_match(bucket, key, Marker::now(etag, progress), &current.etag).await? {
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
        progress: &Arc<ProgressCell>,
    ) -> Lease {
        let heartbeat = tokio::spawn(renew(
            store.clone(),
            bucket.to_string(),
            key.to_string(),
            etag.to_string(),
            version,
            heartbeat,
            progress.clone(),
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

/// A lease dropped without `release` (a panic, a cancelled future) stops renewing: a heartbeat
/// left running in a warm container would make every later delivery of that version skip it.
impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

enum Attempt {
    Done(Acquired),
    /// The holder released the lease while this delivery looked at it.
    Released,
}

/// Whether a live run holds the object: its marker was renewed within the heartbeats a lease may
/// miss. A marker that cannot be read counts as held: what asks (a delete) waits rather than
/// pull the ground from under a run.
pub async fn is_held(store: &dyn ObjectStore, bucket: &str, key: &str, heartbeat: Duration) -> Result<bool, JobError> {
    let Some(bytes) = store.get_small(bucket, key).await? else {
        return Ok(false);
    };
    let Ok(marker) = serde_json::from_slice::<Marker>(&bytes) else {
        return Ok(true);
    };
    Ok(marker.is_alive(heartbeat))
}

/// The run a live lease says is in progress: its object and progress, when it carries them.
pub async fn running(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    heartbeat: Duration,
) -> Result<Option<(Source, Progress)>, JobError> {
    let Some(marker) = read_marker(store, bucket, key).await? else {
        return Ok(None);
    };
    if !marker.is_alive(heartbeat) {
        return Ok(None);
    }
    Ok(marker.source.zip(marker.progress))
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
    progress: Arc<ProgressCell>,
) {
    loop {
        tokio::time::sleep(interval).await;
        match store.put_if_match(&bucket, &key, Marker::now(&etag, &progress), &version).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStore, Op};

    const HEARTBEAT: Duration = Duration::from_secs(30);
    const KEY: &str = "enriched/_state/leases/x.csv.lease";
    /// LEASE_HEARTBEAT_SECONDS × MISSED_HEARTBEATS, in seconds.
    const DEAD_AFTER: u64 = 30 * MISSED_HEARTBEATS as u64;

    fn progress() -> Arc<ProgressCell> {
        Arc::new(ProgressCell::new("b", "incoming/x.csv"))
    }

    async fn acquire(store: &Arc<MemoryStore>, etag: &str) -> Acquired {
        Lease::acquire(store.clone(), "b", KEY, etag, HEARTBEAT, progress()).await.unwrap()
    }

    /// What a delivery found, in words an assertion can show.
    fn found(acquired: &Acquired) -> String {
        match acquired {
            Acquired::Held(_) => "held".into(),
            Acquired::SameVersionBusy => "same version busy".into(),
            Acquired::OtherBusy(why) => format!("other busy: {why}"),
        }
    }

    fn marker(etag: Option<&str>, renewed_at_epoch_seconds: u64) -> Vec<u8> {
        let marker = Marker { renewed_at_epoch_seconds, etag: etag.map(str::to_string), source: None, progress: None };
        serde_json::to_vec(&marker).unwrap()
    }

    fn marker_in(store: &MemoryStore) -> Option<Marker> {
        store.peek("b", KEY).and_then(|body| serde_json::from_slice(&body).ok())
    }

    // Paused time: the heartbeat and the watch for a renewal run on tokio's clock, which these
    // tests move on at once; the marker's own age is the system clock's, as in production.

    #[tokio::test(start_paused = true)]
    async fn a_free_object_is_held_by_the_first_delivery() {
        let store = Arc::new(MemoryStore::new());
        let held = acquire(&store, "\"e1\"").await;
        assert_eq!(found(&held), "held");
        let written = marker_in(&store).unwrap();
        assert_eq!(written.etag.as_deref(), Some("\"e1\""));
        assert!(now_seconds() - written.renewed_at_epoch_seconds <= 1);
        assert_eq!((store.calls(Op::PutIfAbsent), store.total_calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_lease_is_renewed_every_heartbeat() {
        let store = Arc::new(MemoryStore::new());
        let _held = acquire(&store, "\"e1\"").await;
        let version = || async { store.head("b", KEY).await.unwrap().map(|m| m.etag) };
        let taken = version().await;
        tokio::time::sleep(HEARTBEAT + Duration::from_secs(1)).await;
        assert_eq!(store.calls(Op::PutIfMatch), 1);
        assert_ne!(version().await, taken);
        tokio::time::sleep(HEARTBEAT).await;
        assert_eq!(store.calls(Op::PutIfMatch), 2);
        assert_eq!(marker_in(&store).unwrap().etag.as_deref(), Some("\"e1\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_delivery_of_the_version_being_enriched_is_skipped_once_it_sees_a_renewal() {
        let store = Arc::new(MemoryStore::new());
        let _first = acquire(&store, "\"e1\"").await;
        let started = tokio::time::Instant::now();
        let second = acquire(&store, "\"e1\"").await;
        assert_eq!(found(&second), "same version busy");
        assert!(started.elapsed() >= HEARTBEAT, "skipped only after the holder renewed");
        assert_eq!(store.calls(Op::PutIfMatch), 1, "the holder's renewal, and no takeover");
        assert_eq!(marker_in(&store).unwrap().etag.as_deref(), Some("\"e1\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_marker_for_the_same_version_that_is_never_renewed_is_retried_not_skipped() {
        // A run that died a moment ago: its marker looks alive, but no renewal follows.
        let store = Arc::new(MemoryStore::new());
        store.put("b", KEY, marker(Some("\"e1\""), now_seconds()), "application/json").await.unwrap();
        let left = store.peek("b", KEY);
        let second = acquire(&store, "\"e1\"").await;
        assert!(found(&second).contains("did not renew its lease"), "{}", found(&second));
        assert_eq!(store.peek("b", KEY), left, "not taken over before its heartbeats are missed");
        assert_eq!(store.calls(Op::PutIfMatch), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_of_another_version_is_retried_at_once_while_the_holder_lives() {
        let store = Arc::new(MemoryStore::new());
        let _first = acquire(&store, "\"e1\"").await;
        let started = tokio::time::Instant::now();
        let other = acquire(&store, "\"e2\"").await;
        assert!(found(&other).contains("another version"), "{}", found(&other));
        assert_eq!(started.elapsed(), Duration::ZERO, "no watching: a retry is due whatever the holder does");
        assert_eq!(marker_in(&store).unwrap().etag.as_deref(), Some("\"e1\""));
        // A live marker of an older release names no version: it may be any.
        store.put("b", KEY, marker(None, now_seconds()), "application/json").await.unwrap();
        let unnamed = acquire(&store, "\"e1\"").await;
        assert!(found(&unnamed).contains("another version"), "{}", found(&unnamed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_marker_not_renewed_for_three_heartbeats_is_taken_over() {
        let store = Arc::new(MemoryStore::new());
        let dead = marker(Some("\"e0\""), now_seconds() - DEAD_AFTER);
        store.put("b", KEY, dead, "application/json").await.unwrap();
        let taken = acquire(&store, "\"e1\"").await;
        assert_eq!(found(&taken), "held");
        assert_eq!(marker_in(&store).unwrap().etag.as_deref(), Some("\"e1\""));
        assert_eq!(store.calls(Op::PutIfMatch), 1, "replaced by If-Match, that version only");
    }

    #[tokio::test(start_paused = true)]
    async fn a_marker_renewed_less_than_three_heartbeats_ago_is_not_taken_over() {
        let store = Arc::new(MemoryStore::new());
        // Some seconds short of three heartbeats, so that the clock ticking meanwhile does not
        // make it dead.
        let late = marker(Some("\"e0\""), now_seconds() - (DEAD_AFTER - 5));
        store.put("b", KEY, late, "application/json").await.unwrap();
        let left = store.peek("b", KEY);
        let other = acquire(&store, "\"e1\"").await;
        assert!(found(&other).starts_with("other busy"), "{}", found(&other));
        assert_eq!(store.peek("b", KEY), left);
    }

    #[tokio::test(start_paused = true)]
    async fn of_deliveries_taking_over_the_same_dead_marker_only_one_replaces_it() {
        let store = Arc::new(MemoryStore::new());
        store.put("b", KEY, marker(Some("\"e0\""), now_seconds() - DEAD_AFTER), "application/json").await.unwrap();
        let winner = marker(Some("\"e1\""), now_seconds());
        store.write_before_next(Op::PutIfMatch, "b", KEY, winner.clone());
        let late = acquire(&store, "\"e1\"").await;
        assert!(found(&late).contains("took over the object's lease a moment ago"), "{}", found(&late));
        assert_eq!(store.peek("b", KEY), Some(winner));
    }

    #[tokio::test(start_paused = true)]
    async fn release_deletes_the_marker_and_stops_the_heartbeat() {
        let store = Arc::new(MemoryStore::new());
        let Acquired::Held(lease) = acquire(&store, "\"e1\"").await else { panic!("a free object is held") };
        lease.release().await;
        assert!(store.peek("b", KEY).is_none());
        tokio::time::sleep(HEARTBEAT * MISSED_HEARTBEATS).await;
        assert_eq!((store.calls(Op::Delete), store.calls(Op::PutIfMatch)), (1, 0));
        assert_eq!(found(&acquire(&store, "\"e2\"").await), "held", "the object is free again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_lease_was_taken_over_stops_renewing_it() {
        let store = Arc::new(MemoryStore::new());
        let _first = acquire(&store, "\"e1\"").await;
        let successor = marker(Some("\"e2\""), now_seconds());
        store.put("b", KEY, successor.clone(), "application/json").await.unwrap();
        tokio::time::sleep(HEARTBEAT * MISSED_HEARTBEATS + Duration::from_secs(1)).await;
        assert_eq!(store.calls(Op::PutIfMatch), 1, "one renewal refused, then no more");
        assert_eq!(store.peek("b", KEY), Some(successor));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_released_while_a_delivery_watches_it_goes_to_that_delivery() {
        let store = Arc::new(MemoryStore::new());
        store.put("b", KEY, marker(Some("\"e1\""), now_seconds()), "application/json").await.unwrap();
        let holder = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HEARTBEAT / 2).await;
            holder.delete("b", KEY).await.unwrap();
        });
        assert_eq!(found(&acquire(&store, "\"e1\"").await), "held");
        assert_eq!(store.calls(Op::PutIfAbsent), 2);
        assert_eq!(marker_in(&store).unwrap().etag.as_deref(), Some("\"e1\""));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_marker_is_retried_never_skipped_until_three_heartbeats_old() {
        let store = Arc::new(MemoryStore::new());
        store.put("b", KEY, b"{\"renewed".to_vec(), "application/json").await.unwrap();
        let fresh = acquire(&store, "\"e1\"").await;
        assert!(found(&fresh).contains("cannot be read"), "{}", found(&fresh));
        assert_eq!(store.peek("b", KEY).unwrap(), b"{\"renewed");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_marker_three_heartbeats_old_is_taken_over() {
        let store = Arc::new(MemoryStore::new());
        // Its age is S3's Last-Modified, the only clock an unreadable marker has.
        store.set_now(now_seconds() - DEAD_AFTER);
        store.put("b", KEY, b"{\"renewed".to_vec(), "application/json").await.unwrap();
        assert_eq!(found(&acquire(&store, "\"e1\"").await), "held");
        assert_eq!(marker_in(&store).unwrap().etag.as_deref(), Some("\"e1\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_marker_s3_fails_to_return_is_an_error_to_retry_not_a_skip() {
        let store = Arc::new(MemoryStore::new());
        let _first = acquire(&store, "\"e1\"").await;
        store.fail_next(Op::GetSmall, 1);
        let result = Lease::acquire(store.clone(), "b", KEY, "\"e1\"", HEARTBEAT, progress()).await;
        assert!(matches!(&result, Err(JobError::Storage(e)) if e.is_transient()), "{:?}", result.err());
    }
}
