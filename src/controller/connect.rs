//! Resolving an object's connection, in one place: the operator's default connection, the
//! Account the object names (with its Secrets) and the object's own fields each describe a
//! layer ([`LayerSpec`]: where servers, credentials and TLS material come from); one
//! precedence ladder picks the authentication of a layer; one reader turns a layer's
//! sources into material (files read asynchronously and cached by modification time,
//! Secrets read with GET by name); and the layers merge with NACK's precedence
//! (default < Account < object), servers, authentication and TLS as one unit: a layer that
//! names servers takes nothing from the layers below it, so the operator's own credentials
//! only ever reach the operator's own servers.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use crate::api::account::{Account, AccountSpec, account_ref};
use crate::api::common::CommonSpec;
use crate::api::conditions::reason;
use crate::jetstream::api::{DEFAULT_PREFIX, domain_prefix};
use crate::jetstream::connection::{Auth, Pem, Settings, Tls, check_server_url};
use crate::metrics::ErrorCategory;

use super::plan::State;

/// Why an object's connection cannot be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// Missing Account, Secret, key or file: stalled until they change.
    #[error("{0}")]
    Unresolved(String),
    /// The Account does not allow the object's namespace.
    #[error("{0}")]
    Forbidden(String),
    /// The settings are wrong in themselves (a server URL that is not one): stalled until
    /// the spec changes.
    #[error("{0}")]
    Invalid(String),
    /// The Kubernetes API failed: retry.
    #[error("{0}")]
    Transient(String),
}

impl ResolveError {
    /// The bounded category, for metrics.
    pub fn category(&self) -> ErrorCategory {
        match self {
            ResolveError::Unresolved(_) => ErrorCategory::ConnectionUnresolved,
            ResolveError::Forbidden(_) => ErrorCategory::Forbidden,
            ResolveError::Invalid(_) => ErrorCategory::InvalidSpec,
            ResolveError::Transient(_) => ErrorCategory::Kube,
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
            ResolveError::Invalid(m) => State::Stalled {
                reason: reason::INVALID_SPEC,
                message: m.clone(),
            },
            ResolveError::Transient(m) => State::Retrying {
                reason: reason::KUBERNETES_ERROR,
                message: m.clone(),
            },
        }
    }
}

/// The operator's default connection (flags and environment).
#[derive(Clone, Debug, Default)]
pub struct DefaultConnection {
    /// Server URLs.
    pub servers: Vec<String>,
    /// Path of a credentials (`.creds`) file.
    pub creds: Option<String>,
    /// Path of a file holding an NKey seed.
    pub nkey: Option<String>,
    /// A token.
    pub token: Option<String>,
    /// A user name (with `password` or `password_file`).
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<String>,
    /// Path of a file holding the token (wins over `token`).
    pub token_file: Option<String>,
    /// Path of a file holding the password (wins over `password`).
    pub password_file: Option<String>,
    /// Path of the CA certificate that verifies the servers.
    pub tls_ca: Option<String>,
    /// Path of the client certificate (mutual TLS).
    pub tls_cert: Option<String>,
    /// Path of the client key (mutual TLS).
    pub tls_key: Option<String>,
    /// Start TLS before the NATS handshake.
    pub tls_first: bool,
    /// JetStream domain.
    pub js_domain: Option<String>,
    /// JetStream API prefix (for JetStream imported from another account).
    pub api_prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Where material comes from

/// Where one piece of credential or TLS material comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file of the operator's own configuration (its flags).
    File(String),
    /// A file path written in a spec: read only under `--credentials-dir`.
    SpecFile(String),
    /// A key of a Secret in the Account's namespace.
    Secret {
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
    /// The value itself (a flag of the operator).
    Value(String),
}

/// An authentication method, before its material is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthSource {
    /// A credentials (`.creds`) document.
    Creds(Source),
    /// An NKey seed.
    Nkey(Source),
    /// A token.
    Token(Source),
    /// A user and a password.
    UserPassword(Source, Source),
}

/// The one precedence ladder of authentication within a layer: credentials, then NKey,
/// then token, then user and password (NACK's order).
pub fn pick_auth(
    creds: Option<Source>,
    nkey: Option<Source>,
    token: Option<Source>,
    user: Option<(Source, Source)>,
) -> Option<AuthSource> {
    creds
        .map(AuthSource::Creds)
        .or_else(|| nkey.map(AuthSource::Nkey))
        .or_else(|| token.map(AuthSource::Token))
        .or_else(|| user.map(|(u, p)| AuthSource::UserPassword(u, p)))
}

