//! Signing users in: the auth tables of `@convex-dev/auth` and the state changes of its flows
//! (password sign-up and sign-in, anonymous users, refresh-token rotation, sign-out), each one
//! atomic in one mutation. The actions `auth:signIn` and `auth:signOut` (crates/api's
//! `auth::actions`) call these around what must not run in a transaction: hashing a password
//! and signing a token, with a [`Ctx`] of an admin. Nothing here is a public function: a client
//! reaches these tables only through those actions and `users:viewer`.

use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::IndexRange;
use jangar_engine::schema::{TableDef, v};
use jangar_engine::storage::Order;
use jangar_engine::transaction::All;
use jangar_engine::value::Value;

use super::access::Ctx;
use super::common::object;
use super::error::{AppError, ErrorCode, FunctionError};
use super::schema::tables;

pub const PASSWORD: &str = "password";
pub const ANONYMOUS: &str = "anonymous";

/// How long a session lasts from its sign-in, and a refresh token from its issue, unused
/// (`@convex-dev/auth`'s defaults).
const SESSION_MS: f64 = 30.0 * 24.0 * 3600.0 * 1000.0;
const REFRESH_TOKEN_MS: f64 = SESSION_MS;
/// A used refresh token may be used again this long after its first use (two tabs refreshing
/// at once); past it, a use is taken for a stolen token's.
const REUSE_WINDOW_MS: f64 = 10_000.0;
/// Failed password sign-ins per account and hour, refilled continuously.
const FAILED_SIGN_INS_PER_HOUR: f64 = 10.0;
const HOUR_MS: f64 = 3600.0 * 1000.0;
/// The shortest password a sign-up or a reset accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;

pub(crate) fn tables() -> Vec<TableDef> {
    let optional_number = v::optional(v::number());
    vec![
        TableDef::new(
            tables::USERS,
            10_014,
            vec![
                ("name", v::optional(v::string())),
                ("image", v::optional(v::string())),
                ("email", v::optional(v::string())),
                ("emailVerificationTime", optional_number.clone()),
                ("phone", v::optional(v::string())),
                ("phoneVerificationTime", optional_number.clone()),
                ("isAnonymous", v::optional(v::boolean())),
                // Jangar's own: set by `jangar users disable`, which ends every session of the user.
                ("disabledTime", optional_number.clone()),
            ],
        )
        .index("email", &["email"]),
        TableDef::new(
            tables::AUTH_ACCOUNTS,
            10_015,
            vec![
                ("userId", v::id(tables::USERS)),
                ("provider", v::string()),
                ("providerAccountId", v::string()),
                // The password's hash (PHC string), for the password provider.
                ("secret", v::optional(v::string())),
            ],
        )
        .index("userIdAndProvider", &["userId", "provider"])
        .index("providerAndAccountId", &["provider", "providerAccountId"]),
        TableDef::new(
            tables::AUTH_SESSIONS,
            10_016,
            vec![("userId", v::id(tables::USERS)), ("expirationTime", v::number())],
        )
        .index("userId", &["userId"]),
        TableDef::new(
            tables::AUTH_REFRESH_TOKENS,
            10_017,
            vec![
                ("sessionId", v::id(tables::AUTH_SESSIONS)),
                ("expirationTime", v::number()),
                ("firstUsedTime", optional_number.clone()),
                ("parentRefreshTokenId", v::optional(v::id(tables::AUTH_REFRESH_TOKENS))),
            ],
        )
        .index("sessionId", &["sessionId"])
        .index("sessionIdAndParentRefreshTokenId", &["sessionId", "parentRefreshTokenId"]),
        TableDef::new(
            tables::AUTH_RATE_LIMITS,
            10_018,
            vec![("identifier", v::string()), ("lastAttemptTime", v::number()), ("attemptsLeft", v::number())],
        )
        .index("identifier", &["identifier"]),
    ]
}

/// A password's hash as a PHC string: argon2id with the argon2 crate's defaults (19 MiB, two
/// passes: OWASP's recommendation), over a random 16-byte salt. Takes tens of milliseconds of
/// CPU by design: run it off the committer and off the async runtime's threads.
/// Fails only without randomness (the message says why).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a password salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("password salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` is the one `hash` (a PHC string of [`hash_password`]) was made from.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .is_ok_and(|hash| argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A new session's ids: what its tokens carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub user: DocumentId,
    pub session: DocumentId,
    pub refresh_token: DocumentId,
}

