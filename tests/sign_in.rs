//! Issue 17: users signed in by the deployment itself (`auth:signIn`, `auth:signOut`), as
//! `@convex-dev/auth`'s clients call them over HTTP, on a deployment with an admin key (so a
//! caller without credentials is refused, as on any production deployment).

use jangar_engine::base64::encode_url;
use jangar_test_support::{TempDir, TestServer, temp_dir};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "sign-in-admin-key";

async fn server(dir: &TempDir) -> TestServer {
    TestServer::start_custom(dir, |config| config.admin_keys = vec![ADMIN_KEY.to_owned()]).await
}

/// Calls `auth:signIn` as `@convex-dev/auth`'s client does (no credentials, or a user's token);
/// the UdfResponse body.
async fn sign_in_as(server: &TestServer, token: Option<&str>, args: Value) -> Value {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let response = server.call_as(bearer.as_deref(), "/api/action", "auth:signIn", args).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    response.json().unwrap()
}

async fn sign_in(server: &TestServer, args: Value) -> Value {
    sign_in_as(server, None, args).await
}

fn password(flow: &str, email: &str, password: &str) -> Value {
    json!({"provider": "password", "params": {"email": email, "password": password, "flow": flow}})
}

/// The `{token, refreshToken}` of a successful sign-in.
fn tokens(body: &Value) -> (String, String) {
    assert_eq!(body["status"], "success", "{body}");
    let tokens = &body["value"]["tokens"];
    (tokens["token"].as_str().unwrap().to_owned(), tokens["refreshToken"].as_str().unwrap().to_owned())
}

fn failure(body: &Value) -> (String, String) {
    assert_eq!(body["status"], "error", "{body}");
    (body["errorMessage"].as_str().unwrap().to_owned(), body["errorData"]["code"].as_str().unwrap().to_owned())
}

/// Calls a function with a user's token; the status and the body.
async fn call_with(server: &TestServer, token: &str, route: &str, path: &str, args: Value) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let response = server.call_as(Some(&bearer), route, path, args).await;
    (response.status.as_u16(), response.json().unwrap())
}

async fn viewer(server: &TestServer, token: &str) -> Value {
    let (status, body) = call_with(server, token, "/api/query", "users:viewer", json!({})).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("success")), "{body}");
    body["value"].clone()
}

#[tokio::test]
async fn a_user_signs_up_and_owns_what_they_create() {
    let dir = temp_dir();
    let server = server(&dir).await;
    let (alice, _) = tokens(&sign_in(&server, password("signUp", "alice@example.com", "correct horse")).await);
    let me = viewer(&server, &alice).await;
    assert_eq!(me["email"], "alice@example.com");
    let alice_id = me["_id"].as_str().unwrap().to_owned();

    // What `getAuthUserId` returns owns the sessions, with the access rules of any user.
    let (_, created) = call_with(
        &server,
        &alice,
        "/api/mutation",
        "chatSessions:create",
        json!({"userId": alice_id, "title": "mine"}),
    )
    .await;
    let session = created["value"].as_str().expect("created").to_owned();
    let (_, listed) = call_with(&server, &alice, "/api/query", "chatSessions:list", json!({"userId": alice_id})).await;
    assert_eq!(listed["value"].as_array().map(Vec::len), Some(1), "{listed}");

    let (bob, _) = tokens(&sign_in(&server, password("signUp", "bob@example.com", "battery staple")).await);
    let bob_id = viewer(&server, &bob).await["_id"].as_str().unwrap().to_owned();
    assert_ne!(bob_id, alice_id);
    let (_, theirs) = call_with(&server, &bob, "/api/query", "chatSessions:list", json!({"userId": alice_id})).await;
    assert_eq!(theirs["errorData"]["code"], "Forbidden", "{theirs}");
    let (_, got) = call_with(&server, &bob, "/api/query", "chatSessions:get", json!({"sessionId": session})).await;
    assert_eq!(got["value"], Value::Null, "another user's session is as if it did not exist: {got}");
    let (_, posed) =
        call_with(&server, &bob, "/api/mutation", "chatSessions:create", json!({"userId": alice_id, "title": "x"}))
            .await;
    assert_eq!(posed["errorData"]["code"], "Forbidden", "{posed}");

    // Signed out (no token), nothing is readable.
    let response = server.call_as(None, "/api/query", "users:viewer", json!({})).await;
    assert_eq!(response.status, 401);

    // The sign-ins are in the function log, as actions of callers without credentials.
    let admin = format!("Convex {ADMIN_KEY}");
    let url = format!("{}/api/stream_function_logs?cursor=0", server.url);
    let log = server.client.send(hyper::Method::GET, &url, &[("authorization", &admin)], String::new()).await.unwrap();
    let entries = log.json().unwrap()["entries"].as_array().cloned().unwrap_or_default();
    let sign_ins: Vec<&Value> = entries.iter().filter(|e| e["identifier"] == "auth.js:signIn").collect();
    assert_eq!(sign_ins.len(), 2, "{entries:?}");
    assert!(sign_ins.iter().all(|e| e["udfType"] == "Action" && e["caller"] == "anonymous"), "{sign_ins:?}");
}

