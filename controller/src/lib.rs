//! novamedic's controller: it keeps the fleet's state, serves agents and
//! operators over gRPC, and contains the operator CLI.
//!
//! Layout and what each part may know:
//! - [`store`]: the database. The only module with SQL or sqlx types.
//! - [`fleet`]: the in-memory state of every node, its open stream and its
//!   pending commands. No I/O.
//! - [`controller`]: the steps that change state, each applied to the fleet
//!   and then persisted with its events.
//! - [`agent_api`] and [`operator_api`]: the two gRPC services, thin adapters
//!   over [`controller`].
//! - [`report_timing`]: report latency percentiles for benchmarks, logged
//!   at debug level.
//! - [`server`]: binds, serves both services, marks stale nodes, shuts down.
//! - [`config`]: the controller's TOML file.
//! - [`cli`]: the `novamedic` command line, server and operator client in one.
//! - [`openstack`]: a small OpenStack API client (Keystone, Nova, Glance,
//!   Neutron, Cinder), used by `novamedic diagnose` and [`nova_view`].
//! - [`nova_view`]: Nova's own view of the fleet, polled for the policy and
//!   for operators when a cloud is configured.
//! - [`diagnose`]: why an instance is in ERROR, from the OpenStack APIs and
//!   the fleet's reports.

pub mod agent_api;
pub mod alerting;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod diagnose;
pub mod fleet;
pub mod metrics;
pub mod nova_view;
pub mod openstack;
pub mod operator_api;
pub mod policy;
pub mod report_timing;
pub mod server;
pub mod store;
pub mod tls_listener;

/// Version of this controller, sent to agents in HelloAck.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Formats an error with its sources, `outer: inner: innermost`, for logs and
/// messages that show the chain once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
