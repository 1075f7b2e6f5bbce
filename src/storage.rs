//! Objects in S3 behind a narrow trait, so the pipeline can run on an in-memory store in unit
//! tests and on the real SDK (against S3 or moto) everywhere else.

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncRead;

/// Multipart parts must be at least 5 MiB except the last; 8 MiB keeps memory and request
/// count both small.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

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

/// Deletes every object under `prefix`; the number deleted. Stops at the first failure.
pub async fn delete_prefix(store: &dyn ObjectStore, bucket: &str, prefix: &str) -> Result<usize, StorageError> {
    use futures::StreamExt;
    let listed = store.list(bucket, prefix).await?;
    let mut deletes = futures::stream::iter(&listed)
        .map(|object| store.delete(bucket, &object.key))
        .buffer_unordered(DELETE_CONCURRENCY);
    while let Some(deleted) = deletes.next().await {
        deleted?;
    }
    Ok(listed.len())
}

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

/// Parts uploaded at once: S3 is faster with a few connections, and memory holds each of them.
const PARTS_IN_FLIGHT: usize = 3;

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
        tracing::warn!(error = %error, "could not abort a multipart upload; the bucket's lifecycle rule removes it");
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

/// The real store: the AWS SDK's S3 client.
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }

    /// A PutObject that happens only if the key is absent (`etag` None) or still at `etag`.
    async fn conditional_put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        etag: Option<&str>,
    ) -> Result<Option<String>, StorageError> {
        let request = self.client.put_object().bucket(bucket).key(key).content_type("application/json");
        let request = match etag {
            None => request.if_none_match("*"),
            Some(etag) => request.if_match(etag),
        };
        match request.body(ByteStream::from(body)).send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            // 409 ConditionalRequestConflict: another conditional write to the key is in flight.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 409) => Ok(None),
            Err(e) => match classify("PutObject", bucket, key, e) {
                StorageError::Changed { .. } => Ok(None),
                // If-Match on a key that is gone: someone released the lease meanwhile.
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }
}

fn classify<E>(operation: &'static str, bucket: &str, key: &str, error: SdkError<E>) -> StorageError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().unwrap_or_default().to_string();
    let (bucket, key) = (bucket.to_string(), key.to_string());
    match (status, code.as_str()) {
        (Some(404), _) | (_, "NoSuchKey") | (_, "NotFound") | (_, "NoSuchBucket") => {
            StorageError::NotFound { bucket, key }
        }
        (Some(412), _) | (_, "PreconditionFailed") => StorageError::Changed { bucket, key },
        (Some(403), _) | (_, "AccessDenied") => StorageError::AccessDenied { operation, bucket, key },
        _ => StorageError::Service { operation, bucket, key, source: Box::new(error) },
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectMeta {
                etag: out.e_tag().unwrap_or_default().to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                version_id: out.version_id().map(str::to_string),
                last_modified_epoch_seconds: out.last_modified().and_then(|t| u64::try_from(t.secs()).ok()),
            })),
            Err(e) => match classify("HeadObject", bucket, key, e) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get(&self, bucket: &str, key: &str, etag: Option<&str>) -> Result<Body, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(etag.map(str::to_string))
            .send()
            .await
            .map_err(|e| classify("GetObject", bucket, key, e))?;
        Ok(Box::new(out.body.into_async_read()))
    }

    async fn get_small(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let out = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) => {
                return match classify("GetObject", bucket, key, e) {
                    StorageError::NotFound { .. } => Ok(None),
                    other => Err(other),
                };
            }
        };
        let bytes = out.body.collect().await.map_err(|e| StorageError::Service {
            operation: "GetObject",
            bucket: bucket.to_string(),
            key: key.to_string(),
            source: Box::new(e),
        })?;
        Ok(Some(bytes.to_vec()))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify("PutObject", bucket, key, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<Option<String>, StorageError> {
        self.conditional_put(bucket, key, body, None).await
    }

    async fn put_if_match(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<Option<String>, StorageError> {
        self.conditional_put(bucket, key, body, Some(etag)).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("DeleteObject", bucket, key, e))?;
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListObjectsV2", bucket, prefix, e))?;
            objects.extend(page.contents().iter().filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_string(),
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            }));
        }
        Ok(objects)
    }

    async fn create_multipart(&self, bucket: &str, key: &str, content_type: &str) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", bucket, key, e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| StorageError::Service {
            operation: "CreateMultipartUpload",
            bucket: bucket.to_string(),
            key: key.to_string(),
            source: "the response carried no upload id".into(),
        })
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            // On AWS the part carries the SDK's default CRC32 checksum, which S3 verifies;
            // signing the payload too would hash every output byte once more with SHA-256 (the
            // whole file, on the function's CPU) for no extra integrity. AWS advises this for
            // large uploads over TLS. (Custom endpoints such as moto get no checksum: see
            // bootstrap.rs.)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| classify("UploadPart", bucket, key, e))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> Result<(), StorageError> {
        let parts = parts
            .into_iter()
            .map(|(number, etag)| CompletedPart::builder().part_number(number).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| classify("CompleteMultipartUpload", bucket, key, e))?;
        Ok(())
    }

    async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| classify("AbortMultipartUpload", bucket, key, e))?;
        Ok(())
    }
}
