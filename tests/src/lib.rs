//! Shared test support.

pub mod server;
