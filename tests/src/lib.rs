//! Shared support of the test suites: backends, the scenario harness, a local HTTP sink, moto,
//! and the real local server started in-process.

pub mod backend;
pub mod harness;
pub mod moto;
pub mod scale;
pub mod server;
pub mod sink;
pub mod units;
