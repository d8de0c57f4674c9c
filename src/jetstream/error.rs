//! Errors from the NATS side, classified for conditions, backoff and metrics.

use std::time::Duration;

use crate::metrics::{ErrorCategory, JsOp, JsOutcome};

/// JetStream error codes the operator acts on.
pub mod code {
    /// Stream not found.
    pub const STREAM_NOT_FOUND: u64 = 10059;
    /// Consumer not found.
    pub const CONSUMER_NOT_FOUND: u64 = 10014;
    /// Stream name in use with a different configuration.
    pub const STREAM_NAME_EXISTS: u64 = 10058;
    /// Invalid stream configuration (includes refused changes).
    pub const STREAM_INVALID_CONFIG: u64 = 10052;
    /// Generic stream update error.
    pub const STREAM_UPDATE: u64 = 10069;
    /// Mirror cannot be updated.
    pub const STREAM_MIRROR_NOT_UPDATABLE: u64 = 10055;
    /// Subjects overlap another stream.
    pub const STREAM_SUBJECT_OVERLAP: u64 = 10065;
    /// Unknown field on a strict server.
    pub const INVALID_JSON: u64 = 10025;
    /// Pedantic refusal.
    pub const PEDANTIC: u64 = 10157;
    /// Replicas not supported (standalone server).
    pub const REPLICAS_NOT_SUPPORTED: u64 = 10074;
    /// Consumer create or update refused.
    pub const CONSUMER_CREATE: u64 = 10012;
    /// Strict create of a consumer that exists with another config.
    pub const CONSUMER_ALREADY_EXISTS: u64 = 10148;
    /// Update of a consumer that does not exist.
    pub const CONSUMER_DOES_NOT_EXIST: u64 = 10149;
    /// No meta leader.
    pub const CLUSTER_NOT_AVAILABLE: u64 = 10008;
    /// Move in progress.
    pub const STREAM_MOVE_IN_PROGRESS: u64 = 10124;
    /// Stream offline.
    pub const STREAM_OFFLINE: u64 = 10118;
    /// Consumer offline.
    pub const CONSUMER_OFFLINE: u64 = 10119;
    /// JetStream not enabled for the account.
    pub const NOT_ENABLED_FOR_ACCOUNT: u64 = 10039;
    /// JetStream not enabled.
    pub const NOT_ENABLED: u64 = 10076;
    /// Insufficient resources.
    pub const INSUFFICIENT_RESOURCES: u64 = 10023;
    /// Storage resources exceeded.
    pub const STORAGE_EXCEEDED: u64 = 10047;
    /// Memory resources exceeded.
    pub const MEMORY_EXCEEDED: u64 = 10028;
    /// Account resources exceeded.
    pub const ACCOUNT_EXCEEDED: u64 = 10002;
    /// Maximum consumers reached (capacity can free up).
    pub const MAXIMUM_CONSUMERS: u64 = 10026;
    /// Maximum streams reached (capacity can free up).
    pub const MAXIMUM_STREAMS: u64 = 10027;
}

/// An error talking to JetStream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JsError {
    /// The connection is down or cannot be established.
    #[error("cannot reach NATS at {servers}: {reason}")]
    Connection {
        /// Servers (no credentials).
        servers: String,
        /// Why.
        reason: String,
    },
    /// The server refused our credentials or permissions.
    #[error("NATS refused the connection to {servers}: {reason}")]
    Auth {
        /// Servers (no credentials).
        servers: String,
        /// The server's words.
        reason: String,
    },
    /// A request got no answer in time.
    #[error("JetStream API request {op} timed out after {after:?}")]
    Timeout {
        /// Operation.
        op: JsOp,
        /// The timeout that expired.
        after: Duration,
    },
    /// Nobody answers on the API subject: JetStream disabled, wrong domain or prefix.
    #[error(
        "JetStream is not available on {subject} (no responders): is JetStream enabled for this account, and is the domain or API prefix right?"
    )]
    NoResponders {
        /// The subject that had no responders.
        subject: String,
    },
    /// The server answered with an API error.
    #[error("{description} (JetStream error {err_code})")]
    Api {
        /// HTTP-like code.
        code: u16,
        /// NATS error code.
        err_code: u64,
        /// The server's words.
        description: String,
    },
    /// The request is larger than the server takes (its `max_payload`): sending it again
    /// cannot help.
    #[error(
        "the JetStream {op} request is larger than the server accepts ({reason}); make the configuration smaller (fewer subjects, sources or metadata) or raise the server's max_payload"
    )]
    TooLarge {
        /// Operation.
        op: JsOp,
        /// The client's words (sizes).
        reason: String,
    },
    /// The answer could not be parsed.
    #[error("cannot decode JetStream {op} response: {reason}")]
    Decode {
        /// Operation.
        op: JsOp,
        /// Why.
        reason: String,
    },
}

/// How the reconciler should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// May pass by itself: retry with backoff.
    Transient,
    /// Retrying the same request will not help: stall until something changes.
    Permanent,
    /// Credentials or permissions: stall until the connection settings change.
    Auth,
}

impl JsError {
    /// The NATS error code of an API error.
    pub fn err_code(&self) -> Option<u64> {
        match self {
            JsError::Api { err_code, .. } => Some(*err_code),
            _ => None,
        }
    }

    /// True for a given API error code.
    pub fn is(&self, code: u64) -> bool {
        self.err_code() == Some(code)
    }

