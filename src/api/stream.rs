//! The Stream kind: a JetStream stream, field for field as NACK's `jetstream.nats.io/v1beta2`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    ASSET_NAME_PATTERN, AssetStatus, CommonSpec, DURATION_PATTERN, RESERVED_METADATA_MESSAGE,
    RESERVED_METADATA_RULE, RFC3339_PATTERN, STORAGE_IMMUTABLE_RULE, SUBJECT_PATTERN,
};

/// A JetStream stream. Every field left out means the server's default; removing a field
/// from the spec returns it to that default on the server.
// printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "jetstream.nats.io",
    version = "v1beta2",
    kind = "Stream",
    plural = "streams",
    singular = "stream",
    namespaced,
    status = "AssetStatus",
    category = "nats",
    category = "jetstream",
    doc = "A NATS JetStream stream managed by jetstream-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the stream matches the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the stream is or is not ready"
    ),
    printcolumn(
        name = "Stream",
        type_ = "string",
        json_path = ".spec.name",
        description = "Name of the stream in JetStream"
    ),
    printcolumn(
        name = "Subjects",
        type_ = "string",
        json_path = ".status.subjects",
        description = "Subjects the stream stores"
    ),
    printcolumn(
        name = "Storage",
        type_ = "string",
        json_path = ".spec.storage",
        description = "Storage backend",
        priority = 1
    ),
    printcolumn(
        name = "Retention",
        type_ = "string",
        json_path = ".spec.retention",
        description = "Retention policy",
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
    validation = Rule::new(STORAGE_IMMUTABLE_RULE).message("storage is immutable: JetStream cannot move a stream between file and memory storage; create a new stream instead"),
    validation = Rule::new("((has(self.retention) ? self.retention : 'limits') == 'workqueue') == ((has(oldSelf.retention) ? oldSelf.retention : 'limits') == 'workqueue')").message("retention cannot change to or from workqueue: JetStream refuses it; create a new stream instead"),
    validation = Rule::new("!has(self.mirror) || (has(oldSelf.mirror) && self.mirror == oldSelf.mirror)").message("mirror cannot be added or changed after creation (it can only be removed, which promotes the mirror to a normal stream)"),
    validation = Rule::new("(has(self.allowMsgCounter) && self.allowMsgCounter) == (has(oldSelf.allowMsgCounter) && oldSelf.allowMsgCounter)").message("allowMsgCounter cannot be changed after creation"),
    validation = Rule::new("(has(self.persistMode) && self.persistMode == 'async') == (has(oldSelf.persistMode) && oldSelf.persistMode == 'async')").message("persistMode cannot be changed after creation"),
    validation = Rule::new("!(has(oldSelf.sealed) && oldSelf.sealed) || (has(self.sealed) && self.sealed)").message("a sealed stream cannot be unsealed"),
    validation = Rule::new("!(has(oldSelf.denyDelete) && oldSelf.denyDelete) || (has(self.denyDelete) && self.denyDelete)").message("denyDelete cannot be turned off once set"),
    validation = Rule::new("!(has(oldSelf.denyPurge) && oldSelf.denyPurge) || (has(self.denyPurge) && self.denyPurge)").message("denyPurge cannot be turned off once set"),
    validation = Rule::new("!(has(oldSelf.allowMsgTtl) && oldSelf.allowMsgTtl) || (has(self.allowMsgTtl) && self.allowMsgTtl)").message("allowMsgTtl cannot be turned off once set"),
    validation = Rule::new("!(has(oldSelf.allowMsgSchedules) && oldSelf.allowMsgSchedules) || (has(self.allowMsgSchedules) && self.allowMsgSchedules)").message("allowMsgSchedules cannot be turned off once set"),
    validation = Rule::new("!has(self.mirror) || !has(self.subjects) || size(self.subjects) == 0").message("a mirror cannot have subjects"),
    validation = Rule::new("!has(self.mirror) || !has(self.sources) || size(self.sources) == 0").message("a stream cannot have both a mirror and sources"),
    validation = Rule::new("!(has(self.denyPurge) && self.denyPurge && has(self.allowRollup) && self.allowRollup)").message("denyPurge and allowRollup cannot both be true"),
    validation = Rule::new("!(has(self.discardPerSubject) && self.discardPerSubject) || (has(self.discard) && self.discard == 'new' && has(self.maxMsgsPerSubject) && self.maxMsgsPerSubject > 0)").message("discardPerSubject requires discard: new and maxMsgsPerSubject > 0"),
)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// Name of the stream in JetStream. Immutable: renaming would create a second stream.
    #[schemars(length(min = 1, max = 255), pattern(ASSET_NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("name is immutable: it identifies the stream in JetStream"))]
    pub name: String,

    /// Human-readable description of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Subjects the stream stores, wildcards allowed. Omitted: the stream's name (unless it
    /// is a mirror or has sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1), pattern(SUBJECT_PATTERN)))]
    pub subjects: Vec<String>,

    /// How messages are retained: `limits` (default), `interest` or `workqueue`. Cannot
    /// change to or from `workqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,

    /// How many consumers the stream may have; -1 for unlimited (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_consumers: Option<i64>,

    /// How many messages the stream may hold; -1 for unlimited (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_msgs: Option<i64>,

    /// How many bytes the stream may hold; -1 for unlimited (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_bytes: Option<i64>,

    /// What happens when a limit is reached: `old` (default) discards the oldest
    /// messages, `new` refuses new ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard: Option<Discard>,

    /// With `discard: new` and `maxMsgsPerSubject`, refuse new messages per subject rather
    /// than for the whole stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_per_subject: Option<bool>,

    /// Maximum age of a message, as a Go duration (`24h`, `90m`, `1h30m`). Empty or
    /// omitted: unlimited. At least 100ms when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_age: Option<String>,

    /// How many messages to keep per subject; -1 or 0 for unlimited (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_msgs_per_subject: Option<i64>,

    /// Largest message the stream accepts, in bytes; -1 for unlimited (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 2147483647))]
    pub max_msg_size: Option<i64>,

    /// Storage backend: `file` (default) or `memory`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,

    /// Number of replicas in a clustered JetStream (1 to 5). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i64>,

    /// Do not acknowledge published messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_ack: Option<bool>,

    /// Window for tracking duplicate messages (by `Nats-Msg-Id`), as a Go duration.
    /// Omitted: 2m, or maxAge when that is shorter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub duplicate_window: Option<String>,

    /// Where the stream is placed in a clustered or super-clustered JetStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,

    /// Makes this stream a mirror of another stream. Cannot be added or changed after
    /// creation; removing it promotes the mirror to a normal stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,

    /// Streams this stream sources messages from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StreamSource>,

    /// Seal the stream: no more messages, deletes or purges. Cannot be undone, and a
    /// stream cannot be created sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<bool>,

    /// Refuse deleting messages through the API. Cannot be turned off once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_delete: Option<bool>,

    /// Refuse purging the stream through the API. Cannot be turned off once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_purge: Option<bool>,

    /// Allow the `Nats-Rollup` header to replace the stream's or a subject's contents with
    /// one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_rollup: Option<bool>,

    /// On-disk compression: `s2` or `none` (default; empty also means none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,

    /// Sequence number of the stream's first message. Only used when the stream is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub first_sequence: Option<i64>,

    /// Transforms the subject of incoming messages before they are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransform>,

    /// Republish stored messages to another subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,

    /// Allow direct gets of individual messages from any replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_direct: Option<bool>,

    /// Allow direct gets from this mirror on behalf of its origin stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_direct: Option<bool>,

    /// Allow per-message TTLs (`Nats-TTL` header). Cannot be turned off once set. Server
    /// 2.11+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_msg_ttl: Option<bool>,

    /// Leave a delete marker for this long when a subject's last message is removed by
    /// limits, as a Go duration of at least 1s. Server 2.11+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub subject_delete_marker_ttl: Option<String>,

    /// Make the stream a counter stream (`Nats-Incr`). Immutable. Server 2.12+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_msg_counter: Option<bool>,

    /// Allow atomic batch publishing. Server 2.12+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_atomic_publish: Option<bool>,

    /// Allow scheduled messages. Cannot be turned off once set. Server 2.12+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_msg_schedules: Option<bool>,

    /// Allow fast batch publishing. Server 2.14+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_batched: Option<bool>,

    /// Persistence mode: `default` or `async` (file storage, one replica). Immutable.
    /// Server 2.12+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_mode: Option<PersistMode>,

    /// Limits applied to consumers of this stream that do not set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_limits: Option<ConsumerLimits>,

    /// User metadata stored on the stream. Keys starting with `_nats.` or
    /// `jetstream.nats.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = Rule::new(RESERVED_METADATA_RULE).message(RESERVED_METADATA_MESSAGE))]
    pub metadata: BTreeMap<String, String>,

    /// Connection, ownership and deletion settings.
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// Retention policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep messages until a limit is reached.
    Limits,
    /// Keep messages while a consumer has interest.
    Interest,
    /// Keep each message until one consumer acknowledges it.
    Workqueue,
}

