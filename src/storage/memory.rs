//! An `ObjectStore` in memory, so that the pipeline's decisions (who holds a lease, what a run
//! resumes from its answer journal, which kept answers it reuses) can be unit-tested in
//! milliseconds, without moto.
//!
//! It answers as `S3Store` answers for S3, error for error:
//! - every write gives the object a new quoted ETag (`"…"`), so a version pinned by ETag is
//!   that write and no other;
//! - `get` pinned to an ETag that is no longer the object's fails with `Changed` (S3's 412);
//!   `get` of a missing key fails with `NotFound`; `head` and `get_small` answer `None`;
//! - `put_if_absent` on a key that exists, and `put_if_match` on another version or a missing
//!   key, answer `Ok(None)` (S3Store's mapping of 412, 409 and 404);
//! - `delete` of a missing key succeeds (S3 answers 204);
//! - `list` gives every key under the prefix in byte order, as ListObjectsV2 does;
//! - a multipart upload becomes an object only when completed, from the parts named, which
//!   must be in ascending order, carry their upload's ETags and (but the last) hold 5 MiB at
//!   least; an aborted or completed upload is gone (`NotFound`, S3's NoSuchUpload).
//!
//! `last_modified` comes from a clock that tests may set (`set_now`, `advance`); until they
//! do, it is the system clock. `fail_next` makes the next calls of one operation fail as S3
//! does when it is unavailable (a transient `Service` error); `write_before_next` and
//! `delete_before_next` land another writer's change just before the next call of one
//! operation, so that a race is the same every run; `calls` counts the requests of each
//! operation, failed ones included, as S3 would bill them.
//!
//! Not modelled: versioning (`version_id` is always `None`), eventual consistency (S3 is
//! strongly consistent for these operations anyway), buckets (every bucket exists and is
//! empty until written), ETags as MD5 digests of the content (rewriting the same bytes gives
//! a new ETag here; S3 gives the same one unless the object is encrypted with KMS), storage
//! classes, metadata other than the content type, and request latency.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{Body, ListedObject, MIN_PART_SIZE, ObjectMeta, ObjectStore, StorageError};

/// S3's part numbers run from 1 to 10,000.
const MAX_PART_NUMBER: i32 = 10_000;

/// One request kind, for `fail_next` and `calls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Head,
    Get,
    GetSmall,
    Put,
    PutIfAbsent,
    PutIfMatch,
    Delete,
    List,
    CreateMultipart,
    UploadPart,
    CompleteMultipart,
    AbortMultipart,
}

impl Op {
    /// S3's name for the request, as `S3Store` reports it in errors.
    fn s3_name(self) -> &'static str {
        match self {
            Op::Head => "HeadObject",
            Op::Get | Op::GetSmall => "GetObject",
            Op::Put | Op::PutIfAbsent | Op::PutIfMatch => "PutObject",
            Op::Delete => "DeleteObject",
            Op::List => "ListObjectsV2",
            Op::CreateMultipart => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::CompleteMultipart => "CompleteMultipartUpload",
            Op::AbortMultipart => "AbortMultipartUpload",
        }
    }
}

#[derive(Debug, Clone)]
struct Object {
    body: Vec<u8>,
    etag: String,
    last_modified: u64,
    content_type: String,
}

struct Upload {
    bucket: String,
    key: String,
    content_type: String,
    /// By part number: a part uploaded again replaces the earlier one, as in S3.
    parts: BTreeMap<i32, (String, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    /// Bucket, then key; a BTreeMap so that listing is in key order.
    buckets: HashMap<String, BTreeMap<String, Object>>,
    uploads: HashMap<String, Upload>,
    /// Every ETag and upload id is drawn from here, so none is ever given twice.
    serial: u64,
    /// `None`: the system clock.
    now: Option<u64>,
    failures: HashMap<Op, usize>,
    calls: HashMap<Op, usize>,
    /// Other writers' changes, each waiting for the next request of its kind.
    interlopers: Vec<Interloper>,
    /// Every request on this key fails (S3 refusing one object), until cleared.
    refused: Option<String>,
}

struct Interloper {
    before: Op,
    bucket: String,
    key: String,
    /// `None`: the object is deleted.
    body: Option<Vec<u8>>,
}

impl State {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// A fresh ETag in S3's shape: 32 hex digits in quotes.
    fn next_etag(&mut self) -> String {
        format!("\"{:032x}\"", self.next_serial())
    }