/// One layer of connection settings, as sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerSpec {
    /// Server URLs (replace the lower layers' when non-empty).
    pub servers: Vec<String>,
    /// Authentication (replaces the lower layers' as a whole when set).
    pub auth: Option<AuthSource>,
    /// CA certificates (replace when non-empty).
    pub ca: Vec<Source>,
    /// Client certificate and key (replace when set).
    pub client: Option<(Source, Source)>,
    /// TLS first (can only turn it on).
    pub tls_first: bool,
    /// JetStream domain.
    pub js_domain: Option<String>,
    /// JetStream API prefix (wins over the domain).
    pub api_prefix: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn servers(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn file(path: &Option<String>) -> Option<Source> {
    nonempty(path).map(Source::File)
}

fn spec_file(path: &Option<String>) -> Option<Source> {
    nonempty(path).map(Source::SpecFile)
}

impl LayerSpec {
    /// The operator's default connection (flags and environment).
    pub fn from_default(d: &DefaultConnection) -> LayerSpec {
        let token = file(&d.token_file).or_else(|| nonempty(&d.token).map(Source::Value));
        let user = nonempty(&d.user).map(|u| {
            let password = file(&d.password_file)
                .unwrap_or_else(|| Source::Value(d.password.clone().unwrap_or_default()));
            (Source::Value(u), password)
        });
        LayerSpec {
            servers: servers(&d.servers),
            auth: pick_auth(file(&d.creds), file(&d.nkey), token, user),
            ca: file(&d.tls_ca).into_iter().collect(),
            client: file(&d.tls_cert).zip(file(&d.tls_key)),
            tls_first: d.tls_first,
            js_domain: nonempty(&d.js_domain),
            api_prefix: nonempty(&d.api_prefix),
        }
    }

    /// An object's own connection fields (file paths from a spec).
    pub fn from_object(c: &CommonSpec) -> LayerSpec {
        let tls = c.tls.as_ref();
        LayerSpec {
            servers: servers(&c.servers),
            auth: pick_auth(spec_file(&c.creds), spec_file(&c.nkey), None, None),
            ca: tls
                .map(|t| {
                    t.root_cas
                        .iter()
                        .filter_map(|p| spec_file(&Some(p.clone())))
                        .collect()
                })
                .unwrap_or_default(),
            client: tls.and_then(|t| spec_file(&t.client_cert).zip(spec_file(&t.client_key))),
            tls_first: c.tls_first,
            js_domain: nonempty(&c.js_domain),
            api_prefix: None,
        }
    }

    /// An Account: keys of Secrets in its namespace when a Secret is named, file paths
    /// otherwise (tokens and users need a Secret).
    pub fn from_account(spec: &AccountSpec, id: &str) -> Result<LayerSpec, ResolveError> {
        let from = |secret: Option<&str>, key: String| match secret {
            Some(name) => Source::Secret {
                name: name.to_string(),
                key,
            },
            None => Source::SpecFile(key),
        };
        let key_or =
            |v: &Option<String>, default: &str| nonempty(v).unwrap_or_else(|| default.to_string());
        let creds = spec.creds.as_ref().map(|c| {
            from(
                c.secret.as_ref().map(|s| s.name.as_str()),
                key_or(&c.file, "user.creds"),
            )
        });
        let nkey = spec.nkey.as_ref().map(|n| {
            from(
                n.secret.as_ref().map(|s| s.name.as_str()),
                key_or(&n.seed, "seed"),
            )
        });
        let needs_secret =
            |what: &str| ResolveError::Unresolved(format!("Account {id}: {what} needs a secret"));
        let token = match &spec.token {
            None => None,
            Some(t) => {
                let s = t.secret.as_ref().ok_or_else(|| needs_secret("token"))?;
                Some(from(Some(&s.name), key_or(&t.token, "token")))
            }
        };
        let user = match &spec.user {
            None => None,
            Some(u) => {
                let s = u.secret.as_ref().ok_or_else(|| needs_secret("user"))?;
                Some((
                    from(Some(&s.name), key_or(&u.user, "user")),
                    from(Some(&s.name), key_or(&u.password, "password")),
                ))
            }
        };
        let (mut ca, mut client) = (Vec::new(), None);
        if let Some(t) = &spec.tls {
            let secret = t.secret.as_ref().map(|s| s.name.as_str());
            ca = nonempty(&t.ca)
                .map(|k| from(secret, k))
                .into_iter()
                .collect();
            client = nonempty(&t.cert)
                .zip(nonempty(&t.key))
                .map(|(c, k)| (from(secret, c), from(secret, k)));
        }
        Ok(LayerSpec {
            servers: servers(&spec.servers),
            auth: pick_auth(creds, nkey, token, user),
            ca,
            client,
            tls_first: spec.tls_first,
            js_domain: nonempty(&spec.js_domain),
            api_prefix: nonempty(&spec.js_api_prefix),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Reading material

/// Files read for connections, cached by modification time and size, so that a burst of
/// reconciles reads each file once and a rotated file is picked up at once.
#[derive(Default)]
pub struct FileCache {
    entries: Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>,
}

impl FileCache {
    /// The file's text.
    pub async fn read(&self, path: &str) -> std::io::Result<String> {
        let path = PathBuf::from(path);
        let meta = tokio::fs::metadata(&path).await?;
        let stamp = (meta.modified()?, meta.len());
        if let Some((m, l, text)) = self.entries.lock().ok().and_then(|e| e.get(&path).cloned())
            && (m, l) == stamp
        {
            return Ok(text);
        }
        let text = tokio::fs::read_to_string(&path).await?;
        if let Ok(mut e) = self.entries.lock() {
            e.insert(path, (stamp.0, stamp.1, text.clone()));
        }
        Ok(text)
    }
}

/// Reads the Secrets of one Account (each at most once per resolution), remembering their
/// versions for the Account's fingerprint.
struct Secrets {
    api: Api<Secret>,
    namespace: String,
    account: String,
    read: HashMap<String, Secret>,
    versions: BTreeMap<String, String>,
}

impl Secrets {
    async fn value(&mut self, name: &str, key: &str, what: &str) -> Result<String, ResolveError> {
        let (ns, account) = (&self.namespace, &self.account);
        if !self.read.contains_key(name) {
            let s = match self.api.get_opt(name).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return Err(ResolveError::Unresolved(format!(
                        "Secret {ns}/{name} (the {what} of Account {account}) does not exist"
                    )));
                }
                Err(kube::Error::Api(e)) if e.code == 403 => {
                    return Err(ResolveError::Unresolved(format!(
                        "the operator may not read Secret {ns}/{name}: {}",
                        e.message
                    )));
                }
                Err(e) => {
                    return Err(ResolveError::Transient(format!(
                        "cannot read Secret {ns}/{name}: {e}"
                    )));
                }
            };
            self.versions
                .insert(name.to_string(), s.resource_version().unwrap_or_default());
            self.read.insert(name.to_string(), s);
        }
        let s = &self.read[name];
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
                    "Secret {ns}/{name} has no key {key:?} (the {what} of Account {account})"
                ))
            })?;
        String::from_utf8(bytes).map_err(|_| {
            ResolveError::Unresolved(format!("key {key:?} of Secret {ns}/{name} is not text"))
        })
    }
}

