//! `weir dev --controllers 3`: three controller member processes and the
//! node; kill -9 of the active member leaves a cluster that still creates
//! topics, produces and serves what it stored (through the `weir` CLI, which
//! speaks only the Kafka protocol).

use std::process::Command;
use std::time::{Duration, Instant};
use weir_tests::cluster::weir_cli as weir;
use weir_tests::{WeirDev, workspace_bin};

/// Which member (1..=3) reports itself active, if any.
fn active_member(kafka_port: u16) -> Option<u16> {
    (1..=3).find(|i| {
        let url = format!("http://127.0.0.1:{}/metrics", kafka_port + 300 + i);
        weir_tests::try_scrape_url(&url)
            .is_ok_and(|text| text.contains("\nweir_controller_active 1\n"))
    })
}

/// The pid of member `i`'s process, found by its config path.
fn member_pid(dev: &WeirDev, i: u16) -> Option<u32> {
    let needle = dev.data_dir.join(format!("controller-{i}/controller.toml"));
    let needle = needle.to_string_lossy().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            return Some(pid);
        }
    }
    None
}

fn wait_for_active(port: u16, not: Option<u16>) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(m) = active_member(port).filter(|m| Some(*m) != not) {
            return m;
        }
        assert!(Instant::now() < deadline, "no active controller member");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dev_cluster_survives_killing_the_active_controller() {
    let dev = WeirDev::start_with(&["--controllers", "3"]);
    let b = dev.bootstrap();
    let first = wait_for_active(dev.port, None);

    weir(&b, &["topics", "create", "--topic", "before", "--partitions", "2"], "");
    let lines: String = (0..100).map(|i| format!("before-{i}\n")).collect();
    weir(&b, &["produce", "--topic", "before"], &lines);

    // SAFETY: signalling a process this test's weir dev started.
    let pid = member_pid(&dev, first).expect("the active member's process");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed_at = Instant::now();
    let second = wait_for_active(dev.port, Some(first));
    eprintln!("member {first} killed; member {second} active after {:?}", killed_at.elapsed());

    // The node follows the new member: topic creation and produce still work.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(workspace_bin("weir"))
            .args(["--bootstrap-server", &b, "topics", "create", "--topic", "after"])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    weir(&b, &["produce", "--topic", "after"], "a\nb\nc\n");
    let after =
        weir(&b, &["consume", "--topic", "after", "--from-beginning", "--max-messages", "3"], "");
    assert_eq!(after, "a\nb\nc\n");
    let mut before: Vec<String> = weir(
        &b,
        &["consume", "--topic", "before", "--from-beginning", "--max-messages", "100"],
        "",
    )
    .lines()
    .map(str::to_string)
    .collect();
    before.sort();
    let mut expected: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    expected.sort();
    assert_eq!(before, expected, "every record stored before the failover is served");

    // A killed `weir dev` takes its members with it.
    let mut dev = dev;
    dev.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (1..=3).any(|i| member_pid(&dev, i).is_some()) {
        assert!(Instant::now() < deadline, "controller members outlived weir dev");
        std::thread::sleep(Duration::from_millis(100));
    }
}
