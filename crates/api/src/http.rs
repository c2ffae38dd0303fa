//! The Convex HTTP API: `/api/query`, `/api/mutation`, `/api/action`,
//! `/api/function`, `/api/run/{module}/{fn}`, `/api/query_ts`, `/api/query_batch`.

use jangar_engine::knobs::MAX_IDEMPOTENCY_KEY;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value as Json_, json};

use super::error::{ApiCode, ApiError};
use super::{AppState, decode_args};
use crate::auth::{AuthError, actions};
use crate::executions::{CallerKind, Invocation, Outcome, RequestId};
use jangar_domain::access::Caller;
use jangar_domain::error::{AppError, ErrorCode, FunctionError};
use jangar_domain::registry::{
    Function, Kind, QueryAnswer, check_args, enqueue_mutation_once, run_mutation, run_query, run_query_as_of,
};
use jangar_engine::base64;
use jangar_engine::history::AsOf;
use jangar_engine::storage::MutationKey;
use jangar_engine::value::{JsonFormat, Value};
use sha2::Digest;

/// One function call as the API received it.
struct Call {
    path: String,
    args: Json_,
    format: JsonFormat,
}

/// A request body, read within the deployment's limits: 413 at once for a
/// `Content-Length` over `--max-request-bytes` (and as soon as more than that
/// arrives without one), 408 when the client stops sending for
/// `--body-timeout-seconds`. Slow or oversized uploads cannot hold a connection.
pub(crate) struct RequestBody(pub(crate) Bytes);

impl FromRequest<AppState> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<RequestBody, ApiError> {
        let limits = &state.limits;
        let too_large = || {
            let message = format!("The request body is larger than {} bytes.", limits.max_body_bytes);
            ApiError::new(ApiCode::PayloadTooLarge, message)
        };
        let declared = request.headers().get(axum::http::header::CONTENT_LENGTH);
        if declared.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).is_some_and(|n| n > limits.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = request.into_body();
        let mut bytes = Vec::new();
        loop {
            let frame = tokio::time::timeout(limits.body_timeout, body.frame()).await.map_err(|_| {
                let message = format!("No part of the request body arrived for {:?}.", limits.body_timeout);
                ApiError::new(ApiCode::RequestTimeout, message)
            })?;
            let Some(frame) = frame else { return Ok(RequestBody(bytes.into())) };
            let frame =
                frame.map_err(|e| ApiError::new(ApiCode::BadRequest, format!("Reading the body failed: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > limits.max_body_bytes {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&data);
            }
        }
    }
}

/// Reads a JSON body whatever its Content-Type (plain `fetch` sends text/plain).
pub(crate) fn json_body(body: &RequestBody) -> Result<Json_, ApiError> {
    serde_json::from_slice(&body.0)
        .map_err(|e| ApiError::new(ApiCode::BadJsonBody, format!("Failed to parse the request body as JSON: {e}")))
}

fn parse_format(format: Option<&Json_>, default: JsonFormat) -> Result<JsonFormat, ApiError> {
    match format {
        None | Some(Json_::Null) => Ok(default),
        Some(Json_::String(name)) => JsonFormat::parse(Some(name)).ok_or_else(|| {
            ApiError::new(ApiCode::BadFormat, format!("format must be one of json, convex_encoded_json; got {name:?}"))
        }),
        Some(other) => Err(ApiError::new(ApiCode::BadFormat, format!("format must be a string, not {other}"))),
    }
}

fn parse_call(body: &Json_, path: Option<String>, default_format: JsonFormat) -> Result<Call, ApiError> {
    let Json_::Object(fields) = body else {
        return Err(ApiError::new(ApiCode::BadJsonBody, "The request body must be a JSON object."));
    };
    let path = match path {
        Some(path) => path,
        None => match fields.get("path") {
            Some(Json_::String(path)) => path.clone(),
            _ => {
                return Err(ApiError::new(ApiCode::BadJsonBody, "The request body needs a string field `path`."));
            }
        },
    };
    Ok(Call {
        path,
        args: fields.get("args").cloned().unwrap_or_else(|| json!({})),
        format: parse_format(fields.get("format"), default_format)?,
    })
}

/// Checks the `Convex-Client` header: `{client}-{semver}`.
pub(crate) fn check_client_header(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get("convex-client") else {
        return Ok(());
    };
    let valid = value.to_str().ok().and_then(|v| v.rsplit_once('-')).is_some_and(|(name, version)| {
        !name.is_empty()
            && version.split(['.', '-', '+']).next().is_some_and(|major| major.parse::<u32>().is_ok())
            && version.contains('.')
    });
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiCode::BadConvexClientHeader,
            format!("Convex-Client header {value:?} is not `client-semver`."),
        ))
    }
}

