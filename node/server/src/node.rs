//! Node start-up and shutdown: guards, one pinned executor per shard, each
//! shard recovering its partitions, then accepting connections.
//!
//! Start-up guards:
//! - an exclusive `flock` on each data directory's `.lock`, so two nodes never
//!   write one log;
//! - an exclusive `flock` keyed by the Kafka port, because glommio's listeners
//!   always set SO_REUSEPORT and two nodes on one port would silently split
//!   the connections between them.
//!
//! A clean shutdown writes `.weir_clean_shutdown` in every data directory
//! after all partitions are sealed; start-up removes it, so its absence
//! means the previous run crashed (recovery scans the tails either way).

use crate::config::NodeConfig;
use crate::limits::Limits;
use crate::shard::{Job, Shard};
use anyhow::Context;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use weir_proto::ShardId;

const CLEAN_SHUTDOWN_MARKER: &str = ".weir_clean_shutdown";

/// A running node. Dropping it does not stop it: call [`RunningNode::shutdown`].
pub struct RunningNode {
    inboxes: Vec<flume::Sender<Job>>,
    pool: Option<glommio::PoolThreadHandles<anyhow::Result<()>>>,
    data_dirs: Vec<PathBuf>,
    _locks: Vec<std::fs::File>,
    pub kafka_addr: std::net::SocketAddr,
    /// Where `/metrics` is served, if enabled.
    pub metrics_addr: Option<std::net::SocketAddr>,
    heartbeat: Option<Heartbeat>,
    /// Dropped after the shards: closes every replication connection.
    endpoint: Option<weir_net::Endpoint>,
}

fn lock_file(path: &std::path::Path, what: &str) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    // SAFETY: flock on a valid, open descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    anyhow::ensure!(
        rc == 0,
        "{what} is already in use by another weir process ({})",
        path.display()
    );
    Ok(file)
}

