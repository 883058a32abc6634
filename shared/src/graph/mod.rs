//! Workflow graphs: validation, the plan the engine walks, and routing.

mod plan;
mod routing;
mod validate;

pub use plan::Plan;
pub use routing::{
    Finished, connection_taken, effective_on_error, kind_taken, route, routing_fields,
    signals_failure,
};
pub use validate::{ValidationError, validate};
