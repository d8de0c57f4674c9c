//! Pieces shared by the spec -> config mappings of every kind: durations, limits, sources,
//! placement, republish, duplicate windows, and the error for a spec that cannot map.

use crate::api::common::parse_duration_nanos;
use crate::api::stream::{Placement, Republish, Storage, StreamSource};

use super::wire;

/// A spec that cannot become a valid configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// The server's default duplicate window (2 minutes).
pub const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

/// A Go-duration field in nanoseconds (0 when unset).
pub fn dur(field: &str, v: &Option<String>) -> Result<i64, InvalidSpec> {
    match v {
        None => Ok(0),
        Some(s) => parse_duration_nanos(s)
            .map(|d| d.unwrap_or(0))
            .map_err(|e| InvalidSpec(format!("{field}: {e}"))),
    }
}

/// A limit where 0, unset or anything below -1 means unlimited (-1).
pub fn limit(v: Option<i64>) -> i64 {
    match v {
        None | Some(0) => -1,
        Some(n) if n < -1 => -1,
        Some(n) => n,
    }
}

/// A string that is neither unset nor empty.
pub fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// Storage as the server names it (default file).
pub fn storage(s: Option<Storage>) -> String {
    match s.unwrap_or(Storage::File) {
        Storage::File => "file".into(),
        Storage::Memory => "memory".into(),
    }
}

/// The duplicate window the server picks when none is given: 2 minutes, or the max age
/// when that is shorter.
pub fn default_duplicate_window(max_age: i64) -> i64 {
    if max_age > 0 && max_age < DEFAULT_DUPLICATE_WINDOW {
        max_age
    } else {
        DEFAULT_DUPLICATE_WINDOW
    }
}

/// A placement, dropped when empty.
pub fn placement(p: &Option<Placement>) -> Option<wire::Placement> {
    p.as_ref().and_then(|p| {
        let cluster = p.cluster.clone().unwrap_or_default();
        (!cluster.is_empty() || !p.tags.is_empty()).then(|| wire::Placement {
            cluster,
            tags: p.tags.clone(),
        })
    })
}

/// A republish block (source defaults to all subjects, `>`).
pub fn republish(r: &Option<Republish>) -> Option<wire::Republish> {
    r.as_ref().map(|r| wire::Republish {
        src: r
            .source
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ">".into()),
        dest: r.destination.clone().unwrap_or_default(),
        headers_only: r.headers_only.unwrap_or(false),
    })
}

/// A mirror or source; external prefixes become the server's `external` block (never the
/// client-only `domain` field, which strict servers refuse and updates drop).
pub fn source(s: &StreamSource) -> wire::Source {
    let external = match (
        nonempty(&s.external_api_prefix),
        nonempty(&s.external_deliver_prefix),
    ) {
        (None, None) => None,
        (api, deliver) => Some(wire::External {
            api: api.unwrap_or_default(),
            deliver: deliver.unwrap_or_default(),
        }),
    };
    wire::Source {
        name: s.name.clone(),
        opt_start_seq: s.opt_start_seq.unwrap_or(0),
        // Sent as written (the server stores it so); compared as an instant.
        opt_start_time: nonempty(&s.opt_start_time),
        filter_subject: s.filter_subject.clone().unwrap_or_default(),
        subject_transforms: s
            .subject_transforms
            .iter()
            .map(|t| wire::Transform {
                src: t.source.clone().unwrap_or_default(),
                dest: t.dest.clone().unwrap_or_default(),
            })
            .collect(),
        external,
        consumer: s.consumer.as_ref().map(|c| wire::SourceConsumer {
            name: c.name.clone(),
            deliver_subject: c.deliver_subject.clone().unwrap_or_default(),
        }),
    }
}