/// Keeps freed heap memory in the process instead of returning it to the
/// kernel at once. With glibc's defaults, a buffer over 128 KiB (a fetch
/// response, a cold read, a frame) is mmap'ed and unmapped again, and freed
/// arena tops are trimmed: every such buffer is page-faulted in and zeroed by
/// the kernel anew. A cold-read profile (backlog consumer, 100 partitions)
/// spent about a third of the node's samples in page faults. The node's
/// buffers are bounded (see `Limits`), so what is kept is bounded too.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; glibc accepts these.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Starts the node and returns once every shard has recovered its partitions
/// and is accepting connections.
pub fn start(
    config: NodeConfig,
    controller: weir_controller::ControllerHandle,
) -> anyhow::Result<RunningNode> {
    config.validate()?;
    tune_allocator();
    let controller_for_metrics = controller.is_in_process().then(|| controller.clone());
    let mut locks = Vec::new();
    let mut crashed = false;
    for dir in &config.data_dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        locks.push(lock_file(&dir.join(".lock"), &format!("data directory {}", dir.display()))?);
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let has_partitions = std::fs::read_dir(dir)?.flatten().any(|e| e.path().is_dir());
        if marker.exists() {
            std::fs::remove_file(&marker)?;
        } else if has_partitions {
            crashed = true;
        }
    }
    // Resolve the listen address (port 0 picks one) with the same socket
    // options glommio's listeners use, so sockets left from a killed
    // predecessor (FIN-WAIT-2, with SO_REUSEPORT) do not block a restart. A
    // foreign listener without SO_REUSEPORT still makes the shards' bind
    // fail; another weir on this port is caught by the port lock below.
    let (probe, kafka_addr) = reserve_port(&config.listen)?;
    let port_lock = std::env::temp_dir().join(format!("weir-port-{}.lock", kafka_addr.port()));
    locks.push(lock_file(&port_lock, &format!("port {}", kafka_addr.port()))?);
    if crashed {
        tracing::warn!("no clean-shutdown marker: the previous run did not stop cleanly");
    }

    // Exclusive (no SO_REUSEPORT): a second node on this port fails here.
    let metrics_listener = if config.metrics_listen.is_empty() {
        None
    } else {
        let l = std::net::TcpListener::bind(&config.metrics_listen).with_context(|| {
            format!("metrics listener {} is not available", config.metrics_listen)
        })?;
        Some(l)
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let mut config = config;
    config.listen = kafka_addr.to_string();

    // The replication endpoint (QUIC, mutual TLS with the cluster CA).
    let (endpoint, inbound) = match start_endpoint(&config)? {
        Some((endpoint, inbound)) => (Some(endpoint), Some(inbound)),
        None => (None, None),
    };
    let replication_addr = endpoint.as_ref().map(|e| {
        let host = if config.replication_advertised_host.is_empty() {
            config.advertised_host.clone()
        } else {
            config.replication_advertised_host.clone()
        };
        format!("{host}:{}", e.local_addr().port())
    });
    // Register before serving, so the metadata every shard starts from lists
    // this node and its registration (broker epoch); a new incarnation per
    // process start tells the controller this is a restart.
    let incarnation: u64 = rand::random();
    let register = crate::metadata_sync::register_command(
        &config,
        kafka_addr.port(),
        replication_addr.clone(),
        incarnation,
    );
    let broker_epoch = match futures::executor::block_on(controller.submit(register.clone())) {
        Ok(weir_controller::CommandResult::NodeRegistered { broker_epoch, .. }) => broker_epoch,
        Ok(other) => anyhow::bail!("registering with the controller: unexpected answer {other:?}"),
        Err(e) => anyhow::bail!("registering with the controller: {e}"),
    };
    let link = crate::replication::NodeLink {
        endpoint: endpoint.as_ref().map(|e| e.handle()),
        inbound,
        broker_epoch: Arc::new(std::sync::atomic::AtomicI64::new(broker_epoch)),
    };
    tracing::info!(broker_epoch, replication = ?replication_addr, "registered with the controller");
    let heartbeat =
        Heartbeat::start(&config, controller.clone(), link.broker_epoch.clone(), register);
    let shards = config.shard_count();
    let limits = Limits::from_config(&config);
    let (senders, receivers): (Vec<_>, Vec<_>) =
        // Unbounded channels, bounded by run_on's per-peer permits: a send
        // never waits (see Shard::run_on).
        (0..shards).map(|_| flume::unbounded::<Job>()).unzip();
    let receivers = Arc::new(Mutex::new(receivers.into_iter().map(Some).collect::<Vec<_>>()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let next_index = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let cpus = placement_cpus(shards)?;
    let pool = {
        let senders = senders.clone();
        let config = config.clone();
        LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(shards, Some(cpus)))
            .name("weir-shard")
            .io_memory(config.io_memory_bytes_per_shard)
            .on_all_shards(move || {
                let index = next_index.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let inbox = receivers.lock().expect("inbox list")[index]
                    .take()
                    .expect("one inbox per shard");
                let senders = senders.clone();
                let config = config.clone();
                let limits = limits.clone();
                let controller = controller.clone();
                let ready = ready_tx.clone();
                let link = link.clone();
                async move {
                    let result = run_shard(
                        index,
                        shards,
                        config,
                        limits,
                        controller,
                        senders,
                        inbox,
                        ready.clone(),
                        link,
                    )
                    .await;
                    if let Err(e) = &result {
                        tracing::error!(shard = index, "shard failed: {e:#}");
                        let _ = ready.send(Err(anyhow::anyhow!("shard {index}: {e:#}")));
                    }
                    result
                }
            })
            .map_err(|e| anyhow::anyhow!("starting shard executors: {e}"))?
    };
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                for s in &senders {
                    let _ = s.send(shutdown_job());
                }
                let _ = pool.join_all();
                return Err(e);
            }
            Err(_) => anyhow::bail!("shards exited during start-up"),
        }
    }
    drop(probe);
    if let Some(listener) = metrics_listener {
        crate::metrics::serve_thread(
            listener,
            senders.clone(),
            config.node_id,
            config.data_dirs.clone(),
            config.data_dir_min_free_bytes,
            controller_for_metrics,
        )?;
    }
    tracing::info!(shards, addr = %kafka_addr, metrics = ?metrics_addr, "node ready");
    Ok(RunningNode {
        inboxes: senders,
        pool: Some(pool),
        data_dirs: config.data_dirs.clone(),
        _locks: locks,
        kafka_addr,
        metrics_addr,
        heartbeat: Some(heartbeat),
        endpoint,
    })
}

/// Binds (without listening) a socket with SO_REUSEADDR and SO_REUSEPORT to
/// learn the concrete address; kept until the shards listen on it.
fn reserve_port(listen: &str) -> anyhow::Result<(socket2::Socket, std::net::SocketAddr)> {
    use std::net::ToSocketAddrs;
    let addr = listen
        .to_socket_addrs()
        .with_context(|| format!("resolving listen address {listen}"))?
        .next()
        .with_context(|| format!("listen address {listen} resolves to nothing"))?;
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("Kafka listener {listen} is not available"))?;
    let bound =
        socket.local_addr()?.as_socket().context("listen address is not an IP socket address")?;
    Ok((socket, bound))
}

fn shutdown_job() -> Job {
    Box::new(|shard: Rc<Shard>| {
        Box::pin(async move {
            shard.shutting_down.set(true);
            shard.metadata_changed.notify(usize::MAX);
            SHUTDOWN.with(|e| e.notify(usize::MAX));
        })
    })
}

