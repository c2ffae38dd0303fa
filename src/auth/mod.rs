//! Who is calling: credentials from the `Authorization` header (HTTP) or an
//! `Authenticate` message (sync), checked against the deployment's admin keys.
//!
//! With no admin key configured and a loopback listener, the deployment runs
//! in an open development mode: anyone who can reach it may call anything.
//! Otherwise every call needs credentials.

pub mod keys;
pub mod rate_limit;

use std::sync::Arc;

use crate::engine::base64;
use keys::AdminKeys;
use rate_limit::RateLimiter;

/// A caller's identity. Its `key` is part of every subscription key, so two
/// identities never share query results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Anonymous,
    /// An admin, possibly acting as a user (the JSON identity it gave, kept as text).
    Admin {
        acting_as: Option<String>,
    },
}

impl Identity {
    pub fn key(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Admin { acting_as: None } => "admin".into(),
            Identity::Admin { acting_as: Some(user) } => format!("admin as {user}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("The admin key is not valid for this deployment.")]
    BadAdminKey,
    #[error("The identity after the admin key is not base64 of a JSON object.")]
    BadActingAs,
    #[error("No JWT identity providers are configured on this deployment, so user tokens cannot be verified.")]
    NoProviders,
    #[error("The Authorization header must be `Convex <admin key>` or `Bearer <token>`.")]
    Malformed,
    #[error("This deployment needs credentials: an admin key (`Authorization: Convex <key>`) or a user token.")]
    Missing,
}

pub struct Auth {
    keys: AdminKeys,
    /// Open development mode: no credentials needed.
    open: bool,
    limiter: RateLimiter,
}

impl Auth {
    /// `rate`: calls per identity per second (0: no limit).
    pub fn new(keys: AdminKeys, open: bool, rate: u32) -> Arc<Auth> {
        Arc::new(Auth { keys, open, limiter: RateLimiter::new(rate) })
    }

    /// Counts one call against the identity's rate; `Err` says how long to wait.
    pub fn admit(&self, identity: &Identity) -> Result<(), std::time::Duration> {
        self.limiter.check(&identity.key())
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The caller named by an `Authorization` header value (or its absence).
    pub fn identify_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return if self.open { Ok(Identity::Anonymous) } else { Err(AuthError::Missing) };
        };
        let (scheme, value) = header.split_once(' ').ok_or(AuthError::Malformed)?;
        match scheme.to_ascii_lowercase().as_str() {
            "convex" => {
                // `<key>` or `<key>:<base64 identity>` (the JS client's setAdminAuth with acting-as).
                let (key, acting_as) = match value.trim().split_once(':') {
                    Some((key, identity)) => (key, Some(decode_acting_as(identity)?)),
                    None => (value.trim(), None),
                };
                self.admin(key, acting_as)
            }
            "bearer" => Err(AuthError::NoProviders),
            _ => Err(AuthError::Malformed),
        }
    }

    /// An admin key from an `Authenticate` message, with the user it acts as (if any).
    pub fn admin(&self, key: &str, acting_as: Option<String>) -> Result<Identity, AuthError> {
        if self.keys.accepts(key) { Ok(Identity::Admin { acting_as }) } else { Err(AuthError::BadAdminKey) }
    }

    /// May this identity call functions at all? (Per-function audiences build on this.)
    pub fn may_call(&self, identity: &Identity) -> bool {
        self.open || matches!(identity, Identity::Admin { .. })
    }
}

fn decode_acting_as(text: &str) -> Result<String, AuthError> {
    let bytes = base64::decode(text).ok_or(AuthError::BadActingAs)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| AuthError::BadActingAs)?;
    if !value.is_object() {
        return Err(AuthError::BadActingAs);
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(open: bool) -> Arc<Auth> {
        let dir = std::env::temp_dir().join("jangar-auth-unit-none");
        Auth::new(AdminKeys::load(&dir, &["secret".to_owned()]), open, 0)
    }

    #[test]
    fn headers_name_the_caller() {
        let closed = auth(false);
        assert_eq!(closed.identify_header(None), Err(AuthError::Missing));
        assert_eq!(closed.identify_header(Some("Convex secret")), Ok(Identity::Admin { acting_as: None }));
        assert_eq!(closed.identify_header(Some("convex secret")), Ok(Identity::Admin { acting_as: None }), "any case");
        assert_eq!(closed.identify_header(Some("Convex wrong")), Err(AuthError::BadAdminKey));
        assert_eq!(closed.identify_header(Some("Bearer eyJ")), Err(AuthError::NoProviders));
        assert_eq!(closed.identify_header(Some("Basic abc")), Err(AuthError::Malformed));
        let acting = format!("Convex secret:{}", base64::encode(br#"{"subject":"u1"}"#));
        assert_eq!(
            closed.identify_header(Some(&acting)),
            Ok(Identity::Admin { acting_as: Some(r#"{"subject":"u1"}"#.into()) })
        );
        assert_eq!(closed.identify_header(Some("Convex secret:!!")), Err(AuthError::BadActingAs));
        assert!(!closed.may_call(&Identity::Anonymous));
        let open = auth(true);
        assert_eq!(open.identify_header(None), Ok(Identity::Anonymous));
        assert!(open.may_call(&Identity::Anonymous));
        assert_eq!(
            open.identify_header(Some("Convex wrong")),
            Err(AuthError::BadAdminKey),
            "bad keys fail even when open"
        );
    }
}
