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

/// The API group of every kind.
pub const GROUP: &str = "jetstream.nats.io";

/// Annotation that pauses reconciling an object when set to `"true"`.
pub const PAUSED_ANNOTATION: &str = "jetstream.nats.io/paused";

/// Annotation whose change forces a reconcile (set it to a timestamp).
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "jetstream.nats.io/reconcile-requested-at";

/// What the API says about each kind, beyond its schema.
pub trait ApiKind: kube::CustomResourceExt {
    /// The kind's name, as in `kind:`.
    const KIND: &'static str;
    /// The finalizer the operator puts on objects of this kind (NACK's name, so that
    /// migrated objects keep working).
    const FINALIZER: &'static str;
    /// NACK's earlier versions of the kind, kept in the CRD unserved and unstored so that
    /// replacing NACK's CRDs stays valid on clusters that once stored them.
    const LEGACY_VERSIONS: &'static [&'static str] = &[];
}

/// The CRD of a kind, with its legacy versions.
pub fn crd<K: ApiKind>() -> CustomResourceDefinition {
    let mut crd = K::crd();
    for v in &mut crd.spec.versions {
        if let Some(s) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            prune_null_enums(s);
        }
    }
    for v in K::LEGACY_VERSIONS {
        crd.spec.versions.push(legacy_version(v));
    }
    crd
}

/// Optional enum fields are not `nullable`, so that an explicit null (`storage:` with no
/// value, as a Helm template renders an unset value) is dropped by the apiserver and means
/// unset, as with NACK's CRDs, instead of being refused as a value the enum does not list.
fn prune_null_enums(
    s: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    if s.enum_.is_some() && s.nullable == Some(true) {
        s.nullable = None;
    }
    for p in s.properties.iter_mut().flat_map(|m| m.values_mut()) {
        prune_null_enums(p);
    }
    match &mut s.items {
        Some(JSONSchemaPropsOrArray::Schema(i)) => prune_null_enums(i),
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().for_each(prune_null_enums),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = &mut s.additional_properties {
        prune_null_enums(a);
    }
    for v in [&mut s.any_of, &mut s.all_of, &mut s.one_of]
        .into_iter()
        .flatten()
    {
        v.iter_mut().for_each(prune_null_enums);
    }
}

/// A legacy version: not served, not stored, any shape.
fn legacy_version(
    name: &str,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion{
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
    };
    CustomResourceDefinitionVersion {
        name: name.into(),
        served: false,
        storage: false,
        deprecated: Some(true),
        deprecation_warning: Some(format!("{GROUP}/{name} is not served; use v1beta2")),
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

/// CRDs as a multi-document YAML stream.
pub fn crds_yaml(crds: &[CustomResourceDefinition]) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(crd)?);
    }
    Ok(out)
}