impl SignedIn {
    /// The refresh token as the client keeps it: `<refresh token id>|<session id>`.
    pub fn refresh_token_text(&self) -> String {
        format!("{}|{}", self.refresh_token.encode(), self.session.encode())
    }
}

/// A password sign-in let through the rate limit: the account's stored hash to check the
/// password against (outside the transaction: hashing takes tens of milliseconds).
#[derive(Clone, Debug)]
pub struct PasswordAttempt {
    pub account: DocumentId,
    pub user: DocumentId,
    pub secret: String,
}

fn failure(code: ErrorCode, message: impl Into<String>) -> FunctionError {
    AppError::new(code, message).into()
}

fn find_one(
    tx: &mut Ctx<'_, '_>,
    table: &str,
    index: &str,
    range: IndexRange,
) -> Result<Option<Document>, EngineError> {
    Ok(tx.query_unchecked(table, index, range, Order::Asc)?.take(1, All)?.pop())
}

fn password_account(tx: &mut Ctx<'_, '_>, email: &str) -> Result<Option<Document>, EngineError> {
    find_one(tx, tables::AUTH_ACCOUNTS, "providerAndAccountId", IndexRange::default().eq(PASSWORD).eq(email))
}

fn field_id(document: &Document, field: &str) -> Result<DocumentId, EngineError> {
    let text = document.fields.get(field).and_then(Value::as_str).unwrap_or_default();
    DocumentId::decode(text).map_err(|e| EngineError::Schema(format!("{}.{field}: {e}", document.id)))
}

fn number(document: &Document, field: &str) -> Option<f64> {
    document.fields.get(field).and_then(Value::as_f64)
}

/// The user whose password account is `email`.
pub(crate) fn password_user(tx: &mut Ctx<'_, '_>, email: &str) -> Result<Option<Document>, EngineError> {
    let Some(account) = password_account(tx, email)? else { return Ok(None) };
    let user = field_id(&account, "userId")?;
    tx.get_unchecked(tables::USERS, user)
}

/// Sets the password of the account `email` (`hash`, of [`hash_password`]) and lifts its rate limit.
pub(crate) fn replace_password(tx: &mut Ctx<'_, '_>, email: &str, hash: &str) -> Result<(), EngineError> {
    let Some(account) = password_account(tx, email)? else { return Ok(()) };
    tx.patch(tables::AUTH_ACCOUNTS, account.id, [("secret".to_owned(), Some(hash.into()))])?;
    lift_rate_limit(tx, account.id)
}

/// The account's failed sign-ins are forgotten.
fn lift_rate_limit(tx: &mut Ctx<'_, '_>, account: DocumentId) -> Result<(), EngineError> {
    let identifier = IndexRange::default().eq(account.encode());
    if let Some(limit) = find_one(tx, tables::AUTH_RATE_LIMITS, "identifier", identifier)? {
        tx.delete(tables::AUTH_RATE_LIMITS, limit.id)?;
    }
    Ok(())
}

/// Ends every session of a user.
pub(crate) fn end_sessions_of(tx: &mut Ctx<'_, '_>, user: DocumentId) -> Result<(), EngineError> {
    let range = IndexRange::default().eq(user.encode());
    for session in tx.query_unchecked(tables::AUTH_SESSIONS, "userId", range, Order::Asc)?.take(usize::MAX, All)? {
        end_session(tx, session.id)?;
    }
    Ok(())
}

/// Whether a password account exists for `email`.
pub fn password_account_exists(tx: &mut Ctx<'_, '_>, email: &str) -> Result<bool, EngineError> {
    Ok(password_account(tx, email)?.is_some())
}

