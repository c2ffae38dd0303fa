//! What credentials cost per HTTP call: the same cached query (`chatSessions:get`)
//! called with an admin key, an RS256 user token and an ES256 user token, each by
//! 32 concurrent clients for `--seconds`, against an in-process server on
//! loopback. Prints calls per second and the ratio to the admin-key run.
//!
//! Usage: cargo run --release --example auth_overhead [-- --seconds 5]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jangar::client::HttpClient;
use jangar::server::{ServerConfig, serve};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.bench";
const ADMIN_KEY: &str = "bench-admin-key";
const CLIENTS: usize = 32;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

struct Signer {
    kid: &'static str,
    algorithm: Algorithm,
    key: EncodingKey,
}

impl Signer {
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.kid.into());
        serde_json::to_value(jwk).unwrap()
    }

    fn token(&self, subject: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"iss": ISSUER, "sub": subject, "aud": "bench", "iat": now, "exp": now + 3600});
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// Calls per second of `body` with `authorization`, over `seconds`.
async fn measure(url: &str, authorization: &str, body: &str, seconds: f64) -> f64 {
    let calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, calls) = (HttpClient::default(), calls.clone());
        let (url, authorization, body) = (url.to_owned(), authorization.to_owned(), body.to_owned());
        tasks.push(tokio::spawn(async move {
            let headers = [("content-type", "application/json"), ("authorization", authorization.as_str())];
            while Instant::now() < deadline {
                let response = client.send(hyper::Method::POST, &url, &headers, body.clone()).await.unwrap();
                assert!(response.status.is_success(), "{}", String::from_utf8_lossy(&response.body));
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    calls.load(Ordering::Relaxed) as f64 / seconds
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let seconds: f64 = arg("--seconds", "5").parse().map_err(|e| format!("--seconds: {e}"))?;
    let rsa = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| e.to_string())?;
        let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
        Signer { kid: "rsa", algorithm: Algorithm::RS256, key: EncodingKey::from_rsa_der(der.as_bytes()) }
    };
    let ec = {
        use p256::pkcs8::EncodePrivateKey;
        let der = p256::SecretKey::random(&mut rand::rngs::OsRng).to_pkcs8_der().map_err(|e| e.to_string())?;
        Signer { kid: "ec", algorithm: Algorithm::ES256, key: EncodingKey::from_ec_der(der.as_bytes()) }
    };
    let dir = std::env::temp_dir().join(format!("jangar-auth-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let providers = json!({"providers": [
        {"type": "customJwt", "issuer": ISSUER, "applicationID": "bench", "algorithm": "RS256", "jwks": {"keys": [rsa.jwk()]}},
    ]});
    // Two providers cannot share an issuer: the ES256 one gets its own.
    let mut providers = providers;
    providers["providers"].as_array_mut().unwrap().push(json!({"type": "customJwt", "issuer": format!("{ISSUER}/ec"),
        "applicationID": "bench", "algorithm": "ES256", "jwks": {"keys": [ec.jwk()]}}));
    std::fs::write(dir.join("auth.json"), providers.to_string()).map_err(|e| e.to_string())?;

    let (ready, address) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.clone());
    config.admin_keys = vec![ADMIN_KEY.into()];
    config.limits.calls_per_second = 0;
    let server = tokio::spawn(serve(
        config,
        async move {
            let _ = stopped.await;
        },
        move |address| {
            let _ = ready.send(address);
        },
    ));
    let base = format!("http://{}", address.await.map_err(|e| e.to_string())?);
    let admin = format!("Convex {ADMIN_KEY}");
    let create = json!({"path": "chatSessions:create", "args": {"userId": "alice", "title": "bench"}}).to_string();
    let client = HttpClient::default();
    let headers = [("content-type", "application/json"), ("authorization", admin.as_str())];
    let created = client.send(hyper::Method::POST, &format!("{base}/api/mutation"), &headers, create).await?;
    let session = created.json()?["value"].as_str().ok_or("no session id")?.to_owned();
    let get = json!({"path": "chatSessions:get", "args": {"sessionId": session}}).to_string();
    let url = format!("{base}/api/query");

    let ec_token = {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"iss": format!("{ISSUER}/ec"), "sub": "alice", "aud": "bench", "exp": now + 3600});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec".into());
        jsonwebtoken::encode(&header, &claims, &ec.key).map_err(|e| e.to_string())?
    };
    let runs = [
        ("admin key", admin.clone()),
        ("RS256 user token", format!("Bearer {}", rsa.token("alice"))),
        ("ES256 user token", format!("Bearer {ec_token}")),
    ];
    let mut reference = None;
    println!("{CLIENTS} clients, {seconds} s each, chatSessions:get (served from the query cache)");
    for (name, authorization) in runs {
        let rate = measure(&url, &authorization, &get, seconds).await;
        let reference = *reference.get_or_insert(rate);
        println!("{name:>18}: {rate:>9.0} calls/s  ({:.2}x the admin-key rate)", rate / reference);
    }
    let _ = stop.send(());
    server.await.map_err(|e| e.to_string())??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
