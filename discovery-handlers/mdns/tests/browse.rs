//! The mdns handler against a real responder (python-zeroconf) on a veth
//! link between two network namespaces made for each test (tests/support).
//! Skipped, saying why, only where this process may not make namespaces
//! (not root); CI runs as root, so they run there.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Discovery, GROUP, Lan, RESPONDER_V4, RESPONDER_V6, Responder};

fn printer(name: &str, txt: Value) -> Value {
    json!({"op": "register", "name": name, "type": "_ipp._tcp", "port": 631, "txt": txt,
           "host": "printer-3.local.", "addresses": [RESPONDER_V4, RESPONDER_V6]})
}

fn with_op(mut command: Value, op: &str) -> Value {
    command["op"] = op.into();
    command
}

const OFFICE: &str = "Office._ipp._tcp.local";

#[test]
fn an_announced_service_is_a_device_its_txt_updates_and_its_goodbye_removes_it() {
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery =
            Discovery::start(json!({"serviceTypes": ["_ipp._tcp", "_http._tcp"]})).await;
        let office = printer(
            "Office",
            json!({"ty": "HP LaserJet", "rp": "ipp/print", "duplex": null}),
        );
        responder.run(&office);
        discovery.until(&[OFFICE]).await;
        let device = discovery.device(OFFICE);
        assert!(device.shared);
        let p = &device.properties;
        assert_eq!(p["MDNS_INSTANCE"], "Office");
        assert_eq!(p["MDNS_SERVICE_TYPE"], "_ipp._tcp");
        assert_eq!(p["MDNS_HOST"], "printer-3.local");
        assert_eq!(p["MDNS_PORT"], "631");
        assert_eq!(p["MDNS_ADDRESS"], RESPONDER_V4);
        assert!(p["MDNS_ADDRESSES"].contains(RESPONDER_V6), "{p:?}");
        assert_eq!(p["MDNS_TXT_TY"], "HP LaserJet");
        assert_eq!(p["MDNS_TXT_RP"], "ipp/print");
        assert_eq!(p["MDNS_TXT_DUPLEX"], "");
        // A web server of the second type.
        responder.run(
            &json!({"op": "register", "name": "Panel", "type": "_http._tcp", "port": 8080,
            "addresses": [RESPONDER_V4]}),
        );
        discovery.until(&[OFFICE, "Panel._http._tcp.local"]).await;
        // The TXT record changes: the device follows.
        let updated = printer(
            "Office",
            json!({"ty": "HP LaserJet", "rp": "ipp/print", "toner": "low"}),
        );
        responder.run(&with_op(updated, "update"));
        discovery
            .until_set("the new TXT", Duration::from_secs(20), |set| {
                set.iter().any(|d| {
                    d.properties
                        .get("MDNS_TXT_TONER")
                        .is_some_and(|v| v == "low")
                })
            })
            .await;
        assert!(
            !discovery
                .device(OFFICE)
                .properties
                .contains_key("MDNS_TXT_DUPLEX")
        );
        // Goodbye (TTL 0): removed within about a second.
        let sent = Instant::now();
        responder.run(&with_op(office, "unregister"));
        discovery.until(&["Panel._http._tcp.local"]).await;
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
    });
}

#[test]
fn a_responder_killed_without_goodbye_is_removed_when_its_ttl_runs_out() {
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery = Discovery::start(json!({"serviceTypes": ["_ipp._tcp"]})).await;
        let mut office = printer("Office", json!({}));
        office["ttl"] = 4.into();
        responder.run(&office);
        discovery.until(&[OFFICE]).await;
        // While it answers, the refresh queries at 80% of the TTL keep it.
        discovery.unchanged_for(Duration::from_secs(6)).await;
        let killed = Instant::now();
        responder.kill();
        discovery.until(&[]).await;
        let after = killed.elapsed();
        assert!(
            after < Duration::from_secs(10),
            "removed only after {after:?}"
        );
    });
}