#[tokio::test]
async fn password_mistakes_get_the_librarys_errors() {
    let dir = temp_dir();
    let server = server(&dir).await;
    tokens(&sign_in(&server, password("signUp", "carol@example.com", "long enough")).await);

    let cases = [
        (password("signUp", "dave@example.com", "short"), "Invalid password", "InvalidArgument"),
        (password("signIn", "carol@example.com", "wrong password"), "InvalidSecret", "Unauthenticated"),
        (password("signIn", "nobody@example.com", "long enough"), "InvalidAccountId", "Unauthenticated"),
        (
            password("signUp", "carol@example.com", "another one"),
            "Account carol@example.com already exists",
            "Conflict",
        ),
        (json!({"provider": "github"}), "Provider `github` is not supported by this deployment", "InvalidArgument"),
        (json!({"provider": "password", "params": {"email": "a@b.c"}}), "Missing `flow` param", "InvalidArgument"),
        (json!({}), "Cannot sign in: Missing `provider`", "InvalidArgument"),
        (json!({"provider": "password", "extra": 1}), "extra field `extra`", "InvalidArgument"),
    ];
    for (args, message, code) in cases {
        let (got, got_code) = failure(&sign_in(&server, args.clone()).await);
        assert!(got.contains(message), "{args}: {got}");
        assert_eq!(got_code, code, "{args}");
    }
    // Signing up again with the same password signs the user in, as Convex Auth does.
    let (token, _) = tokens(&sign_in(&server, password("signUp", "carol@example.com", "long enough")).await);
    assert_eq!(viewer(&server, &token).await["email"], "carol@example.com");
    // An unknown code (no flow here sends codes) is `{tokens: null}`, not an error.
    let body = sign_in(&server, json!({"params": {"code": "123456"}})).await;
    assert_eq!(body["value"], json!({"tokens": null}), "{body}");
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited_per_account() {
    let dir = temp_dir();
    let server = server(&dir).await;
    tokens(&sign_in(&server, password("signUp", "erin@example.com", "the right one")).await);
    // Ten wrong guesses an hour, sent at once: none gets past the count.
    let guesses = (0..12).map(|n| {
        let server = &server;
        async move { failure(&sign_in(server, password("signIn", "erin@example.com", &format!("guess {n}"))).await) }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let limited = answers.iter().filter(|(message, _)| message == "TooManyFailedAttempts").count();
    assert_eq!(limited, 2, "{answers:?}");
    assert!(answers.iter().all(|(m, _)| m == "InvalidSecret" || m == "TooManyFailedAttempts"), "{answers:?}");
    // The right password is refused too while the account is limited.
    let (message, code) = failure(&sign_in(&server, password("signIn", "erin@example.com", "the right one")).await);
    assert_eq!((message.as_str(), code.as_str()), ("TooManyFailedAttempts", "RateLimited"));
    // Another account is not limited.
    tokens(&sign_in(&server, password("signUp", "frank@example.com", "franks own")).await);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_sign_out_ends_the_session() {
    let dir = temp_dir();
    let server = server(&dir).await;
    let (first, refresh) = tokens(&sign_in(&server, password("signUp", "gina@example.com", "gina's secret")).await);
    let user = viewer(&server, &first).await["_id"].clone();

    let (second, rotated) = tokens(&sign_in(&server, json!({"refreshToken": refresh})).await);
    assert_ne!(rotated, refresh, "a refresh token works once: its use rotates it");
    assert_eq!(viewer(&server, &second).await["_id"], user);
    // Another tab refreshing with the same token at the same moment gets the current one.
    let (_, again) = tokens(&sign_in(&server, json!({"refreshToken": refresh})).await);
    assert_eq!(again, rotated);

    // Malformed and forged refresh tokens sign the client out ({tokens: null}), never an error.
    for bad in ["no-divider", "a|b", &format!("{}|{}", user.as_str().unwrap(), user.as_str().unwrap())] {
        let body = sign_in(&server, json!({"refreshToken": bad})).await;
        assert_eq!(body["value"], json!({"tokens": null}), "{bad}: {body}");
    }

    // Sign-out with the session's token ends it: its refresh token no longer works.
    let body = sign_in_as(&server, None, json!({})).await;
    assert_eq!(failure(&body).1, "InvalidArgument");
    let bearer = format!("Bearer {second}");
    let out = server.call_as(Some(&bearer), "/api/action", "auth:signOut", json!({})).await;
    assert_eq!(out.json().unwrap()["status"], "success");
    let body = sign_in(&server, json!({"refreshToken": rotated})).await;
    assert_eq!(body["value"], json!({"tokens": null}), "{body}");
    // Nor do the session's access tokens, though they have not expired.
    for token in [&first, &second] {
        let (status, body) = call_with(&server, token, "/api/query", "users:viewer", json!({})).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("Unauthenticated")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("session has ended"), "{body}");
    }
}

#[tokio::test]
async fn a_new_sign_in_replaces_the_callers_session() {
    let dir = temp_dir();
    let server = server(&dir).await;
    let (anonymous, anonymous_refresh) = tokens(&sign_in(&server, json!({"provider": "anonymous"})).await);
    assert_eq!(viewer(&server, &anonymous).await["isAnonymous"], true);
    // Signing up from an anonymous session (as a browser that was signed in does) ends that one.
    tokens(&sign_in_as(&server, Some(&anonymous), password("signUp", "hana@example.com", "hana's secret")).await);
    let body = sign_in(&server, json!({"refreshToken": anonymous_refresh})).await;
    assert_eq!(body["value"], json!({"tokens": null}), "{body}");
    let (status, _) = call_with(&server, &anonymous, "/api/query", "users:viewer", json!({})).await;
    assert_eq!(status, 401, "the replaced session's token is refused");
}

#[tokio::test]
async fn tokens_verify_with_the_published_key_and_outlive_a_restart() {
    let dir = temp_dir();
    let server = server(&dir).await;
    let (token, _) = tokens(&sign_in(&server, password("signUp", "ivan@example.com", "ivan's secret")).await);

    let response = server.client.get(&format!("{}/.well-known/openid-configuration", server.url)).await.unwrap();
    let discovery = response.json().unwrap();
    assert_eq!(discovery["issuer"], server.url.as_str());
    let jwks_url = discovery["jwks_uri"].as_str().unwrap().to_owned();
    let keys: JwkSet = serde_json::from_value(server.client.get(&jwks_url).await.unwrap().json().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&server.url]);
    validation.set_audience(&["convex"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&keys.keys[0]).unwrap(), &validation)
        .expect("the token verifies with the published key")
        .claims;
    let subject = claims["sub"].as_str().unwrap();
    let user = viewer(&server, &token).await["_id"].as_str().unwrap().to_owned();
    assert!(subject.starts_with(&format!("{user}|")), "sub is <userId>|<sessionId>: {subject}");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3_600);

    // A tampered token is refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = claims.to_string().replace(&user, "k57000000000000000000000000000000");
    parts[1] = encode_url(payload.as_bytes());
    let (status, body) = call_with(&server, &parts.join("."), "/api/query", "users:viewer", json!({})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("Unauthenticated")), "{body}");

    // The key is kept with the data: after a restart the same token is still good.
    let url = server.url.clone();
    server.stop().await;
    let restarted = TestServer::start_custom(&dir, |config| {
        config.admin_keys = vec![ADMIN_KEY.to_owned()];
        config.site_url = Some(url);
    })
    .await;
    assert_eq!(viewer(&restarted, &token).await["_id"], user.as_str());
}

