//! Configuration and limits of one coordinator.
//!
//! Every table the coordinator keeps has a bound here. At a bound the
//! coordinator answers with the Kafka error a client already knows how to
//! handle and never grows.

/// Bounds on what one [`crate::GroupCoordinator`] holds in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimits {
    /// Groups (any state) one coordinator tracks. A new group beyond it is
    /// refused with COORDINATOR_NOT_AVAILABLE, which clients retry after
    /// rediscovering the coordinator. 10 000 groups per partition is far more
    /// than Kafka clusters carry per `__consumer_offsets` partition.
    pub groups_max: usize,
    /// `group.max.size`: members plus members that were handed an id and have
    /// not joined yet. Kafka's default is unbounded; 1 000 consumers in one
    /// group is already beyond any topic's useful partition count.
    pub members_per_group_max: usize,
    /// Sum of protocol metadata bytes in one JoinGroup (a consumer's
    /// subscription lists its topics; 256 KiB holds thousands of names).
    pub member_metadata_bytes_max: usize,
    /// Protocols (assignors) one member may offer.
    pub protocols_per_member_max: usize,
    /// Assignment bytes the leader may hand one member.
    pub assignment_bytes_max: usize,
    /// Encoded size of one group metadata record. 1 MiB is Kafka's default
    /// `max.message.bytes` of `__consumer_offsets`; a snapshot above it could
    /// not be appended anyway.
    pub group_record_bytes_max: usize,
    /// Length of a group id (they become record keys).
    pub group_id_bytes_max: usize,
    /// Committed partitions per group.
    pub offsets_per_group_max: usize,
    /// Committed partitions over all groups of the coordinator.
    pub offsets_max: usize,
    /// `offset.metadata.max.bytes` (Kafka: 4096).
    pub offset_metadata_bytes_max: usize,
    /// Appends handed to the shell and not yet completed. Commits beyond it get
    /// COORDINATOR_LOAD_IN_PROGRESS, which clients retry after a backoff.
    pub appends_in_flight_max: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            groups_max: 10_000,
            members_per_group_max: 1_000,
            member_metadata_bytes_max: 256 * 1024,
            protocols_per_member_max: 32,
            assignment_bytes_max: 256 * 1024,
            group_record_bytes_max: 1024 * 1024,
            group_id_bytes_max: 1024,
            offsets_per_group_max: 100_000,
            offsets_max: 1_000_000,
            offset_metadata_bytes_max: 4096,
            appends_in_flight_max: 1024,
        }
    }
}

/// Configuration of one coordinator (one `__consumer_offsets` partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The `__consumer_offsets` partition this coordinator owns.
    pub partition: u32,
    /// `offsets.topic.num.partitions` (Kafka: 50). Groups that do not map to
    /// `partition` are answered NOT_COORDINATOR.
    pub num_partitions: u32,
    /// `group.min.session.timeout.ms` (Kafka: 6000).
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms` (Kafka: 1 800 000).
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an
    /// empty group waits for more members. Kafka's default is 3000; Weir's is
    /// 0 so tests and tools are snappy. Operators running large groups should
    /// set Kafka's value.
    pub initial_rebalance_delay_ms: i32,
    /// How long a newly joined member may wait in a rebalance before it is
    /// dropped (Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`: 5 minutes).
    pub new_member_join_timeout_ms: i32,
    pub limits: GroupLimits,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            partition: 0,
            num_partitions: 1,
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 0,
            new_member_join_timeout_ms: 300_000,
            limits: GroupLimits::default(),
        }
    }
}

impl GroupConfig {
    /// Asserts the configuration is usable; called by the coordinator at
    /// construction (a bad configuration is a bug of the caller).
    pub(crate) fn validate(&self) {
        assert!(self.num_partitions > 0);
        assert!(self.partition < self.num_partitions);
        assert!(
            self.session_timeout_ms_min > 0
                && self.session_timeout_ms_min <= self.session_timeout_ms_max
        );
        assert!(self.initial_rebalance_delay_ms >= 0);
        assert!(self.new_member_join_timeout_ms > 0);
        let l = &self.limits;
        assert!(l.groups_max > 0 && l.members_per_group_max > 0 && l.protocols_per_member_max > 0);
        // Strings in records carry an i16 length.
        assert!(l.group_id_bytes_max <= i16::MAX as usize);
        assert!(l.offset_metadata_bytes_max <= i16::MAX as usize);
        assert!(l.appends_in_flight_max > 0);
    }
}
