//! Shared support of the test suites: backends, the scenario harness, a local HTTP sink,
//! and the real local server started in-process.

pub mod backend;
pub mod harness;
pub mod server;
pub mod sink;
