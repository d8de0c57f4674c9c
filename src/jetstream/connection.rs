//! NATS connections: resolved settings, a pool keyed by resolved identity, and the
//! advisory subscriptions that tell the controllers about changes behind their back.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::advisory;
pub use super::advisory::ConnEvent;
use super::error::JsError;

/// How to authenticate. Material is held in memory (read from files or Secrets when the
/// settings are resolved), so a rotated file or Secret changes the identity and gives a
/// new connection.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// A `.creds` file's contents (JWT and seed).
    Creds(String),
    /// An NKey seed.
    Nkey(String),
    /// A token.
    Token(String),
    /// User and password.
    UserPassword(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            Auth::None => "none",
            Auth::Creds(_) => "creds",
            Auth::Nkey(_) => "nkey",
            Auth::Token(_) => "token",
            Auth::UserPassword(..) => "user/password",
        })
    }
}

/// A PEM document, read when the connection settings were resolved (from a file mounted
/// into the operator, or a Secret key), so a rotated file or Secret changes the identity
/// and gives a new connection. Only its origin is ever printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pem {
    /// Where it was read from, for messages (a file path, or a Secret and key).
    pub origin: String,
    /// The PEM text.
    pub text: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(&self.origin)
    }
}

/// TLS material, held in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    /// CA certificates that verify the servers.
    pub ca: Vec<Pem>,
    /// Client certificate and key.
    pub client: Option<(Pem, Pem)>,
}

