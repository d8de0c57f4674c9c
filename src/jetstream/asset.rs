//! The two kinds of JetStream asset behind every object — streams (also behind KeyValue
//! and ObjectStore) and durable consumers — under one interface: identity, configuration,
//! what the info says, and the management calls.

use std::future::Future;

use super::api::JsApi;
use super::config::AssetConfig;
use super::consumer_config;
use super::error::JsError;
use super::wire::{ConsumerConfig, ConsumerInfo, StreamConfig, StreamInfo};

/// The JetStream asset an object manages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssetRef {
    /// A stream (Stream, and the backing streams of KeyValue and ObjectStore).
    Stream(String),
    /// A consumer on a stream.
    Consumer {
        /// The stream's name.
        stream: String,
        /// The consumer's name.
        name: String,
    },
}

impl AssetRef {
    /// The stream the asset lives in.
    pub fn stream(&self) -> &str {
        match self {
            AssetRef::Stream(s) => s,
            AssetRef::Consumer { stream, .. } => stream,
        }
    }

    /// The asset's own name.
    pub fn name(&self) -> &str {
        match self {
            AssetRef::Stream(s) => s,
            AssetRef::Consumer { name, .. } => name,
        }
    }
}

/// An asset's configuration as the drift scan compares it, reduced to a fingerprint
/// ([`super::config::fingerprint`]): what a reconcile expects, or what the server was last
/// seen to hold. Eight bytes per managed asset instead of a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot(u64);

impl Snapshot {
    /// The fingerprint of a config.
    pub fn of<C: AssetConfig>(config: &C) -> Self {
        Snapshot(super::config::fingerprint(config))
    }

    /// True when `seen` is not what `self` expects (a field or the marker differs).
    pub fn drifted(&self, seen: &Snapshot) -> bool {
        self != seen
    }
}

/// Slow-moving facts read from an asset's info.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The cluster leader (clustered servers only).
    pub leader: Option<String>,
    /// The replica count.
    pub replicas: Option<i64>,
    /// A consumer's pause: `Some(None)` running, `Some(Some(t))` paused until `t`.
    pub pause: Option<Option<String>>,
}

impl Facts {
    /// Whether facts listed now say something the status (written from `recorded`) does
    /// not. A fact the listing leaves out, or a cluster with no leader for the moment of
    /// an election, is no news.
    pub fn moved_from(&self, recorded: &Facts) -> bool {
        let leader = self
            .leader
            .as_deref()
            .is_some_and(|l| !l.is_empty() && recorded.leader.as_deref() != Some(l));
        let replicas = self.replicas.is_some() && self.replicas != recorded.replicas;
        let pause = self.pause.is_some() && self.pause != recorded.pause;
        leader || replicas || pause
    }
}

/// The server-side operations of one asset type.
pub trait AssetOps: Send + Sync + 'static {
    /// Identity of the asset.
    type Id: Clone + std::fmt::Display + Send + Sync;
    /// Configuration.
    type Config: AssetConfig;
    /// Info as the server returns it.
    type Info: Send + Sync;

    /// The asset an identity names.
    fn asset_ref(id: &Self::Id) -> AssetRef;
    /// The stream that must exist before the asset can (a consumer's).
    fn stream(id: &Self::Id) -> Option<&str>;
    /// The configuration inside an info.
    fn config(info: &Self::Info) -> &Self::Config;
    /// A normalised copy, for the registry.
    fn snapshot(c: &Self::Config) -> Snapshot;
    /// Cluster leader, replicas, pause.
    fn facts(info: &Self::Info) -> Facts;
    /// The stream info, for the assets that are streams.
    fn stream_info(_info: &Self::Info) -> Option<&StreamInfo> {
        None
    }
    /// The asset's info from a stream info, for the assets that are streams.
    fn from_stream_info(_info: &StreamInfo) -> Option<Self::Info> {
        None
    }
    /// Reads the asset; `None` when it does not exist.
    fn get(
        js: &JsApi,
        id: &Self::Id,
    ) -> impl Future<Output = Result<Option<Self::Info>, JsError>> + Send;
    /// Creates it.
    fn create(
        js: &JsApi,
        id: &Self::Id,
        c: &Self::Config,
    ) -> impl Future<Output = Result<Self::Info, JsError>> + Send;
    /// Updates it in place.
    fn update(
        js: &JsApi,
        id: &Self::Id,
        c: &Self::Config,
    ) -> impl Future<Output = Result<Self::Info, JsError>> + Send;
    /// Deletes it; `false` if it was not there.
    fn delete(js: &JsApi, id: &Self::Id) -> impl Future<Output = Result<bool, JsError>> + Send;
}

/// Streams (and the backing streams of KeyValue and ObjectStore).
pub struct StreamOps;

