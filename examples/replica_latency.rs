//! How long a commit on one replica takes to reach a subscriber on another:
//! appends a message over HTTP on `--write` N times, one after another, while a
//! WebSocket client on `--watch` is subscribed to the session's newest message,
//! and times each message from the request (and from its acknowledgement) to the
//! Transition that shows it. Prints p50 / p99 / max in milliseconds.
//!
//! Usage: replica_latency --write http://A --watch http://B [--count 300]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jangar_api::client::HttpClient;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let (p50, p99, max) = (percentile(&samples, 0.5), percentile(&samples, 0.99), samples[samples.len() - 1]);
    println!("{name}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} samples)", samples.len());
}

async fn call(client: &HttpClient, base: &str, kind: &str, path: &str, args: Value) -> Result<Value, String> {
    let body = json!({"path": path, "args": args, "format": "json"});
    let response = client.post_json(&format!("{base}/api/{kind}"), &body).await?.json()?;
    if response["status"] != "success" {
        return Err(format!("{path}: {response}"));
    }
    Ok(response["value"].clone())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let write = arg("--write").ok_or("--write URL is required")?;
    let watch = arg("--watch").ok_or("--watch URL is required")?;
    let count: usize = arg("--count").unwrap_or_else(|| "300".into()).parse().map_err(|e| format!("--count: {e}"))?;
    let client = HttpClient::default();
    let session =
        call(&client, &write, "mutation", "chatSessions:create", json!({"userId": "lat", "title": "t"})).await?;

    let ws = format!("{}/api/sync", watch.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.map_err(|e| e.to_string())?;
    let messages = [
        json!({"type": "Connect", "sessionId": "5c1f6c8e-40a4-4f7e-9a55-1b5d0c2f9e10", "connectionCount": 0,
            "lastCloseReason": null, "clientTs": 0}),
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 0, "udfPath": "chatMessages:listBySession",
             "args": [{"sessionId": session, "limit": 1}]}]}),
    ];
    for message in messages {
        socket.send(Message::Text(message.to_string().into())).await.map_err(|e| e.to_string())?;
    }
    let (mut from_request, mut from_ack) = (Vec::new(), Vec::new());
    for i in 0..count {
        let content = format!("message {i}");
        let started = Instant::now();
        let args = json!({"sessionId": session, "role": "user", "content": content});
        let append = call(&client, &write, "mutation", "chatMessages:append", args);
        tokio::pin!(append);
        let mut acknowledged = None;
        let seen = loop {
            tokio::select! {
                done = &mut append, if acknowledged.is_none() => {
                    done?;
                    acknowledged = Some(Instant::now());
                }
                frame = tokio::time::timeout(Duration::from_secs(10), socket.next()) => {
                    let Ok(Some(Ok(Message::Text(text)))) = frame else { return Err(format!("no update for {content}")) };
                    let update: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    let shows = update["modifications"].as_array().into_iter().flatten().any(|m| {
                        m["value"].as_array().and_then(|v| v.last()).is_some_and(|last| last["content"] == content.as_str())
                    });
                    if shows {
                        break Instant::now();
                    }
                }
            }
        };
        if acknowledged.is_none() {
            append.await?;
            acknowledged = Some(Instant::now());
        }
        let ack = acknowledged.expect("set above");
        from_request.push(seen.duration_since(started).as_secs_f64() * 1e3);
        from_ack.push(seen.saturating_duration_since(ack).as_secs_f64() * 1e3);
    }
    summary("request on the writer -> update on the watcher", from_request);
    summary("acknowledged by the writer -> update on the watcher", from_ack);
    Ok(())
}
