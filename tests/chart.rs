//! The Helm chart (charts/jetstream-operator) against the real control plane: it lints; every
//! variant it renders is accepted by kube-apiserver (`kubectl apply --dry-run=server`);
//! mistyped values fail at render time; `helm install` creates what it should and
//! `helm upgrade` upgrades the CRDs; the chart's ServiceAccount token is enough for the
//! operator to reconcile end to end and for nothing it must not do; the embedded broker's
//! nats.conf starts a JetStream server; and an application chart's Streams (the platform
//! pattern NACK users run) become Ready in JetStream.
//!
//! No pod ever runs on this control plane (no scheduler, no kubelet): the operator runs as a
//! process with the arguments the chart's Deployment holds, and helm never uses `--wait`.
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

// ---------------------------------------------------------------------------------------
// Paths and small runners

/// charts/jetstream-operator of this checkout.
fn chart() -> PathBuf {
    repo_root().join("charts").join("jetstream-operator")
}

/// tests/fixtures/<name>.
fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(name)
}

/// Operators in this binary share one control plane. One of them watches every namespace
/// (the chart's default), and would reconcile the other tests' objects: it holds this lock
/// exclusively, the tests that create objects for an operator of their own hold it shared.
static OPERATOR_SCOPE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The plurals of the operator's kinds.
const PLURALS: [&str; 5] = [
    "streams",
    "consumers",
    "keyvalues",
    "objectstores",
    "accounts",
];

fn crd_names() -> Vec<String> {
    PLURALS.iter().map(|p| format!("{p}.{GROUP}")).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to completion (blocking), with `stdin` written to it when given.
fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let result = match stdin {
        None => cmd.stdin(Stdio::null()).output(),
        Some(input) => cmd.stdin(Stdio::piped()).spawn().and_then(|mut child| {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let input = input.to_vec();
            let writer = std::thread::spawn(move || pipe.write_all(&input));
            let out = child.wait_with_output();
            let _ = writer.join();
            out
        }),
    };
    result.unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// kubectl with another kubeconfig than the admin one (a ServiceAccount's token).
fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG");
    run(&mut cmd, stdin)
}

/// helm with homes of its own (never the user's ~/.config/helm), against the control plane
/// when built with `for_cluster`.
struct Helm {
    home: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    fn offline() -> Helm {
        Helm {
            home: tempfile::Builder::new()
                .prefix("jso-helm-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}")),
            kubeconfig: None,
        }
    }

    fn for_cluster(cp: &ControlPlane) -> Helm {
        Helm {
            kubeconfig: Some(cp.kubeconfig.clone()),
            ..Helm::offline()
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool("helm"));
        cmd.args(args).env_remove("KUBECONFIG");
        if let Some(k) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(k);
        }
        for (var, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            cmd.env(var, self.home.path().join(dir));
        }
        run(&mut cmd, None)
    }

    /// `helm ARGS`, asserting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {} failed ({}):\nstderr: {}\nstdout: {}",
            args.join(" "),
            out.status,
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }

    /// `helm ARGS`, asserting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "helm {} succeeded, but it should have failed:\n{}",
            args.join(" "),
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// `helm template RELEASE CHART -n NS --set V...`, parsed.
    fn template(&self, release: &str, ns: &str, chart: &Path, values: &[&str]) -> Rendered {
        let chart = chart.to_string_lossy();
        let mut args = vec!["template", release, &chart, "--namespace", ns];
        for v in values {
            args.extend(["--set", v]);
        }
        Rendered::parse(self.ok(&args))
    }
}

