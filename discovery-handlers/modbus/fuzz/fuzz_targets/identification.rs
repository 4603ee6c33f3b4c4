//! Arbitrary bytes, as length-prefixed response PDUs a device might send,
//! through tokio-modbus's decoder into the handler's Read Device
//! Identification assembly and value decoding: must never panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ambit_modbus::fuzzing::identification(data);
});
