//! Every decision the operator makes, as pure functions of plain data: which phase an
//! object is in, what to do with its asset (create, adopt, update, nothing, refuse, wait),
//! how to delete it (or why not), whether to pause or resume a consumer, and what status
//! and events follow from a plan and its outcome.
//!
//! Nothing here does I/O or sees a Kubernetes or NATS client: the executors
//! ([`super::assets`], [`super::engine`]) observe, ask a function here, perform exactly the
//! plan they get back, and report its outcome to the next function. The decision tables in
//! `src/controller/testdata/plans/` drive these functions through every branch.

use std::time::Duration;

use serde::Deserialize;

use crate::api::common::DeletionPolicy;
use crate::api::conditions::{Cond, READY, RECONCILING, STALLED, reason};
use crate::jetstream::config::{AssetConfig, ServerVersion};
use crate::jetstream::error::{Disposition, JsError};
use crate::jetstream::owner::{Owner, Ownership};

// ---------------------------------------------------------------------------------------
// Inputs shared by the decisions

/// What to do with an existing asset that no object owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum AdoptionPolicy {
    /// Take it over: stamp it with the owner marker and manage it (the default, so NACK
    /// users can migrate).
    #[default]
    Adopt,
    /// Refuse: the object goes Stalled/ResourceConflict.
    Never,
}

/// The policies that bound what a reconcile may do, from the operator's flags and the
/// object's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Policies {
    /// `--read-only`: change nothing in JetStream.
    pub read_only: bool,
    /// `spec.preventUpdate`: create when missing, never update.
    pub prevent_update: bool,
    /// `spec.preventDelete`: keep the asset when the object is deleted.
    pub prevent_delete: bool,
    /// `--adoption-policy`.
    pub adoption: AdoptionPolicy,
    /// The object's namespace is one `--adoption-namespaces` lets adopt.
    pub may_adopt_here: bool,
    /// `spec.deletionPolicy`.
    pub deletion_policy: Option<DeletionPolicy>,
    /// `--adopted-deletion-policy`: what deleting an object does to an asset it adopted,
    /// when its spec does not say.
    pub adopted_deletion_policy: DeletionPolicy,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            read_only: false,
            prevent_update: false,
            prevent_delete: false,
            adoption: AdoptionPolicy::Adopt,
            may_adopt_here: true,
            deletion_policy: None,
            adopted_deletion_policy: DeletionPolicy::Orphan,
        }
    }
}

/// Why deleting an object keeps or deletes its asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionRule {
    /// `spec.preventDelete`.
    PreventDelete,
    /// `spec.deletionPolicy`.
    Spec(DeletionPolicy),
    /// The asset was adopted and the spec does not say: `--adopted-deletion-policy`.
    Adopted(DeletionPolicy),
    /// The object created the asset: deleted with it.
    Created,
}

impl DeletionRule {
    /// The policy the rule comes to.
    pub fn policy(self) -> DeletionPolicy {
        match self {
            DeletionRule::PreventDelete => DeletionPolicy::Orphan,
            DeletionRule::Spec(p) | DeletionRule::Adopted(p) => p,
            DeletionRule::Created => DeletionPolicy::Delete,
        }
    }

    fn why(self) -> &'static str {
        match self {
            DeletionRule::PreventDelete => "spec.preventDelete is set",
            DeletionRule::Spec(_) => "spec.deletionPolicy says so",
            DeletionRule::Adopted(_) => {
                "the asset was adopted and the operator's --adopted-deletion-policy applies (set spec.deletionPolicy to choose)"
            }
            DeletionRule::Created => "this object created it",
        }
    }
}

/// What deleting an object will do to its asset, and why.
pub fn deletion_rule(p: &Policies, adopted: bool) -> DeletionRule {
    match (p.prevent_delete, p.deletion_policy) {
        (true, _) => DeletionRule::PreventDelete,
        (false, Some(d)) => DeletionRule::Spec(d),
        (false, None) if adopted => DeletionRule::Adopted(p.adopted_deletion_policy),
        (false, None) => DeletionRule::Created,
    }
}

/// What the object's previous status says, as far as decisions care.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct History {
    /// Ready was True for the object's current generation: a missing or different asset
    /// now means someone changed it behind the operator's back.
    pub ready_for_generation: bool,
    /// Ready was True, for any generation.
    pub was_ready: bool,
    /// The object was already waiting for its stream after that stream was deleted.
    pub waiting_for_deleted_stream: bool,
    /// The reason of a Stalled=True condition written for the current generation.
    pub stalled_for_generation: Option<String>,
    /// The status says the asset was adopted.
    pub adopted: bool,
    /// The reason of a Ready=True condition written for the current generation.
    pub ready_reason: Option<String>,
    /// A status was written before: the operator has already tried (a create that timed
    /// out may have been done by the server all the same).
    pub attempted: bool,
    /// The server holds exactly what it held after this object's last reconcile (not a
    /// status fact: the operator's memory of the asset).
    pub unchanged_since_write: bool,
    /// This process's last create of the asset (not a status fact: memory).
    pub recent_create: Option<RecentCreate>,
    /// The status says the asset is being recreated with waits ([`Plan::RecreateLater`]).
    pub recreating_with_backoff: bool,
}

/// The operator's last create of an asset: how long ago, and how many creates in a row
/// before it followed one another quickly (the asset deleted again each time soon after).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RecentCreate {
    /// Milliseconds since the create.
    pub ago_ms: u64,
    /// The creates in a row this one ended (0: the first, or one after a quiet spell).
    pub streak: u32,
}

/// Recreates in a row that happen at once; from the next one on, each waits (like a
/// crash-looping container): 1 s after the previous create, doubling, at most
/// [`RECREATE_MAX_WAIT`]. An asset the server (or anyone) deletes every time it appears —
/// a consumer whose `inactiveThreshold` passes before any client comes — is recreated
/// slowly instead of in a tight loop.
pub const RECREATES_AT_ONCE: u32 = 5;
/// The longest wait between two recreates.
pub const RECREATE_MAX_WAIT: Duration = Duration::from_secs(300);
/// How long a recreated asset must last for a streak to end (and the object to be Ready).
pub const RECREATE_SETTLE: Duration = Duration::from_secs(60);

