//! The fuzz targets of `fuzz/` as plain tests on the stable toolchain: the
//! committed corpus, then seeded mutations of it (`ambit_tests::fuzz`; a
//! longer run: `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM cargo test
//! -p ambit-modbus --test fuzz`). Must never panic.

#[test]
fn device_identification_answers() {
    ambit_tests::fuzz::target(
        env!("CARGO_MANIFEST_DIR"),
        "identification",
        ambit_modbus::fuzzing::identification,
    );
}
