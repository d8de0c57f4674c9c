//! Consumer spec -> desired server config (pure; some server defaults come from the
//! stream's consumer limits), normalisation, diff, and the pause state.

use std::collections::BTreeMap;

use crate::api::consumer::{AckPolicy, ConsumerSpec, DeliverPolicy, PriorityPolicy, ReplayPolicy};

use super::config::{AssetConfig, ServerVersion, changed_fields, describe, newer_than};
use super::mapping::{InvalidSpec, dur, nonempty};
use super::owner::Owner;
use super::wire::{ConsumerConfig, StreamConfig};

/// The server's default ack wait (30 s).
pub const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;
/// The server's default max outstanding pull requests.
pub const DEFAULT_MAX_WAITING: i64 = 512;
/// The server's default max ack pending.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// The heartbeat the flow-control ack policy requires (the server's `sourceHealthHB`).
pub const FLOW_CONTROL_HEARTBEAT: i64 = 1_000_000_000;
/// The server's default pinned-client timeout (2 min).
pub const DEFAULT_PRIORITY_TIMEOUT: i64 = 120_000_000_000;

/// Parses an RFC 3339 time to a canonical UTC string (so offsets compare equal).
pub fn canonical_time(s: &str) -> Option<String> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.to_string())
}

/// Builds the configuration the server should hold for `spec`, on a stream configured as
/// `stream`, with the server's defaults made explicit and the ownership marker stamped.
pub fn desired(
    spec: &ConsumerSpec,
    stream: &StreamConfig,
    owner: &Owner,
) -> Result<ConsumerConfig, InvalidSpec> {
    let push = spec
        .deliver_subject
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    let ack_policy = spec.ack_policy.unwrap_or(AckPolicy::Explicit);
    let backoff: Vec<i64> = spec
        .backoff
        .iter()
        .map(|b| dur("backoff", &Some(b.clone())))
        .collect::<Result<_, _>>()?;
    // setConsumerConfigDefaults: 30 s for explicit and all acks; with a backoff, the first
    // step (a pedantic request must state it); nothing for none and flow control.
    let mut ack_wait = dur("ackWait", &spec.ack_wait)?;
    if let Some(first) = backoff.first() {
        if ack_wait == 0 {
            ack_wait = *first;
        } else if ack_wait != *first {
            return Err(InvalidSpec(
                "ackWait must equal the first backoff step: the server uses backoff[0] as the ack wait".into(),
            ));
        }
    } else if ack_wait == 0 && matches!(ack_policy, AckPolicy::Explicit | AckPolicy::All) {
        ack_wait = DEFAULT_ACK_WAIT;
    }
    let max_deliver = match spec.max_deliver {
        None | Some(0) => -1,
        Some(n) => n,
    };
    // checkConsumerCfg refuses more backoff steps than deliveries.
    if !backoff.is_empty() && max_deliver != -1 && max_deliver < backoff.len() as i64 {
        return Err(InvalidSpec(
            "maxDeliver must be at least the number of backoff steps".into(),
        ));
    }
    let limits = stream.consumer_limits.clone().unwrap_or_default();
    // setConsumerConfigDefaults: unset takes the stream's consumer limit (whatever the ack
    // policy), else 1000 unless acks are off.
    let max_ack_pending = match spec.max_ack_pending {
        Some(n) if n != 0 => n,
        _ if limits.max_ack_pending > 0 => limits.max_ack_pending,
        _ if ack_policy != AckPolicy::None => DEFAULT_MAX_ACK_PENDING,
        _ => 0,
    };
    let mut inactive_threshold = dur("inactiveThreshold", &spec.inactive_threshold)?;
    if inactive_threshold == 0 {
        inactive_threshold = limits.inactive_threshold;
    }
    // setConsumerConfigDefaults: 512 for pull consumers; a push consumer has none, and
    // the server refuses one given (sent as written, so the object says so).
    let max_waiting = match (push, spec.max_waiting) {
        (_, Some(n)) if n > 0 => n,
        (true, _) => 0,
        (false, _) => DEFAULT_MAX_WAITING,
    };
    let priority_policy = match spec.priority_policy {
        None | Some(PriorityPolicy::Unset) | Some(PriorityPolicy::None) => "",
        Some(PriorityPolicy::Overflow) => "overflow",
        Some(PriorityPolicy::PinnedClient) => "pinned_client",
        Some(PriorityPolicy::Prioritized) => "prioritized",
    };
    let mut priority_timeout = dur("pinnedTtl", &spec.pinned_ttl)?;
    if priority_policy == "pinned_client" && priority_timeout == 0 {
        priority_timeout = DEFAULT_PRIORITY_TIMEOUT;
    }
    // Sent as written (the server stores it so); compared as an instant.
    let opt_start_time = match nonempty(&spec.opt_start_time) {
        None => None,
        Some(t) => {
            canonical_time(&t)
                .ok_or_else(|| InvalidSpec(format!("optStartTime {t:?} is not RFC 3339")))?;
            Some(t)
        }
    };
    let mut metadata: BTreeMap<String, String> = spec.metadata.clone();
    owner.stamp(&mut metadata);
    Ok(ConsumerConfig {
        durable_name: spec.durable_name.clone(),
        name: spec.durable_name.clone(),
        description: nonempty(&spec.description),
        deliver_policy: match spec.deliver_policy.unwrap_or(DeliverPolicy::All) {
            DeliverPolicy::All => "all",
            DeliverPolicy::Last => "last",
            DeliverPolicy::New => "new",
            DeliverPolicy::ByStartSequence => "by_start_sequence",
            DeliverPolicy::ByStartTime => "by_start_time",
            DeliverPolicy::LastPerSubject => "last_per_subject",
        }
        .into(),
        opt_start_seq: spec.opt_start_seq.unwrap_or(0),
        opt_start_time,
        ack_policy: match ack_policy {
            AckPolicy::None => "none",
            AckPolicy::All => "all",
            AckPolicy::Explicit => "explicit",
            AckPolicy::FlowControl => "flow_control",
        }
        .into(),
        ack_wait,
        max_deliver,
        backoff,
        filter_subject: spec.filter_subject.clone().unwrap_or_default(),
        filter_subjects: spec.filter_subjects.clone(),
        replay_policy: match spec.replay_policy.unwrap_or(ReplayPolicy::Instant) {
            ReplayPolicy::Instant => "instant",
            ReplayPolicy::Original => "original",
        }
        .into(),
        rate_limit_bps: spec.rate_limit_bps.unwrap_or(0),
        sample_freq: spec.sample_freq.clone().unwrap_or_default(),
        max_waiting,
        max_ack_pending,
        // The flow-control ack policy needs flow control and a 1 s heartbeat
        // (setConsumerConfigDefaults sets them for non-pedantic requests).
        flow_control: spec.flow_control.unwrap_or(false) || ack_policy == AckPolicy::FlowControl,
        headers_only: spec.headers_only.unwrap_or(false),
        max_batch: spec.max_request_batch.unwrap_or(0),
        max_expires: dur("maxRequestExpires", &spec.max_request_expires)?,
        max_bytes: spec.max_request_max_bytes.unwrap_or(0),
        inactive_threshold,
        num_replicas: spec.replicas.unwrap_or(0),
        mem_storage: spec.mem_storage.unwrap_or(false),
        metadata,
        pause_until: desired_pause(spec),
        priority_groups: spec.priority_groups.clone(),
        priority_policy: priority_policy.into(),
        priority_timeout,
        deliver_subject: spec.deliver_subject.clone().unwrap_or_default(),
        deliver_group: spec.deliver_group.clone().unwrap_or_default(),
        idle_heartbeat: match dur("heartbeatInterval", &spec.heartbeat_interval)? {
            0 if ack_policy == AckPolicy::FlowControl => FLOW_CONTROL_HEARTBEAT,
            h => h,
        },
    })
}

