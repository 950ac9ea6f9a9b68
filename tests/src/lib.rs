//! Shared helpers of the end-to-end tests.
//!
//! - `cli_output`: the operator CLI's `-o json` output and exit code;
//! - `system_env`: whether this machine can run the system tests, and where
//!   the Debian tree, the workspace and the built binaries are;
//! - `container`: real systemd booted with `systemd-nspawn`;
//! - `fleet_sim`: many simulated agents on one controller, with scripted
//!   faults, for the storm tests and the fleet benchmark;
//! - `fake_controller`: a stand-in controller that sends the agent any
//!   command, for the checks the real controller cannot make;
//! - `private_nova`: the real nova stack, the agent and the controller in
//!   one container with a network namespace of its own;
//! - `nova` and `nova_api`: the real Debian nova stack in a container, and
//!   nova-api, the scheduler and Glance beside it;
//! - `slice`: the agent and the stand-in nova-compute inside a container,
//!   the controller on the host, and the CLI that drives them.

pub mod cli_output;
pub mod container;
pub mod fake_controller;
pub mod fleet_sim;
pub mod nova;
pub mod nova_api;
pub mod private_nova;
pub mod slice;
pub mod system_env;
