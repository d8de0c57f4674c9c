//! Connections and credentials end to end: Accounts with credentials from Secrets (user and
//! password, token, NKey, decentralised JWT creds), TLS (server verification, mutual TLS,
//! TLS first), several nats-servers at once, JetStream domains, Secret rotation, refused
//! credentials, cross-namespace use, the Account deletion guard, orphaned deletions and the
//! operator's global connection flags. Each test has its own namespace, nats-server(s) and
//! operator; every JetStream check uses a client with the right credentials.
mod support;

use std::time::Duration;

use async_nats::ConnectOptions;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use support::credentials::{Decentralised, Pki};
use support::*;

/// How long a stall caused by refused credentials or an unresolvable connection may take to
/// show (first attempts can be transient while the connection is still being refused).
const STALL_WAIT: Duration = Duration::from_secs(60);
/// A rotated Secret is noticed by the Account's periodic re-read (every 15 s), then the
/// object re-resolves (5 s cache at most): this leaves a wide margin.
const ROTATION_WAIT: Duration = Duration::from_secs(75);
/// How long an object that must not become Ready is watched for (about three resyncs).
const NOT_READY_WATCH: Duration = Duration::from_secs(10);
/// The ownership marker the operator stamps into assets it creates.
const OWNER_KEY: &str = "jetstream.nats.io/owner";

// ---------------------------------------------------------------------------------------
// One test's world

/// A namespace and an operator watching it (`--resync-interval 3s`, admin on a free port,
/// no default servers unless `extra` gives some). Declare nats-servers before the World so
/// that the operator stops first.
struct World {
    op: Operator,
    ns: TestNs,
    cp: &'static ControlPlane,
    streams: Api<DynamicObject>,
    accounts: Api<DynamicObject>,
}

