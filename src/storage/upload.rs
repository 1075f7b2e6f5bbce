//! Streaming one output object to S3: a single PutObject when it stays under a part, a
//! multipart upload otherwise, one part in flight while the next is written, aborted on every
//! failure path.

use std::sync::Arc;

use super::{ObjectStore, PART_SIZE, StorageError};
use crate::chain::error_chain;

/// Writes one output object from a sequence of chunks: a single PutObject when it stays under
/// a part, a multipart upload otherwise (aborted if the job fails, so no orphan parts bill).
pub struct OutputUpload {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    multipart: Option<String>,
    /// Parts on their way, uploaded while the next rows are written.
    uploading: tokio::task::JoinSet<Result<(i32, String), StorageError>>,
    parts: Vec<(i32, String)>,
    next_part: i32,
}

/// Parts uploaded at once, beside the one being written. One: a run writes its output and its
/// kept answers side by side, so two objects' parts are on their way at the end of a large
/// file, and each part in flight is 5 MiB at the run's peak (figures: docs/benchmarks.md).
const PARTS_IN_FLIGHT: usize = 1;

impl OutputUpload {
    pub fn new(store: Arc<dyn ObjectStore>, bucket: &str, key: &str, content_type: &str) -> Self {
        OutputUpload {
            store,
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            buffer: Vec::new(),
            multipart: None,
            uploading: tokio::task::JoinSet::new(),
            parts: Vec::new(),
            next_part: 1,
        }
    }

    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), StorageError> {
        if self.buffer.is_empty() {
            self.buffer = bytes;
        } else {
            self.buffer.extend_from_slice(&bytes);
        }
        if self.buffer.len() >= PART_SIZE {
            let part = std::mem::take(&mut self.buffer);
            self.upload_part(part).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, part: Vec<u8>) -> Result<(), StorageError> {
        let id = match &self.multipart {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(&self.bucket, &self.key, &self.content_type).await?;
                self.multipart = Some(id.clone());
                id
            }
        };
        while self.uploading.len() >= PARTS_IN_FLIGHT {
            self.wait_for_one().await?;
        }
        let (store, bucket, key, number) = (self.store.clone(), self.bucket.clone(), self.key.clone(), self.next_part);
        self.next_part += 1;
        self.uploading.spawn(async move {
            let etag = store.upload_part(&bucket, &key, &id, number, part).await?;
            Ok((number, etag))
        });
        Ok(())
    }

    async fn wait_for_one(&mut self) -> Result<(), StorageError> {
        match self.uploading.join_next().await {
            Some(Ok(result)) => {
                self.parts.push(result?);
                Ok(())
            }
            Some(Err(join)) => Err(StorageError::Service {
                operation: "UploadPart",
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                source: Box::new(join),
            }),
            None => Ok(()),
        }
    }

    /// Writes the rest and completes the object. A multipart upload that cannot be completed
    /// is aborted, so no orphan parts stay billed.
    pub async fn finish(mut self, last: Vec<u8>) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(&last);
        let rest = std::mem::take(&mut self.buffer);
        if self.multipart.is_none() {
            return self.store.put(&self.bucket, &self.key, rest, &self.content_type).await;
        }
        match self.complete(rest).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.abort().await;
                Err(error)
            }
        }
    }

    async fn complete(&mut self, rest: Vec<u8>) -> Result<(), StorageError> {
        if !rest.is_empty() {
            self.upload_part(rest).await?;
        }
        while !self.uploading.is_empty() {
            self.wait_for_one().await?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|(number, _)| *number);
        let Some(id) = self.multipart.clone() else { return Ok(()) };
        self.store.complete_multipart(&self.bucket, &self.key, &id, parts).await?;
        self.multipart = None;
        Ok(())
    }

    /// Abandons a started multipart upload; best effort, the job's own error is what matters.
    pub async fn abort(mut self) {
        self.uploading.shutdown().await;
        if let Some(id) = self.multipart.take() {
            abort_upload(self.store.as_ref(), &self.bucket, &self.key, &id).await;
        }
    }
}

async fn abort_upload(store: &dyn ObjectStore, bucket: &str, key: &str, id: &str) {
    if let Err(error) = store.abort_multipart(bucket, key, id).await {
        tracing::warn!(error = %error_chain(&error), "could not abort a multipart upload; the bucket's lifecycle rule removes it");
    }
}

/// An upload dropped before it finished (an error passed up with `?`, a cancelled future)
/// aborts its multipart upload in the background: every failure path, not only the ones that
/// remember to call `abort`.
impl Drop for OutputUpload {
    fn drop(&mut self) {
        let Some(id) = self.multipart.take() else { return };
        self.uploading.abort_all();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (store, bucket, key) =
            (self.store.clone(), std::mem::take(&mut self.bucket), std::mem::take(&mut self.key));
        runtime.spawn(async move { abort_upload(store.as_ref(), &bucket, &key, &id).await });
    }
}
