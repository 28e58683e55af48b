//! `weir plan`: cluster sizing with the formulas Kafka operators use.
//!
//! With MT messages/s per topic, MS bytes per message, RL seconds of
//! retention, NT topics, NR replication factor and KB nodes:
//!
//! ```text
//! disk per node       = MT * MS * RL * NT * NR / KB
//! max retention (s)   = DB * KB / (MT * MS * NT * NR)     (DB: disk per node)
//! ```
//!
//! Both assume partitions of equal size spread evenly over the nodes; pad the
//! estimate for skew and growth (`--headroom-percent`).

use crate::Ctx;
use crate::output::{Format, human_bytes, print_json};
use anyhow::{Result, anyhow, bail};
use serde_json::json;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Average messages per second per topic (MT).
    #[arg(long)]
    messages_per_sec: f64,
    /// Average message size (MS), e.g. 1024, 10KB (1000s) or 10KiB (1024s).
    #[arg(long)]
    message_size: String,
    /// Retention (RL), e.g. 7d, 168h, 604800s.
    #[arg(long)]
    retention: Option<String>,
    /// Topics (NT).
    #[arg(long, default_value_t = 1)]
    topics: u32,
    /// Replication factor (NR).
    #[arg(long, default_value_t = 3)]
    replication_factor: u32,
    /// Nodes (KB).
    #[arg(long)]
    nodes: u32,
    /// Usable disk per node (DB), e.g. 2TB; gives the maximum retention.
    #[arg(long)]
    disk_per_node: Option<String>,
    /// Extra space to add to the disk estimate for skew and growth.
    #[arg(long, default_value_t = 0.0)]
    headroom_percent: f64,
}

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, TB,
/// PB in powers of 1000; KiB, MiB, GiB, TiB, PiB in powers of 1024).
pub fn parse_bytes(text: &str) -> Result<f64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 =
        num.parse().map_err(|_| anyhow!("bad size {text:?}: expected e.g. 512, 10KB, 4GiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        "pib" => 1024f64.powi(5),
        other => {
            bail!("bad size unit {other:?} in {text:?}: use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")
        }
    };
    Ok(n * mult)
}

/// Parses a duration into seconds: a number with s, m, h, d or w (default s).
pub fn parse_duration_secs(text: &str) -> Result<f64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 =
        num.parse().map_err(|_| anyhow!("bad duration {text:?}: expected e.g. 7d, 168h"))?;
    let mult = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        other => bail!("bad duration unit {other:?} in {text:?}: use ms, s, m, h, d or w"),
    };
    Ok(n * mult)
}

/// Decimal (SI) rendering, as the sizing guide writes its numbers.
fn si_bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = b;
    let mut i = 0;
    while v.abs() >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{v:.0} B") } else { format!("{v:.2} {}", UNITS[i]) }
}

pub fn run(ctx: &Ctx, a: PlanArgs) -> Result<()> {
    let ms = parse_bytes(&a.message_size)?;
    if !(a.messages_per_sec > 0.0 && ms > 0.0) {
        bail!("--messages-per-sec and --message-size must be positive");
    }
    if a.nodes == 0 || a.topics == 0 || a.replication_factor == 0 {
        bail!("--nodes, --topics and --replication-factor must be at least 1");
    }
    if a.replication_factor > a.nodes {
        bail!(
            "--replication-factor {} is more than --nodes {}: each replica needs its own node",
            a.replication_factor,
            a.nodes
        );
    }
    if a.retention.is_none() && a.disk_per_node.is_none() {
        bail!(
            "give --retention (to size disks) and/or --disk-per-node (to get the maximum retention)"
        );
    }
    let (nt, nr, kb) = (a.topics as f64, a.replication_factor as f64, a.nodes as f64);
    // Bytes per second written to the cluster, replicas included.
    let write_bytes_per_sec = a.messages_per_sec * ms * nt * nr;
    let ingress_bytes_per_sec = a.messages_per_sec * ms * nt;
    let retention_secs = a.retention.as_deref().map(parse_duration_secs).transpose()?;
    let disk_per_node_bytes = retention_secs.map(|rl| write_bytes_per_sec * rl / kb);
    let with_headroom = disk_per_node_bytes.map(|d| d * (1.0 + a.headroom_percent / 100.0));
    let db = a.disk_per_node.as_deref().map(parse_bytes).transpose()?;
    let max_retention_secs = db.map(|db| db * kb / write_bytes_per_sec);
    match ctx.output {
        Format::Json => {
            // Whole bytes and seconds: fractions of either mean nothing here.
            let whole = |v: Option<f64>| v.map(|v| v.round() as u64);
            print_json(&json!({
                "ingress_bytes_per_sec": whole(Some(ingress_bytes_per_sec)),
                "write_bytes_per_sec": whole(Some(write_bytes_per_sec)),
                "write_bytes_per_sec_per_node": whole(Some(write_bytes_per_sec / kb)),
                "retention_secs": whole(retention_secs),
                "disk_per_node_bytes": whole(disk_per_node_bytes),
                "disk_per_node_with_headroom_bytes": whole(with_headroom),
                "cluster_disk_bytes": whole(disk_per_node_bytes.map(|d| d * kb)),
                "max_retention_secs": whole(max_retention_secs),
            }))
        }
        Format::Table => {
            println!("ingress:                 {}/s", si_bytes(ingress_bytes_per_sec));
            println!(
                "written with replicas:   {}/s ({}/s per node)",
                si_bytes(write_bytes_per_sec),
                si_bytes(write_bytes_per_sec / kb)
            );
            if let (Some(d), Some(rl)) = (disk_per_node_bytes, retention_secs) {
                println!("retention:               {rl:.0} s ({:.1} h)", rl / 3600.0);
                println!(
                    "disk per node:           {} ({}, {:.0} bytes)",
                    si_bytes(d),
                    human_bytes(d),
                    d
                );
                if a.headroom_percent > 0.0 {
                    let h = with_headroom.unwrap_or(d);
                    println!(
                        "  with {}% headroom:     {} ({})",
                        a.headroom_percent,
                        si_bytes(h),
                        human_bytes(h)
                    );
                }
                println!("cluster disk:            {}", si_bytes(d * kb));
            }
            if let Some(r) = max_retention_secs {
                println!(
                    "max retention:           {r:.0} s ({:.1} h, {:.1} d)",
                    r / 3600.0,
                    r / 86_400.0
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse_bytes("10KB").unwrap(), 10_000.0);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024.0);
        assert_eq!(parse_bytes("2 TB").unwrap(), 2e12);
        assert!(parse_bytes("ten").is_err());
        assert_eq!(parse_duration_secs("1w").unwrap(), 604_800.0);
        assert_eq!(parse_duration_secs("168h").unwrap(), 604_800.0);
        assert!(parse_duration_secs("3x").is_err());
    }
}