/// The pause the spec asks for: a canonical time in the future, or none.
pub fn desired_pause(spec: &ConsumerSpec) -> Option<String> {
    let t = nonempty(&spec.pause_until)?;
    let ts: jiff::Timestamp = t.parse().ok()?;
    (ts > jiff::Timestamp::now()).then(|| ts.to_string())
}

/// The pause a consumer has now: a canonical time, or none.
pub fn actual_pause(paused: bool, config: &ConsumerConfig) -> Option<String> {
    if !paused {
        return None;
    }
    config.pause_until.as_deref().and_then(canonical_time)
}

/// Normalises a config so equal meaning gives equal values. The pause is not part of the
/// comparison: it is driven through the pause API.
pub fn normalize(mut c: ConsumerConfig) -> ConsumerConfig {
    c.metadata.retain(|k, _| !k.starts_with("_nats."));
    c.pause_until = None;
    if c.name.is_empty() {
        c.name = c.durable_name.clone();
    }
    if c.description.as_deref() == Some("") {
        c.description = None;
    }
    if c.max_deliver == 0 {
        c.max_deliver = -1;
    }
    if c.priority_policy == "none" {
        c.priority_policy.clear();
    }
    if let Some(t) = c.opt_start_time.as_deref().and_then(canonical_time) {
        c.opt_start_time = Some(t);
    }
    if c.filter_subjects.len() == 1 && c.filter_subject.is_empty() {
        c.filter_subject = c.filter_subjects.remove(0);
    }
    c.filter_subjects.sort();
    c
}

