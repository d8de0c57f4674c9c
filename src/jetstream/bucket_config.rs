//! KeyValue and ObjectStore specs -> the configs of their backing streams (`KV_<bucket>`,
//! `OBJ_<bucket>`), mapped the way the NATS clients' bucket APIs map them, so buckets made
//! by NACK or by applications compare equal.

use std::collections::BTreeMap;

use crate::api::keyvalue::KeyValueSpec;
use crate::api::objectstore::ObjectStoreSpec;
use crate::api::stream::{Placement, Storage};

use super::mapping::{
    InvalidSpec, default_duplicate_window as duplicate_window, dur, limit, placement, republish,
    source, storage,
};
use super::owner::Owner;
use super::wire::{self, StreamConfig};

/// Most values a key-value bucket keeps per key.
pub const MAX_HISTORY: i64 = 64;

/// The backing stream of a bucket.
pub fn kv_stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The backing stream of an object store.
pub fn obj_stream_name(bucket: &str) -> String {
    format!("OBJ_{bucket}")
}

/// The backing stream of a key-value bucket.
pub fn kv_stream(spec: &KeyValueSpec, owner: &Owner) -> Result<StreamConfig, InvalidSpec> {
    let history = match spec.history {
        None | Some(0) => 1,
        Some(h) if (1..=MAX_HISTORY).contains(&h) => h,
        Some(h) => {
            return Err(InvalidSpec(format!(
                "history {h} is out of range (1 to {MAX_HISTORY})"
            )));
        }
    };
    let max_age = dur("ttl", &spec.ttl)?;
    let marker = match &spec.limit_marker_ttl {
        None => 0,
        Some(m) => m
            .nanos()
            .map_err(|e| InvalidSpec(format!("limitMarkerTtl: {e}")))?,
    };
    if marker != 0 && marker < 1_000_000_000 {
        return Err(InvalidSpec("limitMarkerTtl must be at least 1s".into()));
    }
    let bucket = &spec.bucket;
    let subjects_of = |b: &str| format!("$KV.{b}.>");
    let mut mirror = None;
    let mut sources = Vec::new();
    let mut subjects = Vec::new();
    let mut mirror_direct = false;
    if let Some(m) = &spec.mirror {
        let mut m = source(m);
        if !m.name.starts_with("KV_") {
            m.name = kv_stream_name(&m.name);
        }
        mirror = Some(m);
        mirror_direct = true;
    } else {
        for s in &spec.sources {
            let mut src = source(s);
            if src.subject_transforms.is_empty() {
                let origin = src
                    .name
                    .strip_prefix("KV_")
                    .unwrap_or(&src.name)
                    .to_string();
                src.name = kv_stream_name(&origin);
                if src.external.is_none() || origin != *bucket {
                    src.subject_transforms = vec![wire::Transform {
                        src: subjects_of(&origin),
                        dest: subjects_of(bucket),
                    }];
                }
            }
            sources.push(src);
        }
        subjects.push(subjects_of(bucket));
    }
    let base = Bucket {
        name: kv_stream_name(bucket),
        description: &spec.description,
        max_bytes: spec.max_bytes,
        max_age,
        storage: spec.storage,
        replicas: spec.replicas,
        placement: &spec.placement,
        compression: spec.compression,
        metadata: &spec.metadata,
    }
    .config(owner);
    Ok(StreamConfig {
        subjects,
        max_msgs_per_subject: history,
        max_msg_size: limit(spec.max_value_size),
        duplicate_window: if mirror.is_some() {
            0
        } else {
            base.duplicate_window
        },
        mirror,
        sources,
        deny_delete: true,
        republish: republish(&spec.republish),
        mirror_direct,
        allow_msg_ttl: marker != 0,
        subject_delete_marker_ttl: marker,
        ..base
    })
}

/// The backing stream of an object store.
pub fn obj_stream(spec: &ObjectStoreSpec, owner: &Owner) -> Result<StreamConfig, InvalidSpec> {
    let bucket = &spec.bucket;
    let base = Bucket {
        name: obj_stream_name(bucket),
        description: &spec.description,
        max_bytes: spec.max_bytes,
        max_age: dur("ttl", &spec.ttl)?,
        storage: spec.storage,
        replicas: spec.replicas,
        placement: &spec.placement,
        compression: spec.compression,
        metadata: &spec.metadata,
    }
    .config(owner);
    Ok(StreamConfig {
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        ..base
    })
}

/// What key-value buckets and object stores have in common.
struct Bucket<'a> {
    name: String,
    description: &'a Option<String>,
    max_bytes: Option<i64>,
    max_age: i64,
    storage: Option<Storage>,
    replicas: Option<i64>,
    placement: &'a Option<Placement>,
    compression: Option<bool>,
    metadata: &'a BTreeMap<String, String>,
}

