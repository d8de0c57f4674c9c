//! The Account reconciler: checks that the servers accept an Account's settings, notices
//! rotated Secrets, and holds an Account's deletion while objects still use it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::ApiKind;
use crate::api::account::{Account, AccountStatus, account_ref};
use crate::api::conditions::{self, reason};
use crate::jetstream::api::JsApi;
use crate::metrics::Outcome;

use super::connect::AccountLayer;
use super::context::{Context, Error};
use super::engine::is_paused;
use super::kinds::{self, Managed, Visitor};
use super::plan::{Event, Failure, State};
use super::status;

/// Per-kind context of the Account controller.
pub struct AccountCtx {
    /// Shared context.
    pub ctx: Arc<Context>,
}

/// How often an Account re-reads its Secrets to notice rotation (GETs only; it writes
/// only when something changed).
pub const SECRET_RECHECK: Duration = Duration::from_secs(15);

/// The objects of one kind that use an Account (`<kind> <namespace>/<name>`).
async fn users_of<K: Managed>(
    client: kube::Client,
    namespaces: Vec<Option<String>>,
    home: String,
    name: String,
) -> Result<Vec<String>, kube::Error> {
    let mut out = Vec::new();
    for ns in &namespaces {
        let api: Api<K> = match ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        for o in api.list(&ListParams::default()).await? {
            let ons = o.namespace().unwrap_or_default();
            let uses = o
                .common()
                .account
                .as_deref()
                .filter(|a| !a.is_empty())
                .is_some_and(|a| account_ref(a, &ons) == (home.as_str(), name.as_str()));
            if uses {
                out.push(format!("{} {}/{}", K::KIND, ons, o.name_any()));
            }
        }
    }
    Ok(out)
}