#[test]
fn instance_and_txt_filters_follow_updates() {
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery = Discovery::start(json!({
            "serviceTypes": ["_ipp._tcp"],
            "instances": {"include": ["Office*"], "exclude": ["*test*"]},
            "txt": {"ty": "*Laser*"}
        }))
        .await;
        responder.send(&printer("Lab", json!({"ty": "Laser"})));
        responder.send(&printer("Office test", json!({"ty": "Laser"})));
        responder.send(&printer("Office 2", json!({"ty": "Inkjet"})));
        responder.send(&printer("Office 1", json!({"ty": "Laser"})));
        for _ in 0..4 {
            tokio::task::block_in_place(|| responder.expect("ok"));
        }
        discovery.until(&["Office 1._ipp._tcp.local"]).await;
        discovery.unchanged_for(Duration::from_secs(2)).await;
        responder.run(&with_op(
            printer("Office 2", json!({"ty": "LaserJet"})),
            "update",
        ));
        discovery
            .until(&["Office 1._ipp._tcp.local", "Office 2._ipp._tcp.local"])
            .await;
        responder.run(&with_op(
            printer("Office 1", json!({"ty": "Inkjet"})),
            "update",
        ));
        discovery.until(&["Office 2._ipp._tcp.local"]).await;
    });
}

#[test]
fn ipv6_only() {
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery =
            Discovery::start(json!({"serviceTypes": ["_opcua-tcp._tcp"], "ipv4": false})).await;
        responder.run(
            &json!({"op": "register", "name": "PLC", "type": "_opcua-tcp._tcp", "port": 4840,
            "txt": {"path": "/"}, "addresses": [RESPONDER_V4, RESPONDER_V6]}),
        );
        discovery.until(&["PLC._opcua-tcp._tcp.local"]).await;
        let p = &discovery.device("PLC._opcua-tcp._tcp.local").properties;
        assert_eq!(p["MDNS_ADDRESS"], RESPONDER_V6);
        assert!(!p["MDNS_ADDRESSES"].contains(RESPONDER_V4), "{p:?}");
        assert_eq!(p["MDNS_TXT_PATH"], "/");
    });
}

#[test]
fn many_services_stop_at_max_devices() {
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    lan.in_handler(move || async move {
        let mut discovery =
            Discovery::start(json!({"serviceTypes": ["_http._tcp"], "maxDevices": 5})).await;
        for i in 0..12 {
            responder.send(
                &json!({"op": "register", "name": format!("web-{i:02}"), "type": "_http._tcp",
                "port": 8000 + i, "addresses": [RESPONDER_V4], "fast": true}),
            );
        }
        for _ in 0..12 {
            tokio::task::block_in_place(|| responder.expect("ok"));
        }
        discovery
            .until_set("5 devices", Duration::from_secs(20), |set| set.len() == 5)
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        discovery
            .until_set("still 5", Duration::from_secs(1), |set| set.len() == 5)
            .await;
    });
}

