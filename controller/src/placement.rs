//! Replica placement for new partitions: Kafka's `assignReplicasToBrokers`
//! (`AdminUtils`), made deterministic.
//!
//! Kafka draws the start index and the follower shift at random; here both
//! follow a *cursor*, the number of partitions the cluster had before plus
//! the index of the partition in the command, so leaders (first replicas)
//! spread round-robin over the nodes from where the cluster left off, and
//! followers shift by one more each time the leaders wrapped around the
//! node list — exactly Kafka's placement with `startIndex = 0` and
//! `startPartitionId = cursor`.
//!
//! When every node has a rack, the node list is first rack-alternated
//! (Kafka's `getRackAlternatedBrokerList`: racks in name order, one node
//! of each in turn), and followers skip nodes in racks that already hold a
//! replica while some rack holds none, so a partition's replicas span as
//! many racks as there are.

use std::collections::{BTreeMap, BTreeSet};

use weir_proto::ids::NodeId;

/// Places `count` partitions of `rf` replicas each on `nodes` (id and rack,
/// sorted by id), the first at `cursor`. Returns the replicas of each, the
/// preferred leader first.
pub(crate) fn assign(
    nodes: &[(NodeId, Option<&str>)],
    cursor: usize,
    count: usize,
    rf: usize,
) -> Vec<Vec<NodeId>> {
    assert!(rf >= 1 && rf <= nodes.len(), "replication factor checked before placing");
    assert!(nodes.windows(2).all(|w| w[0].0 < w[1].0), "nodes sorted by id, once each");
    let racks: Option<BTreeMap<NodeId, &str>> =
        nodes.iter().map(|(id, rack)| rack.map(|r| (*id, r))).collect();
    match racks {
        Some(racks) if !racks.is_empty() => rack_aware(&racks, cursor, count, rf),
        _ => {
            let list: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
            (cursor..cursor + count).map(|c| rack_unaware(&list, c, rf)).collect()
        }
    }
}

/// Kafka's `replicaIndex`: the node of follower `j` (0-based), never the
/// leader's own index.
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    let shift = 1 + (shift + j) % (n - 1);
    (first + shift) % n
}

fn rack_unaware(list: &[NodeId], cursor: usize, rf: usize) -> Vec<NodeId> {
    let n = list.len();
    let first = cursor % n;
    let shift = cursor / n;
    let mut replicas = vec![list[first]];
    replicas.extend((0..rf - 1).map(|j| list[replica_index(first, shift, j, n)]));
    replicas
}

/// Kafka's `getRackAlternatedBrokerList`.
fn rack_alternated(racks: &BTreeMap<NodeId, &str>) -> Vec<NodeId> {
    let mut by_rack: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for (id, rack) in racks {
        by_rack.entry(rack).or_default().push(*id);
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| by_rack.values().filter_map(move |nodes| nodes.get(i).copied()))
        .collect()
}

fn rack_aware(
    racks: &BTreeMap<NodeId, &str>,
    cursor: usize,
    count: usize,
    rf: usize,
) -> Vec<Vec<NodeId>> {
    let list = rack_alternated(racks);
    let n = list.len();
    let rack_count = racks.values().collect::<BTreeSet<_>>().len();
    (cursor..cursor + count)
        .map(|c| {
            let first = c % n;
            let shift = c / n;
            let leader = list[first];
            let mut replicas = vec![leader];
            let mut racks_used = BTreeSet::from([racks[&leader]]);
            let mut k = 0;
            for _ in 0..rf - 1 {
                // Each round of n - 1 candidates visits every other node, so
                // one round always finds a node that fits (see the module doc).
                let limit = k + n;
                loop {
                    assert!(k < limit, "rack-aware placement found no node");
                    let node = list[replica_index(first, shift * rack_count, k, n)];
                    k += 1;
                    let rack = racks[&node];
                    let rack_ok = !racks_used.contains(rack) || racks_used.len() == rack_count;
                    let node_ok = !replicas.contains(&node) || replicas.len() == n;
                    if rack_ok && node_ok {
                        replicas.push(node);
                        racks_used.insert(rack);
                        break;
                    }
                }
            }
            replicas
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[i32]) -> Vec<NodeId> {
        v.iter().map(|i| NodeId(*i)).collect()
    }

    #[test]
    fn rack_unaware_matches_kafka() {
        // Kafka's AdminUtils with startIndex 0, shift 0, 5 brokers, rf 3:
        // p0 [0,1,2], p1 [1,2,3], ..., p5 (shift 1) [0,2,3].
        let nodes: Vec<(NodeId, Option<&str>)> = (0..5).map(|i| (NodeId(i), None)).collect();
        let placed = assign(&nodes, 0, 6, 3);
        assert_eq!(placed[0], ids(&[0, 1, 2]));
        assert_eq!(placed[1], ids(&[1, 2, 3]));
        assert_eq!(placed[4], ids(&[4, 0, 1]));
        assert_eq!(placed[5], ids(&[0, 2, 3]));
        // Deterministic, and a cursor continues where another call left off.
        assert_eq!(assign(&nodes, 4, 2, 3), placed[4..].to_vec());
    }

    #[test]
    fn rack_alternated_list() {
        let racks: BTreeMap<NodeId, &str> = [(1, "b"), (2, "a"), (3, "a"), (4, "c"), (5, "b")]
            .into_iter()
            .map(|(i, r)| (NodeId(i), r))
            .collect();
        assert_eq!(rack_alternated(&racks), ids(&[2, 1, 4, 3, 5]));
    }

    #[test]
    fn replicas_span_racks() {
        let nodes: Vec<(NodeId, Option<&str>)> =
            [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
                .into_iter()
                .map(|(i, r)| (NodeId(i), Some(r)))
                .collect();
        let rack = |n: NodeId| nodes.iter().find(|(i, _)| *i == n).unwrap().1.unwrap();
        for cursor in [0, 7] {
            let placed = assign(&nodes, cursor, 12, 3);
            let mut leaders = BTreeMap::<NodeId, usize>::new();
            for replicas in &placed {
                let racks: BTreeSet<&str> = replicas.iter().map(|n| rack(*n)).collect();
                assert_eq!(racks.len(), 3, "{replicas:?}");
                *leaders.entry(replicas[0]).or_default() += 1;
            }
            // 12 partitions over 6 nodes: every node leads two.
            assert!(leaders.values().all(|&c| c == 2), "{leaders:?}");
        }
        // Two racks, rf 3: both racks used, no node twice.
        let two: Vec<(NodeId, Option<&str>)> = nodes[..4].to_vec();
        for replicas in assign(&two, 0, 8, 3) {
            let racks: BTreeSet<&str> = replicas.iter().map(|n| rack(*n)).collect();
            assert_eq!(racks.len(), 2);
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
        }
    }
}
