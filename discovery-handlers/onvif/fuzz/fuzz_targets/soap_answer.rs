//! Arbitrary bytes as a camera's HTTP answer, through the parser of every
//! ONVIF operation the handler calls: must never panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ambit_onvif::fuzzing::soap_answer(data);
});
