//! A small OpenStack client for the calls `novamedic diagnose` and the
//! controller's Nova poller make: Keystone v3 authentication and its service
//! catalog, GETs on Nova, Glance, Neutron, Cinder and Placement, and the one write,
//! `PUT /os-services/{id}`, that disables or enables a compute service.
//!
//! - [`config`]: credentials from clouds.yaml, secure.yaml, `OS_*` variables
//!   and flags, in the `openstack` command line's order.
//! - [`session`]: tokens, the catalog, microversions, timeouts, pagination
//!   and error bodies.
//! - [`types`]: the response fields diagnosis reads; everything is optional
//!   except ids, since policy and microversions hide fields.
//! - [`nova`], [`placement`], [`others`]: one function per call.

pub mod config;
pub mod error;
pub mod nova;
pub mod others;
pub mod placement;
pub mod secret;
pub mod session;
pub mod types;

use std::fmt;

pub use config::{AuthType, CloudConfig, ConfigError};
pub use error::ApiError;
pub use secret::Secret;
pub use session::Client;

/// The OpenStack services the client calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Identity,
    Compute,
    Image,
    Network,
    BlockStorage,
    Placement,
}

impl Service {
    /// Catalog types to look for, in order: the official type, then the
    /// aliases clouds still register (Cinder is often `volumev3`).
    pub fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::Compute => &["compute"],
            Service::Image => &["image"],
            Service::Network => &["network"],
            Service::BlockStorage => &[
                "block-storage",
                "volumev3",
                "volumev2",
                "volume",
                "block-store",
            ],
            Service::Placement => &["placement"],
        }
    }

    /// The official service type, also the key of an endpoint override.
    pub fn service_type(self) -> &'static str {
        self.catalog_types()[0]
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Identity => "Keystone",
            Service::Compute => "Nova",
            Service::Image => "Glance",
            Service::Network => "Neutron",
            Service::BlockStorage => "Cinder",
            Service::Placement => "Placement",
        })
    }
}
