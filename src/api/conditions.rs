//! Condition types and reasons, the condition shape the operator writes, and the rules for
//! updating a condition list without churning `lastTransitionTime`.
//!
//! The contract (README, "Status"): `Ready` is always present, first; `Reconciling` and
//! `Stalled` only while True (kstatus "abnormal-true" conditions); a healthy `Ready=True`
//! carries one of Argo CD's healthy reasons (`Created`, `Updated`, `Noop`, `SkipUpdate`);
//! every `lastTransitionTime` has fractional seconds.

use serde::{Deserialize, Serialize};

/// True when the asset matches this generation's spec.
pub const READY: &str = "Ready";
/// True while work remains (creating, updating, waiting, retrying).
pub const RECONCILING: &str = "Reconciling";
/// True when retrying cannot help until the spec, a referenced object or the server changes.
pub const STALLED: &str = "Stalled";

/// The condition types the operator owns (others on an object are left alone).
pub const OWNED: [&str; 3] = [READY, RECONCILING, STALLED];

/// A point in time, written as RFC 3339 in UTC with microseconds, always
/// (`2026-01-02T03:04:05.123456Z`): Argo CD's health checks for this API parse
/// `lastTransitionTime` with a pattern that requires fractional seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub jiff::Timestamp);

impl Time {
    /// Now, to the microsecond: what is written is exactly what is read back.
    pub fn now() -> Self {
        let now = jiff::Timestamp::now();
        Time(jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now))
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let utc = self.0.to_zoned(jiff::tz::TimeZone::UTC);
        let micros = self.0.subsec_microsecond();
        s.serialize_str(&format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            utc.year(),
            utc.month(),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        ))
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<jiff::Timestamp>()
            .map(Time)
            .map_err(serde::de::Error::custom)
    }
}

/// A standard Kubernetes condition (`metav1.Condition`), as the operator writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable details.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed.
    pub last_transition_time: Time,
}

/// Reasons, CamelCase, used in conditions and events.
pub mod reason {
    /// Ready=True, and this reconcile changed nothing (Argo CD's healthy `Noop`).
    pub const NOOP: &str = "Noop";
    /// Ready=True although the asset differs, because the spec says `preventUpdate`
    /// (Argo CD's healthy `SkipUpdate`).
    pub const SKIP_UPDATE: &str = "SkipUpdate";
    /// Work is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The asset was created (also Ready's reason right after).
    pub const CREATED: &str = "Created";
    /// The asset was updated to match the spec (also Ready's reason right after).
    pub const UPDATED: &str = "Updated";
    /// The asset was deleted.
    pub const DELETED: &str = "Deleted";
    /// An existing unowned asset was taken over.
    pub const ADOPTED: &str = "Adopted";
    /// The asset differed from the spec (changed or deleted behind the operator's back)
    /// and was put back.
    pub const DRIFT_REPAIRED: &str = "DriftRepaired";
    /// The asset was deleted again soon after each of the operator's last creates; it is
    /// recreated with a wait in between, like a crash-looping container is restarted.
    pub const RECREATE_BACKOFF: &str = "RecreateBackOff";
    /// The spec cannot be turned into a valid configuration.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// JetStream refused the change and retrying will not help.
    pub const NOT_SUPPORTED: &str = "NotSupported";
    /// The asset is owned by another object.
    pub const RESOURCE_CONFLICT: &str = "ResourceConflict";
    /// The connection was refused permission.
    pub const FORBIDDEN: &str = "Forbidden";
    /// The server rejected the credentials.
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// Deleting is blocked (for example by dependents).
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
    /// The NATS server cannot be reached.
    pub const CONNECTION_FAILED: &str = "ConnectionFailed";
    /// JetStream is not available (disabled, no leader, no responders).
    pub const JETSTREAM_UNAVAILABLE: &str = "JetStreamUnavailable";
    /// A JetStream API request timed out.
    pub const TIMEOUT: &str = "Timeout";
    /// A JetStream API request failed for a reason that may pass.
    pub const API_ERROR: &str = "JetStreamApiError";
    /// The Kubernetes API failed.
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// A Consumer waits for its stream to exist.
    pub const WAITING_FOR_STREAM: &str = "WaitingForStream";
    /// The asset differs from the spec, and the operator is read-only.
    pub const READ_ONLY: &str = "ReadOnly";
    /// The asset differs from the spec, and the object has `preventUpdate`.
    pub const UPDATE_PREVENTED: &str = "UpdatePrevented";
    /// Reconciling is paused by annotation.
    pub const PAUSED: &str = "Paused";
    /// The connection settings cannot be resolved (missing Account or Secret).
    pub const CONNECTION_UNRESOLVED: &str = "ConnectionUnresolved";
    /// The finalizer was released without deleting the asset.
    pub const ORPHANED: &str = "Orphaned";
}