impl World {
    async fn start(prefix: &str, extra: &[&str]) -> World {
        let cp = control_plane().await;
        let ns = TestNs::new(prefix).await;
        let op = start_operator(cp, &[ns.name()], extra).await;
        World {
            op,
            streams: dyn_api(cp, ns.name(), "streams"),
            accounts: dyn_api(cp, ns.name(), "accounts"),
            ns,
            cp,
        }
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    fn apply(&self, yaml: &str) {
        apply(self.cp, self.ns(), yaml);
    }

    /// `<namespace>/<name>`, as the ownership marker and `status.account` name objects.
    fn id(&self, name: &str) -> String {
        format!("{}/{name}", self.ns())
    }

    async fn put_secret(&self, name: &str, data: &[(&str, &str)]) {
        put_secret(self.cp, self.ns(), name, data).await;
    }
}

async fn start_operator(cp: &ControlPlane, namespaces: &[&str], extra: &[&str]) -> Operator {
    let mut args = vec!["--admin-address", "127.0.0.1:0", "--resync-interval", "3s"];
    for ns in namespaces {
        args.extend_from_slice(&["--namespace", ns]);
    }
    args.extend_from_slice(extra);
    Operator::start(cp, &args).await
}

/// `kubectl apply` of `yaml` into `ns`, asserting success.
fn apply(cp: &ControlPlane, ns: &str, yaml: &str) {
    apply_ok(cp, ns, yaml);
}

// ---------------------------------------------------------------------------------------
// Manifests

/// A Stream object `name` for JetStream stream `asset` (subjects `<asset>.>`), plus `extra`
/// spec lines (unindented YAML).
fn stream(name: &str, asset: &str, extra: &str) -> String {
    manifest(
        "Stream",
        name,
        &format!("name: {asset}\nsubjects: [\"{asset}.>\"]\n{extra}"),
    )
}

/// An Account `name` on `servers`, plus `rest` spec lines (unindented YAML).
fn account(name: &str, servers: &[&str], rest: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    manifest(
        "Account",
        name,
        &format!("servers: [{}]\n{rest}", servers.join(", ")),
    )
}

/// Account spec lines that read user and password from Secret `secret` (keys `user`,
/// `password`).
fn user_from(secret: &str) -> String {
    format!("user:\n  secret:\n    name: {secret}\n  user: user\n  password: password")
}

/// Account spec lines that read TLS material from Secret `secret`: `ca.crt`, and with
/// `client_cert` also `tls.crt` and `tls.key`.
fn tls_from(secret: &str, client_cert: bool) -> String {
    let mut s = format!("tls:\n  secret:\n    name: {secret}\n  ca: ca.crt");
    if client_cert {
        s.push_str("\n  cert: tls.crt\n  key: tls.key");
    }
    s
}

// ---------------------------------------------------------------------------------------
// Status and JetStream checks

fn status_str(obj: &DynamicObject, field: &str) -> Option<String> {
    obj.data
        .get("status")?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

fn ready_status(obj: &DynamicObject) -> String {
    condition(obj, "Ready").map(|c| c.0).unwrap_or_default()
}

/// Asserts that `obj` is `Stalled=True` with `reason`, `Ready=False`, and a message that
/// contains `words` (case-insensitive).
fn assert_stall(obj: &DynamicObject, reason: &str, words: &str) {
    let (stalled, r, message) = condition(obj, "Stalled").unwrap_or_default();
    assert_eq!(
        (stalled.as_str(), r.as_str()),
        ("True", reason),
        "{}",
        status_summary(obj)
    );
    assert_eq!(ready_status(obj), "False", "{}", status_summary(obj));
    assert!(
        message.to_lowercase().contains(&words.to_lowercase()),
        "the Stalled message does not contain {words:?}: {}",
        status_summary(obj)
    );
}

/// Waits until object `name` has `Ready=False` at its current generation.
async fn wait_not_ready(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_object(api, name, "Ready=False", WAIT, |o| {
        ready_status(o) == "False"
    })
    .await
}

/// Watches object `name` for `NOT_READY_WATCH` and fails if it becomes Ready.
async fn assert_stays_unready(api: &Api<DynamicObject>, name: &str) {
    let became_ready = poll_until(NOT_READY_WATCH, || async move {
        let obj = api.get_opt(name).await.ok().flatten()?;
        (ready_status(&obj) == "True").then_some(obj)
    })
    .await;
    if let Some(obj) = became_ready {
        panic!("{name} became Ready but must not: {}", status_summary(&obj));
    }
}

/// A JetStream context on `url` through a client connected with `opts`.
async fn js_with(url: &str, opts: ConnectOptions) -> async_nats::jetstream::Context {
    let client = opts
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("the test's own client cannot connect to {url}: {e}"));
    async_nats::jetstream::new(client)
}

/// Asserts that JetStream holds stream `name`, owned by `owner` (`<namespace>/<object>`).
async fn assert_owned_stream(js: &async_nats::jetstream::Context, name: &str, owner: &str) {
    let cfg = get_stream_config(js, name)
        .await
        .unwrap_or_else(|| panic!("stream {name} is not in JetStream"));
    assert_eq!(
        cfg.metadata.get(OWNER_KEY).map(String::as_str),
        Some(owner),
        "ownership marker of stream {name}: {:?}",
        cfg.metadata
    );
}

/// Asserts that a client without credentials (and without TLS settings) is refused, so that
/// a Ready object proves the configured credentials were used.
async fn assert_refuses_anonymous(url: &str) {
    let attempt = tokio::time::timeout(
        Duration::from_secs(15),
        ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "nats-server at {url} accepts a client without credentials: the test proves nothing"
    );
}

/// nats.conf lines for one user `alice` with `password`.
fn alice_conf(password: &str) -> String {
    format!("authorization {{\n  users: [\n    {{user: alice, password: \"{password}\"}}\n  ]\n}}")
}

fn alice(password: &str) -> ConnectOptions {
    ConnectOptions::with_user_and_password("alice".into(), password.into())
}

// ---------------------------------------------------------------------------------------
// 1-4: credentials from an Account's Secrets

#[tokio::test]
async fn account_user_password_from_secret() {
    let nats = Nats::start_with_config(&alice_conf("wonderland-1")).await;
    let w = World::start("conn-user", &[]).await;
    assert_refuses_anonymous(nats.url()).await;

    w.put_secret(
        "nats-user",
        &[("user", "alice"), ("password", "wonderland-1")],
    )
    .await;
    w.apply(&account("app", &[nats.url()], &user_from("nats-user")));
    w.apply(&stream("orders", "orders", "account: app"));

    let obj = wait_ready(&w.streams, "orders").await;
    assert_eq!(status_str(&obj, "account"), Some(w.id("app")));
    assert_eq!(status_str(&obj, "servers").as_deref(), Some(nats.url()));
    wait_ready(&w.accounts, "app").await;

    let js = js_with(nats.url(), alice("wonderland-1")).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}

#[tokio::test]
async fn account_token_from_secret() {
    let nats = Nats::start_with_config("authorization {\n  token: \"t0k3n-for-jso\"\n}").await;
    let w = World::start("conn-token", &[]).await;
    assert_refuses_anonymous(nats.url()).await;

    w.put_secret("nats-token", &[("token", "t0k3n-for-jso")])
        .await;
    w.apply(&account(
        "app",
        &[nats.url()],
        "token:\n  secret:\n    name: nats-token\n  token: token",
    ));
    w.apply(&stream("orders", "orders", "account: app"));

    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "app").await;
    let js = js_with(
        nats.url(),
        ConnectOptions::with_token("t0k3n-for-jso".into()),
    )
    .await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}

