//! The close codes the sync socket ends with (RFC 6455, section 7.4.1), in one place: the
//! official clients decide from the code whether to reconnect at once or back off.

/// The close reason after a `FatalError` for a message that breaks the protocol.
pub(crate) const INVALID_CLIENT_MESSAGE: &str = "InvalidClientMessage";

/// The close reason after an `AuthError` message, and that message's `type`: the clients fetch
/// a fresh token and reconnect.
pub(crate) const AUTH_ERROR: &str = "AuthError";

/// Why the server closes a sync socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseCode {
    /// A deliberate end the client handles by its reason (`AuthError`: credentials refused).
    Normal,
    /// The server is shutting down; the client reconnects to another replica or later.
    GoingAway,
    /// A frame of a kind the protocol has no use for (binary).
    UnsupportedData,
    /// A text frame that is not UTF-8.
    InvalidPayload,
    /// A message that breaks the protocol (malformed, out of order).
    PolicyViolation,
    /// A message larger than `--max-socket-message-bytes`.
    MessageTooBig,
    /// The server is overloaded or the client fell too far behind; the clients back off.
    TryAgainLater,
}

impl CloseCode {
    /// The code on the wire.
    pub(crate) fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::TryAgainLater => 1013,
        }
    }
}
