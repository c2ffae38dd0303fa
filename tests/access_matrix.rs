//! Who may call what: every function of the catalogue, called by each of
//! {anonymous, another user, the owner, an admin acting as the owner, an admin},
//! against fresh documents that belong to the owner. Each cell's outcome is
//! asserted exactly; all mismatches are reported together.

use std::collections::BTreeSet;

use jangar::server::ServerConfig;
use jangar_test_support::tokens::{self, ISSUER, SigningKey};
use jangar_test_support::{TempDir, TestServer, temp_dir};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "matrix-admin-key";
const OWNER: &str = "alice";
const OTHER: &str = "mallory";

/// Documents of one owner, made fresh (by an admin) for each cell.
struct Fixture {
    team: Value,
    repo: Value,
    session: Value,
    message: Value,
    changes_message: Value,
    streaming_message: Value,
    work_order: Value,
    run: Value,
    artifact: Value,
    tool_call: Value,
    approval: Value,
}

impl Fixture {
    async fn make(server: &TestServer) -> Fixture {
        let m = |path: &'static str, args: Value| server.mutation(path, args);
        let team = m("teams:create", json!({"name": "platform"})).await;
        let repo = m("repos:create", json!({"teamId": team, "githubOwner": "acme", "githubRepo": "api"})).await;
        let session = m("chatSessions:create", json!({"userId": OWNER, "title": "mine", "repoId": repo})).await;
        let in_session = |extra: Value| {
            let mut args = json!({"sessionId": session});
            args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            args
        };
        let message = m("chatMessages:append", in_session(json!({"role": "user", "content": "fix the build"}))).await;
        let changes = json!({"files": ["src/lib.rs"], "committed": false});
        let changes_message =
            m("messages:send", in_session(json!({"role": "assistant", "content": "done", "changes": changes}))).await;
        let streaming_message = m("messages:createStreaming", in_session(json!({}))).await;
        let work_order = m("workOrders:create", in_session(json!({"title": "Fix the build"}))).await;
        let run = m("runs:start", json!({"workOrderId": work_order, "temporalWorkflowId": "wf-1"})).await;
        m("steps:appendOrUpdate", json!({"runId": run, "name": "build", "status": "running"})).await;
        let artifact = m("artifacts:add", json!({"runId": run, "type": "log", "content": "ok"})).await;
        m("artifacts:create", in_session(json!({"type": "plan", "content": "plan"}))).await;
        m("events:append", json!({"runId": run, "type": "comment", "data": "hi"})).await;
        let tool_call = m("toolCalls:record", in_session(json!({"toolName": "bash", "input": "ls"}))).await;
        let approval = m("approvalRequests:create", in_session(json!({"planContent": "the plan"}))).await;
        m("agentSessions:upsert", in_session(json!({"sdkSessionId": "sdk-1"}))).await;
        Fixture {
            team,
            repo,
            session,
            message,
            changes_message,
            streaming_message,
            work_order,
            run,
            artifact,
            tool_call,
            approval,
        }
    }
}

