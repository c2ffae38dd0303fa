//! Who is calling: credentials from the `Authorization` header (HTTP) or an
//! `Authenticate` message (sync), checked against the deployment's admin keys.
//!
//! With no admin key configured and a loopback listener, the deployment runs
//! in an open development mode: anyone who can reach it may call anything.
//! Otherwise every call needs credentials.

pub mod jwt;
pub mod keys;
pub mod rate_limit;

use std::sync::Arc;
use std::time::SystemTime;

use crate::domain::access::{Caller, User, Viewer};
use crate::engine::base64;
use jwt::Providers;
use keys::AdminKeys;
use rate_limit::RateLimiter;

/// A signed-in user, as Convex's `UserIdentity` names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserIdentity {
    pub subject: String,
    pub issuer: String,
    /// `issuer|subject`.
    pub token_identifier: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl UserIdentity {
    /// `bare_subject`: whether the subject alone names the user (one provider).
    fn as_user(&self, bare_subject: bool) -> User {
        User { token_identifier: self.token_identifier.clone(), subject: bare_subject.then(|| self.subject.clone()) }
    }
}

/// A caller's identity. Its `key` is part of every subscription key, so two
/// identities never share query results.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Anonymous,
    /// An admin, possibly acting as a user.
    Admin {
        acting_as: Option<UserIdentity>,
    },
    /// A user whose token a configured provider signed, valid until `expires`.
    User {
        user: UserIdentity,
        expires: SystemTime,
    },
}

impl Identity {
    pub fn key(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Admin { acting_as: None } => "admin".into(),
            Identity::Admin { acting_as: Some(user) } => format!("admin as {}", user.token_identifier),
            Identity::User { user, .. } => format!("user {}", user.token_identifier),
        }
    }

    /// When the credentials stop being valid (user tokens only).
    pub fn expires(&self) -> Option<SystemTime> {
        match self {
            Identity::User { expires, .. } => Some(*expires),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("The admin key is not valid for this deployment.")]
    BadAdminKey,
    #[error("The identity after the admin key must be base64 of a JSON object with a string `subject`.")]
    BadActingAs,
    #[error("No JWT identity providers are configured on this deployment, so user tokens cannot be verified.")]
    NoProviders,
    #[error("The Authorization header must be `Convex <admin key>` or `Bearer <token>`.")]
    Malformed,
    #[error("This deployment needs credentials: an admin key (`Authorization: Convex <key>`) or a user token.")]
    Missing,
    #[error("The token is not a well-formed JWT with `iss`, `sub` and `exp` claims.")]
    BadToken,
    #[error("The token's algorithm is not one its provider is configured for (unsigned tokens are never accepted).")]
    BadAlgorithm,
    #[error("No identity provider is configured for the token's issuer.")]
    WrongIssuer,
    #[error("The token's audience does not include the provider's applicationID.")]
    WrongAudience,
    #[error("The token has expired.")]
    Expired,
    #[error("The token is not valid yet.")]
    NotYetValid,
    #[error("The token's signature does not verify with its provider's keys.")]
    BadSignature,
    #[error("The identity provider's keys cannot be fetched right now; try again later.")]
    KeysUnavailable,
}

pub struct Auth {
    keys: AdminKeys,
    providers: Option<Providers>,
    /// Open development mode: no credentials needed.
    open: bool,
    limiter: RateLimiter,
}

impl Auth {
    /// `rate`: calls per identity per second (0: no limit).
    pub fn new(keys: AdminKeys, providers: Option<Providers>, open: bool, rate: u32) -> Arc<Auth> {
        Arc::new(Auth { keys, providers, open, limiter: RateLimiter::new(rate) })
    }

