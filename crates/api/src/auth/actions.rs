//! The actions `auth:signIn` and `auth:signOut`, with the arguments and results of
//! `@convex-dev/auth` 0.0.95's clients (docs/convex-auth-protocol.md): the `password` provider
//! (flows `signUp` and `signIn`), the `anonymous` provider and token refresh. Each state change
//! is one mutation of `jangar_domain::auth`; what must not run in a transaction (hashing a
//! password, signing a token) runs between them, off the async runtime's threads.

use jangar_domain::access::{Caller, Ctx};
use jangar_domain::auth::{self, MIN_PASSWORD_CHARS, PasswordAttempt, SignedIn};
use jangar_domain::error::{AppError, ErrorCode, FunctionError};
use jangar_engine::error::EngineError;
use jangar_engine::id::DocumentId;
use jangar_engine::transaction::Transaction;
use jangar_engine::value::{Object, Value};

use super::Identity;
use crate::executions::{CallerKind, Invocation, Outcome, RequestId};
use crate::{AppState, decode_args};

pub(crate) const SIGN_IN: &str = "auth:signIn";
pub(crate) const SIGN_OUT: &str = "auth:signOut";

/// The fields `auth:signIn`'s validator allows (anything goes inside `params`).
const SIGN_IN_FIELDS: &[&str] = &["provider", "params", "verifier", "refreshToken", "calledBy"];

/// The action a path (canonical) names, if it is one of these.
pub(crate) fn named(path: &str) -> Option<&'static str> {
    [SIGN_IN, SIGN_OUT].into_iter().find(|action| *action == path)
}

/// Runs `auth:signIn` or `auth:signOut` (`action`, from [`named`]) with its arguments as sent, for
/// the caller `identity` (a sign-in replaces the session of the token it was called with; a
/// sign-out ends it), and records the call in the function log.
pub(crate) async fn run(
    state: &AppState,
    identity: &Identity,
    action: &'static str,
    args: &serde_json::Value,
) -> Result<Value, FunctionError> {
    let invocation = Invocation::action(action, CallerKind::of(identity), RequestId::next());
    let started = std::time::Instant::now();
    let result = match decode_args(args) {
        Ok(args) => run_decoded(state, identity, action, args).await,
        Err(e) => Err(e),
    };
    state.executions.record(invocation, started.elapsed(), Outcome::of(&result));
    result
}

async fn run_decoded(state: &AppState, identity: &Identity, path: &str, args: Value) -> Result<Value, FunctionError> {
    let Value::Object(args) = args else {
        return Err(invalid(format!("Arguments of {path} must be an object.")));
    };
    let session = own_session(identity);
    if path == SIGN_OUT {
        if let Some(extra) = args.keys().next() {
            return Err(invalid(format!("ArgumentValidationError: {SIGN_OUT} takes no arguments, not `{extra}`.")));
        }
        if let Some(session) = session {
            mutate(state, move |tx| auth::end_session(tx, session).map_err(FunctionError::from)).await?;
        }
        ended(state, session);
        return Ok(Value::Null);
    }
    if let Some(extra) = args.keys().find(|k| !SIGN_IN_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!("ArgumentValidationError: Object contains extra field `{extra}`.")));
    }
    let text = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_owned);
    let params = match args.get("params") {
        Some(Value::Object(params)) => params.clone(),
        _ => Object::new(),
    };
    match text("provider").as_deref() {
        None => {
            if let Some(refresh_token) = text("refreshToken") {
                let refreshed = mutate(state, move |tx| Ok(auth::refresh(tx, &refresh_token)?)).await?;
                return tokens(state, refreshed.as_ref()).await;
            }
            if params.contains_key("code") {
                // This deployment sends no codes (no OAuth, no email codes), so none is valid.
                return tokens(state, None).await;
            }
            Err(invalid("Cannot sign in: Missing `provider`, `params.code` or `refreshToken`"))
        }
        Some(auth::PASSWORD) => {
            let signed_in = password(state, &params, session).await?;
            ended(state, session);
            tokens(state, Some(&signed_in)).await
        }
        Some(auth::ANONYMOUS) => {
            let account = random_hex()?;
            let signed_in = mutate(state, move |tx| auth::sign_in_anonymously(tx, &account, session)).await?;
            ended(state, session);
            tokens(state, Some(&signed_in)).await
        }
        Some(other) => Err(invalid(format!(
            "Provider `{other}` is not supported by this deployment: it signs users in with `{}` and `{}`.",
            auth::PASSWORD,
            auth::ANONYMOUS
        ))),
    }
}

