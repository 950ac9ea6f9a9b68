//! novamedic's node agent.
//!
//! The agent reads the node it runs on and reports to the controller:
//!
//! - `collect`: resources (sysinfo), qemu guests, nova's config files and
//!   nova-compute's process, each a plain function of the host;
//! - `systemd`: nova-compute's unit over systemd's D-Bus API, watched for
//!   state changes, and the one write the agent makes: restarting that unit;
//! - `health`: turns a report into healthy / degraded / failed / unknown with
//!   reasons;
//! - `executor`: runs controller commands under the agent's own rules (unit
//!   allowlist, command ids executed at most once, deadlines, restart budget);
//! - `logwatch`: follows nova-compute's log file and journal and keeps the
//!   faults that the signature catalogue finds in them;
//! - `classify`: the `classify` subcommand, which diagnoses copied logs;
//! - `notify`: systemd's readiness, watchdog and status notifications;
//! - `probe`: an oslo.messaging RPC call to nova-compute's queue over
//!   RabbitMQ, which shows whether nova-compute consumes it;
//! - `transport`: the gRPC stream to the controller, with reconnects;
//! - `report`: assembles the `NodeReport` that `check` prints and the
//!   transport sends.

pub mod classify;
pub mod collect;
pub mod config;
pub mod executor;
pub mod health;
pub mod logsearch;
pub mod logwatch;
pub mod notify;
pub mod probe;
pub mod report;
pub mod systemd;
pub mod transport;
