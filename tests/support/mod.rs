//! Integration-test harness: a real kube-apiserver + etcd (started once per test binary by
//! `scripts/local-env k8s-start`), JetStream nats-servers (one per `Nats`), and the operator
//! binary as a child process. Every process is started from std (not from a per-test tokio
//! runtime) and is stopped by its own PID; a watchdog shell stops it when the test binary exits.
//!
//! Use from a file under tests/ with `mod support;`.
//!
//! Environment: `JSO_KEEP_TEST_DIRS=1` keeps the run directories (logs, stores) for inspection.
#![allow(dead_code)]

pub mod credentials;
pub mod specgen;

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rand::Rng as _;

/// API group of the operator's custom resources.
pub const GROUP: &str = "jetstream.nats.io";
/// API version of the operator's custom resources.
pub const VERSION: &str = "v1beta2";
/// Polling interval of every wait in this harness.
pub const POLL: Duration = Duration::from_millis(100);
/// Lines of a log printed when a test panics.
pub const LOG_TAIL_LINES: usize = 200;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Tools and paths

/// Root of this checkout (the directory holding Cargo.toml).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/local-env` of this checkout.
pub fn local_env_script() -> PathBuf {
    repo_root().join("scripts").join("local-env")
}

/// Path of a pinned tool in `.tools/`. Panics when it is missing: tests fail, never skip.
pub fn tool(name: &str) -> PathBuf {
    let p = repo_root().join(".tools").join(name);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => p,
        _ => panic!("missing {name}: run scripts/install-tools"),
    }
}

