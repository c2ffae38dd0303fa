//! Convex's WebSocket sync protocol on `GET /api/{client_version}/sync` and
//! `GET /api/sync`. Each socket has one task that reads client messages and
//! writes what the [`manager`] and the connection's mutation worker queue for it.

pub(crate) mod close;
pub mod manager;
pub(crate) mod outbox;
pub mod protocol;

use jangar_engine::knobs::{PING_AFTER, SEND_TIMEOUT};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use self::close::{AUTH_ERROR, CloseCode, INVALID_CLIENT_MESSAGE};
use self::manager::{ConnectionId, Event, SyncStats};
use self::outbox::{Outbound, Outbox};
use self::protocol::{ClientMessage, TokenType, encode_ts};
use super::AppState;
use super::error::ApiError;
use crate::auth::{AuthError, Credentials, Identity, actions};
use crate::decode_args;
use crate::executions::{CallerKind, Invocation, Outcome, RequestId};
use jangar_domain::access::Caller;
use jangar_domain::error::{AppError, ErrorCode, FunctionError};
use jangar_domain::registry::{Kind, check_args, enqueue_mutation_once};
use jangar_engine::database::MutationOutcome;
use jangar_engine::storage::MutationKey;
use jangar_engine::value::JsonFormat;
use jangar_engine::value::Value;

/// What the HTTP layer needs to hand sockets to the sync machinery.
pub struct SyncHub {
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) stats: Arc<SyncStats>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Messages queued for one client before it counts as too slow and is disconnected.
    outbound_queue: usize,
    /// Mutations one connection may have queued or committing; a client sending more waits for room.
    pending_mutations: usize,
    /// Largest message (and frame) a client may send; a larger one closes the socket with 1009.
    max_message_bytes: usize,
    next_connection: AtomicU64,
}

impl SyncHub {
    pub fn new(
        events: mpsc::Sender<Event>,
        stats: Arc<SyncStats>,
        shutdown: watch::Receiver<bool>,
        outbound_queue: usize,
        pending_mutations: usize,
        max_message_bytes: usize,
    ) -> SyncHub {
        SyncHub {
            events,
            stats,
            shutdown,
            outbound_queue: outbound_queue.max(1),
            pending_mutations: pending_mutations.max(1),
            max_message_bytes,
            next_connection: AtomicU64::new(1),
        }
    }
}

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(e) = super::http::check_client_header(&headers) {
        return e.into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        // In the API's error shape, like every other error.
        Err(rejection) => return ApiError::upgrade_rejected(rejection).into_response(),
    };
    ws.max_message_size(state.sync.max_message_bytes)
        .max_frame_size(state.sync.max_message_bytes)
        // Small buffers keep an idle connection cheap; they grow for large messages.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve_connection(state, socket))
}

struct MutationRequest {
    request_id: u32,
    udf_path: String,
    args: Json,
    /// Whom it runs as, or why the connection may not run it (unauthenticated,
    /// rate-limited), decided when it arrived.
    caller: Result<Caller, AppError>,
    /// The identity's key: replays are deduplicated per identity, so a client
    /// cannot read another's results by naming its session.
    identity: String,
    caller_kind: CallerKind,
}