/// The password provider's flows.
async fn password(state: &AppState, params: &Object, session: Option<DocumentId>) -> Result<SignedIn, FunctionError> {
    let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
    let flow = text("flow");
    let flow = match flow.as_deref() {
        Some(flow @ ("signUp" | "signIn")) => flow,
        Some(flow @ ("reset" | "reset-verification" | "email-verification")) => {
            return Err(invalid(format!(
                "The password flow `{flow}` is not supported by this deployment (it sends no emails): \
                 an operator resets a password with `jangar users reset-password`."
            )));
        }
        _ => return Err(invalid("Missing `flow` param, it must be one of \"signUp\" or \"signIn\"")),
    };
    let email = text("email").filter(|e| !e.trim().is_empty()).ok_or_else(|| invalid("Missing `email` param"))?;
    let password = text("password").ok_or_else(|| invalid(format!("Missing `password` param for `{flow}` flow")))?;
    if flow == "signIn" {
        return sign_in_with_password(state, email, password, session).await;
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid("Invalid password"));
    }
    let exists = {
        let email = email.clone();
        state.db.query(move |tx| auth::password_account_exists(&mut admin(tx), &email)).await?.value
    };
    if exists {
        // As Convex Auth does: the same password signs the user in; another one is refused
        // (and counted against the account, so sign-up is no way around the rate limit).
        return match sign_in_with_password(state, email.clone(), password, session).await {
            Err(FunctionError::App(e)) if e.message == "InvalidSecret" => Err(auth::account_exists(&email)),
            other => other,
        };
    }
    let hash = off_runtime(move || auth::hash_password(&password)).await?;
    mutate(state, move |tx| auth::sign_up_with_password(tx, &email, &hash, session)).await
}

async fn sign_in_with_password(
    state: &AppState,
    email: String,
    password: String,
    session: Option<DocumentId>,
) -> Result<SignedIn, FunctionError> {
    let attempt: PasswordAttempt = mutate(state, move |tx| auth::take_password_attempt(tx, &email)).await?;
    let hash = attempt.secret.clone();
    if !off_runtime(move || Ok(auth::verify_password(&password, &hash))).await? {
        return Err(AppError::new(ErrorCode::Unauthenticated, "InvalidSecret").into());
    }
    mutate(state, move |tx| auth::complete_password_sign_in(tx, &attempt, session)).await
}

/// `{tokens}`: a new access token and the refresh token, or `null` (the client then forgets its
/// tokens and is signed out).
async fn tokens(state: &AppState, signed_in: Option<&SignedIn>) -> Result<Value, FunctionError> {
    let tokens = match signed_in {
        None => Value::Null,
        Some(signed_in) => {
            let token = state.auth.issuer().token(signed_in).await.map_err(internal)?;
            let pairs = [("token", Value::from(token)), ("refreshToken", signed_in.refresh_token_text().into())];
            Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }
    };
    Ok(Value::Object(Object::from([("tokens".to_owned(), tokens)])))
}

/// The caller's session was ended (by a sign-out, or replaced by a sign-in): its tokens are
/// refused at once.
fn ended(state: &AppState, session: Option<DocumentId>) {
    if let Some(session) = session {
        state.auth.issuer().forget_session(session);
    }
}

/// The session of a token this deployment issued.
fn own_session(identity: &Identity) -> Option<DocumentId> {
    let Identity::User { user, .. } = identity else { return None };
    DocumentId::decode(user.session_here()?).ok()
}

fn admin<'c, 'a>(tx: &'c mut Transaction<'a>) -> Ctx<'c, 'a> {
    Ctx::new(tx, &Caller::ADMIN)
}

/// One atomic change of the auth tables, as an admin (these actions decide who may do what).
async fn mutate<T, F>(state: &AppState, change: F) -> Result<T, FunctionError>
where
    F: FnOnce(&mut Ctx<'_, '_>) -> Result<T, FunctionError> + Send + 'static,
    T: Send + 'static,
{
    let outcome = state.db.mutate(move |tx| change(&mut admin(tx))).await.map_err(FunctionError::into_client_facing)?;
    Ok(outcome.value)
}

/// CPU-bound work (a password hash) on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, FunctionError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| internal(e.to_string()))?.map_err(internal)
}

fn random_hex() -> Result<String, FunctionError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| internal(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn invalid(message: impl Into<String>) -> FunctionError {
    AppError::new(ErrorCode::InvalidArgument, message).into()
}

/// A failure of this server, not of the call: reported as a storage error is (a 500).
fn internal(message: String) -> FunctionError {
    FunctionError::Engine(EngineError::Storage(jangar_engine::storage::StorageError::Other(message)))
}
