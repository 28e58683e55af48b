//! Keeps each shard's metadata in step with the controller, and opens,
//! reconfigures or removes the partitions the shard owns accordingly.
//!
//! Every shard subscribes to the controller's ordered delta stream on its
//! own, applies deltas to its copy of the image, and rebuilds its
//! [`MetadataView`] from it (cheap at the metadata sizes of one cluster and
//! only done when metadata changes). Partition work that follows a change
//! (opening a new partition's folder, deleting a removed topic's) happens on
//! the owning shard, in delta order.

use crate::shard::{MetadataView, NodeView, PartitionView, Shard, TopicView, now_ms};
use crate::storage::partition::{Partition, StorageEnv, TopicSettings};
use std::collections::HashSet;
use std::rc::Rc;
use weir_controller::{Command, CommandResult, ControllerError, MetadataImage, TopicConfig};
use weir_node_core::log::LogConfig;
use weir_proto::TopicPartition;

thread_local! {
    static IMAGE: std::cell::RefCell<MetadataImage> = std::cell::RefCell::new(MetadataImage::default());
}

/// Runs `f` with this shard's copy of the controller's image.
pub fn with_image<T>(f: impl FnOnce(&MetadataImage) -> T) -> T {
    IMAGE.with(|i| f(&i.borrow()))
}

/// The settings a partition's log applies for a topic config.
pub fn settings_for(config: &TopicConfig) -> TopicSettings {
    TopicSettings {
        log: LogConfig {
            segment_bytes: config.segment_bytes.max(1) as u64,
            segment_ms: config.segment_ms,
            retention_ms: config.retention_ms_limit().map(|v| v as i64),
            retention_bytes: config.retention_bytes_limit(),
            ..LogConfig::default()
        },
        max_message_bytes: config.max_message_bytes.max(1) as usize,
        log_append_time: config.message_timestamp_type
            == weir_controller::config::TimestampType::LogAppendTime,
        min_insync_replicas: config.min_insync_replicas.max(1) as usize,
    }
}

fn build_view(image: &MetadataImage, own: &NodeView) -> MetadataView {
    let mut view = MetadataView {
        cluster_id: image.cluster_id.clone(),
        controller_id: own.id.0,
        // Fenced nodes are left out, as a KRaft broker does: clients do not
        // wait on a node the controller has declared gone.
        nodes: image
            .nodes
            .values()
            .filter(|n| image.registrations.get(&n.id).is_none_or(|r| !r.fenced))
            .map(|n| NodeView {
                id: n.id,
                host: n.host.clone(),
                port: n.port as i32,
                rack: n.rack.clone(),
            })
            .collect(),
        ..Default::default()
    };
    if view.nodes.is_empty() {
        view.nodes.push(own.clone());
    }
    for t in image.topics.values() {
        view.insert_topic(TopicView {
            name: t.name.clone(),
            id: t.id,
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionView {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                })
                .collect(),
            overrides: t.overrides.clone(),
            internal: t.internal,
        });
    }
    view
}

fn own_node(shard: &Shard) -> NodeView {
    let port = shard.config.listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(9092);
    NodeView {
        id: shard.node_id,
        host: shard.config.advertised_host.clone(),
        port,
        rack: shard.config.rack.clone(),
    }
}

/// Subscribes this shard to the controller, opens (recovers) the partitions
/// it owns, and keeps applying deltas in the background.
pub async fn start(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let (image, deltas) = shard.controller.subscribe();
    IMAGE.with(|i| *i.borrow_mut() = image);
    remove_stale_dirs(shard);
    reconcile(shard).await?;
    let shard = shard.clone();
    glommio::spawn_local(async move {
        while let Ok(delta) = deltas.recv_async().await {
            IMAGE.with(|i| {
                let mut image = i.borrow_mut();
                image.apply_delta(&delta);
                while let Ok(more) = deltas.try_recv() {
                    image.apply_delta(&more);
                }
            });
            if let Err(e) = reconcile(&shard).await {
                tracing::error!(shard = shard.id.0, "applying metadata: {e:#}");
            }
        }
    })
    .detach();
    Ok(())
}

/// Background upkeep of the shard's partitions: retention, and in `write`
/// durability the periodic fdatasync.
pub fn spawn_background(shard: &Rc<Shard>) {
    let s = shard.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            for space in s.space.values() {
                space.refresh();
            }
        }
    })
    .detach();
    let s = shard.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(std::time::Duration::from_secs(5)).await;
            let partitions: Vec<Rc<Partition>> = s.partitions.borrow().values().cloned().collect();
            for p in partitions {
                if let Err(e) = p.enforce_retention(now_ms()).await {
                    tracing::warn!(partition = %p.tp, "retention: {e}");
                }
                // After a restart the HW starts here (a stale value is safe:
                // it only ever moves forward from it).
                if let Err(e) = p.checkpoint_high_watermark(false).await {
                    tracing::warn!(partition = %p.tp, "high-watermark checkpoint: {e}");
                }
            }
        }
    })
    .detach();
    if shard.config.durability == crate::config::Durability::Write {
        let s = shard.clone();
        let every = std::time::Duration::from_millis(shard.config.flush_ms.max(1));
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(every).await;
                let partitions: Vec<Rc<Partition>> =
                    s.partitions.borrow().values().cloned().collect();
                for p in partitions {
                    let _ = p.background_sync().await;
                }
            }
        })
        .detach();
    }
}