/// Storage backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Files on disk.
    File,
    /// Memory only.
    Memory,
}

/// Discard policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Discard the oldest messages.
    Old,
    /// Refuse new messages.
    New,
}

/// Compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Compression {
    /// S2 compression.
    #[serde(rename = "s2")]
    S2,
    /// No compression.
    #[serde(rename = "none")]
    None,
    /// Not set (NACK's schema default); means no compression.
    #[serde(rename = "")]
    Unset,
}

/// Persistence mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PersistMode {
    /// Synchronous persistence (the server default).
    #[serde(rename = "default")]
    Default,
    /// Asynchronous persistence.
    #[serde(rename = "async")]
    Async,
    /// Not set (NACK's schema default); means `default`.
    #[serde(rename = "")]
    Unset,
}

/// Placement of a stream in a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Name of the cluster to place the stream in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Server tags the stream's servers must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A stream to mirror or source from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamSource {
    /// Name of the origin stream (a stream name: no `.`, `*`, `>`, `/`, `\` or spaces).
    #[schemars(length(min = 1, max = 255), pattern(ASSET_NAME_PATTERN))]
    pub name: String,
    /// Start at this sequence of the origin stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub opt_start_seq: Option<i64>,
    /// Start at this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(RFC3339_PATTERN))]
    pub opt_start_time: Option<String>,
    /// Only take messages on this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SUBJECT_PATTERN))]
    pub filter_subject: Option<String>,
    /// JetStream API prefix of the origin (another account or domain), for example
    /// `$JS.hub.API`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_api_prefix: Option<String>,
    /// Delivery subject prefix for messages from the origin in another account or domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_deliver_prefix: Option<String>,
    /// Subject transforms applied to the taken messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransform>,
    /// Source through a durable consumer on the origin (server 2.14+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<SourceConsumer>,
}