impl Tls {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.ca.is_empty() && self.client.is_none()
    }

    /// A rustls client configuration from this material (ring provider). Without a CA the
    /// platform's roots verify the server.
    pub fn client_config(&self) -> Result<async_nats::rustls::ClientConfig, String> {
        use async_nats::rustls;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        if self.ca.is_empty() {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
        for pem in &self.ca {
            let bytes = pem.text.as_bytes();
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(bytes) {
                let cert = cert.map_err(|e| format!("invalid CA certificate {pem:?}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable CA certificate {pem:?}: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("no certificate found in CA {pem:?}"));
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert.text.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("invalid client certificate {cert:?}: {e}"))?;
                if chain.is_empty() {
                    return Err(format!("no certificate found in {cert:?}"));
                }
                let key_der = PrivateKeyDer::from_pem_slice(key.text.as_bytes())
                    .map_err(|e| format!("invalid client key {key:?}: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("client certificate and key do not match: {e}"))
            }
        }
    }
}

/// Fully resolved connection settings: global defaults, Account and per-object fields
/// already merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Server URLs.
    pub servers: Vec<String>,
    /// Authentication.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// TLS before the protocol handshake.
    pub tls_first: bool,
}

impl Settings {
    /// The identity of the connection: equal settings share one connection.
    pub fn key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// Servers for display, credentials stripped from every URL (with or without a
    /// scheme).
    pub fn display_servers(&self) -> String {
        self.servers
            .iter()
            .map(|s| redact_url(s))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Checks that a server URL is one the NATS client can use (`nats://`, `tls://`, `ws://`,
/// `wss://`, or `host:port`).
pub fn check_server_url(url: &str) -> Result<(), String> {
    url.parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|e| format!("{:?} is not a NATS server URL: {e}", redact_url(url)))
}

/// A server URL without the user information of its authority (`user:pass@`, `token@`).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}{}{tail}", &authority[at + 1..]),
        None => url.to_string(),
    }
}

/// Shared state of one connection.
pub struct Conn {
    /// Pool key.
    pub key: u64,
    /// The client.
    pub client: async_nats::Client,
    /// Servers for messages.
    pub servers: String,
    last_error: Arc<Mutex<Option<String>>>,
    auth_failed: Arc<Mutex<bool>>,
    last_used: Mutex<Instant>,
    advisories: tokio::task::JoinHandle<()>,
    advisories_live: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.advisories.abort();
    }
}

impl Conn {
    /// Fails fast when the connection is not up, with the best reason known.
    pub fn check(&self) -> Result<(), JsError> {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
        if self.client.connection_state() == async_nats::connection::State::Connected {
            return Ok(());
        }
        let reason = self
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "not connected".into());
        if self.auth_failed.lock().map(|a| *a).unwrap_or(false) {
            return Err(JsError::Auth {
                servers: self.servers.clone(),
                reason,
            });
        }
        Err(JsError::Connection {
            servers: self.servers.clone(),
            reason,
        })
    }

    /// Waits up to `max` for the connection to be up (a new connection connects in the
    /// background).
    pub async fn wait_connected(&self, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            if self.client.connection_state() == async_nats::connection::State::Connected {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True while the connection receives JetStream's advisories (false once the server
    /// refused the subscription): drift behind the operator's back is then seen as it
    /// happens, and scans are only a safety net.
    pub fn advisories_live(&self) -> bool {
        self.advisories_live
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }
}

/// A pool of connections keyed by resolved identity, shared by all objects.
pub struct Pool {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    events: mpsc::UnboundedSender<ConnEvent>,
    max: usize,
    request_timeout: Duration,
}

impl Pool {
    /// A pool that reports connection events on `events` and holds at most `max`
    /// connections.
    pub fn new(
        events: mpsc::UnboundedSender<ConnEvent>,
        max: usize,
        request_timeout: Duration,
    ) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            events,
            max,
            request_timeout,
        }
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection for these settings, opened (in the background) when new.
    pub async fn get(&self, settings: &Settings) -> Result<Arc<Conn>, JsError> {
        let key = settings.key();
        if let Some(c) = self.conns.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(c);
        }
        let conn = Arc::new(self.open(settings, key).await?);
        let mut map = self.conns.lock().map_err(|_| JsError::Connection {
            servers: settings.display_servers(),
            reason: "connection pool lock poisoned".into(),
        })?;
        if let Some(existing) = map.get(&key) {
            return Ok(existing.clone());
        }
        if map.len() >= self.max {
            // Make room: drop the connection idle the longest that nobody else holds.
            if let Some(victim) = map
                .iter()
                .filter(|(_, c)| Arc::strong_count(c) == 1)
                .max_by_key(|(_, c)| c.idle_for())
                .map(|(k, _)| *k)
            {
                map.remove(&victim);
            } else {
                return Err(JsError::Connection {
                    servers: settings.display_servers(),
                    reason: format!("connection limit of {} reached", self.max),
                });
            }
        }
        map.insert(key, conn.clone());
        Ok(conn)
    }

    /// Closes connections unused for longer than `idle` that nobody holds.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let Ok(mut map) = self.conns.lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, c| Arc::strong_count(c) > 1 || c.idle_for() < idle);
        before - map.len()
    }

    async fn open(&self, settings: &Settings, key: u64) -> Result<Conn, JsError> {
        let servers = settings.display_servers();
        let last_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let auth_failed = Arc::new(Mutex::new(false));
        let advisories_live = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut opts = async_nats::ConnectOptions::new()
            .name("jetstream-operator")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(self.request_timeout))
            .reconnect_delay_callback(|attempts| {
                // 0, 100ms, 200ms, ... capped at 2s: a restarted server is found quickly.
                Duration::from_millis((attempts as u64 * 100).min(2000))
            });
        {
            let events = self.events.clone();
            let last_error = last_error.clone();
            let auth_failed = auth_failed.clone();
            let servers = servers.clone();
            let advisories_live = advisories_live.clone();
            let was_connected = Arc::new(Mutex::new(false));
            let probe = Arc::new(TlsProbe {
                settings: settings.clone(),
                running: std::sync::atomic::AtomicBool::new(false),
            });
            opts = opts.event_callback(move |event| {
                let events = events.clone();
                let last_error = last_error.clone();
                let auth_failed = auth_failed.clone();
                let servers = servers.clone();
                let advisories_live = advisories_live.clone();
                let was_connected = was_connected.clone();
                let probe = probe.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!(%servers, "connected to NATS");
                            if let Ok(mut e) = last_error.lock() {
                                *e = None;
                            }
                            if let Ok(mut a) = auth_failed.lock() {
                                *a = false;
                            }
                            let again = was_connected
                                .lock()
                                .map(|mut w| std::mem::replace(&mut *w, true))
                                .unwrap_or(true);
                            if again {
                                let _ = events.send(ConnEvent::Reconnected { conn: key });
                            }
                        }
                        async_nats::Event::Disconnected => {
                            warn!(%servers, "disconnected from NATS");
                            if let Ok(mut e) = last_error.lock() {
                                e.get_or_insert_with(|| "disconnected".into());
                            }
                            let _ = events.send(ConnEvent::Disconnected { conn: key });
                        }
                        async_nats::Event::ServerError(err) => {
                            let text = err.to_string();
                            if advisory::advisories_denied(&text) {
                                // Not an error of the connection: drift is found by scans.
                                if advisories_live
                                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                                {
                                    warn!(%servers, error = %text, "these credentials may not subscribe to JetStream advisories: changes made behind the operator's back are found by the drift scan every resync interval, not as they happen");
                                }
                                return;
                            }
                            warn!(%servers, error = %text, "NATS server error");
                            note_error(&last_error, &auth_failed, text);
                        }
                        async_nats::Event::ClientError(err) => {
                            let text = err.to_string();
                            debug!(%servers, error = %text, "NATS client error");
                            let opaque = text.to_lowercase().contains("io error");
                            note_error(&last_error, &auth_failed, text);
                            // The client reports TLS failures as a bare "IO error"; find
                            // out what the handshake says so the status can name it.
                            if opaque {
                                probe.spawn(last_error.clone(), auth_failed.clone());
                            }
                        }
                        other => debug!(%servers, event = %other, "NATS connection event"),
                    }
                }
            });
        }
        opts = match &settings.auth {
            Auth::None => opts,
            Auth::Creds(c) => opts.credentials(c).map_err(|e| JsError::Auth {
                servers: servers.clone(),
                reason: format!("invalid credentials: {e}"),
            })?,
            Auth::Nkey(seed) => opts.nkey(seed.trim().to_string()),
            Auth::Token(t) => opts.token(t.clone()),
            Auth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        };
        if !settings.tls.is_empty() {
            let tls = settings
                .tls
                .client_config()
                .map_err(|reason| JsError::Auth {
                    servers: servers.clone(),
                    reason,
                })?;
            opts = opts.tls_client_config(tls).require_tls(true);
        }
        if settings.tls_first {
            opts = opts.tls_first();
        }
        let urls: Vec<async_nats::ServerAddr> = settings
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| JsError::Connection {
                servers: servers.clone(),
                reason: format!("invalid server URL: {e}"),
            })?;
        if urls.is_empty() {
            return Err(JsError::Connection {
                servers: "(none)".into(),
                reason: "no NATS servers configured: set --servers, an Account or spec.servers"
                    .into(),
            });
        }
        let client = opts.connect(urls).await.map_err(|e| JsError::Connection {
            servers: servers.clone(),
            reason: e.to_string(),
        })?;
        let advisories = tokio::spawn(watch_advisories(client.clone(), key, self.events.clone()));
        Ok(Conn {
            key,
            client,
            servers,
            last_error,
            auth_failed,
            last_used: Mutex::new(Instant::now()),
            advisories,
            advisories_live,
        })
    }
}

