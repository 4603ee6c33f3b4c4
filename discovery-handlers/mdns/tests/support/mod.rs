//! A real mDNS peer for the mdns handler's tests, on a link of its own:
//! two network namespaces made for the test and joined by a veth pair
//! (IPv4, IPv6 ULA and link-local, multicast on; multicast does not work
//! on loopback), python-zeroconf (PyPI `zeroconf`, pinned, installed once
//! into a venv in the tests' cache, ~/.cache/ambit/venv, by
//! `ambit_tests::peers::mdns`, which the demo shares) as the responder in
//! one, the handler in the other: the test's body runs on a thread that
//! entered that namespace before it made its runtime, so every socket the
//! handler and mdns-sd open is there. The namespaces are deleted when the
//! [`Lan`] drops, also when a test fails. Nothing touches the host's own
//! network.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a panic fails the test"
)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ambit_discovery::{Device, DeviceStream, DiscoverRequest, DiscoveryHandler};
use ambit_tests::peers::{LineProcess, ip};
use futures::StreamExt;
use serde_json::Value;

/// The responder's side of the link.
pub const RESPONDER_V4: &str = "192.0.2.1";
pub const RESPONDER_V6: &str = "fd00:a3b1:7::1";
/// The handler's side.
pub const HANDLER_V4: &str = "192.0.2.2";
pub const HANDLER_V6: &str = "fd00:a3b1:7::2";

/// Two network namespaces joined by a veth pair: `responder` and `handler`.
pub struct Lan {
    pub responder: String,
    pub handler: String,
    /// The veth end in the handler's namespace.
    pub handler_if: String,
    pub responder_if: String,
}

impl Lan {
    /// The link, or `None` (with a message saying why the test is skipped)
    /// when this process may not make network namespaces.
    pub fn new() -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIPPED: the mdns tests make network namespaces, which needs root (CAP_NET_ADMIN)"
            );
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}{n}", std::process::id());
        let lan = Self {
            responder: format!("ambit-mdns-{tag}-r"),
            handler: format!("ambit-mdns-{tag}-h"),
            responder_if: format!("amr{tag}"),
            handler_if: format!("amh{tag}"),
        };
        if let Err(error) = ip(&["netns", "add", &lan.responder]) {
            if error.contains("ermission") || error.contains("not permitted") {
                eprintln!("SKIPPED: cannot make network namespaces: {error}");
                return None;
            }
            panic!("{error}");
        }
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", &lan.handler]).unwrap();
        ip(&[
            "link",
            "add",
            &lan.responder_if,
            "netns",
            &lan.responder,
            "type",
            "veth",
            "peer",
            "name",
            &lan.handler_if,
            "netns",
            &lan.handler,
        ])
        .unwrap();
        for (ns, dev, v4, v6) in [
            (
                &lan.responder,
                &lan.responder_if,
                RESPONDER_V4,
                RESPONDER_V6,
            ),
            (&lan.handler, &lan.handler_if, HANDLER_V4, HANDLER_V6),
        ] {
            // The namespace's own sysctls: no duplicate address detection,
            // so the IPv6 addresses (link-local too) are usable at once.
            for conf in ["all", "default"] {
                lan.exec(
                    ns,
                    "sysctl",
                    &["-q", "-w", &format!("net.ipv6.conf.{conf}.accept_dad=0")],
                );
            }
            lan.exec(
                ns,
                "sysctl",
                &["-q", "-w", &format!("net.ipv6.conf.{dev}.accept_dad=0")],
            );
            ip(&["-n", ns, "link", "set", "lo", "up"]).unwrap();
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]).unwrap();
            ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])
            .unwrap();
            ip(&["-n", ns, "link", "set", dev, "multicast", "on", "up"]).unwrap();
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev]).unwrap();
        }
        Some(lan)
    }

    fn exec(&self, ns: &str, program: &str, args: &[&str]) {
        let status = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "{program} {args:?} in {ns}");
    }

    /// Runs `body` on a runtime whose threads are all in the handler's
    /// namespace; a panic in it fails the caller.
    pub fn in_handler<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let ns = self.handler.clone();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(body());
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// A UDP socket in the responder's namespace that sends to the mDNS
    /// group (as a hostile peer on the link would).
    pub fn raw_sender(&self) -> UdpSocket {
        let ns = self.responder.clone();
        std::thread::spawn(move || {
            enter(&ns);
            let socket = UdpSocket::bind((RESPONDER_V4, 0)).unwrap();
            socket.set_multicast_ttl_v4(255).unwrap();
            socket
        })
        .join()
        .unwrap()
    }
}

/// The mDNS group and port.
pub const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// Moves the calling thread into the named network namespace.
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so
        // the pair; processes still in it keep it alive only until they end.
        let _ = ip(&["netns", "del", &self.responder]);
        let _ = ip(&["netns", "del", &self.handler]);
    }
}

/// python-zeroconf in the responder's namespace.
pub struct Responder(LineProcess);

impl Responder {
    pub fn start(lan: &Lan) -> Self {
        let command = ambit_tests::peers::mdns::responder_command(
            &lan.responder,
            &[RESPONDER_V4, RESPONDER_V6],
        )
        .unwrap();
        let responder = Self(LineProcess::spawn("the responder", command).unwrap());
        responder.expect("ready");
        responder
    }

    /// Sends a command without waiting for its answer.
    pub fn send(&mut self, command: &Value) {
        self.0.send(&command.to_string()).unwrap();
    }

    /// Sends a command and waits until the responder has done it (on a
    /// runtime's worker, without stalling the other tasks).
    pub fn run(&mut self, command: &Value) {
        tokio::task::block_in_place(|| {
            self.send(command);
            self.expect("ok");
        });
    }

    /// Waits for a line starting with `prefix`.
    pub fn expect(&self, prefix: &str) {
        self.0.expect_next(prefix, Duration::from_secs(30)).unwrap();
    }

    /// Kills the process: no goodbye is sent.
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// A running discovery and the last set it reported.
pub struct Discovery {
    stream: DeviceStream,
    pub last: Vec<Device>,
}

impl Discovery {
    pub async fn start(details: Value) -> Self {
        let mut request = DiscoverRequest::new(details);
        request.node_name = "test-node".into();
        let mut stream = ambit_mdns::Mdns::new().discover(request).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.is_empty(), "the first set is empty: {first:?}");
        Self {
            stream,
            last: first,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.last.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        ids
    }

    pub fn device(&self, id: &str) -> &Device {
        self.last
            .iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no device {id}; have {:?}", self.ids()))
    }

    /// Waits until `done` holds for the reported set.
    pub async fn until_set(
        &mut self,
        what: &str,
        wait: Duration,
        done: impl Fn(&[Device]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + wait;
        while !done(&self.last) {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(set))) => self.last = set,
                Ok(Some(Err(error))) => panic!("discovery failed: {error}"),
                Ok(None) => panic!("discovery ended"),
                Err(_) => panic!("timed out waiting for {what}; have {:?}", self.last),
            }
        }
    }

    /// Waits until the reported ids are `want` (sorted).
    pub async fn until(&mut self, want: &[&str]) {
        let wanted: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        self.until_set(&format!("{want:?}"), Duration::from_secs(20), |set| {
            let mut ids: Vec<String> = set.iter().map(|d| d.id.clone()).collect();
            ids.sort();
            ids == wanted
        })
        .await;
    }

    /// Asserts nothing new is reported for `quiet`.
    pub async fn unchanged_for(&mut self, quiet: Duration) {
        if let Ok(next) = tokio::time::timeout(quiet, self.stream.next()).await {
            panic!("unexpected update: {next:?}");
        }
    }
}
