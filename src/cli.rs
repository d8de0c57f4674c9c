//! The command line. Every flag of `run` also reads an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::common::DeletionPolicy;
use crate::controller::connect::DefaultConnection;
use crate::controller::context::Settings;
use crate::controller::plan::AdoptionPolicy;
use crate::telemetry::LogFormat;

/// Parses a Go-style duration (`30s`, `1m30s`, `500ms`).
fn duration(s: &str) -> Result<Duration, String> {
    match crate::api::common::parse_duration_nanos(s)? {
        Some(n) if n > 0 => Ok(Duration::from_nanos(n as u64)),
        _ => Err(format!(
            "{s:?} must be a positive duration such as 30s or 1m"
        )),
    }
}

/// Parses a deletion policy as flags spell it.
fn deletion_policy(s: &str) -> Result<DeletionPolicy, String> {
    match s.to_ascii_lowercase().as_str() {
        "delete" => Ok(DeletionPolicy::Delete),
        "orphan" => Ok(DeletionPolicy::Orphan),
        _ => Err(format!("{s:?} must be delete or orphan")),
    }
}

/// The non-empty entries of a list flag.
fn nonempty(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What NACK's `jetstream-controller` flags become. NACK's binary has no subcommands and
/// takes Go-style flags (`-s=URL`, `-crd-connect`, `--tlsca file`); a Deployment made for
/// NACK whose image is swapped for this one runs with those arguments unchanged.
enum NackFlag {
    /// A value flag of ours.
    Value(&'static str),
    /// A boolean flag of ours (given when the Go value is true).
    Switch(&'static str),
    /// A value flag with no counterpart: accepted and ignored, for this reason.
    IgnoredValue(&'static str),
    /// A boolean flag with no counterpart: accepted and ignored, for this reason.
    IgnoredSwitch(&'static str),
}

fn nack_flag(name: &str) -> Option<NackFlag> {
    use NackFlag::*;
    const KLOG: &str =
        "klog flags do not apply: logs go to stderr as --log-format and --log-level say";
    Some(match name {
        "s" => Value("--servers"),
        "creds" => Value("--creds"),
        "nkey" => Value("--nkey"),
        "tlscert" => Value("--tls-cert"),
        "tlskey" => Value("--tls-key"),
        "tlsca" => Value("--tls-ca"),
        "tlsfirst" => Switch("--tls-first"),
        "namespace" => Value("--namespace"),
        "read-only" => Switch("--read-only"),
        "sync-interval" => Value("--resync-interval"),
        "health-probe-bind-address" => Value("--admin-address"),
        "kubeconfig" => Value("--kubeconfig"),
        "v" => Value("--klog-verbosity"),
        "control-loop" => IgnoredSwitch(
            "objects are always reconciled continuously (NACK's control-loop behaviour)",
        ),
        "crd-connect" => {
            IgnoredSwitch("the connection fields of objects and their Accounts are always honoured")
        }
        "cache-dir" => {
            IgnoredValue("Account credentials are held in memory and never written to disk")
        }
        "cleanup-period" => IgnoredValue("deletions go through finalizers, not a cleanup loop"),
        "logtostderr"
        | "alsologtostderr"
        | "add_dir_header"
        | "skip_headers"
        | "skip_log_headers"
        | "one_output"
        | "legacy_stderr_threshold_behavior" => IgnoredSwitch(KLOG),
        "stderrthreshold" | "vmodule" | "log_dir" | "log_file" | "log_file_max_size"
        | "log_backtrace_at" => IgnoredValue(KLOG),
        _ => return None,
    })
}

/// Go's boolean flag values.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The command line to parse: our own as given, or — when the first argument is a flag
/// rather than a subcommand, as NACK's `jetstream-controller` is invoked — NACK's flags
/// translated to `run`. Returns the arguments and one note per NACK flag that was
/// accepted but has no effect here, to be logged once logging is set up.
pub fn translate_nack_args(args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let nack_style = args.get(1).is_some_and(|a| {
        a.starts_with('-') && !matches!(a.as_str(), "-h" | "--help" | "-V" | "--version")
    });
    if !nack_style {
        return (args, Vec::new());
    }
    let mut out = vec![
        args.first()
            .cloned()
            .unwrap_or_else(|| "jetstream-operator".into()),
        "run".to_string(),
    ];
    let mut notes = Vec::new();
    let mut rest = args.into_iter().skip(1);
    while let Some(arg) = rest.next() {
        let bare = arg.trim_start_matches('-');
        let (name, inline) = match bare.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (bare, None),
        };
        match nack_flag(name) {
            Some(NackFlag::Value(ours)) => {
                let Some(value) = inline.or_else(|| rest.next()) else {
                    out.push(ours.to_string());
                    continue;
                };
                let value = match ours {
                    // Go's `:8081` listens on every address.
                    "--admin-address" if value.starts_with(':') => format!("0.0.0.0{value}"),
                    _ => value,
                };
                out.push(format!("{ours}={value}"));
            }
            Some(NackFlag::Switch(ours)) => {
                if inline.as_deref().map(go_bool).unwrap_or(Some(true)) == Some(true) {
                    out.push(ours.to_string());
                }
            }
            Some(NackFlag::IgnoredValue(why)) => {
                if inline.is_none() {
                    rest.next();
                }
                notes.push(format!("NACK flag -{name} ignored: {why}"));
            }
            Some(NackFlag::IgnoredSwitch(why)) => {
                notes.push(format!("NACK flag -{name} ignored: {why}"));
            }
            // Our own flags work in NACK's style too.
            None => out.push(match inline {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            }),
        }
    }
    (out, notes)
}

/// jetstream-operator: NATS JetStream streams, consumers, key-value buckets and object
/// stores as Kubernetes resources.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers against the cluster in KUBECONFIG (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print every CRD as YAML (apply with `kubectl apply --server-side -f -`).
    Crd,
    /// List the streams JetStream holds, as the server reports them (name, subjects,
    /// storage, retention, messages, owning object).
    Streams(Box<ConnArgs>),
}

/// Connection flags: the operator's default NATS connection.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Default NATS server URLs (comma-separated or repeated), used by objects that set
    /// neither an Account nor spec.servers.
    #[arg(short = 's', long = "servers", env = "NATS_URL", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Default credentials (.creds) file.
    #[arg(long, env = "NATS_CREDS")]
    pub creds: Option<String>,
    /// Default NKey seed file.
    #[arg(long, env = "NATS_NKEY")]
    pub nkey: Option<String>,
    /// Default token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Default user name.
    #[arg(long, env = "NATS_USER")]
    pub user: Option<String>,
    /// Default password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// File holding the default token (read at every connection, so a rotated file is
    /// picked up); wins over --token.
    #[arg(long = "token-file", env = "NATS_TOKEN_FILE")]
    pub token_file: Option<String>,
    /// File holding the default password (read at every connection); wins over
    /// --password.
    #[arg(long = "password-file", env = "NATS_PASSWORD_FILE")]
    pub password_file: Option<String>,
    /// CA certificate file that verifies the servers.
    #[arg(long = "tls-ca", alias = "tlsca", env = "NATS_TLS_CA")]
    pub tls_ca: Option<String>,
    /// Client certificate file (mutual TLS).
    #[arg(long = "tls-cert", alias = "tlscert", env = "NATS_TLS_CERT")]
    pub tls_cert: Option<String>,
    /// Client key file (mutual TLS).
    #[arg(long = "tls-key", alias = "tlskey", env = "NATS_TLS_KEY")]
    pub tls_key: Option<String>,
    /// Start TLS before the NATS handshake.
    #[arg(long = "tls-first", alias = "tlsfirst", env = "NATS_TLS_FIRST")]
    pub tls_first: bool,
    /// Default JetStream domain.
    #[arg(long = "js-domain", env = "NATS_JS_DOMAIN")]
    pub js_domain: Option<String>,
    /// Default JetStream API prefix (for JetStream imported from another account).
    #[arg(long = "js-api-prefix", env = "NATS_JS_API_PREFIX")]
    pub js_api_prefix: Option<String>,
}

impl ConnArgs {
    /// The default connection these flags describe.
    pub fn default_connection(&self) -> DefaultConnection {
        DefaultConnection {
            servers: self.servers.clone(),
            creds: self.creds.clone(),
            nkey: self.nkey.clone(),
            token: self.token.clone(),
            token_file: self.token_file.clone(),
            password_file: self.password_file.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_first: self.tls_first,
            js_domain: self.js_domain.clone(),
            api_prefix: self.js_api_prefix.clone(),
        }
    }
}

/// Flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The default NATS connection.
    #[command(flatten)]
    pub conn: ConnArgs,

    /// Namespaces to watch (comma-separated or repeated); default: all.
    #[arg(long = "namespace", env = "JSO_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// How often every asset is checked for drift (with ±10% jitter).
    #[arg(long = "resync-interval", env = "JSO_RESYNC_INTERVAL", default_value = "60s", value_parser = duration)]
    pub resync: Duration,
    /// Concurrent reconciles per kind and namespace.
    #[arg(long, env = "JSO_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// What to do with an existing asset that no object owns.
    #[arg(
        long = "adoption-policy",
        env = "JSO_ADOPTION_POLICY",
        value_enum,
        default_value = "adopt"
    )]
    pub adoption: AdoptionPolicy,
    /// Namespaces whose objects may adopt existing unowned assets (comma-separated or
    /// repeated; default: all). Elsewhere an existing unowned asset is a ResourceConflict.
    #[arg(
        long = "adoption-namespaces",
        env = "JSO_ADOPTION_NAMESPACES",
        value_delimiter = ','
    )]
    pub adoption_namespaces: Vec<String>,
    /// What deleting an object does to an asset it adopted when its spec sets no
    /// deletionPolicy: `orphan` keeps it (unowned), `delete` deletes it (NACK's behaviour).
    #[arg(
        long = "adopted-deletion-policy",
        env = "JSO_ADOPTED_DELETION_POLICY",
        default_value = "orphan",
        value_parser = deletion_policy
    )]
    pub adopted_deletion_policy: DeletionPolicy,
    /// Namespaces whose objects may use the operator's own connection (the flags above:
    /// servers and credentials); comma-separated or repeated, default: all. Objects in
    /// other namespaces must name an Account.
    #[arg(
        long = "default-connection-namespaces",
        env = "JSO_DEFAULT_CONNECTION_NAMESPACES",
        value_delimiter = ','
    )]
    pub default_connection_namespaces: Vec<String>,
    /// Directories under which file paths written in specs (creds, nkey, tls on objects;
    /// file-based credentials of Accounts) may be read (comma-separated or repeated).
    /// Default: none, so specs cannot name files of the operator's pod; Secrets, through
    /// Accounts, are the supported way.
    #[arg(
        long = "credentials-dir",
        env = "JSO_CREDENTIALS_DIRS",
        value_delimiter = ','
    )]
    pub credentials_dirs: Vec<std::path::PathBuf>,
    /// Change nothing in JetStream; report what would change.
    #[arg(long = "read-only", env = "JSO_READ_ONLY")]
    pub read_only: bool,
    /// Name of this Kubernetes cluster, stamped into the ownership marker of assets, so
    /// that several clusters can share one NATS system.
    #[arg(long = "cluster-name", env = "JSO_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Timeout of one JetStream API request.
    #[arg(long = "request-timeout", env = "JSO_REQUEST_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
    /// How long deleting an object retries an unreachable NATS before releasing the
    /// object with a Warning event (so namespaces never wedge).
    #[arg(long = "deletion-grace", env = "JSO_DELETION_GRACE", default_value = "5m", value_parser = duration)]
    pub deletion_grace: Duration,
    /// Maximum open NATS connections.
    #[arg(
        long = "max-connections",
        env = "JSO_MAX_CONNECTIONS",
        default_value_t = 64
    )]
    pub max_connections: usize,
    /// Address of the HTTP server for /livez, /readyz and /metrics.
    #[arg(
        long = "admin-address",
        env = "JSO_ADMIN_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_address: SocketAddr,
    /// Log format.
    #[arg(
        long = "log-format",
        env = "JSO_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `info,jetstream_operator=debug`);
    /// RUST_LOG is used when this is not set.
    #[arg(long = "log-level", env = "JSO_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// NACK's klog verbosity (`-v=N`), used when --log-level is not set: 0-3 info, 4-5
    /// debug, 6 and more trace.
    #[arg(long = "klog-verbosity", hide = true)]
    pub klog_verbosity: Option<u8>,
    /// Kubeconfig file (default: KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Name of this pod (events name it as the reporting instance; leader identity).
    #[arg(long = "pod-name", env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Elect a leader through a Lease, so that several replicas can run and only one
    /// writes. Needed whenever more than one replica runs.
    #[arg(long = "leader-election", env = "JSO_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long = "leader-election-namespace", env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(
        long = "leader-election-lease",
        env = "JSO_LEADER_ELECTION_LEASE",
        default_value = "jetstream-operator"
    )]
    pub leader_election_lease: String,
    /// How long a leader's Lease lasts without renewal (at least 2s): a crashed leader is
    /// replaced within this time. The leader renews every quarter of it and stops writing
    /// when three quarters pass without a successful renewal.
    #[arg(long = "leader-election-duration", env = "JSO_LEADER_ELECTION_DURATION", default_value = "4s", value_parser = duration)]
    pub leader_election_duration: Duration,
}

