//! User tokens (JWTs) from configured identity providers: which tokens are
//! accepted, over HTTP and the socket, and how key rotation and expiry work.
//! Every key is made by the test.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jangar_engine::base64::encode_url;
use jangar_test_support::tokens::{self, AUDIENCE, ISSUER, JwksServer, SigningKey};
use jangar_test_support::{TempDir, TestServer, temp_dir};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ADMIN_KEY: &str = "user-tokens-admin-key";
const OTHER_ISSUER: &str = "https://other-idp.jangar.test";

async fn server(dir: &TempDir, providers: Vec<Value>) -> TestServer {
    TestServer::start_with_auth(dir, ADMIN_KEY, providers, |_| {}).await
}

/// Lists `user_id`'s sessions with `token`: a 200 UdfResponse, or the refusal.
async fn list_as(server: &TestServer, token: &str, user_id: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let response = server.call_as(Some(&bearer), "/api/query", "chatSessions:list", json!({"userId": user_id})).await;
    (response.status.as_u16(), response.json().unwrap())
}

async fn refused(server: &TestServer, token: &str, why: &str) {
    let (status, body) = list_as(server, token, "alice").await;
    assert_eq!(status, 401, "{why}: {body}");
    assert_eq!(body["code"], "Unauthenticated", "{why}");
}

/// The token is accepted: it may list the sessions of `user_id`, the name it gives its user.
async fn accepted_as(server: &TestServer, token: &str, user_id: &str) {
    let (status, body) = list_as(server, token, user_id).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("success")), "{body}");
}

/// Accepted, from the only provider: the bare subject names the user.
async fn accepted(server: &TestServer, token: &str) {
    accepted_as(server, token, "alice").await;
}

