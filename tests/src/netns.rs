//! A network namespace joined to the root namespace by a veth pair, for
//! tests that cut one process off the network: the root side gets
//! `10.213.X.1/24`, the namespace side `10.213.X.2/24`, and [`NetNs::cut`]
//! takes the namespace's end of the link down (the root side's own address
//! keeps working, so processes bound to it in the root namespace go on
//! talking to each other). Needs root (`ip netns add`); the namespace and the
//! veth pair are removed on drop, panics included.

use std::net::Ipv4Addr;
use std::process::Command;

/// A namespace `weir-<tag>-<pid>` with a veth pair to the root namespace.
pub struct NetNs {
    /// Namespace name, for `ip netns exec`.
    pub name: String,
    /// The veth end in the root namespace.
    pub root_veth: String,
    /// The veth end inside the namespace.
    pub ns_veth: String,
    /// Address of the root side (`10.213.X.1`).
    pub root_ip: Ipv4Addr,
    /// Address of the namespace side (`10.213.X.2`).
    pub ns_ip: Ipv4Addr,
}

/// Runs `ip ARGS` (in namespace `ns` when given); the error names the
/// command and what it printed.
fn ip(ns: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["netns", "exec", ns, "ip"]);
    }
    let out = cmd.args(args).output().map_err(|e| format!("running ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// Creates the namespace and the link, both ends up (and `lo` in the
    /// namespace). The third octet of the subnet follows the test's pid and
    /// skips subnets this host already has. Panics with a clear message when
    /// the namespace cannot be created (not root, no `ip`).
    pub fn create(tag: &str) -> NetNs {
        let pid = std::process::id();
        let name = format!("weir-{tag}-{pid}");
        let addrs = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let x = (0..200u32)
            .map(|i| (pid + i) % 200 + 20)
            .find(|x| !addrs.contains(&format!("10.213.{x}.")))
            .expect("a free 10.213.X.0/24 subnet");
        let x = u8::try_from(x).expect("third octet below 256");
        if let Err(e) = ip(None, &["netns", "add", &name]) {
            panic!(
                "cannot create network namespace {name}: {e}\n\
                 this test must run as root (CAP_SYS_ADMIN and CAP_NET_ADMIN) with iproute2's `ip`"
            );
        }
        // From here on, Drop removes what exists.
        let ns = NetNs {
            root_veth: format!("wnp{pid}r"),
            ns_veth: format!("wnp{pid}n"),
            root_ip: Ipv4Addr::new(10, 213, x, 1),
            ns_ip: Ipv4Addr::new(10, 213, x, 2),
            name,
        };
        let (root, inner) = (ns.root_veth.as_str(), ns.ns_veth.as_str());
        let root_cidr = format!("{}/24", ns.root_ip);
        let ns_cidr = format!("{}/24", ns.ns_ip);
        let steps: [(Option<&str>, Vec<&str>); 7] = [
            (None, vec!["link", "add", root, "type", "veth", "peer", "name", inner]),
            (None, vec!["link", "set", inner, "netns", &ns.name]),
            (None, vec!["addr", "add", &root_cidr, "dev", root]),
            (None, vec!["link", "set", root, "up"]),
            (Some(&ns.name), vec!["addr", "add", &ns_cidr, "dev", inner]),
            (Some(&ns.name), vec!["link", "set", inner, "up"]),
            (Some(&ns.name), vec!["link", "set", "lo", "up"]),
        ];
        for (in_ns, args) in steps {
            if let Err(e) = ip(in_ns, &args) {
                panic!("setting up network namespace {}: {e}", ns.name);
            }
        }
        ns
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`
    /// execs it, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Cuts the namespace off: its end of the veth goes down, so nothing
    /// passes either way. Established TCP connections are not reset; their
    /// packets are lost, as on a real partition.
    pub fn cut(&self) {
        ip(Some(&self.name), &["link", "set", &self.ns_veth, "down"])
            .unwrap_or_else(|e| panic!("cutting {} off: {e}", self.name));
    }

    /// Heals a [`NetNs::cut`]: the namespace's end comes up again (with its
    /// address and route).
    pub fn heal(&self) {
        ip(Some(&self.name), &["link", "set", &self.ns_veth, "up"])
            .unwrap_or_else(|e| panic!("healing {}: {e}", self.name));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting either end deletes the pair; the namespace goes once no
        // process is left in it. Errors are ignored: a step of create may
        // not have happened.
        let _ = ip(None, &["link", "del", &self.root_veth]);
        let _ = ip(None, &["netns", "del", &self.name]);
    }
}
