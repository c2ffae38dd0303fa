//! Who is calling: credentials from the `Authorization` header (HTTP) or an
//! `Authenticate` message (sync), checked against the deployment's admin keys.
//!
//! With no admin key configured and a loopback listener, the deployment runs
//! in an open development mode: anyone who can reach it may call anything.
//! Otherwise every call needs credentials.
//!
//! The admin-key file and the auth config are read again a few times a second
//! ([`Auth::watch`]): a revoked key stops working, a new provider is trusted,
//! and the first key or provider ends open development mode, without a
//! restart. Every change is announced ([`Auth::changes`]) so open sockets check
//! their credentials again.

pub(crate) mod actions;
pub mod issuer;
pub(crate) mod jwt;
pub mod keys;
pub(crate) mod rate_limit;

use jangar_engine::knobs::CREDENTIALS_WATCH_EVERY;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use jangar_domain::access::{Caller, User, Viewer};
use jangar_engine::base64;
use jwt::Providers;
use keys::AdminKeys;
use rate_limit::RateLimiter;

/// A signed-in user, as Convex's `UserIdentity` names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserIdentity {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// `issuer|subject`.
    pub(crate) token_identifier: String,
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
    /// For a token this deployment issued: the `users` document id (the subject's first part,
    /// what `getAuthUserId` returns), which owns the user's data.
    pub(crate) signed_in_here: Option<String>,
}

impl UserIdentity {
    /// `bare_subject`: whether the subject alone names the user (one provider).
    fn as_user(&self, bare_subject: bool) -> User {
        if let Some(user_id) = &self.signed_in_here {
            return User { token_identifier: format!("{}|{user_id}", self.issuer), subject: Some(user_id.clone()) };
        }
        User { token_identifier: self.token_identifier.clone(), subject: bare_subject.then(|| self.subject.clone()) }
    }

    /// For a user this deployment signed in, the session of their token.
    pub(crate) fn session_here(&self) -> Option<&str> {
        self.signed_in_here.as_ref().and_then(|_| self.subject.split_once('|')).map(|(_, session)| session)
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
    pub(crate) fn key(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Admin { acting_as: None } => "admin".into(),
            Identity::Admin { acting_as: Some(user) } => format!("admin as {}", user.token_identifier),
            Identity::User { user, .. } => format!("user {}", user.token_identifier),
        }
    }

