//! Stream spec -> desired server config (pure), normalisation with the server's defaults,
//! and the field-by-field diff that drives updates and drift repair.

use std::collections::BTreeMap;

use crate::api::stream::{Compression, Discard, PersistMode, Retention, StreamSpec};

use super::config::{AssetConfig, ServerVersion, changed_fields, describe, newer_than};
use super::mapping::{
    InvalidSpec, default_duplicate_window, dur, limit, nonempty, placement, republish, source,
    storage,
};
use super::owner::Owner;
use super::wire::{self, StreamConfig};

#[cfg(test)]
use super::mapping::DEFAULT_DUPLICATE_WINDOW;

/// Builds the configuration the server should hold for `spec`, with every default the
/// server would fill in made explicit, and the ownership marker in its metadata.
pub fn desired(spec: &StreamSpec, owner: &Owner) -> Result<StreamConfig, InvalidSpec> {
    let max_age = dur("maxAge", &spec.max_age)?;
    if max_age != 0 && max_age < 100_000_000 {
        return Err(InvalidSpec("maxAge must be at least 100ms".into()));
    }
    let mut duplicate_window = dur("duplicateWindow", &spec.duplicate_window)?;
    let sdm_ttl = dur("subjectDeleteMarkerTtl", &spec.subject_delete_marker_ttl)?;
    if sdm_ttl != 0 && sdm_ttl < 1_000_000_000 {
        return Err(InvalidSpec(
            "subjectDeleteMarkerTtl must be at least 1s".into(),
        ));
    }
    let is_mirror = spec.mirror.is_some();
    // checkStreamCfg: the default window applies to streams with neither a mirror nor
    // sources; those keep 0.
    if duplicate_window == 0 && !is_mirror && spec.sources.is_empty() {
        duplicate_window = default_duplicate_window(max_age);
    }
    if max_age != 0 && duplicate_window > max_age {
        return Err(InvalidSpec(
            "duplicateWindow cannot be longer than maxAge".into(),
        ));
    }

    let mut subjects = spec.subjects.clone();
    if subjects.is_empty() && !is_mirror && spec.sources.is_empty() {
        subjects.push(spec.name.clone());
    }

    let allow_msg_schedules = spec.allow_msg_schedules.unwrap_or(false);
    // The server requires these for delete markers and schedules; derive them as a
    // non-pedantic server would rather than refusing the spec.
    let allow_msg_ttl = spec.allow_msg_ttl.unwrap_or(false) || sdm_ttl != 0;
    let allow_rollup = spec.allow_rollup.unwrap_or(false) || sdm_ttl != 0 || allow_msg_schedules;

    let consumer_limits = match &spec.consumer_limits {
        None => None,
        Some(l) => {
            let cl = wire::ConsumerLimits {
                inactive_threshold: dur("consumerLimits.inactiveThreshold", &l.inactive_threshold)?,
                max_ack_pending: l.max_ack_pending.unwrap_or(0),
            };
            (!cl.is_empty()).then_some(cl)
        }
    };

    let mut metadata: BTreeMap<String, String> = spec.metadata.clone();
    owner.stamp(&mut metadata);

    let sealed = spec.sealed.unwrap_or(false);
    let mut config = StreamConfig {
        name: spec.name.clone(),
        description: nonempty(&spec.description),
        subjects,
        retention: match spec.retention.unwrap_or(Retention::Limits) {
            Retention::Limits => "limits",
            Retention::Interest => "interest",
            Retention::Workqueue => "workqueue",
        }
        .into(),
        max_consumers: limit(spec.max_consumers),
        max_msgs: limit(spec.max_msgs),
        max_bytes: limit(spec.max_bytes),
        max_age,
        max_msgs_per_subject: limit(spec.max_msgs_per_subject),
        max_msg_size: limit(spec.max_msg_size),
        discard: match spec.discard.unwrap_or(Discard::Old) {
            Discard::Old => "old",
            Discard::New => "new",
        }
        .into(),
        storage: storage(spec.storage),
        num_replicas: spec.replicas.filter(|r| *r > 0).unwrap_or(1),
        no_ack: spec.no_ack.unwrap_or(false),
        duplicate_window,
        placement: placement(&spec.placement),
        mirror: spec.mirror.as_ref().map(source),
        sources: spec.sources.iter().map(source).collect(),
        sealed,
        deny_delete: spec.deny_delete.unwrap_or(false),
        deny_purge: spec.deny_purge.unwrap_or(false),
        allow_rollup_hdrs: allow_rollup,
        compression: match spec.compression {
            Some(Compression::S2) => "s2",
            _ => "none",
        }
        .into(),
        first_seq: spec.first_sequence.unwrap_or(0),
        subject_transform: spec.subject_transform.as_ref().map(|t| wire::Transform {
            src: t.source.clone().unwrap_or_default(),
            dest: t.dest.clone().unwrap_or_default(),
        }),
        republish: republish(&spec.republish),
        allow_direct: spec.allow_direct.unwrap_or(false),
        mirror_direct: spec.mirror_direct.unwrap_or(false),
        discard_new_per_subject: spec.discard_per_subject.unwrap_or(false),
        consumer_limits,
        metadata,
        allow_msg_ttl,
        subject_delete_marker_ttl: sdm_ttl,
        allow_msg_counter: spec.allow_msg_counter.unwrap_or(false),
        allow_atomic: spec.allow_atomic_publish.unwrap_or(false),
        allow_msg_schedules,
        allow_batched: spec.allow_batched.unwrap_or(false),
        persist_mode: match spec.persist_mode {
            Some(PersistMode::Async) => Some("async".into()),
            _ => None,
        },
    };
    if sealed {
        seal(&mut config);
    }
    Ok(config)
}

