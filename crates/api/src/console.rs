//! The web console's assets, compiled into the binary: `/console` and every path under it answer
//! the one page (the console routes in the browser, so each view's URL can be reloaded or
//! shared), `/console/assets/*` the script and the style sheet. The page reads through the
//! sync protocol like any client; nothing here reads data.
//!
//! The script is a bundle of `console/src` built by `console/build.mjs` (checked against its
//! sources in CI), so `cargo build` needs no JavaScript toolchain.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest;
use std::sync::OnceLock;

/// One compiled-in file, with the ETag of its content (computed once, on first use).
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Asset {
        Asset { body, content_type, etag: OnceLock::new() }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = sha2::Sha256::digest(self.body.as_bytes());
            format!("\"{}\"", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
        })
    }

    /// The file, or 304 when the browser holds this very version: browsers revalidate
    /// (`no-cache`), so an upgraded binary's console is seen on the next load.
    fn serve(&self, request: &HeaderMap) -> Response {
        let etag = self.etag().to_owned();
        let fresh = request.get(header::IF_NONE_MATCH).is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
        let headers = [
            (header::CONTENT_TYPE, self.content_type.to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
            (header::ETAG, etag),
        ];
        if fresh { (StatusCode::NOT_MODIFIED, headers).into_response() } else { (headers, self.body).into_response() }
    }
}

static PAGE: Asset = Asset::new(include_str!("../console/index.html"), "text/html; charset=utf-8");
static SCRIPT: Asset = Asset::new(include_str!("../console/dist/console.js"), "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(include_str!("../console/console.css"), "text/css; charset=utf-8");

/// Same-origin everything: the page loads only its own script and style and talks only to
/// this server (`'self'` covers the same host's `ws:`/`wss:` too), and no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/assets/{file}", get(asset))
        .route("/console/{*view}", get(page))
}

async fn page(request: HeaderMap) -> Response {
    let mut response = PAGE.serve(&request);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match file.as_str() {
        "console.js" => SCRIPT.serve(&request),
        "console.css" => STYLE.serve(&request),
        _ => (StatusCode::NOT_FOUND, "The console has no such asset.").into_response(),
    }
}
