//! Implementations of the ports.

#[cfg(any(feature = "embedded", feature = "aws"))]
pub mod log_batch;
#[cfg(any(feature = "embedded", feature = "aws"))]
pub mod pack;

#[cfg(feature = "embedded")]
pub mod sqlite;

#[cfg(feature = "aws")]
pub mod aws;
