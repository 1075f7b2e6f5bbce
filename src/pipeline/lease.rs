//! One invocation at a time per object: S3 delivers events at least once and Lambda retries,
//! so two invocations may start on the same object together. The first to create a marker
//! under the state prefix (`OutputPaths::lease_key`) with a conditional write
//! (`If-None-Match: *`) enriches.
//!
//! "Skipped" is a success: Lambda will not retry it, and nothing reaches the on-failure queue.
//! So another delivery answers `skipped` only when the holder is alive and enriching exactly the
//! same version. The holder proves it is alive: the marker names the ETag it is enriching and a
//! heartbeat renewed every LEASE_HEARTBEAT_SECONDS; a marker S3 last modified three intervals
//! ago belongs to a run that died (a crash, an out-of-memory kill, a timeout) and is taken over.
//! Its age is S3's `LastModified`, not the writer's clock, so two instances' clocks never need
//! to agree. A delivery for another version, or one that cannot read the marker, is retried.
//!
//! A lease can be lost: a holder whose renewals fail or arrive late for long enough may be
//! taken over. Its `LeaseWatch` then says so, the run stops buying and writes no output or
//! summary, and `release` deletes the marker only if it is still the holder's (If-Match).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The marker's current version, as the last renewal left it.
    version: Arc<Mutex<String>>,
    watch: LeaseWatch,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// Whether a run still holds its lease, shared by the run and its heartbeat. Lost means another
/// delivery took the object over, or may have: renewals failed for two heartbeats in a row.
#[derive(Debug, Clone, Default)]
pub struct LeaseWatch(Arc<AtomicBool>);

