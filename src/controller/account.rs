//! Accounts: resolving an Account (and its Secrets, read with GET, never cached cluster-wide)
//! into a connection layer, and the Account reconciler (connectivity check, status, the
//! deletion guard for dependents, and noticing rotated Secrets).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::account::{Account, AccountSpec, AccountStatus, account_ref};
use crate::api::conditions::{self, reason};
use crate::api::consumer::Consumer;
use crate::api::keyvalue::KeyValue;
use crate::api::objectstore::ObjectStore;
use crate::api::stream::Stream;
use crate::jetstream::api::JsApi;
use crate::jetstream::connection::{Auth, Pem};
use crate::metrics::ReconcileLabels;

use super::connect::{Layer, merge};
use super::engine::{error_state, is_paused};
use super::status::{self, State};
use super::{Context, Error};

/// The finalizer on Accounts (NACK's name).
pub const FINALIZER: &str = "account.nats.io/finalizer";

/// Why an object's connection cannot be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// Missing Account, Secret or key, or unreadable file: stalled until they change.
    #[error("{0}")]
    Unresolved(String),
    /// The Account does not allow the object's namespace.
    #[error("{0}")]
    Forbidden(String),
    /// The Kubernetes API failed: retry.
    #[error("{0}")]
    Transient(String),
}

impl ResolveError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ResolveError::Unresolved(_) => "connection_unresolved",
            ResolveError::Forbidden(_) => "forbidden",
            ResolveError::Transient(_) => "kube",
        }
    }

    /// The state an object in this situation is in.
    pub fn state(&self) -> State {
        match self {
            ResolveError::Unresolved(m) => State::Stalled {
                reason: reason::CONNECTION_UNRESOLVED,
                message: m.clone(),
            },
            ResolveError::Forbidden(m) => State::Stalled {
                reason: reason::FORBIDDEN,
                message: m.clone(),
            },
            ResolveError::Transient(m) => State::Progressing {
                reason: reason::KUBERNETES_ERROR,
                message: m.clone(),
            },
        }
    }
}

/// A resolved Account.
#[derive(Clone, Debug)]
pub struct AccountLayer {
    /// Connection settings of the Account.
    pub layer: Layer,
    /// Fingerprint of the Account's generation and its Secrets' versions.
    pub hash: String,
    /// The Account's spec (for the namespace check).
    pub spec: AccountSpec,
}

/// A short-lived cache of resolved Accounts, so that a burst of reconciles does not read
/// the same Account and Secrets a thousand times. The Account reconciler invalidates an
/// entry as soon as it sees the Account or its Secrets change.
#[derive(Default)]
pub struct AccountCache {
    entries: Mutex<HashMap<(String, String), CacheEntry>>,
}

/// When an Account was resolved, and the result.
type CacheEntry = (Instant, Result<AccountLayer, ResolveError>);

/// How long a resolved Account is reused.
const CACHE_TTL: Duration = Duration::from_secs(5);

impl AccountCache {
    fn get(&self, key: &(String, String)) -> Option<Result<AccountLayer, ResolveError>> {
        let m = self.entries.lock().ok()?;
        m.get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, r)| r.clone())
    }

    fn put(&self, key: (String, String), r: Result<AccountLayer, ResolveError>) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(key, (Instant::now(), r));
        }
    }

    /// Forgets an Account.
    pub fn invalidate(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(&(namespace.to_string(), name.to_string()));
        }
    }
}

struct SecretReader<'a> {
    api: Api<Secret>,
    namespace: &'a str,
    account: &'a str,
    cache: HashMap<String, Secret>,
    versions: BTreeMap<String, String>,
}

impl SecretReader<'_> {
    async fn value(&mut self, secret: &str, key: &str, what: &str) -> Result<String, ResolveError> {
        if !self.cache.contains_key(secret) {
            let s = match self.api.get_opt(secret).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return Err(ResolveError::Unresolved(format!(
                        "Secret {}/{secret} (the {what} of Account {}) does not exist",
                        self.namespace, self.account
                    )));
                }
                Err(kube::Error::Api(e)) if e.code == 403 => {
                    return Err(ResolveError::Unresolved(format!(
                        "the operator may not read Secret {}/{secret}: {}",
                        self.namespace, e.message
                    )));
                }
                Err(e) => {
                    return Err(ResolveError::Transient(format!(
                        "cannot read Secret {}/{secret}: {e}",
                        self.namespace
                    )));
                }
            };
            self.versions
                .insert(secret.to_string(), s.resource_version().unwrap_or_default());
            self.cache.insert(secret.to_string(), s);
        }
        let s = &self.cache[secret];
        let bytes = s
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.as_bytes().to_vec())
            })
            .ok_or_else(|| {
                ResolveError::Unresolved(format!(
                    "Secret {}/{secret} has no key {key:?} (the {what} of Account {})",
                    self.namespace, self.account
                ))
            })?;
        String::from_utf8(bytes).map_err(|_| {
            ResolveError::Unresolved(format!(
                "key {key:?} of Secret {}/{secret} is not text",
                self.namespace
            ))
        })
    }
}