/// The wait before the create numbered `streak` in a row, counted from the previous one.
pub fn recreate_wait(streak: u32) -> Duration {
    if streak <= RECREATES_AT_ONCE {
        return Duration::ZERO;
    }
    let doublings = (streak - RECREATES_AT_ONCE - 1).min(16);
    Duration::from_secs(1u64 << doublings).min(RECREATE_MAX_WAIT)
}

/// The streak a create now would continue: the next number after the last create's, when
/// that one came less than its wait plus [`RECREATE_SETTLE`] ago; else 0.
pub fn create_streak(last: Option<&RecentCreate>) -> u32 {
    match last {
        Some(r) => {
            let next = r.streak.saturating_add(1);
            let ago = Duration::from_millis(r.ago_ms);
            if ago < recreate_wait(next) + RECREATE_SETTLE {
                next
            } else {
                0
            }
        }
        None => 0,
    }
}

/// True while an asset recreated after a wait has not yet lasted [`RECREATE_SETTLE`].
fn settling(last: Option<&RecentCreate>) -> Option<Duration> {
    let r = last.filter(|r| r.streak > RECREATES_AT_ONCE)?;
    RECREATE_SETTLE
        .checked_sub(Duration::from_millis(r.ago_ms))
        .filter(|d| !d.is_zero())
}

/// How an operation failed, as far as decisions care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Whether retrying can help.
    pub disposition: Disposition,
    /// The condition reason naming the cause.
    pub reason: &'static str,
    /// What happened, in the server's words where it gave some.
    pub message: String,
}

impl From<&JsError> for Failure {
    fn from(e: &JsError) -> Self {
        Self {
            disposition: e.disposition(),
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

impl Failure {
    /// A failure that may pass by itself.
    pub fn transient(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            disposition: Disposition::Transient,
            reason,
            message: message.into(),
        }
    }
}

/// The asset an object manages, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// What the asset is called ("stream", "key-value bucket", ...).
    pub noun: &'static str,
    /// The asset's identity ("orders", "worker on stream orders").
    pub id: String,
    /// The stream a consumer belongs to.
    pub stream: Option<String>,
    /// The object's name.
    pub object: String,
    /// What recreating the asset loses, for the Warning event.
    pub lost_on_recreate: &'static str,
}

/// An event to publish about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// A Warning (true) or Normal event.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened.
    pub note: String,
}

impl Event {
    fn normal(reason: &'static str, note: String) -> Self {
        Self {
            warning: false,
            reason,
            note,
        }
    }

    fn warning(reason: &'static str, note: String) -> Self {
        Self {
            warning: true,
            reason,
            note,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where a reconcile ends

/// Where a reconcile ended; the status conditions follow from it (README, "Status").
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// The asset matches the spec (or differs only as `preventUpdate` allows):
    /// `Ready=True` with a healthy reason (`Created`, `Updated`, `Noop`, `SkipUpdate`).
    Ready {
        /// What this reconcile did, as one of the healthy reasons.
        reason: &'static str,
        /// What the asset is like now.
        message: String,
    },
    /// Work is under way and continues by itself (waiting for a stream, looking again):
    /// `Ready=Unknown`, `Reconciling=True`.
    Progressing {
        /// Why, as a condition reason.
        reason: &'static str,
        /// What is happening.
        message: String,
    },
    /// Failed for a reason that may pass; retried with backoff: `Ready=False`,
    /// `Reconciling=True`.
    Retrying {
        /// Why, as a condition reason.
        reason: &'static str,
        /// What failed.
        message: String,
    },
    /// Retrying cannot help until something changes: `Ready=False`, `Stalled=True`.
    Stalled {
        /// Why, as a condition reason.
        reason: &'static str,
        /// What is wrong and what would fix it.
        message: String,
    },
}

impl State {
    /// A Ready state.
    pub fn ready(reason: &'static str, message: impl Into<String>) -> State {
        State::Ready {
            reason,
            message: message.into(),
        }
    }

    /// The conditions for this state: `Ready` always, `Reconciling` and `Stalled` only
    /// while True.
    pub fn conditions(&self) -> Vec<Cond> {
        match self {
            State::Ready { reason, message } => vec![Cond::yes(READY, reason, message.clone())],
            State::Progressing { reason: r, message } => vec![
                Cond::unknown(READY, r, message.clone()),
                Cond::yes(RECONCILING, r, message.clone()),
            ],
            State::Retrying { reason: r, message } => vec![
                Cond::no(READY, r, message.clone()),
                Cond::yes(RECONCILING, r, message.clone()),
            ],
            State::Stalled { reason: r, message } => vec![
                Cond::no(READY, r, message.clone()),
                Cond::yes(STALLED, r, message.clone()),
            ],
        }
    }

    /// True for the Ready state.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready { .. })
    }

    /// The condition reason of the state.
    pub fn reason(&self) -> &'static str {
        match self {
            State::Ready { reason, .. }
            | State::Progressing { reason, .. }
            | State::Retrying { reason, .. }
            | State::Stalled { reason, .. } => reason,
        }
    }

    /// The state a failed operation leaves the object in: a retry for what may pass, a
    /// stall for refused configurations and credentials.
    pub fn failed(f: &Failure, noun: &str) -> State {
        match f.disposition {
            Disposition::Transient => State::Retrying {
                reason: f.reason,
                message: f.message.clone(),
            },
            Disposition::Auth => State::Stalled {
                reason: f.reason,
                message: f.message.clone(),
            },
            Disposition::Permanent => State::Stalled {
                reason: f.reason,
                message: format!("JetStream refused the {noun} configuration: {}", f.message),
            },
        }
    }

    /// The state of a spec that cannot become a configuration.
    pub fn invalid_spec(message: String) -> State {
        State::Stalled {
            reason: reason::INVALID_SPEC,
            message,
        }
    }
}