thread_local! {
    static SHUTDOWN: event_listener::Event = const { event_listener::Event::new() };
}

impl RunningNode {
    /// Stops accepting, seals every partition, and writes the clean-shutdown
    /// marker once all shards have closed their logs.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        // Controlled shutdown: the controller moves leaderships away first.
        if let Some(hb) = self.heartbeat.take() {
            hb.stop_controlled();
        }
        for s in &self.inboxes {
            let _ = s.send(shutdown_job());
        }
        let mut ok = true;
        if let Some(pool) = self.pool.take() {
            for r in pool.join_all() {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        ok = false;
                        tracing::error!("shard shutdown: {e:#}");
                    }
                    Err(e) => {
                        ok = false;
                        tracing::error!("shard thread: {e}");
                    }
                }
            }
        }
        if ok {
            for dir in &self.data_dirs {
                crate::storage::partition::write_atomic(
                    &dir.join(CLEAN_SHUTDOWN_MARKER),
                    b"clean\n",
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            tracing::info!("clean shutdown complete");
        }
        drop(self.endpoint.take());
        Ok(())
    }

    /// Blocks until the shards exit (they exit only on shutdown or failure).
    pub fn wait(mut self) -> anyhow::Result<()> {
        if let Some(pool) = self.pool.take() {
            for r in pool.join_all() {
                r.map_err(|e| anyhow::anyhow!("{e}"))??;
            }
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    index: usize,
    shards: usize,
    config: NodeConfig,
    limits: Limits,
    controller: weir_controller::ControllerHandle,
    peers: Vec<flume::Sender<Job>>,
    inbox: flume::Receiver<Job>,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
    link: crate::replication::NodeLink,
) -> anyhow::Result<()> {
    // Before any other DMA file is opened on these devices (glommio iopoll bug).
    for dir in &config.data_dirs {
        crate::rt::dma_probe(dir, index).await?;
    }
    let listen = config.listen.clone();
    let shard = Shard::new(
        ShardId(index as u32),
        shards,
        Rc::new(config),
        Rc::new(limits),
        controller,
        peers,
        link,
    );
    // Jobs from other shards run as local tasks.
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Ok(job) = inbox.recv_async().await {
                // Answers to this shard's run_on calls finish in one poll:
                // run those here rather than spawning a task per answer.
                let mut work = job(shard.clone());
                if futures::FutureExt::now_or_never(&mut work).is_none() {
                    glommio::spawn_local(work).detach();
                }
            }
        })
        .detach();
    }
    crate::metadata_sync::start(&shard).await?;
    crate::metadata_sync::spawn_background(&shard);
    crate::replication::start(&shard);
    let listener = glommio::net::TcpListener::bind(&listen)
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;

    let _ = ready.send(Ok(()));
    let shutdown = SHUTDOWN.with(|e| e.listen());
    let accept = {
        let shard = shard.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        glommio::spawn_local(crate::kafka::conn::serve(stream, shard.clone()))
                            .detach();
                    }
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }
    };
    futures::pin_mut!(accept);
    if !shard.shutting_down.get() {
        futures::future::select(shutdown, accept).await;
    }
    tracing::debug!(shard = index, "shard stopping");
    let partitions: Vec<_> = shard.partitions.borrow().values().cloned().collect();
    let mut result = Ok(());
    for p in partitions {
        if let Err(e) = p.close().await {
            result = Err(anyhow::anyhow!("closing {}: {e}", p.tp));
        }
    }
    result
}

/// The CPUs this process may run on (sched_getaffinity), so that shards are
/// pinned only there and systemd's `CPUAffinity=`/`AllowedCPUs=`, cgroup
/// cpusets and `taskset` apply. glommio alone would pick from every online
/// CPU. `None` if the kernel does not say.
pub fn allowed_cpus() -> Option<std::collections::BTreeSet<usize>> {
    // SAFETY: sched_getaffinity fills a zeroed cpu_set_t for this process.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    let n = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set filled above, for indexes within it.
    Some((0..n).filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) }).collect())
}

/// One CPU per shard, chosen among the CPUs this process may use.
fn placement_cpus(shards: usize) -> anyhow::Result<glommio::CpuSet> {
    let online =
        glommio::CpuSet::online().map_err(|e| anyhow::anyhow!("reading the CPU topology: {e}"))?;
    let cpus = match allowed_cpus() {
        Some(allowed) => online.filter(|l| allowed.contains(&l.cpu)),
        None => online,
    };
    let usable: Vec<usize> = cpus.iter().map(|l| l.cpu).collect();
    anyhow::ensure!(
        usable.len() >= shards,
        "{shards} shards need {shards} CPUs, but this process may use {} ({:?}); lower `shards` (weir dev --shards) or allow more CPUs",
        usable.len(),
        usable
    );
    Ok(cpus)
}

