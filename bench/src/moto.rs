//! moto set up with plain HTTP: a bucket, objects and the token's secret. moto does not check
//! signatures, so the harness needs no AWS SDK (which would be compiled again, with this
//! package's features, before the first figure).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::Error;

/// A key's path segments are kept apart by its slashes; everything else unusual is escaped.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub struct Moto {
    endpoint: String,
    client: reqwest::Client,
}

impl Moto {
    pub fn new(endpoint: &str) -> Result<Moto, Error> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        Ok(Moto { endpoint: endpoint.trim_end_matches('/').to_string(), client })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!("{}/{bucket}/{}", self.endpoint, utf8_percent_encode(key, KEY))
    }

    /// `PUT /{bucket}`: CreateBucket (us-east-1 takes no location constraint).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), Error> {
        let response = self
            .client
            .put(format!("{}/{bucket}", self.endpoint))
            .header("Authorization", authorization("s3"))
            .send()
            .await?;
        ok(response, &format!("creating the bucket {bucket}")).await.map(drop)
    }

    /// `PUT /{bucket}/{key}`: PutObject, the whole body in one request.
    pub async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), Error> {
        let response = self
            .client
            .put(self.object_url(bucket, key))
            .header("Authorization", authorization("s3"))
            .body(body)
            .send()
            .await?;
        ok(response, &format!("uploading s3://{bucket}/{key}")).await.map(drop)
    }

    /// `GET /{bucket}/{key}`: GetObject.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
        let response =
            self.client.get(self.object_url(bucket, key)).header("Authorization", authorization("s3")).send().await?;
        ok(response, &format!("reading s3://{bucket}/{key}")).await
    }

    /// Secrets Manager's CreateSecret, JSON over `POST /` with the action in `X-Amz-Target`.
    pub async fn create_secret(&self, name: &str, value: &str) -> Result<(), Error> {
        let response = self
            .client
            .post(format!("{}/", self.endpoint))
            // Without the scope naming secretsmanager, `POST /` is taken for S3's ListBuckets,
            // answered 200, and no secret is made.
            .header("Authorization", authorization("secretsmanager"))
            .header("X-Amz-Target", "secretsmanager.CreateSecret")
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(json!({"Name": name, "SecretString": value}).to_string())
            .send()
            .await?;
        ok(response, &format!("creating the secret {name}")).await.map(drop)
    }

    /// An object's JSON.
    pub async fn get_json(&self, bucket: &str, key: &str) -> Result<Value, Error> {
        Ok(serde_json::from_slice(&self.get_object(bucket, key).await?)?)
    }
}

/// A SigV4 Authorization header that moto reads but does not check: it routes a request to a
/// service by the header's credential scope, and answers an anonymous GET of an object 403.
fn authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, \
         Signature=0"
    )
}

/// The body of a 2xx answer; any other is an error naming what was being done.
async fn ok(response: reqwest::Response, doing: &str) -> Result<Vec<u8>, Error> {
    let status = response.status();
    let body = response.bytes().await?.to_vec();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("moto answered {status} {doing}: {}", String::from_utf8_lossy(&body)).into())
    }
}