/// A reconcile that found nothing to change keeps the reason that says how the asset came
/// to match this generation (`Created`, `Updated`), so a look that changes nothing (a
/// resync, an advisory about the operator's own update) writes nothing.
pub fn settle(state: State, history: &History) -> State {
    match state {
        State::Ready { reason: r, message } if r == reason::NOOP => {
            let kept = match history.ready_reason.as_deref() {
                Some(reason::CREATED) => reason::CREATED,
                Some(reason::UPDATED) => reason::UPDATED,
                _ => reason::NOOP,
            };
            State::Ready {
                reason: kept,
                message,
            }
        }
        other => other,
    }
}

/// The Warning event announcing a stall, once: only when the object was not already
/// stalled for the same reason at this generation.
pub fn stall_event(state: &State, history: &History) -> Option<Event> {
    match state {
        State::Stalled { reason, message }
            if history.stalled_for_generation.as_deref() != Some(*reason) =>
        {
            Some(Event::warning(reason, message.clone()))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Phase

/// The object's lifecycle facts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectFacts {
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The operator's finalizer is on the object.
    pub has_finalizer: bool,
    /// The pause annotation is set.
    pub paused: bool,
}

named_enum! {
    /// What a reconcile does with an object.
    pub enum Phase {
        /// Deleted and not ours to finalize: forget it.
        Forget => "Forget",
        /// Being deleted with our finalizer: clean up the asset, then release.
        Finalize => "Finalize",
        /// Paused by annotation: say so, touch nothing.
        Pause => "Pause",
        /// Live without our finalizer yet: add it, then apply.
        AddFinalizer => "AddFinalizer",
        /// Live: bring the asset to the spec.
        Apply => "Apply",
    }
}

/// The phase of an object.
pub fn phase(f: &ObjectFacts) -> Phase {
    match (f.deleting, f.has_finalizer, f.paused) {
        (true, true, _) => Phase::Finalize,
        (true, false, _) => Phase::Forget,
        (false, _, true) => Phase::Pause,
        (false, false, false) => Phase::AddFinalizer,
        (false, true, false) => Phase::Apply,
    }
}

// ---------------------------------------------------------------------------------------
// Apply

/// Why an asset is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Refusal {
    /// It is stamped with another object's marker (named here).
    OwnedByOther(String),
    /// It exists, unowned, and the adoption policy is `never`.
    AdoptionNever,
    /// It exists, unowned, and the object's namespace may not adopt.
    AdoptionNotHere,
    /// It is missing and the operator is read-only.
    ReadOnlyMissing,
    /// It differs in these fields and the operator is read-only.
    ReadOnly(Vec<String>),
    /// It differs in these fields and the object has `preventUpdate`.
    UpdatePrevented(Vec<String>),
    /// It differs in fields JetStream cannot change in place (described).
    Immutable(Vec<String>),
    /// The server stored other values for these fields than the spec asked for, the object
    /// stalled on it, and the asset is unchanged since: writing the same again would only
    /// get the same answer (and its advisory would start the next round).
    StoredDifferently(Vec<String>),
    /// The spec asks for settings the server's version does not know (an older server
    /// would drop them without a word), so nothing is written.
    NeedsNewerServer {
        /// The server's version.
        server: String,
        /// The settings, each with the release that introduced it.
        fields: Vec<String>,
    },
}

/// Why a matching asset is not stamped with the owner marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Hold {
    /// The operator is read-only.
    ReadOnly,
    /// The object has `preventUpdate`.
    PreventUpdate,
}

/// What to do with an object's asset.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Plan {
    /// The consumer's stream does not exist: wait for it (it wakes the consumer when it
    /// appears). `deleted` when the stream existed before.
    WaitForStream {
        /// The stream existed and was deleted.
        deleted: bool,
    },
    /// Create the missing asset. `recreate` when it had matched this generation before
    /// (deleted behind the operator's back).
    Create {
        /// It existed before and was deleted by someone else.
        recreate: bool,
        /// The creates in a row this one makes (see [`create_streak`]).
        #[serde(default)]
        streak: u32,
        /// It is the first create of a streak that waits, and the status does not say so
        /// yet (no [`Plan::RecreateLater`] came before it): announce the waits.
        #[serde(default)]
        announce: bool,
    },
    /// The asset is missing again soon after the operator's last creates: create it
    /// after this wait (see [`recreate_wait`]).
    RecreateLater {
        /// Milliseconds left to wait.
        wait_ms: u64,
        /// The creates in a row the next one makes.
        streak: u32,
        /// The status does not say so yet: announce it.
        #[serde(default)]
        announce: bool,
    },
    /// The asset matches, recreated after a wait, and has not lasted
    /// [`RECREATE_SETTLE`] yet.
    Settling {
        /// Milliseconds until it has.
        left_ms: u64,
    },
    /// Take over an unowned asset: stamp it and apply these changes.
    Adopt {
        /// The fields that change besides the marker.
        changes: Vec<String>,
    },
    /// Update our asset in these fields. `drift` when it had matched this generation
    /// before (changed behind the operator's back); `restamp` when its owner marker was
    /// written by an earlier version and is brought up to date.
    Update {
        /// The fields that change.
        changes: Vec<String>,
        /// It was changed by someone else.
        drift: bool,
        /// The owner marker is rewritten in the current format.
        #[serde(default)]
        restamp: bool,
    },
    /// Nothing to do: it matches.
    Noop,
    /// It matches what the spec asks, but may not be stamped, so it is not taken over.
    NoopUnstamped(Hold),
    /// Leave it alone.
    Refuse(Refusal),
}

