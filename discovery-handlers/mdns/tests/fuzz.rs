//! The fuzz targets of `fuzz/` as plain tests on the stable toolchain: the
//! committed corpus, then seeded mutations of it (`ambit_tests::fuzz`; a
//! longer run: `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM cargo test
//! -p ambit-mdns --test fuzz`). Must never panic.

#[test]
fn resolved_and_removed_services() {
    // The details of fuzz/fuzz_targets/services.rs.
    let details = serde_json::json!({
        "serviceTypes": ["_ipp._tcp", "_http._tcp"],
        "maxDevices": 16, "maxTxtEntries": 8, "maxTxtBytes": 256, "maxAddresses": 3,
        "instances": {"exclude": ["*x*"]}
    });
    ambit_tests::fuzz::target(env!("CARGO_MANIFEST_DIR"), "services", |data| {
        ambit_mdns::fuzzing::services(details.clone(), data);
    });
}