#[tokio::test]
async fn account_nkey_from_secret() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().expect("user seed");
    let nats = Nats::start_with_config(&format!(
        "authorization {{\n  users: [\n    {{nkey: {}}}\n  ]\n}}",
        user.public_key()
    ))
    .await;
    let w = World::start("conn-nkey", &[]).await;
    assert_refuses_anonymous(nats.url()).await;

    w.put_secret("nats-nkey", &[("seed", &format!("{seed}\n"))])
        .await;
    w.apply(&account(
        "app",
        &[nats.url()],
        "nkey:\n  secret:\n    name: nats-nkey\n  seed: seed",
    ));
    w.apply(&stream("orders", "orders", "account: app"));

    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "app").await;
    let js = js_with(nats.url(), ConnectOptions::with_nkey(seed)).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}

#[tokio::test]
async fn account_creds_in_decentralised_jwt_mode() {
    let auth = Decentralised::new();
    let nats = Nats::start_with_config(&auth.server_conf).await;
    let w = World::start("conn-creds", &[]).await;
    assert_refuses_anonymous(nats.url()).await;

    w.put_secret("nats-creds", &[("user.creds", &auth.creds)])
        .await;
    w.apply(&account(
        "app",
        &[nats.url()],
        "creds:\n  secret:\n    name: nats-creds\n  file: user.creds",
    ));
    w.apply(&stream("orders", "orders", "account: app"));

    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "app").await;
    let opts = ConnectOptions::with_credentials(&auth.creds).expect("parse the test's creds");
    let js = js_with(nats.url(), opts).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}

// ---------------------------------------------------------------------------------------
// 5-7: TLS

#[tokio::test]
async fn account_tls_verifies_the_server() {
    let pki = Pki::new();
    let nats = Nats::start_with_config(&pki.server_block("")).await;
    let w = World::start("conn-tls", &[]).await;
    assert_refuses_anonymous(nats.url()).await;
    let tls_url = nats.url().replace("nats://", "tls://");

    w.put_secret("nats-tls", &[("ca.crt", &pki.ca)]).await;
    w.apply(&account("app", &[&tls_url], &tls_from("nats-tls", false)));
    w.apply(&stream("orders", "orders", "account: app"));
    // The same server without the CA: the certificate cannot be verified.
    w.apply(&account("no-ca", &[&tls_url], ""));
    w.apply(&stream("unverified", "unverified", "account: no-ca"));

    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "app").await;
    let js = js_with(nats.url(), pki.client(false)).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;

    wait_not_ready(&w.streams, "unverified").await;
    assert_stays_unready(&w.streams, "unverified").await;
    assert_eq!(get_stream_config(&js, "unverified").await, None);
}

#[tokio::test]
async fn account_mutual_tls() {
    let pki = Pki::new();
    let nats = Nats::start_with_config(&pki.server_block(&format!(
        "ca_file: \"{}\"\n  verify: true",
        pki.path("ca.crt")
    )))
    .await;
    let w = World::start("conn-mtls", &[]).await;
    assert_refuses_anonymous(nats.url()).await;

    w.put_secret(
        "nats-tls",
        &[
            ("ca.crt", &pki.ca),
            ("tls.crt", &pki.client_cert),
            ("tls.key", &pki.client_key),
        ],
    )
    .await;
    w.apply(&account("app", &[nats.url()], &tls_from("nats-tls", true)));
    w.apply(&stream("orders", "orders", "account: app"));
    // The CA alone, without a client certificate: the server refuses the handshake.
    w.apply(&account(
        "ca-only",
        &[nats.url()],
        &tls_from("nats-tls", false),
    ));
    w.apply(&stream("no-client-cert", "nocert", "account: ca-only"));

    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "app").await;
    let js = js_with(nats.url(), pki.client(true)).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;

    let obj = wait_not_ready(&w.streams, "no-client-cert").await;
    eprintln!("without a client certificate: {}", status_summary(&obj));
    assert_stays_unready(&w.streams, "no-client-cert").await;
    assert_eq!(get_stream_config(&js, "nocert").await, None);
}