fn keep_dirs() -> bool {
    std::env::var_os("JSO_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn new_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

/// Runs `scripts/local-env ARGS` (blocking). Ok(stdout) on success, Err(description) otherwise.
fn run_local_env(args: &[&OsStr]) -> Result<String, String> {
    let out = Command::new(local_env_script())
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", local_env_script().display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "scripts/local-env {} failed ({}):\n{}{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Same as `run_local_env`, off the async runtime's thread.
async fn run_local_env_async(args: Vec<OsString>) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        run_local_env(&refs)
    })
    .await
    .unwrap_or_else(|e| panic!("local-env task failed: {e}"))
}

fn value_of(stdout: &str, key: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// Starts `sh -c '<wait while this test binary lives>; <script>'` with `$1...` = `args`.
/// Returns the watchdog, which callers kill when they clean up normally.
fn spawn_watchdog(script: &str, args: &[&OsStr]) -> Child {
    let body = format!("while kill -0 \"$0\" 2>/dev/null; do sleep 0.2; done; {script}");
    Command::new("sh")
        .arg("-c")
        .arg(body)
        .arg(std::process::id().to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start a watchdog shell: {e}"))
}

fn kill_watchdog(w: &mut Option<Child>) {
    if let Some(mut c) = w.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The last `n` lines of a file ("" if it cannot be read).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn dump_log(label: &str, path: &Path) {
    eprintln!(
        "----- {label}: last {LOG_TAIL_LINES} lines of {} -----\n{}\n----- end of {label} -----",
        path.display(),
        tail_lines(path, LOG_TAIL_LINES)
    );
}

// ---------------------------------------------------------------------------------------
// Control plane

/// The envtest-style control plane of this test binary (etcd + kube-apiserver, admin client
/// cert in `kubeconfig`), with the CRDs of crds/ installed.
pub struct ControlPlane {
    /// Run directory of `scripts/local-env` (PKI, logs, PIDs, etcd data).
    pub dir: PathBuf,
    /// Admin kubeconfig (system:masters, embedded certs).
    pub kubeconfig: PathBuf,
    /// How long `local-env k8s-start` plus the CRD installation took.
    pub started_in: Duration,
    config: Config,
}

/// Watchdogs that live as long as the test binary (never waited for).
static WATCHDOGS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane, started on first use (once per test binary). A failed start fails every
/// test that asks for it, with the same message.
pub async fn control_plane() -> &'static ControlPlane {
    let cp = match CONTROL_PLANE.get() {
        Some(cp) => cp,
        None => {
            for t in ["etcd", "kube-apiserver", "kubectl"] {
                tool(t);
            }
            match tokio::task::spawn_blocking(|| CONTROL_PLANE.get_or_init(start_control_plane))
                .await
            {
                Ok(cp) => cp,
                Err(e) => match e.try_into_panic() {
                    Ok(p) => std::panic::resume_unwind(p),
                    Err(e) => panic!("control plane start was cancelled: {e}"),
                },
            }
        }
    };
    match cp {
        Ok(cp) => cp,
        Err(e) => panic!("the control plane did not start: {e}"),
    }
}

fn start_control_plane() -> Result<ControlPlane, String> {
    let t0 = Instant::now();
    let dir = new_tempdir("jso-cp-").keep();
    // Statics are never dropped: stop the processes (and remove the directory) when the
    // test binary exits, however it exits.
    let keep = if keep_dirs() { "1" } else { "" };
    let watchdog = spawn_watchdog(
        "\"$1\" stop \"$2\"; [ -n \"$3\" ] || rm -rf \"$2\"",
        &[
            local_env_script().as_os_str(),
            dir.as_os_str(),
            OsStr::new(keep),
        ],
    );
    // The watchdog outlives every test of this binary: keep its handle for good.
    WATCHDOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(watchdog);

    let out = run_local_env(&[OsStr::new("k8s-start"), dir.as_os_str()])?;
    let kubeconfig = PathBuf::from(
        value_of(&out, "KUBECONFIG")
            .ok_or_else(|| format!("local-env k8s-start printed no KUBECONFIG= line: {out}"))?,
    );

    install_crds(&kubeconfig)?;

    let kc = Kubeconfig::read_from(&kubeconfig)
        .map_err(|e| format!("cannot read {}: {e}", kubeconfig.display()))?;
    let config = futures::executor::block_on(Config::from_custom_kubeconfig(
        kc,
        &KubeConfigOptions::default(),
    ))
    .map_err(|e| format!("cannot load {}: {e}", kubeconfig.display()))?;

    let started_in = t0.elapsed();
    eprintln!(
        "control plane ready in {:.1} s ({})",
        started_in.as_secs_f64(),
        dir.display()
    );
    Ok(ControlPlane {
        dir,
        kubeconfig,
        started_in,
        config,
    })
}

/// `kubectl apply --server-side -f crds/` and wait until every CRD is Established. Skipped
/// while crds/ holds no YAML file.
fn install_crds(kubeconfig: &Path) -> Result<(), String> {
    let crds = repo_root().join("crds");
    let has_yaml = std::fs::read_dir(&crds)
        .map(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                matches!(
                    e.path().extension().and_then(OsStr::to_str),
                    Some("yaml" | "yml")
                )
            })
        })
        .unwrap_or(false);
    if !has_yaml {
        eprintln!("no CRDs in {}: not installing any", crds.display());
        return Ok(());
    }
    let crds_arg = crds.to_string_lossy().into_owned();
    for args in [
        vec![
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=jso-test-harness",
            "-f",
            crds_arg.as_str(),
        ],
        vec![
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    ] {
        let out =
            kubectl_raw(kubeconfig, &args, None).map_err(|e| format!("cannot run kubectl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kubectl {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

impl ControlPlane {
    /// The control plane of a cluster that something else started and stops (the node of
    /// `scripts/local-env node-start`, for tests/e2e.rs): `dir` is its run directory,
    /// `kubeconfig` its admin kubeconfig. Nothing is started here, and no CRD installed.
    pub async fn attach(dir: PathBuf, kubeconfig: PathBuf) -> ControlPlane {
        let kc = Kubeconfig::read_from(&kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", kubeconfig.display()));
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", kubeconfig.display()));
        ControlPlane {
            dir,
            kubeconfig,
            started_in: Duration::ZERO,
            config,
        }
    }

    /// A fresh client for the calling test's runtime (never cache one across tests: each
    /// `#[tokio::test]` has its own runtime, which dies with the test).
    pub fn client(&self) -> Client {
        Client::try_from(self.config.clone())
            .unwrap_or_else(|e| panic!("cannot build a kube client: {e}"))
    }

    /// A copy of the client configuration (admin user).
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    pub fn apiserver_log(&self) -> PathBuf {
        self.dir.join("apiserver.log")
    }

    /// PID of a control-plane process (`etcd` or `apiserver`) from its PID file.
    pub fn pid_of(&self, name: &str) -> u32 {
        let path = self.dir.join(format!("{name}.pid"));
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no PID in {}", path.display()))
    }

    /// Stops kube-apiserver (SIGTERM; SIGKILL when it has not exited after 15 s) and starts
    /// it again with the same command line, port and log, then waits until it answers
    /// `/readyz`. Returns whether it stopped on SIGTERM. Etcd and its data stay. The control
    /// plane's watchdog stops the new process like the old one.
    pub async fn restart_apiserver(&self) -> bool {
        let pid = self.pid_of("apiserver");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("cannot read the apiserver's command line: {e}"));
        let args: Vec<OsString> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a).to_owned())
            .collect();
        let exited = || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        };
        // As a kubelet stops a pod: SIGTERM, then SIGKILL after a grace period (the
        // apiserver can wait a minute for long requests to finish).
        send_signal(pid, "TERM");
        let graceful = poll_until(Duration::from_secs(15), || async { exited().then_some(()) })
            .await
            .is_some();
        if !graceful {
            send_signal(pid, "KILL");
            wait_until(
                Duration::from_secs(30),
                "kube-apiserver to exit",
                || async { exited().then_some(()) },
            )
            .await;
        }
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.apiserver_log())
            .unwrap_or_else(|e| panic!("cannot open the apiserver log: {e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kube-apiserver again: {e}"));
        std::fs::write(self.dir.join("apiserver.pid"), child.id().to_string())
            .unwrap_or_else(|e| panic!("cannot write the apiserver PID: {e}"));
        // Reaped by the watchdog's stop at exit, like the first one.
        std::mem::forget(child);
        wait_until(
            Duration::from_secs(90),
            "kube-apiserver /readyz after a restart",
            || async {
                let out = kubectl(self, &["get", "--raw", "/readyz"]);
                (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok")
                    .then_some(())
            },
        )
        .await;
        graceful
    }

    pub fn etcd_log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
}

// ---------------------------------------------------------------------------------------
// Namespaces

/// A namespace of its own for one test: `<prefix>-<random>`. Not deleted afterwards (without
/// kube-controller-manager a deleted namespace stays Terminating forever).
pub struct TestNs {
    name: String,
}

impl TestNs {
    pub async fn new(prefix: &str) -> TestNs {
        let cp = control_plane().await;
        let name = format!("{prefix}-{}", random_suffix(6));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        "jetstream-operator.test/harness".to_owned(),
                        "true".to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(cp.client())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        TestNs { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `n` random characters from [a-z0-9].
pub fn random_suffix(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

// ---------------------------------------------------------------------------------------
// kubectl

fn kubectl_raw(kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> std::io::Result<Output> {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match stdin {
        None => cmd.stdin(Stdio::null()).output(),
        Some(input) => {
            let mut child = cmd.stdin(Stdio::piped()).spawn()?;
            let mut pipe = child.stdin.take().expect("kubectl stdin is piped");
            let input = input.to_vec();
            let writer = std::thread::spawn(move || pipe.write_all(&input));
            let out = child.wait_with_output()?;
            writer
                .join()
                .map_err(|_| std::io::Error::other("stdin writer panicked"))??;
            Ok(out)
        }
    }
}

/// `kubectl --kubeconfig <admin> ARGS` (blocking).
pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> Output {
    kubectl_raw(&cp.kubeconfig, args, None).unwrap_or_else(|e| panic!("cannot run kubectl: {e}"))
}

/// `kubectl ARGS`, asserting success; returns stdout. The panic message carries stderr.
pub fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let out = kubectl(cp, args);
    assert!(
        out.status.success(),
        "kubectl {} failed ({}):\nstderr: {}\nstdout: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply -n NS -f -` with `yaml` on stdin. Check `.status` yourself (rejections by
/// validation are often what a test wants to see).
pub fn kubectl_apply_yaml(cp: &ControlPlane, ns: &str, yaml: &str) -> Output {
    kubectl_raw(
        &cp.kubeconfig,
        &["apply", "-n", ns, "-f", "-"],
        Some(yaml.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"))
}

/// `kubectl apply` of `yaml` into `ns`, asserting success.
pub fn apply_ok(cp: &ControlPlane, ns: &str, yaml: &str) {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed ({}):\nstderr: {}\nmanifest:\n{yaml}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl apply` of `yaml` into `ns`, asserting that the API server refuses it; returns
/// its stderr.
pub fn apply_refused(cp: &ControlPlane, ns: &str, yaml: &str) -> String {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    assert!(
        !out.status.success(),
        "kubectl apply succeeded but should have been refused:\nstdout: {}\nmanifest:\n{yaml}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------
// Waiting

/// Polls `f` every 100 ms until it returns `Some`, and returns that. Panics naming `what`
/// after `timeout` (a call of `f` still running at the deadline is cut short).
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_every(timeout, POLL, what, f).await
}

/// `wait_until` polling every `poll` instead of 100 ms (to measure short delays finely).
pub async fn wait_until_every<T, F, Fut>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(_) => break,
        }
        if tokio::time::Instant::now() + poll > deadline {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}")
}

// ---------------------------------------------------------------------------------------
// Custom resources without the crate's types

/// The ApiResource of a jetstream.nats.io/v1beta2 kind, by plural (streams, consumers,
/// keyvalues, objectstores, accounts).
pub fn api_resource(kind_plural: &str) -> ApiResource {
    let kind = match kind_plural {
        "streams" => "Stream",
        "consumers" => "Consumer",
        "keyvalues" => "KeyValue",
        "objectstores" => "ObjectStore",
        "accounts" => "Account",
        other => panic!("unknown {GROUP} plural: {other}"),
    };
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.to_owned(),
        plural: kind_plural.to_owned(),
    }
}

/// A namespaced dynamic API for one of the operator's kinds (by plural).
pub fn dyn_api(cp: &ControlPlane, ns: &str, kind_plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(cp.client(), ns, &api_resource(kind_plural))
}

/// `(status, reason, message)` of the condition `type_` in `status.conditions`.
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let conds = obj.data.get("status")?.get("conditions")?.as_array()?;
    let c = conds
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))?;
    let field = |k: &str| {
        c.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Some((field("status"), field("reason"), field("message")))
}

// ---------------------------------------------------------------------------------------
// Logs on failure

/// Prints the last 200 lines of each registered file to stderr when dropped during a panic.
/// (`Operator` and `Nats` do that for their own logs already.)
#[derive(Default)]
pub struct LogsOnPanic {
    files: Vec<(String, PathBuf)>,
}

impl LogsOnPanic {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, label: &str, path: impl Into<PathBuf>) -> Self {
        self.files.push((label.to_owned(), path.into()));
        self
    }

    /// Adds the kube-apiserver log.
    pub fn control_plane(self, cp: &ControlPlane) -> Self {
        self.file("kube-apiserver", cp.apiserver_log())
    }
}

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (label, path) in &self.files {
                dump_log(label, path);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child processes (operator)

fn send_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, wait up to 10 s, SIGKILL (async: does not block the test's runtime).
/// `holderIdentity` of the operator's leader Lease (its default name) in `ns`.
pub async fn lease_holder(cp: &ControlPlane, ns: &str) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(cp.client(), ns)
        .get_opt("jetstream-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// `kill -<sig> <pid>`; panics when kill fails.
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{sig} {pid} failed: {status}");
}

async fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    send_sigterm(child.id());
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Same as `terminate`, blocking (for Drop).
fn terminate_blocking(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    send_sigterm(child.id());
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The operator binary, run as `jetstream-operator run ARGS` against the control plane.
pub struct Operator {
    /// Run as `jetstream-operator run ARGS` (false: `jetstream-operator ARGS`).
    subcommand: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    kubeconfig: PathBuf,
    dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    /// The binary this operator runs: a link to the build that was current at `start`.
    exe: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

/// Links (or copies) the operator binary into `dir` under a neutral name. The operator keeps
/// running this build across `restart()` even when cargo rebuilds the shared target
/// directory meanwhile, and its process is not hit by name-based kills
/// (`pkill jetstream-operator`) from other sessions on the machine.
fn private_operator_binary(dir: &Path) -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_jetstream-operator"));
    let exe = dir.join("jso-op");
    if std::fs::hard_link(&built, &exe).is_err() {
        std::fs::copy(&built, &exe).unwrap_or_else(|e| {
            panic!("cannot copy {} to {}: {e}", built.display(), exe.display())
        });
    }
    exe
}

impl Operator {
    /// Starts the operator with `KUBECONFIG` = the control plane's admin kubeconfig and
    /// `RUST_LOG=info,jetstream_operator=debug`; stdout and stderr go to `log_path()`.
    pub async fn start(cp: &ControlPlane, args: &[&str]) -> Operator {
        Self::start_with_env(cp, args, &[]).await
    }

    /// `start`, with extra environment variables (they override the defaults above).
    pub async fn start_with_env(
        cp: &ControlPlane,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        Self::launch(cp, true, args, env).await
    }

    /// Starts the binary with `args` exactly as given (no `run` subcommand), as NACK's
    /// Deployments start `jetstream-controller`; otherwise like `start_with_env`.
    pub async fn start_raw(cp: &ControlPlane, args: &[&str], env: &[(&str, &str)]) -> Operator {
        Self::launch(cp, false, args, env).await
    }

    async fn launch(
        cp: &ControlPlane,
        subcommand: bool,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let dir = new_tempdir("jso-operator-");
        let log_path = dir.path().join("operator.log");
        let exe = private_operator_binary(dir.path());
        let mut op = Operator {
            subcommand,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            kubeconfig: cp.kubeconfig.clone(),
            dir: Some(dir),
            log_path,
            exe,
            child: None,
            watchdog: None,
        };
        op.spawn();
        op
    }

    fn spawn(&mut self) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let _ = writeln!(
            log,
            "=== harness: jetstream-operator {}{} ===",
            if self.subcommand { "run " } else { "" },
            self.args.join(" ")
        );
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let child = Command::new(&self.exe)
            .args(self.subcommand.then_some("run"))
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,jetstream_operator=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start jetstream-operator: {e}"));
        let pid = child.id().to_string();
        let dir = self
            .log_path
            .parent()
            .expect("the log file is in a directory");
        let keep = if keep_dirs() { "1" } else { "" };
        self.watchdog = Some(spawn_watchdog(
            "kill -TERM \"$1\" 2>/dev/null; i=0; \
             while kill -0 \"$1\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; \
             kill -KILL \"$1\" 2>/dev/null; [ -n \"$3\" ] || rm -rf \"$2\"",
            &[OsStr::new(&pid), dir.as_os_str(), OsStr::new(keep)],
        ));
        self.child = Some(child);
    }

    /// SIGTERM, then wait (SIGKILL after 10 s). Idempotent.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c).await;
        }
        kill_watchdog(&mut self.watchdog);
    }

    /// SIGKILL (a crash: no graceful stop, no Lease release) and waits for the exit.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_watchdog(&mut self.watchdog);
    }

    /// Stops the operator and starts it again with the same arguments (same log file).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn();
    }

    /// PID of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(exit status)` when the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// True when the current run logged "shutting down" (it got SIGTERM or SIGINT) although
    /// the harness has not stopped it.
    pub fn stopped_from_outside(&self) -> bool {
        let log = self.log();
        let current = log.rsplit("=== harness: ").next().unwrap_or_default();
        self.child.is_some() && current.contains("shutting down")
    }

    /// Everything the operator printed so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_log("jetstream-operator", &self.log_path);
            if self.child.is_some() && self.stopped_from_outside() {
                eprintln!(
                    "NOTE: the operator of this test shut down on a signal the harness did not send \
                     (its log says \"shutting down\" while the harness still ran it)"
                );
            }
        }
        if let Some(mut c) = self.child.take() {
            terminate_blocking(&mut c);
        }
        kill_watchdog(&mut self.watchdog);
        if keep_dirs()
            && let Some(d) = self.dir.take()
        {
            eprintln!("kept operator log dir {}", d.keep().display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// NATS

/// A JetStream nats-server of its own (directory, port and store), via scripts/local-env.
pub struct Nats {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    url: String,
    running: bool,
    watchdog: Option<Child>,
}

impl Nats {
    /// Starts a nats-server with JetStream on a free loopback port.
    pub async fn start() -> Nats {
        Self::start_with_config("").await
    }

    /// Like `start`, with `extra_conf` appended to the generated nats.conf (accounts, TLS, ...).
    pub async fn start_with_config(extra_conf: &str) -> Nats {
        Self::start_version(None, extra_conf).await
    }

    /// Like `start_with_config`, running nats-server `minor` (`2.10`, ...: the
    /// `.tools/nats-server-<minor>` scripts/install-tools installs) instead of the default.
    pub async fn start_version(minor: Option<&str>, extra_conf: &str) -> Nats {
        tool("nats-server");
        let dir = new_tempdir("jso-nats-");
        let path = dir.path().to_path_buf();
        if let Some(m) = minor {
            let exe = tool(&format!("nats-server-{m}"));
            std::os::unix::fs::symlink(&exe, path.join("nats-server"))
                .unwrap_or_else(|e| panic!("cannot link {}: {e}", exe.display()));
        }
        if !extra_conf.is_empty() {
            let out = run_local_env_async(vec!["nats-conf".into(), path.clone().into()])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let conf = value_of(&out, "NATS_CONF")
                .unwrap_or_else(|| panic!("local-env nats-conf printed no NATS_CONF= line: {out}"));
            let mut f = OpenOptions::new()
                .append(true)
                .open(&conf)
                .unwrap_or_else(|e| panic!("cannot open {conf}: {e}"));
            writeln!(f, "\n# appended by the test harness\n{extra_conf}")
                .unwrap_or_else(|e| panic!("cannot write {conf}: {e}"));
        }
        Self::run_in(Some(dir), path).await
    }

    /// Starts the nats-server whose nats.conf is in `path` (kept in `dir` when given).
    async fn run_in(dir: Option<tempfile::TempDir>, path: PathBuf) -> Nats {
        let keep = if keep_dirs() { "1" } else { "" };
        let watchdog = spawn_watchdog(
            "\"$1\" nats-stop \"$2\"; [ -n \"$3\" ] || rm -rf \"$2\"",
            &[
                local_env_script().as_os_str(),
                path.as_os_str(),
                OsStr::new(keep),
            ],
        );
        let mut nats = Nats {
            dir,
            path,
            url: String::new(),
            running: false,
            watchdog: Some(watchdog),
        };
        nats.url = nats.launch().await;
        nats
    }

    async fn launch(&mut self) -> String {
        let out = run_local_env_async(vec!["nats-start".into(), self.path.clone().into()]).await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                dump_log("nats-server", &self.log_path());
                panic!("{e}")
            }
        };
        self.running = true;
        value_of(&out, "NATS_URL")
            .unwrap_or_else(|| panic!("local-env nats-start printed no NATS_URL= line: {out}"))
    }

    /// `nats://127.0.0.1:<port>` (stable across `stop`/`start_again`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The run directory (nats.conf, nats.log, store/).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    pub fn conf_path(&self) -> PathBuf {
        self.path.join("nats.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path.join("nats.log")
    }

    /// Monitoring endpoint, e.g. `http://127.0.0.1:<port>` (append `/jsz`, `/healthz`, ...).
    pub fn monitor_url(&self) -> String {
        let conf = std::fs::read_to_string(self.conf_path()).unwrap_or_default();
        let hostport = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("http:"))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("no http: line in {}", self.conf_path().display()));
        format!("http://{hostport}")
    }

    /// A plain client (no credentials). For auth/TLS set-ups, connect to `url()` yourself.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    /// Stops the server; the directory, port and store are kept for `start_again`.
    pub async fn stop(&mut self) {
        run_local_env_async(vec!["nats-stop".into(), self.path.clone().into()])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.running = false;
    }

    /// Starts the server again on the same directory, port and store.
    pub async fn start_again(&mut self) {
        assert!(!self.running, "start_again on a running nats-server");
        let url = self.launch().await;
        assert_eq!(url, self.url, "nats-server came back on another URL");
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Everything nats-server logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// A JetStream cluster of nats-servers on loopback, `jso`: routes between every node, a
/// store each, node `i` tagged `az:<i>`.
pub struct NatsCluster {
    /// The nodes, in order (stopped before their directory goes).
    pub nodes: Vec<Nats>,
    dir: Option<tempfile::TempDir>,
}

impl NatsCluster {
    /// Starts an `n`-node cluster as `scripts/local-env cluster-conf` writes it (cluster
    /// `jso`, node `i` tagged `az:<i>`), all nodes at once, and waits until JetStream
    /// answers with a meta leader.
    pub async fn start(n: usize) -> NatsCluster {
        tool("nats-server");
        let dir = new_tempdir("jso-cluster-");
        let out = run_local_env_async(vec![
            "cluster-conf".into(),
            dir.path().into(),
            n.to_string().into(),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<PathBuf> = out
            .lines()
            .filter_map(|l| l.strip_prefix("NATS_NODE="))
            .map(PathBuf::from)
            .collect();
        assert_eq!(paths.len(), n, "local-env cluster-conf printed: {out}");
        let nodes =
            futures::future::join_all(paths.into_iter().map(|p| Nats::run_in(None, p))).await;
        let cluster = NatsCluster {
            nodes,
            dir: Some(dir),
        };
        let client = cluster.client().await;
        wait_until(
            Duration::from_secs(60),
            "the JetStream cluster to elect a meta leader",
            || async {
                let msg = client.request("$JS.API.INFO", "".into()).await.ok()?;
                let v: serde_json::Value = serde_json::from_slice(&msg.payload).ok()?;
                v.get("error").is_none().then_some(())
            },
        )
        .await;
        cluster
    }

    /// Every node's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url().to_owned())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server name of node `i` (as cluster leaders are named).
    pub fn name(&self, i: usize) -> String {
        let port = self.nodes[i]
            .url()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        format!("local-env-{port}")
    }

    /// A client connected to the whole cluster.
    pub async fn client(&self) -> async_nats::Client {
        let urls: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .filter_map(|n| n.url().parse().ok())
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(urls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        // The nodes stop (and, unless kept, remove their directories) first.
        self.nodes.clear();
        if keep_dirs()
            && let Some(d) = self.dir.take()
        {
            eprintln!("kept cluster dir {}", d.keep().display());
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_log("nats-server", &self.log_path());
        }
        if let Err(e) = run_local_env(&[OsStr::new("nats-stop"), self.path.as_os_str()]) {
            eprintln!("{e}");
        }
        kill_watchdog(&mut self.watchdog);
        if keep_dirs()
            && let Some(d) = self.dir.take()
        {
            eprintln!("kept nats dir {}", d.keep().display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Waiting without panicking, and on conditions

/// Like `wait_until`, but returns `None` at the deadline instead of panicking (for things a
/// test wants to observe, not require).
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Some(v)) => return Some(v),
            Ok(None) => {}
            Err(_) => return None,
        }
        if tokio::time::Instant::now() + POLL > deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How long the condition waits below allow by default.
pub const WAIT: Duration = Duration::from_secs(60);

/// `metadata.generation` of an object.
pub fn generation(obj: &DynamicObject) -> Option<i64> {
    obj.metadata.generation
}

/// `status.observedGeneration` of an object.
pub fn observed_generation(obj: &DynamicObject) -> Option<i64> {
    obj.data.get("status")?.get("observedGeneration")?.as_i64()
}

/// True when the status was computed for the object's current generation.
pub fn status_is_current(obj: &DynamicObject) -> bool {
    generation(obj).is_some() && observed_generation(obj) == generation(obj)
}

/// A one-line summary of an object's status, for failure messages.
pub fn status_summary(obj: &DynamicObject) -> String {
    format!(
        "generation={:?} status={}",
        generation(obj),
        obj.data
            .get("status")
            .map(|s| s.to_string())
            .unwrap_or_else(|| "(none)".into())
    )
}

/// Waits (up to `timeout`) until object `name` has condition `type_` with `status`, computed
/// for its current generation (`status.observedGeneration == metadata.generation`), and
/// returns the object. The panic message carries the last status seen.
pub async fn wait_condition_for(
    api: &Api<DynamicObject>,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> DynamicObject {
    use futures::FutureExt as _;
    let what = format!("{name}: {type_}={status} at the current generation");
    let waited = std::panic::AssertUnwindSafe(wait_until(timeout, &what, || async {
        let obj = api.get_opt(name).await.ok().flatten()?;
        let (s, _, _) = condition(&obj, type_)?;
        (s == status && status_is_current(&obj)).then_some(obj)
    }))
    .catch_unwind()
    .await;
    match waited {
        Ok(obj) => obj,
        Err(_) => {
            let last = last_seen(api, name).await;
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
        }
    }
}

/// What a timed-out wait last saw of an object, for its panic message.
async fn last_seen(api: &Api<DynamicObject>, name: &str) -> String {
    match api.get_opt(name).await {
        Ok(Some(o)) => status_summary(&o),
        Ok(None) => "(object does not exist)".into(),
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// `wait_condition_for` with the default timeout (`WAIT`).
pub async fn wait_condition(
    api: &Api<DynamicObject>,
    name: &str,
    type_: &str,
    status: &str,
) -> DynamicObject {
    wait_condition_for(api, name, type_, status, WAIT).await
}

/// Waits until object `name` is Ready=True at its current generation.
pub async fn wait_ready(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    wait_condition(api, name, "Ready", "True").await
}

/// `name -> (resourceVersion, status)` of every object the API lists: what a test compares
/// to prove nothing was written, with the status to show what was.
pub async fn snapshot(
    api: &Api<DynamicObject>,
) -> std::collections::BTreeMap<String, (String, serde_json::Value)> {
    api.list(&kube::api::ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot list objects: {e}"))
        .items
        .into_iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                (
                    o.metadata.resource_version.clone().unwrap_or_default(),
                    o.data.get("status").cloned().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// `name -> resourceVersion` of every object the API lists.
pub async fn resource_versions(
    api: &Api<DynamicObject>,
) -> std::collections::BTreeMap<String, String> {
    api.list(&kube::api::ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot list objects: {e}"))
        .items
        .into_iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                o.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Events (events.k8s.io/v1, as kube-runtime's Recorder writes them)

/// One event as a test sees it. The Recorder folds repeats (same type, reason, action and
/// object) into one Event with a series: `count` is how many times it was emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSummary {
    /// Kind of the object the event is about.
    pub kind: String,
    /// Name of the object the event is about.
    pub name: String,
    /// Normal or Warning.
    pub type_: String,
    /// CamelCase reason.
    pub reason: String,
    /// The note (message).
    pub message: String,
    /// How many times it was emitted (1 + the series count of repeats).
    pub count: i32,
    /// resourceVersion of the Event object.
    pub resource_version: String,
}

/// Every event in namespace `ns`.
pub async fn events_in(cp: &ControlPlane, ns: &str) -> Vec<EventSummary> {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = Api::namespaced(cp.client(), ns);
    let mut out: Vec<EventSummary> = api
        .list(&kube::api::ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot list events in {ns}: {e}"))
        .items
        .into_iter()
        .map(|e| {
            let regarding = e.regarding.unwrap_or_default();
            EventSummary {
                kind: regarding.kind.unwrap_or_default(),
                name: regarding.name.unwrap_or_default(),
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                message: e.note.unwrap_or_default(),
                count: e.series.map(|s| s.count).unwrap_or(1),
                resource_version: e.metadata.resource_version.unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.reason).cmp(&(&b.name, &b.reason)));
    out
}

/// The events about the Stream `name` in namespace `ns`.
pub async fn events_for(cp: &ControlPlane, ns: &str, name: &str) -> Vec<EventSummary> {
    events_in(cp, ns)
        .await
        .into_iter()
        .filter(|e| e.kind == "Stream" && e.name == name)
        .collect()
}

/// How many times events with `reason` (and `type_`, when given) were emitted about the
/// Stream `name`.
pub fn event_count(events: &[EventSummary], reason: &str, type_: Option<&str>) -> i32 {
    events
        .iter()
        .filter(|e| e.reason == reason && type_.is_none_or(|t| e.type_ == t))
        .map(|e| e.count)
        .sum()
}

// ---------------------------------------------------------------------------------------
// The operator's admin endpoint

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
    l.local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

/// `GET http://ADDR/PATH` (HTTP/1.0, blocking, 5 s timeouts): `(status code, body)`.
pub fn http_get_blocking(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read as _;
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad address {addr}: {e}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line: {head:?}")))?;
    Ok((code, body.to_owned()))
}

/// `http_get_blocking`, off the async runtime's thread.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let (addr, path) = (addr.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || http_get_blocking(&addr, &path))
        .await
        .unwrap_or_else(|e| panic!("HTTP task failed: {e}"))
}

/// The operator's `/metrics` text (panics when it cannot be fetched).
pub async fn metrics(addr: &str) -> String {
    match http_get(addr, "/metrics").await {
        Ok((200, body)) => body,
        Ok((code, body)) => panic!("GET http://{addr}/metrics: HTTP {code}: {body}"),
        Err(e) => panic!("GET http://{addr}/metrics: {e}"),
    }
}

/// HTTP status of the operator's `/readyz`, `None` when it does not answer.
pub async fn readyz(addr: &str) -> Option<u16> {
    http_get(addr, "/readyz").await.ok().map(|(code, _)| code)
}

/// The sum of every sample of metric `name` (exact, e.g. `..._total`) whose labels include
/// all of `labels`. 0 when there is none (prometheus-client only shows a labelled series
/// once it has been touched).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbls) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let have: Vec<(&str, &str)> = lbls
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|want| have.contains(want))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        // Not `sum()`: a float sum of nothing is -0.0.
        .fold(0.0, |a, b| a + b)
}

// ---------------------------------------------------------------------------------------
// JetStream

/// The info of stream `name`, `None` when JetStream says it does not exist. Panics on any
/// other error.
pub async fn stream_info(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> Option<async_nats::jetstream::stream::Info> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(s) => Some(s.cached_info().clone()),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                None
            }
            _ => panic!("cannot get stream {name}: {e}"),
        },
    }
}

/// The configuration of stream `name` as the server holds it, `None` when it does not exist.
pub async fn get_stream_config(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> Option<async_nats::jetstream::stream::Config> {
    stream_info(js, name).await.map(|i| i.config)
}

/// Names of every stream JetStream holds, sorted.
pub async fn stream_names(js: &async_nats::jetstream::Context) -> Vec<String> {
    use futures::TryStreamExt as _;
    let mut names: Vec<String> = js
        .stream_names()
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("cannot list stream names: {e}"));
    names.sort();
    names
}

// =======================================================================================
// Consumers, buckets and kubectl tables (helpers of tests/consumers.rs and tests/buckets.rs)
// =======================================================================================

/// The events about the object `name` of `kind` (`Consumer`, `KeyValue`, ...) in `ns`.
pub async fn events_about(
    cp: &ControlPlane,
    ns: &str,
    kind: &str,
    name: &str,
) -> Vec<EventSummary> {
    events_in(cp, ns)
        .await
        .into_iter()
        .filter(|e| e.kind == kind && e.name == name)
        .collect()
}

/// A `jetstream.nats.io/v1beta2` manifest of `kind` called `name`; `spec` is YAML for the
/// spec, unindented (blank lines are dropped).
pub fn manifest(kind: &str, name: &str, spec: &str) -> String {
    let spec: String = spec
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {l}\n"))
        .collect();
    format!("apiVersion: {GROUP}/{VERSION}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// The text of `examples/<file>` of this checkout.
pub fn example(file: &str) -> String {
    let path = repo_root().join("examples").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The info of consumer `name` on stream `stream`, `None` when the consumer or the stream
/// does not exist. Panics on any other error.
pub async fn consumer_info(
    js: &async_nats::jetstream::Context,
    stream: &str,
    name: &str,
) -> Option<async_nats::jetstream::consumer::Info> {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    let s = js
        .get_stream_no_info(stream)
        .await
        .unwrap_or_else(|e| panic!("cannot get stream {stream}: {e}"));
    match s.consumer_info(name).await {
        Ok(i) => Some(i),
        Err(e) => match e.kind() {
            ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound => None,
            _ => panic!("cannot get consumer {name} on stream {stream}: {e}"),
        },
    }
}

/// One table of `kubectl get` output: the header, and each row as column -> cell.
#[derive(Clone, Debug)]
pub struct KubectlTable {
    /// Column names as kubectl prints them (`NAME`, `READY`, `ACK POLICY`, ...).
    pub header: Vec<String>,
    /// One map per row, column name -> cell text (trimmed; "" for an empty cell).
    pub rows: Vec<std::collections::BTreeMap<String, String>>,
}

impl KubectlTable {
    /// The row whose NAME is `name` or ends with `/<name>` (`kind.group/name` form).
    pub fn row(&self, name: &str) -> Option<&std::collections::BTreeMap<String, String>> {
        let suffix = format!("/{name}");
        self.rows.iter().find(|r| {
            r.get("NAME")
                .is_some_and(|n| n == name || n.ends_with(&suffix))
        })
    }
}

/// Parses `kubectl get` output (one or more tables separated by blank lines). Columns are
/// found from the header: names separated by two or more spaces, cells start where their
/// header starts (kubectl pads with at least three spaces, and header names such as
/// `ACK POLICY` contain one).
pub fn parse_kubectl_tables(text: &str) -> Vec<KubectlTable> {
    let mut tables = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else { continue };
        // Column starts: a non-space after the line start or after 2+ spaces.
        let chars: Vec<char> = head.chars().collect();
        let mut starts = Vec::new();
        for i in 0..chars.len() {
            let begins = chars[i] != ' '
                && (i == 0 || (i >= 2 && chars[i - 1] == ' ' && chars[i - 2] == ' '));
            if begins {
                starts.push(i);
            }
        }
        let cell = |line: &[char], k: usize| -> String {
            let from = starts[k].min(line.len());
            let to = starts
                .get(k + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            line[from..to].iter().collect::<String>().trim().to_owned()
        };
        let header: Vec<String> = (0..starts.len()).map(|k| cell(&chars, k)).collect();
        let rows = lines
            .map(|l| {
                let lc: Vec<char> = l.chars().collect();
                header
                    .iter()
                    .enumerate()
                    .map(|(k, h)| (h.clone(), cell(&lc, k)))
                    .collect()
            })
            .collect();
        tables.push(KubectlTable { header, rows });
    }
    tables
}

// =======================================================================================
// Connections and credentials (helpers of tests/connections.rs)
// =======================================================================================

impl Nats {
    /// PID of the running nats-server (from `<dir>/nats.pid`), `None` when it is stopped.
    pub fn pid(&self) -> Option<u32> {
        if !self.running {
            return None;
        }
        std::fs::read_to_string(self.path.join("nats.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Rewrites nats.conf with `edit` (which gets the current text) and makes the running
    /// server reload it (`nats-server --signal reload=<pid>`), waiting until its log says it
    /// did. Panics when the server refuses the new configuration.
    pub async fn edit_config_and_reload(&self, edit: impl FnOnce(&str) -> String) {
        let conf = self.conf_path();
        let text = std::fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
        let edited = edit(&text);
        assert_ne!(edited, text, "the edit did not change {}", conf.display());
        std::fs::write(&conf, edited)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        let reloads = |log: &str| log.matches("Reloaded server configuration").count();
        let before = reloads(&self.log());
        let pid = self.pid().expect("reload of a stopped nats-server");
        let out = tokio::task::spawn_blocking(move || {
            Command::new(tool("nats-server"))
                .arg("--signal")
                .arg(format!("reload={pid}"))
                .stdin(Stdio::null())
                .output()
        })
        .await
        .unwrap_or_else(|e| panic!("reload task failed: {e}"))
        .unwrap_or_else(|e| panic!("cannot run nats-server --signal: {e}"));
        assert!(
            out.status.success(),
            "nats-server --signal reload={pid} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(
            Duration::from_secs(10),
            "nats-server to log that it reloaded its configuration",
            || async {
                let log = self.log();
                if log.contains("Failed to reload server configuration") {
                    panic!("nats-server refused the new configuration:\n{log}");
                }
                (reloads(&log) > before).then_some(())
            },
        )
        .await;
    }
}

/// Creates or replaces (server-side apply, harness field manager) Secret `name` in `ns`
/// with `data` (key, text value).
pub async fn put_secret(cp: &ControlPlane, ns: &str, name: &str, data: &[(&str, &str)]) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    let mut body = serde_json::to_value(&secret)
        .unwrap_or_else(|e| panic!("cannot serialise Secret {ns}/{name}: {e}"));
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    Api::<Secret>::namespaced(cp.client(), ns)
        .patch(
            name,
            &PatchParams::apply("jso-test-harness").force(),
            &Patch::Apply(body),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot apply Secret {ns}/{name}: {e}"));
}

/// Deletes Secret `name` in `ns` (it must exist).
pub async fn delete_secret(cp: &ControlPlane, ns: &str, name: &str) {
    use k8s_openapi::api::core::v1::Secret;
    Api::<Secret>::namespaced(cp.client(), ns)
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot delete Secret {ns}/{name}: {e}"));
}

/// Waits (up to `timeout`) until object `name` exists, its status is for its current
/// generation and `pred` holds; returns it. The panic message names `what` and carries the
/// last status seen.
pub async fn wait_object(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    let pred = &pred;
    let found = poll_until(timeout, || async move {
        let obj = api.get_opt(name).await.ok().flatten()?;
        (status_is_current(&obj) && pred(&obj)).then_some(obj)
    })
    .await;
    match found {
        Some(obj) => obj,
        None => {
            let last = last_seen(api, name).await;
            panic!("timed out after {timeout:?} waiting for {name}: {what}; last seen: {last}")
        }
    }
}

/// Waits until object `name` is `Stalled=True` with one of `reasons` at its current
/// generation; returns it.
pub async fn wait_stalled(
    api: &Api<DynamicObject>,
    name: &str,
    reasons: &[&str],
    timeout: Duration,
) -> DynamicObject {
    wait_object(
        api,
        name,
        &format!("Stalled=True with reason {}", reasons.join(" or ")),
        timeout,
        |o| {
            condition(o, "Stalled")
                .is_some_and(|(s, r, _)| s == "True" && reasons.contains(&r.as_str()))
        },
    )
    .await
}

/// Waits until object `name` no longer exists.
pub async fn wait_gone(api: &Api<DynamicObject>, name: &str, timeout: Duration) {
    let gone = poll_until(timeout, || async move {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
    if gone.is_none() {
        let last = match api.get_opt(name).await {
            Ok(Some(o)) => format!(
                "finalizers={:?} deletionTimestamp={:?} {}",
                o.metadata.finalizers,
                o.metadata.deletion_timestamp,
                status_summary(&o)
            ),
            Ok(None) => "(gone now)".into(),
            Err(e) => format!("(cannot read it: {e})"),
        };
        panic!("timed out after {timeout:?} waiting for {name} to be deleted; last seen: {last}");
    }
}

// =======================================================================================
// Helm chart (helpers of tests/chart.rs)
// =======================================================================================

/// A helper process a test starts itself (e.g. a nats-server on a configuration the chart
/// rendered), with stdout and stderr in `log_path`. Stopped by its PID when dropped or on
/// `stop()` (SIGTERM, SIGKILL after 10 s), and by a watchdog if the test binary dies first.
pub struct Background {
    label: String,
    log_path: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Background {
    /// Spawns `cmd` (stdin closed, output appended to `log_path`). Panics when it cannot
    /// start.
    pub fn spawn(label: &str, mut cmd: Command, log_path: &Path) -> Background {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let pid = child.id().to_string();
        let watchdog = spawn_watchdog(
            "kill -TERM \"$1\" 2>/dev/null; i=0; \
             while kill -0 \"$1\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; \
             kill -KILL \"$1\" 2>/dev/null",
            &[OsStr::new(&pid)],
        );
        Background {
            label: label.to_owned(),
            log_path: log_path.to_owned(),
            child: Some(child),
            watchdog: Some(watchdog),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(exit status)` when the process has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGTERM, then wait (SIGKILL after 10 s). Idempotent.
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c).await;
        }
        kill_watchdog(&mut self.watchdog);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_log(&self.label, &self.log_path);
        }
        if let Some(mut c) = self.child.take() {
            terminate_blocking(&mut c);
        }
        kill_watchdog(&mut self.watchdog);
    }
}

// =======================================================================================
// Namespace deletion (helpers of tests/limits.rs)
// =======================================================================================

/// kube-controller-manager running only its namespace controller against the control
/// plane, so that a deleted namespace is emptied (its objects deleted, their finalizers
/// waited for) and removed, as on a real cluster. Stopped when dropped.
pub struct NamespaceController {
    process: Background,
    _dir: tempfile::TempDir,
}

impl NamespaceController {
    /// Starts it and waits until its namespace informer has synced.
    pub async fn start(cp: &ControlPlane) -> NamespaceController {
        let exe = tool("kube-controller-manager");
        let dir = new_tempdir("jso-kcm-");
        let mut cmd = Command::new(exe);
        cmd.arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .arg("--controllers=namespace")
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .env_remove("KUBECONFIG");
        let process = Background::spawn(
            "kube-controller-manager",
            cmd,
            &dir.path().join("kube-controller-manager.log"),
        );
        let kcm = NamespaceController { process, _dir: dir };
        wait_until(
            Duration::from_secs(60),
            "kube-controller-manager's namespace controller to sync",
            || async {
                let log = kcm.process.log();
                log.lines()
                    .any(|l| {
                        l.contains("Caches are synced") && l.contains("controller=\"namespace\"")
                    })
                    .then_some(())
            },
        )
        .await;
        kcm
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