named_enum! {
    /// The variants of [`Plan`] and [`Refusal`], for coverage checks and logs.
    pub enum PlanKind {
        /// [`Plan::WaitForStream`].
        WaitForStream => "WaitForStream",
        /// [`Plan::Create`].
        Create => "Create",
        /// [`Plan::RecreateLater`].
        RecreateLater => "RecreateLater",
        /// [`Plan::Settling`].
        Settling => "Settling",
        /// [`Plan::Adopt`].
        Adopt => "Adopt",
        /// [`Plan::Update`].
        Update => "Update",
        /// [`Plan::Noop`].
        Noop => "Noop",
        /// [`Plan::NoopUnstamped`].
        NoopUnstamped => "NoopUnstamped",
        /// [`Refusal::OwnedByOther`].
        RefuseOwnedByOther => "Refuse/OwnedByOther",
        /// [`Refusal::AdoptionNever`].
        RefuseAdoptionNever => "Refuse/AdoptionNever",
        /// [`Refusal::AdoptionNotHere`].
        RefuseAdoptionNotHere => "Refuse/AdoptionNotHere",
        /// [`Refusal::ReadOnlyMissing`].
        RefuseReadOnlyMissing => "Refuse/ReadOnlyMissing",
        /// [`Refusal::ReadOnly`].
        RefuseReadOnly => "Refuse/ReadOnly",
        /// [`Refusal::UpdatePrevented`].
        RefuseUpdatePrevented => "Refuse/UpdatePrevented",
        /// [`Refusal::Immutable`].
        RefuseImmutable => "Refuse/Immutable",
        /// [`Refusal::StoredDifferently`].
        RefuseStoredDifferently => "Refuse/StoredDifferently",
        /// [`Refusal::NeedsNewerServer`].
        RefuseNeedsNewerServer => "Refuse/NeedsNewerServer",
    }
}

impl Plan {
    /// The plan's kind.
    pub fn kind(&self) -> PlanKind {
        match self {
            Plan::WaitForStream { .. } => PlanKind::WaitForStream,
            Plan::Create { .. } => PlanKind::Create,
            Plan::RecreateLater { .. } => PlanKind::RecreateLater,
            Plan::Settling { .. } => PlanKind::Settling,
            Plan::Adopt { .. } => PlanKind::Adopt,
            Plan::Update { .. } => PlanKind::Update,
            Plan::Noop => PlanKind::Noop,
            Plan::NoopUnstamped(_) => PlanKind::NoopUnstamped,
            Plan::Refuse(r) => match r {
                Refusal::OwnedByOther(_) => PlanKind::RefuseOwnedByOther,
                Refusal::AdoptionNever => PlanKind::RefuseAdoptionNever,
                Refusal::AdoptionNotHere => PlanKind::RefuseAdoptionNotHere,
                Refusal::ReadOnlyMissing => PlanKind::RefuseReadOnlyMissing,
                Refusal::ReadOnly(_) => PlanKind::RefuseReadOnly,
                Refusal::UpdatePrevented(_) => PlanKind::RefuseUpdatePrevented,
                Refusal::Immutable(_) => PlanKind::RefuseImmutable,
                Refusal::StoredDifferently(_) => PlanKind::RefuseStoredDifferently,
                Refusal::NeedsNewerServer { .. } => PlanKind::RefuseNeedsNewerServer,
            },
        }
    }

    /// True when the plan writes to JetStream.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Plan::Create { .. } | Plan::Adopt { .. } | Plan::Update { .. }
        )
    }
}

/// The facts an apply decision rests on.
#[derive(Clone, Copy, Debug)]
pub struct ApplyFacts<'a, C> {
    /// The configuration the spec asks for, stamped with this object's marker; `None`
    /// when it cannot be built yet because the consumer's stream is missing.
    pub desired: Option<&'a C>,
    /// The asset as the server holds it; `None` when it does not exist.
    pub observed: Option<&'a C>,
    /// This object, as an owner.
    pub owner: &'a Owner,
    /// What the reconcile may do.
    pub policies: Policies,
    /// What the previous status says.
    pub history: &'a History,
    /// The server's version ([`NEWEST`](crate::jetstream::config::NEWEST) when unknown).
    pub server: ServerVersion,
}