#[tokio::test]
async fn account_tls_first() {
    let pki = Pki::new();
    let nats = Nats::start_with_config(&pki.server_block("handshake_first: true")).await;
    let w = World::start("conn-tlsfirst", &[]).await;
    assert_refuses_anonymous(nats.url()).await;

    w.put_secret("nats-tls", &[("ca.crt", &pki.ca)]).await;
    w.apply(&account(
        "first",
        &[nats.url()],
        &format!("{}\ntlsFirst: true", tls_from("nats-tls", false)),
    ));
    w.apply(&stream("orders", "orders", "account: first"));
    // The same settings without tlsFirst: the server waits for a TLS handshake that the
    // client never starts.
    w.apply(&account(
        "plain-start",
        &[nats.url()],
        &tls_from("nats-tls", false),
    ));
    w.apply(&stream("late-tls", "latetls", "account: plain-start"));

    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "first").await;
    let js = js_with(nats.url(), pki.client(false).tls_first()).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;

    let obj = wait_not_ready(&w.streams, "late-tls").await;
    eprintln!("without tlsFirst: {}", status_summary(&obj));
    assert_stays_unready(&w.streams, "late-tls").await;
    let acc = wait_not_ready(&w.accounts, "plain-start").await;
    eprintln!("Account without tlsFirst: {}", status_summary(&acc));
    assert_eq!(get_stream_config(&js, "latetls").await, None);
}

/// A server certificate the client cannot verify, and a client certificate the server
/// requires but does not get, are certificate failures: retrying cannot help until the
/// settings change, so the object stalls (AuthenticationFailed, the operator's class for
/// auth and certificate failures) and says what failed.
#[tokio::test]
async fn tls_certificate_failures_stall_naming_the_cause() {
    let pki = Pki::new();
    let nats = Nats::start_with_config(&pki.server_block(&format!(
        "ca_file: \"{}\"\n  verify: true",
        pki.path("ca.crt")
    )))
    .await;
    let w = World::start("conn-tlsfail", &[]).await;
    w.put_secret("nats-tls", &[("ca.crt", &pki.ca)]).await;
    // No CA: the server's certificate is not trusted.
    w.apply(&account("no-ca", &[nats.url()], ""));
    w.apply(&stream("unverified", "unverified", "account: no-ca"));
    // The CA but no client certificate: the server refuses the handshake.
    w.apply(&account(
        "ca-only",
        &[nats.url()],
        &tls_from("nats-tls", false),
    ));
    w.apply(&stream("no-client-cert", "nocert", "account: ca-only"));

    for name in ["unverified", "no-client-cert"] {
        let obj = wait_stalled(&w.streams, name, &["AuthenticationFailed"], STALL_WAIT).await;
        assert_stall(&obj, "AuthenticationFailed", "certificate");
    }
    for name in ["no-ca", "ca-only"] {
        let obj = wait_stalled(&w.accounts, name, &["AuthenticationFailed"], STALL_WAIT).await;
        assert_stall(&obj, "AuthenticationFailed", "certificate");
    }
}

// ---------------------------------------------------------------------------------------
// 8-9: several servers, domains

#[tokio::test]
async fn two_servers_with_a_stream_of_the_same_name() {
    let nats_a = Nats::start().await;
    let nats_b = Nats::start().await;
    let w = World::start("conn-two", &[]).await;

    w.apply(&account("server-a", &[nats_a.url()], ""));
    w.apply(&account("server-b", &[nats_b.url()], ""));
    w.apply(&stream("orders-a", "orders", "account: server-a"));
    w.apply(&stream("orders-b", "orders", "account: server-b"));
    // Per-object servers, no Account.
    w.apply(&stream(
        "direct-b",
        "direct",
        &format!("servers: [\"{}\"]", nats_b.url()),
    ));

    let a = wait_ready(&w.streams, "orders-a").await;
    let b = wait_ready(&w.streams, "orders-b").await;
    let direct = wait_ready(&w.streams, "direct-b").await;
    assert_eq!(status_str(&a, "servers").as_deref(), Some(nats_a.url()));
    assert_eq!(status_str(&b, "servers").as_deref(), Some(nats_b.url()));
    assert_eq!(
        status_str(&direct, "servers").as_deref(),
        Some(nats_b.url())
    );
    assert_eq!(status_str(&direct, "account"), None);

    let js_a = nats_a.jetstream().await;
    let js_b = nats_b.jetstream().await;
    assert_eq!(stream_names(&js_a).await, vec!["orders"]);
    assert_eq!(stream_names(&js_b).await, vec!["direct", "orders"]);
    assert_owned_stream(&js_a, "orders", &w.id("orders-a")).await;
    assert_owned_stream(&js_b, "orders", &w.id("orders-b")).await;
    assert_owned_stream(&js_b, "direct", &w.id("direct-b")).await;
}

