//! User tokens: JWTs checked against the identity providers configured in
//! `auth.json` (next to the data, or `--auth-config`), in the shape of Convex's
//! `auth.config.ts`:
//!
//! ```json
//! {"providers": [
//!   {"type": "customJwt", "issuer": "https://auth.example.com", "applicationID": "jangar",
//!    "algorithm": "RS256", "jwks": "https://auth.example.com/.well-known/jwks.json"},
//!   {"domain": "https://accounts.example.com", "applicationID": "my-client-id"}
//! ]}
//! ```
//!
//! A `customJwt` provider names its keys directly: an `https://` URL, an
//! `http://` URL on a loopback host, a file path (relative to the config file)
//! or an inline JWKS object. A provider with a `domain` is an OIDC provider:
//! its keys come from the `jwks_uri` of its discovery document. Keys fetched
//! over HTTP are cached (for the response's `max-age`, within 5 minutes and a
//! day; an hour without one) and fetched again when a token names a key id
//! the cache does not hold, which is how key rotation reaches Jangar. A key
//! file is read again when it changes.

use jangar_engine::knobs::{
    DEFAULT_KEY_TTL, KEYS_FETCH_TIMEOUT, KEYS_REFETCH_INTERVAL, MAX_KEY_TTL, MAX_KEYS_BYTES, MAX_VERIFIED_TOKENS,
    MIN_KEY_TTL,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{AuthError, UserIdentity};
use crate::client::HttpClient;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    providers: Vec<ProviderConfig>,
    /// Tolerated clock difference with the providers, for `exp` and `nbf`.
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
}

fn default_skew() -> u64 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderConfig {
    #[serde(rename = "type")]
    kind: Option<String>,
    issuer: Option<String>,
    domain: Option<String>,
    #[serde(rename = "applicationID")]
    application_id: Option<String>,
    algorithm: Option<String>,
    jwks: Option<serde_json::Value>,
}

/// The configured identity providers.
pub struct Providers {
    providers: Vec<Provider>,
    clock_skew: u64,
    http: HttpClient,
    /// Tokens already verified, by their SHA-256, with whom they name and until when.
    verified: std::sync::Mutex<HashMap<[u8; 32], (UserIdentity, SystemTime)>>,
}

struct Provider {
    issuer: String,
    /// The token's `aud` must contain it; `None` (customJwt only) skips the check.
    application_id: Option<String>,
    algorithms: Vec<Algorithm>,
    keys: KeySource,
}

enum KeySource {
    Inline(JwkSet),
    File {
        path: PathBuf,
        cache: std::sync::Mutex<Option<(SystemTime, JwkSet)>>,
    },
    /// A JWKS URL, or (`discovery`) an OIDC discovery document naming one.
    Url {
        url: String,
        discovery: bool,
        cache: Mutex<FetchedKeys>,
    },
}

#[derive(Default)]
struct FetchedKeys {
    keys: Option<JwkSet>,
    fresh_until: Option<Instant>,
    last_forced: Option<Instant>,
}

/// The text of an auth config; `Ok(None)` when the file does not exist.
pub(crate) fn read_config(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

impl Providers {
    /// The providers of an auth config's text, read from `path` (file paths in it are relative to it).
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Providers, String> {
        let config: ConfigFile =
            serde_json::from_str(text).map_err(|e| format!("{} is not a valid auth config: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let providers = config
            .providers
            .into_iter()
            .enumerate()
            .map(|(i, provider)| Provider::from_config(provider, base).map_err(|e| format!("providers[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Providers {
            providers,
            clock_skew: config.clock_skew_seconds,
            http: HttpClient::default(),
            verified: std::sync::Mutex::default(),
        })
    }

    /// The one provider of the tokens this deployment issues (`super::issuer`).
    pub(crate) fn issued_here(issuer: &str, audience: &str, keys: JwkSet) -> Providers {
        let provider = Provider {
            issuer: issuer.to_owned(),
            application_id: Some(audience.to_owned()),
            algorithms: vec![Algorithm::RS256],
            keys: KeySource::Inline(keys),
        };
        Providers {
            providers: vec![provider],
            clock_skew: default_skew(),
            http: HttpClient::default(),
            verified: std::sync::Mutex::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.providers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.issuer.as_str())
    }

    /// Checks a token and returns whom it names, with when it expires.
    pub(crate) async fn verify(&self, token: &str) -> Result<(UserIdentity, SystemTime), AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = SystemTime::now();
        let remembered = self.verified_tokens().get(&digest).cloned();
        if let Some((user, expires)) = remembered {
            if now < expires + Duration::from_secs(self.clock_skew) {
                return Ok((user, expires));
            }
            return Err(AuthError::Expired);
        }
        let (user, expires) = self.verify_signed(token).await?;
        let mut verified = self.verified_tokens();
        if verified.len() >= MAX_VERIFIED_TOKENS {
            verified.retain(|_, (_, expires)| now < *expires);
            if verified.len() >= MAX_VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(digest, (user.clone(), expires));
        Ok((user, expires))
    }

    fn verified_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (UserIdentity, SystemTime)>> {
        self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Verifies a token's signature and claims with its provider's keys.
    async fn verify_signed(&self, token: &str) -> Result<(UserIdentity, SystemTime), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => AuthError::BadAlgorithm,
            _ => AuthError::BadToken,
        })?;
        let unverified: UnverifiedClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| AuthError::BadToken)?;
        let issuer = unverified.iss.ok_or(AuthError::BadToken)?;
        let provider = self.providers.iter().find(|p| p.issuer == issuer).ok_or(AuthError::WrongIssuer)?;
        if !provider.algorithms.contains(&header.alg) {
            return Err(AuthError::BadAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.issuer]);
        match &provider.application_id {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        validation.validate_nbf = true;
        validation.leeway = self.clock_skew;
        // With an applicationID the audience is required: a token without `aud` is not for us.
        if provider.application_id.is_some() {
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        } else {
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        }

        let mut refetched = false;
        loop {
            let keys = provider.keys(&self.http, refetched).await?;
            let candidates: Vec<&Jwk> = match &header.kid {
                Some(kid) => keys.find(kid).into_iter().collect(),
                None => keys.keys.iter().collect(),
            };
            if candidates.is_empty() && header.kid.is_some() && !refetched && provider.keys.can_refetch() {
                // A key id we have not seen: the provider may have rotated its keys.
                refetched = true;
                continue;
            }
            let mut outcome = Err(AuthError::BadSignature);
            for jwk in candidates {
                let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
                match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
                    Ok(data) => return data.claims.into_identity(),
                    Err(e) => {
                        outcome = Err(validation_error(e.kind()));
                        if outcome != Err(AuthError::BadSignature) {
                            break;
                        }
                    }
                }
            }
            return outcome;
        }
    }
}

fn validation_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
            AuthError::BadToken
        }
        _ => AuthError::BadSignature,
    }
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    exp: u64,
    name: Option<String>,
    email: Option<String>,
}