async fn serve_connection(state: AppState, mut socket: WebSocket) {
    let hub = state.sync.clone();
    let conn = hub.next_connection.fetch_add(1, Ordering::Relaxed);
    let (out, mut outbound) = Outbox::new(hub.outbound_queue, hub.stats.clone());
    let (overloaded_tx, mut overloaded) = oneshot::channel();
    if hub.events.send(Event::Connected { conn, out: out.clone(), overloaded: overloaded_tx }).await.is_err() {
        return;
    }
    let mut shutdown = hub.shutdown.clone();
    let mut client_session: Option<String> = None;
    let mut mutations: Option<mpsc::Sender<MutationRequest>> = None;
    // A mutation waiting for room in the pipeline: until it has some, the socket is not read
    // (back-pressure on the client), while what is queued for it still goes out.
    let mut waiting: Option<Waiting> = None;
    let mut last_sent = Instant::now();
    let mut overload_armed = true;
    let mut caller = Identity::Anonymous;
    // What `caller` was shown with, to check again when the deployment's credentials change.
    let mut credentials = Credentials::None;
    let mut credential_changes = state.auth.changes();
    // The base version of the Authenticate that set `caller`, for the AuthError sent when its token expires.
    let mut auth_base = 0;
    loop {
        let expiry = caller.expires().map(instant_of);
        tokio::select! {
            queued = async { waiting.as_mut().expect("guarded").await }, if waiting.is_some() => {
                waiting = None;
                if !queued {
                    break;
                }
            }
            incoming = socket.recv(), if waiting.is_none() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        let _ = out.try_push(fatal("Binary frames are not part of the sync protocol."));
                        let _ = out.try_push(Outbound::Close { code: CloseCode::UnsupportedData, reason: INVALID_CLIENT_MESSAGE.into() });
                        continue;
                    }
                    Some(Err(e)) if e.to_string().starts_with("Space limit exceeded") => {
                        // Over --max-socket-message-bytes: say so, as RFC 6455's "message too big".
                        send_close(&mut socket, CloseCode::MessageTooBig, "The message is too large.".into()).await;
                        break;
                    }
                    Some(Err(e)) if e.to_string().contains("UTF-8") => {
                        // RFC 6455: a text frame that is not UTF-8 is "invalid frame payload data".
                        send_close(&mut socket, CloseCode::InvalidPayload, "A text frame is not UTF-8.".into()).await;
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                };
                if expiry.is_some_and(|at| Instant::now() >= at) {
                    // Expired while this message waited: it must not run with the old token.
                    expire(&mut socket, auth_base).await;
                    break;
                }
                let message = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(message) => message,
                    Err(e) => {
                        let _ = out.try_push(fatal(&format!("Malformed client message: {e}")));
                        let _ = out.try_push(Outbound::Close { code: CloseCode::PolicyViolation, reason: INVALID_CLIENT_MESSAGE.into() });
                        continue;
                    }
                };
                let mut session = Session {
                    client_session: &mut client_session,
                    mutations: &mut mutations,
                    waiting: &mut waiting,
                    caller: &mut caller,
                    credentials: &mut credentials,
                    auth_base: &mut auth_base,
                };
                match handle_client_message(&state, conn, message, &out, &mut session).await {
                    Flow::Continue => {}
                    Flow::Stop => break,
                    Flow::Refuse(error) => {
                        // Straight to the socket, ahead of anything queued: the client hears why first.
                        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(error.into()))).await;
                        send_close(&mut socket, CloseCode::Normal, AUTH_ERROR.into()).await;
                        break;
                    }
                }
            }
            queued = outbound.recv() => {
                let Some(mut queued) = queued else { break };
                // `queued` keeps its room in the outbox until it has gone out.
                match &mut queued.message {
                    Outbound::Text(text) => {
                        let text = std::mem::take(text);
                        // A client that stops reading must not hold this task forever.
                        match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
                            Ok(Ok(())) => last_sent = Instant::now(),
                            _ => break,
                        }
                    }
                    Outbound::Close { code, reason } => {
                        send_close(&mut socket, *code, std::mem::take(reason)).await;
                        break;
                    }
                }
            }
            signal = &mut overloaded, if overload_armed => {
                // A dropped sender only means the manager let go of this connection:
                // keep draining what it queued (a FatalError, say) until the queue ends.
                overload_armed = false;
                if signal.is_ok() {
                    // The JS client picks its backoff from the start of the reason text.
                    let reason = "TooManyConcurrentRequests: the client fell too far behind";
                    send_close(&mut socket, CloseCode::TryAgainLater, reason.into()).await;
                    break;
                }
            }
            _ = sleep_until_some(expiry) => {
                expire(&mut socket, auth_base).await;
                break;
            }
            Ok(()) = credential_changes.changed() => {
                // A revoked key, a removed provider, or the end of open development mode.
                if !state.auth.still_valid(&credentials).await {
                    match credentials {
                        Credentials::None => {
                            send_close(&mut socket, CloseCode::Normal, "open development mode has ended".into()).await;
                        }
                        _ => {
                            let error = auth_error(&AuthError::Revoked, auth_base, RefusedToken::Earlier);
                            let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(error.into()))).await;
                            send_close(&mut socket, CloseCode::Normal, AUTH_ERROR.into()).await;
                        }
                    }
                    break;
                }
            }
            _ = shutdown.changed() => {
                send_close(&mut socket, CloseCode::GoingAway, "Server is shutting down".into()).await;
                break;
            }
            _ = tokio::time::sleep_until(last_sent + PING_AFTER) => {
                let ping = socket.send(Message::Text(r#"{"type":"Ping"}"#.into()));
                if !matches!(tokio::time::timeout(SEND_TIMEOUT, ping).await, Ok(Ok(()))) {
                    break;
                }
                last_sent = Instant::now();
            }
        }
    }
    let _ = hub.events.send(Event::Disconnected { conn }).await;
}

