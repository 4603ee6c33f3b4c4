//! The fuzz targets of `fuzz/` as plain tests on the stable toolchain: the
//! committed corpus, then seeded mutations of it (`ambit_tests::fuzz`; a
//! longer run: `AMBIT_FUZZ_RUNS=1000000 AMBIT_FUZZ_SEED=$RANDOM cargo test
//! -p ambit-modbus --test fuzz`). Must never panic.

fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn device_identification_answers() {
    ambit_tests::fuzz::run(
        "identification",
        &corpus("identification"),
        ambit_modbus::fuzzing::identification,
    );
}
