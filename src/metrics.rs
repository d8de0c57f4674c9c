//! Prometheus metrics. Every label is bounded: kinds, operations, outcomes and error
//! categories, never object names.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Kind (Stream, Consumer, ...).
    pub kind: &'static str,
    /// Outcome: ready, waiting, stalled, retry, error, deleted, paused.
    pub outcome: &'static str,
}

/// Labels of error metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Kind.
    pub kind: &'static str,
    /// Bounded category.
    pub category: &'static str,
}

/// Labels of JetStream API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Operation (stream.info, stream.create, ...).
    pub op: &'static str,
    /// ok or an error category.
    pub outcome: &'static str,
}

/// Labels of JetStream latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Operation.
    pub op: &'static str,
}

/// Labels of Kubernetes writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Kind of the object written about.
    pub kind: &'static str,
    /// status, finalizer or event.
    pub what: &'static str,
}

/// Labels carrying only a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind.
    pub kind: &'static str,
}

/// All metrics of the operator.
pub struct Metrics {
    /// Reconciles by kind and outcome.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile duration by kind.
    pub reconcile_duration: Family<ReconcileLabels, Histogram>,
    /// Errors by kind and category.
    pub errors: Family<ErrorLabels, Counter>,
    /// JetStream API requests by operation and outcome.
    pub js_requests: Family<ApiLabels, Counter>,
    /// JetStream API latency by operation.
    pub js_latency: Family<OpLabels, Histogram>,
    /// Kubernetes writes by kind and what was written.
    pub kube_writes: Family<WriteLabels, Counter>,
    /// Objects whose Ready condition is True, by kind.
    pub ready: Family<KindLabels, Gauge>,
    /// Objects known, by kind.
    pub objects: Family<KindLabels, Gauge>,
    /// 1 while this replica leads (or leader election is off).
    pub leader: Gauge,
    /// Open NATS connections.
    pub connections: Gauge,
    registry: Registry,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        let reconcile_duration = Family::<ReconcileLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let js_latency = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let mut m = Metrics {
            reconciles: Family::default(),
            reconcile_duration,
            errors: Family::default(),
            js_requests: Family::default(),
            js_latency,
            kube_writes: Family::default(),
            ready: Family::default(),
            objects: Family::default(),
            leader: Gauge::default(),
            connections: Gauge::default(),
            registry: Registry::with_prefix("jetstream_operator"),
        };
        let r = &mut m.registry;
        r.register(
            "reconciles",
            "Reconciles by kind and outcome",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by kind and outcome",
            m.reconcile_duration.clone(),
        );
        r.register(
            "errors",
            "Reconcile errors by kind and bounded category",
            m.errors.clone(),
        );
        r.register(
            "jetstream_requests",
            "JetStream API requests by operation and outcome",
            m.js_requests.clone(),
        );
        r.register(
            "jetstream_request_duration_seconds",
            "JetStream API request latency by operation",
            m.js_latency.clone(),
        );
        r.register(
            "kubernetes_writes",
            "Writes to the Kubernetes API by kind and what was written (status, finalizer, event)",
            m.kube_writes.clone(),
        );
        r.register(
            "ready_objects",
            "Objects whose Ready condition is True, by kind",
            m.ready.clone(),
        );
        r.register("objects", "Objects watched, by kind", m.objects.clone());
        r.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        r.register(
            "nats_connections",
            "Open NATS connections",
            m.connections.clone(),
        );
        m
    }
}

/// The kinds, for initialising per-kind series.
pub const KINDS: [&str; 5] = ["Stream", "Consumer", "KeyValue", "ObjectStore", "Account"];

impl Metrics {
    /// A registry with every family present from the start (series at zero), so that
    /// dashboards and alerts see them before the first event.
    pub fn new() -> Self {
        let m = Self::default();
        for kind in KINDS {
            m.ready.get_or_create(&KindLabels { kind }).set(0);
            m.objects.get_or_create(&KindLabels { kind }).set(0);
            for outcome in [
                "ready", "retry", "stalled", "waiting", "deleted", "paused", "error",
            ] {
                let _ = m
                    .reconciles
                    .get_or_create(&ReconcileLabels { kind, outcome });
                let _ = m
                    .reconcile_duration
                    .get_or_create(&ReconcileLabels { kind, outcome });
            }
            for category in [
                "connection",
                "auth",
                "timeout",
                "no_responders",
                "refused",
                "api",
                "kube",
            ] {
                let _ = m.errors.get_or_create(&ErrorLabels { kind, category });
            }
            for what in ["status", "finalizer", "event"] {
                let _ = m.kube_writes.get_or_create(&WriteLabels { kind, what });
            }
        }
        for op in [
            "stream.info",
            "stream.create",
            "stream.update",
            "stream.delete",
            "stream.list",
            "consumer.info",
            "consumer.create",
            "consumer.update",
            "consumer.delete",
            "consumer.list",
            "consumer.pause",
            "account.info",
        ] {
            let _ = m
                .js_requests
                .get_or_create(&ApiLabels { op, outcome: "ok" });
            let _ = m.js_latency.get_or_create(&OpLabels { op });
        }
        m
    }

    /// Records a reconcile error by bounded category.
    pub fn error(&self, kind: &'static str, category: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, category })
            .inc();
    }

    /// Records one JetStream API request.
    pub fn js_request(&self, op: &'static str, outcome: &'static str, took: Duration) {
        self.js_requests
            .get_or_create(&ApiLabels { op, outcome })
            .inc();
        self.js_latency
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }

    /// Records one Kubernetes write.
    pub fn kube_write(&self, kind: &'static str, what: &'static str) {
        self.kube_writes
            .get_or_create(&WriteLabels { kind, what })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
