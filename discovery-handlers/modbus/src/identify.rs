//! Read Device Identification (function 43, MEI type 14): assembling a
//! device's identification objects from one or more responses, and turning
//! them into properties.
//!
//! ```text
//!   request(level, 0) ──► response {objects, more_follows, next_object_id}
//!        ▲                         │ push(): check, keep objects
//!        └── next_object_id ◄──────┘ while more follow (at most MAX_REQUESTS)
//!                                  ▼
//!                        Identity {0: vendor, 1: product code, 2: revision, ...}
//! ```
//!
//! tokio-modbus decodes the frames; everything here treats what it decoded
//! as untrusted: a device may announce more objects forever, send the same
//! object twice, or fill values with bytes that are not text. None of that
//! panics or loops; it ends the identification with what is known, or as
//! garbage (not a match).

use std::collections::BTreeMap;

use tokio_modbus::prelude::{ReadCode, ReadDeviceIdentificationResponse};

/// An identification object's id.
pub type ObjectId = u8;

/// VendorName (basic, mandatory).
pub const VENDOR: ObjectId = 0x00;
/// ProductCode (basic, mandatory).
pub const PRODUCT_CODE: ObjectId = 0x01;
/// MajorMinorRevision (basic, mandatory).
pub const REVISION: ObjectId = 0x02;
/// ProductName (regular, optional).
pub const PRODUCT_NAME: ObjectId = 0x04;

/// The standard objects and their properties; 0x80–0xFF (extended, private
/// to the vendor) become `MODBUS_OBJECT_<HEX>`, and 0x07–0x7F are reserved.
const STANDARD: [(ObjectId, &str); 7] = [
    (VENDOR, "MODBUS_VENDOR"),
    (PRODUCT_CODE, "MODBUS_PRODUCT_CODE"),
    (REVISION, "MODBUS_REVISION"),
    (0x03, "MODBUS_VENDOR_URL"),
    (PRODUCT_NAME, "MODBUS_PRODUCT_NAME"),
    (0x05, "MODBUS_MODEL_NAME"),
    (0x06, "MODBUS_USER_APPLICATION_NAME"),
];

/// Requests one identification may take: 256 object ids, and every
/// response carries at least one object when more follow.
pub const MAX_REQUESTS: usize = 32;

/// Which category of objects to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Vendor, product code, revision.
    Basic,
    /// Also vendor URL, product name, model name, user application name.
    #[default]
    Regular,
    /// Also the vendor's private objects 0x80–0xFF.
    Extended,
}

impl Level {
    pub(crate) fn read_code(self) -> ReadCode {
        match self {
            Self::Basic => ReadCode::Basic,
            Self::Regular => ReadCode::Regular,
            Self::Extended => ReadCode::Extended,
        }
    }
}

/// A device's identification objects, decoded to text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    objects: BTreeMap<ObjectId, String>,
}

impl Identity {
    /// The value of one object, if the device told it.
    pub fn get(&self, object: ObjectId) -> Option<&str> {
        self.objects.get(&object).map(String::as_str)
    }

    /// The objects as device properties (reserved ids are left out).
    pub fn properties(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.objects.iter().filter_map(|(id, value)| {
            let name = match STANDARD.iter().find(|(object, _)| object == id) {
                Some((_, name)) => (*name).to_owned(),
                None if *id >= 0x80 => format!("MODBUS_OBJECT_{id:02X}"),
                None => return None,
            };
            Some((name, value.clone()))
        })
    }
}

/// Why a device's identification is garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    /// More objects were announced, but not after the ones already read.
    NoProgress { asked: ObjectId, next: ObjectId },
    /// More objects were announced, without any in this response.
    Empty,
    /// The device kept announcing more objects.
    TooManyRequests,
}

impl std::fmt::Display for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoProgress { asked, next } => write!(
                f,
                "asked from object {asked:#04x}, told to continue at {next:#04x}"
            ),
            Self::Empty => f.write_str("more objects announced, none sent"),
            Self::TooManyRequests => write!(f, "more than {MAX_REQUESTS} responses"),
        }
    }
}

/// Collects one device's identification over as many requests as it takes.
#[derive(Debug)]
pub struct Assembler {
    level: Level,
    next: Option<ObjectId>,
    requests: usize,
    objects: BTreeMap<ObjectId, String>,
}

impl Assembler {
    /// Starts reading `level` from the first object.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            next: Some(0),
            requests: 0,
            objects: BTreeMap::new(),
        }
    }

    /// The next request to send: `(read code, first object id)`, or `None`
    /// when done.
    pub fn request(&self) -> Option<(ReadCode, ObjectId)> {
        self.next.map(|object| (self.level.read_code(), object))
    }

    /// Takes the response to the last [`request`](Self::request).
    pub fn push(&mut self, response: &ReadDeviceIdentificationResponse) -> Result<(), Garbage> {
        let Some(asked) = self.next else {
            return Ok(());
        };
        self.requests += 1;
        for object in &response.device_id_objects {
            if let Some(value) = decode_value(&object.value) {
                // The first value told wins; a repeat cannot rewrite it.
                self.objects.entry(object.id).or_insert(value);
            }
        }
        self.next = None;
        if !response.more_follows {
            return Ok(());
        }
        if response.device_id_objects.is_empty() {
            return Err(Garbage::Empty);
        }
        if response.next_object_id <= asked {
            return Err(Garbage::NoProgress {
                asked,
                next: response.next_object_id,
            });
        }
        if self.requests >= MAX_REQUESTS {
            return Err(Garbage::TooManyRequests);
        }
        self.next = Some(response.next_object_id);
        Ok(())
    }

    /// What was read.
    pub fn finish(self) -> Identity {
        Identity {
            objects: self.objects,
        }
    }
}

/// An object's value as a property: text without padding, or `0x<hex>`
/// when it is not printable text; `None` when empty.
pub fn decode_value(bytes: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.trim_matches(|c: char| c == '\0' || c.is_whitespace()),
        Err(_) => return Some(hex(bytes)),
    };
    if text.is_empty() {
        None
    } else if text.chars().any(char::is_control) {
        Some(hex(bytes))
    } else {
        Some(text.to_owned())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("0x");
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
#[path = "identify_tests.rs"]
mod tests;