/// Turns sources into material.
struct Reader<'a> {
    files: &'a FileCache,
    /// Directories under which paths from specs may be read.
    allowed: &'a [PathBuf],
    secrets: Option<Secrets>,
}

/// Refuses a path written in a spec unless it lies, symbolic links and `..` resolved,
/// under one of the allowed directories.
async fn check_spec_path(path: &str, allowed: &[PathBuf], what: &str) -> Result<(), ResolveError> {
    let advice = "name a Secret from an Account instead (spec.account), or run the operator with --credentials-dir naming the directory";
    if allowed.is_empty() {
        return Err(ResolveError::Forbidden(format!(
            "the {what} is a file path ({path}); the operator reads no files named in specs: {advice}"
        )));
    }
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| ResolveError::Unresolved(format!("cannot read {what} file {path}: {e}")))?;
    for dir in allowed {
        if let Ok(dir) = tokio::fs::canonicalize(dir).await
            && real.starts_with(&dir)
        {
            return Ok(());
        }
    }
    Err(ResolveError::Forbidden(format!(
        "the {what} file {path} is outside the directories the operator may read files from (--credentials-dir): {advice}"
    )))
}

impl Reader<'_> {
    async fn text(
        &mut self,
        source: &Source,
        what: &str,
    ) -> Result<(String, String), ResolveError> {
        match source {
            Source::Value(v) => Ok((format!("the {what} flag"), v.clone())),
            Source::File(path) | Source::SpecFile(path) => {
                if let Source::SpecFile(_) = source {
                    check_spec_path(path, self.allowed, what).await?;
                }
                self.files
                    .read(path)
                    .await
                    .map(|t| (path.clone(), t))
                    .map_err(|e| {
                        ResolveError::Unresolved(format!("cannot read {what} file {path}: {e}"))
                    })
            }
            Source::Secret { name, key } => match &mut self.secrets {
                Some(s) => {
                    let origin = format!("Secret {}/{name} key {key}", s.namespace);
                    s.value(name, key, what).await.map(|t| (origin, t))
                }
                None => Err(ResolveError::Unresolved(format!(
                    "the {what} names Secret {name}, which only an Account can"
                ))),
            },
        }
    }

    async fn pem(&mut self, source: &Source, what: &str) -> Result<Pem, ResolveError> {
        let (origin, text) = self.text(source, what).await?;
        Ok(Pem { origin, text })
    }

    async fn auth(&mut self, a: &AuthSource) -> Result<Auth, ResolveError> {
        let line = |s: String| s.trim().to_string();
        Ok(match a {
            AuthSource::Creds(s) => Auth::Creds(self.text(s, "credentials").await?.1),
            AuthSource::Nkey(s) => Auth::Nkey(line(self.text(s, "NKey seed").await?.1)),
            AuthSource::Token(s) => Auth::Token(line(self.text(s, "token").await?.1)),
            AuthSource::UserPassword(u, p) => {
                let user = line(self.text(u, "user").await?.1);
                let password = self.text(p, "password").await?.1;
                let password = match p {
                    Source::Value(_) => password,
                    _ => password.trim_end_matches(['\n', '\r']).to_string(),
                };
                Auth::UserPassword(user, password)
            }
        })
    }

    async fn layer(&mut self, spec: &LayerSpec) -> Result<Layer, ResolveError> {
        let auth = match &spec.auth {
            Some(a) => Some(self.auth(a).await?),
            None => None,
        };
        let mut ca = Vec::new();
        for s in &spec.ca {
            ca.push(self.pem(s, "TLS CA").await?);
        }
        let client = match &spec.client {
            Some((c, k)) => Some((
                self.pem(c, "TLS certificate").await?,
                self.pem(k, "TLS key").await?,
            )),
            None => None,
        };
        Ok(Layer {
            servers: spec.servers.clone(),
            auth,
            ca,
            client,
            tls_first: spec.tls_first,
            js_domain: spec.js_domain.clone(),
            api_prefix: spec.api_prefix.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Layers and merging

/// One layer of connection settings, with its material read.
#[derive(Default, Debug, Clone)]
pub struct Layer {
    /// Server URLs (replace when non-empty).
    pub servers: Vec<String>,
    /// Authentication (replaces wholesale when set).
    pub auth: Option<Auth>,
    /// CA certificates (replace when non-empty).
    pub ca: Vec<Pem>,
    /// Client certificate and key (replace when set).
    pub client: Option<(Pem, Pem)>,
    /// TLS first (can only turn it on).
    pub tls_first: bool,
    /// JetStream domain.
    pub js_domain: Option<String>,
    /// JetStream API prefix.
    pub api_prefix: Option<String>,
}

/// Which layer a connection's servers came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The operator's flags.
    Default,
    /// The Account the object names.
    Account,
    /// The object's own spec.
    Object,
}

/// A resolved connection for one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// Connection settings.
    pub settings: Settings,
    /// JetStream API prefix.
    pub prefix: String,
    /// The Account used, if any (`<namespace>/<name>`).
    pub account: Option<String>,
    /// The layer whose servers (and with them authentication and TLS) are used.
    pub servers_from: Origin,
}

/// Merges layers, lowest precedence first. Servers, authentication and TLS are one unit:
/// a layer that names servers replaces all of them (what it leaves unset is unset); a
/// layer that names none keeps the servers below it and may replace the authentication
/// (as a whole), the CA, the client certificate and turn on TLS first. The JetStream
/// domain and API prefix follow the last layer that sets one.
pub fn merge(
    layers: &[(Origin, Layer)],
    account: Option<String>,
) -> Result<Resolved, ResolveError> {
    let mut servers: Vec<String> = Vec::new();
    let mut servers_from = Origin::Default;
    let mut auth = Auth::None;
    let mut ca: Vec<Pem> = Vec::new();
    let mut client: Option<(Pem, Pem)> = None;
    let mut tls_first = false;
    let mut js_domain: Option<String> = None;
    let mut api_prefix: Option<String> = None;
    for (origin, l) in layers {
        if !l.servers.is_empty() {
            servers = l.servers.clone();
            servers_from = *origin;
            auth = l.auth.clone().unwrap_or_default();
            ca = l.ca.clone();
            client = l.client.clone();
            tls_first = l.tls_first;
        } else {
            if let Some(a) = &l.auth {
                auth = a.clone();
            }
            if !l.ca.is_empty() {
                ca = l.ca.clone();
            }
            if l.client.is_some() {
                client = l.client.clone();
            }
            tls_first |= l.tls_first;
        }
        if l.js_domain.is_some() {
            js_domain = l.js_domain.clone();
            api_prefix = None;
        }
        if l.api_prefix.is_some() {
            api_prefix = l.api_prefix.clone();
        }
    }
    if servers.is_empty() {
        return Err(ResolveError::Unresolved(
            "no NATS servers: set --servers on the operator, servers on the Account, or spec.servers".into(),
        ));
    }
    for url in &servers {
        check_server_url(url).map_err(ResolveError::Invalid)?;
    }
    let prefix = match (api_prefix, js_domain) {
        (Some(p), _) => p,
        (None, Some(d)) => domain_prefix(&d),
        (None, None) => DEFAULT_PREFIX.to_string(),
    };
    Ok(Resolved {
        settings: Settings {
            servers,
            auth,
            tls: Tls { ca, client },
            tls_first,
        },
        prefix,
        account,
        servers_from,
    })
}

/// True when `namespace` is in `list`, an empty list meaning every namespace.
pub fn listed(list: &[String], namespace: &str) -> bool {
    list.is_empty() || list.iter().any(|n| n == "*" || n == namespace)
}

// ---------------------------------------------------------------------------------------
// Accounts

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

/// The operator's default connection as a layer, its files read.
pub async fn default_layer(
    files: &FileCache,
    d: &DefaultConnection,
) -> Result<Layer, ResolveError> {
    Reader {
        files,
        allowed: &[],
        secrets: None,
    }
    .layer(&LayerSpec::from_default(d))
    .await
}

/// Resolves connections: the operator's default, Accounts (with their Secrets, cached
/// briefly) and objects' own fields.
pub struct Resolver {
    client: kube::Client,
    default: DefaultConnection,
    default_namespaces: Vec<String>,
    credentials_dirs: Vec<PathBuf>,
    files: FileCache,
    accounts: AccountCache,
    remembered: Mutex<Remembered>,
}

/// The connection each object last resolved to, by object: objects that resolved alike
/// share one copy (10,000 objects on one connection hold one `Resolved`).
#[derive(Default)]
struct Remembered {
    by_object: HashMap<String, (u64, Arc<Resolved>)>,
    shared: std::collections::HashSet<Arc<Resolved>>,
}

impl Remembered {
    /// Drops the shared copy of a connection no object remembers any more.
    fn release(&mut self, old: Option<(u64, Arc<Resolved>)>) {
        if let Some((_, r)) = old
            && Arc::strong_count(&r) == 2
        {
            self.shared.remove(&r);
        }
    }
}

/// A fingerprint of the connection fields of a spec.
fn connection_fingerprint(common: &CommonSpec) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &common.account,
        &common.servers,
        &common.creds,
        &common.nkey,
        common
            .tls
            .as_ref()
            .map(|t| (&t.client_cert, &t.client_key, &t.root_cas)),
        common.tls_first,
        &common.js_domain,
    )
        .hash(&mut h);
    h.finish()
}

