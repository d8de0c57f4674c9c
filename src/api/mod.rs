//! The `jetstream.nats.io/v1beta2` API: CRD types, schema, CEL rules and conditions.
//! This module has no runtime dependencies beyond the types themselves.

pub mod account;
pub mod common;
pub mod conditions;
pub mod consumer;
pub mod keyvalue;
pub mod objectstore;
pub mod stream;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind.
pub const GROUP: &str = "jetstream.nats.io";

/// Prefix of annotations, labels and metadata keys owned by the operator.
pub const KEY_PREFIX: &str = "jetstream.nats.io/";

/// Annotation that pauses reconciling an object when set to `"true"`.
pub const PAUSED_ANNOTATION: &str = "jetstream.nats.io/paused";

/// Annotation whose change forces a reconcile (set it to a timestamp).
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "jetstream.nats.io/reconcile-requested-at";

/// Every CRD the operator serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        stream::Stream::crd(),
        consumer::Consumer::crd(),
        keyvalue::KeyValue::crd(),
        objectstore::ObjectStore::crd(),
        account::Account::crd(),
    ]
}

/// Every CRD as a multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
