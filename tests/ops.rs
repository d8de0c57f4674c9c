//! Operating the operator: leader election (one writer at a time, failover after a crash
//! and after a graceful stop), the metrics moving with the work, graceful shutdown, and the
//! events of each transition. End to end on a real kube-apiserver + etcd, a nats-server
//! per test and the operator binary (two of them for leader election).
mod support;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use kube::Api;
use kube::api::DynamicObject;
use support::*;

/// The resync interval every operator of this file runs with.
const RESYNC: Duration = Duration::from_secs(3);
/// The longest a failover after a crash may take (the Lease lasts 4 s by default).
const FAILOVER_LIMIT: Duration = Duration::from_secs(5);
/// The longest a hand-over after a graceful stop may take: the Lease is released and the
/// follower watches it, so nothing is waited out.
const GRACEFUL_LIMIT: Duration = Duration::from_secs(3);
/// How long a SIGTERMed operator may take to exit ("within a few seconds").
const EXIT_LIMIT: Duration = Duration::from_secs(5);
/// Polling interval where a delay is measured.
const MEASURE_POLL: Duration = Duration::from_millis(50);
/// Polling interval of the leader-election monitor.
const MONITOR_POLL: Duration = Duration::from_millis(200);

const LEADER: &str = "jetstream_operator_leader";
const KUBE_WRITES: &str = "jetstream_operator_kubernetes_writes_total";
const JS_REQUESTS: &str = "jetstream_operator_jetstream_requests_total";
const RECONCILES: &str = "jetstream_operator_reconciles_total";
const READY_OBJECTS: &str = "jetstream_operator_ready_objects";

// ---------------------------------------------------------------------------------------
// Helpers

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn now_stamp() -> String {
    jiff::Timestamp::now().to_string()
}

/// Two distinct free loopback addresses for admin servers.
fn two_admin_addresses() -> [String; 2] {
    let a = free_port();
    let mut b = free_port();
    while b == a {
        b = free_port();
    }
    [format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}")]
}

/// Waits until the operator process has exited (after a signal this test sent) and returns
/// its exit status.
async fn wait_exit(op: &mut Operator, what: &str, timeout: Duration) -> ExitStatus {
    wait_until_every(timeout, Duration::from_millis(20), what, || {
        let r = op.exited();
        async move { r }
    })
    .await
}

/// SIGTERM, then the exit status and how long the process took to exit.
async fn sigterm_and_wait(op: &mut Operator, what: &str) -> (ExitStatus, Duration) {
    let pid = op.pid().expect("the operator is not running");
    let t0 = Instant::now();
    send_signal(pid, "TERM");
    let status = wait_exit(op, what, Duration::from_secs(15)).await;
    (status, t0.elapsed())
}