/// A UdfResponse body, ready to send.
pub(crate) struct UdfBody(String);

impl IntoResponse for UdfBody {
    fn into_response(self) -> Response {
        ([(axum::http::header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

impl From<Json_> for UdfBody {
    fn from(json: Json_) -> UdfBody {
        UdfBody(json.to_string())
    }
}

/// A success response around an already-serialized value.
fn success_body(value_json: &str) -> UdfBody {
    const OPEN: &str = r#"{"status":"success","value":"#;
    const CLOSE: &str = r#","logLines":[]}"#;
    let mut body = String::with_capacity(OPEN.len() + value_json.len() + CLOSE.len());
    body.extend([OPEN, value_json, CLOSE]);
    UdfBody(body)
}

/// A function's failure as a UdfResponse, or an infrastructure error.
fn failure(error: FunctionError, format: JsonFormat) -> Result<Json_, ApiError> {
    match error {
        FunctionError::App(app) => Ok(json!({
            "status": "error",
            "errorMessage": app.message,
            "errorData": app.data().to_json(format),
            "logLines": [],
        })),
        FunctionError::Engine(e) => Err(ApiError::engine(e)),
    }
}

fn udf_response(result: Result<Value, FunctionError>, format: JsonFormat) -> Result<Json_, ApiError> {
    match result {
        Ok(value) => Ok(json!({"status": "success", "value": value.to_json(format), "logLines": []})),
        Err(error) => failure(error, format),
    }
}

fn find_function(state: &AppState, path: &str) -> Result<Arc<Function>, ApiError> {
    state.registry.get(path).ok_or_else(|| {
        ApiError::new(
            ApiCode::FunctionPathNotFound,
            // Worded so `npx convex run` recognises it and lists the functions there are.
            format!("Could not find function for '{}'.", jangar_domain::registry::canonical_path(path)),
        )
    })
}

/// A retry-safe call: the `Idempotency-Key` header, scoped to the caller's identity.
struct Retry {
    key: MutationKey,
}

impl Retry {
    fn from_headers(headers: &HeaderMap, identity: &crate::auth::Identity) -> Result<Option<Retry>, ApiError> {
        let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
        let key = value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY).ok_or_else(|| {
            let message = format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters.");
            ApiError::new(ApiCode::BadIdempotencyKey, message)
        })?;
        // "http|": never a socket's replay key (those start with a length). Length-prefixed, so no
        // identity and key pair reads as another.
        let identity = identity.key();
        let client = format!("http|{}:{identity}{key}", identity.len());
        Ok(Some(Retry { key: MutationKey { client, request: 0 } }))
    }
}

/// What a function answered: a query's result (perhaps the cache's), or a mutation's value.
enum Answered {
    Query(QueryAnswer),
    Value(Value),
}

/// Runs one call; `expected` is the kind the route serves (`None`: any kind). A mutation with a
/// `retry` key runs once: the same key again answers the first outcome. Every call of a function
/// of the right kind goes into the function log, failed argument checks too.
async fn run(
    state: &AppState,
    (caller, caller_kind): (Caller, CallerKind),
    call: Call,
    expected: Option<Kind>,
    retry: Option<Retry>,
) -> Result<UdfBody, ApiError> {
    let function = find_function(state, &call.path)?;
    if let Some(expected) = expected.filter(|k| *k != function.kind) {
        return Ok(UdfBody::from(wrong_kind(function.path, expected, function.kind)));
    }
    let invocation = Invocation::new(&function, caller_kind, RequestId::next());
    let started = Instant::now();
    let answered = answer(state, function, caller, &call.args, retry).await;
    let outcome = match &answered {
        Ok(Answered::Query(query)) => Outcome::Success { cached: query.cached },
        other => Outcome::of(other),
    };
    state.executions.record(invocation, started.elapsed(), outcome);
    match answered {
        Ok(Answered::Query(query)) => Ok(success_body(&query.result.json(call.format))),
        Ok(Answered::Value(value)) => Ok(success_body(&value.to_json_text(call.format))),
        Err(e) => failure(e, call.format).map(UdfBody::from),
    }
}

/// Checks a call's arguments and runs its function as its kind runs.
async fn answer(
    state: &AppState,
    function: Arc<Function>,
    caller: Caller,
    args: &Json_,
    retry: Option<Retry>,
) -> Result<Answered, FunctionError> {
    let args = decode_args(args).and_then(|args| check_args(&function, args, state.db.schema()))?;
    match function.kind {
        Kind::Query => run_query(&state.db, function, caller, args).await.map(Answered::Query),
        Kind::Mutation => match retry {
            None => run_mutation(&state.db, function, caller, args).await.map(|o| Answered::Value(o.value)),
            Some(Retry { key }) => {
                let call = Value::Object(args.0.clone()).to_json(JsonFormat::Encoded);
                let digest = sha2::Sha256::digest(format!("{}\u{0}{call}", function.path).as_bytes());
                let fingerprint = base64::encode(&digest);
                let outcome = enqueue_mutation_once(&state.db, function, caller, args, key, Some(fingerprint)).await?;
                outcome.await.map(|o| Answered::Value(o.value))
            }
        },
        Kind::Action => {
            Err(FunctionError::App(AppError::new(ErrorCode::InvalidArgument, "Actions are not supported.")))
        }
    }
}

/// The caller named by the request's `Authorization` header; 401 when it is
/// not valid, or missing where credentials are needed.
pub(crate) async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    Ok(identify(state, headers).await?.1)
}

/// Whom the request calls as, and with what kind of credentials (for the function log).
async fn caller_of_call(state: &AppState, headers: &HeaderMap) -> Result<(Caller, CallerKind), ApiError> {
    let (identity, caller) = identify(state, headers).await?;
    Ok((caller, CallerKind::of(&identity)))
}

/// The request's identity and whom it calls as.
async fn identify(state: &AppState, headers: &HeaderMap) -> Result<(crate::auth::Identity, Caller), ApiError> {
    let header = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
    let identity = state.auth.identify_header(header).await.map_err(auth_error)?;
    let caller = state.auth.caller(&identity).ok_or_else(|| auth_error(AuthError::Missing))?;
    state.auth.admit(&identity).map_err(ApiError::rate_limited)?;
    Ok((identity, caller))
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        // Not the caller's fault: they may try again.
        AuthError::KeysUnavailable | AuthError::SessionsUnavailable => {
            ApiError::new(ApiCode::AuthProviderUnavailable, error.to_string())
        }
        _ => ApiError::of(ErrorCode::Unauthenticated, error.to_string()),
    }
}

async fn call_route(
    state: AppState,
    headers: HeaderMap,
    body: RequestBody,
    expected: Option<Kind>,
) -> Result<UdfBody, ApiError> {
    check_client_header(&headers)?;
    let call = parse_call(&json_body(&body)?, None, JsonFormat::Clean)?;
    if let Some(action) = actions::named(&jangar_domain::registry::canonical_path(&call.path)) {
        return auth_action(&state, &headers, action, call, expected).await;
    }
    let (identity, caller) = identify(&state, &headers).await?;
    let retry = Retry::from_headers(&headers, &identity)?;
    run(&state, (caller, CallerKind::of(&identity)), call, expected, retry).await
}

/// `auth:signIn` and `auth:signOut`. They need no credentials (signing in is how a user gets
/// some; a refresh is sent without any), but credentials that are sent must be valid.
async fn auth_action(
    state: &AppState,
    headers: &HeaderMap,
    action: &'static str,
    call: Call,
    expected: Option<Kind>,
) -> Result<UdfBody, ApiError> {
    if let Some(expected) = expected.filter(|k| *k != Kind::Action) {
        return Ok(UdfBody::from(wrong_kind(action, expected, Kind::Action)));
    }
    let header = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?"));
    let identity = match state.auth.identify_header(header).await {
        Err(AuthError::Missing) => crate::auth::Identity::Anonymous,
        identity => identity.map_err(auth_error)?,
    };
    state.auth.admit(&identity).map_err(ApiError::rate_limited)?;
    let result = actions::run(state, &identity, action, &call.args).await;
    udf_response(result, call.format).map(UdfBody::from)
}

/// The answer to a call of a function as another kind than it is.
fn wrong_kind(path: &str, expected: Kind, actual: Kind) -> Json_ {
    json!({
        "status": "error",
        "errorMessage": format!(
            "Trying to execute {path} as {}, but it is defined as {}.", expected.name(), actual.name()
        ),
        "logLines": [],
    })
}

pub(crate) async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<UdfBody, ApiError> {
    call_route(state, headers, body, Some(Kind::Query)).await
}

pub(crate) async fn mutation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<UdfBody, ApiError> {
    call_route(state, headers, body, Some(Kind::Mutation)).await
}

pub(crate) async fn action(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<UdfBody, ApiError> {
    call_route(state, headers, body, Some(Kind::Action)).await
}

/// `/api/function` runs a function of any kind.
pub(crate) async fn function(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<UdfBody, ApiError> {
    call_route(state, headers, body, None).await
}

#[derive(serde::Deserialize)]
pub(crate) struct QueryParams {
    path: String,
    args: Option<String>,
    format: Option<String>,
}

/// `GET /api/query?path=..&args=<json>&format=..`
pub(crate) async fn query_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Result<UdfBody, ApiError> {
    check_client_header(&headers)?;
    let caller = caller_of_call(&state, &headers).await?;
    let args = match params.args.as_deref() {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| ApiError::new(ApiCode::BadJsonBody, format!("Failed to parse args as JSON: {e}")))?,
        None => json!({}),
    };
    let format = parse_format(params.format.map(Json_::String).as_ref(), JsonFormat::Clean)?;
    run(&state, caller, Call { path: params.path, args, format }, Some(Kind::Query), None).await
}

/// `/api/run/{module path}/{function}`: `messages/list` is `messages:list`.
pub(crate) async fn run_by_path(
    State(state): State<AppState>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<UdfBody, ApiError> {
    check_client_header(&headers)?;
    let (identity, caller) = identify(&state, &headers).await?;
    let retry = Retry::from_headers(&headers, &identity)?;
    let Some((module, name)) = route.rsplit_once('/') else {
        return Err(ApiError::new(ApiCode::BadConvexFunctionIdentifier, format!("{route:?} is not module/function.")));
    };
    let body = if body.0.is_empty() { json!({}) } else { json_body(&body)? };
    let call = parse_call(&body, Some(format!("{module}:{name}")), JsonFormat::Clean)?;
    run(&state, (caller, CallerKind::of(&identity)), call, None, retry).await
}

pub(crate) async fn query_ts(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    caller(&state, &headers).await?;
    let ts = state.db.current_ts().await.map_err(ApiError::storage)?;
    Ok(Json(json!({"ts": base64::encode(&ts.to_le_bytes())})))
}

/// `/api/query_at_ts`: a query as of a timestamp from `/api/query_ts` (the npm HTTP client's
/// `consistentQuery`). Storage keeps only the latest versions, so it answers when nothing the
/// query read has changed since that timestamp (then the latest result is the one at it), within
/// the last minute of commits; otherwise 400 `TimestampTooOld`.
pub(crate) async fn query_at_ts(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<UdfBody, ApiError> {
    check_client_header(&headers)?;
    let (caller, caller_kind) = caller_of_call(&state, &headers).await?;
    let body = json_body(&body)?;
    let at = match body.get("ts") {
        Some(Json_::String(text)) => crate::sync::protocol::decode_ts(text),
        Some(Json_::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| ApiError::new(ApiCode::BadTimestamp, "`ts` must be a timestamp from /api/query_ts."))?;
    let call = parse_call(&body, None, JsonFormat::Clean)?;
    let function = find_function(&state, &call.path)?;
    if function.kind != Kind::Query {
        return Err(ApiError::new(ApiCode::BadFunctionKind, format!("{} is not a query.", function.path)));
    }
    let invocation = Invocation::new(&function, caller_kind, RequestId::next());
    let started = Instant::now();
    let ran = match decode_args(&call.args).and_then(|args| check_args(&function, args, state.db.schema())) {
        Ok(args) => run_query_as_of(&state.db, function.clone(), caller, args, at).await,
        Err(e) => Err(e),
    };
    let (outcome, answer) = match ran {
        Ok(Ok(value)) => (Outcome::Success { cached: false }, Ok(success_body(&value.to_json_text(call.format)))),
        Ok(Err(as_of)) => {
            let refusal = as_of_refusal(function.path, as_of);
            (Outcome::of_api(&refusal), Err(refusal))
        }
        Err(e) => (Outcome::of_error(&e), failure(e, call.format).map(UdfBody::from)),
    };
    state.executions.record(invocation, started.elapsed(), outcome);
    answer
}

/// Why a query cannot be answered as of the timestamp asked for.
fn as_of_refusal(path: &str, as_of: AsOf) -> ApiError {
    let too_old = |why: &str| {
        ApiError::new(ApiCode::TimestampTooOld, format!("{path} cannot be read as of that timestamp: {why}"))
    };
    match as_of {
        AsOf::Changed => too_old("a later commit changed what it reads"),
        AsOf::TooOld | AsOf::NotYetKnown => too_old("only the last minute of commits is kept"),
        AsOf::Future | AsOf::Same => ApiError::new(ApiCode::BadTimestamp, "`ts` is later than the latest commit."),
    }
}

/// `/api/query_batch`: every query of the batch reads the same snapshot.
pub(crate) async fn query_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Json<Json_>, ApiError> {
    check_client_header(&headers)?;
    let (caller, caller_kind) = caller_of_call(&state, &headers).await?;
    let body = json_body(&body)?;
    let Some(Json_::Array(queries)) = body.get("queries") else {
        return Err(ApiError::new(ApiCode::BadJsonBody, "The request body needs an array field `queries`."));
    };
    // One request in the function log, one execution per query.
    let request = RequestId::next();
    let mut bodies = Vec::with_capacity(queries.len());
    let mut calls = Vec::with_capacity(queries.len());
    for item in queries {
        let call = parse_call(item, None, JsonFormat::Clean)?;
        let function = find_function(&state, &call.path)?;
        // A mutation named here does not run, so it is not logged.
        let invocation = (function.kind == Kind::Query).then(|| Invocation::new(&function, caller_kind, request));
        calls.push((call.format, invocation));
        let prepared = if function.kind != Kind::Query {
            Err(FunctionError::App(AppError::new(
                ErrorCode::InvalidArgument,
                format!("{} is a {}, not a query.", function.path, function.kind.name()),
            )))
        } else {
            decode_args(&call.args)
                .and_then(|args| check_args(&function, args, state.db.schema()))
                .map(|args| (function, args))
        };
        let caller = caller.clone();
        // Timed on the snapshot's thread, where the batch's queries run one after another.
        bodies.push(move |tx: &mut jangar_engine::transaction::Transaction<'_>| {
            let started = Instant::now();
            let result = prepared.and_then(|(function, args)| {
                function.call(tx, &caller, &args).map_err(FunctionError::into_client_facing)
            });
            (result, started.elapsed())
        });
    }
    let (results, _) = state.db.query_many(bodies).await.map_err(ApiError::engine)?;
    let results = results
        .into_iter()
        .zip(calls)
        .map(|((result, elapsed), (format, invocation))| {
            if let Some(invocation) = invocation {
                state.executions.record(invocation, elapsed, Outcome::of(&result));
            }
            udf_response(result, format)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({"results": results})))
}

/// Liveness for Kubernetes (`/livez`): 200 while the process serves HTTP, also while it waits
/// for its database (restarting it would not bring the database sooner).
pub(crate) async fn live() -> Json<Json_> {
    Json(json!({"live": true}))
}

/// Readiness for a load balancer (`/ready`, `/readyz`): 200 while the database answers, 503 when
/// it does not.
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Json_>) {
    match state.db.current_ts().await {
        Ok(ts) => (StatusCode::OK, Json(json!({"ready": true, "ts": base64::encode(&ts.to_le_bytes())}))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": e.to_string()}))),
    }
}

pub(crate) async fn version() -> &'static str {
    concat!("jangar ", env!("CARGO_PKG_VERSION"))
}

/// What verifiers of this deployment's tokens read, cached briefly (as Convex Auth serves it).
const WELL_KNOWN_CACHE: &str = "public, max-age=15, stale-while-revalidate=15, stale-if-error=86400";

/// `/.well-known/openid-configuration`: where the keys of this deployment's tokens are.
pub(crate) async fn openid_configuration(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.auth.issuer().openid_configuration();
    ([(axum::http::header::CACHE_CONTROL, WELL_KNOWN_CACHE)], axum::Json(body))
}

/// `/.well-known/jwks.json`: the public key of this deployment's tokens.
pub(crate) async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let body = state.auth.issuer().jwks().await.map_err(|e| ApiError::new(ApiCode::InternalServerError, e))?;
    Ok(([(axum::http::header::CACHE_CONTROL, WELL_KNOWN_CACHE)], axum::Json(body)))
}

pub(crate) async fn root() -> &'static str {
    "This Jangar deployment is running. It speaks the Convex HTTP and sync protocols."
}

/// Group-commit, sync and scheduled-backup counters, for benchmarks and operators (admins).
pub(crate) async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    if !caller(&state, &headers).await?.admin {
        return Err(ApiError::of(ErrorCode::Forbidden, "The server's counters need an admin key."));
    }
    let stats = state.db.stats();
    let sync = &state.sync.stats;
    let groups = stats.groups.load(Ordering::Relaxed);
    let per_group = |total: u64| if groups == 0 { 0.0 } else { total as f64 / groups as f64 };
    let mutations = stats.mutations.load(Ordering::Relaxed);
    let (statements, round_trips) =
        (stats.statements.load(Ordering::Relaxed), stats.round_trips.load(Ordering::Relaxed));
    let (held, recent) = stats.recent_group_seconds.quantiles(&[0.5, 0.99]);
    let (hits, misses) = state.db.cache().hits_and_misses();
    Ok(Json(json!({
        "commitGroups": groups,
        "mutationsCommitted": mutations,
        "mutationsPerGroup": per_group(mutations),
        "commitStatements": statements,
        "statementsPerGroup": per_group(statements),
        "commitRoundTrips": round_trips,
        "roundTripsPerGroup": per_group(round_trips),
        // From the batch's start (on PostgreSQL, the commit lock taken) to its durable COMMIT.
        "lockHoldMs": {"p50": held[0] * 1e3, "p99": held[1] * 1e3, "groups": recent},
        "queryCacheHits": hits,
        "queryCacheMisses": misses,
        "documentCacheHits": stats.document_cache_hits.load(Ordering::Relaxed),
        "documentCacheMisses": stats.document_cache_misses.load(Ordering::Relaxed),
        "syncConnections": sync.connections.load(Ordering::Relaxed),
        "syncSubscriptions": sync.subscriptions.load(Ordering::Relaxed),
        "syncQueriesRun": sync.queries_run.load(Ordering::Relaxed),
        "syncTransitions": sync.transitions.load(Ordering::Relaxed),
        "syncSteps": sync.steps.load(Ordering::Relaxed),
        "backups": state.backups.as_ref().map(|backups| json!({
            "succeeded": backups.succeeded.load(Ordering::Relaxed),
            "failed": backups.failed.load(Ordering::Relaxed),
            "lastSuccessAtMs": backups.last_success_ms.load(Ordering::Relaxed),
            "lastBytes": backups.last_bytes.load(Ordering::Relaxed),
            "lastDurationMs": backups.last_duration_ms.load(Ordering::Relaxed),
        })),
    })))
}

/// `POST /jangar/check`: the integrity check on the live database, for admins
/// (it lists document ids of every table).
pub(crate) async fn check(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Json_>, ApiError> {
    if caller(&state, &headers).await? != Caller::ADMIN {
        return Err(ApiError::of(ErrorCode::Forbidden, "The integrity check needs an admin key."));
    }
    let report = state.db.check_integrity().await.map_err(ApiError::storage)?;
    Ok(Json(report.to_json()))
}

/// A known route called with the wrong method, in the API's error shape.
pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let message = format!("{} does not take {method} requests.", uri.path());
    ApiError::new(ApiCode::MethodNotAllowed, message).into_response()
}

/// Unknown routes answer in the API's error shape.
pub(crate) async fn not_found() -> Response {
    ApiError::of(ErrorCode::NotFound, "No such route.").into_response()
}
