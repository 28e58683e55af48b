//! Storage on one shard: O_DIRECT segment files, recovery, the batch cache.

pub mod cache;
pub mod partition;
pub mod read_ahead;
pub mod space;
pub mod writer;
