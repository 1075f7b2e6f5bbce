//! Objects in S3 behind a narrow trait, so the pipeline can run on an in-memory store in unit
//! tests and on the real SDK (against S3 or moto) everywhere else.

// The in-memory store is the unit tests' S3: it is not compiled into the function.
#[cfg(test)]
mod memory;
mod s3;
mod upload;

use std::error::Error as StdError;

use async_trait::async_trait;
use tokio::io::AsyncRead;

#[cfg(test)]
pub use memory::{MemoryStore, Op};
pub use s3::S3Store;
pub use upload::OutputUpload;

/// Parts are the least S3 allows: memory holds the one being written and the one in flight, and
/// a larger part bought no speed (docs/benchmarks.md). 10,000 parts still allow a 48 GiB output.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// S3 refuses a multipart part under 5 MiB, but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
const _: () = assert!(PART_SIZE >= MIN_PART_SIZE, "S3 refuses a part under 5 MiB but the last");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    pub last_modified_epoch_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("s3://{bucket}/{key} was replaced while it was being read; the retry enriches its new version")]
    Changed { bucket: String, key: String },
    #[error(
        "access to s3://{bucket}/{key} was denied for {operation}: grant the function's role that permission (S3 also \
         answers 403 for a key that does not exist when the role may not list the bucket: s3:ListBucket)"
    )]
    AccessDenied { operation: &'static str, bucket: String, key: String },
    #[error("S3 {operation} on s3://{bucket}/{key} failed")]
    Service {
        operation: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl StorageError {
    /// Whether trying again later may succeed (a network or service fault), as opposed to a
    /// fact about the object or permissions.
    pub fn is_transient(&self) -> bool {
        // A file replaced mid-run: the retry reads its new version whole.
        matches!(self, StorageError::Service { .. } | StorageError::Changed { .. })
    }
}

pub type Body = Box<dyn AsyncRead + Send + Unpin>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StorageError>;
    /// Streams the object; with `etag`, fails with `Changed` if it is no longer that version.
    async fn get(&self, bucket: &str, key: &str, etag: Option<&str>) -> Result<Body, StorageError>;
    /// Reads a small object whole (summaries); `None` when it does not exist.
    async fn get_small(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StorageError>;
    /// Writes only if no object has the key (`If-None-Match: *`): the new ETag, or `None` when
    /// an object has the key.
    async fn put_if_absent(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<Option<String>, StorageError>;
    /// Replaces the object only if it is still the version `etag` (`If-Match`): the new ETag,
    /// or `None` if it is not.
    async fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<Option<String>, StorageError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError>;
    /// Deletes the object only if it is still the version `etag` (`If-Match`): `false` when
    /// another version has replaced it or it is gone.
    async fn delete_if_match(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StorageError>;
    /// Deletes `keys` of `bucket`, each tried even when another fails. One request each here;
    /// S3 deletes up to 1,000 in one.
    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), DeleteFailed> {
        let mut tally = DeleteTally::default();
        for group in keys.chunks(DELETE_CONCURRENCY) {
            let deleted = futures::future::join_all(group.iter().map(|key| self.delete(bucket, key))).await;
            deleted.into_iter().filter_map(Result::err).for_each(|error| tally.failed(1, error));
        }
        tally.result()
    }
    /// Every object under `prefix`, in key order.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, StorageError>;
    async fn create_multipart(&self, bucket: &str, key: &str, content_type: &str) -> Result<String, StorageError>;
    /// Uploads part `number` (from 1) and returns its ETag.
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, StorageError>;
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> Result<(), StorageError>;
    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StorageError>;
}

/// Deletes are independent: this many at once keep a large journal's cleanup short without
/// crowding S3's per-prefix rate.
const DELETE_CONCURRENCY: usize = 16;

/// Deletes every object under `prefix`, each tried even when another fails; the number
/// deleted, or the first failure and how many failed.
pub async fn delete_prefix(store: &dyn ObjectStore, bucket: &str, prefix: &str) -> Result<usize, DeleteFailed> {
    let listed = store.list(bucket, prefix).await.map_err(|first| DeleteFailed { failed: 0, first })?;
    let keys: Vec<String> = listed.into_iter().map(|object| object.key).collect();
    store.delete_many(bucket, &keys).await?;
    Ok(keys.len())
}

/// Objects under a prefix that could not be deleted (0 when it could not even be listed).
#[derive(Debug, thiserror::Error)]
#[error("{failed} objects could not be deleted")]
pub struct DeleteFailed {
    pub failed: usize,
    #[source]
    pub first: StorageError,
}

/// Failures counted over a delete of many keys: how many, and the first.
#[derive(Default)]
struct DeleteTally {
    failed: usize,
    first: Option<StorageError>,
}

impl DeleteTally {
    fn failed(&mut self, keys: usize, error: StorageError) {
        self.failed += keys;
        self.first.get_or_insert(error);
    }

    fn result(self) -> Result<(), DeleteFailed> {
        match self.first {
            Some(first) => Err(DeleteFailed { failed: self.failed, first }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prefix_is_deleted_past_a_failed_delete_and_the_failure_counted() {
        let store = MemoryStore::new();
        for key in ["p/a", "p/b", "p/c", "q/d"] {
            store.put("b", key, b"x".to_vec(), "text/plain").await.unwrap();
        }
        store.fail_next(Op::Delete, 1);

        let error = delete_prefix(&store, "b", "p/").await.expect_err("one delete failed");

        assert_eq!(error.failed, 1);
        assert_eq!(store.keys("b").len(), 2, "the two others are gone, q/d stays: {:?}", store.keys("b"));
        assert_eq!(delete_prefix(&store, "b", "p/").await.unwrap(), 1, "a second pass deletes the rest");
    }
}
