//! The ownership marker stamped into an asset's metadata, and how to read it back.
//!
//! The marker names the owning object's kind, namespace and name (and the Kubernetes
//! cluster with `--cluster-name`), so that two objects can never both believe they own one
//! asset. Markers written by earlier versions (no kind) are recognised as ours when the
//! rest matches, and re-stamped.

use std::collections::BTreeMap;

/// Metadata key naming the owning object, `<namespace>/<name>`.
pub const OWNER_KEY: &str = "jetstream.nats.io/owner";
/// Metadata key naming the owning object's kind (`Stream`, `KeyValue`, ...).
pub const OWNER_KIND_KEY: &str = "jetstream.nats.io/owner-kind";
/// Metadata key naming the Kubernetes cluster of the owning object (set by flag).
pub const CLUSTER_KEY: &str = "jetstream.nats.io/cluster";
/// Metadata key set on assets that existed before their object and were adopted: they are
/// kept, not deleted, when the object goes (unless it says `deletionPolicy: Delete`).
pub const ADOPTED_KEY: &str = "jetstream.nats.io/adopted";

/// Every key the operator writes into an asset's metadata; none of them is user data.
pub const MARKER_KEYS: [&str; 4] = [OWNER_KEY, OWNER_KIND_KEY, CLUSTER_KEY, ADOPTED_KEY];

/// The object that owns an asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `<namespace>/<name>` of the object.
    pub id: String,
    /// The object's kind.
    pub kind: String,
    /// The cluster name from `--cluster-name`, if set.
    pub cluster: Option<String>,
}

/// Who an existing asset belongs to, as seen from one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Stamped with this object's marker.
    Ours,
    /// Stamped by an earlier version for this object (no kind, or no cluster where one is
    /// set now): ours, to be re-stamped.
    OursOutdated,
    /// No marker: created by hand, by NACK, or by an application.
    Unowned,
    /// Stamped with another object's marker (the value names the other owner).
    Other(String),
}

impl Ownership {
    /// True for a marker of this object, current or outdated.
    pub fn is_ours(&self) -> bool {
        matches!(self, Ownership::Ours | Ownership::OursOutdated)
    }
}

impl Owner {
    /// The owner for an object.
    pub fn new(kind: &str, namespace: &str, name: &str, cluster: Option<&str>) -> Self {
        Self {
            id: format!("{namespace}/{name}"),
            kind: kind.to_string(),
            cluster: cluster.filter(|c| !c.is_empty()).map(str::to_string),
        }
    }

    /// Writes the marker into metadata (leaving the adoption mark as it is).
    pub fn stamp(&self, metadata: &mut BTreeMap<String, String>) {
        metadata.insert(OWNER_KEY.into(), self.id.clone());
        metadata.insert(OWNER_KIND_KEY.into(), self.kind.clone());
        match &self.cluster {
            Some(c) => {
                metadata.insert(CLUSTER_KEY.into(), c.clone());
            }
            None => {
                metadata.remove(CLUSTER_KEY);
            }
        }
    }

    /// Reads the marker of an existing asset.
    pub fn classify(&self, metadata: &BTreeMap<String, String>) -> Ownership {
        let Some(owner) = metadata.get(OWNER_KEY).filter(|o| !o.is_empty()) else {
            return Ownership::Unowned;
        };
        let kind = metadata.get(OWNER_KIND_KEY).filter(|k| !k.is_empty());
        let cluster = metadata.get(CLUSTER_KEY).filter(|c| !c.is_empty());
        let same_kind = kind.is_none_or(|k| *k == self.kind);
        let same_cluster = cluster.is_none_or(|c| Some(c) == self.cluster.as_ref());
        if *owner == self.id && same_kind && same_cluster {
            if kind.is_some() && cluster == self.cluster.as_ref() {
                Ownership::Ours
            } else {
                Ownership::OursOutdated
            }
        } else {
            let mut who = match kind {
                Some(k) => format!("{k} {owner}"),
                None => owner.clone(),
            };
            if let Some(c) = cluster {
                who.push_str(&format!(" in cluster {c}"));
            }
            Ownership::Other(who)
        }
    }
}

/// True when an asset's metadata says it was adopted.
pub fn adopted(metadata: &BTreeMap<String, String>) -> bool {
    metadata.get(ADOPTED_KEY).is_some_and(|v| v == "true")
}

/// Marks metadata as adopted.
pub fn mark_adopted(metadata: &mut BTreeMap<String, String>) {
    metadata.insert(ADOPTED_KEY.into(), "true".into());
}

/// Removes every key the operator wrote (and the server's own), keeping user metadata.
pub fn release(metadata: &mut BTreeMap<String, String>) {
    metadata.retain(|k, _| !MARKER_KEYS.contains(&k.as_str()) && !k.starts_with("_nats."));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classify_markers() {
        let me = Owner::new("Stream", "ns", "a", None);
        let mut m = BTreeMap::new();
        assert_eq!(me.classify(&m), Ownership::Unowned);
        me.stamp(&mut m);
        assert_eq!(me.classify(&m), Ownership::Ours);
        let other = Owner::new("Stream", "ns", "b", None);
        assert_eq!(other.classify(&m), Ownership::Other("Stream ns/a".into()));
        // The same namespace and name of another kind is another owner.
        let kv = Owner::new("KeyValue", "ns", "a", None);
        assert_eq!(kv.classify(&m), Ownership::Other("Stream ns/a".into()));
        // Turning on --cluster-name: our marker without a cluster is ours, outdated.
        let named = Owner::new("Stream", "ns", "a", Some("prod"));
        assert_eq!(named.classify(&m), Ownership::OursOutdated);
        named.stamp(&mut m);
        assert_eq!(named.classify(&m), Ownership::Ours);
        assert_eq!(
            me.classify(&m),
            Ownership::Other("Stream ns/a in cluster prod".into())
        );
        let elsewhere = Owner::new("Stream", "ns", "a", Some("staging"));
        assert_eq!(
            elsewhere.classify(&m),
            Ownership::Other("Stream ns/a in cluster prod".into())
        );
    }

    #[test]
    fn earlier_markers_are_ours_to_restamp() {
        let legacy = md(&[(OWNER_KEY, "ns/a")]);
        assert_eq!(
            Owner::new("Stream", "ns", "a", None).classify(&legacy),
            Ownership::OursOutdated
        );
        assert_eq!(
            Owner::new("KeyValue", "ns", "a", Some("prod")).classify(&legacy),
            Ownership::OursOutdated
        );
        assert_eq!(
            Owner::new("Stream", "ns", "b", None).classify(&legacy),
            Ownership::Other("ns/a".into())
        );
        let legacy_elsewhere = md(&[(OWNER_KEY, "ns/a"), (CLUSTER_KEY, "staging")]);
        assert_eq!(
            Owner::new("Stream", "ns", "a", Some("prod")).classify(&legacy_elsewhere),
            Ownership::Other("ns/a in cluster staging".into())
        );
    }

    #[test]
    fn release_keeps_user_metadata() {
        let mut m = md(&[
            (OWNER_KEY, "ns/a"),
            (OWNER_KIND_KEY, "Stream"),
            (ADOPTED_KEY, "true"),
            ("_nats.ver", "2.15.1"),
            ("team", "payments"),
        ]);
        assert!(adopted(&m));
        release(&mut m);
        assert_eq!(m, md(&[("team", "payments")]));
    }
}