    /// Counts one call of a user against their rate; `Err` says how long to wait. Admin keys and
    /// open development mode are not limited: a deployment's workers share one admin key, and a
    /// limit there would throttle them all together.
    pub fn admit(&self, identity: &Identity) -> Result<(), std::time::Duration> {
        match identity {
            Identity::User { .. } => self.limiter.check(&identity.key()),
            Identity::Anonymous | Identity::Admin { .. } => Ok(()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The caller named by an `Authorization` header value (or its absence).
    pub async fn identify_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
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
            "bearer" => self.user(value.trim()).await,
            _ => Err(AuthError::Malformed),
        }
    }

    /// An admin key, with the user it acts as (a JSON identity) if any.
    pub fn admin(&self, key: &str, acting_as: Option<serde_json::Value>) -> Result<Identity, AuthError> {
        if !self.keys.accepts(key) {
            return Err(AuthError::BadAdminKey);
        }
        Ok(Identity::Admin { acting_as: acting_as.map(|identity| acting_user(&identity)).transpose()? })
    }

    /// A user token, checked against the configured providers.
    pub async fn user(&self, token: &str) -> Result<Identity, AuthError> {
        let providers = self.providers.as_ref().ok_or(AuthError::NoProviders)?;
        let (user, expires) = providers.verify(token).await?;
        Ok(Identity::User { user, expires })
    }

    /// Whom a call by this identity runs as; `None` when it needs credentials it lacks.
    pub fn caller(&self, identity: &Identity) -> Option<Caller> {
        let bare_subject = self.providers.as_ref().is_none_or(|providers| providers.len() <= 1);
        match identity {
            Identity::Anonymous => self.open.then_some(Caller::ADMIN),
            Identity::Admin { acting_as: None } => Some(Caller::ADMIN),
            Identity::Admin { acting_as: Some(user) } => {
                Some(Caller { viewer: Viewer::User(user.as_user(bare_subject)), admin: true })
            }
            Identity::User { user, .. } => {
                Some(Caller { viewer: Viewer::User(user.as_user(bare_subject)), admin: false })
            }
        }
    }
}

fn decode_acting_as(text: &str) -> Result<serde_json::Value, AuthError> {
    let bytes = base64::decode(text).ok_or(AuthError::BadActingAs)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::BadActingAs)
}

/// The user an admin acts as: Convex's `UserIdentityAttributes` (`subject`,
/// `issuer`, ...); the token identifier is always `issuer|subject`, as for a token.
fn acting_user(identity: &serde_json::Value) -> Result<UserIdentity, AuthError> {
    let text = |name: &str| identity.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    let subject = text("subject").filter(|s| !s.is_empty()).ok_or(AuthError::BadActingAs)?;
    let issuer = text("issuer").unwrap_or_default();
    let token_identifier = format!("{issuer}|{subject}");
    Ok(UserIdentity { subject, issuer, token_identifier, name: text("name"), email: text("email") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(open: bool) -> Arc<Auth> {
        let dir = std::env::temp_dir().join("jangar-auth-unit-none");
        Auth::new(AdminKeys::load(&dir, &["secret".to_owned()]), None, open, 0)
    }

    #[tokio::test]
    async fn headers_name_the_caller() {
        let closed = auth(false);
        let admin = Identity::Admin { acting_as: None };
        assert_eq!(closed.identify_header(None).await, Err(AuthError::Missing));
        assert_eq!(closed.identify_header(Some("Convex secret")).await, Ok(admin.clone()));
        assert_eq!(closed.identify_header(Some("convex secret")).await, Ok(admin), "any case");
        assert_eq!(closed.identify_header(Some("Convex wrong")).await, Err(AuthError::BadAdminKey));
        assert_eq!(closed.identify_header(Some("Bearer eyJ")).await, Err(AuthError::NoProviders));
        assert_eq!(closed.identify_header(Some("Basic abc")).await, Err(AuthError::Malformed));
        let acting = format!("Convex secret:{}", base64::encode(br#"{"subject":"u1","issuer":"https://idp"}"#));
        let Ok(Identity::Admin { acting_as: Some(user) }) = closed.identify_header(Some(&acting)).await else {
            panic!("acting as a user")
        };
        assert_eq!((user.subject.as_str(), user.token_identifier.as_str()), ("u1", "https://idp|u1"));
        let caller = closed.caller(&Identity::Admin { acting_as: Some(user) }).expect("an admin may call");
        assert!(caller.admin && caller.viewer.is("u1") && !caller.viewer.is("u2"));
        assert_eq!(closed.identify_header(Some("Convex secret:!!")).await, Err(AuthError::BadActingAs));
        let no_subject = format!("Convex secret:{}", base64::encode(br#"{"name":"x"}"#));
        assert_eq!(closed.identify_header(Some(&no_subject)).await, Err(AuthError::BadActingAs));
        assert_eq!(closed.caller(&Identity::Anonymous), None);
        let open = auth(true);
        assert_eq!(open.identify_header(None).await, Ok(Identity::Anonymous));
        assert_eq!(open.caller(&Identity::Anonymous), Some(Caller::ADMIN));
        assert_eq!(
            open.identify_header(Some("Convex wrong")).await,
            Err(AuthError::BadAdminKey),
            "bad keys fail even when open"
        );
    }
}
