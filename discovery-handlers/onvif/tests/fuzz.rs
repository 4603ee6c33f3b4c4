//! The fuzz targets of `fuzz/` as plain tests on the stable toolchain: the
//! committed corpus, then seeded mutations of it (`ambit_tests::fuzz`; a
//! longer run: `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM cargo test
//! -p ambit-onvif --test fuzz`). Must never panic.

#[test]
fn ws_discovery_datagrams() {
    ambit_tests::fuzz::target(
        env!("CARGO_MANIFEST_DIR"),
        "discovery_message",
        ambit_onvif::fuzzing::discovery_message,
    );
}

#[test]
fn soap_answers() {
    ambit_tests::fuzz::target(
        env!("CARGO_MANIFEST_DIR"),
        "soap_answer",
        ambit_onvif::fuzzing::soap_answer,
    );
}
