//! Readers of the host: each returns plain data and never talks to the
//! controller.

pub mod dependencies;
pub mod guests;
pub mod nova_conf;
pub mod process;
pub mod resources;
