//! The JetStream management API over one connection and API prefix: raw requests with
//! our own wire types, pedantic writes, timeouts, lenient parsing and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::connection::Conn;
use super::error::{JsError, code};
use super::wire::{
    AccountInfo, ConsumerConfig, ConsumerInfo, ConsumerListPage, ConsumerRequest, PauseResponse,
    StreamConfig, StreamInfo, StreamListPage, StreamRequest, SuccessResponse,
};
use crate::metrics::{JsOp, JsOutcome, Metrics};

/// The default JetStream API prefix.
pub const DEFAULT_PREFIX: &str = "$JS.API";

/// The API prefix for a JetStream domain.
pub fn domain_prefix(domain: &str) -> String {
    format!("$JS.{domain}.API")
}

/// JetStream management calls on one connection.
#[derive(Clone)]
pub struct JsApi {
    conn: Arc<Conn>,
    prefix: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// True when the server version is at least 2.11 (pedantic requests).
fn supports_pedantic(version: &str) -> bool {
    let mut it = version.trim_start_matches('v').split('.');
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    major > 2 || (major == 2 && minor >= 11)
}

impl JsApi {
    /// A client for `prefix` (e.g. `$JS.API`) on `conn`.
    pub fn new(
        conn: Arc<Conn>,
        prefix: impl Into<String>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            timeout,
            metrics,
        }
    }

    /// The connection.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// The API prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The version of the server the connection is on.
    pub fn server_version(&self) -> super::config::ServerVersion {
        super::config::parse_version(&self.conn.client.server_info().version)
    }

