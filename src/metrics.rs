//! Prometheus metrics. Every label is bounded by construction: kinds come from the kinds
//! table, and operations, outcomes, error categories and write kinds are enums whose
//! series are all created at zero when the registry is built.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Metric label values from named enums.
macro_rules! label_values {
    ($($t:ty),+) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.name())
            }
        }
    )+};
}

named_enum! {
    /// How a reconcile ended.
    pub enum Outcome {
        /// The object is Ready.
        Ready => "ready",
        /// A transient failure: retried with backoff.
        Retry => "retry",
        /// Retrying cannot help until something changes.
        Stalled => "stalled",
        /// Waiting for something else (a Consumer's stream).
        Waiting => "waiting",
        /// The object was finalized.
        Deleted => "deleted",
        /// Reconciling is paused by annotation.
        Paused => "paused",
        /// An Account's deletion waits for its dependents.
        Blocked => "blocked",
        /// The Kubernetes side failed (retried by the error policy).
        Error => "error",
    }
}

named_enum! {
    /// A bounded error category, for metrics and logs.
    pub enum ErrorCategory {
        /// NATS cannot be reached.
        Connection => "connection",
        /// Credentials, certificates or permissions refused.
        Auth => "auth",
        /// A JetStream request timed out.
        Timeout => "timeout",
        /// Nobody answers on the JetStream API subject.
        NoResponders => "no_responders",
        /// A JetStream answer could not be decoded.
        Decode => "decode",
        /// JetStream refused a configuration.
        Refused => "refused",
        /// Another JetStream API error that may pass.
        Api => "api",
        /// The connection settings cannot be resolved (missing Account, Secret, file).
        ConnectionUnresolved => "connection_unresolved",
        /// The object may not use the connection it names.
        Forbidden => "forbidden",
        /// The spec cannot become a valid configuration.
        InvalidSpec => "invalid_spec",
        /// A Kubernetes API call failed.
        Kube => "kube",
        /// A Kubernetes write lost a race (resourceVersion conflict).
        KubeConflict => "kube_conflict",
        /// A patch could not be serialised.
        Serde => "serde",
    }
}

named_enum! {
    /// A JetStream API operation.
    pub enum JsOp {
        /// `STREAM.INFO`.
        StreamInfo => "stream.info",
        /// `STREAM.CREATE`.
        StreamCreate => "stream.create",
        /// `STREAM.UPDATE`.
        StreamUpdate => "stream.update",
        /// `STREAM.DELETE`.
        StreamDelete => "stream.delete",
        /// `STREAM.LIST`.
        StreamList => "stream.list",
        /// `CONSUMER.INFO`.
        ConsumerInfo => "consumer.info",
        /// `CONSUMER.CREATE` with action create.
        ConsumerCreate => "consumer.create",
        /// `CONSUMER.CREATE` with action update.
        ConsumerUpdate => "consumer.update",
        /// `CONSUMER.DELETE`.
        ConsumerDelete => "consumer.delete",
        /// `CONSUMER.LIST`.
        ConsumerList => "consumer.list",
        /// `CONSUMER.PAUSE`.
        ConsumerPause => "consumer.pause",
        /// `INFO` (account information).
        AccountInfo => "account.info",
    }
}

named_enum! {
    /// How a JetStream request ended.
    pub enum JsOutcome {
        /// Answered without error.
        Ok => "ok",
        /// The asset asked for does not exist (how creation starts, not a failure).
        NotFound => "not_found",
        /// NATS cannot be reached.
        Connection => "connection",
        /// Credentials or permissions refused.
        Auth => "auth",
        /// No answer in time.
        Timeout => "timeout",
        /// Nobody answers on the API subject.
        NoResponders => "no_responders",
        /// The answer could not be decoded.
        Decode => "decode",
        /// JetStream refused the request.
        Refused => "refused",
        /// Another API error that may pass.
        Api => "api",
    }
}

