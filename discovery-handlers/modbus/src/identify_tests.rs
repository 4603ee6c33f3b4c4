use tokio_modbus::bytes::Bytes;
use tokio_modbus::prelude::{ConformityLevel, DeviceIdObject};

use super::*;
use crate::fuzzing;

fn response(
    objects: &[(ObjectId, &[u8])],
    more_follows: bool,
    next_object_id: ObjectId,
) -> ReadDeviceIdentificationResponse {
    ReadDeviceIdentificationResponse {
        read_code: ReadCode::Regular,
        conformity_level: ConformityLevel::RegularIdentification,
        more_follows,
        next_object_id,
        device_id_objects: objects
            .iter()
            .map(|(id, value)| DeviceIdObject {
                id: *id,
                value: Bytes::copy_from_slice(value),
            })
            .collect(),
    }
}

#[test]
fn one_response_gives_the_objects_as_properties() {
    let mut assembler = Assembler::new(Level::Regular);
    assert_eq!(assembler.request(), Some((ReadCode::Regular, 0)));
    assembler
        .push(&response(
            &[
                (0, b"ACME"),
                (1, b"PLC-9\0\0"),
                (2, b" v1.2 "),
                (4, b""),
                (0x20, b"reserved"),
                (0x81, b"\x01\x02"),
            ],
            false,
            0,
        ))
        .unwrap();
    assert_eq!(assembler.request(), None);
    let identity = assembler.finish();
    assert_eq!(identity.get(VENDOR), Some("ACME"));
    assert_eq!(identity.get(PRODUCT_CODE), Some("PLC-9"));
    assert_eq!(identity.get(PRODUCT_NAME), None);
    let properties: Vec<_> = identity.properties().collect();
    assert_eq!(
        properties,
        [
            ("MODBUS_VENDOR".to_owned(), "ACME".to_owned()),
            ("MODBUS_PRODUCT_CODE".into(), "PLC-9".into()),
            ("MODBUS_REVISION".into(), "v1.2".into()),
            ("MODBUS_OBJECT_81".into(), "0x0102".into()),
        ]
    );
}

#[test]
fn more_follows_continues_where_the_device_says() {
    let mut assembler = Assembler::new(Level::Extended);
    assembler
        .push(&response(&[(0, b"A"), (1, b"B")], true, 2))
        .unwrap();
    assert_eq!(assembler.request(), Some((ReadCode::Extended, 2)));
    // A repeated object does not overwrite the first value.
    assembler
        .push(&response(&[(1, b"other"), (2, b"C")], false, 0))
        .unwrap();
    assert_eq!(assembler.request(), None);
    let identity = assembler.finish();
    assert_eq!(identity.get(PRODUCT_CODE), Some("B"));
    assert_eq!(identity.get(REVISION), Some("C"));
}

#[test]
fn malformed_sequences_are_garbage_not_loops() {
    let mut stuck = Assembler::new(Level::Basic);
    stuck.push(&response(&[(0, b"A")], true, 1)).unwrap();
    assert_eq!(
        stuck.push(&response(&[(1, b"B")], true, 1)),
        Err(Garbage::NoProgress { asked: 1, next: 1 })
    );
    assert_eq!(stuck.request(), None);

    let mut empty = Assembler::new(Level::Basic);
    assert_eq!(empty.push(&response(&[], true, 5)), Err(Garbage::Empty));

    // Always more, always forward: ends after MAX_REQUESTS.
    let mut endless = Assembler::new(Level::Extended);
    let mut result = Ok(());
    let mut sent = 0;
    while let Some((_, from)) = endless.request() {
        result = endless.push(&response(&[(from, b"x")], true, from.saturating_add(1)));
        sent += 1;
    }
    assert_eq!(result, Err(Garbage::TooManyRequests));
    assert_eq!(sent, MAX_REQUESTS);
}

#[test]
fn values_that_are_not_text_become_hex() {
    assert_eq!(decode_value(b"ok"), Some("ok".into()));
    assert_eq!(decode_value(b"\0\0"), None);
    assert_eq!(decode_value(b"  "), None);
    assert_eq!(decode_value(b"\xff\xfe"), Some("0xfffe".into()));
    assert_eq!(decode_value(b"a\nb"), Some("0x610a62".into()));
    assert_eq!(decode_value("Grüße".as_bytes()), Some("Grüße".into()));
}

#[test]
fn malformed_frames_never_panic() {
    // Frames as the fuzz target takes them: a length byte, then a PDU.
    let cases: &[&[u8]] = &[
        b"",
        b"\x00",
        b"\x01\x2b",
        b"\x02\x2b\x0e",
        // Truncated object list: announces 3 objects, carries one.
        b"\x0b\x2b\x0e\x02\x82\x00\x00\x03\x00\x02AB",
        // Object length beyond the frame.
        b"\x0a\x2b\x0e\x01\x01\x00\x00\x01\x00\xffA",
        // Invalid read code and conformity level.
        b"\x07\x2b\x0e\x09\x99\x00\x00\x00",
        // More follows, pointing backwards, twice.
        b"\x0c\x2b\x0e\x01\x01\xff\x00\x01\x00\x03ABC\x0c\x2b\x0e\x01\x01\xff\x00\x01\x00\x03ABC",
        // An exception frame and another function entirely.
        b"\x02\xab\x01\x03\x03\x02\x00",
        // The length byte claims more than there is.
        b"\xff\x2b\x0e",
    ];
    for case in cases {
        fuzzing::identification(case);
    }
    // And a few thousand random frames, same seed every run.
    let mut rng = fastrand::Rng::with_seed(0x4d6f_6462);
    for _ in 0..5000 {
        let len = rng.usize(0..300);
        let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Make most of them look like identification responses.
        if len > 2 && rng.bool() {
            data[1] = 0x2b;
            data[2] = 0x0e;
        }
        fuzzing::identification(&data);
    }
}
