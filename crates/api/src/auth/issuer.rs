//! The tokens this deployment issues to the users it signs in (`auth:signIn`), and trusts with no
//! configuration: RS256 JWTs as `@convex-dev/auth` makes them (`sub` = `<userId>|<sessionId>`,
//! `iss` = the site URL, `aud` = `convex`, an hour long), so other services can verify them with
//! the public key served at `/.well-known/jwks.json`.
//!
//! The signing key is `JWT_PRIVATE_KEY` (a PKCS#8 PEM, as Convex Auth's is) or else one made
//! the first time it is needed and kept with the data (`Storage::keep_secret`), so every replica
//! of a shared database signs and verifies alike, and a restart signs nobody out.

use jangar_engine::knobs::{MAX_VERIFIED_TOKENS, SESSION_RECHECK};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jangar_domain::auth::SignedIn;
use jangar_engine::base64::encode_url;
use jangar_engine::id::DocumentId;
use jangar_engine::storage::{Storage, StorageError};
use jangar_engine::value::Value;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value as Json, json};
use tokio::sync::OnceCell;

use super::jwt::Providers;
use super::{AuthError, UserIdentity};

/// Where the signing key is kept (the storage secret's name).
const SIGNING_KEY_SECRET: &str = "jwt_private_key";
/// The audience of issued tokens, as Convex Auth's `auth.config` names it (`applicationID`).
pub(crate) const AUDIENCE: &str = "convex";

pub struct Issuer {
    /// The site URL: the tokens' `iss`.
    issuer: String,
    /// How long an access token lasts.
    lifetime: Duration,
    /// `JWT_PRIVATE_KEY`'s PEM; `None`: the key kept in `storage`.
    given_key: Option<String>,
    key: OnceCell<SigningKey>,
    /// The sessions of tokens checked lately, and when each was last seen alive.
    sessions_seen: Mutex<HashMap<DocumentId, Instant>>,
    /// Where the key is kept and the sessions are read. Weak: the database owns its storage, and
    /// closes it off the async runtime (PostgreSQL's client blocks as it closes).
    storage: Weak<dyn Storage>,
}

struct SigningKey {
    encoding: EncodingKey,
    jwks: Json,
    /// This deployment as the one identity provider of its own tokens.
    verifier: Providers,
}

impl Issuer {
    /// `private_key`: a PKCS#8 PEM (newlines may be spaces, as Convex Auth's CLI writes it);
    /// without one, the key kept in `storage`.
    pub fn new(
        site_url: &str,
        lifetime: Duration,
        private_key: Option<String>,
        storage: &Arc<dyn Storage>,
    ) -> Arc<Issuer> {
        Arc::new(Issuer {
            issuer: site_url.trim_end_matches('/').to_owned(),
            lifetime,
            given_key: private_key,
            key: OnceCell::new(),
            sessions_seen: Mutex::default(),
            storage: Arc::downgrade(storage),
        })
    }

