//! The fuzz targets of `fuzz/` as plain tests on the stable toolchain: the
//! committed corpus, then seeded mutations of it (`ambit_tests::fuzz`; a
//! longer run: `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM cargo test
//! -p ambit-onvif --test fuzz`). Must never panic.

fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn ws_discovery_datagrams() {
    ambit_tests::fuzz::run(
        "discovery_message",
        &corpus("discovery_message"),
        ambit_onvif::fuzzing::discovery_message,
    );
}

#[test]
fn soap_answers() {
    ambit_tests::fuzz::run(
        "soap_answer",
        &corpus("soap_answer"),
        ambit_onvif::fuzzing::soap_answer,
    );
}
