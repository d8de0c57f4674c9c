//! Fields and schema helpers shared by the asset kinds (Stream, Consumer, KeyValue, ObjectStore).

use schemars::JsonSchema;

use super::conditions::Condition;
use serde::{Deserialize, Serialize};

/// Go `time.ParseDuration` syntax (`90s`, `1h30m`, `500ms`, `1.5h`), non-negative, or empty.
/// The empty string is accepted because NACK's schema defaulted several durations to `''`;
/// it means "not set".
pub const DURATION_PATTERN: &str =
    r"^$|^0$|^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$";

/// An RFC 3339 timestamp (`2026-01-02T15:04:05Z`), or empty for "not set".
pub const RFC3339_PATTERN: &str = r"^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

/// A NATS subject (or subject filter): dot-separated tokens, none empty, no whitespace,
/// `>` only as the whole last token; or empty for "not set". A manifest template that
/// joins two subjects with a space (`emails.send emails.bounce`) is refused at admission,
/// with the subject named in the error.
pub const SUBJECT_PATTERN: &str = r"^$|^>$|^[^\s.>]+(\.[^\s.>]+)*(\.>)?$";

/// A JetStream asset name: no whitespace, `.`, `*`, `>`, `/` or `\`.
pub const ASSET_NAME_PATTERN: &str = r"^[^.*>/\\\s]+$";

/// CEL: user metadata must not use the keys the server (`_nats.`) or the operator
/// (`jetstream.nats.io/`) write.
pub const RESERVED_METADATA_RULE: &str =
    "self.all(k, !k.startsWith('_nats.') && !k.startsWith('jetstream.nats.io/'))";
/// The message of [`RESERVED_METADATA_RULE`].
pub const RESERVED_METADATA_MESSAGE: &str =
    "metadata keys starting with _nats. or jetstream.nats.io/ are reserved";
/// CEL (transition): storage, omitted meaning `file`, cannot change.
pub const STORAGE_IMMUTABLE_RULE: &str = "(has(self.storage) ? self.storage : 'file') == (has(oldSelf.storage) ? oldSelf.storage : 'file')";

/// The connection, ownership and deletion fields every asset kind carries (NACK's
/// `BaseStreamConfig` and `ConnectionOpts`), flattened into each spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// When true, deleting this object keeps the JetStream asset: it is left in place,
    /// unowned, for another object (or a person) to take over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_delete: bool,

    /// When true, the asset is created when missing but never updated. Differences
    /// between the spec and the server are reported in the status, not applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_update: bool,

    /// What happens to the JetStream asset when this object is deleted: `Delete` deletes
    /// it, `Orphan` keeps it (unowned, for another object or a person to take over).
    /// Unset: `Delete` for an asset this object created, and for an asset it adopted the
    /// operator's `--adopted-deletion-policy` (`Orphan` unless configured otherwise).
    /// `preventDelete: true` always keeps the asset. `status.deletionPolicy` shows the
    /// policy that applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Name of an Account object that holds the connection settings (servers,
    /// credentials, TLS) to use for this asset. Fields set on this object override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[^.*>]*$"))]
    pub account: Option<String>,

    /// NATS server URLs to connect to (for example `nats://nats.nats:4222`), overriding
    /// the Account's servers and the operator's default connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,

    /// Path, inside the operator's pod, to a NATS credentials (`.creds`) file. The file
    /// must be mounted into the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds: Option<String>,

    /// Path, inside the operator's pod, to a file holding an NKey seed. The file must be
    /// mounted into the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,

    /// TLS client certificate, key and root CAs, as file paths inside the operator's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,

    /// Start TLS before the NATS protocol handshake (the server must enable
    /// `handshake_first`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_first: bool,

    /// JetStream domain of the asset, for leaf nodes and hub/spoke setups. The JetStream
    /// API is reached at `$JS.<domain>.API`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js_domain: Option<String>,
}

/// What deleting the object does to its JetStream asset: `Delete` deletes it, `Orphan`
/// keeps it, unowned, for another object or a person to take over. In the spec, unset
/// means `Delete` for an asset the object created and the operator's
/// `--adopted-deletion-policy` (`Orphan` unless configured otherwise) for an asset it
/// adopted; `preventDelete: true` always keeps the asset. In the status: the policy that
/// applies now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the asset with the object.
    Delete,
    /// Keep the asset, unowned, when the object is deleted.
    Orphan,
}