fn read_file(path: &str, what: &str) -> Result<String, ResolveError> {
    std::fs::read_to_string(path)
        .map_err(|e| ResolveError::Unresolved(format!("cannot read {what} file {path}: {e}")))
}

fn key_or(v: &Option<String>, default: &str) -> String {
    v.clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Reads an Account and its Secrets into a connection layer.
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<AccountLayer, ResolveError> {
    let api: Api<Account> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        // An Account being deleted still resolves: its deletion waits for its dependents,
        // and they need it to clean up their assets.
        Ok(Some(account)) => layer_of(client, &account).await,
        Ok(None) => Err(ResolveError::Unresolved(format!(
            "Account {namespace}/{name} does not exist"
        ))),
        Err(e) => Err(ResolveError::Transient(format!(
            "cannot read Account {namespace}/{name}: {e}"
        ))),
    }
}

/// Reads an Account's Secrets (or files) into a connection layer.
pub async fn layer_of(
    client: &kube::Client,
    account: &Account,
) -> Result<AccountLayer, ResolveError> {
    let namespace = &account.namespace().unwrap_or_default();
    let name = &account.name_any();
    let spec = account.spec.clone();
    let mut secrets = SecretReader {
        api: Api::namespaced(client.clone(), namespace),
        namespace,
        account: name,
        cache: HashMap::new(),
        versions: BTreeMap::new(),
    };
    let mut layer = Layer {
        servers: spec
            .servers
            .iter()
            .filter(|s| !s.trim().is_empty())
            .cloned()
            .collect(),
        tls_first: spec.tls_first,
        js_domain: spec.js_domain.clone().filter(|d| !d.is_empty()),
        api_prefix: spec.js_api_prefix.clone().filter(|d| !d.is_empty()),
        ..Default::default()
    };
    // Authentication: creds > nkey > token > user/password (NACK's order).
    if let Some(c) = &spec.creds {
        let key = key_or(&c.file, "user.creds");
        let text = match &c.secret {
            Some(s) => secrets.value(&s.name, &key, "credentials").await?,
            None => read_file(&key, "credentials")?,
        };
        layer.auth = Some(Auth::Creds(text));
    } else if let Some(n) = &spec.nkey {
        let key = key_or(&n.seed, "seed");
        let text = match &n.secret {
            Some(s) => secrets.value(&s.name, &key, "NKey seed").await?,
            None => read_file(&key, "NKey seed")?,
        };
        layer.auth = Some(Auth::Nkey(text.trim().to_string()));
    } else if let Some(t) = &spec.token {
        let key = key_or(&t.token, "token");
        let text = match &t.secret {
            Some(s) => secrets.value(&s.name, &key, "token").await?,
            None => {
                return Err(ResolveError::Unresolved(format!(
                    "Account {namespace}/{name}: token needs a secret"
                )));
            }
        };
        layer.auth = Some(Auth::Token(text.trim().to_string()));
    } else if let Some(u) = &spec.user {
        let Some(s) = &u.secret else {
            return Err(ResolveError::Unresolved(format!(
                "Account {namespace}/{name}: user needs a secret"
            )));
        };
        let user = secrets
            .value(&s.name, &key_or(&u.user, "user"), "user")
            .await?;
        let password = secrets
            .value(&s.name, &key_or(&u.password, "password"), "password")
            .await?;
        layer.auth = Some(Auth::UserPassword(
            user.trim().to_string(),
            password.trim_end_matches('\n').to_string(),
        ));
    }
    if let Some(t) = &spec.tls {
        let pem = |v: String| Pem::Inline(v);
        match &t.secret {
            Some(s) => {
                if let Some(k) = t.ca.as_deref().filter(|k| !k.is_empty()) {
                    layer.ca = vec![pem(secrets.value(&s.name, k, "TLS CA").await?)];
                }
                if let (Some(c), Some(k)) = (
                    t.cert.as_deref().filter(|c| !c.is_empty()),
                    t.key.as_deref().filter(|k| !k.is_empty()),
                ) {
                    layer.client = Some((
                        pem(secrets.value(&s.name, c, "TLS certificate").await?),
                        pem(secrets.value(&s.name, k, "TLS key").await?),
                    ));
                }
            }
            None => {
                if let Some(ca) = t.ca.as_deref().filter(|k| !k.is_empty()) {
                    layer.ca = vec![Pem::File(ca.into())];
                }
                if let (Some(c), Some(k)) = (t.cert.as_deref(), t.key.as_deref()) {
                    layer.client = Some((Pem::File(c.into()), Pem::File(k.into())));
                }
            }
        }
    }
    let mut h = DefaultHasher::new();
    account.metadata.generation.hash(&mut h);
    secrets.versions.hash(&mut h);
    Ok(AccountLayer {
        layer,
        hash: format!("{:016x}", h.finish()),
        spec,
    })
}