/// A TLS handshake made by hand to learn why the client's failed.
struct TlsProbe {
    settings: Settings,
    running: std::sync::atomic::AtomicBool,
}

impl TlsProbe {
    fn spawn(
        self: &Arc<Self>,
        last_error: Arc<Mutex<Option<String>>>,
        auth_failed: Arc<Mutex<bool>>,
    ) {
        use std::sync::atomic::Ordering;
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let found =
                me.settings.servers.iter().find_map(|url| {
                    tls_handshake(url, &me.settings.tls, me.settings.tls_first).err()
                });
            if let Some(reason) = found {
                warn!(servers = %me.settings.display_servers(), %reason, "TLS handshake refused");
                if let Ok(mut a) = auth_failed.lock() {
                    *a = true;
                }
                if let Ok(mut e) = last_error.lock() {
                    *e = Some(format!("TLS handshake failed: {reason}"));
                }
            }
            me.running.store(false, Ordering::SeqCst);
        });
    }
}

/// Connects to one server and completes a TLS handshake (after the NATS INFO line, unless
/// TLS-first), then reads once so that a server refusing the client certificate is seen.
/// `Err` only for TLS failures; a server that cannot be reached is not a TLS problem.
fn tls_handshake(url: &str, tls: &Tls, tls_first: bool) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']), p.parse::<u16>().unwrap_or(4222)),
        None => (hostport, 4222),
    };
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return Ok(());
    };
    let Ok(mut sock) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return Ok(());
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    if !tls_first {
        // The server greets in plain text before the TLS upgrade.
        let mut byte = [0u8; 1];
        let mut n = 0;
        while sock.read(&mut byte).map(|r| r == 1).unwrap_or(false) && byte[0] != b'\n' && n < 65536
        {
            n += 1;
        }
    }
    let config = tls.client_config()?;
    let name = async_nats::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid server name {host}: {e}"))?;
    let mut conn = async_nats::rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(e.to_string());
        }
    }
    // TLS 1.3 servers refuse a missing or bad client certificate after the handshake.
    let mut stream = async_nats::rustls::Stream::new(&mut conn, &mut sock);
    let _ = stream.write_all(b"PING\r\n");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut =>
        {
            Err(e.to_string())
        }
        _ => Ok(()),
    }
}

