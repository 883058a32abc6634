//! Implementations of the ports.

#[cfg(feature = "embedded")]
pub mod sqlite;

#[cfg(feature = "aws")]
pub mod aws;