impl Claims {
    fn into_identity(self) -> Result<(UserIdentity, SystemTime), AuthError> {
        if self.sub.is_empty() {
            return Err(AuthError::BadToken);
        }
        let expires = UNIX_EPOCH.checked_add(Duration::from_secs(self.exp)).ok_or(AuthError::BadToken)?;
        let token_identifier = format!("{}|{}", self.iss, self.sub);
        let identity = UserIdentity {
            subject: self.sub,
            issuer: self.iss,
            token_identifier,
            name: self.name,
            email: self.email,
            signed_in_here: None,
        };
        Ok((identity, expires))
    }
}

impl Provider {
    fn from_config(config: ProviderConfig, base: &Path) -> Result<Provider, String> {
        match config.kind.as_deref() {
            Some("customJwt") => {
                let issuer = config.issuer.ok_or("a customJwt provider needs an `issuer`")?;
                let algorithm = match config.algorithm.as_deref() {
                    Some("RS256") => Algorithm::RS256,
                    Some("ES256") => Algorithm::ES256,
                    Some(other) => return Err(format!("algorithm {other:?} is not supported (RS256 or ES256)")),
                    None => return Err("a customJwt provider needs an `algorithm` (RS256 or ES256)".into()),
                };
                if config.domain.is_some() {
                    return Err("a customJwt provider has an `issuer`, not a `domain`".into());
                }
                let keys = match config.jwks {
                    Some(serde_json::Value::String(location)) => KeySource::from_location(&location, base)?,
                    Some(inline @ serde_json::Value::Object(_)) => KeySource::Inline(
                        serde_json::from_value(inline).map_err(|e| format!("`jwks` is not a valid JWKS: {e}"))?,
                    ),
                    _ => return Err("a customJwt provider needs `jwks`: a URL, a file path or a JWKS object".into()),
                };
                if config.application_id.is_none() {
                    tracing::warn!(issuer, "this provider has no applicationID: token audiences are not checked");
                }
                Ok(Provider { issuer, application_id: config.application_id, algorithms: vec![algorithm], keys })
            }
            None => {
                let domain = config.domain.ok_or("a provider needs a `type: \"customJwt\"` or an OIDC `domain`")?;
                let application_id = config.application_id.ok_or("an OIDC provider needs an `applicationID`")?;
                if config.issuer.is_some() || config.jwks.is_some() || config.algorithm.is_some() {
                    return Err("an OIDC provider has `domain` and `applicationID` only".into());
                }
                // Tokens carry the domain exactly as configured (some providers end it with a slash).
                let url = format!("{}/.well-known/openid-configuration", domain.trim_end_matches('/'));
                check_url(&url)?;
                Ok(Provider {
                    issuer: domain,
                    application_id: Some(application_id),
                    algorithms: vec![Algorithm::RS256, Algorithm::ES256],
                    keys: KeySource::Url { url, discovery: true, cache: Mutex::default() },
                })
            }
            Some(other) => Err(format!("provider type {other:?} is not supported (customJwt, or an OIDC `domain`)")),
        }
    }