#[tokio::test]
async fn jetstream_domain() {
    let store = tempfile::Builder::new()
        .prefix("jso-domain-store-")
        .tempdir()
        .expect("store directory");
    // A second `jetstream` block replaces the generated one (same store limits, a domain).
    let nats = Nats::start_with_config(&format!(
        "jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 1GB\n  max_file_store: 4GB\n  domain: hub\n}}",
        store.path().display()
    ))
    .await;
    let w = World::start("conn-domain", &[]).await;

    w.apply(&stream(
        "object-domain",
        "objdomain",
        &format!("servers: [\"{}\"]\njsDomain: hub", nats.url()),
    ));
    w.apply(&account("hub", &[nats.url()], "jsDomain: hub"));
    w.apply(&stream("account-domain", "accdomain", "account: hub"));
    w.apply(&stream(
        "wrong-domain",
        "wrongdomain",
        &format!("servers: [\"{}\"]\njsDomain: elsewhere", nats.url()),
    ));

    for name in ["object-domain", "account-domain"] {
        let obj = wait_ready(&w.streams, name).await;
        assert_eq!(
            status_str(&obj, "apiPrefix").as_deref(),
            Some("$JS.hub.API"),
            "{name}: {}",
            status_summary(&obj)
        );
    }
    let js = async_nats::jetstream::with_domain(nats.client().await, "hub");
    assert_owned_stream(&js, "objdomain", &w.id("object-domain")).await;
    assert_owned_stream(&js, "accdomain", &w.id("account-domain")).await;

    let wrong = wait_not_ready(&w.streams, "wrong-domain").await;
    assert_eq!(
        status_str(&wrong, "apiPrefix").as_deref(),
        Some("$JS.elsewhere.API")
    );
    let (_, reason, message) = condition(&wrong, "Ready").unwrap_or_default();
    assert_eq!(reason, "JetStreamUnavailable", "{}", status_summary(&wrong));
    assert!(message.contains("$JS.elsewhere.API"), "{message}");
    assert_eq!(get_stream_config(&js, "wrongdomain").await, None);
}

// ---------------------------------------------------------------------------------------
// 10-11: rotation, refused credentials

#[tokio::test]
async fn rotated_password_is_picked_up() {
    let nats = Nats::start_with_config(&alice_conf("before-rotation")).await;
    let mut w = World::start("conn-rotate", &[]).await;
    w.put_secret(
        "nats-user",
        &[("user", "alice"), ("password", "before-rotation")],
    )
    .await;
    w.apply(&account("app", &[nats.url()], &user_from("nats-user")));
    w.apply(&stream("orders", "orders", "account: app"));
    let before = wait_ready(&w.streams, "orders").await;
    let account_before = wait_ready(&w.accounts, "app").await;
    let operator_pid = w.op.pid().expect("operator running");

    // The server changes the password first: the operator's connection is closed and its
    // old password refused.
    nats.edit_config_and_reload(|conf| conf.replace("before-rotation", "after-rotation"))
        .await;
    let refused = wait_object(
        &w.streams,
        "orders",
        "Ready=False once the server refuses the old password",
        STALL_WAIT,
        |o| ready_status(o) == "False",
    )
    .await;
    eprintln!("after the server's change: {}", status_summary(&refused));

    // Then the Secret: the Stream comes back by itself.
    let changes = |log: &str| log.matches("account settings changed").count();
    let changes_before = changes(&w.op.log());
    w.put_secret(
        "nats-user",
        &[("user", "alice"), ("password", "after-rotation")],
    )
    .await;
    let after = wait_object(
        &w.streams,
        "orders",
        "Ready=True with the rotated password",
        ROTATION_WAIT,
        |o| ready_status(o) == "True",
    )
    .await;
    let account_after = wait_ready(&w.accounts, "app").await;
    assert_ne!(
        status_str(&account_after, "settingsHash"),
        status_str(&account_before, "settingsHash"),
        "the Account's settings fingerprint did not change with the Secret"
    );

    // Neither the operator nor the Stream object was touched.
    assert_eq!(w.op.pid(), Some(operator_pid));
    assert!(w.op.exited().is_none(), "the operator exited");
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
    let js = js_with(nats.url(), alice("after-rotation")).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
    assert!(
        changes(&w.op.log()) > changes_before,
        "the operator did not log the rotation"
    );
}

