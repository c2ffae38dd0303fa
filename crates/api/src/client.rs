//! A minimal HTTP/1.1 client, over TLS for `https://` URLs (Mozilla's root
//! certificates): `jangar run`, fetching JWKS for user tokens, and the
//! black-box tests.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("response is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        let connector = HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
        HttpClient { inner: Client::builder(TokioExecutor::new()).build(connector) }
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    /// No connection was made, so the server cannot have seen the request.
    pub not_sent: bool,
}

impl HttpClient {
    /// Sends a request with optional extra headers; `body` is sent as-is.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<HttpResponse, String> {
        self.request(method, url, headers, body).await.map_err(|e| e.message)
    }

    /// [`HttpClient::send`], telling a request that never left from one whose answer was lost.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<HttpResponse, SendError> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.into()))
            .map_err(|e| SendError { message: format!("bad request for {url}: {e}"), not_sent: true })?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| SendError { message: format!("cannot reach {url}: {e}"), not_sent: e.is_connect() })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| SendError { message: format!("reading the response from {url}: {e}"), not_sent: false })?
            .to_bytes();
        Ok(HttpResponse { status: parts.status, headers: parts.headers, body })
    }

    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<HttpResponse, String> {
        self.send(Method::POST, url, &[("content-type", "application/json")], body.to_string()).await
    }

    pub async fn get(&self, url: &str) -> Result<HttpResponse, String> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }
}
