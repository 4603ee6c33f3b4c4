//! Unit ids to try, as `details` give them: numbers and `"FROM-TO"` ranges,
//! e.g. `[1, 2, "10-20"]`.

use std::collections::BTreeSet;

use serde_json::Value;

/// Which unit ids a transport allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// 0..=247, and 255 (the Modbus TCP id for "the device itself").
    Tcp,
    /// 1..=247: 0 is the broadcast address, which no device answers.
    Rtu,
}

/// The most unit ids one transport may try per address (every valid one).
const HIGHEST: u8 = 247;

/// Parses `field` (e.g. `tcp.unitIds`) into a sorted list without repeats.
pub(crate) fn parse(field: &str, items: &[Value], transport: Transport) -> Result<Vec<u8>, String> {
    if items.is_empty() {
        return Err(format!("{field}: give at least one unit id"));
    }
    let mut units = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let at = format!("{field}[{index}]");
        let (from, to) = match item {
            Value::Number(number) => {
                let id = number
                    .as_u64()
                    .ok_or_else(|| format!("{at}: {number} is not a unit id"))?;
                (id, id)
            }
            Value::String(text) => range(&at, text)?,
            other => {
                return Err(format!(
                    "{at}: expected a unit id (a number) or a range such as \"1-10\", got {other}"
                ));
            }
        };
        for id in [from, to] {
            check(&at, id, transport)?;
        }
        if from > to {
            return Err(format!("{at}: range {from}-{to} runs backwards"));
        }
        // Both ends are valid, so everything between them is too, except
        // that a TCP range may not run across 248..=254.
        for id in from..=to {
            check(&at, id, transport)?;
            units.insert(u8::try_from(id).map_err(|_| format!("{at}: {id} is not a unit id"))?);
        }
    }
    Ok(units.into_iter().collect())
}

fn range(at: &str, text: &str) -> Result<(u64, u64), String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|_| format!("{at}: {text:?} is not a unit id or a range such as \"1-10\""))
    };
    match text.split_once('-') {
        Some((from, to)) => Ok((number(from)?, number(to)?)),
        None => {
            let id = number(text)?;
            Ok((id, id))
        }
    }
}

fn check(at: &str, id: u64, transport: Transport) -> Result<(), String> {
    let valid = match transport {
        Transport::Tcp => id <= u64::from(HIGHEST) || id == 255,
        Transport::Rtu => (1..=u64::from(HIGHEST)).contains(&id),
    };
    if valid {
        return Ok(());
    }
    Err(match transport {
        Transport::Tcp => format!("{at}: unit id {id} is out of range (0-247, or 255)"),
        Transport::Rtu if id == 0 => {
            format!("{at}: unit id 0 is the broadcast address, which no device answers (use 1-247)")
        }
        Transport::Rtu => format!("{at}: unit id {id} is out of range (1-247)"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn units(value: Value, transport: Transport) -> Result<Vec<u8>, String> {
        let Value::Array(items) = value else {
            panic!("test input must be an array")
        };
        parse("unitIds", &items, transport)
    }

    #[test]
    fn numbers_and_ranges_sorted_without_repeats() {
        assert_eq!(
            units(json!([5, "1-3", 2, "7"]), Transport::Tcp).unwrap(),
            [1, 2, 3, 5, 7]
        );
        assert_eq!(units(json!([255, 0]), Transport::Tcp).unwrap(), [0, 255]);
        assert_eq!(units(json!(["1-247"]), Transport::Rtu).unwrap().len(), 247);
    }

    #[test]
    fn errors_name_the_item() {
        let cases = [
            (
                json!([]),
                Transport::Tcp,
                "unitIds: give at least one unit id",
            ),
            (
                json!([1, 248]),
                Transport::Tcp,
                "unitIds[1]: unit id 248 is out of range (0-247, or 255)",
            ),
            (
                json!(["240-255"]),
                Transport::Tcp,
                "unitIds[0]: unit id 248 is out of range (0-247, or 255)",
            ),
            (
                json!([0]),
                Transport::Rtu,
                "unitIds[0]: unit id 0 is the broadcast address, which no device answers (use 1-247)",
            ),
            (
                json!([255]),
                Transport::Rtu,
                "unitIds[0]: unit id 255 is out of range (1-247)",
            ),
            (
                json!(["9-3"]),
                Transport::Tcp,
                "unitIds[0]: range 9-3 runs backwards",
            ),
            (
                json!(["a-3"]),
                Transport::Tcp,
                "unitIds[0]: \"a-3\" is not a unit id or a range such as \"1-10\"",
            ),
            (
                json!([-1]),
                Transport::Tcp,
                "unitIds[0]: -1 is not a unit id",
            ),
            (
                json!([1.5]),
                Transport::Tcp,
                "unitIds[0]: 1.5 is not a unit id",
            ),
            (
                json!([true]),
                Transport::Tcp,
                "unitIds[0]: expected a unit id (a number) or a range such as \"1-10\", got true",
            ),
        ];
        for (input, transport, expected) in cases {
            assert_eq!(
                units(input.clone(), transport).unwrap_err(),
                expected,
                "{input}"
            );
        }
    }
}
