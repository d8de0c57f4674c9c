//! What every controller shares: settings, the Kubernetes client, NATS connections,
//! metrics, the event recorder, the registry of managed objects and small caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use rand::Rng;
use tracing::warn;

use crate::api::common::{AssetStatus, CommonSpec, DeletionPolicy};
use crate::jetstream::connection::Pool;
use crate::metrics::{ErrorCategory, Metrics, Write};

use super::connect::{DefaultConnection, Resolver, listed};
use super::plan::{self, AdoptionPolicy};
use super::registry::Registry;
use super::stream_reads::StreamReads;

/// Name of the field manager and the event reporter.
pub const MANAGER: &str = "jetstream-operator";

/// Operator settings, from the command line (which holds their defaults).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Drift scan interval.
    pub resync: Duration,
    /// Concurrent reconciles per kind and namespace.
    pub concurrency: u16,
    /// What to do with existing unowned assets.
    pub adoption: AdoptionPolicy,
    /// Namespaces whose objects may adopt existing unowned assets (empty: all).
    pub adoption_namespaces: Vec<String>,
    /// What deleting an object does to an asset it adopted, when its spec does not say.
    pub adopted_deletion_policy: DeletionPolicy,
    /// Change nothing in JetStream.
    pub read_only: bool,
    /// Cluster name stamped into the ownership marker.
    pub cluster_name: Option<String>,
    /// Timeout of one JetStream API request.
    pub request_timeout: Duration,
    /// Namespaces to watch (empty: all).
    pub namespaces: Vec<String>,
    /// The operator's own connection.
    pub default_connection: DefaultConnection,
    /// Namespaces whose objects may use the operator's own connection (empty: all).
    pub default_connection_namespaces: Vec<String>,
    /// Directories under which file paths written in specs (credentials, NKey seeds, TLS
    /// material) may be read; empty: no paths from specs.
    pub credentials_dirs: Vec<std::path::PathBuf>,
    /// Longest time a deletion retries an unreachable server before releasing the
    /// object with a Warning event.
    pub deletion_grace: Duration,
    /// Maximum open NATS connections.
    pub max_connections: usize,
    /// Pod name, for event reporting.
    pub instance: Option<String>,
}

impl Settings {
    /// The policies the reconcile of an object in `namespace` runs under.
    pub fn policies(&self, namespace: &str, common: &CommonSpec) -> plan::Policies {
        plan::Policies {
            read_only: self.read_only,
            prevent_update: common.prevent_update,
            prevent_delete: common.prevent_delete,
            adoption: self.adoption,
            may_adopt_here: listed(&self.adoption_namespaces, namespace),
            deletion_policy: common.deletion_policy,
            adopted_deletion_policy: self.adopted_deletion_policy,
        }
    }
}

/// Errors of the Kubernetes side of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// Serialising a patch failed.
    #[error("serialisation error: {0}")]
    Serde(#[from] serde_json::Error),
    /// Leadership was lost: this process writes nothing more ([`crate::fence`]).
    #[error("{}", crate::fence::FENCED)]
    Fenced,
}

impl Error {
    /// The bounded category, for metrics.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => ErrorCategory::KubeConflict,
            Error::Kube(_) | Error::Fenced => ErrorCategory::Kube,
            Error::Serde(_) => ErrorCategory::Serde,
        }
    }
}

/// Shared state of all controllers.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Settings.
    pub settings: Settings,
    /// NATS connections.
    pub pool: Pool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Managed objects.
    pub registry: Registry,
    /// Resolves the connections of objects and Accounts.
    pub resolver: Resolver,
    /// Stream configurations read or written recently (consumers' limits).
    pub stream_reads: StreamReads,
    /// Consecutive transient failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The status last written per object (by uid): newer than a cached object can be, so
    /// decisions never rest on a status the operator has already replaced.
    written: Mutex<HashMap<String, AssetStatus>>,
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: kube::Client,
        settings: Settings,
        pool: Pool,
        metrics: Arc<Metrics>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: settings.instance.clone(),
            },
        );
        let resolver = Resolver::new(
            client.clone(),
            settings.default_connection.clone(),
            settings.default_connection_namespaces.clone(),
            settings.credentials_dirs.clone(),
        );
        let stream_reads = StreamReads::new(settings.resync, 100_000);
        Self {
            client,
            settings,
            pool,
            metrics,
            recorder,
            registry: Registry::default(),
            resolver,
            stream_reads,
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        }
    }

    /// The status decisions about an object rest on: the one this process wrote last
    /// while the cached object does not carry it yet, else the cached one.
    pub fn latest_status(&self, uid: &str, cached: Option<&AssetStatus>) -> Option<AssetStatus> {
        self.written
            .lock()
            .ok()
            .and_then(|m| m.get(uid).cloned())
            .or_else(|| cached.cloned())
    }

    /// The cache has seen an object with this status: a written status it carries is no
    /// longer needed (so the map holds only writes the watch has not delivered yet).
    pub fn status_seen(&self, uid: &str, cached: Option<&AssetStatus>) {
        if let Ok(mut m) = self.written.lock()
            && m.get(uid).is_some_and(|w| Some(w) == cached)
        {
            m.remove(uid);
        }
    }

    /// Remembers the status written for an object (`None` forgets it).
    pub fn remember_status(&self, uid: &str, status: Option<AssetStatus>) {
        if let Ok(mut m) = self.written.lock() {
            match status {
                Some(s) => {
                    m.insert(uid.to_string(), s);
                }
                None => {
                    m.remove(uid);
                }
            }
        }
    }

    /// Publishes an event about an object. Failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: &'static str,
        event: &plan::Event,
    ) {
        let ev = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.note.clone()),
            action: event.reason.into(),
            secondary: None,
        };
        if !crate::fence::is_open() {
            return;
        }
        self.metrics.kube_write(kind, Write::Event);
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason = event.reason, "cannot publish event");
        }
    }

    /// Next backoff for an object after a transient failure: exponential from 1 s,
    /// capped at 2 minutes, with ±20 % jitter.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut m| {
                let n = m.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        let base = 1u64 << (n.saturating_sub(1)).min(7);
        let secs = (base as f64).min(120.0);
        let jitter = rand::rng().random_range(0.8..1.2);
        Duration::from_secs_f64(secs * jitter)
    }

    /// Forgets an object's failures.
    pub fn reset_backoff(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// The pooled connection for `settings` (opened now if there is none), keeping the
    /// open-connections gauge current from the first connection on.
    pub async fn connection(
        &self,
        settings: &crate::jetstream::connection::Settings,
    ) -> Result<Arc<crate::jetstream::connection::Conn>, crate::jetstream::error::JsError> {
        let conn = self.pool.get(settings).await;
        self.metrics.connections.set(self.pool.len() as i64);
        conn
    }

    /// The resync interval with ±10 % jitter.
    pub fn jittered_resync(&self) -> Duration {
        let jitter = rand::rng().random_range(0.9..1.1);
        self.settings.resync.mul_f64(jitter)
    }
}