/// `jangar users` against a running server, as an operator runs it.
async fn users_command(server: &TestServer, args: &[&str], stdin: &str) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jangar"));
    command.arg("users").args(args).args(["--url", &server.url, "--admin-key", ADMIN_KEY]);
    let stdin = stdin.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn operators_list_disable_and_reset_users() {
    let dir = temp_dir();
    let server = server(&dir).await;
    let (judy, judy_refresh) = tokens(&sign_in(&server, password("signUp", "judy@example.com", "judy's secret")).await);
    let (_, kim_refresh) = tokens(&sign_in(&server, password("signUp", "kim@example.com", "kim's secret")).await);
    tokens(&sign_in(&server, json!({"provider": "anonymous"})).await);

    let (ok, listed) = users_command(&server, &["list"], "").await;
    assert!(ok, "{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].contains("judy@example.com") && lines[1].contains("kim@example.com"), "{listed}");
    assert!(lines[2].contains("(anonymous)"), "{listed}");

    let (ok, out) = users_command(&server, &["disable", "judy@example.com"], "").await;
    assert!(ok, "{out}");
    assert_eq!(
        failure(&sign_in(&server, password("signIn", "judy@example.com", "judy's secret")).await).1,
        "Forbidden"
    );
    let body = sign_in(&server, json!({"refreshToken": judy_refresh})).await;
    assert_eq!(body["value"], json!({"tokens": null}), "a disabled user's sessions are over: {body}");
    // Their access token too (within SESSION_RECHECK of its last use; this one was never used).
    let (status, _) = call_with(&server, &judy, "/api/query", "users:viewer", json!({})).await;
    assert_eq!(status, 401);
    let (_, listed) = users_command(&server, &["list"], "").await;
    assert!(listed.lines().next().unwrap().contains("disabled"), "{listed}");

    let (ok, out) =
        users_command(&server, &["reset-password", "kim@example.com", "--password-stdin"], "kim's new one\n").await;
    assert!(ok, "{out}");
    assert_eq!(
        failure(&sign_in(&server, password("signIn", "kim@example.com", "kim's secret")).await).0,
        "InvalidSecret"
    );
    tokens(&sign_in(&server, password("signIn", "kim@example.com", "kim's new one")).await);
    let body = sign_in(&server, json!({"refreshToken": kim_refresh})).await;
    assert_eq!(body["value"], json!({"tokens": null}), "the old sessions are over: {body}");
    // Without --password-stdin a password is made and printed.
    let (ok, out) = users_command(&server, &["reset-password", "kim@example.com"], "").await;
    assert!(ok, "{out}");
    let made = out.lines().next().unwrap().rsplit(": ").next().unwrap();
    tokens(&sign_in(&server, password("signIn", "kim@example.com", made)).await);

    let (ok, out) = users_command(&server, &["disable", "nobody@example.com"], "").await;
    assert!(!ok && out.contains("No user signs in as nobody@example.com"), "{out}");
}

/// `JWT_PRIVATE_KEY` on one line (newlines as spaces, as Convex Auth's CLI writes it): the tokens
/// are signed with that key, and the published key is its public half.
#[tokio::test]
async fn a_given_signing_key_signs_the_tokens() {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let one_line = private.to_pkcs8_pem(LineEnding::LF).unwrap().replace('\n', " ");
    let dir = temp_dir();
    let server = TestServer::start_custom(&dir, |config| {
        config.admin_keys = vec![ADMIN_KEY.to_owned()];
        config.jwt_private_key = Some(one_line);
    })
    .await;
    let (token, _) = tokens(&sign_in(&server, password("signUp", "lee@example.com", "lee's secret")).await);
    let keys: JwkSet = serde_json::from_value(
        server.client.get(&format!("{}/.well-known/jwks.json", server.url)).await.unwrap().json().unwrap(),
    )
    .unwrap();
    assert_eq!(keys.keys.len(), 1);
    let published: Value = serde_json::to_value(&keys.keys[0]).unwrap();
    assert_eq!(published["n"], encode_url(&private.to_public_key().n().to_bytes_be()));
    let key = DecodingKey::from_rsa_components(
        &encode_url(&private.to_public_key().n().to_bytes_be()),
        &encode_url(&private.to_public_key().e().to_bytes_be()),
    )
    .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["convex"]);
    jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("signed with the given key");
    assert_eq!(viewer(&server, &token).await["email"], "lee@example.com");
}