/// Sends a close frame, giving up on a client that does not take it in time.
async fn send_close(socket: &mut WebSocket, code: CloseCode, reason: String) {
    let frame = CloseFrame { code: code.code(), reason: reason.into() };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Tells the client its token expired and closes the socket; the client's auth
/// manager fetches a fresh token and reconnects with it.
async fn expire(socket: &mut WebSocket, auth_base: u32) {
    let error = auth_error(&AuthError::Expired, auth_base, RefusedToken::Earlier);
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(error.into()))).await;
    send_close(socket, CloseCode::Normal, AUTH_ERROR.into()).await;
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The monotonic instant of a wall-clock time (now, if it has passed).
fn instant_of(at: SystemTime) -> Instant {
    Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Which token an `AuthError` refuses; the clients react differently to each.
#[derive(Clone, Copy)]
enum RefusedToken {
    /// The token of the Authenticate being answered (`authUpdateAttempted`).
    JustSent,
    /// A token the client authenticated with before (expired, revoked since).
    Earlier,
}

fn auth_error(error: &AuthError, base_version: u32, token: RefusedToken) -> String {
    let message = json!({
        "type": AUTH_ERROR,
        "error": error.to_string(),
        "baseVersion": base_version,
        "authUpdateAttempted": matches!(token, RefusedToken::JustSent),
    });
    message.to_string()
}

fn fatal(message: &str) -> Outbound {
    Outbound::Text(json!({"type": "FatalError", "error": message}).to_string())
}

/// A mutation being handed to a full pipeline; true once it is queued.
type Waiting = Pin<Box<dyn Future<Output = bool> + Send>>;

/// What the socket task knows of its client between messages.
struct Session<'a> {
    client_session: &'a mut Option<String>,
    mutations: &'a mut Option<mpsc::Sender<MutationRequest>>,
    waiting: &'a mut Option<Waiting>,
    caller: &'a mut Identity,
    credentials: &'a mut Credentials,
    auth_base: &'a mut u32,
}

/// What the socket task does after a client message.
enum Flow {
    Continue,
    Stop,
    /// Send this AuthError before anything else, then close.
    Refuse(String),
}

impl From<bool> for Flow {
    fn from(going: bool) -> Flow {
        if going { Flow::Continue } else { Flow::Stop }
    }
}

