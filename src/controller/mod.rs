//! The controllers: one per kind, on shared machinery (context, connection resolution,
//! the generic reconcile engine, status writing, drift scans and advisory routing).

pub mod account;
pub mod assets;
pub mod bucket;
pub mod connect;
pub mod consumer;
pub mod engine;
pub mod registry;
pub mod runner;
pub mod scanner;
pub mod status;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use rand::Rng;
use tracing::warn;

use crate::jetstream::connection::Pool;
use crate::metrics::Metrics;
use registry::Registry;

/// Name of the field manager and the event reporter.
pub const MANAGER: &str = "jetstream-operator";

/// What to do with an existing asset that no object owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AdoptionPolicy {
    /// Take it over: stamp it with the owner marker and manage it (the default, so NACK
    /// users can migrate).
    Adopt,
    /// Refuse: the object goes Stalled/ResourceConflict.
    Never,
}

/// The operator's global default connection (flags and environment).
#[derive(Clone, Debug, Default)]
pub struct DefaultConnection {
    /// Server URLs.
    pub servers: Vec<String>,
    /// Credentials file.
    pub creds: Option<String>,
    /// NKey seed file.
    pub nkey: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Token file.
    pub token_file: Option<String>,
    /// Password file.
    pub password_file: Option<String>,
    /// CA file.
    pub tls_ca: Option<String>,
    /// Client certificate file.
    pub tls_cert: Option<String>,
    /// Client key file.
    pub tls_key: Option<String>,
    /// TLS first.
    pub tls_first: bool,
    /// JetStream domain.
    pub js_domain: Option<String>,
    /// JetStream API prefix (for imports from another account).
    pub api_prefix: Option<String>,
}

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Drift scan interval.
    pub resync: Duration,
    /// Concurrent reconciles per kind and namespace.
    pub concurrency: u16,
    /// Adoption policy.
    pub adoption: AdoptionPolicy,
    /// Change nothing in JetStream.
    pub read_only: bool,
    /// Cluster name in the ownership marker.
    pub cluster_name: Option<String>,
    /// JetStream API request timeout.
    pub request_timeout: Duration,
    /// Namespaces to watch (empty: all).
    pub namespaces: Vec<String>,
    /// Default connection.
    pub default_connection: DefaultConnection,
    /// Longest time a deletion retries an unreachable server before releasing the
    /// object with a Warning event.
    pub deletion_grace: Duration,
    /// Maximum open NATS connections.
    pub max_connections: usize,
    /// Pod name, for event reporting.
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            concurrency: 16,
            adoption: AdoptionPolicy::Adopt,
            read_only: false,
            cluster_name: None,
            request_timeout: Duration::from_secs(10),
            namespaces: Vec::new(),
            default_connection: DefaultConnection::default(),
            deletion_grace: Duration::from_secs(300),
            max_connections: 64,
            instance: None,
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
}

impl Error {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "kube_conflict",
            Error::Kube(_) => "kube",
            Error::Serde(_) => "serde",
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
    /// Recently resolved Accounts.
    pub accounts: account::AccountCache,
    /// Consecutive transient failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The status last written per object (by uid): newer than a cached object can be, so
    /// decisions never rest on a status the operator has already replaced.
    written: Mutex<HashMap<String, crate::api::common::AssetStatus>>,
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
        Self {
            client,
            settings,
            pool,
            metrics,
            recorder,
            registry: Registry::default(),
            accounts: account::AccountCache::default(),
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        }
    }

    /// The status this process last wrote for an object, if any.
    pub fn written_status(&self, uid: &str) -> Option<crate::api::common::AssetStatus> {
        self.written.lock().ok().and_then(|m| m.get(uid).cloned())
    }

    /// Remembers the status written for an object (`None` forgets it).
    pub fn remember_status(&self, uid: &str, status: Option<crate::api::common::AssetStatus>) {
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
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        self.metrics.kube_write(kind, "event");
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "cannot publish event");
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

    /// The resync interval with ±10 % jitter.
    pub fn jittered_resync(&self) -> Duration {
        let jitter = rand::rng().random_range(0.9..1.1);
        self.settings.resync.mul_f64(jitter)
    }
}
