//! The ownership marker stamped into an asset's metadata, and how to read it back.

use std::collections::BTreeMap;

/// Metadata key naming the owning object, `<namespace>/<name>`.
pub const OWNER_KEY: &str = "jetstream.nats.io/owner";
/// Metadata key naming the Kubernetes cluster of the owning object (set by flag).
pub const CLUSTER_KEY: &str = "jetstream.nats.io/cluster";

/// The object that owns an asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `<namespace>/<name>` of the object.
    pub id: String,
    /// The cluster name from `--cluster-name`, if set.
    pub cluster: Option<String>,
}

/// Who an existing asset belongs to, as seen from one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Stamped with this object's marker.
    Ours,
    /// No marker: created by hand, by NACK, or by an application.
    Unowned,
    /// Stamped with another object's marker (the value is the other owner).
    Other(String),
}

impl Owner {
    /// The owner for an object.
    pub fn new(namespace: &str, name: &str, cluster: Option<&str>) -> Self {
        Self {
            id: format!("{namespace}/{name}"),
            cluster: cluster.filter(|c| !c.is_empty()).map(str::to_string),
        }
    }

    /// Writes the marker into metadata.
    pub fn stamp(&self, metadata: &mut BTreeMap<String, String>) {
        metadata.insert(OWNER_KEY.into(), self.id.clone());
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
        let cluster = metadata.get(CLUSTER_KEY).filter(|c| !c.is_empty());
        let same_cluster = cluster == self.cluster.as_ref();
        if *owner == self.id && same_cluster {
            Ownership::Ours
        } else {
            let who = match cluster {
                Some(c) => format!("{owner} in cluster {c}"),
                None => owner.clone(),
            };
            Ownership::Other(who)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_markers() {
        let me = Owner::new("ns", "a", None);
        let mut m = BTreeMap::new();
        assert_eq!(me.classify(&m), Ownership::Unowned);
        me.stamp(&mut m);
        assert_eq!(me.classify(&m), Ownership::Ours);
        let other = Owner::new("ns", "b", None);
        assert_eq!(other.classify(&m), Ownership::Other("ns/a".into()));
        let elsewhere = Owner::new("ns", "a", Some("prod"));
        assert_eq!(elsewhere.classify(&m), Ownership::Other("ns/a".into()));
        elsewhere.stamp(&mut m);
        assert_eq!(elsewhere.classify(&m), Ownership::Ours);
        assert_eq!(
            me.classify(&m),
            Ownership::Other("ns/a in cluster prod".into())
        );
    }
}
