//! Shared support of the test suites: backends, the scenario harness, a local HTTP sink, moto.

pub mod backend;
pub mod harness;
pub mod moto;
pub mod sink;