/// What sealing does to a stream (configUpdateCheckLocked: "adjustments for being
/// sealed", applied even to pedantic requests): no max age, discard new, no deletes, no
/// purges, no roll-ups.
pub fn seal(c: &mut StreamConfig) {
    c.sealed = true;
    c.max_age = 0;
    c.discard = "new".into();
    c.deny_delete = true;
    c.deny_purge = true;
    c.allow_rollup_hdrs = false;
}

/// A mirror's direct get follows its origin's `allow_direct` when the origin is in the
/// same JetStream and the spec does not say (checkStreamCfg: "Determine if we are
/// inheriting direct gets"; a pedantic request with another value is refused).
pub fn inherit_from_origin(
    c: &mut StreamConfig,
    spec_mirror_direct: Option<bool>,
    origin: &StreamConfig,
) {
    if c.mirror.is_some() && spec_mirror_direct.is_none() {
        c.mirror_direct = origin.allow_direct;
    }
}

/// The origin of a mirror in the same JetStream (not external), whose settings shape the
/// mirror's.
pub fn mirror_origin(spec: &StreamSpec) -> Option<String> {
    spec.mirror
        .as_ref()
        .filter(|m| {
            nonempty(&m.external_api_prefix).is_none()
                && nonempty(&m.external_deliver_prefix).is_none()
        })
        .map(|m| m.name.clone())
}

/// Normalises a config (ours or the server's) so that equal meaning gives equal values:
/// server-added `_nats.*` metadata dropped, zero limits as -1, sets sorted, empty blocks
/// as absent.
pub fn normalize(mut c: StreamConfig) -> StreamConfig {
    c.metadata.retain(|k, _| !k.starts_with("_nats."));
    for v in [
        &mut c.max_consumers,
        &mut c.max_msgs,
        &mut c.max_bytes,
        &mut c.max_msgs_per_subject,
        &mut c.max_msg_size,
    ] {
        if *v == 0 || *v < -1 {
            *v = -1;
        }
    }
    if c.num_replicas == 0 {
        c.num_replicas = 1;
    }
    if c.retention.is_empty() {
        c.retention = "limits".into();
    }
    if c.discard.is_empty() {
        c.discard = "old".into();
    }
    if c.storage.is_empty() {
        c.storage = "file".into();
    }
    if c.compression.is_empty() {
        c.compression = "none".into();
    }
    if c.description.as_deref() == Some("") {
        c.description = None;
    }
    if c.persist_mode
        .as_deref()
        .is_some_and(|m| m.is_empty() || m == "default")
    {
        c.persist_mode = None;
    }
    if c.consumer_limits.as_ref().is_some_and(|l| l.is_empty()) {
        c.consumer_limits = None;
    }
    if let Some(p) = &mut c.placement {
        p.tags.sort();
        if p.cluster.is_empty() && p.tags.is_empty() {
            c.placement = None;
        }
    }
    c.subjects.sort();
    c.subjects.dedup();
    // Start times name instants: an offset or UTC mean the same.
    for src in c.sources.iter_mut().chain(c.mirror.as_mut()) {
        if let Some(t) = src
            .opt_start_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        {
            src.opt_start_time = Some(t.to_string());
        }
    }
    c.sources.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.filter_subject.cmp(&b.filter_subject))
    });
    c
}

