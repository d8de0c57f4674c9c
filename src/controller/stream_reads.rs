//! Stream configurations read or written recently, per connection, API prefix and stream:
//! the consumers of one stream share one read of its limits, and a stream the operator has
//! just created or updated is not read again for its consumers. An entry lives for one
//! resync interval, and is dropped as soon as an advisory says the stream was created,
//! updated or deleted, or the connection went down or came back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::jetstream::wire::StreamConfig;

type Key = (u64, String, String);

/// The cache (see the module's description).
pub struct StreamReads {
    ttl: Duration,
    max: usize,
    inner: Mutex<HashMap<Key, (Instant, Arc<StreamConfig>)>>,
}

impl StreamReads {
    /// Entries live `ttl`; at most `max` are held (when full, the older entries go, or all).
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration of `stream`, when read or written within the last `ttl`.
    pub fn get(&self, conn: u64, prefix: &str, stream: &str) -> Option<Arc<StreamConfig>> {
        let m = self.inner.lock().ok()?;
        m.get(&(conn, prefix.to_string(), stream.to_string()))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, c)| c.clone())
    }

    /// Remembers what the server answered for `stream`.
    pub fn put(&self, conn: u64, prefix: &str, config: &StreamConfig) {
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
            (conn, prefix.to_string(), config.name.clone()),
            (Instant::now(), Arc::new(config.clone())),
        );
    }

    /// Forgets `stream` on a connection (every API prefix).
    pub fn forget(&self, conn: u64, stream: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|(c, _, s), _| !(*c == conn && s == stream));
        }
    }

    /// Forgets every stream of a connection.
    pub fn forget_connection(&self, conn: u64) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|(c, _, _), _| *c != conn);
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

    fn config(name: &str, max_age: i64) -> StreamConfig {
        StreamConfig {
            name: name.into(),
            max_age,
            ..Default::default()
        }
    }

    #[test]
    fn remembers_per_connection_and_prefix_and_forgets_on_change() {
        let reads = StreamReads::new(Duration::from_secs(60), 100);
        reads.put(1, "$JS.API", &config("orders", 5));
        assert_eq!(
            reads.get(1, "$JS.API", "orders").map(|c| c.max_age),
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
        reads.forget_connection(1);
        assert!(reads.is_empty());
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
