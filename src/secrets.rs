//! The Leadspace token, read from Secrets Manager once per container and cached; re-read when
//! Leadspace says it is no longer valid (tokens are rotated every few months).

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use secrecy::SecretString;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret named by LEADSPACE_SECRET_ID ({secret_id}) could not be read: {code}; check the id and that the function's role may call secretsmanager:GetSecretValue on it"
    )]
    Unreadable { secret_id: String, code: String },
    #[error(
        "the secret named by LEADSPACE_SECRET_ID ({secret_id}) holds no token: store the bare token, or JSON {{\"token\": \"...\"}}"
    )]
    NoToken { secret_id: String },
    #[error("Secrets Manager could not be reached to read {secret_id}")]
    Unavailable {
        secret_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Secrets Manager's error codes that a later attempt may not see: its own faults, throttling,
/// and a decryption failure (KMS throttled or briefly unavailable; a key that stays disabled
/// ends in the on-failure queue after Lambda's retries, with this message).
fn is_transient_code(code: &str) -> bool {
    code.contains("InternalService")
        || code.contains("Throttl")
        || code.contains("LimitExceeded")
        || code == "DecryptionFailure"
        || code == "ServiceUnavailable"
}

impl SecretError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretError::Unavailable { .. })
    }
}

#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The current token (cached after the first read).
    async fn token(&self) -> Result<SecretString, SecretError>;
    /// Forgets the cached token and reads the secret again.
    async fn refresh(&self) -> Result<SecretString, SecretError>;
}

/// The secret's value: the bare token, or JSON `{"token": "...", "program_id": "..."}`.
pub struct Credentials {
    pub token: SecretString,
    /// Not secret: identifies the Leadspace program in logs for support.
    pub program_id: Option<String>,
}

pub fn parse_secret(value: &str) -> Option<Credentials> {
    let trimmed = value.trim();
    if trimmed.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let token = json.get("token")?.as_str()?.trim();
        if token.is_empty() {
            return None;
        }
        let program_id = json.get("program_id").and_then(|p| p.as_str()).map(str::to_string);
        return Some(Credentials { token: SecretString::from(token.to_string()), program_id });
    }
    (!trimmed.is_empty()).then(|| Credentials { token: SecretString::from(trimmed.to_string()), program_id: None })
}

/// Leadspace advises rotating the token every 6 months; it expires after 2 years.
pub const ROTATE_AFTER_DAYS: i64 = 182;
pub const EXPIRES_AFTER_DAYS: i64 = 730;

/// Warns (log and metric) when the secret's current value, stored at `stored_at`, is older
/// than Leadspace's rotation advice. Returns the token's age in days.
pub fn check_token_age(stored_at: i64, now: i64) -> i64 {
    let days = (now - stored_at).max(0) / 86_400;
    let due = days > ROTATE_AFTER_DAYS;
    if due {
        tracing::warn!(
            token_age_days = days,
            expires_in_days = EXPIRES_AFTER_DAYS - days,
            "the Leadspace token was stored more than 6 months ago: Leadspace advises rotating it every 6 months, \
             and it stops working after 2 years; put a new token in the secret named by LEADSPACE_SECRET_ID"
        );
    }
    crate::metrics::token_age(days, due);
    days
}

pub struct SecretsManagerTokens {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: Mutex<Option<SecretString>>,
}

impl SecretsManagerTokens {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: String) -> Self {
        SecretsManagerTokens { client, secret_id, cached: Mutex::new(None) }
    }

    async fn fetch(&self) -> Result<SecretString, SecretError> {
        let out = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            let code = e.code().map(str::to_string);
            match (e, code) {
                (SdkError::ServiceError(_), Some(code)) if !is_transient_code(&code) => {
                    SecretError::Unreadable { secret_id: self.secret_id.clone(), code }
                }
                (e, _) => SecretError::Unavailable { secret_id: self.secret_id.clone(), source: Box::new(e) },
            }
        })?;
        let credentials = out
            .secret_string()
            .and_then(parse_secret)
            .ok_or_else(|| SecretError::NoToken { secret_id: self.secret_id.clone() })?;
        tracing::info!(program_id = credentials.program_id.as_deref().unwrap_or("-"), "read the Leadspace token");
        if let Some(stored) = out.created_date() {
            check_token_age(stored.secs(), time::OffsetDateTime::now_utc().unix_timestamp());
        }
        Ok(credentials.token)
    }
}

#[async_trait]
impl TokenSource for SecretsManagerTokens {
    async fn token(&self) -> Result<SecretString, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = self.fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn refresh(&self) -> Result<SecretString, SecretError> {
        let mut cached = self.cached.lock().await;
        let token = self.fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_internal_and_decryption_errors_are_transient_and_the_rest_are_not() {
        for code in ["InternalServiceError", "ThrottlingException", "DecryptionFailure", "RequestLimitExceeded"] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["ResourceNotFoundException", "AccessDeniedException", "InvalidRequestException"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
    use secrecy::ExposeSecret;

    #[test]
    fn a_bare_token_or_json_with_a_token_is_accepted() {
        assert_eq!(parse_secret(" abc \n").unwrap().token.expose_secret(), "abc");
        let c = parse_secret(r#"{"token": "xyz", "program_id": "P-1"}"#).unwrap();
        assert_eq!((c.token.expose_secret(), c.program_id.as_deref()), ("xyz", Some("P-1")));
    }

    #[test]
    fn json_without_a_token_is_refused() {
        assert!(parse_secret(r#"{"program_id": "P-1"}"#).is_none());
        assert!(parse_secret(r#"{"token": ""}"#).is_none());
        assert!(parse_secret("   ").is_none());
    }

    #[test]
    fn token_age_is_counted_in_whole_days() {
        let now = 1_800_000_000;
        assert_eq!(check_token_age(now - 183 * 86_400 - 5, now), 183);
        assert_eq!(check_token_age(now + 60, now), 0, "a clock running behind never gives a negative age");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = parse_secret("super-secret-token").unwrap();
        assert!(!format!("{:?}", c.token).contains("super-secret-token"));
    }
}