named_enum! {
    /// What the operator wrote to Kubernetes.
    pub enum Write {
        /// A status (server-side apply of the status subresource).
        Status => "status",
        /// A finalizer added or removed.
        Finalizer => "finalizer",
        /// An Event.
        Event => "event",
    }
}

label_values!(Outcome, ErrorCategory, JsOp, JsOutcome, Write);

/// Labels of reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Kind (Stream, Consumer, ...).
    pub kind: &'static str,
    /// How the reconcile ended.
    pub outcome: Outcome,
}

/// Labels of error metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Kind.
    pub kind: &'static str,
    /// Bounded category.
    pub category: ErrorCategory,
}

/// Labels of JetStream API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Operation.
    pub op: JsOp,
    /// How it ended.
    pub outcome: JsOutcome,
}

/// Labels of JetStream latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Operation.
    pub op: JsOp,
}

/// Labels of Kubernetes writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Kind of the object written about.
    pub kind: &'static str,
    /// What was written.
    pub what: Write,
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
    /// Reconcile duration by kind and outcome.
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
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family and every operation series present from the start (at
    /// zero), so dashboards and alerts see them before the first event. Per-kind series
    /// are added by [`Metrics::init_kind`] for each entry of the kinds table.
    pub fn new() -> Self {
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
        for &op in JsOp::ALL {
            let _ = m.js_requests.get_or_create(&ApiLabels {
                op,
                outcome: JsOutcome::Ok,
            });
            let _ = m.js_latency.get_or_create(&OpLabels { op });
        }
        m
    }

    /// Creates every series of one kind at zero.
    pub fn init_kind(&self, kind: &'static str) {
        self.ready.get_or_create(&KindLabels { kind }).set(0);
        self.objects.get_or_create(&KindLabels { kind }).set(0);
        for &outcome in Outcome::ALL {
            let _ = self
                .reconciles
                .get_or_create(&ReconcileLabels { kind, outcome });
            let _ = self
                .reconcile_duration
                .get_or_create(&ReconcileLabels { kind, outcome });
        }
        for &category in ErrorCategory::ALL {
            let _ = self.errors.get_or_create(&ErrorLabels { kind, category });
        }
        for &what in Write::ALL {
            let _ = self.kube_writes.get_or_create(&WriteLabels { kind, what });
        }
    }

    /// Records a reconcile and how long it took.
    pub fn reconciled(&self, kind: &'static str, outcome: Outcome, took: Duration) {
        let labels = ReconcileLabels { kind, outcome };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records a reconcile error by bounded category.
    pub fn error(&self, kind: &'static str, category: ErrorCategory) {
        self.errors
            .get_or_create(&ErrorLabels { kind, category })
            .inc();
    }

    /// Records one JetStream API request.
    pub fn js_request(&self, op: JsOp, outcome: JsOutcome, took: Duration) {
        self.js_requests
            .get_or_create(&ApiLabels { op, outcome })
            .inc();
        self.js_latency
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }

    /// Records one Kubernetes write.
    pub fn kube_write(&self, kind: &'static str, what: Write) {
        self.kube_writes
            .get_or_create(&WriteLabels { kind, what })
            .inc();
    }

    /// Sets the per-kind object gauges.
    pub fn set_counts(&self, kind: &'static str, ready: i64, all: i64) {
        self.ready.get_or_create(&KindLabels { kind }).set(ready);
        self.objects.get_or_create(&KindLabels { kind }).set(all);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_at_zero() {
        let m = Metrics::new();
        m.init_kind("Stream");
        let text = m.encode();
        for op in JsOp::ALL {
            assert!(
                text.contains(&format!("op=\"{}\",outcome=\"ok\"", op.name())),
                "{op}"
            );
        }
        for outcome in Outcome::ALL {
            assert!(
                text.contains(&format!("kind=\"Stream\",outcome=\"{outcome}\"")),
                "{outcome}"
            );
        }
        for category in ErrorCategory::ALL {
            assert!(
                text.contains(&format!("kind=\"Stream\",category=\"{category}\"")),
                "{category}"
            );
        }
    }
}
