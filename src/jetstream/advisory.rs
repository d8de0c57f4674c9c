//! What JetStream tells its clients about changes: the advisory subjects the operator
//! listens on, and how each message becomes an event for the objects it concerns. Pure:
//! subjects and payloads in, events out.
//!
//! JetStream publishes no advisory when a consumer's configuration is updated, but it
//! publishes an audit advisory (`$JS.EVENT.ADVISORY.API`) for every API call it answers,
//! with the request subject, the response and the calling client. A successful consumer
//! create, update, delete or pause made by anyone but this operator is turned into an
//! event, so consumer drift is repaired as fast as stream drift.

use serde::Deserialize;

/// The subject of JetStream's API audit advisory.
pub const AUDIT_SUBJECT: &str = "$JS.EVENT.ADVISORY.API";

/// Every advisory subject the operator subscribes to on each connection. The per-message
/// consumer advisories (deliveries, naks, terminations) are left out: they can be many,
/// and change nothing the operator manages.
pub const SUBJECTS: [&str; 8] = [
    "$JS.EVENT.ADVISORY.STREAM.CREATED.*",
    "$JS.EVENT.ADVISORY.STREAM.DELETED.*",
    "$JS.EVENT.ADVISORY.STREAM.UPDATED.*",
    "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*",
    "$JS.EVENT.ADVISORY.CONSUMER.DELETED.*.*",
    "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.*.*",
    "$JS.EVENT.ADVISORY.CONSUMER.PAUSE.*.*",
    AUDIT_SUBJECT,
];

/// Something that happened on a connection that the controllers care about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The connection came back after being down: re-check everything on it.
    Reconnected {
        /// Connection key.
        conn: u64,
    },
    /// The connection went down: its objects should say so.
    Disconnected {
        /// Connection key.
        conn: u64,
    },
    /// A stream was created (its waiting consumers can go ahead).
    StreamCreated {
        /// Connection key.
        conn: u64,
        /// Stream name.
        stream: String,
    },
    /// A stream was deleted by someone (its consumers went with it).
    StreamDeleted {
        /// Connection key.
        conn: u64,
        /// Stream name.
        stream: String,
    },
    /// A stream's configuration was updated by someone (its consumers are not concerned).
    StreamUpdated {
        /// Connection key.
        conn: u64,
        /// Stream name.
        stream: String,
    },
    /// A stream has a new cluster leader (its consumers are not concerned).
    StreamLeaderElected {
        /// Connection key.
        conn: u64,
        /// Stream name.
        stream: String,
    },
    /// A consumer was created, updated, deleted or paused by someone, or has a new
    /// cluster leader.
    ConsumerChanged {
        /// Connection key.
        conn: u64,
        /// Stream name.
        stream: String,
        /// Consumer name.
        consumer: String,
    },
}

/// Parses an advisory subject into an event (the audit advisory needs its payload: see
/// [`audit_event`]).
pub fn advisory_event(conn: u64, subject: &str) -> Option<ConnEvent> {
    let rest = subject.strip_prefix("$JS.EVENT.ADVISORY.")?;
    let parts: Vec<&str> = rest.split('.').collect();
    let stream = |s: &str| s.to_string();
    match parts.as_slice() {
        ["STREAM", "CREATED", s] => Some(ConnEvent::StreamCreated {
            conn,
            stream: stream(s),
        }),
        ["STREAM", "DELETED", s] => Some(ConnEvent::StreamDeleted {
            conn,
            stream: stream(s),
        }),
        ["STREAM", "UPDATED", s] => Some(ConnEvent::StreamUpdated {
            conn,
            stream: stream(s),
        }),
        ["STREAM", "LEADER_ELECTED", s] => Some(ConnEvent::StreamLeaderElected {
            conn,
            stream: stream(s),
        }),
        ["CONSUMER", "DELETED" | "LEADER_ELECTED" | "PAUSE", s, c] => {
            Some(ConnEvent::ConsumerChanged {
                conn,
                stream: stream(s),
                consumer: (*c).to_string(),
            })
        }
        _ => None,
    }
}