/// Counts a password sign-in against the account's rate limit before its password is checked,
/// so that parallel guesses cannot all pass a limit read before any failure was recorded. A
/// successful sign-in gives the attempts back ([`complete_password_sign_in`]).
pub fn take_password_attempt(tx: &mut Ctx<'_, '_>, email: &str) -> Result<PasswordAttempt, FunctionError> {
    let Some(account) = password_account(tx, email)? else {
        return Err(failure(ErrorCode::Unauthenticated, "InvalidAccountId"));
    };
    let user = field_id(&account, "userId")?;
    refuse_disabled(tx, user)?;
    let now = tx.now_ms();
    let identifier = account.id.encode();
    let limit = find_one(tx, tables::AUTH_RATE_LIMITS, "identifier", IndexRange::default().eq(identifier.clone()))?;
    let left = limit.as_ref().map_or(FAILED_SIGN_INS_PER_HOUR, |limit| {
        let since = now - number(limit, "lastAttemptTime").unwrap_or(now);
        let refilled = number(limit, "attemptsLeft").unwrap_or(0.0) + since * FAILED_SIGN_INS_PER_HOUR / HOUR_MS;
        refilled.min(FAILED_SIGN_INS_PER_HOUR)
    });
    if left < 1.0 {
        return Err(failure(ErrorCode::RateLimited, "TooManyFailedAttempts"));
    }
    let counted =
        [("lastAttemptTime".to_owned(), Some(now.into())), ("attemptsLeft".to_owned(), Some((left - 1.0).into()))];
    match limit {
        Some(limit) => {
            tx.patch(tables::AUTH_RATE_LIMITS, limit.id, counted)?;
        }
        None => {
            let fields = object([
                ("identifier", identifier.into()),
                ("lastAttemptTime", now.into()),
                ("attemptsLeft", (left - 1.0).into()),
            ]);
            tx.insert(tables::AUTH_RATE_LIMITS, fields)?;
        }
    }
    let secret = account.fields.get("secret").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(PasswordAttempt { account: account.id, user, secret })
}

/// After the password was right: the account's attempts are whole again, and a new session
/// replaces the caller's (`ending`, the session of the token it called with).
pub fn complete_password_sign_in(
    tx: &mut Ctx<'_, '_>,
    attempt: &PasswordAttempt,
    ending: Option<DocumentId>,
) -> Result<SignedIn, FunctionError> {
    refuse_disabled(tx, attempt.user)?;
    lift_rate_limit(tx, attempt.account)?;
    new_session(tx, attempt.user, ending)
}

/// A password sign-up: a user with this email and its password account (`secret`, the hash).
pub fn sign_up_with_password(
    tx: &mut Ctx<'_, '_>,
    email: &str,
    secret: &str,
    ending: Option<DocumentId>,
) -> Result<SignedIn, FunctionError> {
    if password_account_exists(tx, email)? {
        return Err(account_exists(email));
    }
    let user = tx.insert(tables::USERS, object([("email", email.into())]))?;
    let account = object([
        ("userId", user.encode().into()),
        ("provider", PASSWORD.into()),
        ("providerAccountId", email.into()),
        ("secret", secret.into()),
    ]);
    tx.insert(tables::AUTH_ACCOUNTS, account)?;
    new_session(tx, user, ending)
}

pub fn account_exists(email: &str) -> FunctionError {
    failure(ErrorCode::Conflict, format!("Account {email} already exists"))
}

/// A new anonymous user (every anonymous sign-in makes one), signed in.
pub fn sign_in_anonymously(
    tx: &mut Ctx<'_, '_>,
    account_id: &str,
    ending: Option<DocumentId>,
) -> Result<SignedIn, FunctionError> {
    let user = tx.insert(tables::USERS, object([("isAnonymous", true.into())]))?;
    let account = object([
        ("userId", user.encode().into()),
        ("provider", ANONYMOUS.into()),
        ("providerAccountId", account_id.into()),
    ]);
    tx.insert(tables::AUTH_ACCOUNTS, account)?;
    new_session(tx, user, ending)
}

/// Refuses a user who was disabled (`jangar users disable`) or is gone.
fn refuse_disabled(tx: &mut Ctx<'_, '_>, user: DocumentId) -> Result<(), FunctionError> {
    match tx.get_unchecked(tables::USERS, user)? {
        Some(found) if number(&found, "disabledTime").is_none() => Ok(()),
        Some(_) => Err(failure(ErrorCode::Forbidden, "This account is disabled.")),
        None => Err(failure(ErrorCode::Unauthenticated, "InvalidAccountId")),
    }
}

fn new_session(tx: &mut Ctx<'_, '_>, user: DocumentId, ending: Option<DocumentId>) -> Result<SignedIn, FunctionError> {
    if let Some(session) = ending {
        end_session(tx, session)?;
    }
    let expires = tx.now_ms() + SESSION_MS;
    let session = tx.insert(
        tables::AUTH_SESSIONS,
        object([("userId", user.encode().into()), ("expirationTime", expires.into())]),
    )?;
    let refresh_token = new_refresh_token(tx, session, None)?;
    Ok(SignedIn { user, session, refresh_token })
}

