//! What credentials cost per HTTP call: the same cached query (`chatSessions:get`)
//! called by 32 concurrent clients with an admin key, with one RS256 or ES256
//! user token (verified once, then remembered), and with a new token on every
//! call (a signature check each), against an in-process server on loopback.
//! Prints calls per second and the ratio to the admin-key run.
//!
//! Usage: cargo run --release --example auth_overhead [-- --seconds 5]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jangar::server::{ServerConfig, serve};
use jangar_api::client::HttpClient;
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
}

/// Calls per second of `body`, each call with the next of `authorizations`
/// (cycling through them), over `seconds` or until `once` and all were used.
async fn measure(url: &str, authorizations: Arc<Vec<String>>, once: bool, body: &str, seconds: f64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, next, authorizations) = (HttpClient::default(), next.clone(), authorizations.clone());
        let (url, body) = (url.to_owned(), body.to_owned());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                if once && index >= authorizations.len() {
                    break;
                }
                let authorization = &authorizations[index % authorizations.len()];
                let headers = [("content-type", "application/json"), ("authorization", authorization.as_str())];
                let response = client.send(hyper::Method::POST, &url, &headers, body.clone()).await.unwrap();
                assert!(response.status.is_success(), "{}", String::from_utf8_lossy(&response.body));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let calls = (next.load(Ordering::Relaxed) as usize).min(if once { authorizations.len() } else { usize::MAX });
    calls as f64 / started.elapsed().as_secs_f64()
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

    let bearer = |signer: &Signer, issuer: &str, serial: usize| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"iss": issuer, "sub": "alice", "aud": "bench", "exp": now + 3600, "jti": serial});
        let mut header = Header::new(signer.algorithm);
        header.kid = Some(signer.kid.into());
        format!("Bearer {}", jsonwebtoken::encode(&header, &claims, &signer.key).unwrap())
    };
    let ec_issuer = format!("{ISSUER}/ec");
    // Distinct tokens, signed before the clock starts, for the runs where every call brings a new one.
    let fresh_rsa: Vec<String> = (0..2_000).map(|i| bearer(&rsa, ISSUER, i)).collect();
    let fresh_ec: Vec<String> = (0..20_000).map(|i| bearer(&ec, &ec_issuer, i)).collect();
    let runs = [
        ("admin key", vec![admin.clone()], false),
        ("RS256, same token", vec![bearer(&rsa, ISSUER, 0)], false),
        ("ES256, same token", vec![bearer(&ec, &ec_issuer, 0)], false),
        ("RS256, new tokens", fresh_rsa, true),
        ("ES256, new tokens", fresh_ec, true),
    ];
    let mut reference = None;
    println!("{CLIENTS} clients, up to {seconds} s each, chatSessions:get (served from the query cache)");
    for (name, authorizations, once) in runs {
        let rate = measure(&url, Arc::new(authorizations), once, &get, seconds).await;
        let reference = *reference.get_or_insert(rate);
        println!("{name:>18}: {rate:>9.0} calls/s  ({:.2}x the admin-key rate)", rate / reference);
    }
    let _ = stop.send(());
    server.await.map_err(|e| e.to_string())??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