/// `/metrics` of an operator, `None` when it does not answer.
async fn scrape(addr: &str) -> Option<String> {
    match http_get(addr, "/metrics").await {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// Waits until the admin server at `addr` answers `/metrics`.
async fn wait_admin(addr: &str) {
    wait_until(
        WAIT,
        &format!("the admin server at {addr} to answer"),
        || async { scrape(addr).await.map(|_| ()) },
    )
    .await;
}

/// Starts replicas `ids` of the operator under leader election in `ns` (Lease in `ns`),
/// with resync interval `resync` and `extra` flags.
async fn start_elected(
    cp: &ControlPlane,
    nats: &Nats,
    ns: &str,
    addrs: &[String; 2],
    ids: [&str; 2],
    resync: &str,
    extra: &[&str],
) -> [Operator; 2] {
    let args = |i: usize| -> Vec<&str> {
        let mut a = vec![
            "--servers",
            nats.url(),
            "--namespace",
            ns,
            "--resync-interval",
            resync,
            "--leader-election",
            "--leader-election-namespace",
            ns,
            "--pod-name",
            ids[i],
            "--admin-address",
            addrs[i].as_str(),
        ];
        a.extend_from_slice(extra);
        a
    };
    [
        Operator::start(cp, &args(0)).await,
        Operator::start(cp, &args(1)).await,
    ]
}

/// Every sample of metric `name`: its labels and value.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    all_samples(text)
        .into_iter()
        .filter(|(n, ..)| n == name)
        .map(|(_, l, v)| (l, v))
        .collect()
}

/// Every sample line of a Prometheus text exposition: (name, labels, value).
fn all_samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                })
                .collect();
            Some((name.to_owned(), labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// A Stream manifest whose object and JetStream stream are both called `name`.
fn stream_yaml(name: &str, spec: &str) -> String {
    manifest("Stream", name, &format!("name: {name}\n{spec}"))
}

fn apply(cp: &ControlPlane, ns: &str, yaml: &str) {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed ({}):\nstderr: {}\nmanifest:\n{yaml}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn annotate_reconcile(cp: &ControlPlane, ns: &str, what: &str) {
    kubectl_ok(
        cp,
        &[
            "annotate",
            "--overwrite",
            what,
            "-n",
            ns,
            &format!("jetstream.nats.io/reconcile-requested-at={}", now_stamp()),
        ],
    );
}

/// Waits until Stream `name` is Ready at generation `generation`.
async fn wait_ready_at(api: &Api<DynamicObject>, name: &str, generation: i64) -> DynamicObject {
    wait_object(
        api,
        name,
        &format!("Ready=True at generation {generation}"),
        WAIT,
        |o| {
            o.metadata.generation == Some(generation)
                && condition(o, "Ready").is_some_and(|c| c.0 == "True")
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Leader election monitor: polls both replicas' /metrics every 200 ms on a thread of its
// own (independent of the test's runtime) and records every violation of "one writer".

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    leader: f64,
    writes: f64,
    js: f64,
}

fn sample_blocking(addr: &str) -> Option<Sample> {
    match http_get_blocking(addr, "/metrics") {
        Ok((200, m)) => Some(Sample {
            leader: metric_value(&m, LEADER, &[]),
            writes: metric_value(&m, KUBE_WRITES, &[]),
            js: metric_value(&m, JS_REQUESTS, &[]),
        }),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct MonitorReport {
    /// Polling rounds (each reads both replicas twice: A, B, A, B).
    rounds: usize,
    /// Longest time between the starts of two rounds.
    max_gap: Duration,
    /// Both leaders at once (a replica reported 1 before and after the other did), or a
    /// replica that never led reporting writes.
    violations: Vec<String>,
    /// Rounds in which both reported 1 in some order but not provably at the same time.
    near_overlaps: Vec<String>,
    /// Rounds in which each replica reported leader 1.
    leader_rounds: [usize; 2],
}

struct Monitor {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<MonitorReport>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(labels: [&str; 2], addrs: [String; 2]) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(MonitorReport::default()));
        let labels = labels.map(str::to_owned);
        let thread = {
            let (stop, report) = (stop.clone(), report.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                // Per replica: has it reported leader 1 since it last (re)started?
                let mut has_led = [false, false];
                let mut last_round: Option<Instant> = None;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let at = ms(t0.elapsed());
                    let order = [0usize, 1, 0, 1];
                    let got: Vec<Option<Sample>> =
                        order.iter().map(|&i| sample_blocking(&addrs[i])).collect();
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    r.rounds += 1;
                    if let Some(prev) = last_round {
                        r.max_gap = r.max_gap.max(started - prev);
                    }
                    last_round = Some(started);
                    let lead = |k: usize| got[k].is_some_and(|s| s.leader == 1.0);
                    // A, B, A or B, A, B all leading: both led at the middle reading.
                    if (lead(0) && lead(1) && lead(2)) || (lead(1) && lead(2) && lead(3)) {
                        r.violations.push(format!(
                            "t={at}ms: both replicas report leader 1 at the same time: {got:?}"
                        ));
                    } else if (lead(0) || lead(2)) && (lead(1) || lead(3)) {
                        r.near_overlaps.push(format!("t={at}ms: {got:?}"));
                    }
                    let mut led_this_round = [false, false];
                    for (k, &i) in order.iter().enumerate() {
                        match got[k] {
                            None => has_led[i] = false,
                            Some(s) if s.leader == 1.0 => {
                                has_led[i] = true;
                                led_this_round[i] = true;
                            }
                            Some(s) => {
                                if !has_led[i] && (s.writes != 0.0 || s.js != 0.0) {
                                    r.violations.push(format!(
                                        "t={at}ms: {} has never led but reports {} Kubernetes writes and {} JetStream requests",
                                        labels[i], s.writes, s.js
                                    ));
                                }
                            }
                        }
                    }
                    for (rounds, led) in r.leader_rounds.iter_mut().zip(led_this_round) {
                        if led {
                            *rounds += 1;
                        }
                    }
                    drop(r);
                    std::thread::sleep(MONITOR_POLL.saturating_sub(started.elapsed()));
                }
            })
        };
        Monitor {
            stop,
            report,
            thread: Some(thread),
        }
    }

    fn violations(&self) -> Vec<String> {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .violations
            .clone()
    }

    fn finish(mut self) -> MonitorReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.report.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The leader state of both replicas: `Some(i)` when exactly replica `i` reports leader 1,
/// the other answers with 0, and the Lease names `i`.
async fn sole_leader(
    cp: &ControlPlane,
    ns: &str,
    addrs: &[String; 2],
    ids: [&str; 2],
) -> Option<usize> {
    let a = leader_gauge(&addrs[0]).await?;
    let b = leader_gauge(&addrs[1]).await?;
    let i = if a == 1.0 && b == 0.0 {
        0
    } else if a == 0.0 && b == 1.0 {
        1
    } else {
        return None;
    };
    (lease_holder(cp, ns).await.as_deref() == Some(ids[i])).then_some(i)
}

async fn leader_gauge(addr: &str) -> Option<f64> {
    scrape(addr).await.map(|m| metric_value(&m, LEADER, &[]))
}

/// Waits until replica `addr` reports leader 1 and the Lease names `id`; returns how long
/// that took from `since`.
async fn wait_takeover(
    cp: &ControlPlane,
    ns: &str,
    addr: &str,
    id: &str,
    since: Instant,
) -> Duration {
    wait_until_every(
        FAILOVER_LIMIT + Duration::from_secs(15),
        MEASURE_POLL,
        &format!("{id} to report leader 1 and hold the Lease"),
        || async {
            (leader_gauge(addr).await? == 1.0 && lease_holder(cp, ns).await.as_deref() == Some(id))
                .then(|| since.elapsed())
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_single_writer_and_failover() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("ha").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let api = dyn_api(cp, ns.name(), "streams");
    let addrs = two_admin_addresses();
    let ids = ["op-a", "op-b"];
    let mut ops = start_elected(cp, &nats, ns.name(), &addrs, ids, "3s", &[]).await;
    let monitor = Monitor::start(ids, addrs.clone());

    // Exactly one leader, named by the Lease; both ready.
    let t0 = Instant::now();
    let leader = wait_until(WAIT, "exactly one leader that holds the Lease", || {
        sole_leader(cp, ns.name(), &addrs, ids)
    })
    .await;
    let follower = 1 - leader;
    eprintln!(
        "HA {} leads ({} ms after start), {} follows",
        ids[leader],
        ms(t0.elapsed()),
        ids[follower]
    );
    wait_until(WAIT, "both replicas' /readyz to answer 200", || async {
        (readyz(&addrs[0]).await == Some(200) && readyz(&addrs[1]).await == Some(200)).then_some(())
    })
    .await;

    // Streams: reconciled by the leader only.
    let names = ["ha-1", "ha-2", "ha-3"];
    for n in names {
        apply(
            cp,
            ns.name(),
            &stream_yaml(n, &format!("subjects: [\"{n}.>\"]\nmaxAge: 1h")),
        );
    }
    for n in names {
        wait_ready(&api, n).await;
    }
    assert_eq!(stream_names(&js).await, names.to_vec());
    let lm = metrics(&addrs[leader]).await;
    let fm = metrics(&addrs[follower]).await;
    eprintln!(
        "HA leader: kube writes {} JetStream requests {}; follower: {} / {}",
        metric_value(&lm, KUBE_WRITES, &[]),
        metric_value(&lm, JS_REQUESTS, &[]),
        metric_value(&fm, KUBE_WRITES, &[]),
        metric_value(&fm, JS_REQUESTS, &[])
    );
    assert!(
        metric_value(&lm, KUBE_WRITES, &[]) > 0.0 && metric_value(&lm, JS_REQUESTS, &[]) > 0.0,
        "the leader's counters did not move (is the monitor reading the right series?)"
    );
    assert_eq!(
        metric_value(&fm, KUBE_WRITES, &[]),
        0.0,
        "the follower wrote to Kubernetes"
    );
    assert_eq!(
        metric_value(&fm, JS_REQUESTS, &[]),
        0.0,
        "the follower talked to JetStream"
    );
    assert_eq!(metric_value(&fm, LEADER, &[]), 0.0);
    let v = monitor.violations();
    assert!(
        v.is_empty(),
        "one writer at a time violated:\n{}",
        v.join("\n")
    );

    // The leader crashes (SIGKILL): the follower takes over within the Lease duration.
    let pid = ops[leader].pid().expect("leader pid");
    let killed = Instant::now();
    send_signal(pid, "KILL");
    wait_exit(
        &mut ops[leader],
        "the killed leader to exit",
        Duration::from_secs(10),
    )
    .await;
    let failover = wait_takeover(cp, ns.name(), &addrs[follower], ids[follower], killed).await;
    println!("FAILOVER ms={}", ms(failover));
    eprintln!("FAILOVER ms={} (SIGKILL of {})", ms(failover), ids[leader]);
    assert!(
        failover < FAILOVER_LIMIT,
        "failover after SIGKILL took {failover:?} (limit {FAILOVER_LIMIT:?})"
    );

    // The new leader applies a spec change.
    apply(
        cp,
        ns.name(),
        &stream_yaml("ha-1", "subjects: [\"ha-1.>\"]\nmaxAge: 2h"),
    );
    wait_until(WAIT, "max_age of ha-1 to become 2h", || async {
        let c = get_stream_config(&js, "ha-1").await?;
        (c.max_age == Duration::from_secs(7200)).then_some(())
    })
    .await;
    let obj = wait_ready_at(&api, "ha-1", 2).await;
    assert_eq!(observed_generation(&obj), Some(2));

    // The crashed replica comes back as a follower.
    let (new_follower, new_leader) = (leader, follower);
    ops[new_follower].restart().await;
    wait_until(
        WAIT,
        "the restarted replica to be ready as a follower",
        || async {
            (readyz(&addrs[new_follower]).await == Some(200)
                && leader_gauge(&addrs[new_follower]).await == Some(0.0))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        lease_holder(cp, ns.name()).await.as_deref(),
        Some(ids[new_leader])
    );

    // Graceful: SIGTERM to the leader; it releases the Lease and the other takes over.
    // Polled together: when the process exits, when the Lease is released, when the other
    // replica leads.
    let pid = ops[new_leader].pid().expect("leader pid");
    let stopped = Instant::now();
    send_signal(pid, "TERM");
    let released_at: Cell<Option<Duration>> = Cell::new(None);
    let takeover_at: Cell<Option<Duration>> = Cell::new(None);
    let mut exit: Option<(ExitStatus, Duration)> = None;
    let (status, exit_took) = wait_until_every(
        FAILOVER_LIMIT + Duration::from_secs(15),
        MEASURE_POLL,
        &format!(
            "{} to exit and {} to take over",
            ids[new_leader], ids[new_follower]
        ),
        || {
            if exit.is_none()
                && let Some(s) = ops[new_leader].exited()
            {
                exit = Some((s, stopped.elapsed()));
            }
            let exited = exit;
            let (released_at, takeover_at) = (&released_at, &takeover_at);
            let addr = &addrs[new_follower];
            let id = ids[new_follower];
            let ns = ns.name();
            async move {
                let holder = lease_holder(cp, ns).await;
                if holder.is_none() && released_at.get().is_none() {
                    released_at.set(Some(stopped.elapsed()));
                }
                if takeover_at.get().is_none()
                    && holder.as_deref() == Some(id)
                    && leader_gauge(addr).await == Some(1.0)
                {
                    takeover_at.set(Some(stopped.elapsed()));
                }
                takeover_at.get().and(exited)
            }
        },
    )
    .await;
    let graceful = takeover_at.get().expect("takeover time");
    println!("GRACEFUL-FAILOVER ms={}", ms(graceful));
    eprintln!(
        "GRACEFUL-FAILOVER ms={} (SIGTERM of {}: it exited with {status} after {} ms, the Lease was released after {:?} ms); FAILOVER after SIGKILL was {} ms",
        ms(graceful),
        ids[new_leader],
        ms(exit_took),
        released_at.get().map(ms),
        ms(failover)
    );
    assert!(
        status.success(),
        "the SIGTERMed leader exited with {status}"
    );
    assert!(
        graceful < FAILOVER_LIMIT,
        "failover after SIGTERM took {graceful:?} (limit {FAILOVER_LIMIT:?})"
    );
    let mut problems = Vec::new();
    if graceful >= GRACEFUL_LIMIT {
        problems.push(format!(
            "graceful hand-over took {} ms although the Lease was released {:?} ms after SIGTERM: \
             the follower waits out the released Lease's old expiry (limit {} ms; SIGKILL failover took {} ms)",
            ms(graceful),
            released_at.get().map(ms),
            ms(GRACEFUL_LIMIT),
            ms(failover)
        ));
    }

    // The third leader applies a spec change too.
    apply(
        cp,
        ns.name(),
        &stream_yaml("ha-2", "subjects: [\"ha-2.>\"]\nmaxAge: 3h"),
    );
    wait_until(WAIT, "max_age of ha-2 to become 3h", || async {
        let c = get_stream_config(&js, "ha-2").await?;
        (c.max_age == Duration::from_secs(3 * 3600)).then_some(())
    })
    .await;
    wait_ready_at(&api, "ha-2", 2).await;

    let report = monitor.finish();
    eprintln!(
        "HA monitor: {} rounds, longest gap {} ms, rounds with leader 1: {}={} {}={}",
        report.rounds,
        ms(report.max_gap),
        ids[0],
        report.leader_rounds[0],
        ids[1],
        report.leader_rounds[1]
    );
    for n in &report.near_overlaps {
        eprintln!(
            "HA monitor: both reported leader 1 within one round (not provably at once): {n}"
        );
    }
    assert!(
        report.violations.is_empty(),
        "one writer at a time violated:\n{}",
        report.violations.join("\n")
    );
    assert!(report.rounds > 20, "the monitor barely ran: {report:?}");
    assert!(
        report.max_gap < Duration::from_secs(2),
        "the monitor paused for {:?}",
        report.max_gap
    );
    assert!(report.leader_rounds.iter().all(|&n| n > 0), "{report:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The leader SIGKILLed again and again (`JSO_FAILOVER_KILLS` times, default 5): each time
/// the other replica leads within the limit, the killed one comes back as a follower, and
/// the monitor never sees two writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_after_repeated_sigkills() {
    let kills: usize = std::env::var("JSO_FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("failover").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let api = dyn_api(cp, ns.name(), "streams");
    let addrs = two_admin_addresses();
    let ids = ["op-a", "op-b"];
    let mut ops = start_elected(cp, &nats, ns.name(), &addrs, ids, "3s", &[]).await;
    let monitor = Monitor::start(ids, addrs.clone());
    apply(
        cp,
        ns.name(),
        &stream_yaml("fo", "subjects: [\"fo.>\"]\nmaxAge: 1h"),
    );
    wait_ready(&api, "fo").await;

    let mut took = Vec::new();
    for round in 0..kills {
        let leader = wait_until(WAIT, "exactly one leader that holds the Lease", || {
            sole_leader(cp, ns.name(), &addrs, ids)
        })
        .await;
        let follower = 1 - leader;
        wait_until(WAIT, "the follower's /readyz to answer 200", || async {
            (readyz(&addrs[follower]).await == Some(200)).then_some(())
        })
        .await;
        let pid = ops[leader].pid().expect("leader pid");
        let killed = Instant::now();
        send_signal(pid, "KILL");
        let failover = wait_takeover(cp, ns.name(), &addrs[follower], ids[follower], killed).await;
        eprintln!(
            "FAILOVER round {round}: {} ms (SIGKILL of {})",
            ms(failover),
            ids[leader]
        );
        took.push(failover);
        wait_exit(
            &mut ops[leader],
            "the killed leader to exit",
            Duration::from_secs(10),
        )
        .await;
        ops[leader].restart().await;
    }
    // The last leader still does the work.
    apply(
        cp,
        ns.name(),
        &stream_yaml("fo", "subjects: [\"fo.>\"]\nmaxAge: 2h"),
    );
    wait_until(WAIT, "max_age of fo to become 2h", || async {
        let c = get_stream_config(&js, "fo").await?;
        (c.max_age == Duration::from_secs(7200)).then_some(())
    })
    .await;
    wait_ready_at(&api, "fo", 2).await;

    let report = monitor.finish();
    took.sort();
    let p50 = took[took.len() / 2];
    let max = took[took.len() - 1];
    println!(
        "FAILOVER kills={kills} p50_ms={} max_ms={}",
        ms(p50),
        ms(max)
    );
    eprintln!(
        "FAILOVER over {kills} SIGKILLs: p50 {} ms, max {} ms (all: {:?} ms)",
        ms(p50),
        ms(max),
        took.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    assert!(
        report.violations.is_empty(),
        "one writer at a time violated:\n{}",
        report.violations.join("\n")
    );
    assert!(
        max < FAILOVER_LIMIT,
        "failover after SIGKILL took up to {max:?} (limit {FAILOVER_LIMIT:?}; all {took:?})"
    );
}

/// A leader frozen (SIGSTOP) past its Lease: the other replica takes over and changes a
/// stream; when the frozen one resumes, with the old spec in its cache and a drift scan
/// due, it writes nothing (its writes are fenced: the stream keeps the new leader's
/// change) and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_fenced() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("fenced").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let api = dyn_api(cp, ns.name(), "streams");
    let addrs = two_admin_addresses();
    let ids = ["op-a", "op-b"];
    let mut ops = start_elected(
        cp,
        &nats,
        ns.name(),
        &addrs,
        ids,
        "1s",
        &["--leader-election-duration", "2s"],
    )
    .await;
    apply(
        cp,
        ns.name(),
        &stream_yaml("fz", "subjects: [\"fz.>\"]\nmaxAge: 1h"),
    );
    wait_ready(&api, "fz").await;
    let leader = wait_until(WAIT, "exactly one leader that holds the Lease", || {
        sole_leader(cp, ns.name(), &addrs, ids)
    })
    .await;
    let follower = 1 - leader;
    let before = metrics(&addrs[leader]).await;
    let pid = ops[leader].pid().expect("leader pid");
    let stopped = Instant::now();
    send_signal(pid, "STOP");
    let took = wait_takeover(cp, ns.name(), &addrs[follower], ids[follower], stopped).await;
    eprintln!(
        "FENCE: {} took over {} ms after {} froze",
        ids[follower],
        ms(took),
        ids[leader]
    );
    apply(
        cp,
        ns.name(),
        &stream_yaml("fz", "subjects: [\"fz.>\"]\nmaxAge: 2h"),
    );
    wait_ready_at(&api, "fz", 2).await;

    // Resumed: a drift scan is due and its cache still says 1h. It must not write.
    send_signal(pid, "CONT");
    let after = std::cell::RefCell::new(Vec::new());
    let status = wait_until_every(
        Duration::from_secs(60),
        MEASURE_POLL,
        "the resumed, fenced leader to exit",
        || {
            let exited = ops[leader].exited();
            let (after, addr) = (&after, &addrs[leader]);
            async move {
                if exited.is_none()
                    && let Some(m) = scrape(addr).await
                {
                    after.borrow_mut().push(m);
                }
                exited
            }
        },
    )
    .await;
    let after = after.into_inner();
    assert!(!status.success(), "the fenced leader exited with {status}");
    let log = ops[leader].log();
    assert!(
        log.contains("lost leadership"),
        "its log does not say why it stopped:\n{log}"
    );
    // At rest before the freeze, so any write counted after it is one sent on resuming
    // (reads by its scans may have run between the last scrape and the freeze).
    let writes = |m: &str| {
        (
            metric_value(m, KUBE_WRITES, &[]),
            ["stream.create", "stream.update", "stream.delete"]
                .map(|op| metric_value(m, JS_REQUESTS, &[("op", op)])),
        )
    };
    for m in &after {
        assert_eq!(
            writes(m),
            writes(&before),
            "the fenced leader wrote after it resumed (Kubernetes writes, JetStream stream writes)"
        );
        assert_eq!(
            metric_value(m, LEADER, &[]),
            0.0,
            "a fenced replica reports leader 1"
        );
    }
    let c = get_stream_config(&js, "fz").await.expect("stream fz");
    assert_eq!(
        c.max_age,
        Duration::from_secs(7200),
        "the fenced leader reverted the change"
    );
    // The one leader left keeps it so.
    assert_eq!(
        lease_holder(cp, ns.name()).await.as_deref(),
        Some(ids[follower])
    );
}

#[tokio::test]
async fn metrics_move() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("metrics").await;
    let mut nats = Nats::start().await;
    let admin = format!("127.0.0.1:{}", free_port());
    let op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--resync-interval",
            "3s",
            "--request-timeout",
            "2s",
            "--admin-address",
            &admin,
        ],
    )
    .await;
    let streams = dyn_api(cp, ns.name(), "streams");
    let consumers = dyn_api(cp, ns.name(), "consumers");
    wait_admin(&admin).await;

    // Every family is described (HELP and TYPE) from the first scrape on: Prometheus'
    // instrumentation guidelines ask for series of known label values to exist at 0, so
    // that rates and absence alerts work before the first event.
    let mut problems: Vec<String> = Vec::new();
    let m0 = metrics(&admin).await;
    let missing0 = undescribed(&m0);
    if !missing0.is_empty() {
        problems.push(format!(
            "at start (nothing reconciled yet) /metrics has no HELP/TYPE lines for: {}",
            missing0.join(", ")
        ));
    }
    assert_eq!(
        metric_value(&m0, LEADER, &[]),
        1.0,
        "without election the process leads"
    );

    // Work: three streams and a consumer.
    let names = ["mstream-one", "mstream-two", "mstream-three"];
    for n in names {
        apply(
            cp,
            ns.name(),
            &stream_yaml(n, &format!("subjects: [\"{n}.>\"]")),
        );
    }
    apply(
        cp,
        ns.name(),
        &manifest(
            "Consumer",
            "mconsumer-one",
            "streamName: mstream-one\ndurableName: mconsumer-one\nackPolicy: explicit",
        ),
    );
    for n in names {
        wait_ready(&streams, n).await;
    }
    wait_ready(&consumers, "mconsumer-one").await;
    let m1 = wait_until(WAIT, "the metrics to count the work", || async {
        let m = metrics(&admin).await;
        let v = |name: &str, labels: &[(&str, &str)]| metric_value(&m, name, labels);
        (v(RECONCILES, &[("kind", "Stream"), ("outcome", "ready")]) >= 3.0
            && v(RECONCILES, &[("kind", "Consumer"), ("outcome", "ready")]) >= 1.0
            && v(JS_REQUESTS, &[("op", "stream.create"), ("outcome", "ok")]) >= 3.0
            && v(JS_REQUESTS, &[("op", "consumer.create"), ("outcome", "ok")]) >= 1.0
            && v(READY_OBJECTS, &[("kind", "Stream")]) == 3.0
            && v(READY_OBJECTS, &[("kind", "Consumer")]) == 1.0)
            .then_some(m)
    })
    .await;
    let missing1 = undescribed(&m1);
    if !missing1.is_empty() {
        problems.push(format!(
            "after 3 Streams and a Consumer were reconciled /metrics has no HELP/TYPE lines for: {}",
            missing1.join(", ")
        ));
    }
    let v1 = |name: &str, labels: &[(&str, &str)]| metric_value(&m1, name, labels);
    assert_eq!(
        v1(JS_REQUESTS, &[("op", "stream.create"), ("outcome", "ok")]),
        3.0,
        "one create per stream"
    );
    // Counted from the first connection on, not from the first drift scan.
    assert_eq!(
        v1("jetstream_operator_nats_connections", &[]),
        1.0,
        "one open NATS connection"
    );
    assert!(v1(KUBE_WRITES, &[]) > 0.0);
    assert!(
        v1(
            "jetstream_operator_reconcile_duration_seconds_count",
            &[("kind", "Stream")]
        ) >= 3.0
    );
    assert!(
        v1(
            "jetstream_operator_jetstream_request_duration_seconds_count",
            &[("op", "stream.create")]
        ) >= 3.0
    );
    assert!(
        samples(&m1, "jetstream_operator_reconcile_duration_seconds_bucket")
            .iter()
            .any(|(l, _)| l.get("le").map(String::as_str) == Some("+Inf")),
        "the reconcile duration histogram has no +Inf bucket"
    );
    for (labels, _) in samples(&m1, JS_REQUESTS) {
        assert!(
            labels.contains_key("op") && labels.contains_key("outcome"),
            "a jetstream_requests series without op and outcome labels: {labels:?}"
        );
    }

    // A healthy run has no failure outcomes: a lookup answered "does not exist" (how every
    // create starts) is an answer, not a failed request.
    let failures0 = failure_series(&m1);
    if !failures0.is_empty() {
        problems.push(format!(
            "with NATS healthy, the creates of 3 Streams and a Consumer were counted as failed requests/reconciles: {failures0:?}"
        ));
    }

    // NATS goes away: a forced reconcile ends in an error outcome.
    nats.stop().await;
    annotate_reconcile(cp, ns.name(), "stream/mstream-one");
    let grown = |m: &str| -> BTreeMap<String, f64> {
        failure_series(m)
            .into_iter()
            .filter(|(k, v)| *v > failures0.get(k).copied().unwrap_or(0.0))
            .collect()
    };
    let m2 = wait_until(
        WAIT,
        "an error outcome in /metrics while NATS is down",
        || async {
            let m = metrics(&admin).await;
            (!grown(&m).is_empty()).then_some(m)
        },
    )
    .await;
    eprintln!(
        "METRICS failure series grown while NATS is down: {:?}",
        grown(&m2)
    );
    let obj = wait_until(WAIT, "mstream-one Ready=False", || async {
        let o = streams.get_opt("mstream-one").await.ok().flatten()?;
        (condition(&o, "Ready")?.0 == "False").then_some(o)
    })
    .await;
    eprintln!(
        "METRICS mstream-one while NATS is down: {}",
        status_summary(&obj)
    );
    let m3 = wait_until(
        WAIT,
        "ready_objects{kind=Stream} to drop below 3",
        || async {
            let m = metrics(&admin).await;
            (metric_value(&m, READY_OBJECTS, &[("kind", "Stream")]) < 3.0).then_some(m)
        },
    )
    .await;

    // Back again: ready_objects returns to 3.
    nats.start_again().await;
    let up = Instant::now();
    let recovered = poll_until(WAIT, || async {
        let o = streams.get_opt("mstream-one").await.ok().flatten()?;
        let m = metrics(&admin).await;
        (condition(&o, "Ready")?.0 == "True"
            && metric_value(&m, READY_OBJECTS, &[("kind", "Stream")]) == 3.0)
            .then_some(m)
    })
    .await;
    let m4 = match recovered {
        Some(m) => {
            eprintln!(
                "METRICS recovered {} ms after NATS restarted",
                ms(up.elapsed())
            );
            m
        }
        None => {
            let m = metrics(&admin).await;
            let obj = streams.get_opt("mstream-one").await.ok().flatten();
            problems.push(format!(
                "{} s after NATS came back mstream-one is not Ready and ready_objects{{kind=Stream}} is {} \
                 (the operator's log has no reconcile or scan after \"NATS connection restored\"); \
                 mstream-one: {}; /readyz: {:?}; /metrics:\n{m}",
                up.elapsed().as_secs(),
                metric_value(&m, READY_OBJECTS, &[("kind", "Stream")]),
                obj.as_ref().map(status_summary).unwrap_or_default(),
                readyz(&admin).await
            ));
            m
        }
    };

    // No label value is an object name (nor the namespace) anywhere in the output.
    let forbidden: BTreeSet<&str> = names
        .iter()
        .copied()
        .chain(["mconsumer-one", ns.name()])
        .collect();
    for (when, m) in [
        ("idle", &m0),
        ("after the work", &m1),
        ("outage", &m2),
        ("outage", &m3),
        ("recovered", &m4),
    ] {
        for (name, labels, _) in all_samples(m) {
            for (k, v) in &labels {
                assert!(
                    !forbidden.contains(v.as_str()),
                    "{when}: {name} has label {k}={v:?}, an object name"
                );
            }
        }
        for f in &forbidden {
            assert!(!m.contains(f), "{when}: /metrics mentions {f:?}:\n{m}");
        }
    }
    let label_values: BTreeSet<String> = all_samples(&m4)
        .into_iter()
        .flat_map(|(_, l, _)| l.into_iter().map(|(k, v)| format!("{k}={v}")))
        .filter(|kv| !kv.starts_with("le="))
        .collect();
    eprintln!("METRICS label values: {label_values:?}");
    let missing4 = undescribed(&m4);
    if !missing4.is_empty() {
        problems.push(format!(
            "after an outage and recovery /metrics still has no HELP/TYPE lines for: {}",
            missing4.join(", ")
        ));
    }
    eprintln!(
        "METRICS errors_total series at the end: {:?}",
        samples(&m4, "jetstream_operator_errors_total")
    );
    drop(op);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Series that count failures: JetStream requests with an outcome other than `ok` (or
/// `not_found`, the answer every create starts from), and
/// reconciles that ended in `retry` or `error` (`series -> value`, only those above 0).
fn failure_series(m: &str) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = samples(m, JS_REQUESTS)
        .into_iter()
        .filter(|(l, v)| {
            *v > 0.0
                && l.get("outcome")
                    .is_some_and(|o| o != "ok" && o != "not_found")
        })
        .map(|(l, v)| (format!("jetstream_requests{l:?}"), v))
        .collect();
    out.extend(
        samples(m, RECONCILES)
            .into_iter()
            .filter(|(l, v)| {
                *v > 0.0
                    && l.get("outcome")
                        .is_some_and(|o| o == "retry" || o == "error")
            })
            .map(|(l, v)| (format!("reconciles{l:?}"), v)),
    );
    out
}

/// The families of the brief that `text` does not describe with HELP and TYPE lines.
fn undescribed(text: &str) -> Vec<String> {
    [
        ("reconciles", "counter"),
        ("reconcile_duration_seconds", "histogram"),
        ("errors", "counter"),
        ("jetstream_requests", "counter"),
        ("jetstream_request_duration_seconds", "histogram"),
        ("kubernetes_writes", "counter"),
        ("ready_objects", "gauge"),
        ("leader", "gauge"),
    ]
    .into_iter()
    .filter(|(name, type_)| {
        let help = format!("# HELP jetstream_operator_{name} ");
        let type_line = format!("# TYPE jetstream_operator_{name} {type_}");
        !(text.lines().any(|l| l.starts_with(&help)) && text.lines().any(|l| l == type_line))
    })
    .map(|(name, _)| format!("jetstream_operator_{name}"))
    .collect()
}

#[tokio::test]
async fn graceful_shutdown() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("shutdown").await;
    let nats = Nats::start().await;
    let api = dyn_api(cp, ns.name(), "streams");

    // Without leader election, with work done.
    let admin = format!("127.0.0.1:{}", free_port());
    let mut op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--admin-address",
            &admin,
        ],
    )
    .await;
    wait_until(WAIT, "/readyz to answer 200", || async {
        (readyz(&admin).await == Some(200)).then_some(())
    })
    .await;
    apply(
        cp,
        ns.name(),
        &stream_yaml("calm", "subjects: [\"calm.>\"]"),
    );
    wait_ready(&api, "calm").await;
    let (status, took) = sigterm_and_wait(&mut op, "the operator to exit after SIGTERM").await;
    let log = op.log();
    eprintln!(
        "SHUTDOWN plain: exited with {status} after {} ms; log says shutting down: {}, controllers stopped: {}",
        ms(took),
        log.contains("shutting down"),
        log.contains("controllers stopped")
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(took < EXIT_LIMIT, "took {took:?} to exit after SIGTERM");
    assert!(
        log.contains("shutting down"),
        "the log does not say it is shutting down:\n{log}"
    );
    op.stop().await;

    // With leader election: the follower and the leader both exit 0, and the leader
    // releases the Lease.
    let addrs = two_admin_addresses();
    let ids = ["sd-a", "sd-b"];
    let mut ops = Vec::new();
    for i in 0..2 {
        ops.push(
            Operator::start(
                cp,
                &[
                    "--servers",
                    nats.url(),
                    "--namespace",
                    ns.name(),
                    "--leader-election",
                    "--leader-election-namespace",
                    ns.name(),
                    "--pod-name",
                    ids[i],
                    "--admin-address",
                    &addrs[i],
                ],
            )
            .await,
        );
    }
    let leader = wait_until(WAIT, "exactly one leader that holds the Lease", || {
        sole_leader(cp, ns.name(), &addrs, ids)
    })
    .await;
    let follower = 1 - leader;
    wait_until(WAIT, "the follower's /readyz to answer 200", || async {
        (readyz(&addrs[follower]).await == Some(200)).then_some(())
    })
    .await;
    // Steady state: the leader has reconciled the existing Stream.
    wait_until(WAIT, "the leader to reconcile Stream calm", || async {
        let m = scrape(&addrs[leader]).await?;
        (metric_value(&m, RECONCILES, &[("kind", "Stream")]) >= 1.0).then_some(())
    })
    .await;
    for (who, i) in [("follower", follower), ("leader", leader)] {
        let (status, took) =
            sigterm_and_wait(&mut ops[i], &format!("the {who} to exit after SIGTERM")).await;
        let log = ops[i].log();
        eprintln!("SHUTDOWN {who}: exited with {status} after {} ms", ms(took));
        assert_eq!(
            status.code(),
            Some(0),
            "{who}: exit status after SIGTERM: {status}"
        );
        assert!(
            took < EXIT_LIMIT,
            "{who}: took {took:?} to exit after SIGTERM"
        );
        assert!(
            log.contains("shutting down"),
            "{who}: the log does not say it is shutting down:\n{log}"
        );
        ops[i].stop().await;
    }
    let holder = lease_holder(cp, ns.name()).await;
    eprintln!("SHUTDOWN Lease holder after both stopped: {holder:?}");
    assert_ne!(
        holder.as_deref(),
        Some(ids[leader]),
        "the leader did not release the Lease when it stopped"
    );

    // SIGTERM while the controllers are starting (their watches' first lists in flight):
    // a rolling update can stop a pod at any moment.
    let mut op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--admin-address",
            "127.0.0.1:0",
        ],
    )
    .await;
    wait_until_every(
        WAIT,
        Duration::from_millis(2),
        "the operator to log that its controllers are starting",
        || {
            let starting = op.log().contains("controllers starting");
            async move { starting.then_some(()) }
        },
    )
    .await;
    let pid = op.pid().expect("operator pid");
    let t0 = Instant::now();
    send_signal(pid, "TERM");
    let exited = poll_until(EXIT_LIMIT, || {
        let r = op.exited();
        async move { r }
    })
    .await;
    let log = op.log();
    match exited {
        Some(status) => {
            eprintln!(
                "SHUTDOWN during start-up: exited with {status} after {} ms",
                ms(t0.elapsed())
            );
            assert_eq!(
                status.code(),
                Some(0),
                "during start-up: exit status after SIGTERM: {status}"
            );
        }
        None => {
            send_signal(pid, "KILL");
            wait_exit(&mut op, "the hung operator to die", Duration::from_secs(10)).await;
            panic!(
                "SIGTERM while the controllers were starting: the process had not exited after {EXIT_LIMIT:?} \
                 (its log says shutting down: {}; it never exits by itself); log:\n{log}",
                log.contains("shutting down")
            );
        }
    }
}

/// (kind, name, type, reason) -> how many times emitted.
type Tally = BTreeMap<(String, String, String, String), i32>;

fn tally(events: &[EventSummary]) -> Tally {
    let mut t = Tally::new();
    for e in events {
        *t.entry((
            e.kind.clone(),
            e.name.clone(),
            e.type_.clone(),
            e.reason.clone(),
        ))
        .or_default() += e.count;
    }
    t
}

/// Waits for a new `type_`/`reason` event about Stream `name` and asserts that, since
/// `before`, it is the only event emitted (once). Returns the new tally and its message.
async fn expect_only_event(
    cp: &ControlPlane,
    ns: &str,
    before: &Tally,
    name: &str,
    type_: &str,
    reason: &str,
) -> (Tally, String) {
    let key = (
        "Stream".to_owned(),
        name.to_owned(),
        type_.to_owned(),
        reason.to_owned(),
    );
    let had = before.get(&key).copied().unwrap_or(0);
    let found = poll_until(WAIT, || async {
        let ev = events_in(cp, ns).await;
        (tally(&ev).get(&key).copied().unwrap_or(0) > had).then_some(ev)
    })
    .await;
    let Some(events) = found else {
        let now = events_in(cp, ns).await;
        let new: Vec<String> = tally(&now)
            .into_iter()
            .filter(|(k, n)| *n > before.get(k).copied().unwrap_or(0))
            .map(|((kind, name, t, r), n)| format!("{t} {r} {kind}/{name} (x{n})"))
            .collect();
        panic!(
            "timed out after {WAIT:?} waiting for a {type_} {reason} event about Stream {name}; \
             events emitted since the previous step instead: {new:?}; all events: {now:#?}"
        );
    };
    let after = tally(&events);
    let mut expected = before.clone();
    *expected.entry(key.clone()).or_default() += 1;
    assert_eq!(
        after, expected,
        "after this transition exactly one {type_} {reason} event about {name} was expected; all events: {events:#?}"
    );
    let message = events
        .iter()
        .find(|e| e.kind == "Stream" && e.name == name && e.type_ == type_ && e.reason == reason)
        .map(|e| e.message.clone())
        .unwrap_or_default();
    eprintln!("EVENT {type_} {reason} {name}: {message}");
    (after, message)
}

#[tokio::test]
async fn events_on_transitions() {
    let cp = control_plane().await;
    let _logs = LogsOnPanic::new().control_plane(cp);
    let ns = TestNs::new("events").await;
    let nats = Nats::start().await;
    let js = nats.jetstream().await;
    let admin = format!("127.0.0.1:{}", free_port());
    let _op = Operator::start(
        cp,
        &[
            "--servers",
            nats.url(),
            "--namespace",
            ns.name(),
            "--resync-interval",
            "3s",
            "--admin-address",
            &admin,
        ],
    )
    .await;
    let api = dyn_api(cp, ns.name(), "streams");
    wait_admin(&admin).await;
    let ns = ns.name();
    let t = tally(&events_in(cp, ns).await);
    assert!(t.is_empty(), "events before anything happened: {t:?}");

    // Created.
    apply(
        cp,
        ns,
        &stream_yaml("ev-a", "subjects: [\"ev-a.>\"]\nmaxAge: 1h"),
    );
    wait_ready_at(&api, "ev-a", 1).await;
    let (t, _) = expect_only_event(cp, ns, &t, "ev-a", "Normal", "Created").await;

    // Updated (spec change).
    apply(
        cp,
        ns,
        &stream_yaml("ev-a", "subjects: [\"ev-a.>\"]\nmaxAge: 2h"),
    );
    wait_ready_at(&api, "ev-a", 2).await;
    let (t, msg) = expect_only_event(cp, ns, &t, "ev-a", "Normal", "Updated").await;
    assert!(
        msg.contains("max_age"),
        "the Updated event does not name the field: {msg}"
    );

    // DriftRepaired: changed behind the operator's back (Normal: nothing was lost).
    let mut cfg = get_stream_config(&js, "ev-a").await.expect("stream ev-a");
    cfg.max_age = Duration::from_secs(600);
    js.update_stream(cfg).await.expect("edit ev-a through NATS");
    wait_until(WAIT, "max_age of ev-a to return to 2h", || async {
        let c = get_stream_config(&js, "ev-a").await?;
        (c.max_age == Duration::from_secs(7200)).then_some(())
    })
    .await;
    let (t, _) = expect_only_event(cp, ns, &t, "ev-a", "Normal", "DriftRepaired").await;

    // DriftRepaired: deleted behind the operator's back and recreated. The operator
    // announces this one as a Warning: the messages the stream held are gone.
    let created = stream_info(&js, "ev-a").await.expect("stream ev-a").created;
    js.delete_stream("ev-a")
        .await
        .expect("delete ev-a through NATS");
    wait_until(WAIT, "ev-a to be recreated", || async {
        (stream_info(&js, "ev-a").await?.created > created).then_some(())
    })
    .await;
    wait_ready_at(&api, "ev-a", 2).await;
    let (t, msg) = expect_only_event(cp, ns, &t, "ev-a", "Warning", "DriftRepaired").await;
    assert!(msg.contains("recreated"), "{msg}");

    // Adopted: a stream that existed before, unowned.
    js.create_stream(stream::Config {
        name: "ev-b".into(),
        subjects: vec!["ev-b.>".into()],
        ..Default::default()
    })
    .await
    .expect("create stream ev-b");
    apply(
        cp,
        ns,
        &stream_yaml("ev-b", "subjects: [\"ev-b.>\"]\nmaxAge: 1h"),
    );
    wait_ready_at(&api, "ev-b", 1).await;
    let (t, _) = expect_only_event(cp, ns, &t, "ev-b", "Normal", "Adopted").await;

    // A new stall: subjects overlapping another stream's.
    apply(cp, ns, &stream_yaml("ev-c", "subjects: [\"ev-b.x\"]"));
    wait_stalled(&api, "ev-c", &["NotSupported"], WAIT).await;
    let (t, _) = expect_only_event(cp, ns, &t, "ev-c", "Warning", "NotSupported").await;

    // ResourceConflict: a stream owned by another object.
    js.create_stream(stream::Config {
        name: "ev-d".into(),
        subjects: vec!["ev-d.>".into()],
        metadata: [(
            "jetstream.nats.io/owner".to_owned(),
            "other/other".to_owned(),
        )]
        .into(),
        ..Default::default()
    })
    .await
    .expect("create stream ev-d");
    apply(cp, ns, &stream_yaml("ev-d", "subjects: [\"ev-d.>\"]"));
    wait_stalled(&api, "ev-d", &["ResourceConflict"], WAIT).await;
    let (t, msg) = expect_only_event(cp, ns, &t, "ev-d", "Warning", "ResourceConflict").await;
    assert!(msg.contains("other/other"), "{msg}");

    // Deleted.
    kubectl_ok(cp, &["delete", "stream", "ev-a", "-n", ns, "--timeout=60s"]);
    assert!(
        stream_info(&js, "ev-a").await.is_none(),
        "ev-a is still in JetStream"
    );
    let (t, _) = expect_only_event(cp, ns, &t, "ev-a", "Normal", "Deleted").await;

    // At rest (one Ready, two stalled): no new events over two resync intervals, every
    // poll compared.
    let events0 = events_in(cp, ns).await;
    assert_eq!(tally(&events0), t);
    let scans = |m: &str| metric_value(m, JS_REQUESTS, &[("op", "stream.list")]);
    let scans0 = scans(&metrics(&admin).await);
    let started = Instant::now();
    // Poll every 500 ms until two resync intervals and two drift scans have passed,
    // comparing the events at every poll.
    let polls = std::cell::Cell::new(0u32);
    let (polls_ref, events0_ref, admin_ref, scans_ref) = (&polls, &events0, &admin, &scans);
    let done = wait_until_every(
        RESYNC * 6,
        Duration::from_millis(500),
        "two drift scans at rest",
        move || async move {
            polls_ref.set(polls_ref.get() + 1);
            let now = events_in(cp, ns).await;
            assert_eq!(
                &now,
                events0_ref,
                "events changed at rest (poll {}, {} ms)",
                polls_ref.get(),
                ms(started.elapsed())
            );
            let done = scans_ref(&metrics(admin_ref).await) - scans0;
            (started.elapsed() >= RESYNC * 2 + Duration::from_millis(500) && done >= 2.0)
                .then_some(done)
        },
    )
    .await;
    eprintln!(
        "EVENTS at rest: {} polls over {} ms, {done} drift scans, no new event",
        polls.get(),
        ms(started.elapsed())
    );
}