impl RunArgs {
    /// The log filter: --log-level, else NACK's -v, else none (RUST_LOG or info).
    pub fn log_filter(&self) -> Option<String> {
        self.log_level.clone().or_else(|| {
            self.klog_verbosity.map(|v| {
                match v {
                    0..=3 => "info",
                    4..=5 => "info,jetstream_operator=debug",
                    _ => "info,jetstream_operator=trace",
                }
                .to_string()
            })
        })
    }

    /// Controller settings from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            resync: self.resync,
            concurrency: self.concurrency.max(1),
            adoption: self.adoption,
            adoption_namespaces: nonempty(&self.adoption_namespaces),
            adopted_deletion_policy: self.adopted_deletion_policy,
            default_connection_namespaces: nonempty(&self.default_connection_namespaces),
            credentials_dirs: self
                .credentials_dirs
                .iter()
                .filter(|d| !d.as_os_str().is_empty())
                .cloned()
                .collect(),
            read_only: self.read_only,
            cluster_name: self.cluster_name.clone().filter(|c| !c.is_empty()),
            request_timeout: self.request_timeout,
            namespaces: self
                .namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
            default_connection: self.conn.default_connection(),
            deletion_grace: self.deletion_grace,
            max_connections: self.max_connections.max(1),
            instance: self.pod_name.clone(),
        }
    }
}

