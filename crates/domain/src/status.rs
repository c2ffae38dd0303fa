//! The statuses of work orders, runs, steps, approval requests and tool calls:
//! one enum each, with its words, its state machine and its validator. The
//! schema, the functions' argument validators, the transition checks, the run
//! counters and the TypeScript bindings (codegen reads the validators) all
//! follow these definitions.

use std::fmt;

use jangar_engine::document::Document;
use jangar_engine::error::EngineError;
use jangar_engine::schema::{Validator, v};
use jangar_engine::value::Value;

use super::error::FunctionError;

/// A closed set of words stored in a string field: a literal union of the schema.
pub(crate) trait Word: Copy + Eq + fmt::Debug + 'static {
    /// Every word, in the order the schema (and so the bindings) lists them.
    const ALL: &'static [Self];

    /// The word as stored and sent.
    fn as_str(self) -> &'static str;

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|word| word.as_str() == text)
    }

    /// `v.union(v.literal(...), ...)` of every word.
    fn validator() -> Validator {
        literals(Self::ALL)
    }
}

/// The literal validators of `words`, in their order.
pub(crate) fn literal_members<W: Word>(words: &[W]) -> Vec<Validator> {
    words.iter().map(|word| v::literal(word.as_str())).collect()
}

/// `v.union` of the literals of `words` (for arguments that accept some of the words).
pub(crate) fn literals<W: Word>(words: &[W]) -> Validator {
    v::union(literal_members(words))
}

/// A status: a word with a state machine.
pub(crate) trait Status: Word {
    /// May a document move from `from` to `to`? (Staying put is not a move.)
    fn may_move(from: Self, to: Self) -> bool;

    /// No move leaves this status.
    fn is_terminal(self) -> bool;

    /// The `status` field of a stored document. The schema requires it and
    /// checks its words, so anything else is a bug, not a client's mistake.
    fn of(document: &Document) -> Result<Self, FunctionError> {
        let text = document.fields.get("status").and_then(Value::as_str);
        text.and_then(Self::parse).ok_or_else(|| {
            let message = format!("document {} has status {text:?}, not a {}", document.id, type_name::<Self>());
            EngineError::Schema(message).into()
        })
    }
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>().rsplit("::").next().unwrap_or_default()
}

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $crate::status::Word for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::status::Word::as_str(*self))
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::status::UnknownWord;

            fn from_str(text: &str) -> Result<$name, $crate::status::UnknownWord> {
                <$name as $crate::status::Word>::parse(text).ok_or_else(|| $crate::status::UnknownWord(text.to_owned()))
            }
        }

        impl From<$name> for jangar_engine::value::Value {
            fn from(word: $name) -> jangar_engine::value::Value {
                jangar_engine::value::Value::from($crate::status::Word::as_str(word))
            }
        }
    };
}
pub(crate) use words;

/// A string that is none of an enum's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown word {0:?}")]
pub struct UnknownWord(pub String);

