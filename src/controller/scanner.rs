//! Drift detection without an INFO per object: every resync interval, list the streams of
//! each connection (one request per page) and compare them with what the managed objects
//! expect; only objects whose asset is missing or different are reconciled. Also routes
//! JetStream advisories and reconnects to the objects they concern.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::jetstream::connection::ConnEvent;
use crate::jetstream::stream_config;

use super::Context;
use super::registry::{AssetRef, Expected};

/// Runs the periodic scan until the process stops.
pub async fn run_scans(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(ctx.jittered_resync()).await;
        scan_once(&ctx).await;
        let closed = ctx.pool.close_idle(
            ctx.settings
                .resync
                .saturating_mul(5)
                .max(Duration::from_secs(300)),
        );
        if closed > 0 {
            debug!(closed, "closed idle NATS connections");
        }
        ctx.metrics.connections.set(ctx.pool.len() as i64);
    }
}

/// One scan over every connection. Returns how many objects were triggered.
pub async fn scan_once(ctx: &Context) -> usize {
    let regs = ctx.registry.snapshot();
    // Group stream-backed objects by connection and API prefix.
    let mut groups: HashMap<(u64, String), Vec<usize>> = HashMap::new();
    for (i, (_, r)) in regs.iter().enumerate() {
        if matches!(r.asset, AssetRef::Stream(_)) {
            groups
                .entry((r.conn, r.js.prefix().to_string()))
                .or_default()
                .push(i);
        }
    }
    let mut triggered = 0;
    for ((_, _), members) in groups {
        let Some(first) = members.first() else {
            continue;
        };
        let js = &regs[*first].1.js;
        let (streams, missing) = match js.list_streams().await {
            Ok(l) => l,
            Err(e) => {
                debug!(error = %e, "drift scan cannot list streams; objects retry on their own");
                continue;
            }
        };
        let by_name: HashMap<&str, _> = streams
            .iter()
            .map(|s| (s.config.name.as_str(), s))
            .collect();
        for i in members {
            let (key, r) = &regs[i];
            if r.stalled {
                continue;
            }
            let AssetRef::Stream(name) = &r.asset else {
                continue;
            };
            let drifted = match (&r.expected, by_name.get(name.as_str())) {
                // Not in the listing: reconcile confirms with INFO before recreating,
                // because a listing can leave out streams that are offline.
                (_, None) => !missing.contains(name) || !r.ready,
                (Expected::Unknown, Some(_)) => !r.ready,
                (Expected::Stream(want), Some(info)) => {
                    !stream_config::diff(want, &info.config).is_empty()
                }
            };
            if drifted {
                debug!(object = %key, "drift scan: asset differs or is missing");
                (r.trigger)();
                triggered += 1;
            }
        }
    }
    triggered
}

/// Routes connection events (advisories, reconnects) to the objects they concern.
pub async fn route_events(ctx: Arc<Context>, mut events: mpsc::UnboundedReceiver<ConnEvent>) {
    while let Some(ev) = events.recv().await {
        let n = ctx.registry.dispatch(&ev);
        if n > 0 {
            debug!(?ev, objects = n, "event triggered reconciles");
        }
        if matches!(ev, ConnEvent::Reconnected { .. }) && n > 0 {
            warn!(
                objects = n,
                "NATS connection restored; re-checking its objects"
            );
        }
    }
}
