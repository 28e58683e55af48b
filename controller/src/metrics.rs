//! The controller's Prometheus metrics (the ones a Kafka operator reads from
//! the active controller: ActiveControllerCount, GlobalTopicCount,
//! GlobalPartitionCount, OfflinePartitionsCount, PreferredReplicaImbalanceCount,
//! FencedBrokerCount, LeaderElectionRateAndTimeMs and
//! UncleanLeaderElectionsPerSec as counts), and the small HTTP endpoint that
//! serves `/metrics` for both the controller and the node.
//!
//! Everything here is read from the published metadata image at scrape time:
//! the controller thread keeps no extra counters (the election counts are in
//! the image, so every member and subscriber reports the same).

use crate::state::{MetadataImage, NO_LEADER};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use weir_proto::exposition::Exposition;

/// Adds the controller's metric families, computed from `image`. `active`:
/// whether this process is the active controller (a single-member quorum
/// always is).
pub fn add_families(e: &mut Exposition, image: &MetadataImage, active: bool) {
    e.gauge(
        "weir_controller_active",
        "1 on the active controller, 0 elsewhere; the sum over a cluster must be 1 (ActiveControllerCount).",
    )
    .sample(&[], f64::from(u8::from(active)));
    e.gauge(
        "weir_controller_metadata_version",
        "Metadata records applied: the offset of the next record in the metadata log.",
    )
    .sample(&[], image.version as f64);
    e.gauge("weir_controller_registered_nodes", "Storage nodes registered with the controller.")
        .sample(&[], image.nodes.len() as f64);
    let fenced = image.registrations.values().filter(|r| r.fenced).count();
    e.gauge(
        "weir_controller_fenced_nodes",
        "Registered nodes that are fenced: their session expired (FencedBrokerCount).",
    )
    .sample(&[], fenced as f64);
    e.counter(
        "weir_controller_leader_elections_total",
        "Leader elections applied: partition changes that gave a partition a new leader or leader epoch (LeaderElectionRateAndTimeMs count).",
    )
    .sample(&[], image.leader_elections as f64);
    e.counter(
        "weir_controller_unclean_leader_elections_total",
        "Leader elections that took a leader from outside the ISR (UncleanLeaderElectionsPerSec count).",
    )
    .sample(&[], image.unclean_leader_elections as f64);
    e.gauge(
        "weir_controller_topics",
        "Topics in the cluster, internal ones included (GlobalTopicCount).",
    )
    .sample(&[], image.topics.len() as f64);
    let partitions = image.topics.values().flat_map(|t| t.partitions.iter());
    let (mut total, mut offline, mut imbalanced) = (0u64, 0u64, 0u64);
    for p in partitions {
        total += 1;
        let leader_live = image.registration(p.leader).is_some_and(|r| !r.fenced);
        if p.leader == NO_LEADER || !leader_live {
            offline += 1;
        }
        if p.replicas.first().is_some_and(|preferred| *preferred != p.leader) {
            imbalanced += 1;
        }
    }
    e.gauge("weir_controller_partitions", "Partitions in the cluster (GlobalPartitionCount).")
        .sample(&[], total as f64);
    e.gauge(
        "weir_controller_offline_partitions",
        "Partitions without a leader (-1), or led by a node that is not registered or fenced (OfflinePartitionsCount).",
    )
    .sample(&[], offline as f64);
    e.gauge(
        "weir_controller_preferred_replica_imbalance",
        "Partitions whose leader is not their preferred (first) replica (PreferredReplicaImbalanceCount).",
    )
    .sample(&[], imbalanced as f64);
}

/// The controller's metrics in the Prometheus text format.
pub fn render(image: &MetadataImage, active: bool) -> String {
    let mut e = Exposition::new();
    add_families(&mut e, image, active);
    e.render()
}

/// Serves `GET /metrics` with `render` from a plain thread on an exclusive
/// std listener (a glommio listener would set SO_REUSEPORT, and two processes
/// on one port would then split scrapes silently). Scrapes are answered one
/// at a time; each connection is closed after its answer.
pub fn serve_http(
    listener: TcpListener,
    thread_name: &str,
    render: impl Fn() -> String + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(thread_name.into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Err(e) = answer(stream, &render) {
                tracing::debug!("metrics connection: {e}");
            }
        }
    })
}

fn answer(mut stream: TcpStream, render: &dyn Fn() -> String) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    // Read the request head, bounded: scrapes are tiny.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let (status, body, kind) = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
        ("200 OK", render(), "text/plain; version=0.0.4; charset=utf-8")
    } else {
        ("404 Not Found", "only /metrics is served here\n".to_string(), "text/plain; charset=utf-8")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NodeInfo, PartitionMeta, TopicMeta};
    use weir_proto::{LeaderEpoch, NodeId, PartitionId};

    #[test]
    fn counts_offline_and_imbalanced_partitions_from_the_image() {
        let mut image = MetadataImage::default();
        image.nodes.insert(
            NodeId(1),
            NodeInfo { id: NodeId(1), host: "h".into(), port: 1, ..Default::default() },
        );
        let part = |i: i32, leader: i32, replicas: Vec<i32>| PartitionMeta {
            partition: PartitionId(i),
            leader: NodeId(leader),
            leader_epoch: LeaderEpoch(0),
            replicas: replicas.iter().map(|r| NodeId(*r)).collect(),
            isr: vec![NodeId(leader)],
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        image.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: Default::default(),
                internal: false,
                partitions: vec![
                    part(0, 1, vec![1, 2]),
                    part(1, 2, vec![1, 2]),
                    part(2, -1, vec![1]),
                ],
                overrides: Default::default(),
            },
        );
        let text = render(&image, true);
        assert!(text.contains("weir_controller_active 1\n"), "{text}");
        assert!(text.contains("weir_controller_partitions 3\n"), "{text}");
        // Leader 2 is not registered, leader -1 is none.
        assert!(text.contains("weir_controller_offline_partitions 2\n"), "{text}");
        assert!(text.contains("weir_controller_preferred_replica_imbalance 2\n"), "{text}");
        assert!(text.contains("weir_controller_topics 1\n"), "{text}");
        assert!(text.contains("weir_controller_fenced_nodes 0\n"), "{text}");
        assert!(text.contains("weir_controller_leader_elections_total 0\n"), "{text}");
        assert!(text.contains("# TYPE weir_controller_unclean_leader_elections_total counter"));
    }
}