impl Resolver {
    /// A resolver reading Accounts and Secrets with `client`. `default_namespaces` may
    /// use the default connection (empty: all); paths written in specs are read only
    /// under `credentials_dirs`.
    pub fn new(
        client: kube::Client,
        default: DefaultConnection,
        default_namespaces: Vec<String>,
        credentials_dirs: Vec<PathBuf>,
    ) -> Self {
        Self {
            client,
            default,
            default_namespaces,
            credentials_dirs,
            files: FileCache::default(),
            accounts: AccountCache::default(),
            remembered: Mutex::new(Remembered::default()),
        }
    }

    fn reader(&self, secrets: Option<Secrets>) -> Reader<'_> {
        Reader {
            files: &self.files,
            allowed: &self.credentials_dirs,
            secrets,
        }
    }

    /// Remembers the connection an object resolved, for its deletion (an object whose
    /// Account's Secret is deleted first, as when its namespace goes, still cleans up).
    pub fn remember(&self, object: &str, common: &CommonSpec, resolved: &Resolved) {
        if let Ok(mut m) = self.remembered.lock() {
            let shared = match m.shared.get(resolved) {
                Some(r) => r.clone(),
                None => {
                    let r = Arc::new(resolved.clone());
                    m.shared.insert(r.clone());
                    r
                }
            };
            let old = m
                .by_object
                .insert(object.to_string(), (connection_fingerprint(common), shared));
            m.release(old);
        }
    }

    /// The connection remembered for an object, if its connection fields are unchanged.
    pub fn remembered(&self, object: &str, common: &CommonSpec) -> Option<Resolved> {
        let m = self.remembered.lock().ok()?;
        m.by_object
            .get(object)
            .filter(|(f, _)| *f == connection_fingerprint(common))
            .map(|(_, r)| (**r).clone())
    }

    /// Forgets what was remembered for an object.
    pub fn forget(&self, object: &str) {
        if let Ok(mut m) = self.remembered.lock() {
            let old = m.by_object.remove(object);
            m.release(old);
        }
    }

    /// Refuses the operator's default servers to objects outside
    /// `--default-connection-namespaces`. `via` is the namespace of the Account the
    /// object names, if any: an allowed namespace's Account may share them.
    fn check_default(
        &self,
        r: &Resolved,
        namespace: &str,
        via: Option<&str>,
    ) -> Result<(), ResolveError> {
        if r.servers_from != Origin::Default
            || listed(&self.default_namespaces, namespace)
            || via.is_some_and(|ns| listed(&self.default_namespaces, ns))
        {
            return Ok(());
        }
        Err(ResolveError::Forbidden(format!(
            "objects in namespace {namespace} may not use the operator's own NATS connection (--default-connection-namespaces); name an Account (spec.account) that sets servers and credentials"
        )))
    }

    /// The connection an Account checks with: its own settings, on the operator's servers
    /// when it names none (if its namespace may use them).
    pub async fn account_connection(
        &self,
        account: &Account,
        l: &AccountLayer,
    ) -> Result<Resolved, ResolveError> {
        let ns = account.namespace().unwrap_or_default();
        let layers = [
            (Origin::Default, self.default_layer().await?),
            (Origin::Account, l.layer.clone()),
        ];
        let r = merge(&layers, None)?;
        self.check_default(&r, &ns, None)?;
        Ok(r)
    }

    /// Forgets a cached Account (it or its Secrets changed).
    pub fn invalidate_account(&self, namespace: &str, name: &str) {
        self.accounts.invalidate(namespace, name);
    }

    /// Reads an Account's Secrets (or files) into a connection layer.
    pub async fn account_layer(&self, account: &Account) -> Result<AccountLayer, ResolveError> {
        let namespace = account.namespace().unwrap_or_default();
        let name = account.name_any();
        let spec = LayerSpec::from_account(&account.spec, &format!("{namespace}/{name}"))?;
        let mut reader = self.reader(Some(Secrets {
            api: Api::namespaced(self.client.clone(), &namespace),
            namespace,
            account: name,
            read: HashMap::new(),
            versions: BTreeMap::new(),
        }));
        let layer = reader.layer(&spec).await?;
        let mut h = DefaultHasher::new();
        account.metadata.generation.hash(&mut h);
        if let Some(s) = &reader.secrets {
            s.versions.hash(&mut h);
        }
        Ok(AccountLayer {
            layer,
            hash: format!("{:016x}", h.finish()),
            spec: account.spec.clone(),
        })
    }

    async fn load_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<AccountLayer, ResolveError> {
        let api: Api<Account> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            // An Account being deleted still resolves: its deletion waits for its
            // dependents, and they need it to clean up their assets.
            Ok(Some(account)) => self.account_layer(&account).await,
            Ok(None) => Err(ResolveError::Unresolved(format!(
                "Account {namespace}/{name} does not exist"
            ))),
            Err(e) => Err(ResolveError::Transient(format!(
                "cannot read Account {namespace}/{name}: {e}"
            ))),
        }
    }

    /// Resolves `spec.account` of an object in `object_ns`: the Account's layer, after
    /// checking that the Account lets that namespace use it.
    async fn account_for(
        &self,
        reference: &str,
        object_ns: &str,
    ) -> Result<(Layer, String), ResolveError> {
        let (ns, name) = account_ref(reference, object_ns);
        let key = (ns.to_string(), name.to_string());
        let loaded = match self.accounts.get(&key) {
            Some(r) => r,
            None => {
                let r = self.load_account(ns, name).await;
                self.accounts.put(key, r.clone());
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

    /// The operator's default connection as a layer, its files read.
    pub async fn default_layer(&self) -> Result<Layer, ResolveError> {
        default_layer(&self.files, &self.default).await
    }

    /// Resolves the connection of an object in `namespace`: the operator's default, then
    /// the Account it names (read with its Secrets), then its own fields (NACK's
    /// precedence, servers with their credentials as one unit).
    pub async fn resolve(
        &self,
        namespace: &str,
        common: &CommonSpec,
    ) -> Result<Resolved, ResolveError> {
        let mut layers = vec![(Origin::Default, self.default_layer().await?)];
        let mut account = None;
        let mut via = None;
        if let Some(reference) = common.account.as_deref().filter(|a| !a.is_empty()) {
            let (layer, id) = self.account_for(reference, namespace).await?;
            via = Some(account_ref(reference, namespace).0.to_string());
            layers.push((Origin::Account, layer));
            account = Some(id);
        }
        let own = self
            .reader(None)
            .layer(&LayerSpec::from_object(common))
            .await?;
        layers.push((Origin::Object, own));
        let r = merge(&layers, account)?;
        self.check_default(&r, namespace, via.as_deref())?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> Source {
        Source::Value(v.into())
    }

    #[test]
    fn one_ladder_for_every_layer() {
        let all = pick_auth(
            Some(value("c")),
            Some(value("n")),
            Some(value("t")),
            Some((value("u"), value("p"))),
        );
        assert_eq!(all, Some(AuthSource::Creds(value("c"))));
        let no_creds = pick_auth(None, Some(value("n")), Some(value("t")), None);
        assert_eq!(no_creds, Some(AuthSource::Nkey(value("n"))));
        assert_eq!(
            pick_auth(None, None, None, Some((value("u"), value("p")))),
            Some(AuthSource::UserPassword(value("u"), value("p")))
        );
        assert_eq!(pick_auth(None, None, None, None), None);
    }

    #[test]
    fn default_layer_sources() {
        let d = DefaultConnection {
            servers: vec!["nats://x:4222".into(), " ".into()],
            token: Some("ignored".into()),
            token_file: Some("/run/token".into()),
            tls_ca: Some("/ca.pem".into()),
            ..Default::default()
        };
        let l = LayerSpec::from_default(&d);
        assert_eq!(l.servers, vec!["nats://x:4222"]);
        assert_eq!(
            l.auth,
            Some(AuthSource::Token(Source::File("/run/token".into())))
        );
        assert_eq!(l.ca, vec![Source::File("/ca.pem".into())]);
        let d = DefaultConnection {
            user: Some("app".into()),
            password: Some("pw".into()),
            ..Default::default()
        };
        assert_eq!(
            LayerSpec::from_default(&d).auth,
            Some(AuthSource::UserPassword(value("app"), value("pw")))
        );
    }

    #[test]
    fn account_layer_sources() {
        let spec: AccountSpec = serde_saphyr::from_str(
            "servers: [nats://a:4222]\nuser:\n  secret: {name: login}\ntls:\n  secret: {name: tls}\n  ca: ca.crt\n  cert: tls.crt\n  key: tls.key\n",
        )
        .unwrap();
        let l = LayerSpec::from_account(&spec, "ns/a").unwrap();
        let secret = |k: &str, name: &str| Source::Secret {
            name: name.into(),
            key: k.into(),
        };
        assert_eq!(
            l.auth,
            Some(AuthSource::UserPassword(
                secret("user", "login"),
                secret("password", "login")
            ))
        );
        assert_eq!(l.ca, vec![secret("ca.crt", "tls")]);
        let spec: AccountSpec = serde_saphyr::from_str("token: {token: t}\n").unwrap();
        assert!(LayerSpec::from_account(&spec, "ns/a").is_err());
    }

    #[tokio::test]
    async fn files_are_cached_until_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "one\n").unwrap();
        let cache = FileCache::default();
        let path = p.display().to_string();
        assert_eq!(cache.read(&path).await.unwrap(), "one\n");
        std::fs::write(&p, "second\n").unwrap();
        assert_eq!(cache.read(&path).await.unwrap(), "second\n");
        assert!(cache.read("/nonexistent/token").await.is_err());
        let mut reader = Reader {
            files: &cache,
            allowed: &[],
            secrets: None,
        };
        let auth = reader
            .auth(&AuthSource::UserPassword(value("app"), Source::File(path)))
            .await
            .unwrap();
        assert_eq!(auth, Auth::UserPassword("app".into(), "second".into()));
        let e = reader
            .auth(&AuthSource::Creds(Source::File(
                "/nonexistent/x.creds".into(),
            )))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.creds"), "{e}");
    }

    #[tokio::test]
    async fn paths_from_specs_only_under_allowed_directories() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside = allowed.path().join("app.creds");
        std::fs::write(&inside, "creds").unwrap();
        let secret = outside.path().join("operator.creds");
        std::fs::write(&secret, "operator").unwrap();
        // A link inside the allowed directory to a file outside it.
        let link = allowed.path().join("link.creds");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let cache = FileCache::default();
        let path = |p: &std::path::Path| p.display().to_string();
        let creds = |p: String| AuthSource::Creds(Source::SpecFile(p));

        let mut closed = Reader {
            files: &cache,
            allowed: &[],
            secrets: None,
        };
        let e = closed.auth(&creds(path(&inside))).await.unwrap_err();
        assert!(matches!(e, ResolveError::Forbidden(_)), "{e}");

        let dirs = [allowed.path().to_path_buf()];
        let mut open = Reader {
            files: &cache,
            allowed: &dirs,
            secrets: None,
        };
        assert_eq!(
            open.auth(&creds(path(&inside))).await.unwrap(),
            Auth::Creds("creds".into())
        );
        for escape in [
            path(&secret),
            path(&link),
            format!(
                "{}/../{}/operator.creds",
                allowed.path().display(),
                outside.path().file_name().unwrap().to_string_lossy()
            ),
        ] {
            let e = open.auth(&creds(escape.clone())).await.unwrap_err();
            assert!(matches!(e, ResolveError::Forbidden(_)), "{escape}: {e}");
        }
        // The operator's own files are not subject to the directories.
        assert!(
            closed
                .auth(&AuthSource::Creds(Source::File(path(&secret))))
                .await
                .is_ok()
        );
    }

    #[test]
    fn object_fields_override_the_default() {
        let global = Layer {
            servers: vec!["nats://global:4222".into()],
            auth: Some(Auth::Token("t".into())),
            ..Default::default()
        };
        let obj = Layer {
            servers: vec!["nats://mine:4222".into()],
            js_domain: Some("hub".into()),
            ..Default::default()
        };
        let r = merge(
            &[(Origin::Default, global.clone()), (Origin::Object, obj)],
            None,
        )
        .unwrap();
        assert_eq!(r.settings.servers, vec!["nats://mine:4222"]);
        assert_eq!(r.servers_from, Origin::Object);
        // Servers named by a layer come without the credentials of the layers below.
        assert_eq!(r.settings.auth, Auth::None);
        assert_eq!(r.prefix, "$JS.hub.API");
        // A layer without servers keeps the servers below, with its own credentials.
        let own = Layer {
            auth: Some(Auth::Token("mine".into())),
            ..Default::default()
        };
        let r = merge(
            &[(Origin::Default, global.clone()), (Origin::Object, own)],
            None,
        )
        .unwrap();
        assert_eq!(r.settings.servers, vec!["nats://global:4222"]);
        assert_eq!(r.servers_from, Origin::Default);
        assert_eq!(r.settings.auth, Auth::Token("mine".into()));
        let r = merge(&[(Origin::Default, global)], None).unwrap();
        assert_eq!(r.prefix, "$JS.API");
        assert_eq!(r.settings.auth, Auth::Token("t".into()));
        assert!(merge(&[(Origin::Default, Layer::default())], None).is_err());
    }
}
