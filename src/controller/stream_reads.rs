//! Streams read or written recently, per connection, API prefix and stream: the consumers
//! of one stream share one read of its limits, a stream the operator has just created or
//! updated is not read again for its consumers, and after a start the streams of a
//! connection come from one paged listing instead of one INFO each. An entry lives for
//! one resync interval, and is dropped as soon as an advisory says the stream was
//! created, updated or deleted, or the connection went down or came back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::HashSet;

use crate::jetstream::wire::StreamInfo;

type Key = (u64, String, String);

/// The cache (see the module's description).
pub struct StreamReads {
    ttl: Duration,
    max: usize,
    inner: Mutex<HashMap<Key, (Instant, Arc<StreamInfo>)>>,
    listed: Mutex<HashSet<(u64, String)>>,
}

impl StreamReads {
    /// Entries live `ttl`; at most `max` are held (when full, the older entries go, or all).
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            inner: Mutex::new(HashMap::new()),
            listed: Mutex::new(HashSet::new()),
        }
    }

    /// True the first time it is asked for a connection and API prefix: the caller then
    /// lists the streams there once and [`put`](Self::put)s them.
    pub fn first_use(&self, conn: u64, prefix: &str) -> bool {
        self.listed
            .lock()
            .map(|mut l| l.insert((conn, prefix.to_string())))
            .unwrap_or(false)
    }

    /// The stream as the server last answered, when read or written within the last `ttl`.
    pub fn get(&self, conn: u64, prefix: &str, stream: &str) -> Option<Arc<StreamInfo>> {
        let m = self.inner.lock().ok()?;
        m.get(&(conn, prefix.to_string(), stream.to_string()))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    /// Remembers what the server answered for a stream.
    pub fn put(&self, conn: u64, prefix: &str, info: &StreamInfo) {
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
            (Instant::now(), Arc::new(info.clone())),
        );
    }

    /// Forgets `stream` on a connection (every API prefix).
    pub fn forget(&self, conn: u64, stream: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|(c, _, s), _| !(*c == conn && s == stream));
        }
    }

    /// Forgets every stream of a connection; its streams are listed again on next use.
    pub fn forget_connection(&self, conn: u64) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|(c, _, _), _| *c != conn);
        }
        if let Ok(mut l) = self.listed.lock() {
            l.retain(|(c, _)| *c != conn);
        }
    }

    /// Drops expired entries.
    pub fn purge(&self) {
        let ttl = self.ttl;
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|_, (at, _)| at.elapsed() < ttl);
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
        reads.put(1, "$JS.API", &config("orders", 5));
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
        reads.put(1, "$JS.hub.API", &config("orders", 6));
        reads.put(1, "$JS.API", &config("audit", 7));
        reads.forget(1, "orders");
        assert!(reads.get(1, "$JS.API", "orders").is_none());
        assert!(reads.get(1, "$JS.hub.API", "orders").is_none());
        assert!(reads.get(1, "$JS.API", "audit").is_some());
        assert!(reads.first_use(1, "$JS.API"));
        assert!(!reads.first_use(1, "$JS.API"), "listed once");
        assert!(reads.first_use(1, "$JS.hub.API"));
        reads.forget_connection(1);
        assert!(reads.is_empty());
        assert!(
            reads.first_use(1, "$JS.API"),
            "listed again after a reconnect"
        );
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let reads = StreamReads::new(Duration::ZERO, 100);
        reads.put(1, "$JS.API", &config("orders", 5));
        assert!(reads.get(1, "$JS.API", "orders").is_none(), "expired");
        reads.purge();
        assert!(reads.is_empty());

        let reads = StreamReads::new(Duration::from_secs(60), 10);
        for i in 0..25 {
            reads.put(1, "$JS.API", &config(&format!("s{i}"), 1));
        }
        assert!(reads.len() <= 10, "held {}", reads.len());
    }
}
