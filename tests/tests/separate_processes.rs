//! `weir-controller --config` and `weir-node --config` as separate processes,
//! as in production, serving a real Kafka client.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{free_port, terminate, workspace_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_and_node_processes_serve_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let controller_port = free_port();
    let kafka_port = free_port();
    let controller_toml = dir.path().join("controller.toml");
    std::fs::write(
        &controller_toml,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{controller_port}\"\nmetrics_listen = \"127.0.0.1:0\"\n",
            dir.path().join("controller")
        ),
    )
    .unwrap();
    let node_toml = dir.path().join("node.toml");
    std::fs::write(
        &node_toml,
        format!(
            "node_id = 7\ndata_dirs = [{:?}]\nlisten = \"127.0.0.1:{kafka_port}\"\ncontroller = \"127.0.0.1:{controller_port}\"\nshards = 2\nmetrics_listen = \"127.0.0.1:0\"\n",
            dir.path().join("node-7")
        ),
    )
    .unwrap();
    let mut controller = Command::new(workspace_bin("weir-controller"))
        .arg("--config")
        .arg(&controller_toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn controller");
    let controller_line = BufReader::new(controller.stdout.take().unwrap())
        .lines()
        .next()
        .expect("controller prints its metrics address")
        .unwrap();
    let controller_metrics =
        controller_line.strip_prefix("metrics: ").expect("a metrics line").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", controller_port)).is_err() {
        assert!(Instant::now() < deadline, "controller never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut node = Command::new(workspace_bin("weir-node"))
        .arg("--config")
        .arg(&node_toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first = lines.next().expect("node prints its address").unwrap();
    assert_eq!(first, format!("kafka: 127.0.0.1:{kafka_port}"));

    let bootstrap = format!("127.0.0.1:{kafka_port}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..100 {
        let v = format!("m{i}");
        // The first send auto-creates the topic through Metadata.
        let d = producer
            .send(FutureRecord::<(), _>::to("split").payload(&v), Duration::from_secs(20))
            .await
            .expect("acked");
        assert_eq!(d.offset, i);
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "split-check")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("split", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 100 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8(m.unwrap().payload().unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(got, (0..100).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // The metadata names the configured node id.
    let md = consumer.fetch_metadata(Some("split"), Duration::from_secs(5)).unwrap();
    assert_eq!(md.brokers()[0].id(), 7);
    // The controller's own /metrics: it is the active controller, node 7 is
    // registered, and it knows the topics (split and __consumer_offsets).
    let text = weir_tests::scrape_url(&controller_metrics);
    assert!(text.contains("weir_controller_active 1\n"), "{text}");
    assert!(text.contains("weir_controller_registered_nodes 1\n"), "{text}");
    assert!(text.contains("weir_controller_offline_partitions 0\n"), "{text}");
    let topics = text
        .lines()
        .find_map(|l| l.strip_prefix("weir_controller_topics "))
        .and_then(|v| v.parse::<u32>().ok())
        .expect("topic count");
    assert!(topics >= 1, "{text}");
    drop(consumer);
    drop(producer);
    assert!(terminate(node), "node exits cleanly on SIGTERM");
    assert!(terminate(controller), "controller exits cleanly on SIGTERM");
}