words! {
    /// `workOrders.status`.
    WorkOrderStatus {
        Draft = "draft",
        Submitted = "submitted",
        Accepted = "accepted",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl WorkOrderStatus {
    /// The way a work order goes when nothing fails.
    pub(crate) const HAPPY_PATH: &'static [WorkOrderStatus] = &[
        WorkOrderStatus::Draft,
        WorkOrderStatus::Submitted,
        WorkOrderStatus::Accepted,
        WorkOrderStatus::Running,
        WorkOrderStatus::Succeeded,
    ];
}

impl Status for WorkOrderStatus {
    /// draft -> submitted -> accepted -> running -> succeeded | failed | canceled;
    /// every non-terminal status may also go to canceled or failed.
    fn may_move(from: WorkOrderStatus, to: WorkOrderStatus) -> bool {
        use WorkOrderStatus::*;
        if from.is_terminal() {
            return false;
        }
        matches!((from, to), (Draft, Submitted) | (Submitted, Accepted) | (Accepted, Running) | (Running, Succeeded))
            || matches!(to, Canceled | Failed)
    }

    fn is_terminal(self) -> bool {
        matches!(self, WorkOrderStatus::Succeeded | WorkOrderStatus::Failed | WorkOrderStatus::Canceled)
    }
}

words! {
    /// `runs.status`.
    RunStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl Status for RunStatus {
    /// queued -> running -> succeeded | failed | canceled; queued may go to canceled or failed.
    fn may_move(from: RunStatus, to: RunStatus) -> bool {
        use RunStatus::*;
        matches!((from, to), (Queued, Running | Canceled | Failed) | (Running, Succeeded | Failed | Canceled))
    }

    fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }
}

impl RunStatus {
    /// Where a run in this status takes its work order: a queued run leaves it where it is.
    pub(crate) fn work_order_status(self) -> Option<WorkOrderStatus> {
        match self {
            RunStatus::Queued => None,
            RunStatus::Running => Some(WorkOrderStatus::Running),
            RunStatus::Succeeded => Some(WorkOrderStatus::Succeeded),
            RunStatus::Failed => Some(WorkOrderStatus::Failed),
            RunStatus::Canceled => Some(WorkOrderStatus::Canceled),
        }
    }
}

words! {
    /// `steps.status`.
    StepStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl Status for StepStatus {
    /// pending -> running -> succeeded | failed; pending may finish directly; failed may run again.
    fn may_move(from: StepStatus, to: StepStatus) -> bool {
        use StepStatus::*;
        matches!(
            (from, to),
            (Pending, Running | Succeeded | Failed) | (Running, Succeeded | Failed) | (Failed, Running)
        )
    }

    /// Only success: a failed step may run again.
    fn is_terminal(self) -> bool {
        self == StepStatus::Succeeded
    }
}

impl StepStatus {
    /// The step has ended (for now: a failed step may be retried), so it has an `endedAt`.
    pub(crate) fn is_finished(self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Failed)
    }
}

words! {
    /// `approvalRequests.status`. `expired` is never a decision: a pending
    /// request reads as expired once past its `expiresAt`.
    ApprovalStatus {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        Expired = "expired",
    }
}

impl ApprovalStatus {
    /// What `approvalRequests:decide` may record.
    pub(crate) const DECISIONS: &'static [ApprovalStatus] = &[ApprovalStatus::Approved, ApprovalStatus::Rejected];
}

impl Status for ApprovalStatus {
    /// A pending request may be approved or rejected, once.
    fn may_move(from: ApprovalStatus, to: ApprovalStatus) -> bool {
        from == ApprovalStatus::Pending && ApprovalStatus::DECISIONS.contains(&to)
    }

    fn is_terminal(self) -> bool {
        self != ApprovalStatus::Pending
    }
}

words! {
    /// `toolCalls.status`.
    ToolCallStatus {
        Started = "started",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl ToolCallStatus {
    /// What `toolCalls:complete` may record.
    pub(crate) const OUTCOMES: &'static [ToolCallStatus] = &[ToolCallStatus::Succeeded, ToolCallStatus::Failed];
}

impl Status for ToolCallStatus {
    /// A started call finishes once, as succeeded or failed.
    fn may_move(from: ToolCallStatus, to: ToolCallStatus) -> bool {
        from == ToolCallStatus::Started && ToolCallStatus::OUTCOMES.contains(&to)
    }

    fn is_terminal(self) -> bool {
        self != ToolCallStatus::Started
    }
}

#[cfg(test)]
mod tests {
    use jangar_engine::document::Document;
    use jangar_engine::id::DocumentId;
    use jangar_engine::value::Object;

    use super::*;

    fn words<W: Word>() -> Vec<&'static str> {
        W::ALL.iter().map(|w| w.as_str()).collect()
    }

    #[test]
    fn the_words_are_the_schemas() {
        assert_eq!(
            words::<WorkOrderStatus>(),
            ["draft", "submitted", "accepted", "running", "succeeded", "failed", "canceled"]
        );
        assert_eq!(words::<RunStatus>(), ["queued", "running", "succeeded", "failed", "canceled"]);
        assert_eq!(words::<StepStatus>(), ["pending", "running", "succeeded", "failed"]);
        assert_eq!(words::<ApprovalStatus>(), ["pending", "approved", "rejected", "expired"]);
        assert_eq!(words::<ToolCallStatus>(), ["started", "succeeded", "failed"]);
    }

    fn round_trips<W: Word + std::str::FromStr<Err = UnknownWord> + fmt::Display>() {
        for word in W::ALL {
            assert_eq!(W::parse(word.as_str()), Some(*word));
            assert_eq!(word.as_str().parse::<W>(), Ok(*word));
            assert_eq!(word.to_string(), word.as_str());
        }
        assert_eq!(W::parse("Running"), None, "words are case-sensitive");
        assert_eq!("queued ".parse::<W>(), Err(UnknownWord("queued ".into())));
    }

    #[test]
    fn words_parse_back() {
        round_trips::<WorkOrderStatus>();
        round_trips::<RunStatus>();
        round_trips::<StepStatus>();
        round_trips::<ApprovalStatus>();
        round_trips::<ToolCallStatus>();
    }

    #[test]
    fn the_validator_is_the_union_of_the_words() {
        let Validator::Union(members) = RunStatus::validator() else { panic!("not a union") };
        let expected: Vec<Validator> =
            ["queued", "running", "succeeded", "failed", "canceled"].into_iter().map(v::literal).collect();
        assert_eq!(members, expected);
        assert_eq!(literals(ApprovalStatus::DECISIONS), v::one_of(&["approved", "rejected"]));
    }

    /// Terminal means exactly: the state machine has no move out of it.
    fn terminal_is_a_dead_end<S: Status>() {
        for from in S::ALL {
            let moves = S::ALL.iter().filter(|to| S::may_move(*from, **to)).count();
            assert_eq!(from.is_terminal(), moves == 0, "{from:?}");
            assert!(!S::may_move(*from, *from), "{from:?} -> {from:?} is not a move");
        }
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        terminal_is_a_dead_end::<WorkOrderStatus>();
        terminal_is_a_dead_end::<RunStatus>();
        terminal_is_a_dead_end::<StepStatus>();
        terminal_is_a_dead_end::<ApprovalStatus>();
        terminal_is_a_dead_end::<ToolCallStatus>();
    }

    #[test]
    fn decisions_and_outcomes() {
        use ApprovalStatus::*;
        assert!(ApprovalStatus::may_move(Pending, Approved) && ApprovalStatus::may_move(Pending, Rejected));
        assert!(!ApprovalStatus::may_move(Pending, Expired), "expiry is by time, not a decision");
        assert!(!ApprovalStatus::may_move(Expired, Approved) && !ApprovalStatus::may_move(Approved, Rejected));
        assert!(ToolCallStatus::may_move(ToolCallStatus::Started, ToolCallStatus::Failed));
        assert!(!ToolCallStatus::may_move(ToolCallStatus::Failed, ToolCallStatus::Succeeded));
        assert!(StepStatus::Failed.is_finished() && !StepStatus::Failed.is_terminal());
    }

    #[test]
    fn runs_take_their_work_order_along_except_when_queued() {
        assert_eq!(RunStatus::Queued.work_order_status(), None);
        for run in &RunStatus::ALL[1..] {
            assert_eq!(run.work_order_status().map(WorkOrderStatus::as_str), Some(run.as_str()));
        }
    }

    fn document(status: Option<&str>) -> Document {
        let mut fields = Object::new();
        if let Some(status) = status {
            fields.insert("status".into(), status.into());
        }
        Document { id: DocumentId { table: 10_006, internal: [7; 16] }, creation_time: 1.0, fields }
    }

    #[test]
    fn a_stored_status_reads_as_its_enum_or_fails_as_a_bug() {
        assert_eq!(RunStatus::of(&document(Some("running"))).unwrap(), RunStatus::Running);
        for broken in [None, Some("draft"), Some("")] {
            match RunStatus::of(&document(broken)) {
                Err(FunctionError::Engine(EngineError::Schema(m))) => assert!(m.contains("RunStatus"), "{m}"),
                other => panic!("{broken:?}: {other:?}"),
            }
        }
    }
}
