//! Bluetooth UUIDs as people write them: `180a`, `0x180A`, `0000180a` or the
//! full 128-bit form. Short forms sit on the Bluetooth base UUID
//! `0000xxxx-0000-1000-8000-00805f9b34fb`.

use uuid::Uuid;

/// The Bluetooth base UUID, which the 16- and 32-bit forms abbreviate.
const BASE: u128 = 0x0000_0000_0000_1000_8000_0080_5f9b_34fb;

/// Parses a 16-, 32- or 128-bit UUID; the error says what was expected.
pub fn parse_uuid(text: &str) -> Result<Uuid, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let short =
        (digits.len() == 4 || digits.len() == 8) && digits.chars().all(|c| c.is_ascii_hexdigit());
    if short {
        let value = u32::from_str_radix(digits, 16).map_err(|error| error.to_string())?;
        return Ok(Uuid::from_u128(BASE | (u128::from(value) << 96)));
    }
    Uuid::try_parse(text).map_err(|_| {
        format!(
            "{text:?} is not a UUID: give 16 or 32 bits in hex (\"180a\") or \
             128 bits (\"0000180a-0000-1000-8000-00805f9b34fb\")"
        )
    })
}

/// The shortest form of a UUID for a property name: 4 or 8 upper-case hex
/// digits for UUIDs on the base UUID, else all 32 digits.
pub fn property_suffix(uuid: &Uuid) -> String {
    let value = uuid.as_u128();
    if value & ((1u128 << 96) - 1) == BASE {
        let short = value >> 96;
        if short <= 0xFFFF {
            format!("{short:04X}")
        } else {
            format!("{short:08X}")
        }
    } else {
        format!("{value:032X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_expand_on_the_base_uuid() {
        let full = Uuid::try_parse("0000180a-0000-1000-8000-00805f9b34fb").unwrap();
        for text in [
            "180a",
            "0x180A",
            "0000180a",
            "0000180A-0000-1000-8000-00805F9B34FB",
        ] {
            assert_eq!(parse_uuid(text).unwrap(), full, "{text}");
        }
        assert_eq!(
            parse_uuid("12345678").unwrap().to_string(),
            "12345678-0000-1000-8000-00805f9b34fb"
        );
        assert!(parse_uuid("18a").unwrap_err().contains("is not a UUID"));
        assert!(parse_uuid("xyzw").is_err());
    }

    #[test]
    fn property_suffixes_are_short_where_they_can_be() {
        assert_eq!(property_suffix(&parse_uuid("2a24").unwrap()), "2A24");
        assert_eq!(
            property_suffix(&parse_uuid("12345678").unwrap()),
            "12345678"
        );
        let custom = parse_uuid("6e400001-b5a3-f393-e0a9-e50e24dcca9e").unwrap();
        assert_eq!(property_suffix(&custom), "6E400001B5A3F393E0A9E50E24DCCA9E");
    }
}
