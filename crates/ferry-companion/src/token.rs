//! The upload token: what the companion promised at create, signed so it can be checked later
//! without any state of its own.
//!
//! Format: `base64url(json claims) "." base64url(HMAC-SHA256(secret, json claims))`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token binds. A call that names another upload, key or size is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The multipart upload id; `None` for a single PUT.
    #[serde(rename = "u")]
    pub upload_id: Option<String>,
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "s")]
    pub size: u64,
    #[serde(rename = "p")]
    pub part_size: u64,
    #[serde(rename = "o")]
    pub owner: String,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// User metadata of a single PUT, so its fallback through the companion keeps it.
    #[serde(
        rename = "m",
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Content type of a single PUT, for the same reason.
    #[serde(rename = "c", default, skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    /// The checksum every part (or the single PUT) must carry: the upload keeps the algorithm
    /// it was created with, whatever the companion is configured with later.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<ferry_core::ChecksumAlgorithm>,
}

impl Claims {
    /// The plan the claims describe: the one place a token's upload is cut into parts. A token
    /// whose numbers make no plan is malformed (the companion never signs one).
    pub fn plan(&self) -> Result<ferry_core::Plan, TokenError> {
        ferry_core::Plan::with_part_size(self.size, self.part_size)
            .map_err(|_| TokenError::Malformed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the upload token is malformed")]
    Malformed,
    #[error("the upload token's signature does not match")]
    BadSignature,
    #[error("the upload token has expired")]
    Expired,
}

/// Signs and checks tokens with the companion's secret.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialise");
        let mut mac = self.mac();
        mac.update(&json);
        let signature = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// The claims of a token this key signed, if it has not expired at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token)?;
        if now > claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The claims of a token this key signed, expired or not: for the one call an expired token
    /// may still make, aborting its own upload.
    pub fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&json);
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }

    /// The signature of a download link for `key` that works until `expires_at` (Unix seconds).
    pub fn sign_link(&self, key: &str, expires_at: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.link_mac(key, expires_at).finalize().into_bytes())
    }

    /// Whether `signature` is this key's download link for `key` and is still valid at `now`.
    pub fn verify_link(
        &self,
        key: &str,
        expires_at: u64,
        signature: &str,
        now: u64,
    ) -> Result<(), TokenError> {
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        self.link_mac(key, expires_at)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        if now > expires_at {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// A link's MAC, kept apart from tokens' by its label: no token is ever a valid link.
    fn link_mac(&self, key: &str, expires_at: u64) -> Hmac<Sha256> {
        let mut mac = self.mac();
        mac.update(format!("ferry-download\n{expires_at}\n{key}").as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            checksum: None,
            upload_id: Some("u1".into()),
            key: "uploads/anonymous/abc/cat.png".into(),
            size: 10,
            part_size: 5,
            owner: "anonymous".into(),
            expires_at: 1_000,
            metadata: Default::default(),
            content_type: String::new(),
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let key = TokenKey::new(b"secret");
        let token = key.sign(&claims());
        assert_eq!(key.verify(&token, 1_000), Ok(claims()));
        assert_eq!(key.verify(&token, 1_001), Err(TokenError::Expired));
    }

    #[test]
    fn an_expired_token_still_names_its_upload_for_an_abort() {
        let key = TokenKey::new(b"secret");
        let token = key.sign(&claims());
        assert_eq!(key.verify_signature(&token), Ok(claims()));
        assert_eq!(
            TokenKey::new(b"other").verify_signature(&token),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_download_link_is_for_one_key_until_it_expires() {
        let key = TokenKey::new(b"secret");
        let signature = key.sign_link("uploads/a/1/x", 100);
        assert_eq!(
            key.verify_link("uploads/a/1/x", 100, &signature, 100),
            Ok(())
        );
        assert_eq!(
            key.verify_link("uploads/a/1/x", 100, &signature, 101),
            Err(TokenError::Expired)
        );
        for (other_key, expires_at) in [("uploads/a/1/y", 100), ("uploads/a/1/x", 1_000)] {
            assert_eq!(
                key.verify_link(other_key, expires_at, &signature, 0),
                Err(TokenError::BadSignature)
            );
        }
        assert_eq!(
            TokenKey::new(b"other").verify_link("uploads/a/1/x", 100, &signature, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let key = TokenKey::new(b"secret");
        let token = key.sign(&claims());
        let (_, signature) = token.split_once('.').unwrap();
        let forged_claims = Claims {
            size: 10_000,
            ..claims()
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        let forged = format!("{forged_payload}.{signature}");
        assert_eq!(key.verify(&forged, 0), Err(TokenError::BadSignature));
        assert_eq!(
            TokenKey::new(b"other").verify(&token, 0),
            Err(TokenError::BadSignature)
        );
        for malformed in ["", "abc", "a.b", "!!.??", "e30.AAAA"] {
            assert!(key.verify(malformed, 0).is_err(), "{malformed:?}");
        }
    }
}
