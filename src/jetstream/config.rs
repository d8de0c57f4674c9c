//! What the decisions need to know about an asset's configuration, for streams and
//! consumers alike: where the ownership marker lives, which fields differ (compared once,
//! after normalising both sides, the marker left out), and which of those differences
//! JetStream cannot apply in place.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::owner::MARKER_KEYS;

/// A nats-server version: major, minor, patch.
pub type ServerVersion = (u32, u32, u32);

/// The newest server behaviour, for decisions made without a server at hand.
pub const NEWEST: ServerVersion = (u32::MAX, 0, 0);

/// Of `uses` (whether the configuration asks for it, its field, the release that
/// introduced it), those `version` does not know, named as [`AssetConfig::needs_newer`]
/// says.
pub fn newer_than(version: ServerVersion, uses: &[(bool, &str, &str)]) -> Vec<String> {
    uses.iter()
        .filter(|(used, _, release)| *used && version < parse_version(release))
        .map(|(_, field, release)| format!("{field} (nats-server {release} or newer)"))
        .collect()
}

/// Parses `2.10.26` (or `v2.10.26-RC.1`) into a version; unknown parts are 0.
pub fn parse_version(v: &str) -> ServerVersion {
    let mut it = v
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// A JetStream asset configuration (stream or consumer), as plain data.
pub trait AssetConfig:
    Clone + std::fmt::Debug + PartialEq + Serialize + serde::de::DeserializeOwned + Send + Sync
{
    /// The asset's metadata, where the ownership marker lives.
    fn metadata(&self) -> &BTreeMap<String, String>;
    /// The same, to change.
    fn metadata_mut(&mut self) -> &mut BTreeMap<String, String>;
    /// A copy in which equal meaning gives equal values (server defaults explicit,
    /// server-added metadata dropped, sets sorted).
    fn normalized(&self) -> Self;
    /// The fields (JSON names) whose values differ between what the spec wants and what
    /// the server holds, comparing normalised configs and leaving the ownership marker
    /// out. Create-only and server-derived fields are not compared.
    fn changes(desired: &Self, actual: &Self) -> Vec<String>;
    /// Fields (JSON names) that only apply at creation, left out of every comparison.
    const CREATE_ONLY: &'static [&'static str] = &[];
    /// Applies the defaults a given server version fills in differently from the newest
    /// (the builders follow the newest server's rules).
    fn for_server(&mut self, version: ServerVersion) {
        let _ = version;
    }
    /// When the desired configuration cannot be created as it is, the one to create first
    /// (then updated to the desired one): a sealed stream is created open.
    fn creatable(&self) -> Option<Self> {
        None
    }
    /// The nats-server release that introduced a field, for fields newer than the oldest
    /// supported server (an older one drops them without a word).
    fn introduced_in(field: &str) -> Option<&'static str> {
        let _ = field;
        None
    }
    /// The settings this configuration asks for that `version` does not know, each as
    /// `field (nats-server X or newer)`: an older server would drop them without a word,
    /// so the asset is not written at all.
    fn needs_newer(&self, version: ServerVersion) -> Vec<String> {
        let _ = version;
        Vec::new()
    }
    /// The subjects the asset stores messages on (streams), for display.
    fn subjects(&self) -> Option<&[String]> {
        None
    }
    /// Why the server may delete the asset by itself, when its configuration says so (a
    /// consumer's `inactive_threshold`), for messages.
    fn removed_by_server(&self) -> Option<String> {
        None
    }
    /// Of `changes`, the ones JetStream refuses to make in place (immutable fields, flags
    /// that can only be turned on, ...), each with why.
    fn immutable(desired: &Self, actual: &Self, changes: &[String]) -> Vec<String>;
}

/// The ownership marker entries of a metadata map.
pub fn marker(metadata: &BTreeMap<String, String>) -> [Option<&String>; 4] {
    MARKER_KEYS.map(|k| metadata.get(k))
}

/// True when `seen` is not what a reconcile left behind as `expected`: a field differs or
/// the ownership marker was changed or removed. Drives the drift scan.
pub fn drifted<C: AssetConfig>(expected: &C, seen: &C) -> bool {
    marker(expected.metadata()) != marker(seen.metadata()) || !C::changes(expected, seen).is_empty()
}

/// The top-level JSON fields whose values differ between two configs, ignoring the
/// ownership marker inside `metadata`.
pub fn changed_fields<T: Serialize>(desired: &T, actual: &T) -> Vec<String> {
    let (Some(dm), Some(am)) = (comparable(desired), comparable(actual)) else {
        return vec!["config".into()];
    };
    let mut keys: Vec<&String> = dm.keys().chain(am.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| dm.get(*k) != am.get(*k))
        .map(|k| k.to_string())
        .collect()
}

/// A config as the comparisons see it: its JSON fields without the ownership marker
/// (and without `metadata` when nothing else is in it).
fn comparable<T: Serialize>(config: &T) -> Option<serde_json::Map<String, Value>> {
    let Ok(Value::Object(mut m)) = serde_json::to_value(config) else {
        return None;
    };
    let empty = match m.get_mut("metadata") {
        Some(Value::Object(md)) => {
            for k in MARKER_KEYS {
                md.remove(k);
            }
            md.is_empty()
        }
        _ => false,
    };
    if empty {
        m.remove("metadata");
    }
    Some(m)
}

/// A fingerprint of what [`drifted`] compares: two configs have the same fingerprint
/// exactly when neither drifted from the other (up to 64-bit hash collisions). The drift
/// scan keeps fingerprints, not configs, for every managed asset.
pub fn fingerprint<C: AssetConfig>(config: &C) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    marker(config.metadata()).hash(&mut h);
    match comparable(&config.normalized()) {
        Some(mut m) => {
            for k in C::CREATE_ONLY {
                m.remove(*k);
            }
            // Objects are ordered maps: equal values serialise to equal text.
            Value::Object(m).to_string().hash(&mut h);
        }
        None => "unserialisable".hash(&mut h),
    }
    h.finish()
}

/// Describes a change of `field` from `actual` to `desired` for a message.
pub fn describe<T: std::fmt::Debug>(field: &str, actual: T, desired: T, why: &str) -> String {
    format!("{field} ({actual:?} on the server, {desired:?} in the spec: {why})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct C {
        a: i64,
        metadata: BTreeMap<String, String>,
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.10.26"), (2, 10, 26));
        assert_eq!(parse_version("v2.12.0-RC.1"), (2, 12, 0));
        assert!(parse_version("2.14.6") < (2, 15, 0));
        assert!(NEWEST > parse_version("9.9.9"));
    }

    #[test]
    fn marker_is_not_a_change() {
        let mut md = BTreeMap::new();
        md.insert(
            super::super::owner::OWNER_KEY.to_string(),
            "ns/a".to_string(),
        );
        let d = C { a: 1, metadata: md };
        let a = C {
            a: 2,
            metadata: BTreeMap::new(),
        };
        assert_eq!(changed_fields(&d, &a), vec!["a"]);
        let mut md = BTreeMap::new();
        md.insert("team".to_string(), "x".to_string());
        let a = C { a: 1, metadata: md };
        assert_eq!(changed_fields(&d, &a), vec!["metadata"]);
    }
}