/// TLS material given as file paths mounted into the operator's pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsFiles {
    /// Path to the client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// Path to the client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Paths to CA certificates (PEM) that verify the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_cas: Vec<String>,
}

/// Status shared by the asset kinds. It says what the object is bound to and holds the
/// kstatus conditions; fast-moving counters (messages, bytes) are metrics, not status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Ready` (the asset matches this generation's spec),
    /// `Reconciling` (work remains), `Stalled` (retrying cannot help until something
    /// changes).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_conditions"
    )]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Name of the JetStream asset this object manages (the stream name, the consumer's
    /// durable name, or the backing stream of a bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_name: Option<String>,

    /// The stream a Consumer belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,

    /// The NATS servers the asset lives on, as resolved from the object, its Account and
    /// the operator's default (no credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<String>,

    /// The Account object whose connection settings are used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,

    /// The JetStream API prefix used to reach the asset (set for domains and imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_prefix: Option<String>,

    /// True when the asset existed before this object and was taken over by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,

    /// What deleting this object will do to the asset (`Delete` or `Orphan`), from
    /// `spec.deletionPolicy`, `spec.preventDelete` and whether the asset was adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Name of the server leading the asset's replica group, when clustered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_leader: Option<String>,

    /// Number of replicas the server reports for the asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,

    /// The subjects the stream stores, comma-separated (what `kubectl get streams` shows;
    /// the subjects default to the stream's name). Past 1,024 characters, the ones that fit
    /// and how many more there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<String>,
}

/// Reads a condition list, skipping entries that are not valid Kubernetes conditions
/// (NACK wrote its own condition shape; an object must never become unreadable because
/// of an old status).
pub fn lenient_conditions<'de, D>(d: D) -> Result<Vec<Condition>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: Option<Vec<serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|mut v| {
            // Fill what NACK may have left out, then parse strictly.
            if let Some(o) = v.as_object_mut() {
                for k in ["reason", "message"] {
                    o.entry(k)
                        .or_insert_with(|| serde_json::Value::String(String::new()));
                }
                o.entry("lastTransitionTime")
                    .or_insert_with(|| serde_json::Value::String("1970-01-01T00:00:00Z".into()));
            }
            serde_json::from_value(v).ok()
        })
        .collect())
}

/// Schema of `status.conditions`: the standard Kubernetes Condition list, merged by `type`
/// under server-side apply.
pub fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "description": "A standard Kubernetes condition.",
            "properties": {
                "lastTransitionTime": {
                    "description": "When the condition last changed status.",
                    "format": "date-time",
                    "type": "string"
                },
                "message": {
                    "description": "Human-readable details.",
                    "type": "string"
                },
                "observedGeneration": {
                    "description": "The metadata.generation the condition was computed for.",
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0
                },
                "reason": {
                    "description": "CamelCase reason for the condition's status.",
                    "type": "string"
                },
                "status": {
                    "description": "True, False or Unknown.",
                    "type": "string",
                    "enum": ["True", "False", "Unknown"]
                },
                "type": {
                    "description": "Condition type: Ready, Reconciling or Stalled.",
                    "type": "string"
                }
            },
            "required": ["type", "status"]
        }
    }))
    .unwrap_or_default()
}

