//! Leader election through a `coordination.k8s.io/v1` Lease, by client-go's rules, with a
//! fence.
//!
//! - A replica takes the Lease when nobody holds it, when it holds it itself (the same
//!   pod, restarted), or when it has seen no change to it for the holder's whole lease
//!   duration by its own clock (so clocks of different nodes never matter).
//! - Followers watch the one Lease: a renewal, a release or a takeover is seen at once,
//!   and a released Lease is taken without waiting out its old expiry.
//! - The holder renews every quarter of the duration. It counts from the start of its
//!   last successful renewal: once three quarters of the duration have passed without
//!   another, it has lost, and stops writing with a quarter of the duration to spare
//!   before any follower may take the Lease ([`Timings`]). Every update is conditional on
//!   the version read, so two replicas never both think they took it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{debug, warn};

/// The timings a lease duration implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long the Lease lasts without renewal: a crashed leader is replaced after at
    /// most this long.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How long after the start of its last successful renewal a leader stops writing.
    pub fence_after: Duration,
}

impl Timings {
    /// Timings for a lease duration (at least 2 s: renewals every 500 ms at the least).
    pub fn new(duration: Duration) -> Self {
        let duration = duration.max(Duration::from_secs(2));
        Self {
            duration,
            renew_every: duration / 4,
            fence_after: duration - duration / 4,
        }
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// No renewal succeeded in time (the apiserver unreachable or too slow).
    NotRenewed(Duration),
    /// Another replica holds the Lease.
    TakenBy(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::NotRenewed(d) => {
                write!(f, "the Lease could not be renewed for {} ms", d.as_millis())
            }
            Lost::TakenBy(h) => write!(f, "the Lease is now held by {h}"),
        }
    }
}

/// One replica's side of the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
}

/// What a follower knows of the Lease, to decide whether it may take it.
#[derive(Debug, Default)]
struct Observed {
    /// The version last seen and when it was first seen (by this replica's clock).
    version: Option<(String, Instant)>,
}

impl Observed {
    /// Records the Lease's version; returns when that version was first seen.
    fn see(&mut self, version: &str, now: Instant) -> Instant {
        match &self.version {
            Some((v, at)) if v == version => *at,
            _ => {
                self.version = Some((version.to_string(), now));
                now
            }
        }
    }
}

