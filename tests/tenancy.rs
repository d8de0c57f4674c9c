//! A cluster shared by many teams: what a tenant who may create Streams can and cannot make
//! the operator do. The operator's credentials only go to the operator's servers (a
//! listener that records what it receives is the witness), specs cannot name files of the
//! operator's pod unless told, the default connection can be reserved to some namespaces,
//! adopted assets survive their objects, two objects never fight over one asset, markers of
//! earlier versions are taken over, a namespace going away cleans up, and no secret shows
//! in logs (at trace level), events or status.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::ConnectOptions;
use futures::StreamExt as _;
use kube::api::{DeleteParams, DynamicObject};
use support::credentials::{Decentralised, Pki};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// A listener that records what clients send

/// What one client did on the recording listener.
#[derive(Clone, Debug, Default)]
struct Visit {
    /// The CONNECT line's JSON, when the client got that far.
    connect: Option<serde_json::Value>,
    /// The client presented a TLS certificate.
    client_certificate: bool,
}

/// A loopback listener that speaks just enough of the NATS protocol (INFO, then read
/// CONNECT) to record what a client sends, optionally after a TLS handshake that asks for
/// (but does not require) a client certificate.
struct Recorder {
    url: String,
    visits: Arc<Mutex<Vec<Visit>>>,
}

impl Recorder {
    fn start(tls: Option<&Pki>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recording listener");
        let port = listener.local_addr().expect("listener address").port();
        let visits: Arc<Mutex<Vec<Visit>>> = Arc::default();
        let config = tls.map(|pki| Arc::new(server_tls(pki)));
        let seen = visits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let config = config.clone();
                std::thread::spawn(move || {
                    let visit = serve(stream, port, config);
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(visit);
                });
            }
        });
        let scheme = if tls.is_some() { "tls" } else { "nats" };
        Recorder {
            url: format!("{scheme}://127.0.0.1:{port}"),
            visits,
        }
    }

    fn visits(&self) -> Vec<Visit> {
        self.visits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a client has come and gone (the operator retries, so at least one).
    async fn first_visit(&self, what: &str) -> Visit {
        wait_until(WAIT, what, || async { self.visits().into_iter().next() }).await
    }
}

fn server_tls(pki: &Pki) -> async_nats::rustls::ServerConfig {
    use async_nats::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca.as_bytes()) {
        roots.add(c.expect("CA")).expect("add CA");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .expect("client verifier");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.file("server.crt"))
        .expect("server certificate")
        .collect::<Result<_, _>>()
        .expect("server certificate");
    let key = PrivateKeyDer::from_pem_file(pki.file("server.key")).expect("server key");
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server TLS config")
}

fn serve(
    mut tcp: TcpStream,
    port: u16,
    tls: Option<Arc<async_nats::rustls::ServerConfig>>,
) -> Visit {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let info = serde_json::json!({
        "server_id": "NRECORDER", "server_name": "recorder", "version": "2.15.1",
        "proto": 1, "host": "127.0.0.1", "port": port, "headers": true,
        "max_payload": 1048576, "auth_required": true, "nonce": "cmVjb3JkZXI",
        "tls_required": tls.is_some(),
    });
    if write!(tcp, "INFO {info}\r\n").is_err() {
        return Visit::default();
    }
    let mut visit = Visit::default();
    match tls {
        None => visit.connect = read_connect(&mut tcp),
        Some(config) => {
            let Ok(mut conn) = async_nats::rustls::ServerConnection::new(config) else {
                return visit;
            };
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
            visit.client_certificate = conn.peer_certificates().is_some_and(|c| !c.is_empty());
            if !conn.is_handshaking() {
                let mut s = async_nats::rustls::StreamOwned::new(conn, tcp);
                visit.connect = read_connect(&mut s);
            }
        }
    }
    visit
}

fn read_connect(stream: &mut impl std::io::Read) -> Option<serde_json::Value> {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let json = line.trim().strip_prefix("CONNECT ")?;
    serde_json::from_str(json).ok()
}