/// The client that made an API call, as the audit advisory names it: the client id the
/// server gave the connection, and the name of the server it is connected to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Caller {
    /// The client id (`CONNECT`'s `cid` in the server's INFO).
    #[serde(default)]
    pub id: u64,
    /// The server the client is connected to.
    #[serde(default)]
    pub server: String,
}

#[derive(Deserialize)]
struct Audit {
    #[serde(default)]
    client: Option<Caller>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    response: String,
}

#[derive(Deserialize)]
struct AuditResponse {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// True when an audit payload can be about a consumer change at all: a cheap look before
/// the JSON is read, since every API call (this operator's INFOs and listings too) is
/// audited.
pub fn may_concern_consumers(payload: &[u8]) -> bool {
    const NEEDLE: &[u8] = b".API.CONSUMER.";
    payload.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// Reads an audit advisory: a successful consumer create, update, delete or pause made by
/// a client other than `own` becomes [`ConnEvent::ConsumerChanged`]. Anything else
/// (reads, failed calls, the operator's own calls, malformed payloads) is `None`.
pub fn audit_event(conn: u64, payload: &[u8], own: Option<&Caller>) -> Option<ConnEvent> {
    if !may_concern_consumers(payload) {
        return None;
    }
    let audit: Audit = serde_json::from_slice(payload).ok()?;
    if let (Some(own), Some(caller)) = (own, audit.client.as_ref())
        && own == caller
    {
        return None;
    }
    // `$JS.API.CONSUMER...`, or a domain's `$JS.<domain>.API.CONSUMER...`.
    let (_, rest) = audit.subject.split_once(".API.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let response: AuditResponse = serde_json::from_str(&audit.response).ok()?;
    if response.error.as_ref().is_some_and(|e| !e.is_null()) {
        return None;
    }
    let (stream, consumer) = match tokens.as_slice() {
        // Create or update: the response is the consumer's info, which names it (the
        // legacy form's subject does not).
        ["CONSUMER", "CREATE", stream, ..] | ["CONSUMER", "DURABLE", "CREATE", stream, ..] => (
            response
                .stream_name
                .unwrap_or_else(|| (*stream).to_string()),
            response.name?,
        ),
        ["CONSUMER", "DELETE" | "PAUSE", stream, consumer] => {
            ((*stream).to_string(), (*consumer).to_string())
        }
        _ => return None,
    };
    Some(ConnEvent::ConsumerChanged {
        conn,
        stream,
        consumer,
    })
}

/// True when a server error says the connection may not subscribe to the advisories.
pub fn advisories_denied(error: &str) -> bool {
    let e = error.to_lowercase();
    e.contains("permissions violation for subscription") && e.contains("$js.event.advisory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consumer(stream: &str, name: &str) -> Option<ConnEvent> {
        Some(ConnEvent::ConsumerChanged {
            conn: 1,
            stream: stream.into(),
            consumer: name.into(),
        })
    }

    #[test]
    fn advisory_subjects() {
        assert_eq!(
            advisory_event(1, "$JS.EVENT.ADVISORY.STREAM.DELETED.orders"),
            Some(ConnEvent::StreamDeleted {
                conn: 1,
                stream: "orders".into()
            })
        );
        assert_eq!(
            advisory_event(1, "$JS.EVENT.ADVISORY.STREAM.UPDATED.orders"),
            Some(ConnEvent::StreamUpdated {
                conn: 1,
                stream: "orders".into()
            })
        );
        assert_eq!(
            advisory_event(1, "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.orders"),
            Some(ConnEvent::StreamLeaderElected {
                conn: 1,
                stream: "orders".into()
            })
        );
        for what in ["DELETED", "LEADER_ELECTED", "PAUSE"] {
            assert_eq!(
                advisory_event(
                    1,
                    &format!("$JS.EVENT.ADVISORY.CONSUMER.{what}.orders.worker")
                ),
                consumer("orders", "worker"),
                "{what}"
            );
        }
        assert_eq!(advisory_event(1, AUDIT_SUBJECT), None);
        assert_eq!(
            advisory_event(
                1,
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.orders.worker"
            ),
            None
        );
    }

    /// An audit advisory as nats-server publishes it (server/jetstream_api.go
    /// `JSAPIAudit`; the request and response are JSON documents in strings).
    fn audit(subject: &str, response: serde_json::Value, id: u64, server: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": "io.nats.jetstream.advisory.v1.api_audit",
            "id": "x",
            "timestamp": "2026-11-30T12:00:00Z",
            "server": "n1",
            "client": {"id": id, "acc": "A", "name": "nats.go", "server": server},
            "subject": subject,
            "request": "{\"stream_name\":\"orders\"}",
            "response": response.to_string(),
        }))
        .unwrap()
    }

