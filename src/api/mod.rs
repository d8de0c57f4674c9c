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

/// Annotation that pauses reconciling an object when set to `"true"`.
pub const PAUSED_ANNOTATION: &str = "jetstream.nats.io/paused";

/// Annotation whose change forces a reconcile (set it to a timestamp).
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "jetstream.nats.io/reconcile-requested-at";

/// Every CRD the operator serves, in a stable order. Stream and Consumer keep NACK's
/// unserved `v1beta1` version, so that replacing NACK's CRDs stays valid on clusters that
/// once stored v1beta1 objects.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut out = vec![
        stream::Stream::crd(),
        consumer::Consumer::crd(),
        keyvalue::KeyValue::crd(),
        objectstore::ObjectStore::crd(),
        account::Account::crd(),
    ];
    for crd in out.iter_mut().take(2) {
        crd.spec.versions.push(legacy_version());
    }
    out
}

/// NACK's old `v1beta1`: not served, not stored, any shape.
fn legacy_version() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion{
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
    };
    CustomResourceDefinitionVersion {
        name: "v1beta1".into(),
        served: false,
        storage: false,
        deprecated: Some(true),
        deprecation_warning: Some("jetstream.nats.io/v1beta1 is not served; use v1beta2".into()),
        schema: Some(CustomResourceValidation {
            open_api_v3_schema: Some(JSONSchemaProps {
                type_: Some("object".into()),
                x_kubernetes_preserve_unknown_fields: Some(true),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
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