/// Decides what to do with an asset. The configurations are compared once, here.
pub fn apply<C: AssetConfig>(f: &ApplyFacts<'_, C>) -> Plan {
    let p = f.policies;
    let Some(desired) = f.desired else {
        return Plan::WaitForStream {
            deleted: f.history.was_ready || f.history.waiting_for_deleted_stream,
        };
    };
    // Before anything is written or taken over: what the server would silently drop.
    let newer = desired.needs_newer(f.server);
    if !newer.is_empty() {
        let (major, minor, patch) = f.server;
        return Plan::Refuse(Refusal::NeedsNewerServer {
            server: format!("{major}.{minor}.{patch}"),
            fields: newer,
        });
    }
    let Some(observed) = f.observed else {
        if p.read_only {
            return Plan::Refuse(Refusal::ReadOnlyMissing);
        }
        let last = f.history.recent_create.as_ref();
        let streak = create_streak(last);
        let since = last.map_or(Duration::MAX, |r| Duration::from_millis(r.ago_ms));
        if let Some(left) = recreate_wait(streak).checked_sub(since)
            && !left.is_zero()
        {
            return Plan::RecreateLater {
                wait_ms: millis(left),
                streak,
                announce: !f.history.recreating_with_backoff,
            };
        }
        return Plan::Create {
            recreate: f.history.ready_for_generation || streak > 0,
            streak,
            announce: streak > RECREATES_AT_ONCE && !f.history.recreating_with_backoff,
        };
    };
    let ownership = f.owner.classify(observed.metadata());
    let adopting = match ownership {
        Ownership::Ours | Ownership::OursOutdated => false,
        Ownership::Other(who) => return Plan::Refuse(Refusal::OwnedByOther(who)),
        Ownership::Unowned if p.adoption == AdoptionPolicy::Never => {
            return Plan::Refuse(Refusal::AdoptionNever);
        }
        Ownership::Unowned if !p.may_adopt_here => return Plan::Refuse(Refusal::AdoptionNotHere),
        Ownership::Unowned => true,
    };
    let restamp = ownership == Ownership::OursOutdated;
    let changes = C::changes(desired, observed);
    if changes.is_empty() && !adopting && !restamp {
        return match settling(f.history.recent_create.as_ref()) {
            Some(left) => Plan::Settling {
                left_ms: millis(left),
            },
            None => Plan::Noop,
        };
    }
    let hold = if p.read_only {
        Some(Hold::ReadOnly)
    } else if p.prevent_update {
        Some(Hold::PreventUpdate)
    } else {
        None
    };
    if let Some(hold) = hold {
        return match (changes.is_empty(), hold) {
            // An outdated marker of ours is still ours: nothing the spec asks for differs.
            (true, _) if !adopting => Plan::Noop,
            // Only the marker is missing: nothing the spec asks for differs.
            (true, _) => Plan::NoopUnstamped(hold),
            (false, Hold::ReadOnly) => Plan::Refuse(Refusal::ReadOnly(changes)),
            (false, Hold::PreventUpdate) => Plan::Refuse(Refusal::UpdatePrevented(changes)),
        };
    }
    // The last write was stored otherwise and nothing moved since: no second round.
    if f.history.unchanged_since_write
        && f.history.stalled_for_generation.as_deref() == Some(reason::NOT_SUPPORTED)
        && !adopting
    {
        return Plan::Refuse(Refusal::StoredDifferently(changes));
    }
    let immutable = C::immutable(desired, observed, &changes);
    if !immutable.is_empty() {
        return Plan::Refuse(Refusal::Immutable(immutable));
    }
    if adopting {
        Plan::Adopt { changes }
    } else {
        Plan::Update {
            changes,
            drift: f.history.ready_for_generation,
            restamp,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether an apply reads the asset before planning. A stream the object never had (no
/// status was ever written for the object, and the operator may write) is most likely
/// absent: it is created straight away, and read only when the server answers that the
/// name is taken (a refused stream create changes nothing). After any earlier attempt it
/// is read first: a create that timed out may have been carried out by the server, and
/// repeating it blind can time out again the same way (a stream with thousands of
/// subjects takes the server seconds to check). Consumers are always read first: on a
/// standalone nats-server without the fix of nats-server#8491, a refused consumer create
/// destroys the stored state of the consumer that has the name.
pub fn observe_first(is_stream: bool, history: &History, policies: Policies) -> bool {
    !is_stream
        || policies.read_only
        || history.attempted
        || history.was_ready
        || history.adopted
        || history.stalled_for_generation.is_some()
}

/// What performing an apply plan came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Executed<'a, C> {
    /// Nothing was sent (the plan does not write).
    Nothing,
    /// The server accepted the write and stores this.
    Stored(&'a C),
    /// The create raced with a create by someone else.
    AlreadyExists,
    /// The consumer's stream disappeared in the meantime.
    StreamMissing,
    /// The write failed.
    Failed(Failure),
}

/// The state and event that follow from an apply plan and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Conclusion {
    /// Where the reconcile ends.
    pub state: State,
    /// What to announce, if anything.
    pub event: Option<Event>,
    /// The asset was adopted now.
    pub adopted: bool,
    /// When to look again, where the plan says (instead of the failure backoff).
    pub retry_after: Option<Duration>,
}

impl Conclusion {
    fn quiet(state: State) -> Self {
        Self {
            state,
            event: None,
            adopted: false,
            retry_after: None,
        }
    }
}

/// The Warning that recreates have started to wait.
fn backoff_event(s: &Subject) -> Event {
    Event::warning(
        reason::RECREATE_BACKOFF,
        format!(
            "{} {} was deleted again soon after each of the operator's last {} creates; from now on it is recreated with a wait in between (1 s, doubling, at most {} s)",
            s.noun,
            s.id,
            RECREATES_AT_ONCE + 1,
            RECREATE_MAX_WAIT.as_secs()
        ),
    )
}

/// The state of an asset being recreated with waits in between (missing, or recreated
/// and not lasted long enough yet). One message for all of it, so the status is written
/// once per streak, not once per recreate.
fn recreate_backoff<C: AssetConfig>(desired: Option<&C>, s: &Subject) -> State {
    let why = desired
        .and_then(C::removed_by_server)
        .map(|w| format!(" ({w})"))
        .unwrap_or_default();
    State::Retrying {
        reason: reason::RECREATE_BACKOFF,
        message: format!(
            "{} {} was deleted again soon after each of the operator's last {} creates{why}; it is recreated with a wait in between (1 s, doubling, at most {} s) and becomes Ready once it has lasted {} s",
            s.noun,
            s.id,
            RECREATES_AT_ONCE + 1,
            RECREATE_MAX_WAIT.as_secs(),
            RECREATE_SETTLE.as_secs()
        ),
    }
}

/// Ready (with `reason`), unless the server kept something other than what was asked for.
fn verified<C: AssetConfig>(desired: &C, stored: &C, reason: &'static str, s: &Subject) -> State {
    let residual = C::changes(desired, stored);
    if residual.is_empty() {
        matches(reason, s)
    } else {
        State::Stalled {
            reason: reason::NOT_SUPPORTED,
            message: format!(
                "JetStream accepted {} {} but stored different values for {}; set them explicitly to what the server allows{}",
                s.noun,
                s.id,
                residual.join(", "),
                newer_fields::<C>(&residual)
            ),
        }
    }
}

/// Names the fields among `residual` that need a newer server than some supported ones.
fn newer_fields<C: AssetConfig>(residual: &[String]) -> String {
    let newer: Vec<String> = residual
        .iter()
        .filter_map(|f| C::introduced_in(f).map(|v| format!("{f} needs nats-server {v} or newer")))
        .collect();
    if newer.is_empty() {
        String::new()
    } else {
        format!(" ({}; an older server drops it)", newer.join(", "))
    }
}

fn matches(reason: &'static str, s: &Subject) -> State {
    State::ready(reason, format!("{} {} matches the spec", s.noun, s.id))
}

/// The state and event for a plan and what performing it came to.
pub fn conclude<C: AssetConfig>(
    plan: &Plan,
    executed: &Executed<'_, C>,
    desired: Option<&C>,
    owner: &Owner,
    s: &Subject,
) -> Conclusion {
    let (noun, id) = (s.noun, &s.id);
    match executed {
        Executed::Failed(f) => return Conclusion::quiet(State::failed(f, noun)),
        Executed::AlreadyExists => {
            return Conclusion::quiet(State::Progressing {
                reason: reason::PROGRESSING,
                message: format!("{noun} {id} appeared while being created; checking it again"),
            });
        }
        Executed::StreamMissing => {
            return conclude(
                &Plan::WaitForStream { deleted: true },
                &Executed::<C>::Nothing,
                desired,
                owner,
                s,
            );
        }
        Executed::Nothing | Executed::Stored(_) => {}
    }
    let stored = match executed {
        Executed::Stored(c) => Some(*c),
        _ => None,
    };
    let state_after_write = |reason| match (desired, stored) {
        (Some(d), Some(c)) => verified(d, c, reason, s),
        _ => matches(reason, s),
    };
    match plan {
        Plan::WaitForStream { deleted } => {
            let stream = s.stream.as_deref().unwrap_or_default();
            let message = if *deleted {
                format!("stream {stream} was deleted; {noun} {id} comes back when the stream does")
            } else {
                format!("waiting for stream {stream} to exist")
            };
            Conclusion::quiet(State::Progressing {
                reason: reason::WAITING_FOR_STREAM,
                message,
            })
        }
        // A create after a wait: not Ready until the asset has lasted, and quiet unless it
        // is the first sign of the waits (its wait had passed before the deletion was seen).
        Plan::Create {
            streak, announce, ..
        } if *streak > RECREATES_AT_ONCE => {
            let state = match state_after_write(reason::CREATED) {
                State::Ready { .. } => recreate_backoff(desired, s),
                other => other,
            };
            Conclusion {
                state,
                event: announce.then(|| backoff_event(s)),
                adopted: false,
                retry_after: Some(RECREATE_SETTLE),
            }
        }
        Plan::RecreateLater {
            wait_ms, announce, ..
        } => Conclusion {
            state: recreate_backoff(desired, s),
            event: announce.then(|| backoff_event(s)),
            adopted: false,
            retry_after: Some(Duration::from_millis(*wait_ms)),
        },
        Plan::Settling { left_ms } => Conclusion {
            retry_after: Some(Duration::from_millis(*left_ms)),
            ..Conclusion::quiet(recreate_backoff(desired, s))
        },
        Plan::Create { recreate, .. } => Conclusion {
            state: state_after_write(reason::CREATED),
            event: Some(if *recreate {
                Event::warning(
                    reason::DRIFT_REPAIRED,
                    format!(
                        "{noun} {id} was missing from JetStream (deleted behind the operator's back) and has been recreated; {}",
                        s.lost_on_recreate
                    ),
                )
            } else {
                Event::normal(reason::CREATED, format!("created {noun} {id}"))
            }),
            adopted: false,
            retry_after: None,
        },
        Plan::Adopt { changes } => Conclusion {
            state: state_after_write(reason::UPDATED),
            event: Some(Event::normal(
                reason::ADOPTED,
                format!(
                    "adopted existing {noun} {id} (stamped with owner {}); {}",
                    owner.id,
                    if changes.is_empty() {
                        "nothing else changed".to_string()
                    } else {
                        format!("changed to match the spec: {}", changes.join(", "))
                    }
                ),
            )),
            adopted: true,
            retry_after: None,
        },
        Plan::Update {
            changes, restamp, ..
        } if changes.is_empty() && *restamp => Conclusion {
            state: state_after_write(reason::UPDATED),
            event: Some(Event::normal(
                reason::UPDATED,
                format!(
                    "re-stamped {noun} {id} with the owner marker of this version (owner {}, kind {})",
                    owner.id, owner.kind
                ),
            )),
            adopted: false,
            retry_after: None,
        },
        Plan::Update { changes, drift, .. } => Conclusion {
            state: state_after_write(reason::UPDATED),
            event: Some(if *drift {
                Event::normal(
                    reason::DRIFT_REPAIRED,
                    format!(
                        "{noun} {id} had been changed behind the operator's back ({}); restored to the spec",
                        changes.join(", ")
                    ),
                )
            } else {
                Event::normal(
                    reason::UPDATED,
                    format!("updated {noun} {id}: {}", changes.join(", ")),
                )
            }),
            adopted: false,
            retry_after: None,
        },
        Plan::Noop => Conclusion::quiet(matches(reason::NOOP, s)),
        Plan::NoopUnstamped(hold) => Conclusion::quiet(State::ready(
            reason::NOOP,
            format!(
                "{noun} {id} matches the spec (not stamped with an owner: {})",
                hold_text(*hold)
            ),
        )),
        Plan::Refuse(r) => Conclusion::quiet(refusal_state(r, s)),
    }
}

fn hold_text(h: Hold) -> &'static str {
    match h {
        Hold::ReadOnly => "the operator is read-only",
        Hold::PreventUpdate => "spec.preventUpdate is set",
    }
}

fn refusal_state(r: &Refusal, s: &Subject) -> State {
    let (noun, id) = (s.noun, &s.id);
    let (reason, message) = match r {
        Refusal::OwnedByOther(who) => (
            reason::RESOURCE_CONFLICT,
            format!("{noun} {id} is owned by {who}; this object leaves it untouched"),
        ),
        Refusal::AdoptionNever => (
            reason::RESOURCE_CONFLICT,
            format!(
                "{noun} {id} already exists and no object owns it; the adoption policy is 'never', so it is left untouched"
            ),
        ),
        Refusal::AdoptionNotHere => (
            reason::RESOURCE_CONFLICT,
            format!(
                "{noun} {id} already exists and no object owns it; objects in this namespace may not adopt existing assets (--adoption-namespaces), so it is left untouched"
            ),
        ),
        Refusal::ReadOnlyMissing => (
            reason::READ_ONLY,
            format!(
                "{noun} {id} does not exist in JetStream; the operator is read-only, so it is not created"
            ),
        ),
        Refusal::ReadOnly(fields) => (
            reason::READ_ONLY,
            format!(
                "{noun} {id} differs from the spec in {}; {}, so it is not updated",
                fields.join(", "),
                hold_text(Hold::ReadOnly)
            ),
        ),
        // Reported, and allowed: the spec asked for it.
        Refusal::UpdatePrevented(fields) => {
            return State::ready(
                reason::SKIP_UPDATE,
                format!(
                    "{noun} {id} differs from the spec in {}; {}, so it is not updated",
                    fields.join(", "),
                    hold_text(Hold::PreventUpdate)
                ),
            );
        }
        Refusal::NeedsNewerServer { server, fields } => (
            reason::NOT_SUPPORTED,
            format!(
                "the spec asks for settings nats-server {server} does not know: {}; it would drop them without a word, so {noun} {id} is left as it is: upgrade the server or take them out of the spec",
                fields.join(", ")
            ),
        ),
        // Worded as when the write came back different (see `verified`).
        Refusal::StoredDifferently(fields) => (
            reason::NOT_SUPPORTED,
            format!(
                "JetStream accepted {noun} {id} but stored different values for {}; set them explicitly to what the server allows",
                fields.join(", ")
            ),
        ),
        Refusal::Immutable(fields) => (
            reason::NOT_SUPPORTED,
            format!(
                "{noun} {id} differs from the spec in what JetStream cannot change in place: {}; the operator never deletes and recreates an asset to apply a change: change the spec back, or delete the {noun} yourself to have it recreated",
                fields.join("; ")
            ),
        ),
    };
    State::Stalled { reason, message }
}

// ---------------------------------------------------------------------------------------
// Consumer pause

/// What to do about a consumer's pause (driven through the pause API, not the config).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PausePlan {
    /// It already is as the spec says.
    Keep,
    /// Pause it until this time.
    Pause(String),
    /// Resume it.
    Resume,
    /// The spec asks for a pause, and the server has no pause API (before 2.11).
    NotSupported,
}

/// Decides the pause of a consumer whose configuration is now Ready: `want` is the
/// spec's (a future time, or none), `have` the server's; `api` says whether the server
/// has the pause API (2.11 and newer). A read-only operator and `preventUpdate` leave it
/// as it is.
pub fn pause(want: Option<&str>, have: Option<&str>, policies: Policies, api: bool) -> PausePlan {
    match (want, have) {
        _ if policies.read_only || policies.prevent_update => PausePlan::Keep,
        (Some(_), _) if !api => PausePlan::NotSupported,
        (w, h) if w == h => PausePlan::Keep,
        (Some(t), _) => PausePlan::Pause(t.to_string()),
        (None, Some(_)) => PausePlan::Resume,
        (None, None) => PausePlan::Keep,
    }
}

/// The state of a consumer whose pause the server cannot apply.
pub fn pause_not_supported(s: &Subject) -> State {
    State::Stalled {
        reason: reason::NOT_SUPPORTED,
        message: format!(
            "{} {} cannot be paused: pauseUntil (pause_until) needs nats-server 2.11 or newer",
            s.noun, s.id
        ),
    }
}

/// The event for a pause change that was made.
pub fn pause_event(plan: &PausePlan, s: &Subject) -> Option<Event> {
    match plan {
        PausePlan::Keep | PausePlan::NotSupported => None,
        PausePlan::Pause(t) => Some(Event::normal(
            reason::UPDATED,
            format!("paused {} {} until {t}", s.noun, s.id),
        )),
        PausePlan::Resume => Some(Event::normal(
            reason::UPDATED,
            format!("resumed {} {}", s.noun, s.id),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Deletion

/// What resolving the connection of an object being deleted came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Connected.
    Ready,
    /// The connection cannot be resolved (missing Account, Secret or file, or not
    /// allowed).
    Unresolved(String),
    /// Resolving or connecting failed.
    Failed(Failure),
}

/// What reading the asset of an object being deleted came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// It does not exist.
    Missing,
    /// It exists, with this ownership as seen from the object; `adopted` when its
    /// metadata says it was adopted.
    Present {
        /// Who owns it.
        ownership: Ownership,
        /// Its metadata carries the adoption mark.
        adopted: bool,
    },
    /// Reading it failed.
    Failed(Failure),
}

/// Everything known so far about deleting an object's asset. The executor fills in one
/// fact at a time, as [`deletion`] asks for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionFacts {
    /// The pause annotation is set.
    pub paused: bool,
    /// What the deletion may do.
    pub policies: Policies,
    /// The status says the asset was adopted.
    pub adopted: bool,
    /// The object has been waiting longer than `--deletion-grace`.
    pub past_grace: bool,
    /// A connection that resolved for the object's current connection settings is
    /// remembered (so a namespace whose Secrets are deleted first still cleans up).
    pub remembered: bool,
    /// The connection, once resolved.
    pub connection: Option<Connection>,
    /// The asset, once read.
    pub observed: Option<Observed>,
    /// The result of deleting it, once tried.
    pub deleted: Option<Result<(), Failure>>,
}

/// Why an asset is kept when its object is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Reconciling is paused.
    Paused,
    /// The operator is read-only.
    ReadOnly,
    /// Another object owns it (named here).
    OwnedByOther(String),
    /// This object never took it over.
    NeverAdopted,
    /// Its deletion policy keeps it (`preventDelete`, `deletionPolicy: Orphan`, or an
    /// adopted asset under `--adopted-deletion-policy=orphan`): kept with our marker
    /// removed, so another object may adopt it.
    Policy(DeletionRule),
}

/// The next step of a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Resolve the connection.
    Resolve,
    /// The connection cannot be resolved now: connect with the one remembered.
    UseRemembered,
    /// Read the asset.
    Observe,
    /// Delete the asset.
    Delete,
    /// Release the object and keep the asset.
    Keep(Keep),
    /// Release the object without being able to delete the asset (Warning).
    GiveUp(Failure),
    /// Try again later.
    Retry(Failure),
    /// Release the object: the asset is gone (`deleted` when this deletion removed it).
    Done {
        /// This deletion removed it.
        deleted: bool,
    },
}

