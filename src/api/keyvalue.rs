//! The KeyValue kind (short name `kv`): a JetStream key-value bucket, field for field as
//! NACK's, plus `metadata`. The bucket is the stream `KV_<bucket>`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    AssetStatus, CommonSpec, DURATION_PATTERN, RESERVED_METADATA_MESSAGE, RESERVED_METADATA_RULE,
    STORAGE_IMMUTABLE_RULE,
};
use super::stream::{Placement, Republish, Storage, StreamSource};

/// The name pattern of buckets.
pub const BUCKET_PATTERN: &str = r"^[a-zA-Z0-9_-]+$";

/// A JetStream key-value bucket (the stream `KV_<bucket>`). Every field left out means
/// the default of the NATS clients' bucket API.
// printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "jetstream.nats.io",
    version = "v1beta2",
    kind = "KeyValue",
    plural = "keyvalues",
    singular = "keyvalue",
    shortname = "kv",
    namespaced,
    status = "AssetStatus",
    category = "nats",
    category = "jetstream",
    doc = "A NATS JetStream key-value bucket managed by jetstream-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the bucket matches the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the bucket is or is not ready"
    ),
    printcolumn(
        name = "Bucket",
        type_ = "string",
        json_path = ".spec.bucket",
        description = "Bucket name"
    ),
    printcolumn(
        name = "History",
        type_ = "integer",
        json_path = ".spec.history",
        description = "Values kept per key"
    ),
    printcolumn(
        name = "TTL",
        type_ = "string",
        json_path = ".spec.ttl",
        description = "How long values are kept"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new(STORAGE_IMMUTABLE_RULE).message("storage is immutable: JetStream cannot move a bucket between file and memory storage"),
    validation = Rule::new("!has(self.mirror) || (has(oldSelf.mirror) && self.mirror == oldSelf.mirror)").message("mirror cannot be added or changed after creation"),
    validation = Rule::new("!has(self.mirror) || !has(self.sources) || size(self.sources) == 0").message("a bucket cannot have both a mirror and sources"),
    validation = Rule::new("!has(oldSelf.limitMarkerTtl) || string(oldSelf.limitMarkerTtl) in ['', '0', '0s'] || (has(self.limitMarkerTtl) && !(string(self.limitMarkerTtl) in ['', '0', '0s']))").message("limitMarkerTtl cannot be turned off once set (per-message TTLs cannot be disabled)"),
)]
#[serde(rename_all = "camelCase")]
pub struct KeyValueSpec {
    /// Bucket name (letters, digits, `_` and `-`). Immutable.
    #[schemars(length(min = 1, max = 252), pattern(BUCKET_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("bucket is immutable: it names the bucket in JetStream"))]
    pub bucket: String,

    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Largest value accepted, in bytes; -1 or omitted for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 2147483647))]
    pub max_value_size: Option<i64>,

    /// Values kept per key, 1 (default) to 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub history: Option<i64>,

    /// How long values are kept, as a Go duration; omitted: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub ttl: Option<String>,

    /// How long a marker stays when a key is removed by its TTL (enables per-key TTLs;
    /// server 2.11+). A Go duration (`10m`) or, as in NACK, an integer of nanoseconds.
    /// Cannot be turned off once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_or_nanos_schema")]
    pub limit_marker_ttl: Option<DurationOrNanos>,

    /// Largest size of the bucket in bytes; -1 or omitted for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub max_bytes: Option<i64>,

    /// Storage backend: `file` (default) or `memory`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,

    /// Number of replicas in a clustered JetStream (1 to 5). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i64>,

    /// Where the bucket is placed in a clustered JetStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,

    /// Republish stored values to another subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,

    /// Makes this bucket a mirror of another bucket (name without `KV_`). Cannot be added
    /// or changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,

    /// Buckets this bucket sources values from (names without `KV_`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StreamSource>,

    /// Compress values on disk (S2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<bool>,

    /// User metadata stored on the bucket. Keys starting with `_nats.` or
    /// `jetstream.nats.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = Rule::new(RESERVED_METADATA_RULE).message(RESERVED_METADATA_MESSAGE))]
    pub metadata: BTreeMap<String, String>,

    /// Connection, ownership and deletion settings.
    #[serde(flatten)]
    pub common: CommonSpec,
}

/// A duration as a Go duration string or an integer of nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationOrNanos {
    /// Nanoseconds.
    Nanos(i64),
    /// A Go duration (`10m`).
    Duration(String),
}

impl DurationOrNanos {
    /// Nanoseconds, or an error naming the problem.
    pub fn nanos(&self) -> Result<i64, String> {
        match self {
            DurationOrNanos::Nanos(n) if *n >= 0 => Ok(*n),
            DurationOrNanos::Nanos(n) => Err(format!("{n} must not be negative")),
            DurationOrNanos::Duration(s) => {
                super::common::parse_duration_nanos(s).map(|d| d.unwrap_or(0))
            }
        }
    }
}

/// Schema of a duration given as a Go duration string or integer nanoseconds.
pub fn duration_or_nanos_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
        "description": "How long a marker stays when a key is removed by its TTL (enables per-key TTLs; server 2.11+). A Go duration (`10m`) or, as in NACK, an integer of nanoseconds. Cannot be turned off once set."
    }))
    .unwrap_or_default()
}

impl super::ApiKind for KeyValue {
    const KIND: &'static str = "KeyValue";
    const FINALIZER: &'static str = "kv.nats.io/finalizer";
}
