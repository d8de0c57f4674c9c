//! What the operator manages right now, by connection: the index behind drift scans,
//! advisory routing and reconnect handling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::jetstream::api::JsApi;
use crate::jetstream::connection::ConnEvent;
use crate::jetstream::wire::{ConsumerConfig, StreamConfig};

/// Identity of a managed object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjKey {
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The JetStream asset an object manages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssetRef {
    /// A stream (Stream, and the backing streams of KeyValue and ObjectStore).
    Stream(String),
    /// A consumer on a stream.
    Consumer {
        /// Stream name.
        stream: String,
        /// Consumer name.
        name: String,
    },
}

impl AssetRef {
    /// The stream the asset lives in.
    pub fn stream(&self) -> &str {
        match self {
            AssetRef::Stream(s) => s,
            AssetRef::Consumer { stream, .. } => stream,
        }
    }
}

/// An asset's configuration, as expected or as seen on the server (normalised).
#[derive(Clone, Debug, PartialEq)]
pub enum AssetConfig {
    /// A stream's.
    Stream(Box<StreamConfig>),
    /// A consumer's.
    Consumer(Box<ConsumerConfig>),
}

/// One managed object.
#[derive(Clone)]
pub struct Registration {
    /// Connection key.
    pub conn: u64,
    /// API client for the asset's connection and prefix.
    pub js: JsApi,
    /// The asset.
    pub asset: AssetRef,
    /// Expected config (known once the object was Ready).
    pub expected: Option<AssetConfig>,
    /// The asset as last seen on the server, normalised (`None`: missing or not read).
    pub seen: Option<AssetConfig>,
    /// Ready condition is True.
    pub ready: bool,
    /// Asks the controller to reconcile this object now.
    pub trigger: Arc<dyn Fn() + Send + Sync>,
}

/// The set of managed objects.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<HashMap<ObjKey, Registration>>,
}

impl Registry {
    /// Adds or replaces an object.
    pub fn upsert(&self, key: ObjKey, reg: Registration) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(key, reg);
        }
    }

    /// Updates an existing registration in place.
    pub fn update(&self, key: &ObjKey, f: impl FnOnce(&mut Registration)) {
        if let Ok(mut m) = self.inner.lock()
            && let Some(r) = m.get_mut(key)
        {
            f(r);
        }
    }

    /// Removes an object.
    pub fn remove(&self, key: &ObjKey) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(key);
        }
    }

    /// A copy of every registration.
    pub fn snapshot(&self) -> Vec<(ObjKey, Registration)> {
        self.inner
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Objects of a kind whose Ready condition is True, and all objects of the kind.
    pub fn counts(&self, kind: &str) -> (i64, i64) {
        self.inner
            .lock()
            .map(|m| {
                let of_kind = m.iter().filter(|(k, _)| k.kind == kind);
                let all = of_kind.clone().count() as i64;
                let ready = of_kind.filter(|(_, r)| r.ready).count() as i64;
                (ready, all)
            })
            .unwrap_or((0, 0))
    }

    /// Triggers the consumers of a stream on a connection (the stream just became Ready).
    pub fn trigger_consumers_of(&self, conn: u64, stream: &str) -> usize {
        let targets: Vec<Arc<dyn Fn() + Send + Sync>> = match self.inner.lock() {
            Ok(m) => m
                .values()
                .filter(|r| {
                    r.conn == conn
                        && matches!(&r.asset, AssetRef::Consumer { stream: s, .. } if s == stream)
                })
                .map(|r| r.trigger.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        for t in &targets {
            t();
        }
        targets.len()
    }

    /// Triggers every object an event concerns; returns how many.
    pub fn dispatch(&self, event: &ConnEvent) -> usize {
        let targets: Vec<Arc<dyn Fn() + Send + Sync>> = match self.inner.lock() {
            Ok(m) => m
                .values()
                .filter(|r| match event {
                    ConnEvent::Reconnected { conn } | ConnEvent::Disconnected { conn } => {
                        r.conn == *conn
                    }
                    ConnEvent::StreamChanged { conn, stream } => {
                        r.conn == *conn && r.asset.stream() == stream
                    }
                    ConnEvent::StreamCreated { conn, stream } => {
                        r.conn == *conn
                            && matches!(&r.asset, AssetRef::Consumer { stream: s, .. } if s == stream)
                    }
                    ConnEvent::ConsumerDeleted {
                        conn,
                        stream,
                        consumer,
                    } => {
                        r.conn == *conn
                            && matches!(&r.asset, AssetRef::Consumer { stream: s, name } if s == stream && name == consumer)
                    }
                })
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
