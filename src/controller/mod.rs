//! The controllers: one reconcile engine for the asset kinds and one for Accounts, on
//! shared machinery. Decisions are pure ([`plan`]); the executors ([`assets`]) and the
//! engine ([`engine`]) perform them. See ARCHITECTURE.md for the flow.

pub mod account;
pub mod assets;
pub mod bucket;
pub mod connect;
pub mod consumer;
pub mod context;
pub mod election;
pub mod engine;
pub mod kinds;
pub mod plan;
pub mod registry;
pub mod runner;
pub mod scanner;
pub mod status;
pub mod stream;
pub mod stream_reads;
