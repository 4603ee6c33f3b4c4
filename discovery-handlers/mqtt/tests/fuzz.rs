//! The fuzz targets of `fuzz/` as plain tests on the stable toolchain: the
//! committed corpus, then seeded mutations of it (`ambit_tests::fuzz`; a
//! longer run: `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM cargo test
//! -p ambit-mqtt --test fuzz`). Must never panic.

#[test]
fn broker_messages() {
    ambit_tests::fuzz::target(env!("CARGO_MANIFEST_DIR"), "messages", |data| {
        let _ = ambit_mqtt::fuzzing::bytes(data);
    });
}