    /// How to react.
    pub fn disposition(&self) -> Disposition {
        match self {
            JsError::Connection { .. } | JsError::Timeout { .. } | JsError::NoResponders { .. } => {
                Disposition::Transient
            }
            JsError::Auth { .. } => Disposition::Auth,
            JsError::Decode { .. } | JsError::TooLarge { .. } => Disposition::Permanent,
            JsError::Api {
                code: c, err_code, ..
            } => match *err_code {
                code::CLUSTER_NOT_AVAILABLE
                | code::CONSUMER_ALREADY_EXISTS
                | code::CONSUMER_DOES_NOT_EXIST
                | code::STREAM_NOT_FOUND
                | code::STREAM_MOVE_IN_PROGRESS
                | code::STREAM_OFFLINE
                | code::CONSUMER_OFFLINE
                | code::INSUFFICIENT_RESOURCES
                | code::STORAGE_EXCEEDED
                | code::MEMORY_EXCEEDED
                | code::ACCOUNT_EXCEEDED
                | code::MAXIMUM_CONSUMERS
                | code::MAXIMUM_STREAMS
                | code::NOT_ENABLED
                | code::NOT_ENABLED_FOR_ACCOUNT => Disposition::Transient,
                code::STREAM_INVALID_CONFIG
                | code::STREAM_UPDATE
                | code::STREAM_MIRROR_NOT_UPDATABLE
                | code::STREAM_SUBJECT_OVERLAP
                | code::STREAM_NAME_EXISTS
                | code::INVALID_JSON
                | code::PEDANTIC
                | code::REPLICAS_NOT_SUPPORTED
                | code::CONSUMER_CREATE => Disposition::Permanent,
                _ if *c == 401 || *c == 403 => Disposition::Auth,
                _ if (400..500).contains(c) => Disposition::Permanent,
                _ => Disposition::Transient,
            },
        }
    }

    /// The bounded category, for metrics.
    pub fn category(&self) -> ErrorCategory {
        match self {
            JsError::Connection { .. } => ErrorCategory::Connection,
            JsError::Auth { .. } => ErrorCategory::Auth,
            JsError::Timeout { .. } => ErrorCategory::Timeout,
            JsError::NoResponders { .. } => ErrorCategory::NoResponders,
            JsError::Decode { .. } => ErrorCategory::Decode,
            JsError::TooLarge { .. } => ErrorCategory::Refused,
            JsError::Api { .. } => match self.disposition() {
                Disposition::Permanent => ErrorCategory::Refused,
                Disposition::Auth => ErrorCategory::Auth,
                Disposition::Transient => ErrorCategory::Api,
            },
        }
    }

    /// How a request that failed with this error is counted.
    pub fn outcome(&self) -> JsOutcome {
        if self.is(code::STREAM_NOT_FOUND) || self.is(code::CONSUMER_NOT_FOUND) {
            return JsOutcome::NotFound;
        }
        match self.category() {
            ErrorCategory::Connection => JsOutcome::Connection,
            ErrorCategory::Auth => JsOutcome::Auth,
            ErrorCategory::Timeout => JsOutcome::Timeout,
            ErrorCategory::NoResponders => JsOutcome::NoResponders,
            ErrorCategory::Decode => JsOutcome::Decode,
            ErrorCategory::Refused => JsOutcome::Refused,
            _ => JsOutcome::Api,
        }
    }

    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions::reason;
        match self {
            JsError::Connection { .. } => reason::CONNECTION_FAILED,
            JsError::Auth { .. } => reason::AUTHENTICATION_FAILED,
            JsError::Timeout { .. } => reason::TIMEOUT,
            JsError::NoResponders { .. } => reason::JETSTREAM_UNAVAILABLE,
            JsError::Decode { .. } => reason::API_ERROR,
            JsError::TooLarge { .. } => reason::NOT_SUPPORTED,
            JsError::Api { err_code, .. } => match self.disposition() {
                Disposition::Permanent => reason::NOT_SUPPORTED,
                Disposition::Auth => reason::FORBIDDEN,
                Disposition::Transient if *err_code == code::CLUSTER_NOT_AVAILABLE => {
                    reason::JETSTREAM_UNAVAILABLE
                }
                Disposition::Transient => reason::API_ERROR,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, err_code: u64) -> JsError {
        JsError::Api {
            code,
            err_code,
            description: "x".into(),
        }
    }

    #[test]
    fn classification() {
        assert_eq!(
            api(400, code::STREAM_SUBJECT_OVERLAP).disposition(),
            Disposition::Permanent
        );
        assert_eq!(
            api(500, code::STREAM_INVALID_CONFIG).disposition(),
            Disposition::Permanent
        );
        assert_eq!(
            api(503, code::CLUSTER_NOT_AVAILABLE).disposition(),
            Disposition::Transient
        );
        assert_eq!(api(500, 99999).disposition(), Disposition::Transient);
        assert_eq!(api(400, 99999).disposition(), Disposition::Permanent);
        assert_eq!(api(403, 99999).disposition(), Disposition::Auth);
        let conn = JsError::Connection {
            servers: "nats://x".into(),
            reason: "refused".into(),
        };
        assert_eq!(conn.disposition(), Disposition::Transient);
        assert_eq!(conn.reason(), "ConnectionFailed");
        assert_eq!(
            api(400, code::STREAM_SUBJECT_OVERLAP).reason(),
            "NotSupported"
        );
    }
}
