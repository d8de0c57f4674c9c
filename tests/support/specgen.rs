//! Specs generated from the CRD schemas themselves: a proptest strategy that walks a kind's
//! `openAPIV3Schema` and produces JSON the schema accepts (types, enums, patterns, lengths,
//! bounds, required and nullable fields, maps). What it cannot express — the CEL rules —
//! it does not try to: the pure code must not panic on those inputs either, and the
//! apiserver is the judge of them where a real one runs.
//!
//! Shared by the unit fuzz tests (`src/controller/fuzz_tests.rs`) and the integration
//! tests that send generated specs to a real apiserver and nats-server.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::{Map, Value, json};

/// Items generated for an array at most (schemas bound few arrays).
const MAX_ITEMS: usize = 4;
/// Entries generated for a map at most.
const MAX_ENTRIES: usize = 4;

/// The `spec` schema of a kind's served version, from its CRD.
pub fn spec_schema(crd: &Value) -> Value {
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let stored = versions
        .iter()
        .find(|v| v["storage"] == json!(true))
        .unwrap_or_else(|| panic!("no storage version in {crd}"));
    stored["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// JSON values the schema accepts.
pub fn value(schema: &Value) -> BoxedStrategy<Value> {
    if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        return prop_oneof![integer(schema), string(schema)].boxed();
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let arms: Vec<BoxedStrategy<Value>> = any.iter().map(value).collect();
        return Union::new(arms).boxed();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return proptest::sample::select(values.clone()).boxed();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => object(schema),
        Some("array") => {
            let items = value(&schema["items"]);
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .map_or(MAX_ITEMS, |m| (m as usize).min(MAX_ITEMS));
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            proptest::collection::vec(items, min..=max.max(min))
                .prop_map(Value::Array)
                .boxed()
        }
        Some("string") => string(schema),
        Some("integer") => integer(schema),
        Some("number") => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f))
            .boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
        _ => Just(json!({})).boxed(),
    }
}

fn object(schema: &Value) -> BoxedStrategy<Value> {
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = props
            .iter()
            .map(|(k, s)| {
                let key = k.clone();
                let v = value(s);
                if required.contains(k) {
                    v.prop_map(move |v| Some((key.clone(), v))).boxed()
                } else if s.get("nullable") == Some(&json!(true)) {
                    // Absent most of the time, sometimes an explicit null.
                    prop_oneof![
                        6 => Just(None),
                        1 => Just(Some((key.clone(), Value::Null))),
                        4 => v.prop_map(move |v| Some((key.clone(), v))),
                    ]
                    .boxed()
                } else {
                    prop_oneof![
                        3 => Just(None),
                        2 => v.prop_map(move |v| Some((key.clone(), v))),
                    ]
                    .boxed()
                }
            })
            .collect();
        return fields
            .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
            .boxed();
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        let max = schema
            .get("maxProperties")
            .and_then(Value::as_u64)
            .map_or(MAX_ENTRIES, |m| (m as usize).min(MAX_ENTRIES));
        return proptest::collection::btree_map(map_key(), value(extra), 0..=max)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed();
    }
    Just(json!({})).boxed()
}

/// Map keys: plain words, dotted and slashed names, unicode.
fn map_key() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z][a-z0-9_.-]{0,12}",
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}/[a-z]{1,8}",
        "\\PC{1,8}",
    ]
    .boxed()
}

fn bound(schema: &Value, key: &str) -> Option<i64> {
    schema.get(key).and_then(Value::as_f64).map(|f| f as i64)
}

fn integer(schema: &Value) -> BoxedStrategy<Value> {
    let int32 = schema.get("format") == Some(&json!("int32"));
    let lo = bound(schema, "minimum").unwrap_or(if int32 { i32::MIN as i64 } else { i64::MIN });
    let hi = bound(schema, "maximum").unwrap_or(if int32 { i32::MAX as i64 } else { i64::MAX });
    // The edges: where parsers, defaults and unit conversions break.
    let edges: Vec<i64> = [
        lo,
        hi,
        -1,
        0,
        1,
        2,
        100,
        1024,
        i32::MAX as i64,
        1 << 53,
        i64::MAX / 1_000_000_000,
        i64::MAX,
    ]
    .into_iter()
    .filter(|v| (lo..=hi).contains(v))
    .collect();
    prop_oneof![
        2 => proptest::sample::select(edges),
        1 => lo..=hi,
        2 => lo.max(-1)..=hi.min(100_000),
    ]
    .prop_map(|v| json!(v))
    .boxed()
}

/// Go durations, RFC 3339 times, subjects, words and unicode: what the spec's strings hold.
fn free_text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[a-z][a-z0-9-]{0,10}",
        "([0-9]{1,4}(ns|us|µs|ms|s|m|h)){1,3}",
        "[0-9]{1,20}",
        "[a-z]{1,6}(\\.[a-z*]{1,6}){0,3}(\\.>)?",
        "\\PC{0,24}",
        "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]0[0-9]:00)",
    ]
    .boxed()
}

/// A schema pattern without its `^` and `$` anchors (outside character classes), which
/// the generator does not take: every pattern in the CRDs is anchored at both ends, so the
/// strings generated from the rest match the whole pattern.
fn unanchored(pattern: &str) -> String {
    let mut out = String::new();
    let (mut escaped, mut class) = (false, false);
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => class = true,
            ']' => class = false,
            '^' | '$' if !class => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| m as usize);
    let base: BoxedStrategy<String> = if let Some(p) = schema.get("pattern").and_then(Value::as_str)
    {
        let p = unanchored(p);
        let any = proptest::string::string_regex(&p)
            .unwrap_or_else(|e| panic!("pattern {p}: {e}"))
            .boxed();
        if p.contains("(ns|us") {
            // Durations: mostly ones a user writes, besides anything the pattern allows
            // (which is mostly too long for a duration).
            prop_oneof![3 => "[1-9][0-9]{0,2}(ms|s|m|h)", 1 => any].boxed()
        } else {
            any
        }
    } else if schema.get("format") == Some(&json!("date-time")) {
        "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]0[0-9]:00)"
            .boxed()
    } else {
        free_text()
    };
    base.prop_filter("length within the schema's bounds", move |s| {
        let n = s.chars().count();
        n >= min && n <= max
    })
    .prop_map(Value::String)
    .boxed()
}