/// Resolves `spec.account` of an object in `object_ns`: the Account's layer, after
/// checking that the Account lets that namespace use it.
pub async fn resolve_for(
    ctx: &Context,
    reference: &str,
    object_ns: &str,
) -> Result<(Layer, String), ResolveError> {
    let (ns, name) = account_ref(reference, object_ns);
    let key = (ns.to_string(), name.to_string());
    let loaded = match ctx.accounts.get(&key) {
        Some(r) => r,
        None => {
            let r = load(&ctx.client, ns, name).await;
            ctx.accounts.put(key, r.clone());
            r
        }
    }?;
    if !loaded.spec.allows(ns, object_ns) {
        return Err(ResolveError::Forbidden(format!(
            "Account {ns}/{name} does not allow objects in namespace {object_ns} (add it to spec.allowedNamespaces)"
        )));
    }
    Ok((loaded.layer, format!("{ns}/{name}")))
}

/// Per-kind context of the Account controller.
pub struct AccountCtx {
    /// Shared context.
    pub ctx: Arc<Context>,
}

/// How often an Account re-reads its Secrets to notice rotation (GETs only; it writes
/// only when something changed).
pub const SECRET_RECHECK: Duration = Duration::from_secs(15);

/// Names of the objects that use an Account (`<kind> <namespace>/<name>`).
async fn dependents(ctx: &Context, account: &Account) -> Result<Vec<String>, kube::Error> {
    let home = account.namespace().unwrap_or_default();
    let name = account.name_any();
    let namespaces: Vec<Option<String>> = if account.spec.allowed_namespaces.is_empty() {
        vec![Some(home.clone())]
    } else if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    macro_rules! scan {
        ($kind:ty, $label:expr) => {
            for ns in &namespaces {
                let api: Api<$kind> = match ns {
                    Some(n) => Api::namespaced(ctx.client.clone(), n),
                    None => Api::all(ctx.client.clone()),
                };
                for o in api.list(&ListParams::default()).await? {
                    let ons = o.namespace().unwrap_or_default();
                    let uses = o
                        .spec
                        .common
                        .account
                        .as_deref()
                        .filter(|a| !a.is_empty())
                        .map(|a| account_ref(a, &ons) == (home.as_str(), name.as_str()))
                        .unwrap_or(false);
                    if uses {
                        out.push(format!("{} {}/{}", $label, ons, o.name_any()));
                    }
                }
            }
        };
    }
    scan!(Stream, "Stream");
    scan!(Consumer, "Consumer");
    scan!(KeyValue, "KeyValue");
    scan!(ObjectStore, "ObjectStore");
    out.sort();
    out.dedup();
    Ok(out)
}

async fn write_status(ctx: &Context, account: &Account, next: &AccountStatus) -> Result<(), Error> {
    status::apply_status(ctx, account, "Account", account.status.as_ref(), next).await?;
    Ok(())
}

fn next_status(
    account: &Account,
    state: &State,
    hash: Option<String>,
    dependents: Vec<String>,
) -> AccountStatus {
    let previous = account.status.as_ref();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    AccountStatus {
        observed_generation: account.metadata.generation,
        conditions: conditions::merge(
            previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]),
            &state.conditions(),
            account.metadata.generation,
            &now,
        ),
        settings_hash: hash,
        dependents,
    }
}

/// Reconciles an Account.
pub async fn reconcile(account: Arc<Account>, ac: Arc<AccountCtx>) -> Result<Action, Error> {
    let ctx = &ac.ctx;
    let (outcome, action) = if account.meta().deletion_timestamp.is_some() {
        reconcile_deletion(ctx, &account).await?
    } else if is_paused(account.as_ref()) {
        ("paused", Action::await_change())
    } else {
        reconcile_live(ctx, &account).await?
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: "Account",
            outcome,
        })
        .inc();
    Ok(action)
}