/// When a follower may take a Lease it has seen unchanged since `first_seen`: now when it
/// is free or its own, else once the holder's lease duration has passed.
fn may_take_at(spec: &LeaseSpec, identity: &str, first_seen: Instant, ours: Duration) -> Instant {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return first_seen;
    }
    let theirs = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(ours, |s| Duration::from_secs(s as u64));
    first_seen + theirs
}

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl Elector {
    /// An elector for Lease `name` in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
        }
    }

    /// The Lease as this replica takes it over (or creates it).
    fn taken(&self, from: Option<&Lease>) -> Lease {
        let mut lease = from.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: None,
        });
        let previous = from.map(holder).unwrap_or_default();
        let mut spec = lease.spec.take().unwrap_or_default();
        if previous != self.identity {
            spec.acquire_time = Some(now());
            if from.is_some() {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(self.timings.duration.as_secs().max(1) as i32);
        lease.spec = Some(spec);
        lease
    }

    /// Waits until this replica holds the Lease. Returns the Lease and when the write
    /// that took it began (the start of the first term).
    pub async fn acquire(&self) -> (Lease, Instant) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut changes = watcher(self.api.clone(), config).default_backoff().boxed();
        let mut current: Option<Lease> = None;
        let mut synced = false;
        let mut observed = Observed::default();
        let pp = PostParams::default();
        loop {
            let mut wait = self.timings.renew_every;
            if synced {
                let start = Instant::now();
                let attempt = match &current {
                    None => Some(self.api.create(&pp, &self.taken(None)).await),
                    Some(lease) => {
                        let version = lease.metadata.resource_version.clone().unwrap_or_default();
                        let first_seen = observed.see(&version, start);
                        let spec = lease.spec.clone().unwrap_or_default();
                        let at =
                            may_take_at(&spec, &self.identity, first_seen, self.timings.duration);
                        if at <= start {
                            Some(
                                self.api
                                    .replace(&self.name, &pp, &self.taken(Some(lease)))
                                    .await,
                            )
                        } else {
                            wait = wait.min(at - start);
                            None
                        }
                    }
                };
                match attempt {
                    Some(Ok(lease)) => return (lease, start),
                    // Another replica was faster, or the apiserver failed: look again
                    // when the watch says what the Lease is now.
                    Some(Err(e)) => {
                        debug!(error = %e, lease = %self.name, "could not take the Lease")
                    }
                    None => {}
                }
            }
            tokio::select! {
                event = changes.next() => match event {
                    Some(Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l))) => current = Some(l),
                    Some(Ok(watcher::Event::Delete(_))) => current = None,
                    Some(Ok(watcher::Event::Init)) => {
                        current = None;
                        synced = false;
                    }
                    Some(Ok(watcher::Event::InitDone)) => synced = true,
                    Some(Err(e)) => warn!(error = %e, lease = %self.name, "watching the Lease failed; retrying"),
                    None => tokio::time::sleep(wait).await,
                },
                _ = tokio::time::sleep(wait), if synced => {}
            }
        }
    }

    /// Renews the Lease until this replica loses it; returns why. The caller must stop
    /// writing as soon as this returns: followers may take the Lease a quarter of the
    /// duration later.
    pub async fn hold(&self, lease: Lease, renewed: Instant) -> Lost {
        let lost = self.renew_until_lost(lease, renewed).await;
        crate::fence::close();
        lost
    }

    async fn renew_until_lost(&self, mut lease: Lease, mut renewed: Instant) -> Lost {
        let pp = PostParams::default();
        let retry = (self.timings.renew_every / 4).max(Duration::from_millis(100));
        let mut next = renewed + self.timings.renew_every;
        loop {
            let fence = renewed + self.timings.fence_after;
            tokio::time::sleep_until(next.min(fence).into()).await;
            let start = Instant::now();
            if start >= fence {
                return Lost::NotRenewed(start - renewed);
            }
            let mut renewal = lease.clone();
            if let Some(spec) = renewal.spec.as_mut() {
                spec.renew_time = Some(now());
                spec.holder_identity = Some(self.identity.clone());
            }
            match tokio::time::timeout(fence - start, self.api.replace(&self.name, &pp, &renewal))
                .await
            {
                Ok(Ok(l)) => {
                    lease = l;
                    renewed = start;
                    crate::fence::open_until(renewed + self.timings.fence_after);
                    next = renewed + self.timings.renew_every;
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
                    // Written by someone else since: who holds it now?
                    match tokio::time::timeout(fence - start, self.api.get(&self.name)).await {
                        Ok(Ok(l)) if holder(&l) == self.identity => {
                            lease = l;
                            next = Instant::now();
                        }
                        Ok(Ok(l)) => return Lost::TakenBy(holder(&l)),
                        _ => next = Instant::now() + retry,
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, lease = %self.name, "renewing the Lease failed; retrying");
                    next = Instant::now() + retry;
                }
                Err(_) => return Lost::NotRenewed(Instant::now() - renewed),
            }
        }
    }

    /// Gives the Lease up (on a graceful stop), so a follower takes it at once. Best effort.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        if holder(&lease) != self.identity {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(1);
        }
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, lease = %self.name, "could not release the Lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_leave_a_quarter_between_the_fence_and_a_takeover() {
        let t = Timings::new(Duration::from_secs(4));
        assert_eq!(t.renew_every, Duration::from_secs(1));
        assert_eq!(t.fence_after, Duration::from_secs(3));
        assert!(t.fence_after < t.duration);
        assert_eq!(
            Timings::new(Duration::ZERO).duration,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_lease_is_taken_when_free_own_or_unchanged_for_the_holders_duration() {
        let t0 = Instant::now();
        let ours = Duration::from_secs(4);
        let spec = |holder: Option<&str>, secs: Option<i32>| LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: secs,
            ..Default::default()
        };
        assert_eq!(may_take_at(&spec(None, Some(4)), "a", t0, ours), t0);
        assert_eq!(may_take_at(&spec(Some(""), Some(4)), "a", t0, ours), t0);
        assert_eq!(may_take_at(&spec(Some("a"), Some(4)), "a", t0, ours), t0);
        // The holder's own duration counts, longer or shorter than ours.
        assert_eq!(
            may_take_at(&spec(Some("b"), Some(15)), "a", t0, ours),
            t0 + Duration::from_secs(15)
        );
        assert_eq!(
            may_take_at(&spec(Some("b"), Some(2)), "a", t0, ours),
            t0 + Duration::from_secs(2)
        );
        assert_eq!(
            may_take_at(&spec(Some("b"), None), "a", t0, ours),
            t0 + ours
        );
    }

    #[test]
    fn the_clock_starts_when_a_version_is_first_seen() {
        let mut o = Observed::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(o.see("1", t0), t0);
        assert_eq!(
            o.see("1", t1),
            t0,
            "the same version: the first sighting counts"
        );
        assert_eq!(o.see("2", t1), t1, "a renewal restarts the clock");
    }
}
