//! Jangar's data model (shared/spec/functions.md). Table numbers are part of
//! every document id, so they never change once assigned.

use jangar_engine::schema::{Schema, TableDef, Validator, v};

use super::status::{ApprovalStatus, RunStatus, StepStatus, ToolCallStatus, Word, WorkOrderStatus};

/// The tables' names, as documents ids and the engine know them.
pub mod tables {
    pub(crate) const TEAMS: &str = "teams";
    pub(crate) const REPOS: &str = "repos";
    pub(crate) const CHAT_SESSIONS: &str = "chat_sessions";
    pub(crate) const CHAT_MESSAGES: &str = "chat_messages";
    pub(crate) const WORK_ORDERS: &str = "work_orders";
    pub(crate) const RUNS: &str = "runs";
    pub(crate) const STEPS: &str = "steps";
    pub(crate) const ARTIFACTS: &str = "artifacts";
    pub(crate) const EVENTS: &str = "events";
    pub(crate) const TOOL_CALLS: &str = "tool_calls";
    pub(crate) const APPROVAL_REQUESTS: &str = "approval_requests";
    pub(crate) const AGENT_SESSIONS: &str = "agent_sessions";
    /// Aggregates kept in the same transactions as the changes they count.
    pub(crate) const COUNTERS: &str = "counters";
    /// Signed-in users, and what `@convex-dev/auth`'s flows keep about them (crate::auth).
    pub(crate) const USERS: &str = "users";
    pub(crate) const AUTH_ACCOUNTS: &str = "auth_accounts";
    pub(crate) const AUTH_SESSIONS: &str = "auth_sessions";
    pub(crate) const AUTH_REFRESH_TOKENS: &str = "auth_refresh_tokens";
    pub(crate) const AUTH_RATE_LIMITS: &str = "auth_rate_limits";

    /// Deployment environment variables (`npx convex env`): a system table, so clients'
    /// bindings, the table list and exports leave it out.
    pub(crate) const ENVIRONMENT_VARIABLES: &str = "_environment_variables";
    /// The Temporal bridge's outbox: requests to send, written with the changes that call for them.
    pub(crate) const TEMPORAL_REQUESTS: &str = "_temporal_requests";

    /// Every table of the data model, in the order of their numbers.
    pub const ALL: &[&str] = &[
        TEAMS,
        REPOS,
        CHAT_SESSIONS,
        CHAT_MESSAGES,
        WORK_ORDERS,
        RUNS,
        STEPS,
        ARTIFACTS,
        EVENTS,
        TOOL_CALLS,
        APPROVAL_REQUESTS,
        AGENT_SESSIONS,
        COUNTERS,
        USERS,
        AUTH_ACCOUNTS,
        AUTH_SESSIONS,
        AUTH_REFRESH_TOKENS,
        AUTH_RATE_LIMITS,
    ];
}

pub(crate) const MESSAGE_ROLES: &[&str] = &["user", "assistant", "system", "tool"];
pub(crate) const STEP_KINDS: &[&str] = &["activity", "hook", "check"];
pub(crate) const ARTIFACT_TYPES: &[&str] = &["pr", "diff", "file", "log", "screenshot", "plan", "report"];
pub(crate) const EVENT_TYPES: &[&str] = &["state_change", "comment", "system"];
pub(crate) const AGENT_PHASES: &[&str] = &["idle", "planning", "researching", "complete"];

/// `changes` on an assistant message: the files it touched and whether they were committed.
pub(crate) fn changes_validator() -> Validator {
    v::object(vec![
        ("files", v::optional(v::any())),
        ("committed", v::boolean()),
        ("commitSha", v::optional(v::string())),
        ("prUrl", v::optional(v::string())),
    ])
}