/// Who a function is for, and what it answers a user who does not own the document.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Admins only: everyone else gets `Forbidden`.
    Workers,
    /// Users on their own documents; for someone else's, what a missing one answers.
    Owner(Hidden),
    /// Anyone signed in (teams and repos are shared).
    SignedIn,
    /// The signed-in user's own user document: only a user this deployment signed in has one.
    Viewer,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hidden {
    Null,
    Empty,
    NotFound,
    /// A `userId` argument that is not the caller's.
    Forbidden,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// HTTP 401.
    Unauthenticated,
    /// Succeeded; a query's value is not null and not an empty list.
    Allowed,
    Null,
    Empty,
    /// An application error with this code.
    Error(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    OtherUser,
    /// A user this deployment signed in (`auth:signIn`), with its own token: not the owner.
    SignedInHere,
    Owner,
    AdminAsOwner,
    Admin,
}

const CALLERS: [Caller; 6] =
    [Caller::Anonymous, Caller::OtherUser, Caller::SignedInHere, Caller::Owner, Caller::AdminAsOwner, Caller::Admin];

fn expected(rule: Rule, caller: Caller) -> Outcome {
    match (caller, rule) {
        (Caller::Anonymous, _) => Outcome::Unauthenticated,
        (Caller::SignedInHere, Rule::Viewer) => Outcome::Allowed,
        (_, Rule::Viewer) => Outcome::Null,
        (Caller::Admin | Caller::AdminAsOwner, _) => Outcome::Allowed,
        (_, Rule::Workers) => Outcome::Error("Forbidden"),
        (Caller::Owner, _) | (_, Rule::SignedIn) => Outcome::Allowed,
        (Caller::OtherUser | Caller::SignedInHere, Rule::Owner(hidden)) => match hidden {
            Hidden::Null => Outcome::Null,
            Hidden::Empty => Outcome::Empty,
            Hidden::NotFound => Outcome::Error("NotFound"),
            Hidden::Forbidden => Outcome::Error("Forbidden"),
        },
    }
}

/// Every function: its path, its arguments over a fixture, and its rule.
fn catalogue(f: &Fixture) -> Vec<(&'static str, Value, Rule)> {
    use Hidden::*;
    use Rule::*;
    let session = json!({"sessionId": f.session});
    let thread = json!({"threadId": f.session});
    let message = json!({"messageId": f.message});
    let work_order = json!({"workOrderId": f.work_order});
    let run = json!({"runId": f.run});
    let with = |base: &Value, extra: Value| {
        let mut args = base.clone();
        args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        args
    };
    let user = json!({"userId": OWNER});
    vec![
        ("chatSessions:create", with(&user, json!({"title": "new"})), Owner(Forbidden)),
        ("chatSessions:list", user.clone(), Owner(Forbidden)),
        ("chatSessions:get", session.clone(), Owner(Null)),
        ("chatSessions:updateLastMessage", session.clone(), Owner(NotFound)),
        ("chatSessions:rename", with(&session, json!({"title": "renamed"})), Owner(NotFound)),
        ("chatSessions:remove", session.clone(), Owner(NotFound)),
        ("chatSessions:restore", session.clone(), Owner(NotFound)),
        ("sessions:create", user.clone(), Owner(Forbidden)),
        ("sessions:list", user.clone(), Owner(Forbidden)),
        ("sessions:get", session.clone(), Owner(Null)),
        ("sessions:getWithThreads", session.clone(), Owner(Null)),
        ("sessions:listByRepo", json!({"repoId": f.repo}), Owner(Empty)),
        ("sessions:updateLastActive", session.clone(), Owner(NotFound)),
        ("threads:create", user.clone(), Owner(Forbidden)),
        ("threads:list", user.clone(), Owner(Forbidden)),
        ("threads:get", thread.clone(), Owner(Null)),
        ("threads:remove", thread.clone(), Owner(NotFound)),
        ("threads:append", with(&thread, json!({"role": "user", "content": "hi"})), Owner(NotFound)),
        ("chatMessages:append", with(&session, json!({"role": "user", "content": "hi"})), Owner(NotFound)),
        ("chatMessages:listBySession", session.clone(), Owner(Empty)),
        ("chatMessages:remove", message.clone(), Owner(NotFound)),
        ("chatMessages:restore", message.clone(), Owner(NotFound)),
        ("messages:send", with(&session, json!({"role": "user", "content": "hi"})), Owner(NotFound)),
        ("messages:list", session.clone(), Owner(Empty)),
        ("messages:createStreaming", session.clone(), Owner(NotFound)),
        (
            "messages:appendStreamingContent",
            json!({"messageId": f.streaming_message, "delta": "more"}),
            Owner(NotFound),
        ),
        ("messages:finalizeStreaming", json!({"messageId": f.streaming_message, "content": "all"}), Owner(NotFound)),
        (
            "messages:markChangesCommitted",
            json!({"messageId": f.changes_message, "commitSha": "abc123"}),
            Owner(NotFound),
        ),
        ("workOrders:create", with(&session, json!({"title": "another"})), Owner(NotFound)),
        ("workOrders:createFromMessage", with(&session, json!({"triggerMessageId": f.message})), Owner(NotFound)),
        ("workOrders:get", work_order.clone(), Owner(Null)),
        ("workOrders:listBySession", session.clone(), Owner(Empty)),
        ("workOrders:listByStatus", json!({"status": "submitted"}), Workers),
        ("workOrders:updateStatus", with(&work_order, json!({"status": "canceled"})), Workers),
        ("workOrders:updateResult", with(&work_order, json!({"prUrl": "https://github.com/acme/api/pull/1"})), Workers),
        ("workOrders:remove", work_order.clone(), Owner(NotFound)),
        ("workOrders:restore", work_order.clone(), Owner(NotFound)),
        ("runs:start", with(&work_order, json!({"temporalWorkflowId": "wf-2"})), Workers),
        ("runs:updateStatus", with(&run, json!({"status": "succeeded"})), Workers),
        ("runs:get", run.clone(), Owner(Null)),
        ("runs:listByWorkOrder", work_order.clone(), Owner(Empty)),
        ("runs:getDashboard", json!({}), Workers),
        ("runs:getTimeline", run.clone(), Owner(Null)),
        ("steps:appendOrUpdate", with(&run, json!({"name": "test", "status": "pending"})), Workers),
        ("artifacts:add", with(&run, json!({"type": "diff"})), Workers),
        ("artifacts:create", with(&session, json!({"type": "report"})), Workers),
        ("artifacts:update", json!({"artifactId": f.artifact, "label": "build log"}), Workers),
        ("artifacts:listByRun", run.clone(), Owner(Empty)),
        ("artifacts:listBySession", session.clone(), Owner(Empty)),
        ("events:append", with(&run, json!({"type": "system"})), Workers),
        ("events:listByRun", run.clone(), Owner(Empty)),
        ("agentSessions:upsert", with(&session, json!({"sdkSessionId": "sdk-2"})), Workers),
        ("agentSessions:updatePhase", with(&session, json!({"phase": "planning"})), Workers),
        ("agentSessions:getBySession", session.clone(), Owner(Null)),
        ("toolCalls:record", with(&session, json!({"toolName": "grep", "input": "x"})), Workers),
        ("toolCalls:complete", json!({"toolCallId": f.tool_call, "status": "succeeded"}), Workers),
        ("toolCalls:listBySession", session.clone(), Owner(Empty)),
        ("approvalRequests:create", with(&session, json!({"planContent": "plan B"})), Owner(NotFound)),
        ("approvalRequests:decide", json!({"approvalRequestId": f.approval, "decision": "approved"}), Owner(NotFound)),
        ("approvalRequests:listPending", session.clone(), Owner(Empty)),
        ("approvalRequests:get", json!({"approvalRequestId": f.approval}), Owner(Null)),
        ("teams:create", json!({"name": "another team"}), Workers),
        ("repos:create", json!({"teamId": f.team, "githubOwner": "acme", "githubRepo": "web"}), Workers),
        ("projects:get", json!({"repoId": f.repo}), SignedIn),
        ("projects:listByTeam", json!({"teamId": f.team}), SignedIn),
        ("users:viewer", json!({}), Viewer),
        ("users:list", json!({}), Workers),
        ("users:disable", json!({"email": "target@example.com"}), Workers),
        ("users:setPassword", json!({"email": "target@example.com", "passwordHash": "$argon2id$v=19$x"}), Workers),
    ]
}

fn outcome(status: u16, body: &Value, query: bool) -> Outcome {
    if status == 401 {
        return Outcome::Unauthenticated;
    }
    assert_eq!(status, 200, "{body}");
    if body["status"] == "error" {
        let code = body["errorData"]["code"].as_str().unwrap_or("(no code)");
        return Outcome::Error(Box::leak(code.to_owned().into_boxed_str()));
    }
    let value = &body["value"];
    let empty = value.as_array().or_else(|| value["page"].as_array()).is_some_and(|items| items.is_empty());
    match () {
        _ if query && value.is_null() => Outcome::Null,
        _ if query && empty => Outcome::Empty,
        _ => Outcome::Allowed,
    }
}

#[tokio::test]
async fn every_function_for_every_kind_of_caller() {
    let dir = temp_dir();
    let key = SigningKey::rsa("matrix");
    let server = keyed_server(&dir, &key, |c| c.limits.calls_per_second = 0).await;
    let acting = jangar_engine::base64::encode(json!({"subject": OWNER, "issuer": ISSUER}).to_string().as_bytes());
    // Users this deployment signs in: one calls, the other is what the operators' tools change.
    let sign_up = |email: &str| {
        let args =
            json!({"provider": "password", "params": {"email": email, "password": "matrix pass", "flow": "signUp"}});
        server.call_as(None, "/api/action", "auth:signIn", args)
    };
    let signed_in: Value = sign_up("matrix@example.com").await.json().unwrap();
    let signed_in_here = signed_in["value"]["tokens"]["token"].as_str().expect("signed up").to_owned();
    sign_up("target@example.com").await;
    let authorization = |caller: Caller| match caller {
        Caller::Anonymous => None,
        Caller::OtherUser => Some(format!("Bearer {}", key.token(OTHER, 600))),
        Caller::SignedInHere => Some(format!("Bearer {signed_in_here}")),
        Caller::Owner => Some(format!("Bearer {}", key.token(OWNER, 600))),
        Caller::AdminAsOwner => Some(format!("Convex {ADMIN_KEY}:{acting}")),
        Caller::Admin => Some(format!("Convex {ADMIN_KEY}")),
    };

    let registry = jangar_domain::registry();
    let mut mismatches = Vec::new();
    let mut covered = BTreeSet::new();
    let paths: Vec<&str> = catalogue(&Fixture::make(&server).await).iter().map(|(path, ..)| *path).collect();
    for (row, path) in paths.iter().enumerate() {
        let function = registry.get(path).unwrap_or_else(|| panic!("{path} is not in the catalogue"));
        let query = function.kind == jangar_domain::registry::Kind::Query;
        assert!(covered.insert(function.path), "{path} appears twice");
        for caller in CALLERS {
            // Fresh documents for every cell, so that no call sees another's writes.
            let fixture = Fixture::make(&server).await;
            let (_, args, rule) = catalogue(&fixture).swap_remove(row);
            let route = if query { "/api/query" } else { "/api/mutation" };
            let response = server.call_as(authorization(caller).as_deref(), route, path, args).await;
            let body: Value = response.json().unwrap();
            let got = outcome(response.status.as_u16(), &body, query);
            let want = expected(rule, caller);
            if got != want {
                mismatches.push(format!("{path} as {caller:?}: expected {want:?}, got {got:?}: {body}"));
            }
        }
    }
    let missing: Vec<&str> = registry.functions().map(|f| f.path).filter(|p| !covered.contains(p)).collect();
    assert!(missing.is_empty(), "functions missing from the matrix: {missing:?}");
    assert!(
        mismatches.is_empty(),
        "{} of {} cells differ:\n{}",
        mismatches.len(),
        paths.len() * CALLERS.len(),
        mismatches.join("\n")
    );
    server.stop().await;
}

/// A server with the admin key and one provider signing with `key`.
async fn keyed_server(dir: &TempDir, key: &SigningKey, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let providers = vec![tokens::provider("RS256", tokens::jwks(&[key]))];
    TestServer::start_with_auth(dir, ADMIN_KEY, providers, adjust).await
}

/// Calls a function with an Authorization header; returns its value, which must be a success.
async fn value_as(server: &TestServer, who: &str, route: &str, path: &str, args: Value) -> Value {
    let body: Value = server.call_as(Some(who), route, path, args).await.json().unwrap();
    assert_eq!(body["status"], "success", "{path}: {body}");
    body["value"].clone()
}

fn field_of(list: &Value, field: &str) -> Vec<Value> {
    list.as_array().unwrap().iter().map(|d| d[field].clone()).collect()
}

#[tokio::test]
async fn shared_lists_and_cached_results_show_users_only_their_own() {
    let dir = temp_dir();
    let key = SigningKey::rsa("lists");
    let server = keyed_server(&dir, &key, |_| {}).await;
    let owner = format!("Bearer {}", key.token(OWNER, 600));
    let other = format!("Bearer {}", key.token(OTHER, 600));
    let (query, mutation) = ("/api/query", "/api/mutation");

    // One repo, a session in it for each user; each user creates their own, as themselves.
    let team = server.mutation("teams:create", json!({"name": "t"})).await;
    let repo = server.mutation("repos:create", json!({"teamId": team, "githubOwner": "o", "githubRepo": "r"})).await;
    let mut sessions = Vec::new();
    for (who, user) in [(&owner, OWNER), (&other, OTHER)] {
        let args = json!({"userId": user, "title": format!("{user}'s"), "repoId": repo});
        sessions.push(value_as(&server, who, mutation, "sessions:create", args).await);
    }
    let (mine, theirs) = (sessions[0].clone(), sessions[1].clone());
    let by_repo = json!({"repoId": repo});
    let listed = value_as(&server, &owner, query, "sessions:listByRepo", by_repo.clone()).await;
    assert_eq!(field_of(&listed, "_id"), vec![mine.clone()]);
    let listed = value_as(&server, &other, query, "sessions:listByRepo", by_repo.clone()).await;
    assert_eq!(field_of(&listed, "_id"), vec![theirs.clone()]);
    assert_eq!(server.query("sessions:listByRepo", by_repo).await.as_array().unwrap().len(), 2, "admins see all");

    // Pending approvals across sessions: each user sees only those of their own sessions.
    for session in [&mine, &theirs] {
        server.mutation("approvalRequests:create", json!({"sessionId": session, "planContent": "p"})).await;
    }
    let pending = value_as(&server, &owner, query, "approvalRequests:listPending", json!({})).await;
    assert_eq!(field_of(&pending, "sessionId"), vec![mine.clone()]);
    let pending = value_as(&server, &other, query, "approvalRequests:listPending", json!({})).await;
    assert_eq!(field_of(&pending, "sessionId"), vec![theirs.clone()]);
    assert_eq!(server.query("approvalRequests:listPending", json!({})).await.as_array().unwrap().len(), 2);

    // A result the query cache holds for an admin is not served to another user.
    let get = json!({"sessionId": mine});
    assert_eq!(server.query("chatSessions:get", get.clone()).await["_id"], mine);
    assert_eq!(value_as(&server, &other, query, "chatSessions:get", get.clone()).await, Value::Null);
    assert_eq!(value_as(&server, &owner, query, "chatSessions:get", get).await["_id"], mine);
    server.stop().await;
}

#[tokio::test]
async fn arguments_cannot_speak_for_someone_else_or_tie_two_sessions_together() {
    let dir = temp_dir();
    let key = SigningKey::rsa("args");
    let server = keyed_server(&dir, &key, |_| {}).await;
    let owner = format!("Bearer {}", key.token(OWNER, 600));
    let mutation = "/api/mutation";
    let session =
        value_as(&server, &owner, mutation, "chatSessions:create", json!({"userId": OWNER, "title": "a"})).await;
    let error_of = |body: Value| body["errorData"]["code"].clone();

    // Names of users in arguments are the caller's own.
    let order = json!({"sessionId": session, "requestedBy": OTHER});
    let body: Value = server.call_as(Some(&owner), mutation, "workOrders:create", order).await.json().unwrap();
    assert_eq!(error_of(body), "Forbidden");
    let approval = server.mutation("approvalRequests:create", json!({"sessionId": session, "planContent": "p"})).await;
    let decide = json!({"approvalRequestId": approval, "decision": "approved", "decidedBy": OTHER});
    let body: Value = server.call_as(Some(&owner), mutation, "approvalRequests:decide", decide).await.json().unwrap();
    assert_eq!(error_of(body), "Forbidden");
    let decide = json!({"approvalRequestId": approval, "decision": "approved", "decidedBy": OWNER});
    assert_eq!(value_as(&server, &owner, mutation, "approvalRequests:decide", decide).await["decidedBy"], OWNER);

    // A worker cannot attach one session's run to another session's artifact, tool call or approval.
    let elsewhere = server.mutation("chatSessions:create", json!({"userId": OTHER, "title": "b"})).await;
    let order = server.mutation("workOrders:create", json!({"sessionId": elsewhere})).await;
    let run = server.mutation("runs:start", json!({"workOrderId": order, "temporalWorkflowId": "wf"})).await;
    let mixed = [
        ("artifacts:create", json!({"sessionId": session, "runId": run, "type": "log"})),
        ("toolCalls:record", json!({"sessionId": session, "runId": run, "toolName": "sh", "input": "ls"})),
        ("approvalRequests:create", json!({"sessionId": session, "runId": run, "planContent": "p"})),
        ("approvalRequests:create", json!({"sessionId": session, "workOrderId": order, "planContent": "p"})),
    ];
    for (path, args) in mixed {
        assert_eq!(server.app_error("/api/mutation", path, args).await["code"], "InvalidArgument", "{path}");
    }
    server.mutation("artifacts:create", json!({"sessionId": elsewhere, "runId": run, "type": "log"})).await;
    server.stop().await;
}