#[tokio::test]
async fn wrong_password_stalls_with_the_servers_words() {
    let nats = Nats::start_with_config(&alice_conf("the-right-one")).await;
    let w = World::start("conn-wrong", &[]).await;
    w.put_secret(
        "nats-user",
        &[("user", "alice"), ("password", "a-wrong-one")],
    )
    .await;
    w.apply(&account("app", &[nats.url()], &user_from("nats-user")));
    w.apply(&stream("orders", "orders", "account: app"));

    let obj = wait_stalled(
        &w.streams,
        "orders",
        &["AuthenticationFailed", "Forbidden"],
        STALL_WAIT,
    )
    .await;
    let (_, reason, _) = condition(&obj, "Stalled").unwrap_or_default();
    assert_stall(&obj, &reason, "authorization violation");

    let acc = wait_stalled(
        &w.accounts,
        "app",
        &["AuthenticationFailed", "Forbidden"],
        STALL_WAIT,
    )
    .await;
    let (_, reason, _) = condition(&acc, "Stalled").unwrap_or_default();
    assert_stall(&acc, &reason, "authorization violation");
    let events = events_about(w.cp, w.ns(), "Account", "app").await;
    assert!(
        event_count(&events, &reason, Some("Warning")) >= 1,
        "no Warning event {reason} about the Account: {events:?}"
    );

    let js = js_with(nats.url(), alice("the-right-one")).await;
    assert_eq!(stream_names(&js).await, Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// 12-14: namespaces, deletion

/// A server URL that is not one is a mistake in the spec: Stalled/InvalidSpec on the
/// Account and on the objects using it, not a retry forever.
#[tokio::test]
async fn a_server_url_that_is_not_one_stalls() {
    let w = World::start("conn-badurl", &[]).await;
    w.apply(&account("broken", &["not a url"], ""));
    w.apply(&stream("pointless", "pointless", "account: broken"));
    let acc = wait_stalled(&w.accounts, "broken", &["InvalidSpec"], STALL_WAIT).await;
    assert_stall(&acc, "InvalidSpec", "not a url");
    let obj = wait_stalled(&w.streams, "pointless", &["InvalidSpec"], STALL_WAIT).await;
    assert_stall(&obj, "InvalidSpec", "not a NATS server URL");
}

#[tokio::test]
async fn cross_namespace_use_allowed_and_refused() {
    let nats = Nats::start_with_config("authorization {\n  token: \"shared-t0ken\"\n}").await;
    let cp = control_plane().await;
    let home = TestNs::new("conn-home").await;
    let allowed = TestNs::new("conn-allowed").await;
    let other = TestNs::new("conn-other").await;
    let _op = start_operator(cp, &[home.name(), allowed.name(), other.name()], &[]).await;

    put_secret(cp, home.name(), "nats-token", &[("token", "shared-t0ken")]).await;
    apply(
        cp,
        home.name(),
        &account(
            "shared",
            &[nats.url()],
            &format!(
                "token:\n  secret:\n    name: nats-token\n  token: token\nallowedNamespaces: [\"{}\"]",
                allowed.name()
            ),
        ),
    );
    let reference = format!("account: {}/shared", home.name());
    apply(cp, allowed.name(), &stream("orders", "orders", &reference));
    apply(cp, other.name(), &stream("orders", "others", &reference));

    let allowed_api = dyn_api(cp, allowed.name(), "streams");
    let other_api = dyn_api(cp, other.name(), "streams");
    let obj = wait_ready(&allowed_api, "orders").await;
    assert_eq!(
        status_str(&obj, "account"),
        Some(format!("{}/shared", home.name()))
    );
    let refused = wait_stalled(&other_api, "orders", &["Forbidden"], STALL_WAIT).await;
    assert_stall(&refused, "Forbidden", "allowedNamespaces");

    let js = js_with(
        nats.url(),
        ConnectOptions::with_token("shared-t0ken".into()),
    )
    .await;
    assert_owned_stream(&js, "orders", &format!("{}/orders", allowed.name())).await;
    assert_eq!(get_stream_config(&js, "others").await, None);
}

/// An Account `app` (user and password from a Secret) used by a Ready Stream `orders`,
/// deleted: returns once its deletion is blocked (Stalled=True, DeletionBlocked).
async fn account_with_blocked_deletion(
    prefix: &str,
) -> (Nats, World, async_nats::jetstream::Context, DynamicObject) {
    let nats = Nats::start_with_config(&alice_conf("keep-me")).await;
    let w = World::start(prefix, &[]).await;
    w.put_secret("nats-user", &[("user", "alice"), ("password", "keep-me")])
        .await;
    w.apply(&account("app", &[nats.url()], &user_from("nats-user")));
    w.apply(&stream("orders", "orders", "account: app"));
    wait_ready(&w.streams, "orders").await;
    wait_ready(&w.accounts, "app").await;
    let js = js_with(nats.url(), alice("keep-me")).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;

    w.accounts
        .delete("app", &DeleteParams::default())
        .await
        .expect("delete the Account");
    let blocked = wait_object(
        &w.accounts,
        "app",
        "deletion blocked by its dependent",
        WAIT,
        |o| condition(o, "Stalled").is_some_and(|(s, r, _)| s == "True" && r == "DeletionBlocked"),
    )
    .await;
    (nats, w, js, blocked)
}

#[tokio::test]
async fn account_deletion_waits_for_its_dependents() {
    let (_nats, w, _js, blocked) = account_with_blocked_deletion("conn-accdel").await;
    let dependent = format!("Stream {}", w.id("orders"));
    assert!(blocked.metadata.deletion_timestamp.is_some(), "{blocked:?}");
    let dependents: Vec<String> = blocked
        .data
        .get("status")
        .and_then(|s| s.get("dependents"))
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        dependents,
        vec![dependent.clone()],
        "{}",
        status_summary(&blocked)
    );
    let (_, _, message) = condition(&blocked, "Stalled").unwrap_or_default();
    assert!(message.contains(&dependent), "{message}");
    let events = events_about(w.cp, w.ns(), "Account", "app").await;
    assert!(
        event_count(&events, "DeletionBlocked", Some("Warning")) >= 1,
        "no Warning event DeletionBlocked: {events:?}"
    );

    // The dependent goes; so does the Account.
    w.streams
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete the Stream");
    wait_gone(&w.streams, "orders", WAIT).await;
    wait_gone(&w.accounts, "app", WAIT).await;
}

/// The Account is kept while it has dependents so that they can still clean up: a dependent
/// deleted while the Account waits deletes its stream from JetStream (it is not orphaned).
#[tokio::test]
async fn dependent_of_a_deleted_account_still_cleans_up() {
    let (_nats, w, js, _) = account_with_blocked_deletion("conn-accdel-cleanup").await;
    w.streams
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete the Stream");
    wait_gone(&w.streams, "orders", WAIT).await;
    wait_gone(&w.accounts, "app", WAIT).await;
    let events = events_about(w.cp, w.ns(), "Stream", "orders").await;
    assert!(
        get_stream_config(&js, "orders").await.is_none(),
        "the stream was left in JetStream when its object was deleted; events: {events:?}"
    );
    assert_eq!(event_count(&events, "Orphaned", None), 0, "{events:?}");
    assert!(event_count(&events, "Deleted", None) >= 1, "{events:?}");
}

#[tokio::test]
async fn unresolvable_connection_releases_a_deleted_object_unless_one_is_remembered() {
    let nats = Nats::start_with_config("authorization {\n  token: \"orphan-t0ken\"\n}").await;
    let w = World::start("conn-orphan", &[]).await;
    w.put_secret("nats-token", &[("token", "orphan-t0ken")])
        .await;
    w.apply(&account(
        "app",
        &[nats.url()],
        "token:\n  secret:\n    name: nats-token\n  token: token",
    ));
    w.apply(&stream("repointed", "repointed", "account: app"));
    w.apply(&stream("secretless", "secretless", "account: app"));
    wait_ready(&w.streams, "repointed").await;
    wait_ready(&w.streams, "secretless").await;
    let js = js_with(
        nats.url(),
        ConnectOptions::with_token("orphan-t0ken".into()),
    )
    .await;

    // 1. The object now names an Account that does not exist: its connection settings
    //    changed, so the connection it resolved before is not used to delete.
    w.streams
        .patch(
            "repointed",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"account": "no-such-account"}})),
        )
        .await
        .expect("re-point the Stream");
    let obj = wait_stalled(
        &w.streams,
        "repointed",
        &["ConnectionUnresolved"],
        STALL_WAIT,
    )
    .await;
    assert_stall(&obj, "ConnectionUnresolved", "no-such-account");
    w.streams
        .delete("repointed", &DeleteParams::default())
        .await
        .expect("delete the Stream");
    wait_gone(&w.streams, "repointed", WAIT).await;
    let events = events_about(w.cp, w.ns(), "Stream", "repointed").await;
    assert!(
        event_count(&events, "Orphaned", Some("Warning")) >= 1,
        "no Warning event Orphaned: {events:?}"
    );
    assert!(
        get_stream_config(&js, "repointed").await.is_some(),
        "the stream was deleted although its connection could not be resolved"
    );

    // 2. The Account's Secret is deleted.
    delete_secret(w.cp, w.ns(), "nats-token").await;
    let acc = wait_stalled(&w.accounts, "app", &["ConnectionUnresolved"], ROTATION_WAIT).await;
    assert_stall(&acc, "ConnectionUnresolved", "nats-token");
    let obj = wait_stalled(
        &w.streams,
        "secretless",
        &["ConnectionUnresolved"],
        STALL_WAIT,
    )
    .await;
    assert_stall(&obj, "ConnectionUnresolved", "nats-token");
    w.streams
        .delete("secretless", &DeleteParams::default())
        .await
        .expect("delete the Stream");
    wait_gone(&w.streams, "secretless", WAIT).await;
    // The Secret went first (as when a namespace is deleted): the object deletes its
    // stream through the connection it last resolved to, unchanged since.
    let events = events_about(w.cp, w.ns(), "Stream", "secretless").await;
    assert!(
        event_count(&events, "Deleted", Some("Normal")) >= 1,
        "no Normal event Deleted: {events:?}"
    );
    assert!(get_stream_config(&js, "secretless").await.is_none());
}

