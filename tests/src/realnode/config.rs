//! The configuration files of one real node: containerd's, the kubelet's and
//! the CNI network's. Pure functions of a [`NodePlan`], so what a node runs
//! with can be read (and tested) without starting it.
//!
//! The settings without which they fail on this kind of machine (cgroup v1,
//! no `CAP_SYS_RESOURCE`, no systemd) are commented where they are set.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Everything that differs between two real nodes.
#[derive(Debug, Clone)]
pub struct NodePlan {
    /// The node's name (also its hostname label).
    pub name: String,
    /// Its position in the group: picks its addresses.
    pub index: u8,
    /// Its directory: containerd's root and state, configs, logs.
    pub dir: PathBuf,
    /// The cgroup (in every v1 hierarchy) its pods go under.
    pub cgroup_root: String,
    /// The harness CA, which the kubelet trusts for client certificates.
    pub ca_cert: PathBuf,
    /// Where containerd finds its runtime shim.
    pub shim: PathBuf,
}

/// The network every node and pod address comes from. Each node has its
/// own network namespace, so these never meet the machine's own networks.
pub const NODE_NET: [u8; 3] = [10, 251, 0];
/// Pods of node `i` get `10.250.<i>.0/24`.
pub const POD_NET: [u8; 2] = [10, 250];
/// The Service network of the harness's API server
/// (`--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's address, served inside every node.
pub const API_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

impl NodePlan {
    /// The node's address on the link between nodes (`--node-ip`).
    pub fn node_ip(&self) -> Ipv4Addr {
        node_ip(self.index)
    }

    /// The node's pod network, `10.250.<index>.0/24`.
    pub fn pod_cidr(&self) -> String {
        pod_cidr(self.index)
    }

    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// containerd v2's configuration.
    pub fn containerd_toml(&self) -> String {
        let dir = self.dir.display();
        let shim = self.shim.display();
        format!(
            r#"version = 3
root = "{dir}/containerd/root"
state = "{dir}/containerd/state"
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Built and imported by the harness, never pulled.
    sandbox = '{pause}'
[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = true
  # The node's own /var/run/cdi (a tmpfs in its mount namespace), where the
  # agent writes its CDI specs.
  cdi_spec_dirs = ['/var/run/cdi']
  # Without CAP_SYS_RESOURCE every sandbox fails to lower its oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      runtime_path = '{shim}'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = '/usr/sbin/runc'
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '{dir}/cni'
"#,
            pause = super::PAUSE_IMAGE,
        )
    }

    /// The kubelet's configuration file.
    pub fn kubelet_yaml(&self) -> String {
        let dir = self.dir.display();
        let ca = self.ca_cert.display();
        let root = &self.cgroup_root;
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# 1.35+ refuses cgroup v1 unless told otherwise; this machine has v1.
failCgroupV1: false
cgroupDriver: cgroupfs
# Pods under one subtree of every hierarchy, removed when the node goes.
cgroupRoot: /{root}
failSwapOn: false
# Else the kubelet adds chains to the host's iptables.
makeIPTablesUtilChains: false
containerRuntimeEndpoint: unix://{dir}/containerd.sock
volumePluginDir: {dir}/volume-plugins
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
# The images are imported, never pulled: keep them whatever the disk says.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
maxPods: 40
syncFrequency: 10s
nodeStatusUpdateFrequency: 4s
shutdownGracePeriod: 0s
"#
        )
    }

    /// The CNI network: a bridge with the node's pod range, and routes to
    /// the other nodes' pods and to Services only. No default route and no
    /// masquerading: a pod reaches nothing outside the harness's namespaces.
    pub fn cni_conflist(&self) -> String {
        let subnet = self.pod_cidr();
        let dir = self.dir.display();
        let [a, b] = POD_NET;
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "ambit-real-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "isDefaultGateway": false,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": format!("{dir}/ipam"),
                        "ranges": [[{ "subnet": subnet }]],
                        "routes": [
                            { "dst": format!("{a}.{b}.0.0/16") },
                            { "dst": SERVICE_CIDR },
                        ],
                    },
                },
                { "type": "loopback" },
            ],
        })
        .to_string()
    }
}

/// The address of node `index` on the link between nodes.
pub fn node_ip(index: u8) -> Ipv4Addr {
    let [a, b, c] = NODE_NET;
    Ipv4Addr::new(a, b, c, 10 + index)
}

/// The pod network of node `index`.
pub fn pod_cidr(index: u8) -> String {
    let [a, b] = POD_NET;
    format!("{a}.{b}.{index}.0/24")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(index: u8) -> NodePlan {
        NodePlan {
            name: format!("real-{index}"),
            index,
            dir: PathBuf::from(format!("/tmp/cp/nodes/real-{index}")),
            cgroup_root: "ambit-1-real-0".into(),
            ca_cert: PathBuf::from("/tmp/cp/pki/ca.crt"),
            shim: PathBuf::from("/cache/containerd-shim-runc-v2"),
        }
    }

    #[test]
    fn nodes_get_addresses_of_their_own() {
        assert_eq!(plan(0).node_ip(), Ipv4Addr::new(10, 251, 0, 10));
        assert_eq!(plan(1).node_ip(), Ipv4Addr::new(10, 251, 0, 11));
        assert_eq!(plan(0).pod_cidr(), "10.250.0.0/24");
        assert_eq!(plan(3).pod_cidr(), "10.250.3.0/24");
    }

    #[test]
    fn pods_route_only_to_pods_and_services() {
        let conf: serde_json::Value = serde_json::from_str(&plan(1).cni_conflist()).unwrap();
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["isDefaultGateway"], false);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.250.1.0/24");
        let routes: Vec<&str> = bridge["ipam"]["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dst"].as_str().unwrap())
            .collect();
        assert_eq!(routes, ["10.250.0.0/16", "10.96.0.0/16"]);
    }

    #[test]
    fn the_settings_this_machine_needs_are_there() {
        let kubelet = plan(0).kubelet_yaml();
        for line in [
            "failCgroupV1: false",
            "cgroupDriver: cgroupfs",
            "cgroupRoot: /ambit-1-real-0",
            "makeIPTablesUtilChains: false",
            "failSwapOn: false",
        ] {
            assert!(kubelet.contains(line), "kubelet config lacks {line:?}");
        }
        let kubelet: serde_yaml_ng::Value = serde_yaml_ng::from_str(&kubelet).unwrap();
        assert_eq!(kubelet["kind"], "KubeletConfiguration");
        let containerd = plan(0).containerd_toml();
        assert!(containerd.contains("restrict_oom_score_adj = true"));
        assert!(containerd.contains("enable_cdi = true"));
        assert!(containerd.contains("runtime_path = '/cache/containerd-shim-runc-v2'"));
    }
}