named_enum! {
    /// The variants of [`Deletion`] and [`Keep`], for coverage checks.
    pub enum DeletionKind {
        /// [`Deletion::Resolve`].
        Resolve => "Resolve",
        /// [`Deletion::UseRemembered`].
        UseRemembered => "UseRemembered",
        /// [`Deletion::Observe`].
        Observe => "Observe",
        /// [`Deletion::Delete`].
        Delete => "Delete",
        /// [`Keep::Paused`].
        KeepPaused => "Keep/Paused",
        /// [`Keep::ReadOnly`].
        KeepReadOnly => "Keep/ReadOnly",
        /// [`Keep::OwnedByOther`].
        KeepOwnedByOther => "Keep/OwnedByOther",
        /// [`Keep::NeverAdopted`].
        KeepNeverAdopted => "Keep/NeverAdopted",
        /// [`Keep::Policy`] with `preventDelete`.
        KeepPreventDelete => "Keep/PreventDelete",
        /// [`Keep::Policy`] with `deletionPolicy: Orphan`.
        KeepOrphan => "Keep/Orphan",
        /// [`Keep::Policy`] for an adopted asset under the operator's default.
        KeepAdopted => "Keep/Adopted",
        /// [`Deletion::GiveUp`].
        GiveUp => "GiveUp",
        /// [`Deletion::Retry`].
        Retry => "Retry",
        /// [`Deletion::Done`].
        Done => "Done",
    }
}

