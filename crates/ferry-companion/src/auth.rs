//! Who is calling: the owner every upload is bound to. Without authentication every caller is
//! `anonymous` (and the companion only listens on loopback unless told otherwise); with it, a
//! request must carry `Authorization: Bearer <token>`, either one of the static tokens or a JWT
//! (HS256 or RS256) whose `sub` names the owner.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The owner of uploads when the companion has no authentication.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Default)]
pub struct Auth {
    /// Static bearer token → owner.
    tokens: HashMap<String, String>,
    /// JWT keys, each with the validation of its algorithm.
    jwt: Vec<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field("jwt_keys", &self.jwt.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct JwtClaims {
    sub: String,
}

/// Why a caller was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this companion needs Authorization: Bearer <token>")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
}

impl Auth {
    /// Static tokens as `token=owner` pairs, and optional JWT keys.
    pub fn new(
        tokens: &[String],
        hs256_secret: Option<&str>,
        rs256_public_pem: Option<&[u8]>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, String> {
        let tokens = tokens
            .iter()
            .map(|pair| {
                let (token, owner) = pair
                    .split_once('=')
                    .filter(|(token, owner)| !token.is_empty() && !owner.is_empty())
                    .ok_or_else(|| {
                        "FERRY_AUTH_TOKENS takes token=owner pairs, comma separated".to_owned()
                    })?;
                Ok((token.to_owned(), owner.to_owned()))
            })
            .collect::<Result<_, String>>()?;
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.set_required_spec_claims(&["exp", "sub"]);
            match audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            if let Some(issuer) = issuer {
                validation.set_issuer(&[issuer]);
            }
            validation
        };
        let mut jwt = Vec::new();
        if let Some(secret) = hs256_secret {
            jwt.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(pem) = rs256_public_pem {
            let key = DecodingKey::from_rsa_pem(pem)
                .map_err(|err| format!("the RS256 public key is not a PEM RSA key: {err}"))?;
            jwt.push((key, validation(Algorithm::RS256)));
        }
        Ok(Self { tokens, jwt })
    }

    /// Whether callers must authenticate.
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.jwt.is_empty()
    }

    /// The owner the request speaks for.
    pub fn owner(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        if !self.is_enabled() {
            return Ok(ANONYMOUS.to_owned());
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(AuthError::Missing)?;
        if let Some(owner) = self.tokens.get(bearer) {
            return Ok(owner.clone());
        }
        self.jwt
            .iter()
            .find_map(|(key, validation)| {
                jsonwebtoken::decode::<JwtClaims>(bearer, key, validation).ok()
            })
            .map(|data| data.claims.sub)
            .filter(|sub| !sub.is_empty())
            .ok_or(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn headers(bearer: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {bearer}").parse().unwrap());
        headers
    }

    fn jwt(secret: &[u8], sub: &str, exp: u64) -> String {
        let claims = serde_json::json!({ "sub": sub, "exp": exp });
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn without_auth_everyone_is_anonymous() {
        let auth = Auth::default();
        assert_eq!(auth.owner(&HeaderMap::new()), Ok(ANONYMOUS.to_owned()));
    }

    #[test]
    fn static_tokens_and_hs256_jwts_name_the_owner() {
        let auth = Auth::new(
            &["s3cret=alice".into()],
            Some("jwt-secret"),
            None,
            None,
            None,
        )
        .unwrap();
        let later = jsonwebtoken::get_current_timestamp() + 600;
        assert_eq!(auth.owner(&headers("s3cret")), Ok("alice".into()));
        assert_eq!(
            auth.owner(&headers(&jwt(b"jwt-secret", "bob", later))),
            Ok("bob".into())
        );
        assert_eq!(auth.owner(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(auth.owner(&headers("guess")), Err(AuthError::Invalid));
        assert_eq!(
            auth.owner(&headers(&jwt(b"other-secret", "bob", later))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.owner(&headers(&jwt(b"jwt-secret", "bob", 1000))),
            Err(AuthError::Invalid),
            "expired"
        );
    }

    #[test]
    fn bad_token_pairs_are_a_configuration_error() {
        assert!(Auth::new(&["no-owner".into()], None, None, None, None).is_err());
        assert!(Auth::new(&["=owner".into()], None, None, None, None).is_err());
    }
}