/// Handles one client message.
async fn handle_client_message(
    state: &AppState,
    conn: ConnectionId,
    message: ClientMessage,
    out: &Outbox,
    session: &mut Session<'_>,
) -> Flow {
    let events = &state.sync.events;
    let (client_session, mutations, waiting) =
        (&mut *session.client_session, &mut *session.mutations, &mut *session.waiting);
    let (caller, auth_base) = (&mut *session.caller, &mut *session.auth_base);
    let connected = client_session.is_some();
    match message {
        ClientMessage::Connect { session_id, .. } => {
            *client_session = Some(session_id);
            Flow::Continue
        }
        ClientMessage::ModifyQuerySet { .. } | ClientMessage::Mutation { .. } if !connected => {
            // Every client sends Connect first; without it there is no session to replay against.
            let _ = out.try_push(fatal("The first message must be Connect."));
            let _ = out
                .try_push(Outbound::Close { code: CloseCode::PolicyViolation, reason: INVALID_CLIENT_MESSAGE.into() });
            Flow::Continue
        }
        ClientMessage::ModifyQuerySet { base_version, new_version, modifications } => {
            events.send(Event::ModifyQuerySet { conn, base_version, new_version, modifications }).await.is_ok().into()
        }
        ClientMessage::Authenticate { base_version, token_type, value, impersonating } => {
            let identity = match token_type {
                TokenType::None => Ok(Identity::Anonymous),
                TokenType::Admin => {
                    let acting_as = impersonating.filter(|i| !i.is_null());
                    state.auth.admin(value.as_deref().unwrap_or_default(), acting_as)
                }
                TokenType::User => state.auth.user(value.as_deref().unwrap_or_default()).await,
            };
            match identity {
                Ok(identity) => {
                    *caller = identity.clone();
                    *session.credentials = match (token_type, value) {
                        (TokenType::Admin, Some(key)) => Credentials::AdminKey(key),
                        (TokenType::User, Some(token)) => Credentials::UserToken(token),
                        _ => Credentials::None,
                    };
                    *auth_base = base_version;
                    events.send(Event::Authenticated { conn, base_version, identity }).await.is_ok().into()
                }
                Err(e) => {
                    *caller = Identity::Anonymous;
                    *session.credentials = Credentials::None;
                    Flow::Refuse(auth_error(&e, base_version, RefusedToken::JustSent))
                }
            }
        }
        ClientMessage::Mutation { request_id, udf_path, args } => {
            let identity = caller.key();
            let caller_kind = CallerKind::of(caller);
            let caller = match (state.auth.caller(caller), state.auth.admit(caller)) {
                (None, _) => Err(AppError::new(ErrorCode::Unauthenticated, AuthError::Missing.to_string())),
                (Some(_), Err(wait)) => {
                    let message =
                        format!("Too many requests from this identity; try again in {} ms.", wait.as_millis());
                    Err(AppError::new(ErrorCode::RateLimited, message).with("retryAfterMs", wait.as_millis() as f64))
                }
                (Some(caller), Ok(())) => Ok(caller),
            };
            let pipeline = mutations.get_or_insert_with(|| {
                // Without a Connect there is no session to deduplicate replays by.
                let session =
                    client_session.clone().unwrap_or_else(|| format!("connection-{conn}-{}", std::process::id()));
                spawn_mutation_pipeline(state.clone(), conn, session, out.clone())
            });
            let request =
                MutationRequest { request_id, udf_path, args: Json::Array(args), caller, identity, caller_kind };
            match pipeline.try_send(request) {
                Ok(()) => Flow::Continue,
                Err(mpsc::error::TrySendError::Full(request)) => {
                    let pipeline = pipeline.clone();
                    *waiting = Some(Box::pin(async move { pipeline.send(request).await.is_ok() }));
                    Flow::Continue
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Flow::Stop,
            }
        }
        ClientMessage::Action { request_id, udf_path, args } => {
            let Some(action) = actions::named(&jangar_domain::registry::canonical_path(&udf_path)) else {
                let message = format!(
                    "Could not find public function for '{udf_path}': this deployment's only actions are {} and {}.",
                    actions::SIGN_IN,
                    actions::SIGN_OUT
                );
                let refused = Err(AppError::new(ErrorCode::NotFound, message).into());
                let _ = out.try_push(Outbound::Text(action_response(request_id, refused)));
                return Flow::Continue;
            };
            // As the connection's identity is now: a sign-in replaces its session, a sign-out ends it.
            let (state, identity, out) = (state.clone(), caller.clone(), out.clone());
            tokio::spawn(async move {
                let result = actions::run(&state, &identity, action, &Json::Array(args)).await;
                let _ = out.try_push(Outbound::Text(action_response(request_id, result)));
            });
            Flow::Continue
        }
        ClientMessage::Event {} => Flow::Continue,
    }
}

/// A mutation's outcome to come, in the order it was sent.
type InFlight = (u32, Pin<Box<dyn Future<Output = Result<MutationOutcome<Value>, FunctionError>> + Send>>);

/// Pipelines a connection's mutations into the committer: each is queued as it
/// arrives (so they commit in the order sent, many per group commit), and a
/// second task answers them in that order as their groups become durable.
/// At most `pending_mutations` are in flight; then the connection stops taking
/// more (and so stops reading its socket) until answers have gone out.
fn spawn_mutation_pipeline(
    state: AppState,
    conn: ConnectionId,
    session: String,
    out: Outbox,
) -> mpsc::Sender<MutationRequest> {
    let capacity = state.sync.pending_mutations;
    let (requests, mut queue) = mpsc::channel::<MutationRequest>(capacity);
    let (in_flight, mut answers) = mpsc::channel::<InFlight>(capacity);
    let db_state = state.clone();
    tokio::spawn(async move {
        while let Some(request) = queue.recv().await {
            let request_id = request.request_id;
            let outcome = match enqueue(&db_state, &session, request).await {
                Ok(outcome) => Box::pin(outcome) as Pin<Box<dyn Future<Output = _> + Send>>,
                Err(error) => Box::pin(std::future::ready(Err(error))),
            };
            if in_flight.send((request_id, outcome)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(first) = answers.recv().await {
            let mut next = Some(first);
            // Answer everything already settled, then tell the manager once: it owes one Transition.
            while let Some((request_id, outcome)) = next.take() {
                let response = mutation_response(request_id, outcome.await);
                if out.push_response(response).await.is_err() {
                    return;
                }
                next = answers.try_recv().ok();
            }
            if state.sync.events.send(Event::MutationDone { conn }).await.is_err() {
                return;
            }
        }
    });
    requests
}

/// Checks one mutation and queues it for the committer; returns its outcome to come, which
/// records the call in the function log when it settles.
async fn enqueue(
    state: &AppState,
    session: &str,
    request: MutationRequest,
) -> Result<impl Future<Output = Result<MutationOutcome<Value>, FunctionError>> + Send + 'static, FunctionError> {
    let caller = request.caller.map_err(FunctionError::App)?;
    let function = state.registry.get(&request.udf_path).ok_or_else(|| {
        FunctionError::App(AppError::new(
            ErrorCode::NotFound,
            format!(
                "Could not find public function for '{}'.",
                jangar_domain::registry::canonical_path(&request.udf_path)
            ),
        ))
    })?;
    if function.kind != Kind::Mutation {
        return Err(FunctionError::App(AppError::new(
            ErrorCode::InvalidArgument,
            format!("{} is a {}, not a mutation.", function.path, function.kind.name()),
        )));
    }
    let invocation = Invocation::new(&function, request.caller_kind, RequestId::next());
    let started = std::time::Instant::now();
    // Length-prefixed, so no identity and session pair reads as another (and no NUL: PostgreSQL text).
    let client = format!("{}:{}{session}", request.identity.len(), request.identity);
    let key = MutationKey { client, request: u64::from(request.request_id) };
    let queued = match decode_args(&request.args).and_then(|args| check_args(&function, args, state.db.schema())) {
        Ok(args) => enqueue_mutation_once(&state.db, function, caller, args, key, None).await,
        Err(e) => Err(e),
    };
    let executions = state.executions.clone();
    Ok(async move {
        let outcome = match queued {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        executions.record(invocation, started.elapsed(), Outcome::of(&outcome));
        outcome
    })
}

/// An action's ActionResponse.
fn action_response(request_id: u32, result: Result<Value, FunctionError>) -> String {
    let mut response = json!({"type": "ActionResponse", "requestId": request_id, "logLines": []});
    match result {
        Ok(value) => {
            response["success"] = json!(true);
            response["result"] = value.to_json(JsonFormat::Encoded);
        }
        Err(error) => {
            let (message, data) = manager::describe(&error);
            response["success"] = json!(false);
            response["result"] = json!(message);
            if let Some(data) = data {
                response["errorData"] = data;
            }
        }
    }
    response.to_string()
}

/// A mutation's MutationResponse.
fn mutation_response(request_id: u32, outcome: Result<MutationOutcome<Value>, FunctionError>) -> String {
    match outcome {
        Ok(outcome) => {
            let response = json!({
                "type": "MutationResponse",
                "requestId": request_id,
                "success": true,
                "result": outcome.value.to_json(JsonFormat::Encoded),
                "ts": encode_ts(outcome.ts),
                "logLines": [],
            });
            response.to_string()
        }
        Err(error) => {
            let (message, data) = manager::describe(&error);
            let mut response = json!({
                "type": "MutationResponse",
                "requestId": request_id,
                "success": false,
                "result": message,
                "ts": null,
                "logLines": [],
            });
            if let Some(data) = data {
                response["errorData"] = data;
            }
            response.to_string()
        }
    }
}