pub fn schema() -> Schema {
    let deleted_at = || ("deletedAt", v::nullable(v::number()));
    let mut table_defs = vec![
        TableDef::new(tables::TEAMS, 10_001, vec![("name", v::string()), ("createdAt", v::number())]),
        TableDef::new(
            tables::REPOS,
            10_002,
            vec![
                ("teamId", v::id(tables::TEAMS)),
                ("githubOwner", v::string()),
                ("githubRepo", v::string()),
                ("defaultBranch", v::optional(v::string())),
                ("pushStrategy", v::optional(v::one_of(&["direct", "pr"]))),
                ("createdAt", v::number()),
            ],
        )
        .index("by_team", &["teamId"]),
        TableDef::new(
            tables::CHAT_SESSIONS,
            10_003,
            vec![
                ("userId", v::string()),
                ("title", v::string()),
                ("repoId", v::optional(v::id(tables::REPOS))),
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
            tables::CHAT_MESSAGES,
            10_004,
            vec![
                ("sessionId", v::id(tables::CHAT_SESSIONS)),
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
            tables::WORK_ORDERS,
            10_005,
            vec![
                ("sessionId", v::id(tables::CHAT_SESSIONS)),
                ("triggerMessageId", v::optional(v::id(tables::CHAT_MESSAGES))),
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
                ("taskQueue", v::optional(v::string())),
                ("status", WorkOrderStatus::validator()),
                ("commitSha", v::optional(v::string())),
                ("prUrl", v::optional(v::string())),
                ("failureReason", v::optional(v::any())),
                // What the Temporal bridge last did for the order, how many attempts its last request
                // took, and its last error (all absent without the bridge). Flat fields: a nested
                // object would take validators past the nesting limit in `function-spec`.
                ("temporalState", v::optional(super::temporal::BridgeState::validator())),
                ("temporalAttempts", v::optional(v::number())),
                ("temporalError", v::optional(v::string())),
                ("lastEventSeq", v::optional(v::number())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
                deleted_at(),
            ],
        )
        .index("by_session", &["sessionId", "createdAt"])
        .index("by_status", &["status", "updatedAt"]),
        TableDef::new(
            tables::RUNS,
            10_006,
            vec![
                ("workOrderId", v::id(tables::WORK_ORDERS)),
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
                // The workflow's result, when the bridge mirrored its completion.
                ("result", v::optional(v::any())),
                ("lastEventSeq", v::optional(v::number())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
            ],
        )
        .index("by_work_order", &["workOrderId", "createdAt"])
        .index("by_status", &["status", "updatedAt"])
        .index("by_workflow", &["temporalWorkflowId"]),
        TableDef::new(
            tables::STEPS,
            10_007,
            vec![
                ("runId", v::id(tables::RUNS)),
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
            tables::ARTIFACTS,
            10_008,
            vec![
                ("runId", v::optional(v::id(tables::RUNS))),
                ("sessionId", v::optional(v::id(tables::CHAT_SESSIONS))),
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
            tables::EVENTS,
            10_009,
            vec![
                ("runId", v::optional(v::id(tables::RUNS))),
                ("workOrderId", v::optional(v::id(tables::WORK_ORDERS))),
                ("type", v::one_of(EVENT_TYPES)),
                ("data", v::optional(v::any())),
                ("seq", v::number()),
                ("createdAt", v::number()),
            ],
        )
        .index("by_run", &["runId", "seq"])
        .index("by_work_order", &["workOrderId", "createdAt"]),
        TableDef::new(
            tables::TOOL_CALLS,
            10_010,
            vec![
                ("sessionId", v::id(tables::CHAT_SESSIONS)),
                ("runId", v::optional(v::id(tables::RUNS))),
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
            tables::APPROVAL_REQUESTS,
            10_011,
            vec![
                ("sessionId", v::id(tables::CHAT_SESSIONS)),
                ("runId", v::optional(v::id(tables::RUNS))),
                ("workOrderId", v::optional(v::id(tables::WORK_ORDERS))),
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
            tables::AGENT_SESSIONS,
            10_012,
            vec![
                ("sessionId", v::id(tables::CHAT_SESSIONS)),
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
        TableDef::new(
            tables::COUNTERS,
            10_013,
            vec![("name", v::string()), ("counts", v::record(v::string(), v::number()))],
        )
        .index("by_name", &["name"]),
        TableDef::new(tables::ENVIRONMENT_VARIABLES, 101, vec![("name", v::string()), ("value", v::string())])
            .index("by_name", &["name"]),
        super::temporal::table(),
    ];
    table_defs.extend(super::auth::tables());
    Schema::new(table_defs).expect("Jangar's schema is valid")
}
