//! The NATS side: wire types, spec -> desired config, normalisation and diff,
//! connections, the JetStream API client, errors and advisories.

pub mod advisory;
pub mod api;
pub mod asset;
pub mod bucket_config;
pub mod config;
pub mod connection;
pub mod consumer_config;
pub mod error;
pub mod mapping;
pub mod owner;
pub mod stream_config;
pub mod wire;
