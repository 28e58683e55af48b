//! Partition reassignment on a real cluster (`weir dev --nodes 3
//! --controllers 3`, each node and controller member its own process),
//! driven by the `weir reassign` CLI:
//!
//! 1. a topic with replication factor 1 and some records is moved to three
//!    replicas (`--execute --throttle`, then `--verify` until complete);
//!    while it moves, `weir configs describe` shows the throttle rates on
//!    every node and the throttled replicas on the topic, and the `--verify`
//!    that finds the move complete removes them; `weir topics describe`
//!    shows 3 replicas, all in sync;
//! 2. the original node is killed (SIGKILL): every record is still read
//!    back, from the new leader;
//! 3. the original node is restarted and catches up; then a move off it
//!    ({original, a, b} → {a, b}) completes and its partition folder is gone;
//! 4. a move off the leader onto the original node ({a, b} → {b, original}):
//!    the original node starts empty and catches up, leadership moves to b,
//!    every record is still there and a's folder is gone.
//!
//! Along the way: `--list` and `--cancel` with nothing in progress, a plan
//! naming an unknown node is refused, both APIs answer in schema at every
//! version the node advertises (decoded strictly, as in version_sweep.rs),
//! and the dynamic node configs behave as Kafka's (a cluster default under a
//! node's own value, bad keys and unknown nodes refused). The throttle's
//! effect on the replication rate is not measured here.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use weir_tests::cluster::{DevCluster, leaders, pid_of, weir_output as weir_at};
use weir_tests::raw;

