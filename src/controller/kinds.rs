//! The kinds, declared once. [`visit`] walks every kind the operator serves; the CRD list,
//! the controllers, the Account dependents guard, the followers' watches (readiness) and
//! the per-kind metrics all come from it, so adding a kind means one line here plus its
//! own files (its API type, and its [`Managed`] implementation), and a kind cannot be
//! half added: whatever the walk needs from it is a trait bound.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::account::Account;
use crate::api::common::{AssetStatus, CommonSpec};
use crate::api::consumer::Consumer;
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::api::stream::Stream;
use crate::api::{self, ApiKind};
use crate::jetstream::asset::AssetOps;
use crate::jetstream::mapping::InvalidSpec;
use crate::jetstream::owner::Owner;
use crate::jetstream::wire::StreamConfig;
use crate::metrics::Metrics;

/// The configuration type of a kind's asset.
pub type ConfigOf<K> = <<K as Managed>::Asset as AssetOps>::Config;
/// The identity type of a kind's asset.
pub type IdOf<K> = <<K as Managed>::Asset as AssetOps>::Id;

/// An asset kind the reconcile engine manages (every kind but Account).
pub trait Managed:
    ApiKind
    + Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// What the asset is called in messages ("stream", "consumer", ...).
    const NOUN: &'static str;
    /// What is lost when the asset had to be recreated (for the Warning event).
    const LOST_ON_RECREATE: &'static str = "the messages it held are gone";
    /// The JetStream asset type behind the kind.
    type Asset: AssetOps;
    /// Connection, ownership and deletion fields.
    fn common(&self) -> &CommonSpec;
    /// The current status.
    fn asset_status(&self) -> Option<&AssetStatus>;
    /// The asset this object names.
    fn asset_id(&self) -> IdOf<Self>;
    /// A stream whose configuration, when it exists, shapes this object's (a mirror's
    /// origin).
    fn origin(&self) -> Option<String> {
        None
    }
    /// The configuration the spec asks for, with the server's defaults explicit and the
    /// owner marker stamped. `stream` is the configuration of the stream the asset lives
    /// in, for assets that have one (a consumer's defaults depend on its limits), else of
    /// its [`Managed::origin`] when that exists.
    fn desired(
        &self,
        owner: &Owner,
        stream: Option<&StreamConfig>,
    ) -> Result<ConfigOf<Self>, InvalidSpec>;
    /// The pause the spec asks for (consumers): a canonical time in the future, or none.
    fn desired_pause(&self) -> Option<String> {
        None
    }
}

/// Something done once per kind.
pub trait Visitor {
    /// For an asset kind.
    fn asset<K: Managed>(&mut self);
    /// For the Account kind.
    fn account(&mut self);
}

/// Walks every kind, in a stable order.
pub fn visit(v: &mut impl Visitor) {
    v.asset::<Stream>();
    v.asset::<Consumer>();
    v.asset::<KeyValue>();
    v.asset::<ObjectStore>();
    v.account();
}

/// What identifies a kind to Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The kind.
    pub kind: &'static str,
    /// Its plural resource name.
    pub plural: String,
    /// Its finalizer.
    pub finalizer: &'static str,
}

fn info<K: ApiKind + Resource<DynamicType = ()>>() -> Info {
    Info {
        kind: K::KIND,
        plural: K::plural(&()).into_owned(),
        finalizer: K::FINALIZER,
    }
}

/// Every kind, in the walk's order.
pub fn infos() -> Vec<Info> {
    struct Collect(Vec<Info>);
    impl Visitor for Collect {
        fn asset<K: Managed>(&mut self) {
            self.0.push(info::<K>());
        }
        fn account(&mut self) {
            self.0.push(info::<Account>());
        }
    }
    let mut c = Collect(Vec::new());
    visit(&mut c);
    c.0
}

/// Creates every per-kind metric series at zero.
pub fn init_metrics(metrics: &Metrics) {
    for i in infos() {
        metrics.init_kind(i.kind);
    }
}

/// Every CRD the operator serves, in the walk's order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    struct Collect(Vec<CustomResourceDefinition>);
    impl Visitor for Collect {
        fn asset<K: Managed>(&mut self) {
            self.0.push(api::crd::<K>());
        }
        fn account(&mut self) {
            self.0.push(api::crd::<Account>());
        }
    }
    let mut c = Collect(Vec::new());
    visit(&mut c);
    c.0
}

/// Every CRD as one YAML stream (what `jetstream-operator crd` prints).
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    api::crds_yaml(&crds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_consistent() {
        let infos = infos();
        let crds = crds();
        assert_eq!(infos.len(), crds.len());
        for (i, crd) in infos.iter().zip(&crds) {
            assert_eq!(crd.spec.names.kind, i.kind);
            assert_eq!(crd.spec.names.plural, i.plural);
            assert_eq!(crd.spec.group, api::GROUP);
            assert!(
                i.finalizer.ends_with(".nats.io/finalizer"),
                "{}",
                i.finalizer
            );
        }
        // NACK's legacy versions are a property of the kinds that had them.
        let legacy: Vec<&str> = crds
            .iter()
            .filter(|c| c.spec.versions.iter().any(|v| v.name == "v1beta1"))
            .map(|c| c.spec.names.kind.as_str())
            .collect();
        assert_eq!(legacy, ["Stream", "Consumer"]);
    }

    /// The chart's RBAC grants the operator exactly its kinds and their status.
    #[test]
    fn chart_rbac_names_every_kind() {
        let helpers = include_str!("../../charts/jetstream-operator/templates/_helpers.tpl");
        let rules = helpers
            .split("define \"jso.operatorRules\"")
            .nth(1)
            .and_then(|r| r.split("{{- end }}").next())
            .unwrap_or_default();
        let list = |prefix: &str| -> Vec<String> {
            rules
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("resources:") && l.contains(prefix))
                .map(|l| {
                    l.trim_start_matches("resources:")
                        .trim()
                        .trim_matches(['[', ']'])
                        .split(',')
                        .map(|s| s.trim().trim_matches('"').to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let plurals: Vec<String> = infos().into_iter().map(|i| i.plural).collect();
        let status: Vec<String> = plurals.iter().map(|p| format!("{p}/status")).collect();
        assert_eq!(
            list("\"streams\""),
            plurals,
            "resources of jso.operatorRules"
        );
        assert_eq!(
            list("/status"),
            status,
            "status resources of jso.operatorRules"
        );
    }
}
