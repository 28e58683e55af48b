//! Weir wire formats. No I/O, no clock.
//!
//! - [`ids`]: newtypes shared by every crate (`Offset`, `Position`, …).
//! - [`batch`]: zero-copy view of Kafka record batches (magic v2).

pub mod batch;
pub mod ids;

pub use ids::*;
