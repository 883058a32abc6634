<<<<<<< HEAD
//! Shared support of the test suites: backends, the scenario harness, a local HTTP sink.

pub mod backend;
pub mod harness;
pub mod sink;
=======
//! Shared test support.

pub mod moto;
>>>>>>> h/aws
