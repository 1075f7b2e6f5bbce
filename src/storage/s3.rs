//! The real store: S3 through the AWS SDK, with S3's answers mapped to `StorageError`.

use std::error::Error as StdError;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};

use super::{Body, DeleteFailed, DeleteTally, ListedObject, ObjectMeta, ObjectStore, StorageError};

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

/// The most keys one DeleteObjects request takes.
const DELETE_OBJECTS_MAX_KEYS: usize = 1000;

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
            // As for parts (see `upload_part`): the journal writes every answer bought, tens of
            // MiB for a large file, and SHA-256 over each body adds nothing to the checksum.
            .customize()
            .disable_payload_signing()
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

    /// DeleteObjects, a thousand keys a request: a journal of hundreds of entries is gone in
    /// one round trip instead of hundreds.
    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), DeleteFailed> {
        let mut tally = DeleteTally::default();
        for batch in keys.chunks(DELETE_OBJECTS_MAX_KEYS) {
            let service = |key: &str, source: Box<dyn StdError + Send + Sync>| StorageError::Service {
                operation: "DeleteObjects",
                bucket: bucket.to_string(),
                key: key.to_string(),
                source,
            };
            let first_key = batch.first().map_or("", String::as_str);
            let request = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .and_then(|objects| Delete::builder().set_objects(Some(objects)).quiet(true).build());
            let answer = match request {
                Ok(delete) => self
                    .client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| classify("DeleteObjects", bucket, first_key, e)),
                Err(e) => Err(service(first_key, Box::new(e))),
            };
            match answer {
                Ok(out) => {
                    for error in out.errors() {
                        let why = format!("{}: {}", error.code().unwrap_or("error"), error.message().unwrap_or(""));
                        tally.failed(1, service(error.key().unwrap_or_default(), why.into()));
                    }
                }
                Err(error) => tally.failed(batch.len(), error),
            }
        }
        tally.result()
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

    async fn delete_if_match(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StorageError> {
        match self.client.delete_object().bucket(bucket).key(key).if_match(etag).send().await {
            Ok(_) => Ok(true),
            Err(e) => match classify("DeleteObject", bucket, key, e) {
                StorageError::Changed { .. } | StorageError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
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