/// Parses a Go-syntax duration string (as accepted by [`DURATION_PATTERN`]) into
/// nanoseconds, by the rules of Go's `time.ParseDuration` (which NACK and nats-server use):
/// a value beyond 2562047h47m16.854775807s is an error, never a wrap or a panic. Empty
/// means `None`.
pub fn parse_duration_nanos(s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| format!("invalid duration {s:?}: {why}");
    if s.starts_with('-') {
        return Err(invalid("must not be negative"));
    }
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(Some(0));
    }
    if rest.is_empty() {
        return Err(invalid("no value"));
    }
    const LIMIT: u64 = 1 << 63;
    let too_large = || invalid("too large (at most 2562047h47m16.854775807s)");
    let mut total: u64 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        // The integer part.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for b in rest[..digits].bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(b - b'0')))
                .filter(|w| *w <= LIMIT)
                .ok_or_else(too_large)?;
        }
        rest = &rest[digits..];
        // The fraction: digits past what a u64 holds add nothing (as in Go).
        let (mut fraction, mut scale, mut fraction_digits) = (0u64, 1f64, 0usize);
        if let Some(after) = rest.strip_prefix('.') {
            fraction_digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflowed = false;
            for b in after[..fraction_digits].bytes() {
                if overflowed {
                    continue;
                }
                match fraction
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(b - b'0')))
                    .filter(|f| *f <= LIMIT)
                {
                    Some(f) => {
                        fraction = f;
                        scale *= 10.0;
                    }
                    None => overflowed = true,
                }
            }
            rest = &after[fraction_digits..];
        }
        if digits == 0 && fraction_digits == 0 {
            return Err(invalid("expected a number"));
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid("missing unit")),
            other => return Err(invalid(&format!("unknown unit {other:?}"))),
        };
        rest = &rest[unit_len..];
        if whole > LIMIT / unit {
            return Err(too_large());
        }
        let mut v = whole * unit;
        if fraction > 0 {
            // Go adds the fraction through a float64, truncating.
            v = v
                .checked_add((fraction as f64 * (unit as f64 / scale)) as u64)
                .filter(|v| *v <= LIMIT)
                .ok_or_else(too_large)?;
        }
        total = total
            .checked_add(v)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(too_large)?;
    }
    i64::try_from(total).map(Some).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_status_never_makes_an_object_unreadable() {
        let s: AssetStatus = serde_json::from_value(serde_json::json!({
            "observedGeneration": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                 "lastTransitionTime": "2024-05-01T10:00:00.123456789Z"},
                {"type": "Ready2", "status": "True"},
                {"type": "Broken", "status": "True", "lastTransitionTime": "yesterday"}
            ]
        }))
        .unwrap();
        assert_eq!(s.conditions.len(), 2);
        assert_eq!(s.conditions[0].type_, "Ready");
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn durations_parse_go_syntax() {
        assert_eq!(parse_duration_nanos("").unwrap(), None);
        assert_eq!(parse_duration_nanos("0").unwrap(), Some(0));
        assert_eq!(parse_duration_nanos("90s").unwrap(), Some(90_000_000_000));
        assert_eq!(
            parse_duration_nanos("1h30m").unwrap(),
            Some(5_400_000_000_000)
        );
        assert_eq!(parse_duration_nanos("1ns").unwrap(), Some(1));
        assert_eq!(parse_duration_nanos("1.5s").unwrap(), Some(1_500_000_000));
        assert!(parse_duration_nanos("1d").is_err());
        assert!(parse_duration_nanos("-1s").is_err());
    }

    #[test]
    fn duration_pattern_matches_go_syntax_only() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in [
            "", "0", "90s", "1h30m", "500ms", "1.5h", "10us", "2µs", ".5s",
        ] {
            assert!(re.is_match(ok), "{ok} should match");
            assert!(parse_duration_nanos(ok).is_ok(), "{ok} should parse");
        }
        for bad in ["1d", "-1s", "s", "10", "1 h", "1h 2m", "forever"] {
            assert!(!re.is_match(bad), "{bad} should not match");
        }
    }

    /// Go's `time.ParseDuration` values at the edges; the three large ones were found by the
    /// spec fuzzer (`controller::fuzz_tests`), where they panicked inside the parser used
    /// before.
    #[test]
    fn durations_follow_go_and_never_overflow() {
        for (s, nanos) in [
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
            ("3.000000001s", 3_000_000_001),
            ("1h30m", 5_400_000_000_000),
            ("1µs", 1_000),
            ("1\u{3bc}s", 1_000),
            ("100.00000000000000000000001s", 100_000_000_000),
            ("2562047h47m16.854775807s", i64::MAX),
            ("9223372036854775807ns", i64::MAX),
        ] {
            assert_eq!(parse_duration_nanos(s), Ok(Some(nanos)), "{s}");
        }
        for s in [
            "5130000000000000h",
            "307500000000000000m",
            "20000000000000000000000ms",
            "9223372036854775808ns",
            "2562047h47m16.854775808s",
            "2562047h1h",
            "1d",
            "1",
            ".s",
            "-1s",
        ] {
            let e = parse_duration_nanos(s).expect_err(s);
            assert!(e.starts_with(&format!("invalid duration {s:?}")), "{e}");
        }
    }

    #[test]
    fn rfc3339_pattern() {
        let re = regex::Regex::new(RFC3339_PATTERN).unwrap();
        for ok in ["", "2026-01-02T15:04:05Z", "2026-01-02T15:04:05.123+02:00"] {
            assert!(re.is_match(ok), "{ok} should match");
        }
        for bad in ["2026-01-02", "yesterday", "2026-01-02 15:04:05Z"] {
            assert!(!re.is_match(bad), "{bad} should not match");
        }
    }
}
