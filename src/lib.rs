//! jetstream-operator: a Kubernetes operator for NATS JetStream assets.
//!
//! Layout: [`api`] holds the CRD types; [`jetstream`] the NATS side (desired config,
//! normalisation and diff, connections, errors, advisories); [`controller`] one
//! reconciler per kind on shared machinery; [`cli`] the command line; [`admin`],
//! [`metrics`] and [`telemetry`] the operations side.

#[macro_use]
mod macros;

pub mod admin;
pub mod api;
pub mod cli;
pub mod controller;
pub mod fence;
pub mod inspect;
pub mod jetstream;
pub mod metrics;
pub mod telemetry;

#[cfg(test)]
mod architecture;