    /// When the credentials stop being valid (user tokens only).
    pub(crate) fn expires(&self) -> Option<SystemTime> {
        match self {
            Identity::User { expires, .. } => Some(*expires),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
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
    #[error("These credentials are no longer accepted: the admin key was revoked or the identity provider removed.")]
    Revoked,
    #[error("The token is not valid yet.")]
    NotYetValid,
    #[error("The token's session has ended (signed out, or the user was disabled): sign in again.")]
    SessionEnded,
    #[error("The token's signature does not verify with its provider's keys.")]
    BadSignature,
    #[error("The identity provider's keys cannot be fetched right now; try again later.")]
    KeysUnavailable,
    #[error("The sessions of this deployment's users cannot be read right now; try again later.")]
    SessionsUnavailable,
}

/// What a socket authenticated with, kept to check again after a change.
#[derive(Clone, Debug, Default)]
pub(crate) enum Credentials {
    #[default]
    None,
    AdminKey(String),
    UserToken(String),
}

pub struct Auth {
    keys: AdminKeys,
    providers: WatchedProviders,
    /// The tokens of the users this deployment signs in itself, always trusted.
    issuer: Arc<issuer::Issuer>,
    /// Open development mode: no credentials needed. It ends for good once a key or a provider
    /// appears (revoking every key later does not open the server again).
    open: AtomicBool,
    /// Bumped whenever the keys, the providers or the mode change.
    changes: watch::Sender<u64>,
    limiter: RateLimiter,
    /// Calls refused by the limiter so far.
    rate_limited: AtomicU64,
}

/// The identity providers of an auth config file, parsed again when its text changes.
pub struct WatchedProviders {
    path: Option<PathBuf>,
    text: Mutex<Option<String>>,
    current: RwLock<Option<Arc<Providers>>>,
}

impl WatchedProviders {
    /// The providers of `path` (none, if it does not exist); `None` for no config at all.
    pub fn load(path: Option<PathBuf>) -> Result<WatchedProviders, String> {
        let config = WatchedProviders { path, text: Mutex::new(None), current: RwLock::new(None) };
        config.reload()?;
        Ok(config)
    }

    /// Reads the file again; true when its providers changed. A broken edit keeps the providers
    /// in use (and says why), so a typo does not lock everyone out.
    fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.path else { return Ok(false) };
        let text = jwt::read_config(path)?;
        let mut last = self.text.lock().unwrap_or_else(|p| p.into_inner());
        if *last == text {
            return Ok(false);
        }
        let providers = text.as_deref().map(|text| Providers::parse(text, path)).transpose()?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = providers.filter(|p| !p.is_empty()).map(Arc::new);
        *last = text;
        Ok(true)
    }

    pub fn current(&self) -> Option<Arc<Providers>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Auth {
    /// `may_be_open`: the listener is on loopback, so no credentials at all means open development
    /// mode. `rate`: calls per user per second (0: no limit).
    pub fn new(
        keys: AdminKeys,
        providers: WatchedProviders,
        issuer: Arc<issuer::Issuer>,
        may_be_open: bool,
        rate: u32,
    ) -> Arc<Auth> {
        let open = may_be_open && keys.is_empty() && providers.current().is_none();
        let (changes, _) = watch::channel(0);
        let limiter = RateLimiter::new(rate);
        Arc::new(Auth {
            keys,
            providers,
            issuer,
            open: AtomicBool::new(open),
            changes,
            limiter,
            rate_limited: AtomicU64::new(0),
        })
    }

    /// Reads the credential files again every [`CREDENTIALS_WATCH_EVERY`] while the runtime runs.
    pub fn watch(self: &Arc<Self>) {
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CREDENTIALS_WATCH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(auth) = auth.upgrade() else { return };
                auth.reload();
            }
        });
    }

    /// Reads the admin keys and the auth config again, and announces any change.
    pub(crate) fn reload(&self) {
        let keys_changed = self.keys.reload();
        let providers_changed = self.providers.reload().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the auth config is not valid; the providers in use stay");
            false
        });
        let credentials = !self.keys.is_empty() || self.providers.current().is_some();
        let ended_open = credentials && self.open.swap(false, Ordering::Relaxed);
        if ended_open {
            tracing::warn!("an admin key or identity provider is configured now: open development mode has ended");
        }
        if providers_changed && let Some(providers) = self.providers.current() {
            tracing::info!(issuers = ?providers.issuers().collect::<Vec<_>>(), "accepting user tokens");
        }
        if keys_changed || providers_changed || ended_open {
            self.changes.send_modify(|generation| *generation += 1);
        }
    }

    /// Ticks whenever the keys, the providers or the mode change.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether credentials accepted before still are (for an open socket after a change).
    pub(crate) async fn still_valid(&self, credentials: &Credentials) -> bool {
        match credentials {
            // Anonymous callers had rights only in open development mode.
            Credentials::None => self.is_open(),
            // A key accepted only because the deployment was open stops working when it closes.
            Credentials::AdminKey(key) => self.is_open() || self.keys.accepts(key),
            Credentials::UserToken(token) => self.user(token).await.is_ok(),
        }
    }

    /// Counts one call of a user against their rate; `Err` says how long to wait. Admin keys and
    /// open development mode are not limited: a deployment's workers share one admin key, and a
    /// limit there would throttle them all together.
    pub(crate) fn admit(&self, identity: &Identity) -> Result<(), std::time::Duration> {
        let admitted = match identity {
            Identity::User { .. } => self.limiter.check(&identity.key()),
            Identity::Anonymous | Identity::Admin { .. } => Ok(()),
        };
        if admitted.is_err() {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Calls refused for their user's rate so far.
    pub(crate) fn rate_limited_calls(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// The caller named by an `Authorization` header value (or its absence).
    pub(crate) async fn identify_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return if self.is_open() { Ok(Identity::Anonymous) } else { Err(AuthError::Missing) };
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

    /// An admin key, with the user it acts as (a JSON identity) if any. In open development mode
    /// any key is an admin's: anyone may call anything there, and the official CLI always sends one.
    pub(crate) fn admin(&self, key: &str, acting_as: Option<serde_json::Value>) -> Result<Identity, AuthError> {
        if !self.is_open() && !self.keys.accepts(key) {
            return Err(AuthError::BadAdminKey);
        }
        Ok(Identity::Admin { acting_as: acting_as.map(|identity| acting_user(&identity)).transpose()? })
    }

    /// A user token: one this deployment issued, or else one of a configured provider.
    pub(crate) async fn user(&self, token: &str) -> Result<Identity, AuthError> {
        let (user, expires) = if self.issuer.claims_to_have_issued(token) {
            self.issuer.verify(token).await?
        } else {
            self.providers.current().ok_or(AuthError::NoProviders)?.verify(token).await?
        };
        Ok(Identity::User { user, expires })
    }

    /// Issues this deployment's tokens.
    pub(crate) fn issuer(&self) -> &issuer::Issuer {
        &self.issuer
    }

    /// Whom a call by this identity runs as; `None` when it needs credentials it lacks.
    pub(crate) fn caller(&self, identity: &Identity) -> Option<Caller> {
        let bare_subject = self.providers.current().is_none_or(|providers| providers.len() <= 1);
        match identity {
            Identity::Anonymous => self.is_open().then_some(Caller::ADMIN),
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
    Ok(UserIdentity {
        subject,
        issuer,
        token_identifier,
        name: text("name"),
        email: text("email"),
        signed_in_here: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(open: bool) -> Arc<Auth> {
        let dir = std::env::temp_dir().join("jangar-auth-unit-none");
        // Open development mode is no credentials on a loopback listener.
        let keys: &[String] = if open { &[] } else { &["secret".to_owned()] };
        let storage = jangar_engine::storage::memory::MemoryStorage::new(&jangar_domain::schema::schema()).unwrap();
        let storage: Arc<dyn jangar_engine::storage::Storage> = Arc::new(storage);
        let issuer =
            issuer::Issuer::new("http://127.0.0.1:3210", jangar_engine::knobs::ISSUED_TOKEN_LIFETIME, None, &storage);
        Auth::new(AdminKeys::load(&dir, keys), WatchedProviders::load(None).unwrap(), issuer, true, 0)
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
            open.identify_header(Some("Convex any-key")).await,
            Ok(Identity::Admin { acting_as: None }),
            "any presented key is an admin's while open"
        );
        assert!(open.still_valid(&Credentials::AdminKey("any-key".into())).await);
        assert!(!closed.still_valid(&Credentials::AdminKey("any-key".into())).await, "not once closed");
    }
}