// ---------------------------------------------------------------------------------------
// The operator's global connection flags

#[tokio::test]
async fn global_user_and_password_flags() {
    let nats = Nats::start_with_config(&alice_conf("global-pw")).await;
    let w = World::start(
        "conn-global",
        &[
            "--servers",
            nats.url(),
            "--user",
            "alice",
            "--password",
            "global-pw",
        ],
    )
    .await;
    assert_refuses_anonymous(nats.url()).await;
    w.apply(&stream("orders", "orders", ""));
    let obj = wait_ready(&w.streams, "orders").await;
    assert_eq!(status_str(&obj, "account"), None);
    let js = js_with(nats.url(), alice("global-pw")).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}

#[tokio::test]
async fn global_creds_flag() {
    let auth = Decentralised::new();
    let nats = Nats::start_with_config(&auth.server_conf).await;
    let creds_dir = tempfile::Builder::new()
        .prefix("jso-creds-")
        .tempdir()
        .expect("creds directory");
    let creds_file = creds_dir.path().join("user.creds");
    std::fs::write(&creds_file, &auth.creds).expect("write the creds file");
    let creds_path = creds_file.display().to_string();
    let w = World::start(
        "conn-gcreds",
        &["--servers", nats.url(), "--creds", &creds_path],
    )
    .await;
    w.apply(&stream("orders", "orders", ""));
    wait_ready(&w.streams, "orders").await;
    let opts = ConnectOptions::with_credentials(&auth.creds).expect("parse the test's creds");
    let js = js_with(nats.url(), opts).await;
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}

