//! Streams read or written recently, per connection, API prefix and stream: the consumers
//! of one stream share one read of its limits, a stream the operator has just created or
//! updated is not read again for its consumers, and after a start the streams of a
//! connection come from one paged listing instead of one INFO each. An entry lives for
//! one resync interval, and is dropped as soon as an advisory says the stream was
//! created, updated or deleted, or the connection went down or came back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::jetstream::wire::StreamInfo;

type Key = (u64, String, String);

/// A connection's listing since its last start or reconnect: done, or under way.
type Listing = Arc<OnceCell<()>>;

/// The cache (see the module's description).
pub struct StreamReads {
    ttl: Duration,
    max: usize,
    inner: Mutex<HashMap<Key, (Instant, Arc<StreamInfo>)>>,
    /// Per connection and API prefix: the listing since the last start or reconnect,
    /// done (or under way: later callers wait for it).
    listed: Mutex<HashMap<(u64, String), Listing>>,
    /// When a stream (`Some`) or a whole connection (`None`) was last forgotten: a read
    /// made before that is not taken in (a reconcile that read a stream before its
    /// deletion must not put the stream back after the deletion's advisory).
    forgotten: Mutex<HashMap<(u64, Option<String>), Instant>>,
}

impl StreamReads {
    /// Entries live `ttl`; at most `max` are held (when full, the older entries go, or all).
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            inner: Mutex::new(HashMap::new()),
            listed: Mutex::new(HashMap::new()),
            forgotten: Mutex::new(HashMap::new()),
        }
    }

    /// Fills the cache from one paged listing (`list`) of the streams on a connection
    /// and API prefix, the first time any object there needs a stream after a start or a
    /// reconnect. Callers that come while the listing runs wait for it rather than read
    /// their streams one at a time; later callers return at once. A failed listing is
    /// not retried (the streams are then read one at a time).
    pub async fn ensure_listed<F, Fut, E>(&self, conn: u64, prefix: &str, list: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<StreamInfo>, E>>,
        E: std::fmt::Display,
    {
        let cell = match self.listed.lock() {
            Ok(mut l) => l.entry((conn, prefix.to_string())).or_default().clone(),
            Err(_) => return,
        };
        cell.get_or_init(|| async {
            let read_at = Instant::now();
            match list().await {
                Ok(streams) => {
                    for s in streams {
                        self.put_owned(conn, prefix, s, read_at);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list streams; reading them one at a time")
                }
            }
        })
        .await;
    }

    /// The stream as the server last answered, when read or written within the last `ttl`.
    pub fn get(&self, conn: u64, prefix: &str, stream: &str) -> Option<Arc<StreamInfo>> {
        let m = self.inner.lock().ok()?;
        m.get(&(conn, prefix.to_string(), stream.to_string()))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    /// Remembers what the server answered for a stream, to a request sent at `read_at`
    /// (or earlier). The entry lives `ttl` from then.
    pub fn put(&self, conn: u64, prefix: &str, info: &StreamInfo, read_at: Instant) {
        self.put_owned(conn, prefix, info.clone(), read_at);
    }

    /// [`StreamReads::put`], taking the answer (a listing's entries move in, uncopied).
    pub fn put_owned(&self, conn: u64, prefix: &str, info: StreamInfo, read_at: Instant) {
        let stale = self.forgotten.lock().is_ok_and(|f| {
            [Some(info.config.name.clone()), None]
                .into_iter()
                .filter_map(|s| f.get(&(conn, s)))
                .any(|at| *at >= read_at)
        });
        if stale {
            return;
        }
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        if m.len() >= self.max {
            let ttl = self.ttl;
            m.retain(|_, (at, _)| at.elapsed() < ttl / 2);
            if m.len() >= self.max {
                m.clear();
            }
        }
        m.insert(
            (conn, prefix.to_string(), info.config.name.clone()),
            (read_at, Arc::new(info)),
        );
    }

    /// Forgets `stream` on a connection (every API prefix).
    pub fn forget(&self, conn: u64, stream: &str) {
        if let Ok(mut f) = self.forgotten.lock() {
            f.insert((conn, Some(stream.to_string())), Instant::now());
        }
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|(c, _, s), _| !(*c == conn && s == stream));
        }
    }

    /// Forgets every stream of a connection; its streams are listed again on next use.
    pub fn forget_connection(&self, conn: u64) {
        if let Ok(mut f) = self.forgotten.lock() {
            f.insert((conn, None), Instant::now());
        }
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|(c, _, _), _| *c != conn);
        }
        if let Ok(mut l) = self.listed.lock() {
            l.retain(|(c, _), _| *c != conn);
        }
    }

    /// Drops expired entries.
    pub fn purge(&self) {
        let ttl = self.ttl;
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if let Ok(mut f) = self.forgotten.lock() {
            f.retain(|_, at| at.elapsed() < ttl);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::wire::StreamConfig;

    fn config(name: &str, max_age: i64) -> StreamInfo {
        StreamInfo {
            config: StreamConfig {
                name: name.into(),
                max_age,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn remembers_per_connection_and_prefix_and_forgets_on_change() {
        let reads = StreamReads::new(Duration::from_secs(60), 100);
        reads.put(1, "$JS.API", &config("orders", 5), Instant::now());
        assert_eq!(
            reads.get(1, "$JS.API", "orders").map(|c| c.config.max_age),
            Some(5)
        );
        assert!(
            reads.get(2, "$JS.API", "orders").is_none(),
            "another connection"
        );
        assert!(
            reads.get(1, "$JS.hub.API", "orders").is_none(),
            "another prefix"
        );
        reads.put(1, "$JS.hub.API", &config("orders", 6), Instant::now());
        reads.put(1, "$JS.API", &config("audit", 7), Instant::now());
        reads.forget(1, "orders");
        assert!(reads.get(1, "$JS.API", "orders").is_none());
        assert!(reads.get(1, "$JS.hub.API", "orders").is_none());
        assert!(reads.get(1, "$JS.API", "audit").is_some());
    }

    #[tokio::test]
    async fn one_listing_per_connection_until_it_reconnects() {
        let reads = StreamReads::new(Duration::from_secs(60), 100);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let list = |names: &'static [&'static str]| {
            let calls = &calls;
            move || async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, String>(names.iter().map(|n| config(n, 1)).collect())
            }
        };
        // Concurrent callers share the one listing.
        futures::join!(
            reads.ensure_listed(1, "$JS.API", list(&["orders", "audit"])),
            reads.ensure_listed(1, "$JS.API", list(&["orders", "audit"])),
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(reads.get(1, "$JS.API", "audit").is_some());
        reads.ensure_listed(1, "$JS.API", list(&[])).await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "listed once"
        );
        reads.ensure_listed(1, "$JS.hub.API", list(&["hub"])).await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "per prefix"
        );
        reads.forget_connection(1);
        assert!(reads.is_empty());
        reads.ensure_listed(1, "$JS.API", list(&["orders"])).await;
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "listed again after a reconnect"
        );
        assert!(reads.get(1, "$JS.API", "orders").is_some());
    }

    #[test]
    fn a_read_older_than_a_forget_is_not_taken_in() {
        let reads = StreamReads::new(Duration::from_secs(60), 100);
        let before = Instant::now();
        reads.forget(1, "orders");
        reads.put(1, "$JS.API", &config("orders", 5), before);
        assert!(
            reads.get(1, "$JS.API", "orders").is_none(),
            "read before the deletion"
        );
        reads.put(1, "$JS.API", &config("audit", 5), before);
        assert!(reads.get(1, "$JS.API", "audit").is_some(), "another stream");
        reads.put(1, "$JS.API", &config("orders", 6), Instant::now());
        assert!(reads.get(1, "$JS.API", "orders").is_some(), "read after it");
        let before = Instant::now();
        reads.forget_connection(1);
        reads.put(1, "$JS.API", &config("audit", 7), before);
        assert!(
            reads.get(1, "$JS.API", "audit").is_none(),
            "read before the reconnect"
        );
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let reads = StreamReads::new(Duration::ZERO, 100);
        reads.put(1, "$JS.API", &config("orders", 5), Instant::now());
        assert!(reads.get(1, "$JS.API", "orders").is_none(), "expired");
        reads.purge();
        assert!(reads.is_empty());

        let reads = StreamReads::new(Duration::from_secs(60), 10);
        for i in 0..25 {
            reads.put(1, "$JS.API", &config(&format!("s{i}"), 1), Instant::now());
        }
        assert!(reads.len() <= 10, "held {}", reads.len());
    }
}
