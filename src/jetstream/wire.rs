//! JetStream API wire types, as the server speaks them (snake_case JSON, durations in
//! nanoseconds). They are our own rather than async-nats' so that every field, the
//! `pedantic` flag and lenient parsing of newer servers' answers are under our control.
//!
//! Serialisation leaves out every field at its zero value, so a server that predates a
//! field never sees it unless a spec uses it (strict servers refuse unknown fields).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A stream's configuration (`StreamConfig` on the server).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// `limits`, `interest` or `workqueue`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retention: String,
    /// Max consumers (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_consumers: i64,
    /// Max messages (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_msgs: i64,
    /// Max bytes (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    /// Max age in nanoseconds (0 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_age: i64,
    /// Max messages per subject (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_msgs_per_subject: i64,
    /// Max message size (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_msg_size: i64,
    /// `old` or `new`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub discard: String,
    /// `file` or `memory`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_replicas: i64,
    /// No acks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    /// Duplicate window in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate_window: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Source>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sealed: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny_delete: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny_purge: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_rollup_hdrs: bool,
    /// `none` or `s2`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compression: String,
    /// First sequence (create only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<Transform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,
    /// Allow direct get.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_direct: bool,
    /// Mirror direct get.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mirror_direct: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_limits: Option<ConsumerLimits>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_ttl: bool,
    /// Subject delete marker TTL in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subject_delete_marker_ttl: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    /// Atomic batch publish.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    /// Fast batch publish.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    /// `async` (absent means default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_mode: Option<String>,
}

/// Placement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Mirror or source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Origin stream.
    pub name: String,
    /// Start sequence.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub opt_start_seq: i64,
    /// Start time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<Transform>,
    /// External account or domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    /// Durable sourcing consumer (2.14+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<SourceConsumer>,
}

/// External API and delivery prefixes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct External {
    /// API prefix.
    #[serde(default)]
    pub api: String,
    /// Delivery prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver: String,
}

/// Durable sourcing consumer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceConsumer {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
}

/// Subject transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// Source.
    #[serde(default)]
    pub src: String,
    /// Destination.
    #[serde(default)]
    pub dest: String,
}

/// Republish.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Republish {
    /// Source.
    #[serde(default)]
    pub src: String,
    /// Destination.
    #[serde(default)]
    pub dest: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
}

/// Consumer limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerLimits {
    /// Inactive threshold in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
}

impl ConsumerLimits {
    /// True when both limits are unset.
    pub fn is_empty(&self) -> bool {
        self.inactive_threshold == 0 && self.max_ack_pending == 0
    }
}

/// Cluster information of an asset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Cluster name.
    #[serde(default)]
    pub name: Option<String>,
    /// Leader server.
    #[serde(default)]
    pub leader: Option<String>,
}

/// `STREAM.INFO`, `STREAM.CREATE` and `STREAM.UPDATE` responses (and list entries).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stored configuration.
    pub config: StreamConfig,
    /// Cluster details.
    #[serde(default)]
    pub cluster: Option<ClusterInfo>,
    /// Message counts (for display only; never written to status).
    #[serde(default)]
    pub state: Option<StreamState>,
}

/// A stream's state, reduced to what the `streams` command shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    /// Messages stored.
    #[serde(default)]
    pub messages: u64,
    /// Bytes stored.
    #[serde(default)]
    pub bytes: u64,
    /// Consumers the stream has (the drift scan lists a stream's consumers when fewer
    /// than the managed ones).
    #[serde(default)]
    pub consumer_count: usize,
}

impl StreamInfo {
    /// The cluster leader and the replica count, as the server reports them.
    pub fn placement_facts(&self) -> (Option<String>, i64) {
        // A standalone server names itself leader; only a cluster's leader is a fact.
        let leader = self
            .cluster
            .as_ref()
            .filter(|c| c.name.is_some())
            .and_then(|c| c.leader.clone());
        let replicas = self.config.num_replicas.max(1);
        (leader, replicas)
    }
}

/// A `STREAM.LIST` page.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamListPage {
    /// Total streams.
    #[serde(default)]
    pub total: usize,
    /// Streams in this page.
    #[serde(default)]
    pub streams: Vec<StreamInfo>,
    /// Streams the server could not report (offline or missing): not proof of deletion.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// `STREAM.DELETE` response.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SuccessResponse {
    /// Whether it worked.
    #[serde(default)]
    pub success: bool,
}

/// Account info (`$JS.API.INFO`): the operator only checks that it answers.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AccountInfo {}

/// A stream create or update request: the config plus `pedantic`.
#[derive(Clone, Debug, Serialize)]
pub struct StreamRequest<'a> {
    #[serde(flatten)]
    pub config: &'a StreamConfig,
    /// Refuse instead of silently adjusting the config (2.11+).
    #[serde(skip_serializing_if = "is_false")]
    pub pedantic: bool,
}

/// A consumer's configuration (`ConsumerConfig` on the server).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub durable_name: String,
    /// Name (equals the durable name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `all`, `last`, `new`, `by_start_sequence`, `by_start_time`, `last_per_subject`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_policy: String,
    /// Start sequence.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub opt_start_seq: i64,
    /// Start time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// `none`, `all`, `explicit`, `flow_control`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ack_policy: String,
    /// Ack wait in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ack_wait: i64,
    /// Max deliveries (-1 unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_deliver: i64,
    /// Backoff in nanoseconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// `instant` or `original`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replay_policy: String,
    /// Rate limit (bits per second).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limit_bps: i64,
    /// Sample frequency.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
    /// Max outstanding pull requests.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    /// Max unacknowledged messages.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
    /// Max pull batch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    /// Max pull expiry in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_expires: i64,
    /// Max pull bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    /// Inactive threshold in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    /// Replicas (0: the stream's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_replicas: i64,
    /// Memory storage.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Paused until (managed through the pause API, see the consumer reconciler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,
    /// `none`, `overflow`, `pinned_client`, `prioritized`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub priority_policy: String,
    /// Pinned client timeout in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority_timeout: i64,
    /// Push delivery subject.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
    /// Push queue group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deliver_group: String,
    /// Idle heartbeat in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_heartbeat: i64,
}

/// `CONSUMER.INFO` / `CONSUMER.CREATE` responses (and list entries).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    #[serde(default)]
    pub stream_name: String,
    #[serde(default)]
    pub name: String,
    /// The stored configuration.
    #[serde(default)]
    pub config: ConsumerConfig,
    /// Whether the consumer is paused.
    #[serde(default)]
    pub paused: bool,
    /// Cluster details.
    #[serde(default)]
    pub cluster: Option<ClusterInfo>,
}

/// A consumer create or update request.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerRequest<'a> {
    pub stream_name: &'a str,
    pub config: &'a ConsumerConfig,
    /// `create` or `update`.
    pub action: &'static str,
    /// Refuse instead of silently adjusting the config (2.11+).
    #[serde(skip_serializing_if = "is_false")]
    pub pedantic: bool,
}

/// A `CONSUMER.LIST` page.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ConsumerListPage {
    /// Total consumers.
    #[serde(default)]
    pub total: usize,
    /// Consumers in this page.
    #[serde(default)]
    pub consumers: Vec<ConsumerInfo>,
    /// Consumers the server could not report.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// `CONSUMER.PAUSE` response.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PauseResponse {
    /// Paused now.
    #[serde(default)]
    pub paused: bool,
}