/// A durable consumer used to source or mirror a stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceConsumer {
    /// Name of the durable consumer on the origin stream.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Subject the consumer delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
}

/// A subject transform.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectTransform {
    /// Subjects to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Subject to transform into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
}

/// Republish configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Republish {
    /// Subjects to republish (default all: `>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SUBJECT_PATTERN))]
    pub source: Option<String>,
    /// Subject to republish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Republish only the headers, not the message body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_only: Option<bool>,
}

/// Limits applied to the stream's consumers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLimits {
    /// Default and maximum inactive threshold for consumers, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub inactive_threshold: Option<String>,
    /// Default and maximum pending acknowledgements for consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_ack_pending: Option<i64>,
}

impl super::ApiKind for Stream {
    const KIND: &'static str = "Stream";
    const FINALIZER: &'static str = "stream.nats.io/finalizer";
    const LEGACY_VERSIONS: &'static [&'static str] = &["v1beta1"];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(new: Value, old: Option<Value>) -> Result<(), String> {
        StreamSpec::validate_cel(&new, old.as_ref()).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn storage_is_immutable_but_default_equals_file() {
        let old = json!({"name": "s", "storage": "file"});
        let err = check(json!({"name": "s", "storage": "memory"}), Some(old.clone())).unwrap_err();
        assert!(err.contains("storage is immutable"), "{err}");
        assert!(check(json!({"name": "s"}), Some(old)).is_ok());
        assert!(
            check(
                json!({"name": "s", "storage": "file"}),
                Some(json!({"name": "s"}))
            )
            .is_ok()
        );
    }

    #[test]
    fn retention_cannot_cross_workqueue() {
        let old = json!({"name": "s", "retention": "workqueue"});
        assert!(check(json!({"name": "s", "retention": "limits"}), Some(old)).is_err());
        let old = json!({"name": "s"});
        assert!(
            check(
                json!({"name": "s", "retention": "workqueue"}),
                Some(old.clone())
            )
            .is_err()
        );
        assert!(check(json!({"name": "s", "retention": "interest"}), Some(old)).is_ok());
    }

    #[test]
    fn one_way_flags() {
        for f in [
            "sealed",
            "denyDelete",
            "denyPurge",
            "allowMsgTtl",
            "allowMsgSchedules",
        ] {
            let old = json!({"name": "s", f: true});
            assert!(
                check(json!({"name": "s"}), Some(old.clone())).is_err(),
                "{f} off"
            );
            assert!(
                check(json!({"name": "s", f: false}), Some(old.clone())).is_err(),
                "{f} false"
            );
            assert!(
                check(json!({"name": "s", f: true}), Some(old)).is_ok(),
                "{f} kept"
            );
            assert!(
                check(json!({"name": "s", f: true}), Some(json!({"name": "s"}))).is_ok(),
                "{f} on"
            );
        }
    }

    #[test]
    fn mirror_can_be_removed_not_added_or_changed() {
        let old = json!({"name": "s", "mirror": {"name": "a"}});
        assert!(check(json!({"name": "s"}), Some(old.clone())).is_ok());
        assert!(check(json!({"name": "s", "mirror": {"name": "b"}}), Some(old)).is_err());
        assert!(
            check(
                json!({"name": "s", "mirror": {"name": "a"}}),
                Some(json!({"name": "s"}))
            )
            .is_err()
        );
        assert!(check(json!({"name": "s", "mirror": {"name": "a"}}), None).is_ok());
    }

    #[test]
    fn cross_field_rules_apply_on_create() {
        assert!(
            check(
                json!({"name": "s", "mirror": {"name": "a"}, "subjects": ["x"]}),
                None
            )
            .is_err()
        );
        assert!(
            check(
                json!({"name": "s", "denyPurge": true, "allowRollup": true}),
                None
            )
            .is_err()
        );
        assert!(check(json!({"name": "s", "discardPerSubject": true}), None).is_err());
        assert!(
            check(json!({"name": "s", "discardPerSubject": true, "discard": "new", "maxMsgsPerSubject": 1}), None).is_ok()
        );
    }

    #[test]
    fn counters_and_persist_mode_are_immutable() {
        let old = json!({"name": "s"});
        assert!(
            check(
                json!({"name": "s", "allowMsgCounter": true}),
                Some(old.clone())
            )
            .is_err()
        );
        assert!(
            check(
                json!({"name": "s", "persistMode": "async"}),
                Some(old.clone())
            )
            .is_err()
        );
        assert!(check(json!({"name": "s", "persistMode": "default"}), Some(old)).is_ok());
    }

    #[test]
    fn crd_has_no_defaults_and_categories() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&Stream::crd()).unwrap();
        assert!(
            !crd.contains("\"default\":"),
            "no schema defaults: an omitted field means the server default"
        );
        assert!(crd.contains("\"jetstream\"") && crd.contains("\"nats\""));
        assert!(crd.contains("x-kubernetes-list-map-keys"));
    }
}
