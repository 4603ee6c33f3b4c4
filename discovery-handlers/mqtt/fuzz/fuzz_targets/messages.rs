//! Arbitrary bytes, as MQTT messages a broker might deliver (topic and
//! payload, framed by `ambit_mqtt::fuzzing::bytes`), through the handler's
//! index in Sparkplug B and plain-topic modes: Sparkplug payload decoding,
//! topic parsing, births, deaths, bdSeq and limits. Must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ambit_mqtt::fuzzing::bytes(data);
});
