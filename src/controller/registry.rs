//! What the operator manages right now, by connection: the index behind drift scans,
//! advisory routing and reconnect handling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::jetstream::api::JsApi;
use crate::jetstream::asset::{AssetRef, Facts, Snapshot};
use crate::jetstream::connection::ConnEvent;

/// Identity of a managed object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjKey {
    /// The object's kind.
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// One managed object.
#[derive(Clone)]
pub struct Registration {
    /// Key of the connection the asset is reached on.
    pub conn: u64,
    /// API client for the asset's connection and prefix.
    pub js: JsApi,
    /// The asset it manages.
    pub asset: AssetRef,
    /// Fingerprint of the expected config (known once the object was Ready).
    pub expected: Option<Snapshot>,
    /// Fingerprint of the asset as last seen on the server (`None`: missing or not read).
    pub seen: Option<Snapshot>,
    /// Facts the status was last written with (leader, replicas, pause).
    pub facts: Facts,
    /// Ready condition is True.
    pub ready: bool,
    /// This process's last create of the asset, kept across reconciles.
    pub created: Option<Created>,
    /// Asks the controller to reconcile this object now.
    pub trigger: Arc<dyn Fn() + Send + Sync>,
}

/// When the operator last created an object's asset, and the streak that create made
/// (see [`plan::create_streak`](super::plan::create_streak)).
#[derive(Clone, Copy, Debug)]
pub struct Created {
    /// When.
    pub at: std::time::Instant,
    /// The creates in a row it made.
    pub streak: u32,
    /// The object's generation then: a changed spec starts a new count.
    pub generation: Option<i64>,
}

/// The set of managed objects, with per-kind counts kept as it changes (the ready-objects
/// metrics read them after every reconcile).
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    objects: HashMap<ObjKey, Registration>,
    /// Per kind: (Ready, all).
    counts: HashMap<&'static str, (i64, i64)>,
}

impl Inner {
    fn count(&mut self, kind: &'static str, ready: bool, delta: i64) {
        let c = self.counts.entry(kind).or_default();
        c.1 += delta;
        if ready {
            c.0 += delta;
        }
    }
}

impl Registry {
    /// Adds or replaces an object.
    pub fn upsert(&self, key: ObjKey, reg: Registration) {
        if let Ok(mut m) = self.inner.lock() {
            let kind = key.kind;
            let ready = reg.ready;
            if let Some(old) = m.objects.insert(key, reg) {
                m.count(kind, old.ready, -1);
            }
            m.count(kind, ready, 1);
        }
    }

    /// What the operator remembers of an object's asset from earlier reconciles: what the
    /// server was last seen to hold, and its last create.
    pub fn memory(&self, key: &ObjKey) -> (Option<Snapshot>, Option<Created>) {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.objects.get(key).map(|r| (r.seen, r.created)))
            .unwrap_or_default()
    }

    /// Updates an existing registration in place.
    pub fn update(&self, key: &ObjKey, f: impl FnOnce(&mut Registration)) {
        if let Ok(mut m) = self.inner.lock()
            && let Some(r) = m.objects.get_mut(key)
        {
            let before = r.ready;
            f(r);
            let after = r.ready;
            if before != after {
                m.count(key.kind, before, -1);
                m.count(key.kind, after, 1);
            }
        }
    }

    /// Removes an object.
    pub fn remove(&self, key: &ObjKey) {
        if let Ok(mut m) = self.inner.lock()
            && let Some(old) = m.objects.remove(key)
        {
            m.count(key.kind, old.ready, -1);
        }
    }

    /// A copy of every registration.
    pub fn snapshot(&self) -> Vec<(ObjKey, Registration)> {
        self.inner
            .lock()
            .map(|m| {
                m.objects
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Objects of a kind whose Ready condition is True, and all objects of the kind.
    pub fn counts(&self, kind: &str) -> (i64, i64) {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.counts.get(kind).copied())
            .unwrap_or((0, 0))
    }

    /// Triggers every object an event concerns; returns how many.
    pub fn dispatch(&self, event: &ConnEvent) -> usize {
        let targets: Vec<Arc<dyn Fn() + Send + Sync>> = match self.inner.lock() {
            Ok(m) => m
                .objects
                .values()
                .filter(|r| concerns(event, r.conn, &r.asset))
                .map(|r| r.trigger.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        for t in &targets {
            t();
        }
        targets.len()
    }
}

/// Whether an event on a connection concerns the object managing `asset` on connection
/// `on`.
fn concerns(event: &ConnEvent, on: u64, asset: &AssetRef) -> bool {
    match event {
        ConnEvent::Reconnected { conn } | ConnEvent::Disconnected { conn } => on == *conn,
        // A stream deleted: the stream, and its consumers, which went with it.
        ConnEvent::StreamDeleted { conn, stream } => on == *conn && asset.stream() == stream,
        // A stream edited or with a new leader moves no consumer: 10,000 consumers of one
        // stream are not re-read.
        ConnEvent::StreamUpdated { conn, stream }
        | ConnEvent::StreamLeaderElected { conn, stream } => {
            on == *conn && matches!(asset, AssetRef::Stream(s) if s == stream)
        }
        ConnEvent::StreamCreated { conn, stream } => {
            on == *conn && matches!(asset, AssetRef::Consumer { stream: s, .. } if s == stream)
        }
        ConnEvent::ConsumerChanged {
            conn,
            stream,
            consumer,
        } => {
            on == *conn
                && matches!(asset, AssetRef::Consumer { stream: s, name } if s == stream && name == consumer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_objects_they_concern() {
        let stream = AssetRef::Stream("orders".into());
        let consumer = AssetRef::Consumer {
            stream: "orders".into(),
            name: "worker".into(),
        };
        let other = AssetRef::Consumer {
            stream: "orders".into(),
            name: "audit".into(),
        };
        let s = || "orders".to_string();
        let cases = [
            (ConnEvent::Reconnected { conn: 1 }, [true, true, true]),
            (
                ConnEvent::StreamDeleted {
                    conn: 1,
                    stream: s(),
                },
                [true, true, true],
            ),
            (
                ConnEvent::StreamUpdated {
                    conn: 1,
                    stream: s(),
                },
                [true, false, false],
            ),
            (
                ConnEvent::StreamCreated {
                    conn: 1,
                    stream: s(),
                },
                [false, true, true],
            ),
            (
                ConnEvent::StreamLeaderElected {
                    conn: 1,
                    stream: s(),
                },
                [true, false, false],
            ),
            (
                ConnEvent::ConsumerChanged {
                    conn: 1,
                    stream: s(),
                    consumer: "worker".into(),
                },
                [false, true, false],
            ),
        ];
        for (event, want) in cases {
            for (asset, want) in [&stream, &consumer, &other].into_iter().zip(want) {
                assert_eq!(concerns(&event, 1, asset), want, "{event:?} for {asset:?}");
                // Never across connections.
                assert!(
                    !concerns(&event, 2, asset),
                    "{event:?} on another connection"
                );
            }
        }
    }
}