impl Deletion {
    /// The step's kind.
    pub fn kind(&self) -> DeletionKind {
        match self {
            Deletion::Resolve => DeletionKind::Resolve,
            Deletion::UseRemembered => DeletionKind::UseRemembered,
            Deletion::Observe => DeletionKind::Observe,
            Deletion::Delete => DeletionKind::Delete,
            Deletion::Keep(k) => match k {
                Keep::Paused => DeletionKind::KeepPaused,
                Keep::ReadOnly => DeletionKind::KeepReadOnly,
                Keep::OwnedByOther(_) => DeletionKind::KeepOwnedByOther,
                Keep::NeverAdopted => DeletionKind::KeepNeverAdopted,
                Keep::Policy(DeletionRule::PreventDelete) => DeletionKind::KeepPreventDelete,
                Keep::Policy(DeletionRule::Adopted(_)) => DeletionKind::KeepAdopted,
                Keep::Policy(DeletionRule::Spec(_) | DeletionRule::Created) => {
                    DeletionKind::KeepOrphan
                }
            },
            Deletion::GiveUp(_) => DeletionKind::GiveUp,
            Deletion::Retry(_) => DeletionKind::Retry,
            Deletion::Done { .. } => DeletionKind::Done,
        }
    }
}

/// A failure ends the deletion for now: retried while it may pass and the grace period
/// lasts, given up on otherwise.
fn failed(f: &Failure, past_grace: bool) -> Deletion {
    if f.disposition == Disposition::Transient && !past_grace {
        Deletion::Retry(f.clone())
    } else {
        Deletion::GiveUp(f.clone())
    }
}

