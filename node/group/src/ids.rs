//! Member id generation without randomness inside the coordinator.
//!
//! Kafka names a member `{client_id}-{uuid}` (static members:
//! `{group_instance_id}-{uuid}`). The coordinator draws the UUID bits from an
//! injected [`IdSource`], so a seeded source makes every run reproducible; the
//! shell seeds it from the OS once at start-up.

/// Source of 128-bit values for member ids.
pub trait IdSource {
    fn next_u128(&mut self) -> u128;
}

/// Deterministic [`IdSource`]: SplitMix64 over a seed. Not cryptographic;
/// member ids only need to be unique within a group, not secret.
#[derive(Clone, Debug)]
pub struct SeededIds {
    state: u64,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        SeededIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl IdSource for SeededIds {
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

/// Formats bits as a version-4 UUID string (`8-4-4-4-12` lowercase hex), the
/// shape Java's `UUID.randomUUID().toString()` gives Kafka member ids.
pub(crate) fn format_uuid(bits: u128) -> String {
    let v = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape_and_determinism() {
        let mut a = SeededIds::new(7);
        let mut b = SeededIds::new(7);
        let x = format_uuid(a.next_u128());
        assert_eq!(x, format_uuid(b.next_u128()));
        assert_eq!(x.len(), 36);
        assert_eq!(&x[14..15], "4");
        assert!(matches!(&x[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(x, format_uuid(a.next_u128()));
    }
}