impl RunArgs {
    /// Leader election settings, when enabled.
    pub fn leader_election(&self) -> Option<crate::controller::runner::LeaderElection> {
        if !self.leader_election {
            return None;
        }
        let identity = self
            .pod_name
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "jetstream-operator".into());
                format!("{host}-{}", std::process::id())
            });
        Some(crate::controller::runner::LeaderElection {
            namespace: self
                .leader_election_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            lease_name: self.leader_election_lease.clone(),
            identity,
            duration: self.leader_election_duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nack_style_flags() {
        let cli = Cli::try_parse_from([
            "jetstream-operator",
            "run",
            "-s",
            "nats://a:4222,nats://b:4222",
            "--tlsca",
            "/ca.pem",
            "--namespace",
            "a",
            "--namespace",
            "b",
            "--resync-interval",
            "5s",
            "--read-only",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let s = args.settings();
        assert_eq!(s.default_connection.servers.len(), 2);
        assert_eq!(s.default_connection.tls_ca.as_deref(), Some("/ca.pem"));
        assert_eq!(s.namespaces, vec!["a", "b"]);
        assert_eq!(s.resync, Duration::from_secs(5));
        assert!(s.read_only);
    }

    #[test]
    fn nack_chart_arguments_run_the_controller() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // What NACK's chart renders with jetstream.nats.url, TLS, controlLoop, readOnly, klog.
        let (args, notes) = translate_nack_args(argv(&[
            "/jetstream-controller",
            "-v=2",
            "-s=nats://nats:4222",
            "--creds=/etc/jsc-creds/sys.creds",
            "--namespace=apps",
            "--tlscert=/etc/nats/certs/tls.crt",
            "--tlskey=/etc/nats/certs/tls.key",
            "--tlsca=/etc/nats/certs/ca.crt",
            "--tlsfirst=true",
            "--health-probe-bind-address=:8081",
            "--control-loop",
            "--sync-interval",
            "30s",
            "--cache-dir=/nack/cache",
            "--read-only=false",
            "-crd-connect",
        ]));
        assert_eq!(notes.len(), 3, "{notes:?}");
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let s = run.settings();
        assert_eq!(s.default_connection.servers, vec!["nats://nats:4222"]);
        assert_eq!(
            s.default_connection.tls_ca.as_deref(),
            Some("/etc/nats/certs/ca.crt")
        );
        assert!(s.default_connection.tls_first);
        assert_eq!(s.namespaces, vec!["apps"]);
        assert_eq!(s.resync, Duration::from_secs(30));
        assert!(!s.read_only);
        assert_eq!(run.admin_address.to_string(), "0.0.0.0:8081");
        assert_eq!(run.log_filter().as_deref(), Some("info"));
        // The chart's default: no URL, so `-crd-connect` alone.
        let (args, notes) = translate_nack_args(argv(&["/jetstream-controller", "-crd-connect"]));
        assert_eq!(args, ["/jetstream-controller", "run"]);
        assert_eq!(notes.len(), 1);
        assert!(Cli::try_parse_from(&args).is_ok());
        // Our own command lines are left alone.
        let ours = argv(&["jetstream-operator", "run", "-s", "nats://x:4222"]);
        assert_eq!(translate_nack_args(ours.clone()).0, ours);
        assert_eq!(
            translate_nack_args(argv(&["x", "--version"])).0,
            ["x", "--version"]
        );
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(
            Cli::try_parse_from(["jetstream-operator", "run", "--resync-interval", "1d"]).is_err()
        );
    }
}