/// The next step of deleting an object's asset, from what is known so far.
pub fn deletion(f: &DeletionFacts) -> Deletion {
    if f.paused {
        return Deletion::Keep(Keep::Paused);
    }
    if f.policies.read_only {
        return Deletion::Keep(Keep::ReadOnly);
    }
    match &f.connection {
        None => return Deletion::Resolve,
        Some(Connection::Unresolved(_)) if f.remembered => return Deletion::UseRemembered,
        Some(Connection::Unresolved(why)) => {
            return Deletion::GiveUp(Failure {
                disposition: Disposition::Permanent,
                reason: reason::CONNECTION_UNRESOLVED,
                message: why.clone(),
            });
        }
        Some(Connection::Failed(e)) => return failed(e, f.past_grace),
        Some(Connection::Ready) => {}
    }
    let (ownership, adopted) = match &f.observed {
        None => return Deletion::Observe,
        Some(Observed::Missing) => return Deletion::Done { deleted: false },
        Some(Observed::Failed(e)) => return failed(e, f.past_grace),
        Some(Observed::Present { ownership, adopted }) => (ownership, *adopted),
    };
    match ownership {
        Ownership::Other(who) => return Deletion::Keep(Keep::OwnedByOther(who.clone())),
        Ownership::Unowned => return Deletion::Keep(Keep::NeverAdopted),
        Ownership::Ours | Ownership::OursOutdated => {}
    }
    let rule = deletion_rule(&f.policies, f.adopted || adopted);
    if rule.policy() == DeletionPolicy::Orphan {
        return Deletion::Keep(Keep::Policy(rule));
    }
    match &f.deleted {
        None => Deletion::Delete,
        Some(Ok(())) => Deletion::Done { deleted: true },
        Some(Err(e)) => failed(e, f.past_grace),
    }
}

/// The event that ends a deletion, if any.
pub fn deletion_event(step: &Deletion, s: &Subject) -> Option<Event> {
    let (noun, id) = (s.noun, &s.id);
    let keep = |note: String| Some(Event::normal(reason::ORPHANED, note));
    match step {
        Deletion::Resolve
        | Deletion::UseRemembered
        | Deletion::Observe
        | Deletion::Delete
        | Deletion::Retry(_) => None,
        Deletion::Done { deleted: false } => None,
        Deletion::Done { deleted: true } => Some(Event::normal(
            reason::DELETED,
            format!("deleted {noun} {id}"),
        )),
        Deletion::Keep(Keep::Paused) => keep(format!(
            "reconciling is paused: {noun} {id} is left in JetStream untouched"
        )),
        Deletion::Keep(Keep::ReadOnly) => keep(format!(
            "the operator is read-only: {noun} {id} is left in JetStream"
        )),
        Deletion::Keep(Keep::OwnedByOther(who)) => {
            keep(format!("{noun} {id} is owned by {who}; not deleting it"))
        }
        Deletion::Keep(Keep::NeverAdopted) => keep(format!(
            "{noun} {id} was never taken over by this object; not deleting it"
        )),
        Deletion::Keep(Keep::Policy(rule)) => keep(format!(
            "deletion policy {:?} ({}): {noun} {id} is kept in JetStream (ownership marker removed)",
            rule.policy(),
            rule.why()
        )),
        Deletion::GiveUp(f) if f.reason == reason::CONNECTION_UNRESOLVED => Some(Event::warning(
            reason::ORPHANED,
            format!(
                "cannot resolve the connection ({}); releasing the object without deleting {noun} {id}",
                f.message
            ),
        )),
        Deletion::GiveUp(f) => Some(Event::warning(
            reason::ORPHANED,
            format!(
                "could not delete {noun} {id} ({}); releasing {} so its namespace is not blocked; the {noun} may remain in JetStream",
                f.message, s.object
            ),
        )),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fuzz_tests.rs"]
mod fuzz_tests;
