//! Drift detection without an INFO per object: every resync interval, list the streams of
//! each connection (one request per page) and the consumers of each stream that has
//! managed consumers, and compare them with what the managed objects expect; only objects
//! whose asset is missing or different are reconciled. Also routes JetStream advisories
//! and connection changes to the objects they concern.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::jetstream::api::JsApi;
use crate::jetstream::asset::{AssetOps, AssetRef, ConsumerOps, Facts, Snapshot, StreamOps};
use crate::jetstream::connection::ConnEvent;
use crate::jetstream::error::code;

use super::context::Context;
use super::registry::{ObjKey, Registration};

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

/// Decides whether an object needs a reconcile, given what the server lists now
/// (`None`: not listed). A Ready object whose leader, replicas or pause moved (a leader
/// lost, a pause run out) is reconciled too, so its status says what is true now.
fn drifted(r: &Registration, listed: Option<(Snapshot, Facts)>, may_be_missing: bool) -> bool {
    match listed {
        // Not listed: reconcile confirms with INFO before recreating, because a listing can
        // leave out assets that are offline.
        None => !may_be_missing && (r.ready || r.seen.is_some()),
        Some((now, facts)) => match &r.expected {
            Some(want) if r.ready => want.drifted(&now) || facts.moved_from(&r.facts),
            // Not Ready (stalled, read-only, retrying): look again only when the server
            // side changed, so a stall never becomes a retry storm.
            _ => r.seen.as_ref() != Some(&now),
        },
    }
}

fn trigger(key: &ObjKey, r: &Registration) -> usize {
    debug!(object = %key, "drift scan: asset differs or is missing");
    (r.trigger)();
    1
}

/// One scan over every connection. Returns how many objects were triggered.
pub async fn scan_once(ctx: &Context) -> usize {
    let regs = ctx.registry.snapshot();
    // Group objects by connection and API prefix.
    let mut groups: HashMap<(u64, String), Vec<usize>> = HashMap::new();
    for (i, (_, r)) in regs.iter().enumerate() {
        groups
            .entry((r.conn, r.js.prefix().to_string()))
            .or_default()
            .push(i);
    }
    let mut triggered = 0;
    for members in groups.into_values() {
        let Some(first) = members.first() else {
            continue;
        };
        let js = &regs[*first].1.js;
        triggered += scan_group(js, &regs, &members).await;
    }
    triggered
}

async fn scan_group(js: &JsApi, regs: &[(ObjKey, Registration)], members: &[usize]) -> usize {
    let mut triggered = 0;
    let (streams, missing) = match js.list_streams().await {
        Ok(l) => l,
        Err(e) => {
            // JetStream cannot be read: let every Ready object on it say why.
            debug!(error = %e, "drift scan cannot list streams");
            for i in members {
                let (key, r) = &regs[*i];
                if r.ready {
                    triggered += trigger(key, r);
                }
            }
            return triggered;
        }
    };
    let by_name: HashMap<&str, _> = streams
        .iter()
        .map(|s| (s.config.name.as_str(), s))
        .collect();
    // Consumers are listed per stream, only for streams that have managed consumers.
    let mut consumers_by_stream: HashMap<&str, Vec<usize>> = HashMap::new();
    for i in members {
        let (key, r) = &regs[*i];
        match &r.asset {
            AssetRef::Stream(name) => {
                let listed = by_name
                    .get(name.as_str())
                    .map(|s| (StreamOps::snapshot(&s.config), StreamOps::facts(s)));
                if drifted(r, listed, missing.contains(name)) {
                    triggered += trigger(key, r);
                }
            }
            AssetRef::Consumer { stream, .. } => {
                consumers_by_stream
                    .entry(stream.as_str())
                    .or_default()
                    .push(*i);
            }
        }
    }
    for (stream, idx) in consumers_by_stream {
        let listed = if by_name.contains_key(stream) {
            js.list_consumers(stream).await
        } else if missing.iter().any(|m| m == stream) {
            continue;
        } else {
            Ok((Vec::new(), Vec::new()))
        };
        let (consumers, missing_consumers) = match listed {
            Ok(l) => l,
            Err(e) if e.is(code::STREAM_NOT_FOUND) => (Vec::new(), Vec::new()),
            Err(e) => {
                debug!(error = %e, stream, "drift scan cannot list consumers");
                continue;
            }
        };
        let by_consumer: HashMap<&str, _> =
            consumers.iter().map(|c| (c.name.as_str(), c)).collect();
        for i in idx {
            let (key, r) = &regs[i];
            let AssetRef::Consumer { name, .. } = &r.asset else {
                continue;
            };
            let listed = by_consumer
                .get(name.as_str())
                .map(|c| (ConsumerOps::snapshot(&c.config), ConsumerOps::facts(c)));
            if drifted(r, listed, missing_consumers.contains(name)) {
                triggered += trigger(key, r);
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
        match ev {
            ConnEvent::Reconnected { .. } if n > 0 => {
                warn!(
                    objects = n,
                    "NATS connection restored; re-checking its objects"
                )
            }
            ConnEvent::Disconnected { .. } if n > 0 => {
                warn!(
                    objects = n,
                    "NATS connection lost; its objects will report it"
                )
            }
            _ => {}
        }
    }
}