impl AssetConfig for ConsumerConfig {
    fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.metadata
    }

    fn normalized(&self) -> Self {
        normalize(self.clone())
    }

    /// The first release whose `ConsumerConfig` carries the field (or value).
    fn introduced_in(field: &str) -> Option<&'static str> {
        Some(match field {
            "filter_subjects" | "metadata" => "2.10",
            "pause_until" | "priority_groups" | "priority_policy" | "priority_timeout" => "2.11",
            // The flow-control ack policy.
            "ack_policy" | "flow_control" | "idle_heartbeat" => "2.14",
            _ => return None,
        })
    }

    /// The settings of the releases after 2.10 (server/consumer.go `ConsumerConfig`,
    /// release by release). A pause asked for is among them: a 2.10 server would create
    /// the consumer and deliver at once, so it is refused before anything is written.
    fn needs_newer(&self, version: ServerVersion) -> Vec<String> {
        let policy = self.priority_policy.as_str();
        newer_than(
            version,
            &[
                (self.pause_until.is_some(), "pause_until", "2.11"),
                (!self.priority_groups.is_empty(), "priority_groups", "2.11"),
                (
                    !policy.is_empty() && policy != "none",
                    "priority_policy",
                    "2.11",
                ),
                (
                    policy == "prioritized",
                    "priority_policy prioritized",
                    "2.12",
                ),
                (
                    self.ack_policy == "flow_control",
                    "ack_policy flow_control",
                    "2.14",
                ),
            ],
        )
    }

    /// The pause is not compared: it is driven through the pause API.
    fn changes(desired: &Self, actual: &Self) -> Vec<String> {
        changed_fields(&normalize(desired.clone()), &normalize(actual.clone()))
    }

    fn removed_by_server(&self) -> Option<String> {
        (self.inactive_threshold > 0).then(|| {
            format!(
                "its inactiveThreshold is {}: the server deletes the consumer whenever no client has used it for that long",
                go_duration(self.inactive_threshold)
            )
        })
    }

    fn immutable(desired: &Self, actual: &Self, changes: &[String]) -> Vec<String> {
        let fixed = |field: &str, a: &dyn std::fmt::Debug, d: &dyn std::fmt::Debug| {
            Some(describe(
                field,
                format!("{a:?}"),
                format!("{d:?}"),
                "JetStream cannot change it on an existing consumer",
            ))
        };
        changes
            .iter()
            .filter_map(|field| match field.as_str() {
                "deliver_policy" => fixed(field, &actual.deliver_policy, &desired.deliver_policy),
                "opt_start_seq" => fixed(field, &actual.opt_start_seq, &desired.opt_start_seq),
                "opt_start_time" => fixed(field, &actual.opt_start_time, &desired.opt_start_time),
                "ack_policy" => fixed(field, &actual.ack_policy, &desired.ack_policy),
                "replay_policy" => fixed(field, &actual.replay_policy, &desired.replay_policy),
                "max_waiting" => fixed(field, &actual.max_waiting, &desired.max_waiting),
                "flow_control" => fixed(field, &actual.flow_control, &desired.flow_control),
                "idle_heartbeat" => fixed(field, &actual.idle_heartbeat, &desired.idle_heartbeat),
                "mem_storage" => fixed(field, &actual.mem_storage, &desired.mem_storage),
                "deliver_subject"
                    if desired.deliver_subject.is_empty() != actual.deliver_subject.is_empty() =>
                {
                    Some(format!(
                        "deliver_subject (the consumer is {} on the server and {} in the spec: a consumer cannot switch between push and pull)",
                        if actual.deliver_subject.is_empty() { "pull" } else { "push" },
                        if desired.deliver_subject.is_empty() { "pull" } else { "push" },
                    ))
                }
                _ => None,
            })
            .collect()
    }
}