/// One desired condition, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// True / False / Unknown.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Cond {
    /// A condition with status True.
    pub fn yes(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "True",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    /// A condition with status False.
    pub fn no(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "False",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    /// A condition with status Unknown.
    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: "Unknown",
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Kubernetes limits condition messages to 32 KiB; keep ours far below.
const MAX_MESSAGE: usize = 4096;

fn clip(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// Builds the new condition list from the desired conditions, keeping the previous
/// `lastTransitionTime` of every condition whose status did not flip. Conditions the
/// operator owns ([`OWNED`]) that are not desired are removed; other types already present
/// are kept unchanged, after the operator's.
pub fn merge(
    previous: &[Condition],
    desired: &[Cond],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::with_capacity(desired.len());
    for d in desired {
        let old = previous.iter().find(|c| c.type_ == d.type_);
        let last_transition_time = match old {
            Some(o) if o.status == d.status => o.last_transition_time,
            _ => *now,
        };
        out.push(Condition {
            type_: d.type_.to_string(),
            status: d.status.to_string(),
            reason: d.reason.clone(),
            message: clip(&d.message),
            observed_generation: generation,
            last_transition_time,
        });
    }
    for p in previous {
        if !OWNED.contains(&p.type_.as_str()) && !desired.iter().any(|d| d.type_ == p.type_) {
            out.push(p.clone());
        }
    }
    out
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the Ready condition is True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    find(conditions, READY).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_kept_unless_status_flips() {
        let t0 = t("2026-01-01T00:00:00Z");
        let t1 = t("2026-01-01T01:00:00Z");
        let first = merge(
            &[],
            &[Cond::unknown(READY, "Progressing", "creating")],
            Some(1),
            &t0,
        );
        assert_eq!(first[0].last_transition_time, t0);
        // Same status, new reason: time kept.
        let second = merge(
            &first,
            &[Cond::unknown(READY, "WaitingForStream", "waiting")],
            Some(1),
            &t1,
        );
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].reason, "WaitingForStream");
        // Status flips: time moves.
        let third = merge(&second, &[Cond::yes(READY, "Created", "ok")], Some(2), &t1);
        assert_eq!(third[0].last_transition_time, t1);
        assert_eq!(third[0].observed_generation, Some(2));
    }

    #[test]
    fn owned_types_not_desired_go_foreign_ones_stay() {
        let t0 = t("2026-01-01T00:00:00Z");
        let cond = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: t0,
        };
        let previous = [
            cond(READY, "False"),
            cond(RECONCILING, "False"),
            cond(STALLED, "True"),
            cond("Custom", "True"),
        ];
        let long = "x".repeat(10_000);
        let out = merge(&previous, &[Cond::yes(READY, "Noop", long)], None, &t0);
        let types: Vec<&str> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, "Custom"]);
        assert!(out[0].message.len() < 5000);
    }

    #[test]
    fn times_have_fractional_seconds() {
        let json = |s: &str| serde_json::to_string(&t(s)).unwrap();
        assert_eq!(
            json("2026-01-02T03:04:05Z"),
            "\"2026-01-02T03:04:05.000000Z\""
        );
        assert_eq!(
            json("2026-01-02T03:04:05.1234567+01:00"),
            "\"2026-01-02T02:04:05.123456Z\""
        );
        let back: Time = serde_json::from_str("\"2026-01-02T03:04:05Z\"").unwrap();
        assert_eq!(back, t("2026-01-02T03:04:05Z"));
    }
}