/// Deleting: release the finalizer once no object uses the Account, and say who does
/// until then.
async fn reconcile_deletion(
    ctx: &Context,
    account: &Account,
) -> Result<(&'static str, Action), Error> {
    ctx.accounts.invalidate(
        &account.namespace().unwrap_or_default(),
        &account.name_any(),
    );
    if !account.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(("deleted", Action::await_change()));
    }
    let deps = dependents(ctx, account).await?;
    if deps.is_empty() {
        let keep: Vec<String> = account
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        status::patch_finalizers(ctx, account, "Account", keep).await?;
        return Ok(("deleted", Action::await_change()));
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
    write_status(
        ctx,
        account,
        &next_status(account, &state, hash, deps.clone()),
    )
    .await?;
    if !was_blocked {
        ctx.event(
            account,
            "Account",
            true,
            reason::DELETION_BLOCKED,
            format!("deletion waits for {}", deps.join(", ")),
        )
        .await;
    }
    Ok(("blocked", Action::requeue(Duration::from_secs(5))))
}

/// Live: re-read the Secrets, check the connection when the settings changed, report.
async fn reconcile_live(ctx: &Context, account: &Account) -> Result<(&'static str, Action), Error> {
    if !account.finalizers().iter().any(|f| f == FINALIZER) {
        let mut f = account.finalizers().to_vec();
        f.push(FINALIZER.to_string());
        status::patch_finalizers(ctx, account, "Account", f).await?;
    }
    let previous_hash = account
        .status
        .as_ref()
        .and_then(|s| s.settings_hash.clone());
    let (state, hash) = match layer_of(&ctx.client, account).await {
        Err(e) => (e.state(), previous_hash.clone()),
        Ok(l) => {
            let unchanged = previous_hash.as_deref() == Some(l.hash.as_str())
                && account.status.as_ref().is_some_and(|s| {
                    s.is_ready() && s.observed_generation == account.metadata.generation
                });
            let state = if unchanged {
                State::Ready("the servers accept these settings".into())
            } else {
                check_connection(ctx, &l).await
            };
            (state, Some(l.hash))
        }
    };
    if hash != previous_hash {
        // Credentials or settings changed: dependents re-resolve (the status change below
        // wakes them through the watch relation).
        let (ns, name) = (account.namespace().unwrap_or_default(), account.name_any());
        ctx.accounts.invalidate(&ns, &name);
        info!(account = %format!("{ns}/{name}"), "account settings changed");
    }
    let was = account.status.as_ref().and_then(|s| {
        conditions::find(&s.conditions, conditions::STALLED)
            .map(|c| (c.status.clone(), c.reason.clone()))
    });
    if let State::Stalled { reason: r, message } = &state
        && was != Some(("True".into(), r.to_string()))
    {
        ctx.event(account, "Account", true, r, message.clone())
            .await;
    }
    write_status(
        ctx,
        account,
        &next_status(account, &state, hash, Vec::new()),
    )
    .await?;
    let outcome = if state.is_ready() { "ready" } else { "stalled" };
    Ok((outcome, Action::requeue(SECRET_RECHECK)))
}

/// Connects with the Account's settings alone (on the operator's default servers if it
/// names none) and asks JetStream for account info.
async fn check_connection(ctx: &Context, l: &AccountLayer) -> State {
    let global = match Layer::from_default(&ctx.settings.default_connection) {
        Ok(g) => g,
        Err(e) => {
            return State::Stalled {
                reason: reason::CONNECTION_UNRESOLVED,
                message: e.0,
            };
        }
    };
    let resolved = match merge(&[global, l.layer.clone()], None) {
        Ok(r) => r,
        Err(e) => {
            return State::Stalled {
                reason: reason::CONNECTION_UNRESOLVED,
                message: e.0,
            };
        }
    };
    let conn = match ctx.pool.get(&resolved.settings).await {
        Ok(c) => c,
        Err(e) => return error_state(&e, "account"),
    };
    let js = JsApi::new(
        conn,
        resolved.prefix,
        ctx.settings.request_timeout,
        ctx.metrics.clone(),
    );
    match js.account_info().await {
        Ok(_) => State::Ready("the servers accept these settings".into()),
        Err(e) => error_state(&e, "account"),
    }
}

/// Error policy of the Account controller.
pub fn error_policy(account: Arc<Account>, err: &Error, ac: Arc<AccountCtx>) -> Action {
    let key = format!(
        "Account/{}/{}",
        account.namespace().unwrap_or_default(),
        account.name_any()
    );
    warn!(object = %key, error = %err, "account reconcile failed");
    Action::requeue(ac.ctx.backoff(&key))
}