#[tokio::test]
async fn tokens_are_checked_against_the_provider() {
    let dir = temp_dir();
    let key = SigningKey::rsa("rsa-1");
    std::fs::write(dir.path().join("jwks.json"), tokens::jwks(&[&key]).to_string()).unwrap();
    let server = server(&dir, vec![tokens::provider("RS256", json!("jwks.json"))]).await;

    accepted(&server, &key.token("alice", 60)).await;
    // The token's subject is the caller: another user's sessions are not theirs to list.
    let (_, body) = list_as(&server, &key.token("alice", 60), "bob").await;
    assert_eq!(body["errorData"]["code"], "Forbidden", "{body}");

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = tokens::claims("alice", 60);
        change(&mut claims);
        key.sign(&claims)
    };
    refused(&server, &key.token("alice", -10), "expired").await;
    refused(&server, &with(&|c| c["nbf"] = json!(tokens::now() + 600)), "not valid yet").await;
    refused(&server, &with(&|c| c["iss"] = json!(OTHER_ISSUER)), "unknown issuer").await;
    refused(&server, &with(&|c| c["aud"] = json!("another-app")), "wrong audience").await;
    accepted(&server, &with(&|c| c["aud"] = json!(["another-app", AUDIENCE]))).await;
    refused(&server, &with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))), "no audience").await;
    // A subject shaped like a token identifier names nobody else: Bob's is `issuer|bob`.
    let bob = format!("{}|bob", tokens::ISSUER);
    let (_, body) = list_as(&server, &key.token(&bob, 60), &bob).await;
    assert_eq!(body["errorData"]["code"], "Forbidden", "Bob's sessions are not theirs: {body}");
    accepted_as(&server, &key.token(&bob, 60), &format!("{}|{bob}", tokens::ISSUER)).await;
    refused(&server, &with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))), "no exp").await;
    refused(&server, &with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))), "no subject").await;
    refused(&server, &with(&|c| c["sub"] = json!("")), "an empty subject").await;
    refused(&server, &with(&|c| c["exp"] = json!(u64::MAX)), "an expiry past what a clock can hold").await;

    // Same key id, another key: the signature does not verify.
    let impostor = SigningKey::rsa("rsa-1");
    refused(&server, &impostor.token("alice", 60), "bad signature").await;
    // A valid token with its payload swapped.
    let genuine = key.token("alice", 60);
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload = encode_url(tokens::claims("mallory", 60).to_string().as_bytes());
    refused(&server, &format!("{}.{forged_payload}.{}", parts[0], parts[2]), "tampered payload").await;
    // Unsigned, and signed with an algorithm the provider does not use.
    let none_header = encode_url(br#"{"alg":"none","typ":"JWT"}"#);
    refused(&server, &format!("{none_header}.{}.", parts[1]), "alg none").await;
    let hmac = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &tokens::claims("alice", 60),
        &jsonwebtoken::EncodingKey::from_secret(key.jwk()["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    refused(&server, &hmac, "HS256 with the public key as secret").await;
    refused(&server, &SigningKey::es256("rsa-1").token("alice", 60), "ES256 for an RS256 provider").await;
    refused(&server, "not-a-jwt", "garbage").await;

    // A verified token is remembered, but not past its expiry.
    let short = key.token("alice", 2);
    accepted(&server, &short).await;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    refused(&server, &short, "a remembered token that has since expired").await;

    // Rotation by file: the new key is used as soon as the file changes; the old one stops working.
    let rotated = SigningKey::rsa("rsa-2");
    std::fs::write(dir.path().join("jwks.json"), tokens::jwks(&[&rotated]).to_string()).unwrap();
    accepted(&server, &rotated.token("alice", 60)).await;
    // (A token not seen before: one already verified stays valid until it expires.)
    refused(&server, &key.token("alice", 120), "a key removed from the file").await;
    server.stop().await;
}

#[tokio::test]
async fn keys_from_a_url_are_cached_and_refetched_when_rotated() {
    let dir = temp_dir();
    let first = SigningKey::es256("ec-1");
    let jwks = JwksServer::start(tokens::jwks(&[&first])).await;
    let rsa = SigningKey::rsa("rsa-1");
    let providers = vec![
        tokens::provider("ES256", json!(jwks.url)),
        json!({"type": "customJwt", "issuer": OTHER_ISSUER, "algorithm": "RS256", "jwks": tokens::jwks(&[&rsa])}),
    ];
    let server = server(&dir, providers).await;

    // Two providers: a bare subject could be two people, so users are named by `issuer|subject`.
    let alice = format!("{ISSUER}|alice");
    accepted_as(&server, &first.token("alice", 60), &alice).await;
    accepted_as(&server, &first.token("alice", 60), &alice).await;
    let (_, body) = list_as(&server, &first.token("alice", 60), "alice").await;
    assert_eq!(body["errorData"]["code"], "Forbidden", "{body}");
    assert_eq!(jwks.fetches(), 1, "the keys are fetched once and cached");

    let second = SigningKey::es256("ec-2");
    jwks.replace(tokens::jwks(&[&first, &second]));
    accepted_as(&server, &second.token("alice", 60), &alice).await;
    assert_eq!(jwks.fetches(), 2, "an unknown key id fetches the keys again");
    refused(&server, &SigningKey::es256("ec-3").token("alice", 60), "a key id the provider does not have").await;
    assert_eq!(jwks.fetches(), 2, "unknown key ids do not refetch more often than every 10 s");

    // A provider without applicationID does not check the audience; keys can be inline.
    let mut claims = tokens::claims("alice", 60);
    claims["iss"] = json!(OTHER_ISSUER);
    claims["aud"] = json!("anything");
    accepted_as(&server, &rsa.sign(&claims), &format!("{OTHER_ISSUER}|alice")).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oidc_provider_finds_its_keys_through_discovery() {
    let dir = temp_dir();
    let key = SigningKey::rsa("oidc-1");
    let idp = JwksServer::start(tokens::jwks(&[&key])).await;
    let server = server(&dir, vec![json!({"domain": idp.domain, "applicationID": AUDIENCE})]).await;
    let mut claims = tokens::claims("alice", 60);
    claims["iss"] = json!(idp.domain);
    accepted(&server, &key.sign(&claims)).await;
    assert_eq!(idp.fetches(), 1);
    claims["aud"] = json!("another-client");
    refused(&server, &key.sign(&claims), "an OIDC provider always checks the audience").await;
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_provider_is_a_503_not_a_401() {
    let dir = temp_dir();
    let key = SigningKey::es256("ec-1");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let jwks = json!(format!("http://127.0.0.1:{closed_port}/jwks.json"));
    let server = server(&dir, vec![tokens::provider("ES256", jwks)]).await;
    let (status, body) = list_as(&server, &key.token("alice", 60), "alice").await;
    assert_eq!((status, body["code"].as_str()), (503, Some("AuthProviderUnavailable")), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn bad_provider_configs_stop_the_server_with_a_reason() {
    let dir = temp_dir();
    let cases = [
        (json!({"providers": [{"type": "customJwt", "issuer": ISSUER, "jwks": {"keys": []}}]}), "algorithm"),
        (
            json!({"providers": [{"type": "customJwt", "issuer": ISSUER, "algorithm": "HS256", "jwks": {"keys": []}}]}),
            "HS256",
        ),
        (
            json!({"providers": [{"type": "customJwt", "issuer": ISSUER, "algorithm": "RS256", "jwks": "http://keys.example.com/jwks"}]}),
            "https",
        ),
        (json!({"providers": [{"domain": "https://idp.example.com"}]}), "applicationID"),
        (
            json!({"providers": [{"type": "customJwt", "issuer": ISSUER, "algorithm": "RS256", "jwks": "missing.json"}]}),
            "missing.json",
        ),
        (json!({"providers": [], "clockSkew": 1}), "clockSkew"),
    ];
    for (config, reason) in cases {
        let path = dir.path().join("auth.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut config = jangar::server::ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        config.admin_keys = vec![ADMIN_KEY.into()];
        config.auth_config = Some(path);
        let error = jangar::server::serve(config, async {}, |_| {}).await.expect_err("a bad config");
        assert!(error.contains(reason), "{reason}: {error}");
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer) -> Socket {
    let url = format!("{}/api/sync", server.url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let connect = json!({"type": "Connect", "sessionId": "8c6a1ef6-6a5e-4b41-9b9e-2d8f1f0e7a11", "connectionCount": 0,
        "lastCloseReason": "InitialConnect", "clientTs": 0});
    socket.send(Message::Text(connect.to_string().into())).await.unwrap();
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.unwrap();
}

/// The next message other than Ping; `None` when the server closed the socket.
async fn next(socket: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, socket.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] != "Ping" {
                    return Some(message);
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn the_socket_takes_user_tokens_and_says_when_one_expires() {
    let dir = temp_dir();
    let key = SigningKey::rsa("rsa-1");
    let server = server(&dir, vec![tokens::provider("RS256", tokens::jwks(&[&key]))]).await;
    let session = server.mutation("chatSessions:create", json!({"userId": "alice", "title": "mine"})).await;

    // A bad token: AuthError for that attempt, then the socket closes.
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "User",
        "value": key.token("alice", -10)}),
    )
    .await;
    let error = next(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(error["type"], "AuthError", "{error}");
    assert_eq!((error["baseVersion"].as_u64(), error["authUpdateAttempted"].as_bool()), (Some(0), Some(true)));
    assert!(error["error"].as_str().unwrap().contains("expired"), "{error}");
    assert_eq!(next(&mut socket, Duration::from_secs(5)).await, None);

    // A token good for 3 more seconds: the user's own session answers until then.
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "User",
        "value": key.token("alice", 3)}),
    )
    .await;
    send(
        &mut socket,
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 0, "udfPath": "chatSessions:get", "args": [{"sessionId": session}]},
            {"type": "Add", "queryId": 1, "udfPath": "runs:getDashboard", "args": [{}]},
        ]}),
    )
    .await;
    let transition = next(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(transition["type"], "Transition", "{transition}");
    assert_eq!(transition["endVersion"]["identity"], 1);
    let modifications = transition["modifications"].as_array().unwrap();
    let result = |id: u64| modifications.iter().find(|m| m["queryId"] == id).unwrap().clone();
    assert_eq!(result(0)["value"]["title"], "mine", "{transition}");
    assert_eq!(result(1)["type"], "QueryFailed", "a worker query: {transition}");
    assert_eq!(result(1)["errorData"]["code"], "Forbidden");

    let expired = next(&mut socket, Duration::from_secs(10)).await.unwrap();
    assert_eq!(expired["type"], "AuthError", "{expired}");
    // Not an answer to an Authenticate: the client's auth manager fetches a new token.
    assert_eq!((expired["baseVersion"].as_u64(), expired["authUpdateAttempted"].as_bool()), (Some(0), Some(false)));
    assert_eq!(next(&mut socket, Duration::from_secs(5)).await, None, "the socket closes after the AuthError");
    server.stop().await;
}

#[tokio::test]
async fn replayed_mutations_are_remembered_per_identity() {
    let dir = temp_dir();
    let key = SigningKey::rsa("rsa-1");
    let server = server(&dir, vec![tokens::provider("RS256", tokens::jwks(&[&key]))]).await;
    // Two users whose clients claim the same sync session id and the same request id.
    let mut results = Vec::new();
    for user in ["alice", "bob"] {
        let mut socket = connect(&server).await;
        send(
            &mut socket,
            json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "User",
            "value": key.token(user, 600)}),
        )
        .await;
        send(
            &mut socket,
            json!({"type": "Mutation", "requestId": 0, "udfPath": "chatSessions:create",
            "args": [{"userId": user, "title": format!("{user}'s")}]}),
        )
        .await;
        let response = loop {
            let message = next(&mut socket, Duration::from_secs(5)).await.unwrap();
            if message["type"] == "MutationResponse" {
                break message;
            }
        };
        assert_eq!(response["success"], true, "{response}");
        results.push(response["result"].clone());
    }
    assert_ne!(results[0], results[1], "bob's mutation ran: it did not get alice's result");
    let bobs = server.query("chatSessions:list", json!({"userId": "bob"})).await;
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    server.stop().await;
}