    async fn keys(&self, http: &HttpClient, force: bool) -> Result<JwkSet, AuthError> {
        match &self.keys {
            KeySource::Inline(keys) => Ok(keys.clone()),
            KeySource::File { path, cache } => read_key_file(path, cache),
            KeySource::Url { url, discovery, cache } => {
                let mut cache = cache.lock().await;
                let now = Instant::now();
                let stale = cache.fresh_until.is_none_or(|until| now >= until);
                let may_force =
                    force && cache.last_forced.is_none_or(|at| now.duration_since(at) >= KEYS_REFETCH_INTERVAL);
                if let Some(keys) = &cache.keys
                    && !stale
                    && !may_force
                {
                    return Ok(keys.clone());
                }
                if may_force {
                    cache.last_forced = Some(now);
                }
                match fetch_keys(http, url, *discovery).await {
                    Ok((keys, ttl)) => {
                        cache.keys = Some(keys.clone());
                        cache.fresh_until = Some(now + ttl);
                        Ok(keys)
                    }
                    Err(e) => {
                        tracing::warn!(url, error = %e, "cannot fetch the identity provider's keys");
                        // Keys fetched before still verify tokens while the provider is unreachable.
                        cache.keys.clone().ok_or(AuthError::KeysUnavailable)
                    }
                }
            }
        }
    }
}

impl KeySource {
    fn from_location(location: &str, base: &Path) -> Result<KeySource, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            check_url(location)?;
            return Ok(KeySource::Url { url: location.to_owned(), discovery: false, cache: Mutex::default() });
        }
        let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
        let path = if path.is_absolute() { path.to_owned() } else { base.join(path) };
        let cache = std::sync::Mutex::new(None);
        read_key_file(&path, &cache).map_err(|_| format!("cannot read a JWKS from {}", path.display()))?;
        Ok(KeySource::File { path, cache })
    }

    fn can_refetch(&self) -> bool {
        matches!(self, KeySource::Url { .. })
    }
}

/// Keys must come over TLS, except from this machine (a sidecar, or a test).
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return if url.starts_with("https://") { Ok(()) } else { Err(format!("{url:?} is not an http(s) URL")) };
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(format!("{url:?}: keys from another machine must come over https://")) }
}

fn read_key_file(path: &Path, cache: &std::sync::Mutex<Option<(SystemTime, JwkSet)>>) -> Result<JwkSet, AuthError> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).map_err(|_| AuthError::KeysUnavailable)?;
    let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((at, keys)) = cache.as_ref()
        && *at == modified
    {
        return Ok(keys.clone());
    }
    let text = std::fs::read(path).map_err(|_| AuthError::KeysUnavailable)?;
    let keys: JwkSet = serde_json::from_slice(&text).map_err(|e| {
        tracing::warn!(path = %path.display(), error = %e, "the key file is not a valid JWKS");
        AuthError::KeysUnavailable
    })?;
    *cache = Some((modified, keys.clone()));
    Ok(keys)
}

async fn fetch_keys(http: &HttpClient, url: &str, discovery: bool) -> Result<(JwkSet, Duration), String> {
    let keys_url = if discovery {
        let (document, _) = fetch_json(http, url).await?;
        let jwks_uri = document["jwks_uri"].as_str().ok_or("the discovery document has no jwks_uri")?.to_owned();
        check_url(&jwks_uri)?;
        jwks_uri
    } else {
        url.to_owned()
    };
    let (body, ttl) = fetch_json(http, &keys_url).await?;
    let keys = serde_json::from_value(body).map_err(|e| format!("{keys_url} is not a JWKS: {e}"))?;
    Ok((keys, ttl))
}

/// GETs a JSON document; also returns how long it may be cached.
async fn fetch_json(http: &HttpClient, url: &str) -> Result<(serde_json::Value, Duration), String> {
    let response = tokio::time::timeout(KEYS_FETCH_TIMEOUT, http.get(url))
        .await
        .map_err(|_| format!("{url} did not answer within {KEYS_FETCH_TIMEOUT:?}"))??;
    if !response.status.is_success() {
        return Err(format!("{url} answered {}", response.status));
    }
    if response.body.len() > MAX_KEYS_BYTES {
        return Err(format!("{url} answered more than {MAX_KEYS_BYTES} bytes"));
    }
    let max_age = response
        .headers
        .get_all(hyper::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| directive.trim().strip_prefix("max-age=")?.parse::<u64>().ok());
    let ttl = max_age.map_or(DEFAULT_KEY_TTL, |s| Duration::from_secs(s).clamp(MIN_KEY_TTL, MAX_KEY_TTL));
    Ok((response.json()?, ttl))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn keys_come_over_tls_unless_local() {
        assert!(check_url("https://auth.example.com/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]:9/jwks").is_ok());
        assert!(check_url("http://auth.example.com/jwks.json").is_err());
        assert!(check_url("http://127.0.0.1.example.com/jwks.json").is_err());
        assert!(check_url("ftp://x/jwks").is_err());
    }
}
