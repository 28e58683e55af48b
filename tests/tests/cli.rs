//! The `weir` operator CLI, run as a subprocess against a real `weir dev`:
//! golden tables (volatile parts normalised), `--output json` parsed, a live
//! group's lag, offsets reset only on `--execute`, `doctor`, `plan`, and the
//! error (with hint) when no broker answers.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{WeirDev, free_port, workspace_bin};

/// Runs `weir ARGS` with `stdin` and returns its output (any exit status).
fn weir_in(bootstrap: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(workspace_bin("weir"))
        .args(args)
        .env("WEIR_BOOTSTRAP", bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("weir output")
}

/// Runs `weir ARGS`, asserts success and returns stdout.
fn weir(bootstrap: &str, args: &[&str]) -> String {
    let out = weir_in(bootstrap, args, "");
    assert!(
        out.status.success(),
        "weir {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `weir groups reset-offsets --group billing ARGS`.
fn reset(bootstrap: &str, args: &[&str]) -> String {
    let mut all = vec!["groups", "reset-offsets", "--group", "billing"];
    all.extend_from_slice(args);
    weir(bootstrap, &all)
}

fn weir_json(bootstrap: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let text = weir(bootstrap, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("weir {args:?}: not JSON ({e}):\n{text}"))
}

/// Replaces the value after `label` (up to a tab or newline) with `<label>`.
fn normalise(text: &str, label: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(label) {
        out.push_str(&rest[..i + label.len()]);
        out.push_str(&format!("<{}>", label.trim_end_matches(": ")));
        let after = &rest[i + label.len()..];
        let end = after.find(['\t', '\n']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Rows of a table (header first) split on runs of spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Consumer group"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn topics_and_configs_round_trip() {
    let dev = WeirDev::start();
    let b = dev.bootstrap();

    let created = weir(
        &b,
        &[
            "topics",
            "create",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert_eq!(created, "Created topic orders.\n");

    // Creating it again is an error with the broker's code, unless --if-not-exists.
    let again = weir_in(&b, &["topics", "create", "--topic", "orders", "--partitions", "3"], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("TOPIC_ALREADY_EXISTS (36)"));
    let quiet = weir(&b, &["topics", "create", "--topic", "orders", "--if-not-exists"]);
    assert_eq!(quiet, "Topic orders exists already.\n");

    let described = weir(&b, &["topics", "describe", "--topic", "orders"]);
    assert_eq!(
        normalise(&described, "TopicId: "),
        "Topic: orders\tTopicId: <TopicId>\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: retention.ms=3600000\n\
         \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n\
         \tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\n\
         \tTopic: orders\tPartition: 2\tLeader: 1\tReplicas: 1\tIsr: 1\n"
    );

    weir(&b, &["topics", "create", "--topic", "audit", "--partitions", "1"]);
    let listed = weir(&b, &["topics", "list", "--exclude-internal"]);
    assert_eq!(listed, "audit\norders\n");
    let listed = weir_json(&b, &["topics", "list"]);
    let names: Vec<&str> =
        listed.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"orders") && names.contains(&"audit"), "{names:?}");
    let orders = listed.as_array().unwrap().iter().find(|t| t["name"] == "orders").unwrap();
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["replication_factor"], 1);

    // Alter a config, add one, then read them back through configs describe.
    weir(
        &b,
        &[
            "configs",
            "alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "orders",
            "--add-config",
            "retention.ms=7200000,segment.bytes=1048576",
        ],
    );
    let configs =
        weir(&b, &["configs", "describe", "--entity-type", "topics", "--entity-name", "orders"]);
    assert_eq!(
        configs,
        "NAME           VALUE    SOURCE                READ-ONLY\n\
         retention.ms   7200000  DYNAMIC_TOPIC_CONFIG  false\n\
         segment.bytes  1048576  DYNAMIC_TOPIC_CONFIG  false\n"
    );
    weir(
        &b,
        &[
            "configs",
            "alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "orders",
            "--delete-config",
            "segment.bytes",
        ],
    );
    let cfg = weir_json(
        &b,
        &["configs", "describe", "--entity-type", "topics", "--entity-name", "orders"],
    );
    let cfgs = cfg["configs"].as_array().unwrap();
    assert_eq!(cfgs.len(), 1, "{cfg}");
    assert_eq!(cfgs[0]["name"], "retention.ms");
    assert_eq!(cfgs[0]["value"], "7200000");
    // A bad value is refused with the broker's message.
    let bad = weir_in(
        &b,
        &[
            "configs",
            "alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "orders",
            "--add-config",
            "retention.ms=soon",
        ],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_CONFIG"));

    // Node configs come from the node.
    let node =
        weir_json(&b, &["configs", "describe", "--entity-type", "nodes", "--entity-name", "1"]);
    let node_id =
        node["configs"].as_array().unwrap().iter().find(|c| c["name"] == "node.id").unwrap();
    assert_eq!(node_id["value"], "1");

    // Alter: more partitions and a config in one go; describe as JSON.
    weir(
        &b,
        &[
            "topics",
            "alter",
            "--topic",
            "orders",
            "--partitions",
            "4",
            "--config",
            "cleanup.policy=delete",
        ],
    );
    let d = weir_json(&b, &["topics", "describe", "--topic", "orders"]);
    let t = &d[0];
    assert_eq!(t["partition_count"], 4);
    assert_eq!(t["configs"]["cleanup.policy"], "delete");
    assert_eq!(t["configs"]["retention.ms"], "7200000");
    for p in t["partitions"].as_array().unwrap() {
        assert_eq!(p["leader"], 1);
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["isr"], serde_json::json!([1]));
    }

    let cluster = weir_json(&b, &["cluster", "describe"]);
    assert_eq!(cluster["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["nodes"][0]["id"], 1);
    assert_eq!(cluster["nodes"][0]["port"], dev.port);

    assert_eq!(weir(&b, &["topics", "delete", "--topic", "audit"]), "Deleted topic audit.\n");
    assert_eq!(weir(&b, &["topics", "list", "--exclude-internal"]), "orders\n");
    // Every partition is led by its preferred replica already: nothing to elect.
    let elect = weir(&b, &["elect-leaders", "--preferred", "--all-topic-partitions"]);
    assert_eq!(elect, "TOPIC  PARTITION  RESULT  MESSAGE\n");

    // reassign --generate proposes an assignment onto the listed nodes
    // (orders has 4 partitions on node 1); an unknown node is refused.
    let topics_file = dev.data_dir.join("move.json");
    std::fs::write(&topics_file, r#"{"version":1,"topics":[{"topic":"orders"}]}"#).unwrap();
    let file = topics_file.to_str().unwrap();
    let plan = weir_json(&b, &["reassign", "--generate", file, "--broker-list", "1"]);
    let proposed = plan["proposed"]["partitions"].as_array().unwrap();
    assert_eq!(proposed.len(), 4);
    assert!(proposed.iter().all(|p| p["replicas"] == serde_json::json!([1])), "{plan}");
    assert_eq!(plan["current"]["partitions"][0]["topic"], "orders");
    let text = weir(&b, &["reassign", "--generate", file, "--broker-list", "1"]);
    assert!(text.starts_with("Current partition replica assignment\n{\"partitions\":"), "{text}");
    assert!(text.contains("\nProposed partition reassignment configuration\n"), "{text}");
    let unknown = weir_in(&b, &["reassign", "--generate", file, "--broker-list", "1,9"], "");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("node 9"));

    let missing = weir_in(&b, &["topics", "describe", "--topic", "audit"], "");
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("UNKNOWN_TOPIC_OR_PARTITION") && err.contains("hint:"), "{err}");
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", "lag-test-client")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("group consumer")
}

/// One row of `groups describe --output json`.
#[derive(Debug, Clone, PartialEq)]
struct GroupRow {
    partition: i64,
    current: Option<i64>,
    end: i64,
    lag: Option<i64>,
    member: Option<String>,
}

/// The rows of `groups describe --output json`, one per (topic, partition).
fn group_offsets(b: &str, group: &str) -> Vec<GroupRow> {
    let d = weir_json(b, &["groups", "describe", "--group", group]);
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| GroupRow {
            partition: p["partition"].as_i64().unwrap(),
            current: p["current_offset"].as_i64(),
            end: p["log_end_offset"].as_i64().unwrap(),
            lag: p["lag"].as_i64(),
            member: p["consumer_id"].as_str().map(str::to_string),
        })
        .collect()
}

#[test]
fn console_tools_and_group_lag_and_reset() {
    let dev = WeirDev::start();
    let b = dev.bootstrap();
    weir(
        &b,
        &[
            "topics",
            "create",
            "--topic",
            "events",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
    );

    // Produce ten lines to partition 0 and two keyed lines by key hash.
    let lines: String = (0..10).map(|i| format!("line-{i}\n")).collect();
    let out = weir_in(&b, &["produce", "--topic", "events", "--partition", "0"], &lines);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Keyed lines go by key hash (to their own topic, so offsets below stay simple).
    weir(&b, &["topics", "create", "--topic", "keyed", "--partitions", "4"]);
    let keyed = weir_in(
        &b,
        &["produce", "--topic", "keyed", "--key-separator", ":", "--output", "json"],
        "alpha:A\nalpha:B\nbeta:C\n",
    );
    assert!(keyed.status.success(), "{}", String::from_utf8_lossy(&keyed.stderr));
    let keyed: Value = serde_json::from_slice(&keyed.stdout).unwrap();
    assert_eq!(keyed["records"], 3);
    let keyed_table = weir(
        &b,
        &[
            "consume",
            "--topic",
            "keyed",
            "--from-beginning",
            "--timeout-ms",
            "1500",
            "--print-key",
            "--print-offset",
        ],
    );
    // Same key, same partition, in order (murmur2 as the Java producer).
    let alpha: Vec<&str> = keyed_table.lines().filter(|l| l.contains("alpha")).collect();
    assert_eq!(alpha.len(), 2, "{keyed_table}");
    let partition_of = |l: &str| l.split(':').next().unwrap().to_string();
    assert_eq!(partition_of(alpha[0]), partition_of(alpha[1]));
    assert!(alpha[0].ends_with("\talpha\tA") && alpha[1].ends_with("\talpha\tB"), "{alpha:?}");

    // Read them back.
    let consumed = weir(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "10",
        ],
    );
    assert_eq!(consumed, lines);
    let all = weir(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--from-beginning",
            "--timeout-ms",
            "1500",
            "--print-key",
            "--key-separator",
            "=",
        ],
    );
    let want: String = (0..10).map(|i| format!("null=line-{i}\n")).collect();
    assert_eq!(all, want);
    let json_lines = weir(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--partition",
            "0",
            "--offset",
            "3",
            "--max-messages",
            "2",
            "--output",
            "json",
        ],
    );
    let recs: Vec<Value> = json_lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0]["offset"].as_i64(), recs[0]["value"].as_str()), (Some(3), Some("line-3")));
    assert_eq!((recs[1]["offset"].as_i64(), recs[1]["value"].as_str()), (Some(4), Some("line-4")));

    // A live group member reads everything and commits.
    let consumer = group_consumer(&b, "billing");
    consumer.subscribe(&["events"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < 10 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("consume");
            n += 1;
        }
    }
    assert_eq!(n, 10, "the member read every record");
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");

    // More records arrive; the member does not poll them: lag = end - committed.
    let more: String = (10..15).map(|i| format!("line-{i}\n")).collect();
    assert!(
        weir_in(&b, &["produce", "--topic", "events", "--partition", "0"], &more).status.success()
    );
    let offsets = group_offsets(&b, "billing");
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    let GroupRow { partition: p, current, end, lag, member } = offsets[0].clone();
    assert_eq!(p, 0);
    assert_eq!(end, current.unwrap() + lag.unwrap(), "lag = end - committed");
    assert_eq!(lag, Some(5), "five records after the commit on partition 0");
    assert!(member.is_some(), "the live member owns the partition: {offsets:?}");
    // Partition 1 is empty: assigned to the member, nothing committed.
    assert_eq!(offsets[1].partition, 1);
    assert_eq!(offsets[1].end, 0);
    assert!(offsets[1].member.is_some());

    // The table shows the same, with the member's client id.
    let table = weir(&b, &["groups", "describe", "--group", "billing"]);
    let r = rows(&table);
    assert_eq!(
        r[0],
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );
    assert_eq!(
        r[1][..6],
        ["billing", "events", "0", &current.unwrap().to_string(), &end.to_string(), "5"]
    );
    assert_eq!(r[1][8], "lag-test-client");
    let members = weir(&b, &["groups", "describe", "--group", "billing", "--members", "--verbose"]);
    let m = rows(&members);
    assert_eq!(m[0], ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"]);
    assert_eq!(m.len(), 2, "{members}");
    assert_eq!(m[1][3], "lag-test-client");
    assert_eq!(m[1][4], "2");
    assert_eq!(m[1][5], "events(0,1)");
    let state = weir_json(&b, &["groups", "describe", "--group", "billing", "--state"]);
    assert_eq!(state["state"], "Stable");
    assert_eq!(state["members"], 1);

    // Resetting a group with a live member is refused, with a hint.
    let refused = weir_in(
        &b,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "billing",
            "--all-topics",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Stable") && err.contains("hint: stop the group's consumers"), "{err}");

    // Stop the member: the group is Empty; a dry run changes nothing.
    consumer.unsubscribe();
    drop(consumer);
    let deadline = Instant::now() + Duration::from_secs(30);
    while weir_json(&b, &["groups", "describe", "--group", "billing", "--state"])["state"]
        != "Empty"
    {
        assert!(Instant::now() < deadline, "group did not become Empty");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = group_offsets(&b, "billing");
    let plan = reset(&b, &["--all-topics", "--to-earliest", "--dry-run"]);
    let pr = rows(&plan);
    assert_eq!(pr[0], ["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]);
    assert_eq!(pr[1], ["billing", "events", "0", &current.unwrap().to_string(), "0"]);
    assert_eq!(group_offsets(&b, "billing"), before, "a dry run commits nothing");

    // --execute moves the committed offsets; lag grows to the whole log.
    reset(&b, &["--all-topics", "--to-earliest", "--execute"]);
    let after = group_offsets(&b, "billing");
    assert_eq!(after[0].current, Some(0));
    assert_eq!(after[0].lag, Some(15));
    // --shift-by and --to-offset stay inside the log; --to-latest goes to the end.
    reset(&b, &["--topic", "events:0", "--shift-by", "7", "--execute"]);
    assert_eq!(group_offsets(&b, "billing")[0].current, Some(7));
    reset(&b, &["--topic", "events:0", "--shift-by", "-100", "--execute"]);
    assert_eq!(group_offsets(&b, "billing")[0].current, Some(0));
    reset(&b, &["--topic", "events", "--to-latest", "--execute"]);
    assert!(group_offsets(&b, "billing").iter().all(|r| r.lag == Some(0)));
    // --to-datetime long ago: the earliest offset.
    reset(&b, &["--topic", "events:0", "--to-datetime", "2000-01-01T00:00:00.000", "--execute"]);
    assert_eq!(group_offsets(&b, "billing")[0].current, Some(0));
    // --from-file.
    let file = dev.data_dir.join("offsets.csv");
    std::fs::write(&file, "events,0,9\n").unwrap();
    reset(&b, &["--from-file", file.to_str().unwrap(), "--execute"]);
    assert_eq!(group_offsets(&b, "billing")[0].current, Some(9));

    // A consumer with --group starts at the committed offset and commits.
    let rest = weir(
        &b,
        &[
            "consume",
            "--topic",
            "events",
            "--partition",
            "0",
            "--group",
            "billing",
            "--max-messages",
            "3",
        ],
    );
    assert_eq!(rest, "line-9\nline-10\nline-11\n");
    assert_eq!(group_offsets(&b, "billing")[0].current, Some(12));

    let listed = weir_json(&b, &["groups", "list"]);
    assert!(
        listed.as_array().unwrap().iter().any(|g| g["group"] == "billing" && g["state"] == "Empty"),
        "{listed}"
    );
    weir(&b, &["groups", "delete", "--group", "billing"]);
    let gone = weir_in(&b, &["groups", "describe", "--group", "billing"], "");
    assert!(!gone.status.success(), "a deleted group has no offsets");
}

#[test]
fn doctor_plan_and_no_broker() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let nobody = format!("127.0.0.1:{}", free_port());

    // doctor needs no broker.
    let table = weir(&nobody, &["doctor", "--data-dir", d]);
    let names: Vec<String> = rows(&table).iter().map(|r| r[0].clone()).collect();
    for check in
        ["kernel", "io_uring", "memlock", "open", "O_DIRECT", "filesystem", "free", "clock"]
    {
        assert!(names.iter().any(|n| n == check), "doctor has no {check} check:\n{table}");
    }
    let json = weir_json(&nobody, &["doctor", "--data-dir", d]);
    assert_eq!(json["ok"], true, "{json}");
    let checks = json["checks"].as_array().unwrap();
    let status = |name: &str| {
        checks.iter().find(|c| c["name"].as_str().unwrap().starts_with(name)).unwrap()["status"]
            .clone()
    };
    // weir dev runs on this machine, so io_uring and O_DIRECT work here.
    assert_eq!(status("io_uring"), "ok");
    assert_eq!(status("O_DIRECT"), "ok");
    assert!(std::fs::read_dir(d).unwrap().next().is_none(), "doctor leaves no file behind");
    let missing = weir_json(&nobody, &["doctor", "--data-dir", "/nonexistent/weir-doctor"]);
    assert_eq!(
        missing["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["value"] == "does not exist")
            .count(),
        1
    );

    // plan: the sizing guide's worked example (1000 msg/s of 10 KB, a week,
    // 3 replicas, 9 nodes → ~2 TB per node; 2 TB per node → 600000 s).
    let args = [
        "plan",
        "--messages-per-sec",
        "1000",
        "--message-size",
        "10KB",
        "--retention",
        "168h",
        "--replication-factor",
        "3",
        "--nodes",
        "9",
        "--disk-per-node",
        "2TB",
    ];
    let p = weir_json(&nobody, &args);
    assert_eq!(p["ingress_bytes_per_sec"], 10_000_000);
    assert_eq!(p["write_bytes_per_sec"], 30_000_000);
    assert_eq!(p["disk_per_node_bytes"], 2_016_000_000_000u64);
    assert_eq!(p["cluster_disk_bytes"], 18_144_000_000_000u64);
    assert_eq!(p["max_retention_secs"], 600_000);
    let text = weir(&nobody, &args);
    assert!(text.contains("disk per node:           2.02 TB"), "{text}");
    assert!(text.contains("max retention:           600000 s (166.7 h, 6.9 d)"), "{text}");
    let bad = weir_in(
        &nobody,
        &[
            "plan",
            "--messages-per-sec",
            "10",
            "--message-size",
            "1KB",
            "--retention",
            "1d",
            "--replication-factor",
            "3",
            "--nodes",
            "1",
        ],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("more than --nodes"));

    // No broker: a clear error, a hint, exit status 1.
    for args in [&["topics", "list"][..], &["groups", "list"], &["cluster", "describe"]] {
        let out = weir_in(&nobody, args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("cannot connect to {nobody}")), "{err}");
        assert!(
            err.contains(&format!("is a broker running at {nobody}? start one with `weir dev`")),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}
