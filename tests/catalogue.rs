//! Catalogue rules that only show under concurrency: gapless event sequences
//! and exact dashboard counters with many writers at once.

use jangar_test_support::{TestServer, temp_dir};
use serde_json::{Value, json};

async fn work_order(server: &TestServer) -> String {
    let session = server.mutation("chatSessions:create", json!({"userId": "u", "title": "t"})).await;
    server.mutation("workOrders:create", json!({"sessionId": session, "title": "w"})).await.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn event_sequences_stay_gapless_under_concurrent_writers() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let order = work_order(&server).await;
    let run = server
        .mutation("runs:start", json!({"workOrderId": order, "temporalWorkflowId": "wf", "status": "queued"}))
        .await;
    let mut writers = Vec::new();
    for i in 0..60 {
        let client = server.client.clone();
        let url = format!("{}/api/mutation", server.url);
        let body = json!({"path": "events:append", "args": {"runId": run, "type": "comment", "data": {"i": i}}});
        writers.push(tokio::spawn(async move { client.post_json(&url, &body).await.unwrap().json().unwrap() }));
    }
    // Status changes race with the appends and log their own events.
    server.mutation("runs:updateStatus", json!({"runId": run, "status": "running"})).await;
    for writer in writers {
        let reply: Value = writer.await.unwrap();
        assert_eq!(reply["status"], "success", "{reply}");
    }
    server.mutation("runs:updateStatus", json!({"runId": run, "status": "succeeded"})).await;
    let events = server.query("events:listByRun", json!({"runId": run, "limit": 1000})).await;
    let seqs: Vec<u64> = events.as_array().unwrap().iter().map(|e| e["seq"].as_f64().unwrap() as u64).collect();
    assert_eq!(seqs, (1..=63).collect::<Vec<_>>(), "1..n with no gap or repeat");
    let changes: Vec<(Value, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "state_change")
        .map(|e| (e["data"]["from"].clone(), e["data"]["to"].clone()))
        .collect();
    assert_eq!(
        changes,
        [(Value::Null, json!("queued")), (json!("queued"), json!("running")), (json!("running"), json!("succeeded"))]
    );
    let after = server.query("events:listByRun", json!({"runId": run, "afterSeq": 60})).await;
    assert_eq!(after.as_array().unwrap().len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn dashboard_counts_match_concurrent_status_changes() {
    let dir = temp_dir();
    let server = TestServer::start(&dir).await;
    let order = work_order(&server).await;
    let mut runs = Vec::new();
    for i in 0..24 {
        let status = if i % 2 == 0 { "queued" } else { "running" };
        let run = server
            .mutation(
                "runs:start",
                json!({"workOrderId": order, "temporalWorkflowId": format!("wf-{i}"), "status": status}),
            )
            .await;
        runs.push((run, status));
    }
    // Finish a third of them concurrently, each in its own way.
    let mut changes = Vec::new();
    for (i, (run, from)) in runs.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let to = match (i % 2, *from) {
            (_, "queued") => "canceled",
            (1, _) => "failed",
            _ => "succeeded",
        };
        let client = server.client.clone();
        let url = format!("{}/api/mutation", server.url);
        let body = json!({"path": "runs:updateStatus", "args": {"runId": run, "status": to}});
        changes.push(tokio::spawn(async move { client.post_json(&url, &body).await.unwrap().json().unwrap() }));
    }
    for change in changes {
        let reply: Value = change.await.unwrap();
        assert_eq!(reply["status"], "success", "{reply}");
    }
    let dashboard = server.query("runs:getDashboard", json!({"limit": 100})).await;
    let mut expected = json!({"queued": 0.0, "running": 0.0, "succeeded": 0.0, "failed": 0.0, "canceled": 0.0});
    for status in ["queued", "running", "succeeded", "failed", "canceled"] {
        let listed = server.query("runs:listByWorkOrder", json!({"workOrderId": order, "limit": 100})).await;
        let n = listed.as_array().unwrap().iter().filter(|r| r["status"] == status).count();
        expected[status] = json!(n as f64);
    }
    assert_eq!(dashboard["counts"], expected);
    let active = dashboard["active"].as_array().unwrap();
    assert_eq!(active.len() as f64, expected["queued"].as_f64().unwrap() + expected["running"].as_f64().unwrap());
    assert!(active.iter().all(|a| a["workOrderTitle"] == "w"));
    assert_eq!(dashboard["recent"].as_array().unwrap().len(), 8);
    server.stop().await;
}
