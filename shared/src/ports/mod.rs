//! The engine's only ways out: storage, the job queue, execution events and time.
//! Adapters in `crate::adapters` implement them; the engine never names an adapter.

mod clock;
mod events;
mod queue;
mod store;

pub use clock::*;
pub use events::*;
pub use queue::*;
pub use store::*;
