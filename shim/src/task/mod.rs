//! The task service and the state behind it.

mod audit_log;
mod bundle_state;
mod confine;
mod container;
mod error;
mod events;
mod exits;
mod io_owner;
pub(crate) mod metrics;
mod oom;
mod process;
mod service;
mod state;
mod stdio;

pub use bundle_state::BundleState;
pub use error::ShimError;
pub use events::EventSink;
pub use process::timestamp;
pub use service::MoatTask;