    /// The key, read (or made) once, off the async runtime: making one takes a while.
    async fn key(&self) -> Result<&SigningKey, String> {
        self.key
            .get_or_try_init(|| async {
                let pem = match &self.given_key {
                    Some(pem) => normalize_pem(pem),
                    None => {
                        let bytes = self
                            .on_storage(|storage| {
                                storage
                                    .keep_secret(SIGNING_KEY_SECRET, &mut || new_private_key().map(String::into_bytes))
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        String::from_utf8(bytes).map_err(|_| "the stored signing key is not text".to_owned())?
                    }
                };
                SigningKey::from_pem(&pem, &self.issuer)
            })
            .await
    }

    /// An access token for a signed-in session.
    pub(crate) async fn token(&self, signed_in: &SignedIn) -> Result<String, String> {
        let key = self.key().await?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let claims = json!({
            "sub": format!("{}|{}", signed_in.user.encode(), signed_in.session.encode()),
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + self.lifetime.as_secs(),
        });
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.encoding).map_err(|e| e.to_string())
    }

    /// `/.well-known/jwks.json`: the public key.
    pub(crate) async fn jwks(&self) -> Result<Json, String> {
        Ok(self.key().await?.jwks.clone())
    }

    /// `/.well-known/openid-configuration`, enough for a verifier to find the keys.
    pub(crate) fn openid_configuration(&self) -> Json {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// Whether the token says this deployment issued it (unverified: [`Issuer::verify`] checks).
    pub(crate) fn claims_to_have_issued(&self, token: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
            .is_ok_and(|claims| claims.iss.as_deref() == Some(self.issuer.as_str()))
    }

    /// Checks a token this deployment issued; the identity's user id is the `users` document's.
    pub(crate) async fn verify(&self, token: &str) -> Result<(UserIdentity, SystemTime), AuthError> {
        let key = self.key().await.map_err(|e| {
            tracing::error!(error = %e, "the token signing key cannot be read");
            AuthError::KeysUnavailable
        })?;
        let (mut user, expires) = key.verifier.verify(token).await?;
        let (owner, session) = user.subject.split_once('|').ok_or(AuthError::BadToken)?;
        let session = DocumentId::decode(session).map_err(|_| AuthError::BadToken)?;
        user.signed_in_here = Some(owner.to_owned());
        if !self.session_alive(session).await? {
            return Err(AuthError::SessionEnded);
        }
        Ok((user, expires))
    }

    /// Whether a session has not ended: read at most every `SESSION_RECHECK`, so a busy client
    /// costs no read per call.
    async fn session_alive(&self, session: DocumentId) -> Result<bool, AuthError> {
        let seen = self.seen().get(&session).copied();
        if seen.is_some_and(|at| at.elapsed() < SESSION_RECHECK) {
            return Ok(true);
        }
        let expiration = self
            .on_storage(move |storage| {
                let document = storage.snapshot()?.get(&session)?;
                Ok(document.and_then(|d| d.fields.get("expirationTime").and_then(Value::as_f64)))
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "a token's session cannot be read");
                AuthError::SessionsUnavailable
            })?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0;
        let alive = expiration.is_some_and(|at| at > now_ms);
        let mut seen = self.seen();
        if alive {
            if seen.len() >= MAX_VERIFIED_TOKENS {
                seen.retain(|_, at| at.elapsed() < SESSION_RECHECK);
            }
            seen.insert(session, Instant::now());
        } else {
            seen.remove(&session);
        }
        Ok(alive)
    }

    /// A session this process just ended: its tokens are refused from now on, not after
    /// `SESSION_RECHECK`.
    pub(crate) fn forget_session(&self, session: DocumentId) {
        self.seen().remove(&session);
    }

    /// Storage calls block: on the blocking pool.
    async fn on_storage<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            let storage =
                storage.upgrade().ok_or_else(|| StorageError::Unavailable("the server is stopping".into()))?;
            read(&*storage)
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))?
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<DocumentId, Instant>> {
        self.sessions_seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SigningKey {
    fn from_pem(pem: &str, issuer: &str) -> Result<SigningKey, String> {
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("the token signing key is not an RSA private key in PKCS#8 PEM: {e}"))?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let public = private.to_public_key();
        let jwks = json!({"keys": [{
            "use": "sig",
            "kty": "RSA",
            "alg": "RS256",
            "n": encode_url(&public.n().to_bytes_be()),
            "e": encode_url(&public.e().to_bytes_be()),
        }]});
        let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
        let verifier = Providers::issued_here(issuer, AUDIENCE, set);
        Ok(SigningKey { encoding, jwks, verifier })
    }
}

/// A new RSA-2048 key as a PKCS#8 PEM.
fn new_private_key() -> Result<String, StorageError> {
    let fail = |e: String| StorageError::Other(format!("cannot make a signing key: {e}"));
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| fail(e.to_string()))?;
    let pem = private.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
    Ok(pem.to_string())
}

/// A PEM whose line breaks became spaces (an environment variable written on one line) made whole.
fn normalize_pem(pem: &str) -> String {
    let pem = pem.trim();
    if pem.contains('\n') {
        return pem.to_owned();
    }
    let body = pem
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
        .map(|body| body.split_whitespace().collect::<Vec<_>>().join("\n"));
    match body {
        Some(body) => format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
        None => pem.to_owned(),
    }
}