impl AssetOps for StreamOps {
    type Id = String;
    type Config = StreamConfig;
    type Info = StreamInfo;

    fn asset_ref(id: &String) -> AssetRef {
        AssetRef::Stream(id.clone())
    }
    fn stream(_: &String) -> Option<&str> {
        None
    }
    fn config(info: &StreamInfo) -> &StreamConfig {
        &info.config
    }
    fn stream_info(info: &StreamInfo) -> Option<&StreamInfo> {
        Some(info)
    }
    fn from_stream_info(info: &StreamInfo) -> Option<StreamInfo> {
        Some(info.clone())
    }
    fn snapshot(c: &StreamConfig) -> Snapshot {
        Snapshot::of(c)
    }
    fn facts(info: &StreamInfo) -> Facts {
        let (leader, replicas) = info.placement_facts();
        Facts {
            leader,
            replicas: Some(replicas),
            pause: None,
        }
    }
    async fn get(js: &JsApi, id: &String) -> Result<Option<StreamInfo>, JsError> {
        js.stream_info(id).await
    }
    async fn create(js: &JsApi, _: &String, c: &StreamConfig) -> Result<StreamInfo, JsError> {
        js.create_stream(c).await
    }
    async fn update(js: &JsApi, _: &String, c: &StreamConfig) -> Result<StreamInfo, JsError> {
        js.update_stream(c).await
    }
    async fn delete(js: &JsApi, id: &String) -> Result<bool, JsError> {
        js.delete_stream(id).await
    }
}

/// A consumer's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerId {
    /// The stream's name.
    pub stream: String,
    /// The consumer's name.
    pub name: String,
}

impl std::fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on stream {}", self.name, self.stream)
    }
}

/// Durable consumers.
pub struct ConsumerOps;

impl AssetOps for ConsumerOps {
    type Id = ConsumerId;
    type Config = ConsumerConfig;
    type Info = ConsumerInfo;

    fn asset_ref(id: &ConsumerId) -> AssetRef {
        AssetRef::Consumer {
            stream: id.stream.clone(),
            name: id.name.clone(),
        }
    }
    fn stream(id: &ConsumerId) -> Option<&str> {
        Some(&id.stream)
    }
    fn config(info: &ConsumerInfo) -> &ConsumerConfig {
        &info.config
    }
    fn snapshot(c: &ConsumerConfig) -> Snapshot {
        Snapshot::of(c)
    }
    fn facts(info: &ConsumerInfo) -> Facts {
        let leader = info
            .cluster
            .as_ref()
            .filter(|c| c.name.is_some())
            .and_then(|c| c.leader.clone());
        Facts {
            leader,
            replicas: None,
            pause: Some(consumer_config::actual_pause(info.paused, &info.config)),
        }
    }
    async fn get(js: &JsApi, id: &ConsumerId) -> Result<Option<ConsumerInfo>, JsError> {
        js.consumer_info(&id.stream, &id.name).await
    }
    async fn create(
        js: &JsApi,
        id: &ConsumerId,
        c: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        js.create_consumer(&id.stream, c).await
    }
    async fn update(
        js: &JsApi,
        id: &ConsumerId,
        c: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        js.update_consumer(&id.stream, c).await
    }
    async fn delete(js: &JsApi, id: &ConsumerId) -> Result<bool, JsError> {
        js.delete_consumer(&id.stream, &id.name).await
    }
}

#[cfg(test)]
mod tests {
    use super::Facts;

    fn facts(leader: Option<&str>, replicas: Option<i64>, pause: Option<Option<&str>>) -> Facts {
        Facts {
            leader: leader.map(str::to_owned),
            replicas,
            pause: pause.map(|p| p.map(str::to_owned)),
        }
    }

    #[test]
    fn facts_that_move_the_status() {
        let written = facts(Some("n1"), Some(3), None);
        // Nothing new.
        assert!(!written.moved_from(&written));
        // A new leader; replicas changed by someone.
        assert!(facts(Some("n2"), Some(3), None).moved_from(&written));
        assert!(facts(Some("n1"), Some(1), None).moved_from(&written));
        // An election under way (no leader, or an empty name), or a listing without
        // cluster facts, is no news.
        assert!(!facts(None, Some(3), None).moved_from(&written));
        assert!(!facts(Some(""), Some(3), None).moved_from(&written));
        assert!(!facts(None, None, None).moved_from(&written));
        // A standalone stream never had a leader.
        assert!(!facts(None, Some(1), None).moved_from(&facts(None, Some(1), None)));
        // A consumer's pause that ran out.
        let paused = facts(None, None, Some(Some("2026-01-01T00:00:00Z")));
        assert!(facts(None, None, Some(None)).moved_from(&paused));
        assert!(!paused.moved_from(&paused));
    }
}