#[tokio::test]
async fn global_tls_token_and_domain_flags() {
    let pki = Pki::new();
    let store = tempfile::Builder::new()
        .prefix("jso-domain-store-")
        .tempdir()
        .expect("store directory");
    let nats = Nats::start_with_config(&format!(
        "{}\nauthorization {{\n  token: \"global-t0ken\"\n}}\n\
         jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 1GB\n  max_file_store: 4GB\n  domain: hub\n}}",
        pki.server_block(&format!(
            "ca_file: \"{}\"\n  verify: true\n  handshake_first: true",
            pki.path("ca.crt")
        )),
        store.path().display()
    ))
    .await;
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let w = World::start(
        "conn-gtls",
        &[
            "--servers",
            nats.url(),
            "--token",
            "global-t0ken",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-first",
            "--js-domain",
            "hub",
        ],
    )
    .await;
    assert_refuses_anonymous(nats.url()).await;
    w.apply(&stream("orders", "orders", ""));
    let obj = wait_ready(&w.streams, "orders").await;
    assert_eq!(
        status_str(&obj, "apiPrefix").as_deref(),
        Some("$JS.hub.API")
    );
    let client = pki
        .client(true)
        .tls_first()
        .token("global-t0ken".into())
        .connect(nats.url())
        .await
        .expect("the test's own client connects");
    let js = async_nats::jetstream::with_domain(client, "hub");
    assert_owned_stream(&js, "orders", &w.id("orders")).await;
}