impl AssetConfig for StreamConfig {
    fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.metadata
    }

    fn normalized(&self) -> Self {
        normalize(self.clone())
    }

    fn subjects(&self) -> Option<&[String]> {
        Some(&self.subjects)
    }

    /// Before 2.14.0, checkStreamCfg gave streams with sources the default duplicate
    /// window too (only a mirror kept 0).
    fn for_server(&mut self, version: ServerVersion) {
        if version < (2, 14, 0)
            && self.duplicate_window == 0
            && self.mirror.is_none()
            && !self.sources.is_empty()
        {
            self.duplicate_window = default_duplicate_window(self.max_age);
        }
    }

    /// The first release whose `StreamConfig` carries the field.
    fn introduced_in(field: &str) -> Option<&'static str> {
        Some(match field {
            "metadata" | "compression" | "first_seq" | "subject_transform" | "consumer_limits" => {
                "2.10"
            }
            "allow_msg_ttl" | "subject_delete_marker_ttl" => "2.11",
            "allow_msg_counter" | "allow_atomic" | "allow_msg_schedules" | "persist_mode" => "2.12",
            "allow_batched" => "2.14",
            _ => return None,
        })
    }

    /// The settings of the releases after 2.10 (server/stream.go `StreamConfig`, release
    /// by release).
    fn needs_newer(&self, version: ServerVersion) -> Vec<String> {
        let persist = self
            .persist_mode
            .as_deref()
            .is_some_and(|m| !m.is_empty() && m != "default");
        newer_than(
            version,
            &[
                (self.allow_msg_ttl, "allow_msg_ttl", "2.11"),
                (
                    self.subject_delete_marker_ttl > 0,
                    "subject_delete_marker_ttl",
                    "2.11",
                ),
                (self.allow_msg_counter, "allow_msg_counter", "2.12"),
                (self.allow_atomic, "allow_atomic", "2.12"),
                (self.allow_msg_schedules, "allow_msg_schedules", "2.12"),
                (persist, "persist_mode", "2.12"),
                (self.allow_batched, "allow_batched", "2.14"),
            ],
        )
    }

    const CREATE_ONLY: &'static [&'static str] = &["first_seq"];

    fn changes(desired: &Self, actual: &Self) -> Vec<String> {
        let d = normalize(desired.clone());
        let mut a = normalize(actual.clone());
        // first_seq only applies at creation.
        a.first_seq = d.first_seq;
        changed_fields(&d, &a)
    }

    fn creatable(&self) -> Option<Self> {
        // A stream cannot be created sealed: create it open, then seal it.
        self.sealed.then(|| {
            let mut open = self.clone();
            open.sealed = false;
            open
        })
    }

    fn immutable(desired: &Self, actual: &Self, changes: &[String]) -> Vec<String> {
        let one_way = |field: &str, d: bool, a: bool| {
            (a && !d).then(|| describe(field, a, d, "it can only be turned on"))
        };
        changes
            .iter()
            .filter_map(|field| match field.as_str() {
                "storage" => Some(describe(
                    field,
                    &actual.storage,
                    &desired.storage,
                    "the storage type cannot change",
                )),
                "retention"
                    if desired.retention == "workqueue" || actual.retention == "workqueue" =>
                {
                    Some(describe(
                        field,
                        &actual.retention,
                        &desired.retention,
                        "retention cannot change to or from workqueue",
                    ))
                }
                // Removing a mirror (promoting it) is allowed; adding or changing one is not.
                "mirror" if desired.mirror.is_some() => Some(format!(
                    "mirror (a mirror cannot be added to a stream or changed; the server has {})",
                    actual
                        .mirror
                        .as_ref()
                        .map(|m| format!("a mirror of {}", m.name))
                        .unwrap_or_else(|| "none".into())
                )),
                "persist_mode" => Some(describe(
                    field,
                    actual.persist_mode.as_deref().unwrap_or("default"),
                    desired.persist_mode.as_deref().unwrap_or("default"),
                    "the persist mode cannot change",
                )),
                "allow_msg_counter" => Some(describe(
                    field,
                    actual.allow_msg_counter,
                    desired.allow_msg_counter,
                    "a stream is a counter stream for life",
                )),
                "sealed" => one_way(field, desired.sealed, actual.sealed),
                "deny_delete" => one_way(field, desired.deny_delete, actual.deny_delete),
                "deny_purge" => one_way(field, desired.deny_purge, actual.deny_purge),
                "allow_msg_ttl" => one_way(field, desired.allow_msg_ttl, actual.allow_msg_ttl),
                "allow_msg_schedules" => one_way(
                    field,
                    desired.allow_msg_schedules,
                    actual.allow_msg_schedules,
                ),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> StreamSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn owner() -> Owner {
        Owner::new("Stream", "team-a", "orders", None)
    }

    #[test]
    fn minimal_spec_gets_server_defaults() {
        let c = desired(&spec("name: sync\nsubjects: [sync.>]\n"), &owner()).unwrap();
        assert_eq!(c.retention, "limits");
        assert_eq!(c.storage, "file");
        assert_eq!(c.discard, "old");
        assert_eq!(c.max_msgs, -1);
        assert_eq!(c.max_age, 0);
        assert_eq!(c.num_replicas, 1);
        assert_eq!(c.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(c.compression, "none");
        assert_eq!(
            c.metadata.get("jetstream.nats.io/owner").unwrap(),
            "team-a/orders"
        );
    }

    #[test]
    fn subjects_default_to_the_name() {
        let c = desired(&spec("name: orders\n"), &owner()).unwrap();
        assert_eq!(c.subjects, vec!["orders"]);
    }

    #[test]
    fn duplicate_window_follows_a_short_max_age() {
        let c = desired(&spec("name: s\nmaxAge: 30s\n"), &owner()).unwrap();
        assert_eq!(c.duplicate_window, 30_000_000_000);
        let err = desired(
            &spec("name: s\nmaxAge: 30s\nduplicateWindow: 1m\n"),
            &owner(),
        )
        .unwrap_err();
        assert!(err.0.contains("duplicateWindow"));
    }

    #[test]
    fn nack_materialised_defaults_mean_the_same_as_omitted() {
        let nack = spec(
            r#"
name: sync
subjects: [sync.>]
retention: limits
maxConsumers: -1
maxMsgs: -1
maxBytes: -1
maxAge: ''
maxMsgSize: -1
storage: file
replicas: 1
noAck: false
discard: old
maxMsgsPerSubject: 0
compression: ''
firstSequence: 0
allowDirect: false
allowRollup: false
denyDelete: false
denyPurge: false
discardPerSubject: false
preventDelete: false
preventUpdate: false
servers: []
creds: ''
nkey: ''
"#,
        );
        let plain = spec("name: sync\nsubjects: [sync.>]\n");
        assert_eq!(
            desired(&nack, &owner()).unwrap(),
            desired(&plain, &owner()).unwrap()
        );
    }

    #[test]
    fn derived_flags_for_markers_and_schedules() {
        let c = desired(&spec("name: s\nsubjectDeleteMarkerTtl: 5s\n"), &owner()).unwrap();
        assert!(c.allow_msg_ttl && c.allow_rollup_hdrs);
        let c = desired(&spec("name: s\nallowMsgSchedules: true\n"), &owner()).unwrap();
        assert!(c.allow_rollup_hdrs);
    }

    #[test]
    fn server_echo_is_not_drift() {
        let d = desired(
            &spec("name: sync\nsubjects: [sync.>]\nmaxAge: 1h\n"),
            &owner(),
        )
        .unwrap();
        // What a 2.15 server returns for that create.
        let echoed: StreamConfig = serde_json::from_value(serde_json::json!({
            "name": "sync", "subjects": ["sync.>"], "retention": "limits",
            "max_consumers": -1, "max_msgs": -1, "max_bytes": -1, "max_age": 3_600_000_000_000i64,
            "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "old", "storage": "file",
            "num_replicas": 1, "duplicate_window": 120_000_000_000i64, "compression": "none",
            "allow_direct": false, "mirror_direct": false, "sealed": false, "deny_delete": false,
            "deny_purge": false, "allow_rollup_hdrs": false, "consumer_limits": {},
            "allow_msg_ttl": false,
            "metadata": {"_nats.level": "5", "_nats.req.level": "0", "_nats.ver": "2.15.1",
                         "jetstream.nats.io/owner": "team-a/orders"}
        }))
        .unwrap();
        assert!(
            StreamConfig::changes(&d, &echoed).is_empty(),
            "{:?}",
            StreamConfig::changes(&d, &echoed)
        );
    }

    #[test]
    fn diff_names_changed_and_reset_fields() {
        let d = desired(&spec("name: s\nsubjects: [a, b]\n"), &owner()).unwrap();
        let mut a = d.clone();
        a.max_age = 60_000_000_000;
        a.subjects = vec!["b".into(), "a".into()]; // order does not matter
        a.allow_direct = true; // turned on behind our back: must go back off
        a.metadata.insert("_nats.ver".into(), "2.15.1".into());
        assert_eq!(
            StreamConfig::changes(&d, &a),
            vec!["allow_direct", "max_age"]
        );
    }

    #[test]
    fn server_rules_for_sources_sealing_and_mirrors() {
        // Sources (like a mirror) keep a duplicate window of 0.
        let c = desired(&spec("name: s\nsources:\n- name: a\n"), &owner()).unwrap();
        assert_eq!(c.duplicate_window, 0);
        // Sealing forces its settings; a sealed stream is created open first.
        let c = desired(&spec("name: s\nmaxAge: 1h\nsealed: true\n"), &owner()).unwrap();
        assert!(c.sealed && c.deny_delete && c.deny_purge);
        assert_eq!((c.max_age, c.discard.as_str()), (0, "new"));
        let open = c.creatable().expect("created open first");
        assert!(!open.sealed);
        assert!(
            desired(&spec("name: s\n"), &owner())
                .unwrap()
                .creatable()
                .is_none()
        );
        // A mirror's direct get follows its origin's, unless the spec says.
        let mut m = desired(&spec("name: m\nmirror: {name: o}\n"), &owner()).unwrap();
        let origin = StreamConfig {
            name: "o".into(),
            allow_direct: true,
            ..Default::default()
        };
        inherit_from_origin(&mut m, None, &origin);
        assert!(m.mirror_direct);
        let mut m = desired(
            &spec("name: m\nmirror: {name: o}\nmirrorDirect: false\n"),
            &owner(),
        )
        .unwrap();
        inherit_from_origin(&mut m, Some(false), &origin);
        assert!(!m.mirror_direct);
        assert_eq!(
            mirror_origin(&spec("name: m\nmirror: {name: o}\n")).as_deref(),
            Some("o")
        );
        assert_eq!(
            mirror_origin(&spec(
                "name: m\nmirror: {name: o, externalApiPrefix: $JS.hub.API}\n"
            )),
            None
        );
    }

    /// The drift scan's fingerprints agree with the field comparison: equal exactly
    /// where nothing drifted.
    #[test]
    fn fingerprints_follow_drift() {
        use crate::jetstream::config::{drifted, fingerprint};
        let d = desired(
            &spec("name: s\nsubjects: [a, b]\nfirstSequence: 9\n"),
            &owner(),
        )
        .unwrap();
        type Change = fn(&mut StreamConfig);
        let variants: Vec<(&str, Change)> = vec![
            ("server metadata", |c| {
                c.metadata.insert("_nats.ver".into(), "2.15.1".into());
            }),
            ("subjects reordered", |c| c.subjects.reverse()),
            ("first sequence", |c| c.first_seq = 0),
            ("server default made explicit", |c| c.max_msgs = 0),
            ("description", |c| c.description = Some("edited".into())),
            ("max age", |c| c.max_age = 1),
            ("marker removed", |c| {
                c.metadata.clear();
            }),
            ("user metadata", |c| {
                c.metadata.insert("team".into(), "x".into());
            }),
        ];
        for (what, change) in variants {
            let mut a = d.clone();
            change(&mut a);
            assert_eq!(
                fingerprint(&d) != fingerprint(&a),
                drifted(&d, &a),
                "{what}"
            );
        }
        assert_eq!(fingerprint(&d), fingerprint(&d.clone()));
    }

    #[test]
    fn first_seq_is_create_only() {
        let d = desired(&spec("name: s\nfirstSequence: 100\n"), &owner()).unwrap();
        let mut a = d.clone();
        a.first_seq = 0;
        assert!(StreamConfig::changes(&d, &a).is_empty());
    }

    #[test]
    fn external_prefixes_map_to_external() {
        let c = desired(
            &spec("name: s\nsources:\n- name: origin\n  externalApiPrefix: $JS.hub.API\n"),
            &owner(),
        )
        .unwrap();
        assert_eq!(c.sources[0].external.as_ref().unwrap().api, "$JS.hub.API");
        assert!(c.subjects.is_empty());
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("domain"));
    }

    #[test]
    fn unset_new_fields_are_not_sent() {
        let c = desired(&spec("name: s\n"), &owner()).unwrap();
        let json = serde_json::to_value(&c).unwrap();
        for k in [
            "allow_batched",
            "allow_msg_counter",
            "allow_atomic",
            "persist_mode",
            "subject_delete_marker_ttl",
        ] {
            assert!(json.get(k).is_none(), "{k} should be left out");
        }
    }
}
