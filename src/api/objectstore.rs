//! The ObjectStore kind: a JetStream object store, field for field as NACK's. The store is
//! the stream `OBJ_<bucket>`.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    AssetStatus, CommonSpec, DURATION_PATTERN, RESERVED_METADATA_MESSAGE, RESERVED_METADATA_RULE,
    STORAGE_IMMUTABLE_RULE,
};
use super::keyvalue::BUCKET_PATTERN;
use super::stream::{Placement, Storage};

/// A JetStream object store (the stream `OBJ_<bucket>`). Every field left out means the
/// default of the NATS clients' object store API.
// printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "jetstream.nats.io",
    version = "v1beta2",
    kind = "ObjectStore",
    plural = "objectstores",
    singular = "objectstore",
    namespaced,
    status = "AssetStatus",
    category = "nats",
    category = "jetstream",
    doc = "A NATS JetStream object store managed by jetstream-operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the object store matches the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the object store is or is not ready"
    ),
    printcolumn(
        name = "Bucket",
        type_ = "string",
        json_path = ".spec.bucket",
        description = "Object store name"
    ),
    printcolumn(
        name = "Storage",
        type_ = "string",
        json_path = ".spec.storage",
        description = "Storage backend"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new(STORAGE_IMMUTABLE_RULE).message("storage is immutable: JetStream cannot move an object store between file and memory storage"),
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// Object store name (letters, digits, `_` and `-`). Immutable.
    #[schemars(length(min = 1, max = 251), pattern(BUCKET_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("bucket is immutable: it names the object store in JetStream"))]
    pub bucket: String,

    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// How long objects are kept, as a Go duration; omitted: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub ttl: Option<String>,

    /// Largest size of the store in bytes; -1 or omitted for unlimited.
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

    /// Where the store is placed in a clustered JetStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,

    /// Compress objects on disk (S2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<bool>,

    /// User metadata stored on the object store. Keys starting with `_nats.` or
    /// `jetstream.nats.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = Rule::new(RESERVED_METADATA_RULE).message(RESERVED_METADATA_MESSAGE))]
    pub metadata: BTreeMap<String, String>,

    /// Connection, ownership and deletion settings.
    #[serde(flatten)]
    pub common: CommonSpec,
}

impl super::ApiKind for ObjectStore {
    const KIND: &'static str = "ObjectStore";
    const FINALIZER: &'static str = "objectstore.nats.io/finalizer";
}
