//! The Consumer kind: a durable JetStream consumer, field for field as NACK's
//! `jetstream.nats.io/v1beta2` (plus `ackPolicy: flow_control`).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    ASSET_NAME_PATTERN, AssetStatus, CommonSpec, DURATION_PATTERN, RESERVED_METADATA_MESSAGE,
    RESERVED_METADATA_RULE, RFC3339_PATTERN, SUBJECT_PATTERN,
};

/// A durable JetStream consumer. Every field left out means the server's default (ack
/// policy explicit, ack wait 30s, deliver all); a consumer is updated in place, never
/// deleted and recreated to apply a change.
// printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "jetstream.nats.io",
    version = "v1beta2",
    kind = "Consumer",
    plural = "consumers",
    singular = "consumer",
    namespaced,
    status = "AssetStatus",
    category = "nats",
    category = "jetstream",
    doc = "A NATS JetStream durable consumer managed by jetstream-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the consumer matches the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the consumer is or is not ready"
    ),
    printcolumn(
        name = "Stream",
        type_ = "string",
        json_path = ".spec.streamName",
        description = "Stream the consumer reads"
    ),
    printcolumn(
        name = "Consumer",
        type_ = "string",
        json_path = ".spec.durableName",
        description = "Durable name of the consumer"
    ),
    printcolumn(
        name = "Ack Policy",
        type_ = "string",
        json_path = ".spec.ackPolicy",
        description = "Acknowledgement policy (empty: explicit)"
    ),
    printcolumn(
        name = "Filter",
        type_ = "string",
        json_path = ".spec.filterSubject",
        description = "Filter subject",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new("(has(self.deliverPolicy) ? self.deliverPolicy : 'all') == (has(oldSelf.deliverPolicy) ? oldSelf.deliverPolicy : 'all')").message("deliverPolicy cannot be changed after creation"),
    validation = Rule::new("(has(self.optStartSeq) ? self.optStartSeq : 0) == (has(oldSelf.optStartSeq) ? oldSelf.optStartSeq : 0)").message("optStartSeq cannot be changed after creation"),
    validation = Rule::new("(has(self.optStartTime) ? self.optStartTime : '') == (has(oldSelf.optStartTime) ? oldSelf.optStartTime : '')").message("optStartTime cannot be changed after creation"),
    validation = Rule::new("(has(self.ackPolicy) ? self.ackPolicy : 'explicit') == (has(oldSelf.ackPolicy) ? oldSelf.ackPolicy : 'explicit')").message("ackPolicy cannot be changed after creation"),
    validation = Rule::new("(has(self.replayPolicy) ? self.replayPolicy : 'instant') == (has(oldSelf.replayPolicy) ? oldSelf.replayPolicy : 'instant')").message("replayPolicy cannot be changed after creation"),
    validation = Rule::new("(has(self.deliverSubject) && self.deliverSubject != '') == (has(oldSelf.deliverSubject) && oldSelf.deliverSubject != '')").message("a consumer cannot switch between push (deliverSubject set) and pull after creation"),
    validation = Rule::new("(has(self.heartbeatInterval) ? self.heartbeatInterval : '') == (has(oldSelf.heartbeatInterval) ? oldSelf.heartbeatInterval : '')").message("heartbeatInterval cannot be changed after creation"),
    validation = Rule::new("(has(self.flowControl) && self.flowControl) == (has(oldSelf.flowControl) && oldSelf.flowControl)").message("flowControl cannot be changed after creation"),
    validation = Rule::new("(has(self.maxWaiting) ? self.maxWaiting : 0) == (has(oldSelf.maxWaiting) ? oldSelf.maxWaiting : 0)").message("maxWaiting cannot be changed after creation"),
    validation = Rule::new("(has(self.memStorage) && self.memStorage) == (has(oldSelf.memStorage) && oldSelf.memStorage)").message("memStorage cannot be changed after creation"),
    validation = Rule::new("!(has(self.filterSubject) && self.filterSubject != '' && has(self.filterSubjects) && size(self.filterSubjects) > 0)").message("set filterSubject or filterSubjects, not both"),
    validation = Rule::new("!has(self.optStartSeq) || self.optStartSeq == 0 || (has(self.deliverPolicy) && self.deliverPolicy == 'byStartSequence')").message("optStartSeq is only used with deliverPolicy: byStartSequence"),
    validation = Rule::new("!(has(self.deliverPolicy) && self.deliverPolicy == 'byStartSequence') || (has(self.optStartSeq) && self.optStartSeq > 0)").message("deliverPolicy: byStartSequence needs optStartSeq"),
    validation = Rule::new("!has(self.optStartTime) || self.optStartTime == '' || (has(self.deliverPolicy) && self.deliverPolicy == 'byStartTime')").message("optStartTime is only used with deliverPolicy: byStartTime"),
    validation = Rule::new("!(has(self.deliverPolicy) && self.deliverPolicy == 'byStartTime') || (has(self.optStartTime) && self.optStartTime != '')").message("deliverPolicy: byStartTime needs optStartTime"),
    validation = Rule::new("!(has(self.deliverPolicy) && self.deliverPolicy == 'lastPerSubject') || (has(self.filterSubject) && self.filterSubject != '') || (has(self.filterSubjects) && size(self.filterSubjects) > 0)").message("deliverPolicy: lastPerSubject needs filterSubject or filterSubjects"),
    validation = Rule::new("!has(self.priorityPolicy) || self.priorityPolicy == '' || self.priorityPolicy == 'none' || (has(self.priorityGroups) && size(self.priorityGroups) > 0)").message("priorityPolicy needs priorityGroups"),
    validation = Rule::new("!has(self.priorityGroups) || size(self.priorityGroups) == 0 || (has(self.priorityPolicy) && self.priorityPolicy != '' && self.priorityPolicy != 'none')").message("priorityGroups need a priorityPolicy (overflow, pinned_client or prioritized)"),
    validation = Rule::new("!has(self.pinnedTtl) || self.pinnedTtl == '' || (has(self.priorityPolicy) && self.priorityPolicy == 'pinned_client')").message("pinnedTtl is only used with priorityPolicy: pinned_client"),
    validation = Rule::new("!has(self.priorityGroups) || size(self.priorityGroups) == 0 || !has(self.deliverSubject) || self.deliverSubject == ''").message("priority groups are for pull consumers (no deliverSubject)"),
    validation = Rule::new("!(has(self.ackPolicy) && self.ackPolicy == 'flow_control') || (has(self.deliverSubject) && self.deliverSubject != '')").message("ackPolicy: flow_control is for push consumers (set deliverSubject)"),
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    /// Name of the stream the consumer reads (the stream's NATS name, `spec.name` of its
    /// Stream object). Immutable.
    #[schemars(length(min = 1, max = 255), pattern(ASSET_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("streamName is immutable"))]
    pub stream_name: String,

    /// Durable name of the consumer in JetStream. Immutable.
    #[schemars(length(min = 1, max = 255), pattern(ASSET_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("durableName is immutable: it identifies the consumer in JetStream"))]
    pub durable_name: String,

    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Where delivery starts: `all` (default), `last`, `new`, `byStartSequence`,
    /// `byStartTime` or `lastPerSubject`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_policy: Option<DeliverPolicy>,

    /// First stream sequence to deliver, with `deliverPolicy: byStartSequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub opt_start_seq: Option<i64>,

    /// First time to deliver from (RFC 3339), with `deliverPolicy: byStartTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(RFC3339_PATTERN))]
    pub opt_start_time: Option<String>,

    /// Subject to push messages to. Set: a push consumer; omitted: a pull consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,

    /// Queue group of a push consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,

    /// Acknowledgement policy: `explicit` (default), `all`, `none`, or `flow_control`
    /// (push, server 2.14+). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_policy: Option<AckPolicy>,

    /// How long the server waits for an acknowledgement before redelivering, as a Go
    /// duration. Default 30s (or the first backoff step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub ack_wait: Option<String>,

    /// Maximum deliveries of a message; -1 for unlimited (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_deliver: Option<i64>,

    /// Redelivery delays, as Go durations; needs maxDeliver greater than their number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(DURATION_PATTERN)))]
    pub backoff: Vec<String>,

    /// Deliver only messages on this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SUBJECT_PATTERN))]
    pub filter_subject: Option<String>,

    /// Deliver only messages on these subjects (server 2.10+).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1), pattern(SUBJECT_PATTERN)))]
    pub filter_subjects: Vec<String>,

    /// `instant` (default) or `original` (at the rate they were stored). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_policy: Option<ReplayPolicy>,

    /// Percentage of acknowledgements to sample for observability (`"50"` or `"50%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^$|^([0-9]|[1-9][0-9]|100)%?$"))]
    pub sample_freq: Option<String>,

    /// Maximum outstanding pull requests (pull consumers; server default 512). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_waiting: Option<i64>,

    /// Delivery rate limit in bits per second (push consumers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate_limit_bps: Option<i64>,

    /// Maximum messages delivered but not acknowledged (server default 1000); -1 for
    /// unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_ack_pending: Option<i64>,

    /// Flow control for push consumers (needs heartbeatInterval). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_control: Option<bool>,

    /// Deliver only headers, not bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_only: Option<bool>,

    /// Idle heartbeat interval of push consumers, as a Go duration. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub heartbeat_interval: Option<String>,

    /// Largest batch a pull request may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_request_batch: Option<i64>,

    /// Longest expiry a pull request may ask for, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_request_expires: Option<String>,

    /// Largest byte size a pull request may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_request_max_bytes: Option<i64>,

    /// Delete the consumer after this long without activity, as a Go duration. Note that
    /// this also applies to durable consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub inactive_threshold: Option<String>,

    /// Pause delivery until this time (RFC 3339); empty or omitted resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(RFC3339_PATTERN))]
    pub pause_until: Option<String>,

    /// Priority policy of pull consumers with priority groups: `none`, `overflow`,
    /// `pinned_client` or `prioritized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_policy: Option<PriorityPolicy>,

    /// How long a pinned client stays pinned without pulling, with
    /// `priorityPolicy: pinned_client` (server default 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub pinned_ttl: Option<String>,

    /// Priority groups (pull consumers; one group is supported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,

    /// Number of replicas; 0 or omitted: the stream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas: Option<i64>,

    /// Keep the consumer's state in memory only. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_storage: Option<bool>,

    /// User metadata stored on the consumer. Keys starting with `_nats.` or
    /// `jetstream.nats.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = Rule::new(RESERVED_METADATA_RULE).message(RESERVED_METADATA_MESSAGE))]
    pub metadata: BTreeMap<String, String>,

    /// Connection, ownership and deletion settings.
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// Deliver policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum DeliverPolicy {
    /// From the first message.
    #[serde(rename = "all")]
    All,
    /// From the last message.
    #[serde(rename = "last")]
    Last,
    /// Only new messages.
    #[serde(rename = "new")]
    New,
    /// From optStartSeq.
    #[serde(rename = "byStartSequence")]
    ByStartSequence,
    /// From optStartTime.
    #[serde(rename = "byStartTime")]
    ByStartTime,
    /// The last message of each subject.
    #[serde(rename = "lastPerSubject")]
    LastPerSubject,
}

