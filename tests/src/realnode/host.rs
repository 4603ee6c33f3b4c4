//! What real nodes change on the machine, and how it is undone.
//!
//! A kubelet and containerd touch the host in a few places even from their
//! own namespaces: cgroups (one subtree per node in every v1 hierarchy), a
//! few kernel sysctls the kubelet sets (they are not per namespace), the
//! mount points their tmpfs mounts need, and processes that outlive them
//! (runc shims daemonize; containers live in the node's cgroups). The clean-up
//! script of a node group undoes all of it; the janitor runs it however the
//! test binary ends, and [`HostState`] lets a test check that it did.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The sysctls the kubelet sets at start (`setupKernelTunables`), which are
/// global rather than per network namespace.
pub const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Directories each node's mount namespace mounts a tmpfs on, so that
/// what its kubelet, containerd, CNI plugins and pods' `hostPath` volumes
/// write there (`/var/lib/kubelet`, `/var/lib/ambit`, `/var/log/pods`,
/// `/run/containerd`, ...) is the node's own and dies with it. Two nodes on
/// one machine would otherwise share `/var/lib/ambit`: the second agent
/// found the first one's registration socket alive and exited. They must
/// exist on the host as mount points; any made for it are removed.
pub const NODE_MOUNTS: [&str; 3] = ["/run", "/var/lib", "/var/log"];

/// The cgroup v1 hierarchies (`/sys/fs/cgroup/<name>`), `unified` excluded.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir() && path.file_name().is_some_and(|n| n != "unified"))
        .collect();
    dirs.sort();
    dirs
}

/// What a test compares before and after real nodes ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// Mount points and their file system types, in the host's namespace.
    pub mounts: Vec<String>,
    /// Top-level cgroups of every hierarchy (`cpu/ambit-...`).
    pub cgroups: Vec<String>,
    /// Network links of the host's namespace.
    pub links: Vec<String>,
    /// The kubelet's sysctls and their values.
    pub sysctls: BTreeMap<String, String>,
    /// Named network namespaces (`/run/netns`).
    pub netns: Vec<String>,
    /// Which of the node mount points exist.
    pub mount_points: Vec<String>,
}

impl HostState {
    /// Reads the host's state now.
    pub fn read() -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(mount_of)
            .collect();
        let mut cgroups = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            let name = hierarchy
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for entry in std::fs::read_dir(&hierarchy)
                .into_iter()
                .flatten()
                .flatten()
            {
                if entry.path().is_dir() {
                    cgroups.push(format!("{name}/{}", entry.file_name().to_string_lossy()));
                }
            }
        }
        cgroups.sort();
        let links = names_in("/sys/class/net");
        let sysctls = KUBELET_SYSCTLS
            .iter()
            .map(|name| {
                let value =
                    std::fs::read_to_string(Path::new("/proc/sys").join(name)).unwrap_or_default();
                ((*name).to_owned(), value.trim().to_owned())
            })
            .collect();
        let netns = names_in("/run/netns");
        let mount_points = NODE_MOUNTS
            .iter()
            .filter(|dir| Path::new(dir).exists())
            .map(|dir| (*dir).to_owned())
            .collect();
        Self {
            mounts,
            cgroups,
            links,
            sysctls,
            netns,
            mount_points,
        }
    }

    /// The differences from `before`, one line each (empty when equal).
    pub fn differences(&self, before: &Self) -> Vec<String> {
        let mut out = Vec::new();
        diff("mount", &before.mounts, &self.mounts, &mut out);
        diff("cgroup", &before.cgroups, &self.cgroups, &mut out);
        diff("link", &before.links, &self.links, &mut out);
        diff("netns", &before.netns, &self.netns, &mut out);
        diff(
            "mount point",
            &before.mount_points,
            &self.mount_points,
            &mut out,
        );
        for (name, value) in &self.sysctls {
            let old = before.sysctls.get(name).map_or("", String::as_str);
            if old != value {
                out.push(format!("sysctl {name}: {old} -> {value}"));
            }
        }
        out
    }
}

/// The sorted names in directory `dir` (none when it cannot be read).
fn names_in(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `"<mount point> <fs type>"` from a line of /proc/self/mountinfo.
fn mount_of(line: &str) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let point = fields.get(4)?;
    let dash = fields.iter().position(|f| *f == "-")?;
    let fstype = fields.get(dash + 1)?;
    Some(format!("{point} {fstype}"))
}

fn diff(what: &str, before: &[String], after: &[String], out: &mut Vec<String>) {
    for gone in before.iter().filter(|b| !after.contains(b)) {
        out.push(format!("{what} gone: {gone}"));
    }
    for new in after.iter().filter(|a| !before.contains(a)) {
        out.push(format!("{what} left behind: {new}"));
    }
}

/// The part of a clean-up script that stops one node for good: every
/// process in its mount namespace (containerd's shims daemonize, so they
/// outlive it) and in its cgroups (the containers), then the cgroups
/// themselves. Safe to run twice.
pub fn node_cleanup(mount_ns: &str, cgroup_root: &str) -> String {
    let mut script = String::new();
    let _ = writeln!(script, "ns='{mount_ns}'");
    let _ = writeln!(script, "root='{cgroup_root}'");
    script.push_str(
        r#"for round in 1 2 3 4 5; do
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for c in /sys/fs/cgroup/*/"$root"; do
    [ -d "$c" ] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
  done
  sleep 0.2
done
for c in /sys/fs/cgroup/*/"$root"; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
"#,
    );
    script
}

/// The part of a clean-up script that restores sysctls to `values` and
/// removes the mount points in `made` (only if empty: never anything else's).
pub fn host_cleanup(values: &BTreeMap<String, String>, made: &[String]) -> String {
    let mut script = String::new();
    for (name, value) in values {
        let _ = writeln!(script, "echo '{value}' > /proc/sys/{name}");
    }
    for dir in made {
        let _ = writeln!(script, "rmdir '{dir}' 2>/dev/null");
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_point_and_type() {
        let line = "36 25 0:32 / /var/lib/kubelet rw,relatime shared:1 - tmpfs ambit-node rw";
        assert_eq!(mount_of(line).as_deref(), Some("/var/lib/kubelet tmpfs"));
        assert_eq!(mount_of("garbage"), None);
    }

    #[test]
    fn differences_name_what_was_left() {
        let before = HostState {
            mounts: vec!["/ overlay".into()],
            cgroups: vec!["cpu/init".into()],
            links: vec!["lo".into()],
            sysctls: [("kernel/panic".to_owned(), "0".to_owned())].into(),
            netns: vec![],
            mount_points: vec![],
        };
        let mut after = before.clone();
        assert!(after.differences(&before).is_empty());
        after.cgroups.push("cpu/ambit-1-real-0".into());
        after.sysctls.insert("kernel/panic".into(), "10".into());
        assert_eq!(
            after.differences(&before),
            [
                "cgroup left behind: cpu/ambit-1-real-0",
                "sysctl kernel/panic: 0 -> 10"
            ]
        );
    }

    #[test]
    fn cleanup_restores_and_removes_only_what_it_made() {
        let values = [("vm/overcommit_memory".to_owned(), "0".to_owned())].into();
        let script = host_cleanup(&values, &["/var/lib/kubelet".to_owned()]);
        assert_eq!(
            script,
            "echo '0' > /proc/sys/vm/overcommit_memory\nrmdir '/var/lib/kubelet' 2>/dev/null\n"
        );
        let node = node_cleanup("mnt:[4026532000]", "ambit-7-real-0");
        assert!(node.contains("ns='mnt:[4026532000]'"));
        assert!(node.contains("rmdir"));
    }
}