    fn now(&self) -> u64 {
        self.now.unwrap_or_else(system_now)
    }

    fn object(&self, bucket: &str, key: &str) -> Option<&Object> {
        self.buckets.get(bucket)?.get(key)
    }

    fn write(&mut self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str, etag: String) {
        let object = Object { body, etag, last_modified: self.now(), content_type: content_type.to_string() };
        self.buckets.entry(bucket.to_string()).or_default().insert(key.to_string(), object);
    }

    /// Lands the changes waiting for this kind of request, counts the request, then fails it
    /// if a failure was asked for.
    fn call(&mut self, op: Op, bucket: &str, key: &str) -> Result<(), StorageError> {
        while let Some(i) = self.interlopers.iter().position(|w| w.before == op) {
            let change = self.interlopers.remove(i);
            match change.body {
                Some(body) => {
                    let etag = self.next_etag();
                    self.write(&change.bucket, &change.key, body, "application/octet-stream", etag);
                }
                None => {
                    if let Some(objects) = self.buckets.get_mut(&change.bucket) {
                        objects.remove(&change.key);
                    }
                }
            }
        }
        *self.calls.entry(op).or_default() += 1;
        if self.refused.as_deref() == Some(key) {
            return Err(service(op, bucket, key, "503 SlowDown: a key refused by MemoryStore::refuse"));
        }
        match self.failures.get_mut(&op) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(service(op, bucket, key, "503 SlowDown: a failure asked for by MemoryStore::fail_next"))
            }
            _ => Ok(()),
        }
    }

    /// The upload `id` for `bucket`/`key`: S3 answers NoSuchUpload (404) for an unknown id or
    /// one started for another key.
    fn upload(&mut self, bucket: &str, key: &str, id: &str) -> Result<&mut Upload, StorageError> {
        match self.uploads.get_mut(id) {
            Some(upload) if upload.bucket == bucket && upload.key == key => Ok(upload),
            _ => Err(StorageError::NotFound { bucket: bucket.to_string(), key: key.to_string() }),
        }
    }
}