/// `["--set", v, ...]` appended to `args`.
fn with_values<'a>(mut args: Vec<&'a str>, values: &[&'a str]) -> Vec<&'a str> {
    for v in values {
        args.extend(["--set", v]);
    }
    args
}

// ---------------------------------------------------------------------------------------
// Rendered manifests

/// The output of `helm template`, and its documents as JSON.
struct Rendered {
    text: String,
    docs: Vec<Value>,
}

impl Rendered {
    fn parse(text: String) -> Rendered {
        let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
            .unwrap_or_else(|e| panic!("helm template printed invalid YAML: {e}\n{text}"))
            .into_iter()
            .filter(Value::is_object)
            .collect();
        Rendered { text, docs }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn one(&self, kind: &str, name: &str) -> &Value {
        self.get(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered; have {:?}", self.summary()))
    }

    /// `Kind namespace/name` of every document, sorted.
    fn summary(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .docs
            .iter()
            .map(|d| {
                format!(
                    "{} {}/{}",
                    d["kind"].as_str().unwrap_or("?"),
                    d["metadata"]["namespace"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        s.sort();
        s
    }

    /// The args of the operator container of Deployment `name`.
    fn operator_args(&self, name: &str) -> Vec<String> {
        strings(&self.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"])
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl apply --dry-run=server -f -` (admin): the real apiserver validates and admits
/// every object (schemas, CRD schemas, RBAC escalation checks). Asserts that each document
/// was accepted.
fn dry_run_on_server(cp: &ControlPlane, rendered: &Rendered) {
    let out = run(
        Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args(["apply", "--dry-run=server", "-f", "-"])
            .env_remove("KUBECONFIG"),
        Some(rendered.text.as_bytes()),
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "kube-apiserver refused the rendered chart:\n{}\n{stdout}\nobjects: {:?}",
        text(&out.stderr),
        rendered.summary()
    );
    let accepted = stdout
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    assert_eq!(
        accepted,
        rendered.docs.len(),
        "not every object was applied: {stdout}\nobjects: {:?}",
        rendered.summary()
    );
}

/// Every label of `subset` is on `labels`.
fn labels_match(subset: &Value, labels: &Value) -> bool {
    subset
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

// ---------------------------------------------------------------------------------------
// Expectations shared by several tests

/// The operator's rules (ClusterRole or Role), exactly. Changing the chart's RBAC means
/// changing this, on purpose.
fn operator_rules(read_secrets: bool) -> Value {
    let mut rules = vec![
        json!({"apiGroups": ["jetstream.nats.io"],
               "resources": ["streams", "consumers", "keyvalues", "objectstores", "accounts"],
               "verbs": ["get", "list", "watch", "patch"]}),
        json!({"apiGroups": ["jetstream.nats.io"],
               "resources": ["streams/status", "consumers/status", "keyvalues/status",
                             "objectstores/status", "accounts/status"],
               "verbs": ["patch"]}),
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"],
               "verbs": ["create", "patch"]}),
    ];
    if read_secrets {
        rules.push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}));
    }
    Value::Array(rules)
}

/// No rule of any (Cluster)Role uses a wildcard.
fn assert_no_wildcards(r: &Rendered) {
    for role in r
        .of_kind("ClusterRole")
        .into_iter()
        .chain(r.of_kind("Role"))
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "wildcard in {}: {rule}",
                    role["metadata"]["name"]
                );
            }
        }
    }
}

/// The hardened pod of the operator (restricted Pod Security Standard, and more).
fn assert_hardened_operator_pod(deploy: &Value) {
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{pod}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{pod}"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert_eq!(sc["runAsUser"], 65532, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez", "{c}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{c}");
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    for want in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert!(
            env.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} not in {env:?}"
        );
    }
    assert!(pod["terminationGracePeriodSeconds"].is_u64(), "{pod}");
}

// ---------------------------------------------------------------------------------------
// Lint, values, CRD sync

/// The chart's CRD templates are crds/crds.yaml, split, guarded and annotated (what
/// `make crds` keeps true).
#[tokio::test]
async fn chart_crds_match_crds_dir() {
    let out = run(
        Command::new(repo_root().join("scripts").join("sync-chart-crds")).arg("--check"),
        None,
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // And they are exactly the CRDs of crds/: render them and compare names.
    let r = Helm::offline().template("crds", "default", &chart(), &[]);
    let mut names: Vec<String> = r
        .of_kind("CustomResourceDefinition")
        .iter()
        .map(|c| {
            c["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    names.sort();
    let mut want = crd_names();
    want.sort();
    assert_eq!(names, want);
}

#[tokio::test]
async fn helm_lint() {
    let helm = Helm::offline();
    let chart = chart().to_string_lossy().into_owned();
    for values in [
        vec![],
        vec!["replicas=3", "podDisruptionBudget.enabled=true"],
        vec![
            "nats.enabled=false",
            "nats.url=nats://nats.nats.svc:4222",
            "nats.credentials.secretName=nats-creds",
            "nats.tls.secretName=nats-tls",
            "networkPolicy.enabled=true",
        ],
        vec!["namespaced=true", "nats.cluster.enabled=true"],
        vec!["metrics.serviceMonitor.enabled=true", "crds.install=false"],
    ] {
        let out = helm.ok(&with_values(vec!["lint", "--strict", &chart], &values));
        assert!(out.contains("0 chart(s) failed"), "{values:?}: {out}");
    }
    let app = fixture("app-chart").to_string_lossy().into_owned();
    helm.ok(&["lint", "--strict", &app]);
}

/// Mistyped values fail `helm template` and `helm lint` with a message that names them,
/// before anything reaches a cluster.
#[tokio::test]
async fn mistyped_values_fail() {
    let helm = Helm::offline();
    let chart = chart().to_string_lossy().into_owned();
    for (value, says) in [
        ("replicas=two", "at '/replicas': got string, want integer"),
        (
            "adoptionPolicy=sometimes",
            "'/adoptionPolicy': value must be one of",
        ),
        ("replica=2", "additional properties 'replica' not allowed"),
        (
            "adoptedDeletionPolicy=keep",
            "'/adoptedDeletionPolicy': value must be one of",
        ),
        ("credentialsDirs={relative/dir}", "/credentialsDirs/0"),
        ("resyncInterval=1d", "/resyncInterval"),
        ("concurrency=0", "/concurrency"),
        ("logFormat=yaml", "/logFormat"),
        ("leaderElection.enabled=yes", "/leaderElection/enabled"),
        ("nats.cluster.replicas=2", "/nats/cluster/replicas"),
        (
            "nats.jetstream.fileStore.size=lots",
            "/nats/jetstream/fileStore/size",
        ),
        ("watchNamespaces=Not_A_Namespace", "/watchNamespaces"),
    ] {
        let err = helm.fails(&["template", "r", &chart, "--set", value]);
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(says),
            "--set {value}: expected a schema error mentioning {says:?}, got: {err}"
        );
        let lint = helm.run(&["lint", &chart, "--set", value]);
        assert!(!lint.status.success(), "helm lint --set {value} passed");
    }
    // External NATS without a URL: a clear message of our own.
    let err = helm.fails(&["template", "r", &chart, "--set", "nats.enabled=false"]);
    assert!(
        err.contains("nats.url is required when nats.enabled is false"),
        "{err}"
    );
    // A ServiceAccount of the user's own needs its name.
    let err = helm.fails(&[
        "template",
        "r",
        &chart,
        "--set",
        "serviceAccount.create=false",
    ]);
    assert!(err.contains("serviceAccount.name is required"), "{err}");
    // The embedded broker and a URL at once: ambiguous, refused.
    let err = helm.fails(&[
        "template",
        "r",
        &chart,
        "--set",
        "nats.url=nats://elsewhere:4222",
    ]);
    assert!(
        err.contains("nats.url is set, but nats.enabled is true"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Rendered variants, accepted by the apiserver

#[tokio::test]
async fn template_default_values() {
    let cp = control_plane().await;
    let ns = TestNs::new("chart-tpl-default").await;
    let r = Helm::offline().template("tpl", ns.name(), &chart(), &[]);
    dry_run_on_server(cp, &r);

    // CRDs: every kind, kept on uninstall.
    let crds = r.of_kind("CustomResourceDefinition");
    assert_eq!(crds.len(), 5, "{:?}", r.summary());
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            crd["metadata"]
        );
    }
    // Cluster-wide RBAC, exactly the operator's rules; no leader election, no Roles.
    let role = r.one("ClusterRole", "tpl-jetstream-operator");
    assert_eq!(role["rules"], operator_rules(true));
    let binding = r.one("ClusterRoleBinding", "tpl-jetstream-operator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "tpl-jetstream-operator", "namespace": ns.name()}])
    );
    assert!(r.of_kind("Role").is_empty(), "{:?}", r.summary());
    assert_no_wildcards(&r);
    r.one("ServiceAccount", "tpl-jetstream-operator");

    // The operator: the embedded broker as its default connection, every namespace.
    let deploy = r.one("Deployment", "tpl-jetstream-operator");
    assert_hardened_operator_pod(deploy);
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/jetstream-operator/jetstream-operator:0.1.0"
    );
    let args = r.operator_args("tpl-jetstream-operator");
    assert_eq!(args[0], "run");
    let servers = format!(
        "--servers=nats://tpl-jetstream-operator-nats.{}.svc:4222",
        ns.name()
    );
    for want in [
        servers.as_str(),
        "--resync-interval=60s",
        "--concurrency=16",
        "--adoption-policy=adopt",
        "--adopted-deletion-policy=orphan",
        "--admin-address=0.0.0.0:8080",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    for absent in [
        "--namespace",
        "--leader-election",
        "--read-only",
        "--creds",
        "--default-connection-namespaces",
        "--adoption-namespaces",
        "--credentials-dir",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(absent)),
            "{absent} in {args:?}"
        );
    }

    // The embedded broker: StatefulSet with a claim, config, client and headless Services.
    let sts = r.one("StatefulSet", "tpl-jetstream-operator-nats");
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(
        sts["spec"]["serviceName"],
        "tpl-jetstream-operator-nats-headless"
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    let nats = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(nats["image"], "nats:2.12-alpine");
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(
            nats[probe]["httpGet"]["path"], "/healthz?js-enabled-only=true",
            "{probe}"
        );
    }
    assert_eq!(nats["securityContext"]["readOnlyRootFilesystem"], true);
    let conf = r.one("ConfigMap", "tpl-jetstream-operator-nats-config")["data"]["nats.conf"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for want in [
        "server_name: $SERVER_NAME",
        "http: 0.0.0.0:8222",
        "store_dir: /data",
        "max_file_store: 10Gi",
        "max_memory_store: 256Mi",
    ] {
        assert!(conf.contains(want), "{want} not in nats.conf:\n{conf}");
    }
    assert!(!conf.contains("cluster {"), "{conf}");
    let client = r.one("Service", "tpl-jetstream-operator-nats");
    assert_eq!(client["spec"]["ports"][0]["port"], 4222);
    let headless = r.one("Service", "tpl-jetstream-operator-nats-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let metrics = r.one("Service", "tpl-jetstream-operator-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["port"], 8080);
    assert!(labels_match(
        &metrics["spec"]["selector"],
        &deploy["spec"]["template"]["metadata"]["labels"]
    ));
    // Upgrading the operator (another image or chart version) leaves the broker's pod
    // template alone: no broker restart.
    let other = Helm::offline().template("tpl", ns.name(), &chart(), &["image.tag=9.9.9"]);
    assert_ne!(
        other.one("Deployment", "tpl-jetstream-operator")["spec"]["template"],
        deploy["spec"]["template"]
    );
    assert_eq!(
        other.one("StatefulSet", "tpl-jetstream-operator-nats")["spec"]["template"],
        sts["spec"]["template"]
    );
    // Optional parts are off.
    for kind in [
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
        "Role",
    ] {
        assert!(r.of_kind(kind).is_empty(), "{kind}: {:?}", r.summary());
    }
}

#[tokio::test]
async fn template_external_nats_with_credentials() {
    let cp = control_plane().await;
    let ns = TestNs::new("chart-tpl-ext").await;
    let r = Helm::offline().template(
        "ext",
        ns.name(),
        &chart(),
        &[
            "nats.enabled=false",
            "nats.url=nats://nats-a.nats.svc:4222\\,nats://nats-b.nats.svc:4222",
            "nats.credentials.secretName=nats-creds",
            "nats.credentials.key=operator.creds",
            "nats.tls.secretName=nats-tls",
            "nats.tlsFirst=true",
            "nats.token.secretName=nats-token",
            "nats.user.secretName=nats-user",
            "nats.jsDomain=hub",
            "networkPolicy.enabled=true",
            "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
            "readOnly=true",
            "clusterName=east",
            "logFormat=json",
            "extraArgs={--deletion-grace=2m}",
        ],
    );
    dry_run_on_server(cp, &r);
    assert!(
        r.get("StatefulSet", "ext-jetstream-operator-nats")
            .is_none(),
        "{:?}",
        r.summary()
    );
    assert!(r.of_kind("ConfigMap").is_empty(), "{:?}", r.summary());
    let args = r.operator_args("ext-jetstream-operator");
    for want in [
        "--servers=nats://nats-a.nats.svc:4222,nats://nats-b.nats.svc:4222",
        "--creds=/etc/jetstream-operator/nats-creds/operator.creds",
        "--tls-ca=/etc/jetstream-operator/nats-tls/ca.crt",
        "--tls-cert=/etc/jetstream-operator/nats-tls/tls.crt",
        "--tls-key=/etc/jetstream-operator/nats-tls/tls.key",
        "--tls-first",
        "--js-domain=hub",
        "--read-only",
        "--cluster-name=east",
        "--log-format=json",
        "--deletion-grace=2m",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    let pod = &r.one("Deployment", "ext-jetstream-operator")["spec"]["template"]["spec"];
    let env = &pod["containers"][0]["env"];
    for (var, secret, key) in [
        ("NATS_TOKEN", "nats-token", "token"),
        ("NATS_USER", "nats-user", "username"),
        ("NATS_PASSWORD", "nats-user", "password"),
    ] {
        let e = env
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("no {var} in {env}"));
        assert_eq!(
            e["valueFrom"]["secretKeyRef"],
            json!({"name": secret, "key": key}),
            "{var}"
        );
    }
    let volumes = &pod["volumes"];
    for (name, secret) in [("nats-creds", "nats-creds"), ("nats-tls", "nats-tls")] {
        assert!(
            volumes
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["name"] == name && v["secret"]["secretName"] == secret),
            "{name} not in {volumes}"
        );
    }
    // NetworkPolicy: no ingress without metricsFrom; egress to DNS, the API server, NATS.
    let np = r.one("NetworkPolicy", "ext-jetstream-operator");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["ingress"], json!([]));
    let egress = np["spec"]["egress"].as_array().cloned().unwrap_or_default();
    let ports: Vec<Vec<i64>> = egress
        .iter()
        .map(|e| {
            e["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64())
                .collect()
        })
        .collect();
    assert_eq!(ports, vec![vec![53, 53], vec![443, 6443], vec![4222]]);
    assert_eq!(
        egress[1]["to"],
        json!([{"ipBlock": {"cidr": "10.0.0.1/32"}}])
    );
}

#[tokio::test]
async fn template_namespaced_with_two_watch_namespaces() {
    let cp = control_plane().await;
    let ns = TestNs::new("chart-tpl-nsd").await;
    let (a, b) = (
        TestNs::new("chart-tpl-nsd-a").await,
        TestNs::new("chart-tpl-nsd-b").await,
    );
    let watch = format!("watchNamespaces={{{},{}}}", a.name(), b.name());
    let r = Helm::offline().template("nsd", ns.name(), &chart(), &[&watch]);
    dry_run_on_server(cp, &r);
    assert!(r.of_kind("ClusterRole").is_empty(), "{:?}", r.summary());
    assert!(
        r.of_kind("ClusterRoleBinding").is_empty(),
        "{:?}",
        r.summary()
    );
    let roles = r.of_kind("Role");
    let bindings = r.of_kind("RoleBinding");
    for w in [a.name(), b.name()] {
        let role = roles
            .iter()
            .find(|x| x["metadata"]["namespace"] == w)
            .unwrap_or_else(|| panic!("no Role in {w}: {:?}", r.summary()));
        assert_eq!(role["rules"], operator_rules(true));
        let binding = bindings
            .iter()
            .find(|x| x["metadata"]["namespace"] == w)
            .unwrap_or_else(|| panic!("no RoleBinding in {w}: {:?}", r.summary()));
        assert_eq!(
            binding["subjects"][0]["namespace"],
            ns.name(),
            "{}",
            binding["subjects"]
        );
    }
    assert_eq!(roles.len(), 2, "{:?}", r.summary());
    assert_no_wildcards(&r);
    let args = r.operator_args("nsd-jetstream-operator");
    let flags: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--namespace"))
        .collect();
    assert_eq!(
        flags,
        vec![
            &format!("--namespace={}", a.name()),
            &format!("--namespace={}", b.name())
        ]
    );

    // `namespaced: true` alone: the release namespace.
    let r = Helm::offline().template("nsd", ns.name(), &chart(), &["namespaced=true"]);
    dry_run_on_server(cp, &r);
    let roles = r.of_kind("Role");
    assert_eq!(roles.len(), 1, "{:?}", r.summary());
    assert_eq!(roles[0]["metadata"]["namespace"], ns.name());
    assert!(
        r.operator_args("nsd-jetstream-operator")
            .contains(&format!("--namespace={}", ns.name()))
    );

    // The multi-tenant settings the chart README recommends.
    let r = Helm::offline().template(
        "nsd",
        ns.name(),
        &chart(),
        &[
            "defaultConnectionNamespaces={platform,ops}",
            "adoptionNamespaces={platform}",
            "credentialsDirs={/etc/nats-creds}",
            "adoptedDeletionPolicy=delete",
        ],
    );
    dry_run_on_server(cp, &r);
    let args = r.operator_args("nsd-jetstream-operator");
    for want in [
        "--default-connection-namespaces=platform",
        "--default-connection-namespaces=ops",
        "--adoption-namespaces=platform",
        "--credentials-dir=/etc/nats-creds",
        "--adopted-deletion-policy=delete",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
}

#[tokio::test]
async fn template_replicas_2_with_pdb_and_servicemonitor() {
    let cp = control_plane().await;
    // The test apiserver has no Prometheus Operator: a reduced ServiceMonitor CRD.
    let crd = fixture("servicemonitor-crd.yaml");
    kubectl_ok(
        cp,
        &[
            "apply",
            "--server-side",
            "--field-manager=jso-chart-test",
            "-f",
            &crd.to_string_lossy(),
        ],
    );
    kubectl_ok(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "--timeout=60s",
        ],
    );
    let ns = TestNs::new("chart-tpl-ha").await;
    let r = Helm::offline().template(
        "ha",
        ns.name(),
        &chart(),
        &[
            "replicas=2",
            "podDisruptionBudget.enabled=true",
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prometheus",
        ],
    );
    dry_run_on_server(cp, &r);
    let deploy = r.one("Deployment", "ha-jetstream-operator");
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    let args = r.operator_args("ha-jetstream-operator");
    for want in [
        "--leader-election",
        "--leader-election-lease=ha-jetstream-operator",
        "--leader-election-duration=4s",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    // The Lease: a Role in the release namespace, create + get/list/watch/update of that
    // one Lease.
    let lease = r.one("Role", "ha-jetstream-operator-leader-election");
    assert_eq!(lease["metadata"]["namespace"], ns.name());
    assert_eq!(
        lease["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["ha-jetstream-operator"], "verbs": ["get", "list", "watch", "update"]}
        ])
    );
    r.one("RoleBinding", "ha-jetstream-operator-leader-election");
    assert_no_wildcards(&r);
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    let pdb = r.one("PodDisruptionBudget", "ha-jetstream-operator");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(labels_match(
        &pdb["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    // The ServiceMonitor selects the metrics Service, and only it.
    let sm = r.one("ServiceMonitor", "ha-jetstream-operator");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let selected: Vec<&str> = r
        .of_kind("Service")
        .into_iter()
        .filter(|s| {
            labels_match(
                &sm["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        })
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(selected, vec!["ha-jetstream-operator-metrics"]);
}

#[tokio::test]
async fn template_nats_cluster_of_3() {
    let cp = control_plane().await;
    let ns = TestNs::new("chart-tpl-cluster").await;
    let r = Helm::offline().template(
        "cl",
        ns.name(),
        &chart(),
        &[
            "nats.cluster.enabled=true",
            "nats.jetstream.fileStore.size=20Gi",
            "nats.jetstream.fileStore.storageClassName=fast",
            "nats.config.extra=max_payload: 2MB",
        ],
    );
    dry_run_on_server(cp, &r);
    let sts = r.one("StatefulSet", "cl-jetstream-operator-nats");
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let claim = &sts["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"], "fast");
    assert_eq!(claim["resources"]["requests"]["storage"], "20Gi");
    let conf = r.one("ConfigMap", "cl-jetstream-operator-nats-config")["data"]["nats.conf"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(conf.contains("max_file_store: 20Gi"), "{conf}");
    assert!(conf.contains("cluster {"), "{conf}");
    assert!(conf.contains("\nmax_payload: 2MB"), "{conf}");
    for i in 0..3 {
        let route = format!(
            "nats://cl-jetstream-operator-nats-{i}.cl-jetstream-operator-nats-headless:6222"
        );
        assert!(conf.contains(&route), "{route} not in:\n{conf}");
    }
    assert_eq!(
        r.one("Service", "cl-jetstream-operator-nats-headless")["spec"]["publishNotReadyAddresses"],
        true
    );
    // nats-server itself accepts the configuration.
    nats_server_accepts(&conf);
}

#[tokio::test]
async fn template_without_crds_or_secret_access() {
    let cp = control_plane().await;
    let ns = TestNs::new("chart-tpl-nocrds").await;
    let r = Helm::offline().template(
        "nocrds",
        ns.name(),
        &chart(),
        &["crds.install=false", "rbac.readSecrets=false"],
    );
    dry_run_on_server(cp, &r);
    assert!(
        r.of_kind("CustomResourceDefinition").is_empty(),
        "{:?}",
        r.summary()
    );
    r.one("Deployment", "nocrds-jetstream-operator");
    // Without Secret access the ClusterRole has no secrets rule at all.
    assert_eq!(
        r.one("ClusterRole", "nocrds-jetstream-operator")["rules"],
        operator_rules(false)
    );
}

/// `nats-server -t` (configuration test) on `conf`, with SERVER_NAME set as in the pod.
fn nats_server_accepts(conf: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let out = run(
        Command::new(tool("nats-server"))
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .env("SERVER_NAME", "jso-nats-0"),
        None,
    );
    assert!(
        out.status.success(),
        "nats-server refuses the rendered nats.conf: {}{}\n{conf}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The embedded broker's nats.conf, as rendered, starts a JetStream server whose probe
/// endpoint answers and whose limits are the values'. (Only the listen addresses and the
/// store directory are moved to this machine.)
#[tokio::test]
async fn embedded_nats_config_starts_jetstream() {
    let r = Helm::offline().template(
        "emb",
        "default",
        &chart(),
        &["nats.jetstream.memoryStore.maxSize=64Mi"],
    );
    let conf = r.one("ConfigMap", "emb-jetstream-operator-nats-config")["data"]["nats.conf"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (port, monitor) = (free_port(), free_port());
    let store = dir.path().join("store");
    let mut local = conf.clone();
    for (from, to) in [
        ("listen: 0.0.0.0:4222", format!("listen: 127.0.0.1:{port}")),
        ("http: 0.0.0.0:8222", format!("http: 127.0.0.1:{monitor}")),
        (
            "store_dir: /data",
            format!("store_dir: {:?}", store.display().to_string()),
        ),
    ] {
        assert!(local.contains(from), "{from} not in nats.conf:\n{conf}");
        local = local.replace(from, &to);
    }
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, &local).unwrap_or_else(|e| panic!("write: {e}"));
    let mut cmd = Command::new(tool("nats-server"));
    cmd.arg("-c")
        .arg(&path)
        .env("SERVER_NAME", "emb-jetstream-operator-nats-0");
    let mut server = Background::spawn(
        "nats-server (rendered nats.conf)",
        cmd,
        &dir.path().join("nats.log"),
    );

    // The probe path of the StatefulSet.
    let probe = r.one("StatefulSet", "emb-jetstream-operator-nats")["spec"]["template"]["spec"]
        ["containers"][0]["readinessProbe"]["httpGet"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let addr = format!("127.0.0.1:{monitor}");
    let probed = poll_until(Duration::from_secs(20), || async {
        match http_get(&addr, &probe).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    let Some(body) = probed else {
        panic!(
            "the rendered broker's probe {probe} never answered 200 (exited: {:?}):\n{}",
            server.exited(),
            server.log()
        )
    };
    assert!(body.contains("ok"), "{body}");
    // The limits are the values'.
    let (_, jsz) = http_get(&addr, "/jsz")
        .await
        .unwrap_or_else(|e| panic!("/jsz: {e}"));
    let jsz: Value = serde_json::from_str(&jsz).unwrap_or_else(|e| panic!("/jsz JSON: {e}"));
    assert_eq!(jsz["config"]["max_memory"], 64 * 1024 * 1024, "{jsz}");
    assert_eq!(
        jsz["config"]["max_storage"],
        10_i64 * 1024 * 1024 * 1024,
        "{jsz}"
    );
    let (_, varz) = http_get(&addr, "/varz")
        .await
        .unwrap_or_else(|e| panic!("/varz: {e}"));
    let varz: Value = serde_json::from_str(&varz).unwrap_or_else(|e| panic!("/varz JSON: {e}"));
    assert_eq!(varz["server_name"], "emb-jetstream-operator-nats-0");
    // JetStream works on file storage in the store directory.
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "probe".into(),
        subjects: vec!["probe.>".into()],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create a stream on the rendered broker: {e}"));
    assert!(
        store.join("jetstream").is_dir(),
        "no JetStream store in {}",
        store.display()
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// helm install / upgrade / uninstall

/// Copies directory `from` into `to` (recursively).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
    {
        let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// The CRD `name` as the apiserver has it.
fn live_crd(cp: &ControlPlane, name: &str) -> Value {
    serde_json::from_str(&kubectl_ok(cp, &["get", "crd", name, "-o", "json"]))
        .unwrap_or_else(|e| panic!("CRD {name} JSON: {e}"))
}

/// Names of the printer columns of the served version of CRD `name`.
fn printer_columns(cp: &ControlPlane, name: &str) -> Vec<String> {
    let crd = live_crd(cp, name);
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let served = versions
        .iter()
        .find(|v| v["served"] == true)
        .unwrap_or_else(|| panic!("no served version in {name}"));
    served["additionalPrinterColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// `helm install` without --wait (nothing ever runs here): the CRDs (taken over from the
/// harness's kubectl apply, as from NACK), RBAC, ServiceAccount, Deployment, the NATS
/// StatefulSet and the Services exist; `helm upgrade` with a changed CRD changes it in the
/// cluster (Helm's crds/ folder would not); `helm uninstall` keeps the CRDs.
#[tokio::test]
async fn helm_install_upgrade_and_uninstall() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("chart-install").await;
    let helm = Helm::for_cluster(cp);
    let chart_path = chart().to_string_lossy().into_owned();
    let n = ns.name();

    // The CRDs exist already, not owned by any release: a plain install refuses them.
    let err = helm.fails(&["install", "inst", &chart_path, "-n", n]);
    assert!(err.contains("invalid ownership metadata"), "{err}");
    assert!(
        !helm.ok(&["list", "-n", n, "-q"]).contains("inst"),
        "a refused install left a release behind"
    );

    // --take-ownership (Helm >= 3.17) adopts them, as the chart README says.
    let out = helm.ok(&["install", "inst", &chart_path, "-n", n, "--take-ownership"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("kubectl get jetstream -A"), "no NOTES: {out}");
    for crd in crd_names() {
        let live = live_crd(cp, &crd);
        let meta = &live["metadata"];
        assert_eq!(
            meta["annotations"]["helm.sh/resource-policy"], "keep",
            "{crd}"
        );
        assert_eq!(
            meta["annotations"]["meta.helm.sh/release-name"], "inst",
            "{crd}"
        );
        assert_eq!(
            meta["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{crd}"
        );
    }
    let names = kubectl_ok(
        cp,
        &[
            "get",
            "-n",
            n,
            "serviceaccount/inst-jetstream-operator",
            "deployment/inst-jetstream-operator",
            "statefulset/inst-jetstream-operator-nats",
            "configmap/inst-jetstream-operator-nats-config",
            "service/inst-jetstream-operator-nats",
            "service/inst-jetstream-operator-nats-headless",
            "service/inst-jetstream-operator-metrics",
            "clusterrole/inst-jetstream-operator",
            "clusterrolebinding/inst-jetstream-operator",
            "-o",
            "name",
        ],
    );
    assert_eq!(names.lines().count(), 9, "{names}");
    let role: Value = serde_json::from_str(&kubectl_ok(
        cp,
        &[
            "get",
            "clusterrole",
            "inst-jetstream-operator",
            "-o",
            "json",
        ],
    ))
    .unwrap_or_else(|e| panic!("ClusterRole JSON: {e}"));
    assert_eq!(role["rules"], operator_rules(true));

    // A chart whose ObjectStore CRD gained a printer column.
    let objectstores = format!("objectstores.{GROUP}");
    assert!(!printer_columns(cp, &objectstores).contains(&"UpgradeProbe".to_owned()));
    let copy = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let changed = copy.path().join("jetstream-operator");
    copy_dir(&chart(), &changed);
    let template = changed
        .join("templates")
        .join("crds")
        .join(format!("{objectstores}.yaml"));
    let original = std::fs::read_to_string(&template).unwrap_or_else(|e| panic!("read: {e}"));
    let anchor = "  - additionalPrinterColumns:\n";
    assert!(
        original.contains(anchor),
        "no printer columns in {}",
        template.display()
    );
    let edited = original.replacen(
        anchor,
        &format!(
            "{anchor}    - description: Added by the chart upgrade test\n      \
             jsonPath: .spec.description\n      name: UpgradeProbe\n      priority: 1\n      \
             type: string\n"
        ),
        1,
    );
    std::fs::write(&template, edited).unwrap_or_else(|e| panic!("write: {e}"));
    let changed_path = changed.to_string_lossy().into_owned();
    let out = helm.ok(&["upgrade", "inst", &changed_path, "-n", n]);
    assert!(out.contains("REVISION: 2"), "{out}");
    assert!(
        printer_columns(cp, &objectstores).contains(&"UpgradeProbe".to_owned()),
        "helm upgrade did not upgrade the CRD: {:?}",
        printer_columns(cp, &objectstores)
    );

    // And back: the column goes away again.
    helm.ok(&["upgrade", "inst", &chart_path, "-n", n]);
    assert!(
        !printer_columns(cp, &objectstores).contains(&"UpgradeProbe".to_owned()),
        "{:?}",
        printer_columns(cp, &objectstores)
    );

    // Uninstall: the operator's objects go, the CRDs stay.
    let out = helm.ok(&["uninstall", "inst", "-n", n]);
    assert!(out.contains("kept due to the resource policy"), "{out}");
    let gone = kubectl(
        cp,
        &["get", "deployment", "inst-jetstream-operator", "-n", n],
    );
    assert!(!gone.status.success(), "the Deployment is still there");
    let gone = kubectl(cp, &["get", "clusterrole", "inst-jetstream-operator"]);
    assert!(!gone.status.success(), "the ClusterRole is still there");
    for crd in crd_names() {
        live_crd(cp, &crd);
    }
}

/// Upgrades that depend on what is installed (Helm's `lookup`): the upgrade that switches
/// leader election on stops the unelected pod before elected ones start (Recreate), the
/// next one rolls; switching the embedded broker between one node and a cluster is refused
/// and changes nothing.
#[tokio::test]
async fn upgrades_read_the_installed_release() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("chart-upgrades").await;
    let n = ns.name();
    let helm = Helm::for_cluster(cp);
    let chart_path = chart().to_string_lossy().into_owned();
    let get = |kind: &str, name: &str, path: &str| {
        kubectl_ok(
            cp,
            &[
                "get",
                kind,
                name,
                "-n",
                n,
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    let strategy = || {
        get(
            "deployment",
            "up-jetstream-operator",
            "{.spec.strategy.type}",
        )
    };
    let base = vec!["--set", "crds.install=false"];

    helm.ok(&with_values(
        [vec!["install", "up", &chart_path, "-n", n], base.clone()].concat(),
        &[],
    ));
    assert_eq!(
        strategy(),
        "Recreate",
        "one replica without leader election"
    );
    for (values, want) in [
        (vec!["replicas=2"], "Recreate"),
        (vec!["replicas=2", "logLevel=debug"], "RollingUpdate"),
        (vec!["replicas=1"], "Recreate"),
    ] {
        helm.ok(&with_values(
            [vec!["upgrade", "up", &chart_path, "-n", n], base.clone()].concat(),
            &values,
        ));
        assert_eq!(strategy(), want, "after the upgrade to {values:?}");
    }

    let err = helm.fails(&with_values(
        [vec!["upgrade", "up", &chart_path, "-n", n], base.clone()].concat(),
        &["nats.cluster.enabled=true"],
    ));
    assert!(
        err.contains("nats.cluster.enabled cannot change from false to true"),
        "{err}"
    );
    assert_eq!(
        get(
            "statefulset",
            "up-jetstream-operator-nats",
            "{.spec.replicas}"
        ),
        "1"
    );
    assert!(
        helm.ok(&["history", "up", "-n", n]).lines().count() == 5,
        "the refused upgrade made a revision"
    );
    helm.ok(&["uninstall", "up", "-n", n]);
}

// ---------------------------------------------------------------------------------------
// RBAC: the chart's ServiceAccount token runs the operator

/// A kubeconfig at `dir/<sa>.kubeconfig` for a TokenRequest token of ServiceAccount `sa`
/// in `ns` (server and CA from the admin kubeconfig).
fn service_account_kubeconfig(cp: &ControlPlane, ns: &str, sa: &str, dir: &Path) -> PathBuf {
    let token = kubectl_ok(cp, &["create", "token", sa, "-n", ns, "--duration=2h"])
        .trim()
        .to_owned();
    assert!(!token.is_empty(), "empty token");
    let view: Value = serde_json::from_str(&kubectl_ok(
        cp,
        &["config", "view", "--raw", "--minify", "-o", "json"],
    ))
    .unwrap_or_else(|e| panic!("kubeconfig JSON: {e}"));
    let cluster = &view["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "envtest", "user": sa}}],
        "current-context": sa,
    });
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, config.to_string()).unwrap_or_else(|e| panic!("write: {e}"));
    path
}

/// `kubectl auth can-i QUERY` as the token's user.
fn can_i(kubeconfig: &Path, query: &str) -> bool {
    let mut args = vec!["auth", "can-i"];
    args.extend(query.split_whitespace());
    let out = kubectl_as(kubeconfig, &args, None);
    match text(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {query}: {other:?} {}",
            text(&out.stderr)
        ),
    }
}

/// Checks every `(query, allowed)`; reports all mismatches at once.
fn assert_can_i(kubeconfig: &Path, expectations: &[(String, bool)]) {
    let wrong: Vec<String> = expectations
        .iter()
        .filter(|(q, want)| can_i(kubeconfig, q) != *want)
        .map(|(q, want)| format!("can-i {q}: expected {}", if *want { "yes" } else { "no" }))
        .collect();
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));
}

/// The operator, as the chart's Deployment would run it: the Deployment's args (from the
/// apiserver), its ServiceAccount's token, POD_NAME/POD_NAMESPACE as the downward API sets
/// them. Only the admin address (a free loopback port) and the log level (debug, for
/// failures) differ. Returns the operator and its admin address, once /readyz says 200.
async fn run_operator_as_chart(
    cp: &ControlPlane,
    ns: &str,
    deployment: &str,
    kubeconfig: &Path,
    pod_name: &str,
) -> (Operator, String) {
    let deploy: Value = serde_json::from_str(&kubectl_ok(
        cp,
        &["get", "deployment", deployment, "-n", ns, "-o", "json"],
    ))
    .unwrap_or_else(|e| panic!("Deployment JSON: {e}"));
    let args = strings(&deploy["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    let admin = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = args[1..]
        .iter()
        .map(|a| {
            if a.starts_with("--admin-address=") {
                format!("--admin-address={admin}")
            } else if a.starts_with("--log-level=") {
                "--log-level=info,jetstream_operator=debug".to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let kc = kubeconfig.to_string_lossy().into_owned();
    let op = Operator::start_with_env(
        cp,
        &refs,
        &[
            ("KUBECONFIG", &kc),
            ("POD_NAME", pod_name),
            ("POD_NAMESPACE", ns),
        ],
    )
    .await;
    wait_until(WAIT, "the operator's /readyz to answer 200", || async {
        (readyz(&admin).await == Some(200)).then_some(())
    })
    .await;
    (op, admin)
}

/// Nothing the operator tried was denied.
fn assert_never_forbidden(op: &Operator) {
    let log = op.log();
    let denied: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "the operator was denied:\n{}",
        denied.join("\n")
    );
}

/// Cluster-wide install with two replicas (leader election): with only the chart's token,
/// the operator elects itself through the Lease, reconciles a Stream and a Consumer on the
/// default connection and a Stream through an Account whose token it reads from a Secret,
/// records Events, deletes a Consumer (finalizer released); and the token may do nothing it
/// must not (list or watch Secrets, create or delete the custom resources, touch other
/// Leases, workloads, CRDs).
#[tokio::test]
async fn chart_rbac_lets_the_operator_work_and_nothing_more() {
    let _alone = OPERATOR_SCOPE.write().await;
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("chart-rbac").await;
    let n = ns.name();
    let nats = Nats::start().await;
    let secured =
        Nats::start_with_config("authorization {\n  token: \"chart-rbac-t0ken\"\n}").await;
    let helm = Helm::for_cluster(cp);
    let url = format!("nats.url={}", nats.url());
    helm.ok(&with_values(
        vec!["install", "rbac", &chart().to_string_lossy(), "-n", n],
        &[
            "crds.install=false",
            "replicas=2",
            "nats.enabled=false",
            &url,
        ],
    ));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kc = service_account_kubeconfig(cp, n, "rbac-jetstream-operator", dir.path());
    let pod = "rbac-jetstream-operator-5f7d9c8b6-x2x4q";
    let (op, _admin) = run_operator_as_chart(cp, n, "rbac-jetstream-operator", &kc, pod).await;

    // Leadership through the Lease of the chart's Role.
    let holder = wait_until(WAIT, "the operator to hold the Lease", || async {
        let out = kubectl(
            cp,
            &[
                "get",
                "lease",
                "rbac-jetstream-operator",
                "-n",
                n,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        let h = text(&out.stdout);
        (out.status.success() && !h.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(holder, pod);

    // Default connection: a Stream and a Consumer.
    let out = kubectl_apply_yaml(
        cp,
        n,
        &[
            manifest("Stream", "orders", "name: orders\nsubjects: [\"orders.>\"]"),
            manifest(
                "Consumer",
                "worker",
                "streamName: orders\ndurableName: worker\nackPolicy: explicit",
            ),
        ]
        .join("---\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // An Account whose token is in a Secret, and a Stream using it.
    put_secret(cp, n, "nats-token", &[("token", "chart-rbac-t0ken")]).await;
    let out = kubectl_apply_yaml(
        cp,
        n,
        &[
            manifest(
                "Account",
                "app",
                &format!(
                    "servers: [\"{}\"]\ntoken:\n  secret:\n    name: nats-token\n  token: token",
                    secured.url()
                ),
            ),
            manifest(
                "Stream",
                "audit",
                "name: audit\nsubjects: [\"audit.>\"]\naccount: app",
            ),
        ]
        .join("---\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let streams = dyn_api(cp, n, "streams");
    let consumers = dyn_api(cp, n, "consumers");
    wait_ready(&streams, "orders").await;
    wait_ready(&consumers, "worker").await;
    wait_ready(&dyn_api(cp, n, "accounts"), "app").await;
    wait_ready(&streams, "audit").await;
    let js = nats.jetstream().await;
    assert!(stream_info(&js, "orders").await.is_some());
    assert!(consumer_info(&js, "orders", "worker").await.is_some());
    let secured_js = async_nats::jetstream::new(
        async_nats::ConnectOptions::with_token("chart-rbac-t0ken".into())
            .connect(secured.url())
            .await
            .unwrap_or_else(|e| panic!("connect with the token: {e}")),
    );
    assert!(stream_info(&secured_js, "audit").await.is_some());

    // Events (events.k8s.io create).
    wait_until(WAIT, "a Created event about Stream orders", || async {
        events_about(cp, n, "Stream", "orders")
            .await
            .iter()
            .any(|e| e.reason == "Created")
            .then_some(())
    })
    .await;

    // Deleting: the finalizer is released (merge patch) and the consumer is gone.
    kubectl_ok(
        cp,
        &["delete", "consumer", "worker", "-n", n, "--wait=false"],
    );
    wait_gone(&consumers, "worker", WAIT).await;
    assert!(consumer_info(&js, "orders", "worker").await.is_none());
    assert_never_forbidden(&op);

    let lease = "leases.coordination.k8s.io/rbac-jetstream-operator";
    let expect: Vec<(String, bool)> = [
        // Secrets: GET by name, nothing else (cluster-wide mode: in any namespace).
        ("get secrets -n @NS", true),
        ("get secrets -n default", true),
        ("list secrets --all-namespaces", false),
        ("list secrets -n @NS", false),
        ("watch secrets -n @NS", false),
        ("create secrets -n @NS", false),
        ("update secrets -n @NS", false),
        // Its own kinds: read, watch, patch (finalizers); status by patch; no writes else.
        ("list streams.jetstream.nats.io --all-namespaces", true),
        ("watch consumers.jetstream.nats.io --all-namespaces", true),
        ("get accounts.jetstream.nats.io -n @NS", true),
        ("patch keyvalues.jetstream.nats.io -n @NS", true),
        (
            "patch streams.jetstream.nats.io --subresource=status -n @NS",
            true,
        ),
        (
            "update streams.jetstream.nats.io --subresource=status -n @NS",
            false,
        ),
        ("create streams.jetstream.nats.io -n @NS", false),
        ("update streams.jetstream.nats.io -n @NS", false),
        ("delete streams.jetstream.nats.io -n @NS", false),
        (
            "deletecollection objectstores.jetstream.nats.io -n @NS",
            false,
        ),
        // Events: events.k8s.io create and patch only.
        ("create events.events.k8s.io -n @NS", true),
        ("patch events.events.k8s.io -n @NS", true),
        ("delete events.events.k8s.io -n @NS", false),
        ("create events -n @NS", false),
        // The Lease: its own, in its own namespace.
        ("create leases.coordination.k8s.io -n @NS", true),
        ("get @LEASE -n @NS", true),
        ("watch @LEASE -n @NS", true),
        ("update @LEASE -n @NS", true),
        ("patch @LEASE -n @NS", false),
        ("delete @LEASE -n @NS", false),
        ("get leases.coordination.k8s.io/somebody-else -n @NS", false),
        ("create leases.coordination.k8s.io -n default", false),
        // Nothing else.
        ("create deployments -n @NS", false),
        ("get pods -n @NS", false),
        ("get configmaps -n @NS", false),
        ("get customresourcedefinitions.apiextensions.k8s.io", false),
        ("list namespaces", false),
        ("* *", false),
    ]
    .iter()
    .map(|(q, ok)| (q.replace("@LEASE", lease).replace("@NS", n), *ok))
    .collect();
    assert_can_i(&kc, &expect);
}

/// watchNamespaces: Roles in the two watched namespaces only. With the chart's token the
/// operator reconciles there, leaves a third namespace alone, and may not see anything
/// outside the watched namespaces (NACK #243: namespaced mode must not need cluster scope).
#[tokio::test]
async fn chart_rbac_watch_namespaces_confine_the_operator() {
    let _shared = OPERATOR_SCOPE.read().await;
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let home = TestNs::new("chart-nsd").await;
    let a = TestNs::new("chart-nsd-a").await;
    let b = TestNs::new("chart-nsd-b").await;
    let other = TestNs::new("chart-nsd-other").await;
    let nats = Nats::start().await;
    let helm = Helm::for_cluster(cp);
    let url = format!("nats.url={}", nats.url());
    let watch = format!("watchNamespaces={{{},{}}}", a.name(), b.name());
    helm.ok(&with_values(
        vec![
            "install",
            "nsd",
            &chart().to_string_lossy(),
            "-n",
            home.name(),
        ],
        &["crds.install=false", "nats.enabled=false", &url, &watch],
    ));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kc = service_account_kubeconfig(cp, home.name(), "nsd-jetstream-operator", dir.path());

    // An object outside the watched namespaces, before the operator starts.
    let out = kubectl_apply_yaml(
        cp,
        other.name(),
        &manifest(
            "Stream",
            "ignored",
            "name: ignored\nsubjects: [\"ignored.>\"]",
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (op, _admin) = run_operator_as_chart(
        cp,
        home.name(),
        "nsd-jetstream-operator",
        &kc,
        "nsd-jetstream-operator-6c8f7d5b9-k2m4p",
    )
    .await;
    for (ns, name) in [(a.name(), "alpha"), (b.name(), "beta")] {
        let out = kubectl_apply_yaml(
            cp,
            ns,
            &manifest(
                "Stream",
                name,
                &format!("name: {name}\nsubjects: [\"{name}.>\"]"),
            ),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    wait_ready(&dyn_api(cp, a.name(), "streams"), "alpha").await;
    wait_ready(&dyn_api(cp, b.name(), "streams"), "beta").await;
    let ignored = dyn_api(cp, other.name(), "streams")
        .get("ignored")
        .await
        .unwrap_or_else(|e| panic!("get ignored: {e}"));
    assert!(
        ignored.data.get("status").is_none() && ignored.metadata.finalizers.is_none(),
        "the operator touched a Stream outside its namespaces: {}",
        status_summary(&ignored)
    );
    let js = nats.jetstream().await;
    assert_eq!(stream_names(&js).await, vec!["alpha", "beta"]);
    assert_never_forbidden(&op);

    let expect: Vec<(String, bool)> = [
        ("list streams.jetstream.nats.io --all-namespaces", false),
        ("list streams.jetstream.nats.io -n @A", true),
        ("watch accounts.jetstream.nats.io -n @B", true),
        (
            "patch streams.jetstream.nats.io --subresource=status -n @B",
            true,
        ),
        ("list streams.jetstream.nats.io -n @OTHER", false),
        ("list streams.jetstream.nats.io -n @HOME", false),
        ("get secrets -n @A", true),
        ("list secrets -n @A", false),
        ("get secrets -n @OTHER", false),
        ("get secrets -n @HOME", false),
        ("create events.events.k8s.io -n @B", true),
        ("create events.events.k8s.io -n @OTHER", false),
        // No leader election with one replica: no Lease rights at all.
        ("create leases.coordination.k8s.io -n @HOME", false),
        ("* *", false),
    ]
    .iter()
    .map(|(q, ok)| {
        (
            q.replace("@OTHER", other.name())
                .replace("@HOME", home.name())
                .replace("@A", a.name())
                .replace("@B", b.name()),
            *ok,
        )
    })
    .collect();
    assert_can_i(&kc, &expect);

    // Leave nothing for the operators of later tests: the streams go while this one runs.
    for (ns, name) in [
        (a.name(), "alpha"),
        (b.name(), "beta"),
        (other.name(), "ignored"),
    ] {
        kubectl_ok(cp, &["delete", "stream", name, "-n", ns, "--wait=false"]);
        wait_gone(&dyn_api(cp, ns, "streams"), name, WAIT).await;
    }
}

// ---------------------------------------------------------------------------------------
// The platform pattern: an application chart ships its Streams

/// tests/fixtures/app-chart renders one Stream per entry of `nack.streams` with the
/// template platform teams use with NACK today (verbatim). `subjects: {{ .subjects }}`
/// prints a Go list, `[sync.>]`: a YAML flow sequence of one plain scalar, which the CRD
/// takes as `["sync.>"]`. helm install → the operator creates the streams; helm uninstall
/// → they are deleted from JetStream.
#[tokio::test]
async fn app_chart_streams_become_ready() {
    let _shared = OPERATOR_SCOPE.read().await;
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("chart-app").await;
    let n = ns.name();
    let nats = Nats::start().await;
    let op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            n,
            "--admin-address",
            "127.0.0.1:0",
        ],
    )
    .await;
    let helm = Helm::for_cluster(cp);
    let app = fixture("app-chart").to_string_lossy().into_owned();

    // What the template renders, as platform teams see it.
    let rendered = helm.template("app", n, Path::new(&app), &[]);
    for line in [
        "subjects: [sync.>]",
        "subjects: [notifications.>]",
        "subjects: [reports.*]",
        "storage: file",
        "storage: \"memory\"",
        "retention: \"workqueue\"",
    ] {
        assert!(
            rendered.text.contains(line),
            "{line} not in:\n{}",
            rendered.text
        );
    }

    let out = helm.ok(&["install", "app", &app, "-n", n]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let streams = dyn_api(cp, n, "streams");
    let js = nats.jetstream().await;
    for (name, subject, storage, retention) in [
        ("sync", "sync.>", "file", "limits"),
        ("notifications", "notifications.>", "file", "workqueue"),
        ("reports", "reports.*", "memory", "interest"),
    ] {
        let obj = wait_ready(&streams, name).await;
        assert_eq!(obj.data["spec"]["subjects"], json!([subject]), "{name}");
        let config = get_stream_config(&js, name)
            .await
            .unwrap_or_else(|| panic!("stream {name} is not in JetStream"));
        assert_eq!(config.subjects, vec![subject.to_owned()], "{name}");
        assert_eq!(
            format!("{:?}", config.storage).to_lowercase(),
            storage,
            "{name}"
        );
        let want_retention = match retention {
            "limits" => async_nats::jetstream::stream::RetentionPolicy::Limits,
            "workqueue" => async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            _ => async_nats::jetstream::stream::RetentionPolicy::Interest,
        };
        assert_eq!(config.retention, want_retention, "{name}");
    }
    let table = kubectl_ok(cp, &["get", "streams", "-n", n]);
    for row in &parse_kubectl_tables(&table)[0].rows {
        assert_eq!(
            row.get("READY").map(String::as_str),
            Some("True"),
            "{table}"
        );
    }

    // Uninstalling the application removes its streams from JetStream.
    helm.ok(&["uninstall", "app", "-n", n]);
    for name in ["sync", "notifications", "reports"] {
        wait_gone(&streams, name, WAIT).await;
    }
    assert!(stream_names(&js).await.is_empty());
    drop(op);
}