/// Starts the QUIC replication endpoint when `replication_listen` is set.
fn start_endpoint(
    config: &NodeConfig,
) -> anyhow::Result<Option<(weir_net::Endpoint, flume::Receiver<weir_net::InboundRequest>)>> {
    if config.replication_listen.is_empty() {
        return Ok(None);
    }
    let tls_dir = config.tls_dir.as_ref().context("replication_listen needs tls_dir")?;
    let node = weir_proto::NodeId(config.node_id);
    // Several processes of a dev cluster may create the CA at once: retry
    // until one of them has written it whole.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ca = loop {
        match weir_net::tls::DevCa::load_or_create(tls_dir) {
            Ok(ca) => break ca,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!("cluster CA not ready: {e:#}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("the cluster CA in {}", tls_dir.display()));
            }
        }
    };
    let identity = ca.load_or_issue(node)?;
    let listen = config
        .replication_listen
        .parse()
        .with_context(|| format!("replication_listen {:?}", config.replication_listen))?;
    let (endpoint, inbound) = weir_net::Endpoint::start(weir_net::EndpointConfig {
        node,
        listen,
        roots: ca.trust_roots()?,
        identity,
    })
    .with_context(|| format!("replication endpoint {}", config.replication_listen))?;
    tracing::info!(addr = %endpoint.local_addr(), "replication endpoint listening");
    Ok(Some((endpoint, inbound)))
}

/// The node's heartbeat to the controller, on its own thread (the
/// controller client is executor-agnostic): keeps the registration alive,
/// registers again when the controller no longer knows it, and at shutdown
/// asks the controller to move leaderships away (controlled shutdown).
struct Heartbeat {
    stop: Arc<std::sync::atomic::AtomicBool>,
    controlled: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(
        config: &NodeConfig,
        controller: weir_controller::ControllerHandle,
        broker_epoch: Arc<std::sync::atomic::AtomicI64>,
        register: weir_controller::Command,
    ) -> Heartbeat {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let controlled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let node = weir_proto::NodeId(config.node_id);
        let every = std::time::Duration::from_millis(config.heartbeat_interval_ms);
        let (s, c) = (stop.clone(), controlled.clone());
        let thread = std::thread::Builder::new()
            .name("weir-heartbeat".into())
            .spawn(move || {
                let mut register = register;
                while !s.load(Ordering::Acquire) {
                    let want_shutdown = c.load(Ordering::Acquire);
                    let cmd = weir_controller::Command::Heartbeat {
                        node,
                        broker_epoch: broker_epoch.load(Ordering::Acquire),
                        want_shutdown,
                    };
                    match futures::executor::block_on(controller.submit(cmd)) {
                        Ok(weir_controller::CommandResult::HeartbeatAck {
                            shutdown_ready, ..
                        }) => {
                            if want_shutdown && shutdown_ready {
                                return;
                            }
                        }
                        Ok(other) => tracing::warn!("unexpected heartbeat answer {other:?}"),
                        Err(weir_controller::ControllerError::StaleBrokerEpoch(_)) => {
                            // The controller lost or replaced this registration:
                            // register again as a new incarnation.
                            if let weir_controller::Command::RegisterNode(info) = &mut register {
                                info.incarnation = rand::random();
                            }
                            match futures::executor::block_on(controller.submit(register.clone())) {
                                Ok(weir_controller::CommandResult::NodeRegistered {
                                    broker_epoch: epoch,
                                    ..
                                }) => {
                                    tracing::warn!(broker_epoch = epoch, "registered again");
                                    broker_epoch.store(epoch, Ordering::Release);
                                }
                                Ok(_) => {}
                                Err(e) => tracing::warn!("registering again: {e}"),
                            }
                        }
                        Err(e) => tracing::debug!("heartbeat: {e}"),
                    }
                    let until = std::time::Instant::now() + every;
                    while std::time::Instant::now() < until && !s.load(Ordering::Acquire) {
                        std::thread::sleep(std::time::Duration::from_millis(
                            10.min(every.as_millis() as u64),
                        ));
                    }
                }
            })
            .expect("spawning the heartbeat thread");
        Heartbeat { stop, controlled, thread: Some(thread) }
    }

    /// Asks for a controlled shutdown and waits (bounded) until the
    /// controller has moved this node's leaderships, then stops.
    fn stop_controlled(mut self) {
        use std::sync::atomic::Ordering;
        self.controlled.store(true, Ordering::Release);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.stop.store(true, Ordering::Release);
            // A thread still waiting on an unreachable controller is left to
            // end with the process rather than hold the shutdown up.
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
