//! The admin HTTP server: /livez (and /healthz, as NACK), /readyz (watches synced) and
//! /metrics, and the
//! readiness the controllers report into.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Counts watches that have finished their initial list (for /readyz). Once every watch
/// has synced the process stays ready (a watch re-listing later is not an outage).
#[derive(Default)]
pub struct Readiness {
    expected: AtomicUsize,
    synced: AtomicUsize,
    latched: AtomicBool,
}

impl Readiness {
    /// True once every watch has synced.
    pub fn is_ready(&self) -> bool {
        if self.latched.load(Ordering::SeqCst) {
            return true;
        }
        let e = self.expected.load(Ordering::SeqCst);
        let ready = e > 0 && self.synced.load(Ordering::SeqCst) >= e;
        if ready {
            self.latched.store(true, Ordering::SeqCst);
        }
        ready
    }

    /// (synced, expected) watch counts.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.synced.load(Ordering::SeqCst),
            self.expected.load(Ordering::SeqCst),
        )
    }

    /// Forgets the watches counted so far (their tasks were stopped).
    pub fn reset(&self) {
        self.expected.store(0, Ordering::SeqCst);
        self.synced.store(0, Ordering::SeqCst);
    }

    /// Registers one watch; returns what to call when its first list has completed.
    pub fn track(self: &Arc<Self>) -> impl Fn() + Send + Sync + 'static {
        self.expected.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        let done = AtomicBool::new(false);
        move || {
            if !done.swap(true, Ordering::SeqCst) {
                me.synced.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ok".to_string())
    } else {
        let (synced, expected) = s.readiness.counts();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("watches not synced yet ({synced} of {expected})"),
        )
    }
}

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    // A fenced replica is not the leader, whether or not its election task has run yet.
    if !crate::fence::is_open() {
        s.metrics.leader.set(0);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Binds the admin server; returns the bound address and the serving future.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let app = Router::new()
        .route("/livez", get(livez))
        // NACK's probes (its chart's liveness check) ask /healthz.
        .route("/healthz", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AdminState { metrics, readiness });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, async move { axum::serve(listener, app).await }))
}