/// Acknowledgement policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AckPolicy {
    /// No acknowledgements.
    #[serde(rename = "none")]
    None,
    /// Acknowledging a message acknowledges all before it.
    #[serde(rename = "all")]
    All,
    /// Every message is acknowledged.
    #[serde(rename = "explicit")]
    Explicit,
    /// Flow-control acknowledgements (push, server 2.14+).
    #[serde(rename = "flow_control")]
    FlowControl,
}

/// Replay policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ReplayPolicy {
    /// As fast as possible.
    #[serde(rename = "instant")]
    Instant,
    /// At the original rate.
    #[serde(rename = "original")]
    Original,
}

/// Priority policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PriorityPolicy {
    /// Not set (NACK's schema default).
    #[serde(rename = "")]
    Unset,
    /// No priority handling.
    #[serde(rename = "none")]
    None,
    /// Overflow to other clients past a threshold.
    #[serde(rename = "overflow")]
    Overflow,
    /// Pin one client.
    #[serde(rename = "pinned_client")]
    PinnedClient,
    /// Prioritised delivery (server 2.12+).
    #[serde(rename = "prioritized")]
    Prioritized,
}

impl super::ApiKind for Consumer {
    const KIND: &'static str = "Consumer";
    const FINALIZER: &'static str = "consumer.nats.io/finalizer";
    const LEGACY_VERSIONS: &'static [&'static str] = &["v1beta1"];
}
