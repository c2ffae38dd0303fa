//! Jangar's data model (shared/spec/functions.md). Table numbers are part of
//! every document id, so they never change once assigned.

use jangar_engine::schema::{Schema, TableDef, Validator, v};

use super::status::{ApprovalStatus, RunStatus, StepStatus, ToolCallStatus, Word, WorkOrderStatus};

pub const MESSAGE_ROLES: &[&str] = &["user", "assistant", "system", "tool"];
pub const STEP_KINDS: &[&str] = &["activity", "hook", "check"];
pub const ARTIFACT_TYPES: &[&str] = &["pr", "diff", "file", "log", "screenshot", "plan", "report"];
pub const EVENT_TYPES: &[&str] = &["state_change", "comment", "system"];
pub const AGENT_PHASES: &[&str] = &["idle", "planning", "researching", "complete"];

/// `changes` on an assistant message: the files it touched and whether they were committed.
pub fn changes_validator() -> Validator {
    v::object(vec![
        ("files", v::optional(v::any())),
        ("committed", v::boolean()),
        ("commitSha", v::optional(v::string())),
        ("prUrl", v::optional(v::string())),
    ])
}

pub fn schema() -> Schema {
    let deleted_at = || ("deletedAt", v::nullable(v::number()));
    Schema::new(vec![
        TableDef::new("teams", 10_001, vec![("name", v::string()), ("createdAt", v::number())]),
        TableDef::new(
            "repos",
            10_002,
            vec![
                ("teamId", v::id("teams")),
                ("githubOwner", v::string()),
                ("githubRepo", v::string()),
                ("defaultBranch", v::optional(v::string())),
                ("pushStrategy", v::optional(v::one_of(&["direct", "pr"]))),
                ("createdAt", v::number()),
            ],
        )
        .index("by_team", &["teamId"]),
        TableDef::new(
            "chat_sessions",
            10_003,
            vec![
                ("userId", v::string()),
                ("title", v::string()),
                ("repoId", v::optional(v::id("repos"))),
                ("firstMessage", v::optional(v::string())),
                ("lastMessageAt", v::number()),
                ("lastActiveAt", v::number()),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
                deleted_at(),
            ],
        )
        .index("by_user_recent", &["userId", "lastMessageAt"])
        .index("by_repo_recent", &["repoId", "lastActiveAt"]),
        TableDef::new(
            "chat_messages",
            10_004,
            vec![
                ("sessionId", v::id("chat_sessions")),
                ("role", v::one_of(MESSAGE_ROLES)),
                ("content", v::string()),
                ("metadata", v::optional(v::any())),
                ("streaming", v::optional(v::boolean())),
                ("changes", v::optional(changes_validator())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
                deleted_at(),
            ],
        )
        .index("by_session", &["sessionId", "createdAt"]),
        TableDef::new(
            "work_orders",
            10_005,
            vec![
                ("sessionId", v::id("chat_sessions")),
                ("triggerMessageId", v::optional(v::id("chat_messages"))),
                ("title", v::optional(v::string())),
                ("summary", v::optional(v::string())),
                ("prompt", v::optional(v::string())),
                ("workflowId", v::optional(v::string())),
                ("workflowType", v::optional(v::string())),
                ("workflowArgs", v::optional(v::any())),
                ("githubIssueUrl", v::optional(v::string())),
                ("requestedBy", v::optional(v::string())),
                ("targetRepo", v::optional(v::string())),
                ("targetBranch", v::optional(v::string())),
                ("status", WorkOrderStatus::validator()),
                ("commitSha", v::optional(v::string())),
                ("prUrl", v::optional(v::string())),
                ("failureReason", v::optional(v::any())),
                ("lastEventSeq", v::optional(v::number())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
                deleted_at(),
            ],
        )
        .index("by_session", &["sessionId", "createdAt"])
        .index("by_status", &["status", "updatedAt"]),
        TableDef::new(
            "runs",
            10_006,
            vec![
                ("workOrderId", v::id("work_orders")),
                ("temporalWorkflowId", v::string()),
                ("temporalRunId", v::optional(v::string())),
                ("taskQueue", v::optional(v::string())),
                ("workerId", v::optional(v::string())),
                ("repo", v::optional(v::string())),
                ("branch", v::optional(v::string())),
                ("status", RunStatus::validator()),
                ("prUrl", v::optional(v::string())),
                ("commitSha", v::optional(v::string())),
                ("startedAt", v::optional(v::number())),
                ("endedAt", v::optional(v::number())),
                ("failureReason", v::optional(v::any())),
                ("lastEventSeq", v::optional(v::number())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_work_order", &["workOrderId", "createdAt"])
        .index("by_status", &["status", "updatedAt"])
        .index("by_workflow", &["temporalWorkflowId"]),
        TableDef::new(
            "steps",
            10_007,
            vec![
                ("runId", v::id("runs")),
                ("name", v::string()),
                ("kind", v::one_of(STEP_KINDS)),
                ("status", StepStatus::validator()),
                ("attempt", v::number()),
                ("startedAt", v::optional(v::number())),
                ("endedAt", v::optional(v::number())),
                ("payload", v::optional(v::any())),
                ("logUrl", v::optional(v::string())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_run", &["runId", "name"]),
        TableDef::new(
            "artifacts",
            10_008,
            vec![
                ("runId", v::optional(v::id("runs"))),
                ("sessionId", v::optional(v::id("chat_sessions"))),
                ("type", v::one_of(ARTIFACT_TYPES)),
                ("url", v::optional(v::string())),
                ("label", v::optional(v::string())),
                ("content", v::optional(v::string())),
                ("status", v::optional(v::string())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_run", &["runId", "createdAt"])
        .index("by_session", &["sessionId", "createdAt"]),
        TableDef::new(
            "events",
            10_009,
            vec![
                ("runId", v::optional(v::id("runs"))),
                ("workOrderId", v::optional(v::id("work_orders"))),
                ("type", v::one_of(EVENT_TYPES)),
                ("data", v::optional(v::any())),
                ("seq", v::number()),
                ("createdAt", v::number()),
            ],
        )
        .index("by_run", &["runId", "seq"])
        .index("by_work_order", &["workOrderId", "createdAt"]),
        TableDef::new(
            "tool_calls",
            10_010,
            vec![
                ("sessionId", v::id("chat_sessions")),
                ("runId", v::optional(v::id("runs"))),
                ("toolName", v::string()),
                ("input", v::any()),
                ("output", v::optional(v::any())),
                ("status", ToolCallStatus::validator()),
                ("durationMs", v::optional(v::number())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_session", &["sessionId", "createdAt"]),
        TableDef::new(
            "approval_requests",
            10_011,
            vec![
                ("sessionId", v::id("chat_sessions")),
                ("runId", v::optional(v::id("runs"))),
                ("workOrderId", v::optional(v::id("work_orders"))),
                ("planContent", v::string()),
                ("status", ApprovalStatus::validator()),
                ("decidedBy", v::optional(v::string())),
                ("decidedAt", v::optional(v::number())),
                ("reason", v::optional(v::string())),
                ("expiresAt", v::optional(v::number())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_session", &["sessionId", "createdAt"])
        .index("by_status", &["status", "createdAt"]),
        TableDef::new(
            "agent_sessions",
            10_012,
            vec![
                ("sessionId", v::id("chat_sessions")),
                ("sdkSessionId", v::string()),
                ("phase", v::one_of(AGENT_PHASES)),
                ("plan", v::optional(v::any())),
                ("mode", v::optional(v::one_of(&["local", "sandbox"]))),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_session", &["sessionId"]),
        // Aggregates kept in the same transactions as the changes they count (runs:getDashboard).
        TableDef::new("counters", 10_013, vec![("name", v::string()), ("counts", v::record(v::string(), v::number()))])
            .index("by_name", &["name"]),
    ])
    .expect("Jangar's schema is valid")
}
