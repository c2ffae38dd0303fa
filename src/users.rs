//! `jangar users`: the accounts of the users a running server signs in itself (`auth:signIn`),
//! for operators. It calls the worker functions `users:*` with an admin key.

use jangar_domain::auth::{MIN_PASSWORD_CHARS, hash_password};
use serde_json::{Value, json};

use crate::remote::Remote;

/// Users per page read.
const PAGE: usize = 500;

/// One line per user, oldest first: id, email (or "anonymous"), when they were created, and
/// whether they are disabled.
pub async fn list(remote: &Remote) -> Result<String, String> {
    let mut out = String::new();
    let mut cursor = Value::Null;
    loop {
        let page = remote.call("users:list", json!({"paginationOpts": {"numItems": PAGE, "cursor": cursor}})).await?;
        for user in page["page"].as_array().into_iter().flatten() {
            let email = user["email"].as_str().unwrap_or(if user["isAnonymous"] == true { "(anonymous)" } else { "-" });
            let created = user["_creationTime"].as_f64().map(iso_time).unwrap_or_default();
            let disabled = user["disabledTime"].as_f64().map(|at| format!("  disabled {}", iso_time(at)));
            out.push_str(&format!(
                "{}  {email}  {created}{}\n",
                user["_id"].as_str().unwrap_or("?"),
                disabled.unwrap_or_default()
            ));
        }
        if page["isDone"] != false {
            return Ok(out);
        }
        cursor = page["continueCursor"].clone();
    }
}

/// Stops `email` signing in and ends their sessions.
pub async fn disable(remote: &Remote, email: &str) -> Result<String, String> {
    let user = remote.call("users:disable", json!({"email": email})).await?;
    Ok(format!("disabled {email} ({}); their sessions are over\n", user.as_str().unwrap_or("?")))
}

/// Gives `email` a new password: `password` if given, else a random one, printed. The hash is
/// made here, so the password never travels to the server.
pub async fn reset_password(remote: &Remote, email: &str, password: Option<String>) -> Result<String, String> {
    let (password, made) = match password {
        Some(password) if password.chars().count() < MIN_PASSWORD_CHARS => {
            return Err(format!("a password needs at least {MIN_PASSWORD_CHARS} characters"));
        }
        Some(password) => (password, false),
        None => (random_password()?, true),
    };
    let hash = tokio::task::spawn_blocking(move || hash_password(&password).map(|hash| (hash, password)))
        .await
        .map_err(|e| e.to_string())??;
    remote.call("users:setPassword", json!({"email": email, "passwordHash": hash.0})).await?;
    let shown = if made { format!(": {}", hash.1) } else { String::new() };
    Ok(format!("new password for {email}{shown}\ntheir sessions are over; they sign in again with it\n"))
}

fn random_password() -> Result<String, String> {
    let mut bytes = [0u8; 15];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a password: {e}"))?;
    Ok(jangar_engine::base64::encode_url(&bytes))
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn iso_time(ms: f64) -> String {
    let at =
        time::OffsetDateTime::from_unix_timestamp((ms / 1000.0) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (date, clock) = (at.date(), at.time());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    )
}
