//! Calling a running server's functions as an admin, for the commands that work on one
//! (`jangar run`, `jangar users`, `jangar temporal status`, `jangar check --url`).

use jangar_api::auth::keys::AdminKeys;
use jangar_api::client::HttpClient;
use serde_json::{Value, json};

/// A running server, and the admin key to call it with.
pub struct Remote {
    url: String,
    authorization: Option<String>,
}

impl Remote {
    /// `url` else CONVEX_URL, CONVEX_SELF_HOSTED_URL or http://127.0.0.1:3210; `admin_key` else
    /// JANGAR_ADMIN_KEY or one of Convex's variables.
    pub fn new(url: Option<String>, admin_key: Option<String>) -> Remote {
        let url = url.unwrap_or_else(|| {
            ["CONVEX_URL", "CONVEX_SELF_HOSTED_URL"]
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
                .unwrap_or_else(|| "http://127.0.0.1:3210".into())
        });
        let key = admin_key.or_else(|| AdminKeys::from_environment().into_iter().next());
        Remote { url, authorization: key.map(|key| format!("Convex {}", key.trim())) }
    }

    /// Runs the function at `path`; its value, or what went wrong (with the error's data).
    pub async fn call(&self, path: &str, args: Value) -> Result<Value, String> {
        let body =
            self.post("/api/function", json!({"path": path, "args": args, "format": "json"}).to_string()).await?;
        match body["status"].as_str() {
            Some("success") => Ok(body["value"].clone()),
            _ => {
                let data =
                    body.get("errorData").map(|d| format!("\n{}", serde_json::to_string_pretty(d).unwrap_or_default()));
                Err(format!(
                    "{}{}",
                    body["errorMessage"].as_str().unwrap_or("function failed"),
                    data.unwrap_or_default()
                ))
            }
        }
    }

    /// POSTs `body` to `route` as an admin; the JSON answer of a 2xx, else what went wrong.
    pub async fn post(&self, route: &str, body: String) -> Result<Value, String> {
        let url = format!("{}{route}", self.url.trim_end_matches('/'));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        let response = HttpClient::default()
            .send(hyper::Method::POST, &url, &headers, body)
            .await
            .map_err(|e| format!("{e}\nis `jangar serve` running at {}?", self.url))?;
        let body = response.json()?;
        if !response.status.is_success() {
            return Err(format!("{} {}", response.status, body["message"].as_str().unwrap_or(&body.to_string())));
        }
        Ok(body)
    }
}