/// True for errors that retrying with the same credentials or certificates cannot fix.
pub fn is_auth_error(text: &str) -> bool {
    let t = text.to_lowercase();
    [
        "authorization",
        "authentication",
        "certificate",
        "unknownissuer",
        "tls handshake",
        "handshake failure",
        "bad signature",
        "user authentication expired",
        "account authentication expired",
    ]
    .iter()
    .any(|k| t.contains(k))
}

fn note_error(last_error: &Mutex<Option<String>>, auth_failed: &Mutex<bool>, text: String) {
    if is_auth_error(&text)
        && let Ok(mut a) = auth_failed.lock()
    {
        *a = true;
    }
    if let Ok(mut e) = last_error.lock() {
        // Keep a diagnosed TLS failure rather than the client's bare "IO error".
        let diagnosed = e
            .as_deref()
            .is_some_and(|p| p.starts_with("TLS handshake failed"));
        if !(diagnosed && text.to_lowercase().contains("io error")) {
            *e = Some(text);
        }
    }
}

async fn watch_advisories(
    client: async_nats::Client,
    key: u64,
    events: mpsc::UnboundedSender<ConnEvent>,
) {
    let mut subs = Vec::new();
    for s in advisory::SUBJECTS {
        match client.subscribe(s).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                warn!(subject = s, error = %e, "cannot subscribe to JetStream advisories; drift is still found on resync")
            }
        }
    }
    let mut all = futures::stream::select_all(subs);
    while let Some(msg) = all.next().await {
        let ev = if msg.subject.as_str() == advisory::AUDIT_SUBJECT {
            if !advisory::may_concern_consumers(&msg.payload) {
                continue;
            }
            // The operator's own calls are audited too: the client id and server it has
            // now (both change on reconnect) tell them apart.
            let info = client.server_info();
            let own = advisory::Caller {
                id: info.client_id,
                server: info.server_name,
            };
            advisory::audit_event(key, &msg.payload, Some(&own))
        } else {
            advisory::advisory_event(key, msg.subject.as_str())
        };
        if let Some(ev) = ev {
            debug!(?ev, "JetStream advisory");
            if events.send(ev).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(port: u16, token: &str) -> Settings {
        Settings {
            // Nothing listens there: connections stay pending, which is all the pool needs.
            servers: vec![format!("nats://127.0.0.1:{port}")],
            auth: Auth::Token(token.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn pool_shares_by_identity_bounds_and_closes_idle() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let pool = Pool::new(tx, 2, Duration::from_secs(1));
        let a1 = pool.get(&settings(1, "a")).await.unwrap();
        let a2 = pool.get(&settings(1, "a")).await.unwrap();
        assert!(Arc::ptr_eq(&a1, &a2), "equal settings share one connection");
        let b = pool.get(&settings(1, "b")).await.unwrap();
        assert!(
            !Arc::ptr_eq(&a1, &b),
            "another identity gets its own connection"
        );
        assert_eq!(pool.len(), 2);

        // Full, and every connection in use: refused rather than unbounded.
        let err = pool.get(&settings(1, "c")).await.err().unwrap();
        assert!(err.to_string().contains("connection limit"), "{err}");

        // A connection nobody holds makes room.
        drop(b);
        let c = pool.get(&settings(1, "c")).await.unwrap();
        assert_eq!(pool.len(), 2);

        // Idle and unheld connections are closed; held ones stay.
        drop(c);
        assert_eq!(pool.close_idle(Duration::ZERO), 1);
        assert_eq!(pool.len(), 1);
        drop((a1, a2));
        assert_eq!(pool.close_idle(Duration::ZERO), 1);
        assert!(pool.is_empty());
    }

    #[test]
    fn identity_and_display() {
        let a = Settings {
            servers: vec!["nats://user:pw@host:4222".into()],
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(a.key(), b.key());
        b.auth = Auth::Token("t".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(a.display_servers(), "nats://host:4222");
        assert_eq!(redact_url("user:pass@host:4222"), "host:4222");
        assert_eq!(redact_url("tls://t0ken@h:4222/x"), "tls://h:4222/x");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert!(check_server_url("nats://host:4222").is_ok());
        assert!(check_server_url("host:4222").is_ok());
        assert!(check_server_url("not a url").is_err());
        assert_eq!(format!("{:?}", Auth::Token("secret".into())), "token");
    }
}