    fn info(stream: &str, name: &str) -> serde_json::Value {
        json!({"type": "io.nats.jetstream.api.v1.consumer_create_response",
               "stream_name": stream, "name": name, "config": {"durable_name": name}})
    }

    #[test]
    fn consumer_changes_by_others_from_the_audit() {
        let own = Caller {
            id: 7,
            server: "n1".into(),
        };
        let cases: Vec<(&str, Vec<u8>, Option<ConnEvent>)> = vec![
            (
                "an update by another client",
                audit(
                    "$JS.API.CONSUMER.CREATE.orders.worker",
                    info("orders", "worker"),
                    8,
                    "n1",
                ),
                consumer("orders", "worker"),
            ),
            (
                "the same client id on another server is another client",
                audit(
                    "$JS.API.CONSUMER.CREATE.orders.worker.orders.new",
                    info("orders", "worker"),
                    7,
                    "n2",
                ),
                consumer("orders", "worker"),
            ),
            (
                "the legacy create names the consumer only in its response",
                audit(
                    "$JS.API.CONSUMER.CREATE.orders",
                    info("orders", "worker"),
                    8,
                    "n1",
                ),
                consumer("orders", "worker"),
            ),
            (
                "a durable create",
                audit(
                    "$JS.API.CONSUMER.DURABLE.CREATE.orders.worker",
                    info("orders", "worker"),
                    8,
                    "n1",
                ),
                consumer("orders", "worker"),
            ),
            (
                "a delete",
                audit(
                    "$JS.API.CONSUMER.DELETE.orders.worker",
                    json!({"success": true}),
                    8,
                    "n1",
                ),
                consumer("orders", "worker"),
            ),
            (
                "a pause, through a domain",
                audit(
                    "$JS.hub.API.CONSUMER.PAUSE.orders.worker",
                    json!({"paused": true}),
                    8,
                    "n1",
                ),
                consumer("orders", "worker"),
            ),
            (
                "the operator's own update",
                audit(
                    "$JS.API.CONSUMER.CREATE.orders.worker",
                    info("orders", "worker"),
                    7,
                    "n1",
                ),
                None,
            ),
            (
                "a refused update changed nothing",
                audit(
                    "$JS.API.CONSUMER.CREATE.orders.worker",
                    json!({"error": {"code": 400, "err_code": 10012, "description": "x"}}),
                    8,
                    "n1",
                ),
                None,
            ),
            (
                "a read",
                audit(
                    "$JS.API.CONSUMER.INFO.orders.worker",
                    info("orders", "worker"),
                    8,
                    "n1",
                ),
                None,
            ),
            (
                "a listing",
                audit(
                    "$JS.API.CONSUMER.LIST.orders",
                    json!({"consumers": []}),
                    8,
                    "n1",
                ),
                None,
            ),
            (
                "a stream call (streams have advisories of their own)",
                audit(
                    "$JS.API.STREAM.UPDATE.orders",
                    json!({"config": {}}),
                    8,
                    "n1",
                ),
                None,
            ),
            (
                "not JSON",
                b"{\"subject\":\"$JS.API.CONSUMER.".to_vec(),
                None,
            ),
        ];
        for (what, payload, want) in cases {
            assert_eq!(audit_event(1, &payload, Some(&own)), want, "{what}");
        }
    }

    #[test]
    fn denied_subscriptions_are_recognised() {
        assert!(advisories_denied(
            "Permissions Violation for Subscription to \"$JS.EVENT.ADVISORY.API\""
        ));
        assert!(!advisories_denied(
            "Permissions Violation for Subscription to \"orders.>\""
        ));
        assert!(!advisories_denied(
            "Permissions Violation for Publish to \"$JS.EVENT.ADVISORY.API\""
        ));
    }
}