fn new_refresh_token(
    tx: &mut Ctx<'_, '_>,
    session: DocumentId,
    parent: Option<DocumentId>,
) -> Result<DocumentId, EngineError> {
    let mut fields =
        object([("sessionId", session.encode().into()), ("expirationTime", (tx.now_ms() + REFRESH_TOKEN_MS).into())]);
    if let Some(parent) = parent {
        fields.insert("parentRefreshTokenId".to_owned(), parent.encode().into());
    }
    tx.insert(tables::AUTH_REFRESH_TOKENS, fields)
}

fn session_tokens(tx: &mut Ctx<'_, '_>, session: DocumentId) -> Result<Vec<Document>, EngineError> {
    let range = IndexRange::default().eq(session.encode());
    // Newest first: the active token is the newest one never used.
    tx.query_unchecked(tables::AUTH_REFRESH_TOKENS, "sessionId", range, Order::Desc)?.take(usize::MAX, All)
}

/// Ends a session: it and its refresh tokens are deleted (nothing happens if it is gone).
pub fn end_session(tx: &mut Ctx<'_, '_>, session: DocumentId) -> Result<(), EngineError> {
    if tx.get_unchecked(tables::AUTH_SESSIONS, session)?.is_none() {
        return Ok(());
    }
    for token in session_tokens(tx, session)? {
        tx.delete(tables::AUTH_REFRESH_TOKENS, token.id)?;
    }
    tx.delete(tables::AUTH_SESSIONS, session)?;
    Ok(())
}

/// Exchanges a refresh token for the session's next one (`None`: the token is not valid, and
/// the session it names is ended). A token works once: its first use rotates it; using it again
/// within `REUSE_WINDOW_MS` (another tab refreshing at the same time) gets the session's current
/// token, and any later use is taken for a stolen token's and ends the session.
pub fn refresh(tx: &mut Ctx<'_, '_>, refresh_token: &str) -> Result<Option<SignedIn>, EngineError> {
    let Some((token_text, session_text)) = refresh_token.split_once('|') else { return Ok(None) };
    let (Ok(token_id), Ok(session)) = (DocumentId::decode(token_text), DocumentId::decode(session_text)) else {
        return Ok(None);
    };
    let table_of = |id: DocumentId| tx.schema().table_by_number(id.table).map(|t| t.name);
    if table_of(token_id) != Some(tables::AUTH_REFRESH_TOKENS) || table_of(session) != Some(tables::AUTH_SESSIONS) {
        return Ok(None);
    }
    let now = tx.now_ms();
    let live = |document: &Document| number(document, "expirationTime").is_some_and(|at| at > now);
    let token = tx
        .get_unchecked(tables::AUTH_REFRESH_TOKENS, token_id)?
        .filter(|token| live(token) && field_id(token, "sessionId").is_ok_and(|s| s == session));
    let found = tx.get_unchecked(tables::AUTH_SESSIONS, session)?.filter(live);
    let (Some(token), Some(found)) = (token, found) else {
        end_session(tx, session)?;
        return Ok(None);
    };
    let user = field_id(&found, "userId")?;
    match refuse_disabled(tx, user) {
        Ok(()) => {}
        Err(FunctionError::Engine(e)) => return Err(e),
        Err(FunctionError::App(_)) => {
            end_session(tx, session)?;
            return Ok(None);
        }
    }
    let signed_in = |refresh_token| Ok(Some(SignedIn { user, session, refresh_token }));
    let Some(first_used) = number(&token, "firstUsedTime") else {
        tx.patch(tables::AUTH_REFRESH_TOKENS, token.id, [("firstUsedTime".to_owned(), Some(now.into()))])?;
        return signed_in(new_refresh_token(tx, session, Some(token.id))?);
    };
    if now < first_used + REUSE_WINDOW_MS {
        let active = session_tokens(tx, session)?.into_iter().find(|t| number(t, "firstUsedTime").is_none());
        if let Some(active) = active.filter(|t| field_id(t, "parentRefreshTokenId").is_ok_and(|p| p == token.id)) {
            return signed_in(active.id);
        }
        return signed_in(new_refresh_token(tx, session, Some(token.id))?);
    }
    end_session(tx, session)?;
    Ok(None)
}