/// Nanoseconds as the shortest Go-style duration that is exact in one unit (`1h`,
/// `250ms`, `1500us`).
fn go_duration(nanos: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    UNITS.iter().find(|(n, _)| nanos % n == 0).map_or_else(
        || format!("{nanos}ns"),
        |(n, u)| format!("{}{u}", nanos / n),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        for (nanos, text) in [
            (250_000_000, "250ms"),
            (3_600_000_000_000, "1h"),
            (90_000_000_000, "90s"),
            (1_500_000, "1500us"),
            (7, "7ns"),
        ] {
            assert_eq!(go_duration(nanos), text);
        }
    }
    use crate::jetstream::wire::ConsumerLimits;

    fn spec(yaml: &str) -> ConsumerSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }
    fn owner() -> Owner {
        Owner::new("Consumer", "ns", "c", None)
    }
    fn stream() -> StreamConfig {
        StreamConfig {
            name: "orders".into(),
            ..Default::default()
        }
    }

    #[test]
    fn pull_defaults_match_the_server() {
        let c = desired(
            &spec("streamName: orders\ndurableName: worker\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.ack_policy, "explicit");
        assert_eq!(c.ack_wait, DEFAULT_ACK_WAIT);
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.max_waiting, DEFAULT_MAX_WAITING);
        assert_eq!(c.max_ack_pending, DEFAULT_MAX_ACK_PENDING);
        assert_eq!(c.deliver_policy, "all");
        assert_eq!(c.replay_policy, "instant");
        // What a 2.15 server echoes for that create.
        let echoed: ConsumerConfig = serde_json::from_value(serde_json::json!({
            "durable_name": "worker", "name": "worker", "deliver_policy": "all", "ack_policy": "explicit",
            "ack_wait": 30_000_000_000i64, "max_deliver": -1, "replay_policy": "instant", "max_waiting": 512,
            "max_ack_pending": 1000, "num_replicas": 0,
            "metadata": {"_nats.level": "5", "_nats.ver": "2.15.1", "jetstream.nats.io/owner": "ns/c"}
        }))
        .unwrap();
        assert!(
            ConsumerConfig::changes(&c, &echoed).is_empty(),
            "{:?}",
            ConsumerConfig::changes(&c, &echoed)
        );
    }

    #[test]
    fn push_and_ack_none_defaults() {
        let c = desired(
            &spec("streamName: s\ndurableName: p\ndeliverSubject: out.p\nackPolicy: none\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.max_waiting, 0);
        assert_eq!(c.ack_wait, 0);
        assert_eq!(c.max_ack_pending, 0);
    }

    #[test]
    fn stream_limits_supply_defaults() {
        let mut s = stream();
        s.consumer_limits = Some(ConsumerLimits {
            inactive_threshold: 3_600_000_000_000,
            max_ack_pending: 50,
        });
        let c = desired(&spec("streamName: s\ndurableName: w\n"), &s, &owner()).unwrap();
        assert_eq!(c.max_ack_pending, 50);
        assert_eq!(c.inactive_threshold, 3_600_000_000_000);
    }

    #[test]
    fn server_rules_for_acks_off_flow_control_and_backoff() {
        // Acks off on a stream with consumer limits: the limit, as the server sets it.
        let mut s = stream();
        s.consumer_limits = Some(ConsumerLimits {
            inactive_threshold: 0,
            max_ack_pending: 20,
        });
        let c = desired(
            &spec("streamName: s\ndurableName: p\nackPolicy: none\n"),
            &s,
            &owner(),
        )
        .unwrap();
        assert_eq!(c.max_ack_pending, 20);
        // Flow-control acks: flow control on, a 1 s heartbeat, no ack wait.
        let c = desired(
            &spec(
                "streamName: s\ndurableName: f\ndeliverSubject: out.f\nackPolicy: flow_control\n",
            ),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert!(c.flow_control);
        assert_eq!(c.idle_heartbeat, FLOW_CONTROL_HEARTBEAT);
        assert_eq!(c.ack_wait, 0);
        assert_eq!(c.max_ack_pending, DEFAULT_MAX_ACK_PENDING);
        // As many backoff steps as deliveries is fine; more is refused.
        assert!(
            desired(
                &spec("streamName: s\ndurableName: w\nbackoff: [1s, 5s, 30s]\nmaxDeliver: 3\n"),
                &stream(),
                &owner()
            )
            .is_ok()
        );
        assert!(
            desired(
                &spec("streamName: s\ndurableName: w\nbackoff: [1s, 5s, 30s]\nmaxDeliver: 2\n"),
                &stream(),
                &owner()
            )
            .is_err()
        );
    }

    #[test]
    fn backoff_sets_the_ack_wait() {
        let c = desired(
            &spec("streamName: s\ndurableName: w\nbackoff: [1s, 5s]\nmaxDeliver: 5\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.ack_wait, 1_000_000_000);
        assert!(
            desired(
                &spec("streamName: s\ndurableName: w\nbackoff: [1s]\nackWait: 5s\n"),
                &stream(),
                &owner()
            )
            .is_err()
        );
        assert!(
            desired(
                &spec("streamName: s\ndurableName: w\nbackoff: [1s, 2s]\nmaxDeliver: 1\n"),
                &stream(),
                &owner()
            )
            .is_err()
        );
    }

    #[test]
    fn nack_defaults_are_honoured_as_written() {
        // NACK's schema materialised ackWait: 1ns and ackPolicy: none into old objects;
        // they mean what they say, so a migrated consumer keeps its live config.
        let c = desired(
            &spec("streamName: s\ndurableName: w\nackPolicy: none\nackWait: 1ns\ndeliverPolicy: all\nreplayPolicy: instant\npauseUntil: ''\npriorityPolicy: ''\npinnedTtl: ''\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.ack_policy, "none");
        assert_eq!(c.ack_wait, 1, "NACK's 1ns is what the live consumer has");
        assert_eq!(c.priority_policy, "");
        assert_eq!(c.pause_until, None);
        let c = desired(
            &spec("streamName: s\ndurableName: w\nackWait: 1ns\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.ack_wait, 1);
    }

    #[test]
    fn pinned_client_gets_its_default_timeout() {
        let c = desired(
            &spec("streamName: s\ndurableName: w\npriorityPolicy: pinned_client\npriorityGroups: [g]\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.priority_timeout, DEFAULT_PRIORITY_TIMEOUT);
    }

    #[test]
    fn times_compare_in_utc_and_pause_is_separate() {
        let c = desired(
            &spec("streamName: s\ndurableName: w\ndeliverPolicy: byStartTime\noptStartTime: '2026-01-02T15:04:05+02:00'\npauseUntil: '2999-01-01T00:00:00Z'\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        let mut a = c.clone();
        a.opt_start_time = Some("2026-01-02T13:04:05Z".into());
        a.pause_until = None;
        assert!(ConsumerConfig::changes(&c, &a).is_empty());
        assert_eq!(c.pause_until.as_deref(), Some("2999-01-01T00:00:00Z"));
        assert_eq!(actual_pause(true, &c), Some("2999-01-01T00:00:00Z".into()));
        assert_eq!(actual_pause(false, &c), None);
        // A pause in the past means not paused.
        let past = desired(
            &spec("streamName: s\ndurableName: w\npauseUntil: '2001-01-01T00:00:00Z'\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        assert_eq!(past.pause_until, None);
    }

    #[test]
    fn diff_sees_out_of_band_changes() {
        let c = desired(
            &spec("streamName: s\ndurableName: w\nmaxAckPending: 10\n"),
            &stream(),
            &owner(),
        )
        .unwrap();
        let mut a = c.clone();
        a.max_ack_pending = 99;
        a.headers_only = true;
        assert_eq!(
            ConsumerConfig::changes(&c, &a),
            vec!["headers_only", "max_ack_pending"]
        );
    }
}