impl Bucket<'_> {
    /// The stream settings the clients' bucket APIs fix for every bucket: limits
    /// retention, discard new, rollups and direct get on, no message or consumer limits.
    fn config(self, owner: &Owner) -> StreamConfig {
        let mut metadata = self.metadata.clone();
        owner.stamp(&mut metadata);
        StreamConfig {
            name: self.name,
            description: self.description.clone().filter(|d| !d.is_empty()),
            retention: "limits".into(),
            max_consumers: -1,
            max_msgs: -1,
            max_bytes: limit(self.max_bytes),
            max_age: self.max_age,
            max_msgs_per_subject: -1,
            max_msg_size: -1,
            discard: "new".into(),
            storage: storage(self.storage),
            num_replicas: self.replicas.filter(|r| *r > 0).unwrap_or(1),
            duplicate_window: duplicate_window(self.max_age),
            placement: placement(self.placement),
            allow_rollup_hdrs: true,
            compression: if self.compression.unwrap_or(false) {
                "s2"
            } else {
                "none"
            }
            .into(),
            allow_direct: true,
            metadata,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::config::AssetConfig;
    use crate::jetstream::mapping::DEFAULT_DUPLICATE_WINDOW;

    fn owner() -> Owner {
        Owner::new("KeyValue", "ns", "b", None)
    }

    #[test]
    fn kv_maps_like_the_clients() {
        let spec: KeyValueSpec =
            serde_saphyr::from_str("bucket: settings\nhistory: 5\nttl: 1h\ncompression: true\n")
                .unwrap();
        let c = kv_stream(&spec, &owner()).unwrap();
        assert_eq!(c.name, "KV_settings");
        assert_eq!(c.subjects, vec!["$KV.settings.>"]);
        assert_eq!(c.max_msgs_per_subject, 5);
        assert_eq!(c.max_age, 3_600_000_000_000);
        assert_eq!(c.discard, "new");
        assert!(c.allow_rollup_hdrs && c.deny_delete && c.allow_direct && !c.deny_purge);
        assert_eq!(c.compression, "s2");
        assert_eq!(c.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
    }

    #[test]
    fn kv_limit_marker_accepts_duration_or_nanos() {
        let a: KeyValueSpec = serde_saphyr::from_str("bucket: b\nlimitMarkerTtl: 10m\n").unwrap();
        let b: KeyValueSpec =
            serde_saphyr::from_str("bucket: b\nlimitMarkerTtl: 600000000000\n").unwrap();
        let ca = kv_stream(&a, &owner()).unwrap();
        let cb = kv_stream(&b, &owner()).unwrap();
        assert_eq!(ca.subject_delete_marker_ttl, 600_000_000_000);
        assert!(ca.allow_msg_ttl);
        assert!(StreamConfig::changes(&ca, &cb).is_empty());
        let short: KeyValueSpec =
            serde_saphyr::from_str("bucket: b\nlimitMarkerTtl: 10\n").unwrap();
        assert!(kv_stream(&short, &owner()).is_err());
    }

    #[test]
    fn kv_sources_get_prefixed_and_transformed() {
        let spec: KeyValueSpec =
            serde_saphyr::from_str("bucket: all\nsources:\n- name: east\n- name: KV_west\n")
                .unwrap();
        let c = kv_stream(&spec, &owner()).unwrap();
        assert_eq!(c.sources[0].name, "KV_east");
        assert_eq!(c.sources[0].subject_transforms[0].src, "$KV.east.>");
        assert_eq!(c.sources[0].subject_transforms[0].dest, "$KV.all.>");
        assert_eq!(c.sources[1].name, "KV_west");
        assert_eq!(c.subjects, vec!["$KV.all.>"]);
        let mirror: KeyValueSpec =
            serde_saphyr::from_str("bucket: copy\nmirror:\n  name: orig\n").unwrap();
        let m = kv_stream(&mirror, &owner()).unwrap();
        assert_eq!(m.mirror.unwrap().name, "KV_orig");
        assert!(m.subjects.is_empty() && m.mirror_direct);
    }

    #[test]
    fn object_store_maps_like_the_clients() {
        let spec: ObjectStoreSpec =
            serde_saphyr::from_str("bucket: files\nttl: 24h\nstorage: memory\n").unwrap();
        let c = obj_stream(&spec, &owner()).unwrap();
        assert_eq!(c.name, "OBJ_files");
        assert_eq!(c.subjects, vec!["$O.files.C.>", "$O.files.M.>"]);
        assert_eq!(c.discard, "new");
        assert!(c.allow_rollup_hdrs && c.allow_direct);
        assert_eq!(c.storage, "memory");
    }
}