/// Asserts that a CONNECT carries no credentials of any kind.
fn assert_anonymous(what: &str, visit: &Visit) {
    assert!(
        !visit.client_certificate,
        "{what}: the operator presented a TLS client certificate"
    );
    let Some(c) = &visit.connect else { return };
    for key in ["auth_token", "user", "pass", "jwt", "nkey", "sig"] {
        let v = c.get(key);
        assert!(
            v.is_none_or(|v| v.is_null() || v.as_str() == Some("")),
            "{what}: CONNECT carries {key}: {c}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn stream(name: &str, asset: &str, extra: &str) -> String {
    manifest(
        "Stream",
        name,
        &format!("name: {asset}\nsubjects: [\"{asset}.>\"]\n{extra}"),
    )
}

fn status_str(obj: &DynamicObject, field: &str) -> Option<String> {
    obj.data["status"][field].as_str().map(str::to_owned)
}

async fn operator(cp: &ControlPlane, namespaces: &[&str], extra: &[&str]) -> Operator {
    let mut args = vec!["--admin-address", "127.0.0.1:0", "--resync-interval", "3s"];
    for ns in namespaces {
        args.extend_from_slice(&["--namespace", ns]);
    }
    args.extend_from_slice(extra);
    Operator::start(cp, &args).await
}

/// Everything the operator wrote about objects in `namespaces` (status and events), and
/// its log, as one text to search for secrets.
async fn everything_written(cp: &ControlPlane, namespaces: &[&str], op: &Operator) -> String {
    // The operator's own output; the harness's lines (its command line) are not.
    let mut text: String = op
        .log()
        .lines()
        .filter(|l| !l.starts_with("=== harness:"))
        .map(|l| format!("{l}\n"))
        .collect();
    for ns in namespaces {
        for kind in [
            "streams",
            "consumers",
            "keyvalues",
            "objectstores",
            "accounts",
        ] {
            let list = dyn_api(cp, ns, kind)
                .list(&Default::default())
                .await
                .unwrap_or_else(|e| panic!("list {kind}: {e}"));
            for o in list {
                text.push_str(&o.data["status"].to_string());
            }
        }
        for e in events_in(cp, ns).await {
            text.push_str(&format!("{e:?}"));
        }
    }
    text
}

fn assert_no_secret(text: &str, secrets: &[(&str, &str)]) {
    for (what, secret) in secrets {
        assert!(
            !text.contains(secret),
            "the {what} appears in the operator's log, events or status"
        );
    }
}

async fn js_with(url: &str, opts: ConnectOptions) -> async_nats::jetstream::Context {
    let client = opts
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    async_nats::jetstream::new(client)
}

// ---------------------------------------------------------------------------------------
// 1. The operator's credentials go only to the operator's servers

#[tokio::test]
async fn credentials_never_go_to_servers_a_manifest_names() {
    let cp = control_plane().await;
    let home = TestNs::new("ten-home").await;
    let team = TestNs::new("ten-team").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = Pki::new();

    let decentralised = Decentralised::new();
    let creds_file = dir.path().join("operator.creds");
    std::fs::write(&creds_file, &decentralised.creds).expect("write creds");
    let seed = nkeys::KeyPair::new_user().seed().expect("seed");
    let seed_file = dir.path().join("operator.nk");
    std::fs::write(&seed_file, &seed).expect("write seed");
    let jwt = decentralised
        .creds
        .lines()
        .nth(1)
        .expect("the JWT line of the creds")
        .to_owned();
    let (creds, nkey) = (
        creds_file.display().to_string(),
        seed_file.display().to_string(),
    );
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let secrets = [
        ("token", "op-t0ken-s3cret"),
        ("password", "op-passw0rd-s3cret"),
        ("user JWT", jwt.as_str()),
        ("NKey seed", seed.as_str()),
    ];
    // The operator's own connection, one kind of authentication at a time; its servers are
    // never used here (nothing listens there).
    let cases: Vec<(&str, Vec<&str>, bool)> = vec![
        ("token", vec!["--token", "op-t0ken-s3cret"], false),
        (
            "user and password",
            vec!["--user", "operator", "--password", "op-passw0rd-s3cret"],
            false,
        ),
        ("creds", vec!["--creds", &creds], false),
        ("nkey", vec!["--nkey", &nkey], false),
        (
            "TLS client certificate",
            vec!["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key],
            true,
        ),
    ];
    for (i, (auth, flags, tls)) in cases.iter().enumerate() {
        let direct = Recorder::start(tls.then_some(&pki));
        let via_account = Recorder::start(tls.then_some(&pki));
        let mut args = vec!["--servers", "nats://127.0.0.1:1", "--log-level", "trace"];
        args.extend(flags.iter().copied());
        let op = operator(cp, &[home.name(), team.name()], &args).await;

        // A Stream that names servers of its own.
        let name = format!("direct-{i}");
        apply_ok(
            cp,
            team.name(),
            &stream(&name, &name, &format!("servers: [\"{}\"]", direct.url)),
        );
        // An Account that names servers (and nothing else), used from another namespace.
        let account = format!("elsewhere-{i}");
        apply_ok(
            cp,
            home.name(),
            &manifest(
                "Account",
                &account,
                &format!(
                    "servers: [\"{}\"]\nallowedNamespaces: [\"{}\"]",
                    via_account.url,
                    team.name()
                ),
            ),
        );
        let name = format!("via-account-{i}");
        apply_ok(
            cp,
            team.name(),
            &stream(&name, &name, &format!("account: {}/{account}", home.name())),
        );

        let visit = direct
            .first_visit(&format!("{auth}: a visit from the Stream's connection"))
            .await;
        assert_anonymous(&format!("{auth}, spec.servers"), &visit);
        let visit = via_account
            .first_visit(&format!("{auth}: a visit from the Account's connection"))
            .await;
        assert_anonymous(&format!("{auth}, Account servers"), &visit);
        if !tls {
            assert!(
                direct.visits().iter().any(|v| v.connect.is_some()),
                "{auth}: the listener never received a CONNECT"
            );
        }
        let mut op = op;
        op.stop().await;
        let text = everything_written(cp, &[home.name(), team.name()], &op).await;
        assert_no_secret(&text, &secrets);
        assert!(
            op.log().contains("TRACE"),
            "the operator did not log at trace level, so the search proves nothing"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. Files of the operator's pod

#[tokio::test]
async fn file_paths_in_specs_need_an_allowed_directory() {
    let cp = control_plane().await;
    let ns = TestNs::new("ten-files").await;
    let user = nkeys::KeyPair::new_user();
    let nats = Nats::start_with_config(&format!(
        "authorization {{\n  users: [\n    {{nkey: {}}}\n  ]\n}}",
        user.public_key()
    ))
    .await;
    let decentralised = Decentralised::new();
    let jwt_nats = Nats::start_with_config(&decentralised.server_conf).await;
    let dir = tempfile::tempdir().expect("credentials directory");
    let seed = dir.path().join("app.nk");
    std::fs::write(&seed, user.seed().expect("seed")).expect("write seed");
    let creds = dir.path().join("app.creds");
    std::fs::write(&creds, &decentralised.creds).expect("write creds");
    let streams = dyn_api(cp, ns.name(), "streams");

    // No --credentials-dir: the paths are refused, whatever they name.
    let mut op = operator(cp, &[ns.name()], &["--servers", nats.url()]).await;
    apply_ok(
        cp,
        ns.name(),
        &stream("pathed", "pathed", &format!("nkey: {}", seed.display())),
    );
    apply_ok(
        cp,
        ns.name(),
        &stream(
            "carded",
            "carded",
            &format!(
                "servers: [\"{}\"]\ncreds: {}",
                jwt_nats.url(),
                creds.display()
            ),
        ),
    );
    for name in ["pathed", "carded"] {
        let obj = wait_stalled(&streams, name, &["Forbidden"], WAIT).await;
        let (_, _, message) = condition(&obj, "Stalled").unwrap_or_default();
        assert!(message.contains("--credentials-dir"), "{name}: {message}");
    }
    op.stop().await;

    // With the directory allowed, the same spec works.
    let dir_arg = dir.path().display().to_string();
    let _op = operator(
        cp,
        &[ns.name()],
        &["--servers", nats.url(), "--credentials-dir", &dir_arg],
    )
    .await;
    wait_ready(&streams, "pathed").await;
    wait_ready(&streams, "carded").await;
    let js = js_with(
        nats.url(),
        ConnectOptions::with_nkey(user.seed().expect("seed")),
    )
    .await;
    assert!(get_stream_config(&js, "pathed").await.is_some());
}

// ---------------------------------------------------------------------------------------
// 3. The default connection, reserved to some namespaces

#[tokio::test]
async fn default_connection_is_reserved_to_listed_namespaces() {
    let cp = control_plane().await;
    let platform = TestNs::new("ten-platform").await;
    let team = TestNs::new("ten-tenant").await;
    let nats = Nats::start().await;
    let _op = operator(
        cp,
        &[platform.name(), team.name()],
        &[
            "--servers",
            nats.url(),
            "--default-connection-namespaces",
            platform.name(),
        ],
    )
    .await;
    apply_ok(cp, platform.name(), &stream("ops", "ops", ""));
    apply_ok(cp, team.name(), &stream("mine", "mine", ""));
    wait_ready(&dyn_api(cp, platform.name(), "streams"), "ops").await;
    let team_streams = dyn_api(cp, team.name(), "streams");
    let obj = wait_stalled(&team_streams, "mine", &["Forbidden"], WAIT).await;
    let (_, _, message) = condition(&obj, "Stalled").unwrap_or_default();
    assert!(message.contains("name an Account"), "{message}");
    let js = nats.jetstream().await;
    assert!(get_stream_config(&js, "mine").await.is_none());

    // The platform team shares its connection through an Account: the sanctioned way.
    apply_ok(
        cp,
        platform.name(),
        &manifest(
            "Account",
            "shared",
            &format!("allowedNamespaces: [\"{}\"]", team.name()),
        ),
    );
    apply_ok(
        cp,
        team.name(),
        &stream(
            "mine",
            "mine",
            &format!("account: {}/shared", platform.name()),
        ),
    );
    wait_ready(&team_streams, "mine").await;
}

// ---------------------------------------------------------------------------------------
// 4. Adopted assets survive their objects

#[tokio::test]
async fn adopted_assets_are_kept_and_created_ones_deleted() {
    let cp = control_plane().await;
    let ns = TestNs::new("ten-adopt").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let _op = operator(cp, &[ns.name()], &["--servers", nats.url()]).await;
    let streams = dyn_api(cp, ns.name(), "streams");
    for name in ["found", "found-delete"] {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    apply_ok(cp, ns.name(), &stream("found", "found", ""));
    apply_ok(
        cp,
        ns.name(),
        &stream("found-delete", "found-delete", "deletionPolicy: Delete"),
    );
    apply_ok(cp, ns.name(), &stream("made", "made", ""));
    for (name, policy) in [
        ("found", "Orphan"),
        ("found-delete", "Delete"),
        ("made", "Delete"),
    ] {
        let obj = wait_ready(&streams, name).await;
        assert_eq!(
            status_str(&obj, "deletionPolicy").as_deref(),
            Some(policy),
            "{name}: {}",
            status_summary(&obj)
        );
    }
    for name in ["found", "found-delete", "made"] {
        streams
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }
    for name in ["found", "found-delete", "made"] {
        wait_gone(&streams, name, WAIT).await;
    }
    let kept = get_stream_config(&js, "found")
        .await
        .expect("the adopted stream was deleted with its object");
    assert!(
        !kept
            .metadata
            .keys()
            .any(|k| k.starts_with("jetstream.nats.io/")),
        "the kept stream still carries the operator's marker: {:?}",
        kept.metadata
    );
    assert!(get_stream_config(&js, "found-delete").await.is_none());
    assert!(get_stream_config(&js, "made").await.is_none());
    let events = events_about(cp, ns.name(), "Stream", "found").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Orphaned" && e.message.contains("adopted")),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Two objects, one asset

#[tokio::test]
async fn a_stream_and_a_bucket_claiming_one_asset_do_not_fight() {
    let cp = control_plane().await;
    let ns = TestNs::new("ten-claim").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let _op = operator(cp, &[ns.name()], &["--servers", nats.url()]).await;
    let streams = dyn_api(cp, ns.name(), "streams");
    let buckets = dyn_api(cp, ns.name(), "keyvalues");
    apply_ok(
        cp,
        ns.name(),
        &manifest(
            "Stream",
            "orders",
            "name: KV_orders\nsubjects: [\"$KV.orders.>\"]\nmaxMsgs: 7",
        ),
    );
    apply_ok(
        cp,
        ns.name(),
        &manifest("KeyValue", "orders", "bucket: orders\nhistory: 3"),
    );

    // Exactly one owns it; the other says who does.
    let settled = |o: &DynamicObject| {
        status_is_current(o) && condition(o, "Ready").is_some_and(|(s, _, _)| s == "True")
    };
    let conflicted = |o: &DynamicObject| {
        status_is_current(o)
            && condition(o, "Stalled")
                .is_some_and(|(s, r, _)| s == "True" && r == "ResourceConflict")
    };
    let (s, b) = wait_until(WAIT, "one Ready and one ResourceConflict", || async {
        let s = streams.get_opt("orders").await.ok().flatten()?;
        let b = buckets.get_opt("orders").await.ok().flatten()?;
        ((settled(&s) && conflicted(&b)) || (settled(&b) && conflicted(&s))).then_some((s, b))
    })
    .await;
    let loser = if settled(&s) { &b } else { &s };
    let (_, _, message) = condition(loser, "Stalled").unwrap_or_default();
    assert!(message.contains("owned by"), "{message}");

    // Nothing moves for 30 s: no update of the stream, the same config, the same conditions.
    let mut updates = nats
        .client()
        .await
        .subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.KV_orders")
        .await
        .expect("subscribe to update advisories");
    let before = get_stream_config(&js, "KV_orders")
        .await
        .expect("KV_orders");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while tokio::time::Instant::now() < deadline {
        if tokio::time::timeout(Duration::from_secs(1), updates.next())
            .await
            .is_ok()
        {
            seen += 1;
        }
        let s = streams.get("orders").await.expect("Stream");
        let b = buckets.get("orders").await.expect("KeyValue");
        assert!(
            (settled(&s) && conflicted(&b)) || (settled(&b) && conflicted(&s)),
            "the objects changed state: {} / {}",
            status_summary(&s),
            status_summary(&b)
        );
    }
    assert_eq!(
        seen, 0,
        "the stream was updated {seen} times while both objects claimed it"
    );
    assert_eq!(
        get_stream_config(&js, "KV_orders")
            .await
            .expect("KV_orders"),
        before
    );
}

// ---------------------------------------------------------------------------------------
// 6. Markers of earlier versions, and turning on --cluster-name

#[tokio::test]
async fn earlier_markers_are_taken_over_and_cluster_name_can_be_turned_on() {
    let cp = control_plane().await;
    let ns = TestNs::new("ten-marker").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let streams = dyn_api(cp, ns.name(), "streams");
    // A stream stamped the way earlier versions did: namespace and name, no kind.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "legacy".into(),
        subjects: vec!["legacy.>".into()],
        metadata: [(
            "jetstream.nats.io/owner".to_owned(),
            format!("{}/legacy", ns.name()),
        )]
        .into(),
        ..Default::default()
    })
    .await
    .expect("create legacy");
    let created = stream_info(&js, "legacy").await.expect("legacy").created;
    let mut op = operator(cp, &[ns.name()], &["--servers", nats.url()]).await;
    apply_ok(cp, ns.name(), &stream("legacy", "legacy", ""));
    apply_ok(cp, ns.name(), &stream("fresh", "fresh", ""));
    wait_ready(&streams, "legacy").await;
    wait_ready(&streams, "fresh").await;
    let md = get_stream_config(&js, "legacy")
        .await
        .expect("legacy")
        .metadata;
    assert_eq!(
        md.get("jetstream.nats.io/owner-kind").map(String::as_str),
        Some("Stream"),
        "{md:?}"
    );
    let obj = streams.get("legacy").await.expect("legacy");
    assert_ne!(
        status_str(&obj, "adopted").as_deref(),
        Some("true"),
        "an earlier marker of this object is not an adoption"
    );
    op.stop().await;

    // Turning on --cluster-name on a running install: every object stays Ready, markers
    // gain the cluster, nothing is recreated.
    let _op = operator(
        cp,
        &[ns.name()],
        &["--servers", nats.url(), "--cluster-name", "prod"],
    )
    .await;
    for name in ["legacy", "fresh"] {
        wait_until(
            WAIT,
            &format!("{name} stamped with cluster prod"),
            || async {
                let md = get_stream_config(&js, name).await?.metadata;
                (md.get("jetstream.nats.io/cluster").map(String::as_str) == Some("prod"))
                    .then_some(())
            },
        )
        .await;
        let obj = wait_ready(&streams, name).await;
        assert!(
            condition(&obj, "Stalled").is_none_or(|(s, _, _)| s != "True"),
            "{name}: {}",
            status_summary(&obj)
        );
    }
    assert_eq!(
        stream_info(&js, "legacy").await.expect("legacy").created,
        created
    );
}

// ---------------------------------------------------------------------------------------
// 7. A namespace going away

#[tokio::test]
async fn a_namespace_going_away_leaves_nothing_behind() {
    let cp = control_plane().await;
    let ns = TestNs::new("ten-gone").await;
    let nats = Nats::start_with_config("authorization {\n  token: \"ns-t0ken-s3cret\"\n}").await;
    let op = operator(cp, &[ns.name()], &["--log-level", "trace"]).await;
    put_secret(cp, ns.name(), "nats-token", &[("token", "ns-t0ken-s3cret")]).await;
    apply_ok(
        cp,
        ns.name(),
        &manifest(
            "Account",
            "app",
            &format!(
                "servers: [\"{}\"]\ntoken:\n  secret:\n    name: nats-token\n  token: token",
                nats.url()
            ),
        ),
    );
    apply_ok(cp, ns.name(), &stream("one", "one", "account: app"));
    apply_ok(cp, ns.name(), &stream("two", "two", "account: app"));
    apply_ok(
        cp,
        ns.name(),
        &manifest(
            "Consumer",
            "worker",
            "streamName: one\ndurableName: worker\naccount: app",
        ),
    );
    let streams = dyn_api(cp, ns.name(), "streams");
    let consumers = dyn_api(cp, ns.name(), "consumers");
    let accounts = dyn_api(cp, ns.name(), "accounts");
    wait_ready(&streams, "one").await;
    wait_ready(&streams, "two").await;
    wait_ready(&consumers, "worker").await;
    let js = js_with(
        nats.url(),
        ConnectOptions::with_token("ns-t0ken-s3cret".into()),
    )
    .await;
    assert_eq!(stream_names(&js).await, vec!["one", "two"]);

    // What the namespace controller does: every object of the namespace is deleted, the
    // Secrets (which have no finalizers) go first.
    delete_secret(cp, ns.name(), "nats-token").await;
    let dp = DeleteParams::default();
    for (api, name) in [
        (&consumers, "worker"),
        (&streams, "one"),
        (&streams, "two"),
        (&accounts, "app"),
    ] {
        api.delete(name, &dp)
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }
    let started = std::time::Instant::now();
    for (api, name) in [
        (&consumers, "worker"),
        (&streams, "one"),
        (&streams, "two"),
        (&accounts, "app"),
    ] {
        wait_gone(api, name, WAIT).await;
    }
    eprintln!(
        "every object of the namespace was gone {:?} after the deletion",
        started.elapsed()
    );
    assert!(
        stream_names(&js).await.is_empty(),
        "streams remain in NATS: {:?}",
        stream_names(&js).await
    );
    let text = everything_written(cp, &[ns.name()], &op).await;
    assert_no_secret(&text, &[("token", "ns-t0ken-s3cret")]);
}
