//! Arbitrary bytes, as resolutions and removals of DNS-SD services (names,
//! hosts, addresses and TXT entries framed as on the wire: length-prefixed
//! `key=value` strings), through the handler's own part: which services
//! are devices (instance-name and TXT filters), their properties (TXT keys
//! sanitised, values and counts bounded) and the index's bounds and
//! expiry. Must never panic or break the set's invariants. The DNS packet
//! parsing is mdns-sd's, fuzzed by its own `fuzz/` targets.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let details = serde_json::json!({
        "serviceTypes": ["_ipp._tcp", "_http._tcp"],
        "maxDevices": 16, "maxTxtEntries": 8, "maxTxtBytes": 256, "maxAddresses": 3,
        "instances": {"exclude": ["*x*"]}
    });
    ambit_mdns::fuzzing::services(details, data);
});
