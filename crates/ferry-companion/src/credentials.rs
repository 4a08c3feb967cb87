//! The store's credentials: given outright (flags or `AWS_*` variables), or found by the standard
//! AWS chain (shared config and credentials files with profiles, SSO, web identity, ECS and EKS
//! container credentials, EC2 instance metadata) and fetched again before they expire. Signing
//! reads the current ones; a refresh swaps them in place.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls;

/// Credentials that may change under the signer.
pub type SharedCredentials = Arc<RwLock<rusty_s3::Credentials>>;

/// Fetch new credentials at least this long before the current ones expire.
const MIN_REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// The shortest wait between two fetches, whatever the provider says.
const MIN_REFRESH_WAIT: Duration = Duration::from_secs(1);
/// After a failed refresh, try again this soon (the current credentials may still be good).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// Fixed credentials.
pub fn fixed(access_key: &str, secret_key: &str, session_token: Option<&str>) -> SharedCredentials {
    let credentials = match session_token {
        Some(token) => rusty_s3::Credentials::new_with_token(access_key, secret_key, token),
        None => rusty_s3::Credentials::new(access_key, secret_key),
    };
    Arc::new(RwLock::new(credentials))
}

/// The standard AWS chain's credentials, and a task that refreshes them before they expire. A
/// presigned URL stops working when the credentials that signed it expire, so they are replaced
/// at least `url_lifetime` (and a minute) ahead: a URL handed out just before is still good for
/// all its life.
pub async fn from_aws_chain(url_lifetime: Duration) -> Result<SharedCredentials, String> {
    let ahead = MIN_REFRESH_AHEAD.max(url_lifetime + Duration::from_secs(60));
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    let provider = config
        .credentials_provider()
        .ok_or("the AWS credential chain is not available")?;
    let first = provider.provide_credentials().await.map_err(|err| {
        format!(
            "no store credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give the \
             AWS chain a profile, a web identity, a container or an instance role ({})",
            aws_smithy_types::error::display::DisplayErrorContext(err)
        )
    })?;
    tracing::info!(
        key = first.access_key_id(),
        expires = ?first.expiry(),
        "store credentials from the AWS chain"
    );
    let shared = Arc::new(RwLock::new(to_signer(&first)));
    if let Some(expiry) = first.expiry() {
        tokio::spawn(keep_fresh(provider, Arc::downgrade(&shared), expiry, ahead));
    }
    Ok(shared)
}

fn to_signer(credentials: &aws_credential_types::Credentials) -> rusty_s3::Credentials {
    match credentials.session_token() {
        Some(token) => rusty_s3::Credentials::new_with_token(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            token,
        ),
        None => {
            rusty_s3::Credentials::new(credentials.access_key_id(), credentials.secret_access_key())
        }
    }
}

/// How long to wait before fetching credentials that expire at `expiry`: until `ahead` before,
/// or halfway there when they live shorter than that; never less than [`MIN_REFRESH_WAIT`].
pub fn refresh_delay(expiry: SystemTime, now: SystemTime, ahead: Duration) -> Duration {
    let left = expiry.duration_since(now).unwrap_or_default();
    let wait = if left > ahead * 2 {
        left - ahead
    } else {
        left / 2
    };
    wait.max(MIN_REFRESH_WAIT)
}

/// Fetches new credentials before the current ones expire, for as long as anyone signs with them.
async fn keep_fresh(
    provider: SharedCredentialsProvider,
    shared: std::sync::Weak<RwLock<rusty_s3::Credentials>>,
    mut expiry: SystemTime,
    ahead: Duration,
) {
    let mut wait = refresh_delay(expiry, SystemTime::now(), ahead);
    loop {
        tokio::time::sleep(wait).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match provider.provide_credentials().await {
            Ok(fresh) => {
                *shared
                    .write()
                    .expect("a signer never panics holding the lock") = to_signer(&fresh);
                tracing::info!(key = fresh.access_key_id(), expires = ?fresh.expiry(), "store credentials refreshed");
                let Some(next) = fresh.expiry() else {
                    return;
                };
                expiry = next;
                wait = refresh_delay(expiry, SystemTime::now(), ahead);
            }
            Err(err) => {
                tracing::warn!(
                    err = %aws_smithy_types::error::display::DisplayErrorContext(err),
                    expires = ?expiry,
                    "could not refresh the store credentials; trying again"
                );
                wait = RETRY_AFTER_FAILURE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_refreshed_ahead_of_their_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hours = |h: u64| now + Duration::from_secs(h * 3600);
        let ahead = Duration::from_secs(960);
        assert_eq!(
            refresh_delay(hours(1), now, ahead),
            Duration::from_secs(3600 - 960),
            "a URL signed just before still lives its 15 minutes"
        );
        assert_eq!(
            refresh_delay(now + Duration::from_secs(60), now, ahead),
            Duration::from_secs(30),
            "short-lived ones halfway through"
        );
        assert_eq!(
            refresh_delay(now - Duration::from_secs(5), now, ahead),
            MIN_REFRESH_WAIT,
            "expired ones soon, but never in a tight loop"
        );
    }
}