    fn pedantic(&self) -> bool {
        supports_pedantic(&self.conn.client.server_info().version)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: JsOp,
        subject: String,
        body: Vec<u8>,
    ) -> Result<T, JsError> {
        // Fenced: nothing is sent (and nothing counted as sent).
        if !crate::fence::is_open() {
            return Err(JsError::Connection {
                servers: self.conn.servers.clone(),
                reason: crate::fence::FENCED.into(),
            });
        }
        let started = Instant::now();
        let result = self.call_inner(op, subject, body).await;
        let outcome = match &result {
            Ok(_) => JsOutcome::Ok,
            Err(e) => e.outcome(),
        };
        self.metrics.js_request(op, outcome, started.elapsed());
        result
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        op: JsOp,
        subject: String,
        body: Vec<u8>,
    ) -> Result<T, JsError> {
        if self.conn.check().is_err() {
            self.conn
                .wait_connected(self.timeout.min(Duration::from_secs(2)))
                .await;
            self.conn.check()?;
        }
        let request = self.conn.client.request(subject.clone(), body.into());
        let msg = match tokio::time::timeout(self.timeout + Duration::from_millis(250), request)
            .await
        {
            Err(_) => {
                return Err(JsError::Timeout {
                    op,
                    after: self.timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => {
                        // A timeout while disconnected is a connection problem.
                        match self.conn.check() {
                            Err(c) => c,
                            Ok(()) => JsError::Timeout {
                                op,
                                after: self.timeout,
                            },
                        }
                    }
                    async_nats::RequestErrorKind::NoResponders => JsError::NoResponders { subject },
                    async_nats::RequestErrorKind::MaxPayloadExceeded => JsError::TooLarge {
                        op,
                        reason: e.to_string(),
                    },
                    _ => JsError::Connection {
                        servers: self.conn.servers.clone(),
                        reason: e.to_string(),
                    },
                });
            }
            Ok(Ok(msg)) => msg,
        };
        let value: Value = serde_json::from_slice(&msg.payload).map_err(|e| JsError::Decode {
            op,
            reason: e.to_string(),
        })?;
        if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
            return Err(JsError::Api {
                code: err.get("code").and_then(Value::as_u64).unwrap_or(0) as u16,
                err_code: err.get("err_code").and_then(Value::as_u64).unwrap_or(0),
                description: err
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
            });
        }
        serde_json::from_value(value).map_err(|e| JsError::Decode {
            op,
            reason: e.to_string(),
        })
    }

    fn subject(&self, rest: &str) -> String {
        format!("{}.{}", self.prefix, rest)
    }

    fn json<S: Serialize>(op: JsOp, body: &S) -> Result<Vec<u8>, JsError> {
        serde_json::to_vec(body).map_err(|e| JsError::Decode {
            op,
            reason: e.to_string(),
        })
    }

    /// Account information (also a cheap reachability check).
    pub async fn account_info(&self) -> Result<AccountInfo, JsError> {
        self.call(JsOp::AccountInfo, self.subject("INFO"), Vec::new())
            .await
    }

    /// Stream info; `None` when the stream does not exist.
    pub async fn stream_info(&self, name: &str) -> Result<Option<StreamInfo>, JsError> {
        match self
            .call::<StreamInfo>(
                JsOp::StreamInfo,
                self.subject(&format!("STREAM.INFO.{name}")),
                Vec::new(),
            )
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is(code::STREAM_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a stream.
    pub async fn create_stream(&self, config: &StreamConfig) -> Result<StreamInfo, JsError> {
        let body = Self::json(
            JsOp::StreamCreate,
            &StreamRequest {
                config,
                pedantic: self.pedantic(),
            },
        )?;
        self.call(
            JsOp::StreamCreate,
            self.subject(&format!("STREAM.CREATE.{}", config.name)),
            body,
        )
        .await
    }

    /// Replaces a stream's whole configuration.
    pub async fn update_stream(&self, config: &StreamConfig) -> Result<StreamInfo, JsError> {
        let body = Self::json(
            JsOp::StreamUpdate,
            &StreamRequest {
                config,
                pedantic: self.pedantic(),
            },
        )?;
        self.call(
            JsOp::StreamUpdate,
            self.subject(&format!("STREAM.UPDATE.{}", config.name)),
            body,
        )
        .await
    }

    /// Deletes a stream; `false` when it did not exist.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, JsError> {
        match self
            .call::<SuccessResponse>(
                JsOp::StreamDelete,
                self.subject(&format!("STREAM.DELETE.{name}")),
                Vec::new(),
            )
            .await
        {
            Ok(r) => Ok(r.success),
            Err(e) if e.is(code::STREAM_NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every stream with its configuration, one request per page. Streams the server
    /// lists as missing are returned separately: their absence proves nothing.
    pub async fn list_streams(&self) -> Result<(Vec<StreamInfo>, Vec<String>), JsError> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut offset = 0usize;
        loop {
            let body = Self::json(JsOp::StreamList, &serde_json::json!({ "offset": offset }))?;
            let page: StreamListPage = self
                .call(JsOp::StreamList, self.subject("STREAM.LIST"), body)
                .await?;
            let n = page.streams.len();
            out.extend(page.streams);
            missing.extend(page.missing);
            offset += n;
            if n == 0 || offset >= page.total {
                break;
            }
        }
        Ok((out, missing))
    }

    /// Consumer info; `None` when the consumer does not exist. A missing stream is an
    /// error ([`code::STREAM_NOT_FOUND`]).
    pub async fn consumer_info(
        &self,
        stream: &str,
        name: &str,
    ) -> Result<Option<ConsumerInfo>, JsError> {
        match self
            .call::<ConsumerInfo>(
                JsOp::ConsumerInfo,
                self.subject(&format!("CONSUMER.INFO.{stream}.{name}")),
                Vec::new(),
            )
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is(code::CONSUMER_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_consumer(
        &self,
        op: JsOp,
        action: &'static str,
        stream: &str,
        config: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        let body = Self::json(
            op,
            &ConsumerRequest {
                stream_name: stream,
                config,
                action,
                pedantic: self.pedantic(),
            },
        )?;
        self.call(
            op,
            self.subject(&format!("CONSUMER.CREATE.{stream}.{}", config.name)),
            body,
        )
        .await
    }

    /// Creates a consumer (fails if one with that name exists with another config).
    pub async fn create_consumer(
        &self,
        stream: &str,
        config: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        self.write_consumer(JsOp::ConsumerCreate, "create", stream, config)
            .await
    }

    /// Updates an existing consumer in place (never recreates it).
    pub async fn update_consumer(
        &self,
        stream: &str,
        config: &ConsumerConfig,
    ) -> Result<ConsumerInfo, JsError> {
        self.write_consumer(JsOp::ConsumerUpdate, "update", stream, config)
            .await
    }

    /// Deletes a consumer; `false` when it (or its stream) did not exist.
    pub async fn delete_consumer(&self, stream: &str, name: &str) -> Result<bool, JsError> {
        match self
            .call::<SuccessResponse>(
                JsOp::ConsumerDelete,
                self.subject(&format!("CONSUMER.DELETE.{stream}.{name}")),
                Vec::new(),
            )
            .await
        {
            Ok(r) => Ok(r.success),
            Err(e) if e.is(code::CONSUMER_NOT_FOUND) || e.is(code::STREAM_NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Pauses a consumer until `until` (RFC 3339), or resumes it with `None`.
    pub async fn pause_consumer(
        &self,
        stream: &str,
        name: &str,
        until: Option<&str>,
    ) -> Result<bool, JsError> {
        let body = match until {
            Some(t) => Self::json(
                JsOp::ConsumerPause,
                &serde_json::json!({ "pause_until": t }),
            )?,
            None => Vec::new(),
        };
        let r: PauseResponse = self
            .call(
                JsOp::ConsumerPause,
                self.subject(&format!("CONSUMER.PAUSE.{stream}.{name}")),
                body,
            )
            .await?;
        Ok(r.paused)
    }

    /// Every consumer of a stream with its configuration, one request per page.
    pub async fn list_consumers(
        &self,
        stream: &str,
    ) -> Result<(Vec<ConsumerInfo>, Vec<String>), JsError> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        let mut offset = 0usize;
        loop {
            let body = Self::json(JsOp::ConsumerList, &serde_json::json!({ "offset": offset }))?;
            let page: ConsumerListPage = self
                .call(
                    JsOp::ConsumerList,
                    self.subject(&format!("CONSUMER.LIST.{stream}")),
                    body,
                )
                .await?;
            let n = page.consumers.len();
            out.extend(page.consumers);
            missing.extend(page.missing);
            offset += n;
            if n == 0 || offset >= page.total {
                break;
            }
        }
        Ok((out, missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pedantic_from_version() {
        assert!(supports_pedantic("2.15.1"));
        assert!(supports_pedantic("2.11.0"));
        assert!(!supports_pedantic("2.10.26"));
        assert!(!supports_pedantic(""));
        assert!(supports_pedantic("3.0.0"));
    }
}
