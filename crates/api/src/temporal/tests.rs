//! The bridge's reading of Temporal's answers, on the shapes the dev server sends
//! (../shared/spec/temporal.md), and its payload encoding; no server needed.

use hyper::StatusCode;
use jangar_domain::temporal::{Answer, Claimed, Closed, RequestKind};
use jangar_engine::id::DocumentId;
use jangar_engine::value::Value;
use serde_json::{Value as Json, json};

use super::{Ending, classify, decode_payload, ending, payload};
use crate::client::{HttpResponse, SendError};

fn request(kind: RequestKind) -> Claimed {
    let order = DocumentId { table: 10_005, internal: [7; 16] };
    Claimed {
        request: DocumentId { table: 102, internal: [1; 16] },
        kind,
        work_order: order,
        workflow_id: format!("jangar-wo-{order}"),
        request_id: format!("jangar-{kind}-{order}"),
        claimant: "jangar-test".into(),
        attempt: 1,
        start: None,
    }
}

fn answer(status: u16, body: Json) -> Result<HttpResponse, SendError> {
    Ok(HttpResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: Default::default(),
        body: body.to_string().into(),
    })
}

fn already_started(start_request_id: &str) -> Json {
    json!({"code": 6, "message": "Workflow execution is already running. WorkflowId: w, RunId: r-1.",
           "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
                        "startRequestId": start_request_id, "runId": "r-1"}]})
}

#[test]
fn a_start_is_started_when_temporal_says_so_or_says_it_already_was() {
    let start = request(RequestKind::Start);
    let ok = answer(200, json!({"runId": "r-1", "started": true}));
    assert!(matches!(classify(&start, ok), Answer::Started { run_id } if run_id == "r-1"));
    let ours = answer(409, already_started(&start.request_id));
    assert!(matches!(classify(&start, ours), Answer::Started { run_id } if run_id == "r-1"));
    // Someone else's start of the same id is still the one execution to follow.
    let theirs = answer(409, already_started("another-request"));
    assert!(matches!(classify(&start, theirs), Answer::Started { run_id } if run_id == "r-1"));
}

#[test]
fn refusals_are_final_and_everything_else_is_sent_again() {
    let start = request(RequestKind::Start);
    let too_big = answer(400, json!({"code": 3, "message": "Blob data size exceeds limit."}));
    assert!(matches!(classify(&start, too_big), Answer::Refused { message } if message.contains("exceeds limit")));
    let failing_over = answer(400, json!({"code": 9, "message": "Namespace is not active."}));
    assert!(matches!(classify(&start, failing_over), Answer::Retry { .. }), "only InvalidArgument is final");
    let proxy = Ok(HttpResponse {
        status: StatusCode::NOT_FOUND,
        headers: Default::default(),
        body: "<html>no such page</html>".into(),
    });
    let wrong_url = classify(&request(RequestKind::Cancel), proxy);
    assert!(matches!(&wrong_url, Answer::Retry { error, .. } if error.contains("no such page")), "{wrong_url:?}");
    let unavailable = answer(503, json!({"code": 14, "message": "unavailable"}));
    assert!(matches!(classify(&start, unavailable), Answer::Retry { arrived: true, .. }));
    let namespace = answer(
        404,
        json!({"code": 5, "message": "Namespace nope is not found.",
        "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure"}]}),
    );
    assert!(matches!(classify(&request(RequestKind::Cancel), namespace), Answer::Retry { .. }));
    let refused = Err(SendError { message: "cannot reach".into(), not_sent: true });
    assert!(matches!(classify(&start, refused), Answer::Retry { arrived: false, .. }), "nothing left this machine");
    let lost = Err(SendError { message: "no answer".into(), not_sent: false });
    assert!(matches!(classify(&start, lost), Answer::Retry { arrived: true, .. }), "Temporal may have acted");
}

#[test]
fn stopping_a_workflow_that_is_gone_is_done() {
    for kind in [RequestKind::Cancel, RequestKind::Terminate] {
        assert!(matches!(classify(&request(kind), answer(200, json!({}))), Answer::Done));
        let gone = answer(
            404,
            json!({"code": 5, "message": "workflow execution already completed",
            "details": [{"@type": "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"}]}),
        );
        assert!(matches!(classify(&request(kind), gone), Answer::Done));
    }
}

#[test]
fn payloads_carry_the_exact_json_and_results_read_back() {
    let mut fields = jangar_engine::value::Object::new();
    fields.insert("empty".into(), Value::Array(vec![]));
    fields.insert("nothing".into(), Value::Object(Default::default()));
    fields.insert("big".into(), Value::Int64((1 << 53) + 1));
    fields.insert("text".into(), Value::from("héllo ✓"));
    let encoded = payload(&Value::Object(fields));
    assert_eq!(encoded["metadata"]["encoding"], "anNvbi9wbGFpbg==");
    let bytes = jangar_engine::base64::decode(encoded["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        r#"{"big":9007199254740993,"empty":[],"nothing":{},"text":"héllo ✓"}"#
    );
    let Some(Value::Object(read)) = decode_payload(&encoded) else { panic!("an object reads back") };
    assert_eq!(read["empty"], Value::Array(vec![]));
    assert_eq!(read["big"], Value::Float64(9007199254740992.0), "JSON numbers read as float64, as in Convex");
}

#[test]
fn close_events_read_as_outcomes() {
    let failed = json!({"eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
        "workflowExecutionFailedEventAttributes": {"failure": {"message": "asked to fail",
            "applicationFailureInfo": {"type": "JangarTestFailure", "nonRetryable": true}}}});
    assert!(matches!(ending(&failed), Some(Ending::Closed(Closed::Failed { message, failure_type }))
        if message == "asked to fail" && failure_type.as_deref() == Some("JangarTestFailure")));
    let timed_out = json!({"eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT",
        "workflowExecutionTimedOutEventAttributes": {"retryState": "RETRY_STATE_TIMEOUT"}});
    assert!(matches!(ending(&timed_out), Some(Ending::Closed(Closed::TimedOut { .. }))));
    let continued = json!({"eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
        "workflowExecutionContinuedAsNewEventAttributes": {"newExecutionRunId": "r-2"}});
    assert!(matches!(ending(&continued), Some(Ending::ContinuedAs(run)) if run == "r-2"));
    assert!(ending(&json!({"eventType": "EVENT_TYPE_WORKFLOW_TASK_STARTED"})).is_none());
}
