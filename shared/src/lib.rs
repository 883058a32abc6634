//! The WeConnect engine: workflows, the execution protocol, node types, ports and adapters,
//! and the HTTP router. Every binary (the local server and the four Lambda functions) is a
//! thin host around this crate.

pub mod adapters;
pub mod callbacks;
pub mod config;
pub mod engine;
pub mod error;
pub mod expr;
pub mod graph;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod limits;
pub mod model;
pub mod nodes;
pub mod ports;
pub mod secrets;
pub mod triggers;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::{EngineError, EngineResult};
