//! An identity provider for tests: signing keys made in the test, tokens
//! signed with them, and the public keys as a JWKS (inline, in a file or
//! served over HTTP on loopback).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.jangar.test";
pub const AUDIENCE: &str = "jangar-ui";

/// One signing key with its key id.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    pub fn rsa(kid: &str) -> SigningKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        SigningKey { kid: kid.into(), algorithm: Algorithm::RS256, key: EncodingKey::from_rsa_der(der.as_bytes()) }
    }

    pub fn es256(kid: &str) -> SigningKey {
        use p256::pkcs8::EncodePrivateKey;
        let private = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = private.to_pkcs8_der().unwrap();
        SigningKey { kid: kid.into(), algorithm: Algorithm::ES256, key: EncodingKey::from_ec_der(der.as_bytes()) }
    }

    /// The public half, as a JWK.
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).unwrap()
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A token for `subject` from the test issuer and audience, valid for `seconds` from now.
    pub fn token(&self, subject: &str, seconds: i64) -> String {
        self.sign(&claims(subject, seconds))
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Standard claims for `subject`, expiring `seconds` from now.
pub fn claims(subject: &str, seconds: i64) -> Value {
    json!({
        "iss": ISSUER, "sub": subject, "aud": AUDIENCE,
        "iat": now(), "exp": now() + seconds,
        "name": format!("User {subject}"), "email": format!("{subject}@example.com"),
    })
}

pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

/// A customJwt provider of the test issuer with the given `jwks` (a URL, a path or an object).
pub fn provider(algorithm: &str, jwks: Value) -> Value {
    json!({"type": "customJwt", "issuer": ISSUER, "applicationID": AUDIENCE, "algorithm": algorithm, "jwks": jwks})
}

/// Writes an auth config with these providers (no clock skew, so expiry is exact).
pub fn write_config(dir: &std::path::Path, providers: Vec<Value>) -> std::path::PathBuf {
    let path = dir.join("auth.json");
    let config = json!({"providers": providers, "clockSkewSeconds": 0});
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// A JWKS served over HTTP on a loopback port, replaceable while it runs;
/// counts how often it was fetched. Also an OIDC discovery document naming it.
pub struct JwksServer {
    pub url: String,
    /// The OIDC `domain` whose discovery document points at `url`.
    pub domain: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: Value) -> JwksServer {
        let shared = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (shared.clone(), fetches.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let domain = format!("http://{}", listener.local_addr().unwrap());
        let url = format!("{domain}/jwks.json");
        let discovery = json!({"issuer": domain, "jwks_uri": url});
        let app = axum::Router::new().route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || std::future::ready(axum::Json(discovery.clone()))),
        );
        let app = app.route(
            "/jwks.json",
            axum::routing::get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(served.lock().unwrap().clone())
                }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer { url, domain, keys: shared, fetches, task }
    }

    pub fn replace(&self, keys: Value) {
        *self.keys.lock().unwrap() = keys;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