const TOPIC: &str = "moving";
const RECORDS: usize = 500;
/// `--throttle` for the first move: generous, so the test does not wait on it.
const THROTTLE: &str = "10000000";
const LEADER_RATE: &str = "leader.replication.throttled.rate";
const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Writes a reassignment plan for partition 0 of the topic.
fn plan(dir: &Path, name: &str, replicas: &[i32]) -> PathBuf {
    let path = dir.join(name);
    let doc = serde_json::json!({
        "version": 1,
        "partitions": [{"topic": TOPIC, "partition": 0, "replicas": replicas}],
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Partition 0's (leader, replicas, isr) as `weir topics describe` prints them.
fn describe(dev: &DevCluster) -> (String, Vec<i32>, Vec<i32>) {
    let out = dev.weir(&["topics", "describe", "--topic", TOPIC]);
    let line = out.lines().find(|l| l.contains("Partition: 0\t")).expect("partition 0 described");
    let field = |name: &str| {
        line.split('\t')
            .find_map(|f| f.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    let ids = |s: String| -> Vec<i32> { s.split(',').map(|n| n.trim().parse().unwrap()).collect() };
    (field("Leader"), ids(field("Replicas")), ids(field("Isr")))
}

/// `weir reassign --verify` until every partition of `plan` is complete.
fn verify_until_complete(dev: &DevCluster, plan: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = dev.weir(&["--output", "json", "reassign", "--verify", plan.to_str().unwrap()]);
        let rows: serde_json::Value = serde_json::from_str(&out).expect("--verify prints JSON");
        let rows = rows.as_array().expect("a row per partition");
        if rows.iter().all(|r| r["status"] == "complete") {
            return;
        }
        assert!(Instant::now() < deadline, "reassignment did not complete: {out}\n{}", dev.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every record, read from the beginning by `weir consume`, in order.
fn read_all(bootstrap: &str) {
    let args = [
        "consume",
        "--topic",
        TOPIC,
        "--from-beginning",
        "--max-messages",
        &RECORDS.to_string(),
        "--timeout-ms",
        "20000",
    ];
    let out = ok(weir_at(bootstrap, &args, ""), "weir consume");
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = (0..RECORDS).map(|i| format!("record-{i}")).collect();
    assert_eq!(got, want, "every record, in order");
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// AlterPartitionReassignments and ListPartitionReassignments at every
/// version the node advertises: Kafka's response layout, an error per
/// partition (unknown topic, nothing to cancel, a bad target), nothing listed.
fn protocol_checks(dev: &DevCluster, original: i32) {
    let mut c = raw::Client::connect(dev.bootstrap.split(',').next().unwrap());
    let req = RequestKind::ApiVersions(ApiVersionsRequest::default());
    let ResponseKind::ApiVersions(av) = c.call(ApiKey::ApiVersions, 0, req) else { panic!() };
    let versions = |key: ApiKey| {
        let k = av.api_keys.iter().find(|k| k.api_key == key as i16).expect("advertised");
        k.min_version..=k.max_version
    };
    let partition = |replicas: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(0)
            .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
    };
    for v in versions(ApiKey::AlterPartitionReassignments) {
        let mut req = AlterPartitionReassignmentsRequest::default().with_topics(vec![
            ReassignableTopic::default()
                .with_name(topic("no-such-topic"))
                .with_partitions(vec![partition(Some(vec![1]))]),
            ReassignableTopic::default()
                .with_name(topic(TOPIC))
                .with_partitions(vec![partition(None), partition(Some(vec![original, 9]))]),
        ]);
        // v1 (KIP-860) may forbid changing the replication factor.
        req.allow_replication_factor_change = v == 0;
        let req = RequestKind::AlterPartitionReassignments(req);
        let ResponseKind::AlterPartitionReassignments(r) =
            c.call(ApiKey::AlterPartitionReassignments, v, req)
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "v{v}: {r:?}");
        let codes: Vec<Vec<i16>> = r
            .responses
            .iter()
            .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
            .collect();
        // UNKNOWN_TOPIC_OR_PARTITION; NO_REASSIGNMENT_IN_PROGRESS, then
        // INVALID_REPLICA_ASSIGNMENT (node 9) or INVALID_REPLICATION_FACTOR.
        let bad_target = if v == 0 { 39 } else { 38 };
        assert_eq!(codes, vec![vec![3], vec![85, bad_target]], "v{v}: {r:?}");
        assert_eq!(r.responses[0].name, topic("no-such-topic"));
    }
    for v in versions(ApiKey::ListPartitionReassignments) {
        for topics in [
            None,
            Some(vec![
                ListPartitionReassignmentsTopics::default()
                    .with_name(topic("no-such-topic"))
                    .with_partition_indexes(vec![0]),
            ]),
        ] {
            let req = RequestKind::ListPartitionReassignments(
                ListPartitionReassignmentsRequest::default().with_topics(topics),
            );
            let ResponseKind::ListPartitionReassignments(r) =
                c.call(ApiKey::ListPartitionReassignments, v, req)
            else {
                panic!()
            };
            assert_eq!((r.error_code, r.topics.len()), (0, 0), "v{v}: {r:?}");
        }
    }
}

/// `weir configs describe` as JSON: config name → (value, source). `entity`
/// is `["--entity-type", ..., "--entity-name", ...]` or the like.
fn configs(dev: &DevCluster, entity: &[&str]) -> BTreeMap<String, (String, String)> {
    let args: Vec<&str> =
        ["--output", "json", "configs", "describe"].iter().chain(entity).copied().collect();
    let out: serde_json::Value = serde_json::from_str(&dev.weir(&args)).expect("JSON");
    out["configs"]
        .as_array()
        .expect("a configs list")
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("name"), (field("value"), field("source")))
        })
        .collect()
}

fn node_configs(dev: &DevCluster, node: i32) -> BTreeMap<String, (String, String)> {
    configs(dev, &["--entity-type", "nodes", "--entity-name", &node.to_string()])
}

fn topic_configs(dev: &DevCluster) -> BTreeMap<String, (String, String)> {
    configs(dev, &["--entity-type", "topics", "--entity-name", TOPIC])
}

fn value_of(c: &BTreeMap<String, (String, String)>, key: &str) -> Option<(String, String)> {
    c.get(key).cloned()
}

fn pair(value: &str, source: &str) -> Option<(String, String)> {
    Some((value.to_string(), source.to_string()))
}

/// Dynamic node configs through `weir configs`: a cluster default applies
/// to every node, a node's own value wins, and both go away again; keys
/// other than the throttle rates, bad values and unknown nodes are refused.
fn node_config_checks(dev: &DevCluster) {
    let alter = |entity: &[&str], change: &[&str]| {
        let mut args = vec!["configs", "alter", "--entity-type", "nodes"];
        args.extend(entity);
        args.extend(change);
        weir_at(&dev.bootstrap, &args, "")
    };
    let default = ["--entity-default"];
    ok(alter(&default, &["--add-config", &format!("{FOLLOWER_RATE}=5000")]), "set default");
    ok(
        alter(&["--entity-name", "2"], &["--add-config", &format!("{FOLLOWER_RATE}=7000")]),
        "set 2",
    );
    let dflt = configs(dev, &["--entity-type", "nodes", "--entity-default"]);
    assert_eq!(dflt.len(), 1, "only the dynamic defaults: {dflt:?}");
    assert_eq!(value_of(&dflt, FOLLOWER_RATE), pair("5000", "DYNAMIC_DEFAULT_BROKER_CONFIG"));
    let one = node_configs(dev, 1);
    assert_eq!(value_of(&one, FOLLOWER_RATE), pair("5000", "DYNAMIC_DEFAULT_BROKER_CONFIG"));
    assert_eq!(value_of(&one, "node.id"), pair("1", "STATIC_BROKER_CONFIG"));
    assert_eq!(value_of(&one, LEADER_RATE), None);
    let two = node_configs(dev, 2);
    assert_eq!(value_of(&two, FOLLOWER_RATE), pair("7000", "DYNAMIC_BROKER_CONFIG"));

    for (entity, change, error) in [
        (&["--entity-name", "1"][..], "log.retention.ms=1".to_string(), "INVALID_CONFIG"),
        (&["--entity-name", "1"][..], format!("{LEADER_RATE}=-1"), "INVALID_CONFIG"),
        (&["--entity-name", "9"][..], format!("{LEADER_RATE}=1"), "INVALID_REQUEST"),
    ] {
        let out = alter(entity, &["--add-config", &change]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(error),
            "{change} on {entity:?}: {stderr}"
        );
    }

    ok(alter(&default, &["--delete-config", FOLLOWER_RATE]), "delete default");
    ok(alter(&["--entity-name", "2"], &["--delete-config", FOLLOWER_RATE]), "delete 2");
    let dflt = configs(dev, &["--entity-type", "nodes", "--entity-default"]);
    assert!(dflt.is_empty(), "{dflt:?}");
    for n in 1..=3 {
        let c = node_configs(dev, n);
        assert!(!c.contains_key(FOLLOWER_RATE) && !c.contains_key(LEADER_RATE), "{n}: {c:?}");
    }
}

fn wait_for(what: &str, dev: &DevCluster, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", dev.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn reassignment_grows_the_replication_factor_and_moves_replicas() {
    let dev = DevCluster::start(3, 3);
    let files = tempfile::tempdir().unwrap();
    dev.weir(&[
        "topics",
        "create",
        "--topic",
        TOPIC,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);
    let (_, replicas, _) = describe(&dev);
    let &[original] = replicas.as_slice() else { panic!("one replica: {replicas:?}") };
    let others: Vec<i32> = (1..=3).filter(|n| *n != original).collect();
    let input: String = (0..RECORDS).map(|i| format!("record-{i}\n")).collect();
    ok(weir_at(&dev.bootstrap, &["produce", "--topic", TOPIC], &input), "weir produce");
    eprintln!("topic {TOPIC} on node {original}, {RECORDS} records");

    protocol_checks(&dev, original);
    node_config_checks(&dev);

    // Nothing in progress yet.
    let listed = dev.weir(&["reassign", "--list"]);
    assert!(listed.contains("No partition reassignments in progress."), "{listed}");
    let cancel_nothing = plan(files.path(), "nothing.json", &[original]);
    let out =
        weir_at(&dev.bootstrap, &["reassign", "--cancel", cancel_nothing.to_str().unwrap()], "");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NO_REASSIGNMENT_IN_PROGRESS"), "{stdout}");
    // A node that is not in the cluster.
    let bad = plan(files.path(), "bad.json", &[original, 9]);
    let out = weir_at(&dev.bootstrap, &["reassign", "--execute", bad.to_str().unwrap()], "");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("INVALID_REPLICA_ASSIGNMENT"), "{stdout}");

    // 1. Replication factor 1 → 3, throttled; the original node stays the
    // preferred leader.
    let grow: Vec<i32> = std::iter::once(original).chain(others.iter().copied()).collect();
    let grow_plan = plan(files.path(), "grow.json", &grow);
    let started = Instant::now();
    let grow_path = grow_plan.to_str().unwrap();
    let out = dev.weir(&["reassign", "--execute", grow_path, "--throttle", THROTTLE]);
    assert!(out.contains("started"), "{out}");
    // What to roll back to comes first.
    let rollback = format!("\"replicas\":[{original}]");
    assert!(
        out.contains("Current partition replica assignment") && out.contains(&rollback),
        "{out}"
    );
    assert!(out.contains(&format!("throttle limit was set to {THROTTLE} B/s")), "{out}");
    // The rates on every node involved (all three), the replicas on the topic:
    // the original node's as leader, the new ones' as followers.
    for n in 1..=3 {
        let c = node_configs(&dev, n);
        for key in [LEADER_RATE, FOLLOWER_RATE] {
            assert_eq!(value_of(&c, key), pair(THROTTLE, "DYNAMIC_BROKER_CONFIG"), "{n}: {c:?}");
        }
    }
    let followers = format!("0:{},0:{}", others[0], others[1]);
    let t = topic_configs(&dev);
    assert_eq!(
        value_of(&t, LEADER_REPLICAS),
        pair(&format!("0:{original}"), "DYNAMIC_TOPIC_CONFIG")
    );
    assert_eq!(value_of(&t, FOLLOWER_REPLICAS), pair(&followers, "DYNAMIC_TOPIC_CONFIG"));
    // The --verify that finds the move complete removes the throttle.
    verify_until_complete(&dev, &grow_plan);
    eprintln!("{grow:?}: complete after {:?} (throttled)", started.elapsed());
    for n in 1..=3 {
        let c = node_configs(&dev, n);
        assert!(!c.contains_key(LEADER_RATE) && !c.contains_key(FOLLOWER_RATE), "{n}: {c:?}");
    }
    let t = topic_configs(&dev);
    assert!(!t.contains_key(LEADER_REPLICAS) && !t.contains_key(FOLLOWER_REPLICAS), "{t:?}");
    let out = dev.weir(&["reassign", "--verify", grow_path]);
    assert!(out.contains("complete") && out.contains("Throttle was removed."), "{out}");
    let (leader, replicas, mut isr) = describe(&dev);
    assert_eq!((leader, replicas), (original.to_string(), grow.clone()));
    isr.sort_unstable();
    assert_eq!(isr, vec![1, 2, 3], "every replica in sync");
    let listed = dev.weir(&["reassign", "--list"]);
    assert!(listed.contains("No partition reassignments in progress."), "{listed}");

    // 2. The original node dies: a new replica leads and has every record.
    let pid = pid_of(&dev.node_config(original as u16)).expect("the original node's process");
    // SAFETY: signalling a process this test's weir dev started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let alive = format!("127.0.0.1:{}", dev.port + others[0] as u16 - 1);
    wait_for("no new leader after the original node died", &dev, || {
        leaders(&alive, TOPIC).get(&0).is_some_and(|&l| l >= 0 && l != original)
    });
    let new_leader = leaders(&alive, TOPIC)[&0];
    assert!(others.contains(&new_leader));
    read_all(&dev.bootstrap);
    eprintln!("node {original} killed: node {new_leader} leads and serves all {RECORDS} records");

    // 3. The original node comes back and catches up; then it is moved off.
    let mut restarted = dev.start_node(original as u16);
    wait_for("the restarted node did not rejoin the ISR", &dev, || describe(&dev).2.len() == 3);
    let folder = |n: i32| dev.data().join(format!("node-{n}/data/{TOPIC}-0"));
    assert!(folder(original).is_dir(), "{}", folder(original).display());
    let shrink_plan = plan(files.path(), "shrink.json", &others);
    let out = dev.weir(&["reassign", "--execute", shrink_plan.to_str().unwrap()]);
    assert!(out.contains("started"), "{out}");
    verify_until_complete(&dev, &shrink_plan);
    let (_, replicas, mut isr) = describe(&dev);
    assert_eq!(replicas, others);
    isr.sort_unstable();
    assert_eq!(isr, others);
    wait_for("the removed replica's folder is still there", &dev, || !folder(original).exists());
    for n in &others {
        assert!(folder(*n).is_dir(), "{}", folder(*n).display());
    }
    read_all(&dev.bootstrap);
    eprintln!("moved to {others:?}: node {original}'s folder removed");

    // 4. Off the leader, back onto the original node (which starts empty).
    let (leader, _, _) = describe(&dev);
    let leader: i32 = leader.parse().unwrap();
    let other = others.iter().copied().find(|n| *n != leader).unwrap();
    let target = [other, original];
    let move_plan = plan(files.path(), "move.json", &target);
    dev.weir(&["reassign", "--execute", move_plan.to_str().unwrap()]);
    verify_until_complete(&dev, &move_plan);
    let (new_leader, replicas, mut isr) = describe(&dev);
    assert_eq!((new_leader, replicas), (other.to_string(), target.to_vec()));
    isr.sort_unstable();
    let mut in_sync = target.to_vec();
    in_sync.sort_unstable();
    assert_eq!(isr, in_sync);
    wait_for("the old leader's folder is still there", &dev, || !folder(leader).exists());
    assert!(folder(original).is_dir());
    read_all(&dev.bootstrap);
    eprintln!("moved to {target:?}: node {other} leads, node {leader}'s folder removed");

    assert!(restarted.stop(), "the restarted node stops cleanly");
    drop(dev);
}