/// Partition folders this node no longer hosts — the topic was deleted, or
/// a reassignment moved the replica away, while this node was down — are
/// removed at start-up (Kafka's stray logs).
fn remove_stale_dirs(shard: &Shard) {
    let me = shard.node_id;
    let wanted: HashSet<String> = with_image(|image| {
        image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.leader == me || p.replicas.contains(&me))
                    .map(move |p| format!("{}-{}", t.name, p.partition.0))
            })
            .collect()
    });
    for dir in &shard.config.data_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            if !e.path().is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            let Some((topic, part)) = name.rsplit_once('-') else { continue };
            let Ok(part) = part.parse::<i32>() else { continue };
            let tp = TopicPartition::new(topic, part);
            if shard.shard_for(&tp) == shard.id && !wanted.contains(&name) {
                tracing::info!(dir = %e.path().display(), "removing a partition this node no longer hosts");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Brings the shard's view and partitions in line with the image.
async fn reconcile(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let own = own_node(shard);
    let view = with_image(|image| build_view(image, &own));
    let mut wanted = Vec::new();
    with_image(|image| {
        for t in image.topics.values() {
            let config = image.topic_config(&t.name).expect("topic exists");
            let settings = settings_for(&config);
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.clone(), p.partition.0);
                let hosted = p.leader == shard.node_id || p.replicas.contains(&shard.node_id);
                if hosted && shard.shard_for(&tp) == shard.id {
                    wanted.push((tp, t.id, settings.clone()));
                }
            }
        }
    });
    let wanted_set: HashSet<TopicPartition> = wanted.iter().map(|w| w.0.clone()).collect();
    let removed: Vec<Rc<Partition>> = shard
        .partitions
        .borrow()
        .iter()
        .filter(|(tp, p)| {
            !wanted_set.contains(*tp) || wanted.iter().any(|w| &w.0 == *tp && w.1 != p.topic_id)
        })
        .map(|(_, p)| p.clone())
        .collect();
    for p in removed {
        crate::kafka::groups::partition_closing(shard, &p.tp);
        shard.partitions.borrow_mut().remove(&p.tp);
        p.remove().await;
        tracing::info!(partition = %p.tp, "partition removed");
    }
    for (tp, id, settings) in wanted {
        let existing = shard.partition(&tp);
        match existing {
            Some(p) => {
                if p.settings() != settings {
                    p.update_settings(settings);
                }
            }
            None => {
                anyhow::ensure!(
                    shard.partitions.borrow().len() < shard.limits.partitions_per_node_max,
                    "partition limit reached ({})",
                    shard.limits.partitions_per_node_max
                );
                let dir = shard.data_dir_for(&tp);
                let env = StorageEnv {
                    durability: shard.config.durability,
                    limits: shard.limits.clone(),
                    shard_cache: shard.cache.clone(),
                    read_aheads: shard.read_aheads.clone(),
                    space: shard.space[&dir].clone(),
                    replica: replica_config(shard),
                };
                let p = Partition::open(&dir, tp.clone(), id, settings, &env, now_ms())
                    .await
                    .map_err(|e| anyhow::anyhow!("opening {tp}: {e}"))?;
                shard.partitions.borrow_mut().insert(tp, p.clone());
            }
        }
    }
    *shard.metadata.borrow_mut() = view;
    crate::replication::apply_states(shard).await;
    shard.metadata_changed.notify(usize::MAX);
    Ok(())
}

/// The replica core's settings on this node (partition set at open).
fn replica_config(shard: &Shard) -> weir_node_core::replica::ReplicaConfig {
    let config = &shard.config;
    weir_node_core::replica::ReplicaConfig {
        node: shard.node_id,
        partition: weir_proto::PartitionId(0),
        // Checked by the shell against the topic's current config instead.
        min_insync_replicas: 1,
        replica_lag_time_max_ms: config.replica_lag_time_max_ms,
        fetch_backoff_ms: config.replica_fetch_backoff_ms,
        // A long poll is not a lost request.
        request_timeout_ms: i64::from(config.replica_fetch_wait_max_ms) + 30_000,
        ack_waiters_max: 1,
    }
}

/// Asks the controller for a block of producer ids for this node.
pub async fn allocate_producer_ids(
    shard: &Shard,
    count: u64,
) -> Result<(i64, u64), ControllerError> {
    let cmd = Command::AllocateProducerIds { node: shard.node_id, count: count as u32 };
    match shard.submit(cmd).await? {
        CommandResult::ProducerIds { first, count } => Ok((first.0, count as u64)),
        other => {
            Err(ControllerError::Unavailable(format!("unexpected controller answer {other:?}")))
        }
    }
}

/// Registers this node with the controller: where clients and other nodes
/// reach it, and which process this is (`incarnation`, new per start).
pub fn register_command(
    config: &crate::config::NodeConfig,
    port: u16,
    replication_addr: Option<String>,
    incarnation: u64,
) -> Command {
    Command::RegisterNode(weir_controller::NodeInfo {
        id: weir_proto::NodeId(config.node_id),
        host: config.advertised_host.clone(),
        port,
        rack: config.rack.clone(),
        replication_addr,
        incarnation,
    })
}