/// Names of the objects, of every asset kind, that use an Account.
async fn dependents(ctx: &Context, account: &Account) -> Result<Vec<String>, kube::Error> {
    let home = account.namespace().unwrap_or_default();
    let namespaces: Vec<Option<String>> = if account.spec.allowed_namespaces.is_empty() {
        vec![Some(home.clone())]
    } else if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    struct Lists {
        client: kube::Client,
        namespaces: Vec<Option<String>>,
        home: String,
        name: String,
        lists: Vec<BoxFuture<'static, Result<Vec<String>, kube::Error>>>,
    }
    impl Visitor for Lists {
        fn asset<K: Managed>(&mut self) {
            self.lists.push(Box::pin(users_of::<K>(
                self.client.clone(),
                self.namespaces.clone(),
                self.home.clone(),
                self.name.clone(),
            )));
        }
        fn account(&mut self) {}
    }
    let mut lists = Lists {
        client: ctx.client.clone(),
        namespaces,
        home,
        name: account.name_any(),
        lists: Vec::new(),
    };
    kinds::visit(&mut lists);
    let mut out = Vec::new();
    for list in lists.lists {
        out.extend(list.await?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn write_status(
    ctx: &Context,
    account: &Account,
    state: &State,
    hash: Option<String>,
    dependents: Vec<String>,
) -> Result<(), Error> {
    let previous = account.status.as_ref();
    let now = conditions::Time::now();
    let next = AccountStatus {
        observed_generation: account.metadata.generation,
        conditions: conditions::merge(
            previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]),
            &state.conditions(),
            account.metadata.generation,
            &now,
        ),
        settings_hash: hash,
        dependents,
    };
    status::apply_status(ctx, account, Account::KIND, previous, &next).await?;
    Ok(())
}

/// Reconciles an Account.
pub async fn reconcile(account: Arc<Account>, ac: Arc<AccountCtx>) -> Result<Action, Error> {
    let ctx = &ac.ctx;
    let started = Instant::now();
    let result = if account.meta().deletion_timestamp.is_some() {
        reconcile_deletion(ctx, &account).await
    } else if is_paused(account.as_ref()) {
        Ok((Outcome::Paused, Action::await_change()))
    } else {
        reconcile_live(ctx, &account).await
    };
    let outcome = result.as_ref().map(|(o, _)| *o).unwrap_or(Outcome::Error);
    ctx.metrics
        .reconciled(Account::KIND, outcome, started.elapsed());
    result.map(|(_, a)| a)
}

/// Deleting: release the finalizer once no object uses the Account, and say who does
/// until then.
async fn reconcile_deletion(ctx: &Context, account: &Account) -> Result<(Outcome, Action), Error> {
    ctx.resolver.invalidate_account(
        &account.namespace().unwrap_or_default(),
        &account.name_any(),
    );
    if !account.finalizers().iter().any(|f| f == Account::FINALIZER) {
        return Ok((Outcome::Deleted, Action::await_change()));
    }
    let deps = dependents(ctx, account).await?;
    if deps.is_empty() {
        let keep: Vec<String> = account
            .finalizers()
            .iter()
            .filter(|f| *f != Account::FINALIZER)
            .cloned()
            .collect();
        status::patch_finalizers(ctx, account, Account::KIND, keep).await?;
        return Ok((Outcome::Deleted, Action::await_change()));
    }
    let state = State::Stalled {
        reason: reason::DELETION_BLOCKED,
        message: format!(
            "Account is still used by {}; delete or re-point them first",
            deps.join(", ")
        ),
    };
    let hash = account
        .status
        .as_ref()
        .and_then(|s| s.settings_hash.clone());
    let was_blocked = account
        .status
        .as_ref()
        .is_some_and(|s| !s.dependents.is_empty());
    let note = format!("deletion waits for {}", deps.join(", "));
    write_status(ctx, account, &state, hash, deps).await?;
    if !was_blocked {
        let ev = Event {
            warning: true,
            reason: reason::DELETION_BLOCKED,
            note,
        };
        ctx.event(account, Account::KIND, &ev).await;
    }
    Ok((Outcome::Blocked, Action::requeue(Duration::from_secs(5))))
}

/// Live: re-read the Secrets, check the connection when the settings changed, report.
async fn reconcile_live(ctx: &Context, account: &Account) -> Result<(Outcome, Action), Error> {
    if !account.finalizers().iter().any(|f| f == Account::FINALIZER) {
        let mut f = account.finalizers().to_vec();
        f.push(Account::FINALIZER.to_string());
        status::patch_finalizers(ctx, account, Account::KIND, f).await?;
    }
    let previous_hash = account
        .status
        .as_ref()
        .and_then(|s| s.settings_hash.clone());
    let (state, hash) = match ctx.resolver.account_layer(account).await {
        Err(e) => (e.state(), previous_hash.clone()),
        Ok(l) => {
            let unchanged = previous_hash.as_deref() == Some(l.hash.as_str())
                && account.status.as_ref().is_some_and(|s| {
                    s.is_ready() && s.observed_generation == account.metadata.generation
                });
            let state = if unchanged {
                State::ready(reason::NOOP, "the servers accept these settings")
            } else {
                check_connection(ctx, account, &l).await
            };
            (state, Some(l.hash))
        }
    };
    if hash != previous_hash {
        // Credentials or settings changed: dependents re-resolve (the status change below
        // wakes them through the watch relation).
        let (ns, name) = (account.namespace().unwrap_or_default(), account.name_any());
        ctx.resolver.invalidate_account(&ns, &name);
        info!(account = %format!("{ns}/{name}"), "account settings changed");
    }
    let was = account.status.as_ref().and_then(|s| {
        conditions::find(&s.conditions, conditions::STALLED)
            .map(|c| (c.status.clone(), c.reason.clone()))
    });
    if let State::Stalled { reason: r, message } = &state
        && was != Some(("True".into(), r.to_string()))
    {
        let ev = Event {
            warning: true,
            reason: r,
            note: message.clone(),
        };
        ctx.event(account, Account::KIND, &ev).await;
    }
    write_status(ctx, account, &state, hash, Vec::new()).await?;
    let outcome = if state.is_ready() {
        Outcome::Ready
    } else {
        Outcome::Stalled
    };
    Ok((outcome, Action::requeue(SECRET_RECHECK)))
}

/// Connects with the Account's settings alone (on the operator's default servers if it
/// names none and its namespace may use them) and asks JetStream for account info.
async fn check_connection(ctx: &Context, account: &Account, l: &AccountLayer) -> State {
    let resolved = match ctx.resolver.account_connection(account, l).await {
        Ok(r) => r,
        Err(e) => return e.state(),
    };
    let conn = match ctx.connection(&resolved.settings).await {
        Ok(c) => c,
        Err(e) => return State::failed(&Failure::from(&e), "account"),
    };
    let js = JsApi::new(
        conn,
        resolved.prefix,
        ctx.settings.request_timeout,
        ctx.metrics.clone(),
    );
    match js.account_info().await {
        Ok(_) => State::ready(reason::NOOP, "the servers accept these settings"),
        Err(e) => State::failed(&Failure::from(&e), "account"),
    }
}

/// Error policy of the Account controller.
pub fn error_policy(account: Arc<Account>, err: &Error, ac: Arc<AccountCtx>) -> Action {
    let key = format!(
        "Account/{}/{}",
        account.namespace().unwrap_or_default(),
        account.name_any()
    );
    ac.ctx.metrics.error(Account::KIND, err.category());
    warn!(object = %key, error = %err, "account reconcile failed");
    Action::requeue(ac.ctx.backoff(&key))
}