fn system_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What S3 answers with a 4xx or 5xx that `S3Store` does not name otherwise.
fn service(op: Op, bucket: &str, key: &str, why: &str) -> StorageError {
    StorageError::Service {
        operation: op.s3_name(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        source: why.to_string().into(),
    }
}

/// Objects and multipart uploads in memory; see the module's documentation.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic in a test holding the lock leaves the maps whole (every change is made in one
    /// step), so a poisoned lock is used as it is rather than failing every later call.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the clock at `epoch_seconds`: objects written from now on were last modified then.
    pub fn set_now(&self, epoch_seconds: u64) {
        self.state().now = Some(epoch_seconds);
    }

    /// Moves the clock on by `seconds` (from the system time, if it was not set).
    pub fn advance(&self, seconds: u64) {
        let mut state = self.state();
        state.now = Some(state.now() + seconds);
    }

    /// The store's clock, in seconds since the epoch.
    pub fn now(&self) -> u64 {
        self.state().now()
    }

    /// The next `times` calls of `op` fail with a transient `Service` error (S3's 503).
    pub fn fail_next(&self, op: Op, times: usize) {
        *self.state().failures.entry(op).or_default() += times;
    }

    /// Another writer puts `body` at `key` just before the next request of `op` (which then
    /// sees it), without counting as a request of this store's user.
    pub fn write_before_next(&self, op: Op, bucket: &str, key: &str, body: Vec<u8>) {
        let change = Interloper { before: op, bucket: bucket.to_string(), key: key.to_string(), body: Some(body) };
        self.state().interlopers.push(change);
    }

    /// Another writer deletes `key` just before the next request of `op`.
    pub fn delete_before_next(&self, op: Op, bucket: &str, key: &str) {
        let change = Interloper { before: op, bucket: bucket.to_string(), key: key.to_string(), body: None };
        self.state().interlopers.push(change);
    }

    /// How many requests of `op` were made, failed ones included.
    pub fn calls(&self, op: Op) -> usize {
        self.state().calls.get(&op).copied().unwrap_or(0)
    }

    /// Every request on `key` fails as S3's 503 until `refuse(None)`.
    pub fn refuse(&self, key: Option<&str>) {
        self.state().refused = key.map(str::to_string);
    }

    /// Every request made, of any kind.
    pub fn total_calls(&self) -> usize {
        self.state().calls.values().sum()
    }

    /// The object's bytes, read without counting a request.
    pub fn peek(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.state().object(bucket, key).map(|o| o.body.clone())
    }

    /// The object's content type, read without counting a request.
    pub fn content_type(&self, bucket: &str, key: &str) -> Option<String> {
        self.state().object(bucket, key).map(|o| o.content_type.clone())
    }

    /// Every key of `bucket`, in order, read without counting a request.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.state().buckets.get(bucket).map(|b| b.keys().cloned().collect()).unwrap_or_default()
    }

    /// Multipart uploads started and neither completed nor aborted (parts S3 would bill).
    pub fn uploads_in_progress(&self) -> usize {
        self.state().uploads.len()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        let mut state = self.state();
        state.call(Op::Head, bucket, key)?;
        Ok(state.object(bucket, key).map(|o| ObjectMeta {
            etag: o.etag.clone(),
            size: o.body.len() as u64,
            version_id: None,
            last_modified_epoch_seconds: Some(o.last_modified),
        }))
    }

    async fn get(&self, bucket: &str, key: &str, etag: Option<&str>) -> Result<Body, StorageError> {
        let mut state = self.state();
        state.call(Op::Get, bucket, key)?;
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let Some(object) = state.object(&bucket, &key) else { return Err(StorageError::NotFound { bucket, key }) };
        if etag.is_some_and(|etag| etag != object.etag) {
            return Err(StorageError::Changed { bucket, key });
        }
        // A copy: a reader keeps the version it opened, whatever is written meanwhile.
        Ok(Box::new(std::io::Cursor::new(object.body.clone())))
    }

    async fn get_small(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let mut state = self.state();
        state.call(Op::GetSmall, bucket, key)?;
        Ok(state.object(bucket, key).map(|o| o.body.clone()))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        let mut state = self.state();
        state.call(Op::Put, bucket, key)?;
        let etag = state.next_etag();
        state.write(bucket, key, body, content_type, etag);
        Ok(())
    }

    async fn put_if_absent(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<Option<String>, StorageError> {
        let mut state = self.state();
        state.call(Op::PutIfAbsent, bucket, key)?;
        if state.object(bucket, key).is_some() {
            return Ok(None);
        }
        let etag = state.next_etag();
        state.write(bucket, key, body, "application/json", etag.clone());
        Ok(Some(etag))
    }

    async fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<Option<String>, StorageError> {
        let mut state = self.state();
        state.call(Op::PutIfMatch, bucket, key)?;
        // Another version (S3's 412) or no object at all (404): both mean "not yours" to S3Store.
        if state.object(bucket, key).is_none_or(|o| o.etag != etag) {
            return Ok(None);
        }
        let next = state.next_etag();
        state.write(bucket, key, body, "application/json", next.clone());
        Ok(Some(next))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        let mut state = self.state();
        state.call(Op::Delete, bucket, key)?;
        if let Some(objects) = state.buckets.get_mut(bucket) {
            objects.remove(key);
        }
        Ok(())
    }

    async fn delete_if_match(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StorageError> {
        let mut state = self.state();
        state.call(Op::Delete, bucket, key)?;
        if state.object(bucket, key).is_none_or(|o| o.etag != etag) {
            return Ok(false);
        }
        if let Some(objects) = state.buckets.get_mut(bucket) {
            objects.remove(key);
        }
        Ok(true)
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let mut state = self.state();
        state.call(Op::List, bucket, prefix)?;
        let Some(objects) = state.buckets.get(bucket) else { return Ok(Vec::new()) };
        Ok(objects
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, o)| ListedObject { key: key.clone(), etag: o.etag.clone(), size: o.body.len() as u64 })
            .collect())
    }

    async fn create_multipart(&self, bucket: &str, key: &str, content_type: &str) -> Result<String, StorageError> {
        let mut state = self.state();
        state.call(Op::CreateMultipart, bucket, key)?;
        let id = format!("upload-{}", state.next_serial());
        let upload = Upload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            parts: BTreeMap::new(),
        };
        state.uploads.insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, StorageError> {
        let mut state = self.state();
        state.call(Op::UploadPart, bucket, key)?;
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(service(Op::UploadPart, bucket, key, "InvalidArgument: part numbers run from 1 to 10000"));
        }
        let etag = state.next_etag();
        state.upload(bucket, key, upload_id)?.parts.insert(number, (etag.clone(), body));
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> Result<(), StorageError> {
        let mut state = self.state();
        state.call(Op::CompleteMultipart, bucket, key)?;
        let refuse = |why: &str| Err(service(Op::CompleteMultipart, bucket, key, why));
        let upload = state.upload(bucket, key, upload_id)?;
        if parts.is_empty() {
            return refuse("MalformedXML: a multipart upload is completed with one part at least");
        }
        if parts.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return refuse("InvalidPartOrder: the parts must be listed in ascending order of part number");
        }
        let mut body = Vec::new();
        for (i, (number, etag)) in parts.iter().enumerate() {
            let Some((_, bytes)) = upload.parts.get(number).filter(|(uploaded, _)| uploaded == etag) else {
                return refuse("InvalidPart: a part named was not uploaded, or its ETag is not the part's");
            };
            if i + 1 < parts.len() && bytes.len() < MIN_PART_SIZE {
                return refuse("EntityTooSmall: every part but the last must hold 5 MiB at least");
            }
            body.extend_from_slice(bytes);
        }
        let content_type = upload.content_type.clone();
        state.uploads.remove(upload_id);
        // S3's multipart ETags end in the number of parts.
        let etag = format!("\"{:032x}-{}\"", state.next_serial(), parts.len());
        state.write(bucket, key, body, &content_type, etag);
        Ok(())
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let mut state = self.state();
        state.call(Op::AbortMultipart, bucket, key)?;
        state.upload(bucket, key, upload_id)?;
        state.uploads.remove(upload_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::storage::OutputUpload;

    /// The S3 error code a refusal carries, which `Display` leaves to its source.
    fn code(error: StorageError) -> String {
        std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default()
    }

    async fn read(store: &MemoryStore, key: &str, etag: Option<&str>) -> Result<Vec<u8>, StorageError> {
        let mut body = store.get("b", key, etag).await?;
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes).await.unwrap();
        Ok(bytes)
    }

    #[tokio::test]
    async fn every_write_gives_the_object_a_new_quoted_etag() {
        let store = MemoryStore::new();
        store.put("b", "k", b"same".to_vec(), "text/plain").await.unwrap();
        let first = store.head("b", "k").await.unwrap().unwrap().etag;
        store.put("b", "k", b"same".to_vec(), "text/plain").await.unwrap();
        let second = store.head("b", "k").await.unwrap().unwrap();
        assert_ne!(first, second.etag);
        assert!(second.etag.starts_with('"') && second.etag.ends_with('"'), "{}", second.etag);
        assert_eq!((second.size, second.version_id), (4, None));
        assert_eq!(store.content_type("b", "k").as_deref(), Some("text/plain"));
    }

    #[tokio::test]
    async fn a_key_that_was_never_written_is_absent_or_not_found_as_s3store_says() {
        let store = MemoryStore::new();
        assert!(store.head("b", "k").await.unwrap().is_none());
        assert!(store.get_small("b", "k").await.unwrap().is_none());
        assert!(matches!(read(&store, "k", None).await, Err(StorageError::NotFound { .. })));
        // S3 answers 204 to deleting a missing key.
        store.delete("b", "k").await.unwrap();
    }

    #[tokio::test]
    async fn put_if_absent_writes_only_the_first_time() {
        let store = MemoryStore::new();
        let etag = store.put_if_absent("b", "k", b"first".to_vec()).await.unwrap();
        assert_eq!(etag, store.head("b", "k").await.unwrap().map(|m| m.etag));
        assert_eq!(store.put_if_absent("b", "k", b"second".to_vec()).await.unwrap(), None);
        assert_eq!(store.peek("b", "k").unwrap(), b"first");
        store.delete("b", "k").await.unwrap();
        assert!(store.put_if_absent("b", "k", b"third".to_vec()).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn put_if_match_replaces_only_the_version_named() {
        let store = MemoryStore::new();
        let first = store.put_if_absent("b", "k", b"1".to_vec()).await.unwrap().unwrap();
        let second = store.put_if_match("b", "k", b"2".to_vec(), &first).await.unwrap().unwrap();
        assert_ne!(first, second);
        assert_eq!(store.put_if_match("b", "k", b"3".to_vec(), &first).await.unwrap(), None, "a stale version");
        assert_eq!(store.peek("b", "k").unwrap(), b"2");
        store.delete("b", "k").await.unwrap();
        assert_eq!(store.put_if_match("b", "k", b"4".to_vec(), &second).await.unwrap(), None, "a released key");
        assert!(store.peek("b", "k").is_none());
    }

    #[tokio::test]
    async fn a_get_pinned_to_a_replaced_version_fails_as_changed() {
        let store = MemoryStore::new();
        store.put("b", "k", b"v1".to_vec(), "text/csv").await.unwrap();
        let v1 = store.head("b", "k").await.unwrap().unwrap().etag;
        assert_eq!(read(&store, "k", Some(&v1)).await.unwrap(), b"v1");
        let mut opened = store.get("b", "k", Some(&v1)).await.unwrap();
        store.put("b", "k", b"v2".to_vec(), "text/csv").await.unwrap();
        let error = read(&store, "k", Some(&v1)).await.unwrap_err();
        assert!(matches!(error, StorageError::Changed { .. }) && error.is_transient(), "{error}");
        assert_eq!(read(&store, "k", None).await.unwrap(), b"v2");
        let mut still_v1 = Vec::new();
        opened.read_to_end(&mut still_v1).await.unwrap();
        assert_eq!(still_v1, b"v1", "a reader keeps the version it opened");
    }

    #[tokio::test]
    async fn list_gives_the_keys_under_a_prefix_in_byte_order() {
        let store = MemoryStore::new();
        for key in ["p/b", "p/a/2", "p/a/10", "p/B", "q/a", "p", "p/é", "p/z"] {
            store.put("b", key, key.as_bytes().to_vec(), "text/plain").await.unwrap();
        }
        store.put("other", "p/c", Vec::new(), "text/plain").await.unwrap();
        let listed = store.list("b", "p/").await.unwrap();
        let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/B", "p/a/10", "p/a/2", "p/b", "p/z", "p/é"]);
        let meta = store.head("b", "p/a/10").await.unwrap().unwrap();
        assert_eq!((listed[1].etag.as_str(), listed[1].size), (meta.etag.as_str(), 6));
        assert_eq!(store.list("b", "").await.unwrap().len(), 8);
        assert!(store.list("none", "p/").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn multipart_parts_are_joined_in_part_number_order_when_completed() {
        let store = MemoryStore::new();
        let id = store.create_multipart("b", "out", "text/csv").await.unwrap();
        let big = vec![b'a'; MIN_PART_SIZE];
        // Uploaded out of order, as parts in flight finish.
        let e2 = store.upload_part("b", "out", &id, 2, b"tail".to_vec()).await.unwrap();
        let e1 = store.upload_part("b", "out", &id, 1, big.clone()).await.unwrap();
        assert!(store.head("b", "out").await.unwrap().is_none(), "not an object before it is completed");
        let unordered = vec![(2, e2.clone()), (1, e1.clone())];
        let error = store.complete_multipart("b", "out", &id, unordered).await.unwrap_err();
        assert!(code(error).starts_with("InvalidPartOrder"));
        store.complete_multipart("b", "out", &id, vec![(1, e1), (2, e2)]).await.unwrap();
        let body = store.peek("b", "out").unwrap();
        assert_eq!((body.len(), &body[MIN_PART_SIZE..]), (MIN_PART_SIZE + 4, &b"tail"[..]));
        assert!(body[..MIN_PART_SIZE].iter().all(|&b| b == b'a'));
        assert!(store.head("b", "out").await.unwrap().unwrap().etag.ends_with("-2\""));
        assert_eq!(store.content_type("b", "out").as_deref(), Some("text/csv"));
        assert_eq!(store.uploads_in_progress(), 0);
        let gone = store.upload_part("b", "out", &id, 3, Vec::new()).await.unwrap_err();
        assert!(matches!(gone, StorageError::NotFound { .. }), "{gone}");
    }

    #[tokio::test]
    async fn a_multipart_upload_is_refused_parts_s3_would_refuse() {
        let store = MemoryStore::new();
        let id = store.create_multipart("b", "out", "text/csv").await.unwrap();
        let e1 = store.upload_part("b", "out", &id, 1, b"small".to_vec()).await.unwrap();
        let e2 = store.upload_part("b", "out", &id, 2, b"last".to_vec()).await.unwrap();
        let too_small = store.complete_multipart("b", "out", &id, vec![(1, e1.clone()), (2, e2)]).await;
        assert!(code(too_small.unwrap_err()).starts_with("EntityTooSmall"));
        let wrong_etag = store.complete_multipart("b", "out", &id, vec![(1, "\"x\"".into())]).await;
        assert!(code(wrong_etag.unwrap_err()).starts_with("InvalidPart:"));
        assert!(store.upload_part("b", "out", &id, 0, Vec::new()).await.is_err());
        assert!(store.upload_part("b", "elsewhere", &id, 1, Vec::new()).await.is_err(), "another key's upload");
        store.complete_multipart("b", "out", &id, vec![(1, e1)]).await.unwrap();
        assert_eq!(store.peek("b", "out").unwrap(), b"small");
    }

    #[tokio::test]
    async fn an_aborted_multipart_upload_leaves_nothing() {
        let store = MemoryStore::new();
        let id = store.create_multipart("b", "out", "text/csv").await.unwrap();
        let e1 = store.upload_part("b", "out", &id, 1, b"part".to_vec()).await.unwrap();
        assert_eq!(store.uploads_in_progress(), 1);
        store.abort_multipart("b", "out", &id).await.unwrap();
        assert_eq!(store.uploads_in_progress(), 0);
        assert!(store.peek("b", "out").is_none());
        let completed = store.complete_multipart("b", "out", &id, vec![(1, e1)]).await.unwrap_err();
        assert!(matches!(completed, StorageError::NotFound { .. }), "{completed}");
    }

    #[tokio::test]
    async fn an_output_upload_larger_than_a_part_arrives_whole_through_multipart() {
        let store = Arc::new(MemoryStore::new());
        let part = crate::storage::PART_SIZE;
        let mut upload = OutputUpload::new(store.clone(), "b", "out.csv", "text/csv");
        for byte in [b'a', b'b', b'c'] {
            upload.write(vec![byte; part]).await.unwrap();
        }
        upload.finish(b"end".to_vec()).await.unwrap();
        let body = store.peek("b", "out.csv").unwrap();
        assert_eq!(body.len(), 3 * part + 3);
        assert_eq!((body[0], body[part], body[2 * part], &body[3 * part..]), (b'a', b'b', b'c', &b"end"[..]));
        assert_eq!((store.calls(Op::UploadPart), store.calls(Op::Put)), (4, 0));
        assert_eq!(store.uploads_in_progress(), 0);
    }

    #[tokio::test]
    async fn an_output_upload_that_fails_aborts_its_multipart_upload() {
        let store = Arc::new(MemoryStore::new());
        let part = crate::storage::PART_SIZE;
        let mut upload = OutputUpload::new(store.clone(), "b", "out.csv", "text/csv");
        upload.write(vec![b'a'; part]).await.unwrap();
        store.fail_next(Op::CompleteMultipart, 1);
        let error = upload.finish(b"end".to_vec()).await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!((store.calls(Op::AbortMultipart), store.uploads_in_progress()), (1, 0));
        assert!(store.peek("b", "out.csv").is_none());
    }

    #[tokio::test]
    async fn failures_asked_for_are_transient_counted_and_then_stop() {
        let store = MemoryStore::new();
        store.fail_next(Op::Put, 2);
        for _ in 0..2 {
            let error = store.put("b", "k", Vec::new(), "text/plain").await.unwrap_err();
            assert!(error.is_transient() && error.to_string().contains("PutObject"), "{error}");
        }
        store.get_small("b", "k").await.unwrap();
        store.put("b", "k", Vec::new(), "text/plain").await.unwrap();
        assert_eq!((store.calls(Op::Put), store.calls(Op::GetSmall), store.calls(Op::PutIfMatch)), (3, 1, 0));
        assert_eq!(store.total_calls(), 4);
        assert!(store.peek("b", "k").is_some());
    }

    #[tokio::test]
    async fn another_writers_change_lands_just_before_the_next_request_of_its_kind() {
        let store = MemoryStore::new();
        let mine = store.put_if_absent("b", "k", b"mine".to_vec()).await.unwrap().unwrap();
        store.write_before_next(Op::PutIfMatch, "b", "k", b"theirs".to_vec());
        assert_eq!(store.peek("b", "k").unwrap(), b"mine", "not before that request");
        store.head("b", "k").await.unwrap();
        assert_eq!(store.put_if_match("b", "k", b"mine again".to_vec(), &mine).await.unwrap(), None);
        assert_eq!(store.peek("b", "k").unwrap(), b"theirs");
        store.delete_before_next(Op::GetSmall, "b", "k");
        assert_eq!(store.get_small("b", "k").await.unwrap(), None);
        assert_eq!((store.calls(Op::PutIfMatch), store.calls(Op::Put), store.calls(Op::Delete)), (1, 0, 0));
    }

    #[tokio::test]
    async fn objects_are_last_modified_at_the_stores_clock() {
        let store = MemoryStore::new();
        let before = system_now();
        store.put("b", "real", Vec::new(), "text/plain").await.unwrap();
        let real = store.head("b", "real").await.unwrap().unwrap().last_modified_epoch_seconds.unwrap();
        assert!(real >= before && real <= system_now());
        store.set_now(1_000);
        store.put("b", "then", Vec::new(), "text/plain").await.unwrap();
        store.advance(60);
        store.put("b", "later", Vec::new(), "text/plain").await.unwrap();
        let then = store.head("b", "then").await.unwrap().unwrap().last_modified_epoch_seconds;
        let later = store.head("b", "later").await.unwrap().unwrap().last_modified_epoch_seconds;
        assert_eq!((then, later, store.now()), (Some(1_000), Some(1_060), 1_060));
    }
}
