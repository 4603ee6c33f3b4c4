//! Arbitrary bytes as a WS-Discovery datagram (what anyone on the link can
//! send to port 3702) through the parser and into the tracker: must never
//! panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ambit_onvif::fuzzing::discovery_message(data);
});