impl LeaseWatch {
    pub fn is_lost(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for the Leadspace client, which checks it before every purchase.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    fn lose(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
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
        // S3's clock, not the holder's: renewals are judged by when S3 took them.
        let silent_for = current
            .last_modified_epoch_seconds
            .or(marker.as_ref().map(|m| m.renewed_at_epoch_seconds))
            .map(|at| now_seconds().saturating_sub(at));
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
            // Unreadable: it cannot say whether its holder lives; only its age can.
            (None, age) if age.is_none_or(|age| age < dead_after) => {
                return Ok(Attempt::Done(Acquired::OtherBusy("the object's lease cannot be read")));
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
        let version = Arc::new(Mutex::new(version));
        let watch = LeaseWatch::default();
        let renewal = Renewal {
            store: store.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: etag.to_string(),
            version: version.clone(),
            interval: heartbeat,
            progress: progress.clone(),
            watch: watch.clone(),
        };
        let heartbeat = tokio::spawn(renewal.run());
        Lease { store, bucket: bucket.to_string(), key: key.to_string(), version, watch, heartbeat }
    }

    /// What the run checks before it buys or writes.
    pub fn watch(&self) -> LeaseWatch {
        self.watch.clone()
    }

    /// Best effort: a lease left behind is taken over once its heartbeats stop. A lease that
    /// was lost is not ours to delete: only the version this holder last wrote is deleted.
    pub async fn release(self) {
        self.heartbeat.abort();
        if self.watch.is_lost() {
            tracing::warn!("the lease was lost while the run held it; the new holder's marker is left alone");
            return;
        }
        let version = self.version.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match self.store.delete_if_match(&self.bucket, &self.key, &version).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the lease had changed hands before its release; it is left to its holder"),
            Err(error) => tracing::warn!(error = %crate::chain::error_chain(&error), "could not release the lease"),
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
    let Some(meta) = store.head(bucket, key).await? else {
        return Ok(false);
    };
    let Some(modified) = meta.last_modified_epoch_seconds else {
        return Ok(true);
    };
    Ok(now_seconds().saturating_sub(modified) < dead_after(heartbeat))
}

/// The run a live lease says is in progress: its object and progress, when it carries them.
pub async fn running(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    heartbeat: Duration,
) -> Result<Option<(Source, Progress)>, JobError> {
    if !is_held(store, bucket, key, heartbeat).await? {
        return Ok(None);
    }
    let Some(marker) = read_marker(store, bucket, key).await? else {
        return Ok(None);
    };
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

/// The heartbeat of one held lease.
struct Renewal {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    key: String,
    etag: String,
    version: Arc<Mutex<String>>,
    interval: Duration,
    progress: Arc<ProgressCell>,
    watch: LeaseWatch,
}

impl Renewal {
    /// Renews the marker every `interval` while the run works, and says when the lease is lost:
    /// taken over, or unrenewed for two intervals, after which another delivery may take it
    /// over at the third (the run stops a whole interval before anyone can).
    async fn run(self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.interval).await;
            let version = self.version.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let marker = Marker::now(&self.etag, &self.progress);
            match self.store.put_if_match(&self.bucket, &self.key, marker, &version).await {
                Ok(Some(next)) => {
                    *self.version.lock().unwrap_or_else(|e| e.into_inner()) = next;
                    renewed = tokio::time::Instant::now();
                }
                Ok(None) => {
                    // Another invocation took it over: this run was presumed dead (its heartbeats
                    // did not reach S3). It stops buying; the journal keeps what it bought.
                    tracing::warn!("the lease was taken over by another invocation; this run stops");
                    self.watch.lose();
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %crate::chain::error_chain(&error), "could not renew the lease");
                    if renewed.elapsed() >= self.interval * (MISSED_HEARTBEATS - 1) {
                        tracing::warn!(
                            "the lease went unrenewed for two heartbeats; this run stops before it is taken over"
                        );
                        self.watch.lose();
                        return;
                    }
                }
            }
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

    /// A marker that says it was renewed at `renewed_at` (the holder's clock), which S3 last
    /// modified at `modified_at` (S3's clock, the store's here).
    async fn put_marker(store: &MemoryStore, etag: &str, renewed_at: u64, modified_at: u64) {
        store.set_now(modified_at);
        store.put("b", KEY, marker(Some(etag), renewed_at), "application/json").await.unwrap();
        store.set_now(now_seconds());
    }

    #[tokio::test(start_paused = true)]
    async fn a_marker_not_renewed_for_three_heartbeats_is_taken_over() {
        let store = Arc::new(MemoryStore::new());
        let dead = now_seconds() - DEAD_AFTER;
        put_marker(&store, "\"e0\"", dead, dead).await;
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
        let dead = now_seconds() - DEAD_AFTER;
        put_marker(&store, "\"e0\"", dead, dead).await;
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
    async fn a_holder_whose_lease_was_taken_over_stops_renewing_it_and_knows_it_is_lost() {
        let store = Arc::new(MemoryStore::new());
        let Acquired::Held(first) = acquire(&store, "\"e1\"").await else { panic!("a free object is held") };
        let successor = marker(Some("\"e2\""), now_seconds());
        store.put("b", KEY, successor.clone(), "application/json").await.unwrap();
        assert!(!first.watch().is_lost(), "not known before the next renewal");
        tokio::time::sleep(HEARTBEAT * MISSED_HEARTBEATS + Duration::from_secs(1)).await;
        assert_eq!(store.calls(Op::PutIfMatch), 1, "one renewal refused, then no more");
        assert!(first.watch().is_lost(), "the run learns it lost the lease");
        first.release().await;
        assert_eq!(store.peek("b", KEY), Some(successor), "a lost lease is not the holder's to release");
    }

    #[tokio::test(start_paused = true)]
    async fn release_deletes_only_the_holders_own_marker() {
        // Taken over between two renewals: the holder has not noticed yet when it releases.
        let store = Arc::new(MemoryStore::new());
        let Acquired::Held(first) = acquire(&store, "\"e1\"").await else { panic!("a free object is held") };
        let successor = marker(Some("\"e2\""), now_seconds());
        store.put("b", KEY, successor.clone(), "application/json").await.unwrap();
        first.release().await;
        assert_eq!(store.peek("b", KEY), Some(successor), "the successor's lease stays");
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_renewals_fail_for_two_heartbeats_stops_before_it_can_be_taken_over() {
        let store = Arc::new(MemoryStore::new());
        let Acquired::Held(held) = acquire(&store, "\"e1\"").await else { panic!("a free object is held") };
        store.fail_next(Op::PutIfMatch, 10);
        tokio::time::sleep(HEARTBEAT + Duration::from_secs(1)).await;
        assert!(!held.watch().is_lost(), "one missed renewal is not a lost lease");
        tokio::time::sleep(HEARTBEAT).await;
        assert!(held.watch().is_lost(), "two are: a third would let another delivery take over");
        tokio::time::sleep(HEARTBEAT * 3).await;
        assert_eq!(store.calls(Op::PutIfMatch), 2, "no renewal after the lease is given up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_judged_by_when_s3_last_modified_it_not_by_the_holders_clock() {
        let now = now_seconds();
        // A holder whose clock runs an hour fast wrote "renewed now" long ago: it is dead.
        let fast = Arc::new(MemoryStore::new());
        put_marker(&fast, "\"e0\"", now + 3600, now - DEAD_AFTER).await;
        assert_eq!(found(&acquire(&fast, "\"e1\"").await), "held");
        // A holder whose clock runs an hour slow renewed a moment ago: it lives.
        let slow = Arc::new(MemoryStore::new());
        put_marker(&slow, "\"e0\"", now - 3600, now).await;
        let other = acquire(&slow, "\"e1\"").await;
        assert!(found(&other).contains("another version"), "{}", found(&other));
        assert!(is_held(slow.as_ref(), "b", KEY, HEARTBEAT).await.unwrap());
        assert!(!is_held(fast.as_ref(), "b", "enriched/_state/leases/none.lease", HEARTBEAT).await.unwrap());
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
