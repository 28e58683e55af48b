//! Weir wire formats. No I/O, no clock.
//!
//! - [`ids`]: newtypes shared by every crate (`Offset`, `Position`, …).
//! - [`batch`]: zero-copy view of Kafka record batches (magic v2).
//! - [`exposition`]: the Prometheus text format of the `/metrics` endpoints.

pub mod batch;
pub mod exposition;
pub mod ids;

pub use ids::*;
