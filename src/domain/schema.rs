//! Jangar's data model (shared/spec/functions.md). Table numbers are part of
//! every document id, so they never change once assigned.

use crate::engine::schema::{Schema, TableDef, Validator, v};

pub const WORK_ORDER_STATUSES: &[&str] =
    &["draft", "submitted", "accepted", "running", "succeeded", "failed", "canceled"];
pub const RUN_STATUSES: &[&str] = &["queued", "running", "succeeded", "failed", "canceled"];
pub const MESSAGE_ROLES: &[&str] = &["user", "assistant", "system", "tool"];

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
                ("status", v::one_of(WORK_ORDER_STATUSES)),
                ("commitSha", v::optional(v::string())),
                ("prUrl", v::optional(v::string())),
                ("failureReason", v::optional(v::any())),
                ("createdAt", v::number()),
                ("updatedAt", v::number()),
                deleted_at(),
            ],
        )
        .index("by_session", &["sessionId", "createdAt"])
        .index("by_status", &["status", "updatedAt"]),
    ])
    .expect("Jangar's schema is valid")
}