/// Random bytes, mangled DNS messages and hand-made traps (compression
/// loops, counts past the end, giant TXT lengths) sent to the mDNS group on
/// the link: the handler stays up, keeps its device and finds the next.
#[test]
fn hostile_packets_on_the_link_never_stop_the_handler() {
    let Some(lan) = Lan::new() else { return };
    let mut responder = Responder::start(&lan);
    let sender = lan.raw_sender();
    lan.in_handler(move || async move {
        let mut discovery = Discovery::start(json!({"serviceTypes": ["_ipp._tcp"]})).await;
        responder.run(&printer("Office", json!({"ty": "Laser"})));
        discovery.until(&[OFFICE]).await;
        let mut rng = fastrand::Rng::with_seed(5353);
        let traps = traps();
        for round in 0..3000 {
            let packet: Vec<u8> = match round % 4 {
                0 => (0..rng.usize(0..1500)).map(|_| rng.u8(..)).collect(),
                1 | 2 => {
                    let mut p = traps[rng.usize(0..traps.len())].clone();
                    for _ in 0..rng.usize(0..6) {
                        let at = rng.usize(0..p.len());
                        p[at] = rng.u8(..);
                    }
                    p.truncate(rng.usize(1..=p.len()));
                    p
                }
                _ => traps[round % traps.len()].clone(),
            };
            let _ = sender.send_to(&packet, GROUP);
            if round % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        responder.run(&printer("Office 2", json!({"ty": "Laser"})));
        // The traps' own well-formed records may make a device too (mDNS
        // has no authentication); what matters is that the real ones are
        // there and every device is within its bounds.
        discovery
            .until_set("Office and Office 2", Duration::from_secs(20), |set| {
                [OFFICE, "Office 2._ipp._tcp.local"]
                    .iter()
                    .all(|id| set.iter().any(|d| d.id == *id))
            })
            .await;
        for device in &discovery.last {
            let txt = device
                .properties
                .keys()
                .filter(|k| k.starts_with("MDNS_TXT_"))
                .count();
            assert!(txt <= 33, "{}: {txt} TXT properties", device.id);
            assert!(
                device.properties.values().all(|v| v.len() <= 1024),
                "{device:?}"
            );
        }
    });
}

fn name(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for label in labels {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

fn record(owner: &[u8], ty: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&0x8001u16.to_be_bytes());
    out.extend_from_slice(&120u32.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

fn response(answers: u16, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x84, 0, 0, 0];
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(body);
    out
}

/// Well-formed-looking responses about `_ipp._tcp` with traps in them.
fn traps() -> Vec<Vec<u8>> {
    let ty = name(&[b"_ipp", b"_tcp", b"local"]);
    let evil = name(&[b"Evil", b"_ipp", b"_tcp", b"local"]);
    let mut ptr = record(&ty, 12, &evil);
    let mut srv_rdata = vec![0, 0, 0, 0, 0x02, 0x77];
    srv_rdata.extend(name(&[b"evil", b"local"]));
    let srv = record(&evil, 33, &srv_rdata);
    let mut txt_rdata = Vec::new();
    for i in 0..200u8 {
        let entry = format!("k{i}={}", "v".repeat(usize::from(i)));
        txt_rdata.push(u8::try_from(entry.len().min(255)).unwrap());
        txt_rdata.extend_from_slice(&entry.as_bytes()[..entry.len().min(255)]);
    }
    let txt = record(&evil, 16, &txt_rdata);
    let a = record(&name(&[b"evil", b"local"]), 1, &[192, 0, 2, 99]);
    let mut whole = ptr.clone();
    whole.extend(&srv);
    whole.extend(&txt);
    whole.extend(&a);
    // A compression pointer to itself as the owner name.
    let looped = response(1, &[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 120, 0, 2, 0xc0, 12]);
    // Counts far past the end.
    let counts = {
        let mut p = response(0xffff, &ptr);
        p[4] = 0xff;
        p[5] = 0xff;
        p
    };
    // A TXT whose rdata length runs past the packet.
    let mut long_txt = record(&evil, 16, &[255, b'a']);
    let n = long_txt.len();
    long_txt[n - 4] = 0xff;
    long_txt[n - 3] = 0xff;
    // A label too long and a name past 255 bytes.
    let long_name = name(&[
        &[b'x'; 63],
        &[b'y'; 63],
        &[b'z'; 63],
        &[b'w'; 63],
        b"_ipp",
        b"_tcp",
        b"local",
    ]);
    let long_ptr = record(&ty, 12, &long_name);
    ptr.extend_from_slice(&[0xc0, 0xff]);
    vec![
        response(4, &whole),
        looped,
        counts,
        response(1, &long_txt),
        response(1, &long_ptr),
        response(2, &ptr),
        vec![0; 12],
        vec![0xff; 12],
    ]
}
