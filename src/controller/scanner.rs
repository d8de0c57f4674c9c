//! Drift detection without an INFO per object: every resync interval, list the streams of
//! each connection (one request per page of 256) and compare them with what the managed
//! objects expect; only objects whose asset is missing or different are reconciled.
//!
//! Consumers have no account-wide listing, so they are read per stream, and only where
//! needed: where the connection receives JetStream's advisories (consumer changes made by
//! others then arrive as events, see [`crate::jetstream::advisory`]), a stream's consumers
//! are listed when the stream counts fewer consumers than the managed ones, and otherwise
//! a slice of the streams at a time, so every stream is swept once every
//! [`SWEEP_RESYNCS`] resyncs as a safety net. Where advisories do not arrive (refused by
//! the credentials, or an API prefix imported from another account), every stream's
//! consumers are listed on every resync. Also routes JetStream advisories and connection
//! changes to the objects they concern.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::jetstream::api::{DEFAULT_PREFIX, JsApi};
use crate::jetstream::asset::{AssetOps, AssetRef, ConsumerOps, Facts, Snapshot, StreamOps};
use crate::jetstream::connection::ConnEvent;
use crate::jetstream::error::code;

use super::context::Context;
use super::registry::{ObjKey, Registration};
use super::stream_reads::StreamReads;

/// Where advisories arrive, the consumers of every stream are listed once over this many
/// resyncs (a slice of the streams each time): at 10,000 streams, 50 listings a resync.
pub const SWEEP_RESYNCS: usize = 200;

/// Where the consumer sweep of each connection and API prefix has got to.
#[derive(Default)]
pub struct Sweep {
    next: HashMap<(u64, String), usize>,
}

impl Sweep {
    /// The streams (of `all`, sorted) whose consumers this resync's slice lists, and
    /// moves on.
    fn slice<'a>(&mut self, group: (u64, String), all: &[&'a str]) -> Vec<&'a str> {
        if all.is_empty() {
            return Vec::new();
        }
        let size = all.len().div_ceil(SWEEP_RESYNCS);
        let start = self.next.get(&group).copied().unwrap_or(0) % all.len();
        self.next.insert(group, (start + size) % all.len());
        all.iter().cycle().skip(start).take(size).copied().collect()
    }
}

/// Runs the periodic scan until the process stops.
pub async fn run_scans(ctx: Arc<Context>) {
    let mut sweep = Sweep::default();
    loop {
        tokio::time::sleep(ctx.jittered_resync()).await;
        scan_once(&ctx, &mut sweep).await;
        ctx.stream_reads.purge();
        release_freed_memory();
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

/// Hands the heap pages a scan freed back to the system. glibc keeps freed memory in its
/// arenas, and the listings of every scan (megabytes at thousands of streams) leave holes
/// that the next scans do not fill exactly, so the resident size of an operator at rest
/// crept up by steps (+6% in an hour at 2,000 objects); with this, it stays level and
/// about 7 MiB lower. Other C libraries return memory by themselves.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages of the heap.
    unsafe {
        libc::malloc_trim(0);
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
pub async fn scan_once(ctx: &Context, sweep: &mut Sweep) -> usize {
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
    for (group, members) in groups {
        let Some(first) = members.first() else {
            continue;
        };
        let js = &regs[*first].1.js;
        triggered += scan_group(js, &regs, &members, group, sweep, &ctx.stream_reads).await;
    }
    triggered
}

/// Whether a stream's consumers are listed in this scan: always where advisories do not
/// arrive; else when the stream counts fewer consumers than the managed ones that should
/// exist (`expected`), or when the stream is in this resync's sweep.
fn list_consumers_of(
    events_live: bool,
    consumer_count: usize,
    expected: usize,
    in_sweep: bool,
) -> bool {
    !events_live || consumer_count < expected || in_sweep
}

async fn scan_group(
    js: &JsApi,
    regs: &[(ObjKey, Registration)],
    members: &[usize],
    group: (u64, String),
    sweep: &mut Sweep,
    reads: &StreamReads,
) -> usize {
    let events_live = js.prefix() == DEFAULT_PREFIX && js.conn().advisories_live();
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
                    // The reconcile reads it again rather than trust an earlier read.
                    reads.forget(r.conn, name);
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
    let mut with_consumers: Vec<&str> = consumers_by_stream
        .keys()
        .copied()
        .filter(|s| by_name.contains_key(s))
        .collect();
    with_consumers.sort_unstable();
    let in_sweep: std::collections::HashSet<&str> =
        sweep.slice(group, &with_consumers).into_iter().collect();
    for (stream, idx) in consumers_by_stream {
        let listed = if let Some(info) = by_name.get(stream) {
            let count = info.state.as_ref().map_or(0, |s| s.consumer_count);
            let expected = idx
                .iter()
                .filter(|i| regs[**i].1.ready || regs[**i].1.seen.is_some())
                .count();
            if !list_consumers_of(events_live, count, expected, in_sweep.contains(stream)) {
                continue;
            }
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
        match &ev {
            ConnEvent::StreamCreated { conn, stream }
            | ConnEvent::StreamUpdated { conn, stream }
            | ConnEvent::StreamDeleted { conn, stream } => ctx.stream_reads.forget(*conn, stream),
            ConnEvent::Reconnected { conn } | ConnEvent::Disconnected { conn } => {
                ctx.stream_reads.forget_connection(*conn)
            }
            ConnEvent::StreamLeaderElected { .. } | ConnEvent::ConsumerChanged { .. } => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_are_listed_only_where_needed() {
        // Advisories arrive: only a stream missing consumers, or the sweep's slice.
        assert!(!list_consumers_of(true, 3, 3, false));
        assert!(!list_consumers_of(true, 5, 3, false), "others' consumers");
        assert!(list_consumers_of(true, 2, 3, false), "one was deleted");
        assert!(list_consumers_of(true, 3, 3, true), "the safety net");
        // No advisories: every resync.
        assert!(list_consumers_of(false, 3, 3, false));
    }

    #[test]
    fn the_sweep_covers_every_stream_in_its_resyncs() {
        let names: Vec<String> = (0..1000).map(|i| format!("s{i:04}")).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut sweep = Sweep::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..SWEEP_RESYNCS {
            let slice = sweep.slice((1, "$JS.API".into()), &all);
            assert_eq!(slice.len(), 1000usize.div_ceil(SWEEP_RESYNCS));
            seen.extend(slice);
        }
        assert_eq!(seen.len(), all.len(), "a full sweep lists every stream");
        // Groups sweep on their own; a few streams are swept one a resync.
        let few = ["a", "b", "c"];
        let picks: Vec<Vec<&str>> = (0..4)
            .map(|_| sweep.slice((2, "$JS.API".into()), &few))
            .collect();
        assert_eq!(picks, [vec!["a"], vec!["b"], vec!["c"], vec!["a"]]);
        assert!(sweep.slice((3, "$JS.API".into()), &[]).is_empty());
    }
}
