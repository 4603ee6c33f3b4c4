//! Probe reads: registers a device must answer, optionally with expected
//! values, to count as the device a DeviceSet looks for.
//!
//! ```yaml
//! probes:
//!   - { name: model, register: holding, address: 0, equals: [1234] }
//!   - { name: temperature, register: input, address: 10, count: 2, min: 0, max: 1000 }
//! ```

use serde::Deserialize;

/// Registers one Modbus read may return (function 3 and 4).
pub const MAX_COUNT: u16 = 125;
/// Probes one DeviceSet may have.
pub const MAX_PROBES: usize = 16;

/// Which registers a probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RegisterKind {
    /// Holding registers (function 3).
    Holding,
    /// Input registers (function 4).
    Input,
}

/// One entry of `probes`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProbeSpec {
    name: String,
    register: RegisterKind,
    address: u16,
    count: Option<u16>,
    equals: Option<Vec<u16>>,
    min: Option<u16>,
    max: Option<u16>,
    report: Option<bool>,
}

/// What a probe's values must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Any answer matches.
    Anything,
    /// Exactly these values.
    Equals(Vec<u16>),
    /// Every value within `min..=max`.
    Range { min: u16, max: u16 },
}

/// A validated probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    /// Its property: `MODBUS_PROBE_<NAME>`.
    pub property: String,
    pub register: RegisterKind,
    pub address: u16,
    pub count: u16,
    pub expect: Expect,
    /// Whether the values read become the device's property.
    pub report: bool,
}

impl Probe {
    /// Whether `values`, as read, match.
    pub(crate) fn matches(&self, values: &[u16]) -> bool {
        if values.len() != usize::from(self.count) {
            return false;
        }
        match &self.expect {
            Expect::Anything => true,
            Expect::Equals(expected) => values == expected.as_slice(),
            Expect::Range { min, max } => values.iter().all(|v| (min..=max).contains(&v)),
        }
    }
}

/// Validates `probes`.
pub(crate) fn validate(specs: Vec<ProbeSpec>) -> Result<Vec<Probe>, String> {
    if specs.len() > MAX_PROBES {
        return Err(format!(
            "probes: {} probes are more than the limit of {MAX_PROBES}",
            specs.len()
        ));
    }
    let mut probes: Vec<Probe> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let probe = validate_one(spec).map_err(|why| format!("probes[{index}].{why}"))?;
        if probes.iter().any(|p| p.property == probe.property) {
            return Err(format!(
                "probes[{index}].name: another probe already reports {}",
                probe.property
            ));
        }
        probes.push(probe);
    }
    Ok(probes)
}

fn validate_one(spec: ProbeSpec) -> Result<Probe, String> {
    let name = spec.name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "name: {:?} must be letters, digits and '_' (it becomes MODBUS_PROBE_<NAME>)",
            spec.name
        ));
    }
    let count = spec
        .count
        .or(spec
            .equals
            .as_ref()
            .and_then(|e| u16::try_from(e.len()).ok()))
        .unwrap_or(1);
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(format!("count: must be 1 to {MAX_COUNT}, not {count}"));
    }
    if u32::from(spec.address) + u32::from(count) > 1 << 16 {
        return Err(format!(
            "count: {count} registers from address {} run past the last register (65535)",
            spec.address
        ));
    }
    let expect = match (spec.equals, spec.min, spec.max) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err("equals: give either `equals` or `min`/`max`, not both".into());
        }
        (Some(values), None, None) => {
            if values.len() != usize::from(count) {
                return Err(format!(
                    "equals: {} values for {count} registers",
                    values.len()
                ));
            }
            Expect::Equals(values)
        }
        (None, None, None) => Expect::Anything,
        (None, min, max) => {
            let (min, max) = (min.unwrap_or(u16::MIN), max.unwrap_or(u16::MAX));
            if min > max {
                return Err(format!("min: {min} is greater than max ({max})"));
            }
            Expect::Range { min, max }
        }
    };
    // Measured values change from scan to scan; reporting them would rewrite
    // the Device each time, so range probes only report when asked to.
    let report = spec
        .report
        .unwrap_or(!matches!(expect, Expect::Range { .. }));
    Ok(Probe {
        property: format!("MODBUS_PROBE_{}", name.to_ascii_uppercase()),
        register: spec.register,
        address: spec.address,
        count,
        expect,
        report,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn probes(value: Value) -> Result<Vec<Probe>, String> {
        let specs: Vec<ProbeSpec> = serde_json::from_value(value).map_err(|e| e.to_string())?;
        validate(specs)
    }

    #[test]
    fn defaults_follow_the_expectation() {
        let got = probes(json!([
            {"name": "model", "register": "holding", "address": 0, "equals": [1, 2]},
            {"name": "temp", "register": "input", "address": 10, "min": 5},
            {"name": "serial_no", "register": "holding", "address": 7, "count": 3},
        ]))
        .unwrap();
        assert_eq!(got[0].property, "MODBUS_PROBE_MODEL");
        assert_eq!((got[0].count, got[0].report), (2, true));
        assert_eq!(got[1].expect, Expect::Range { min: 5, max: 65535 });
        assert_eq!((got[1].count, got[1].report), (1, false));
        assert_eq!(got[2].property, "MODBUS_PROBE_SERIAL_NO");
        assert_eq!((got[2].expect.clone(), got[2].count), (Expect::Anything, 3));

        assert!(got[0].matches(&[1, 2]));
        assert!(!got[0].matches(&[1, 3]));
        assert!(!got[0].matches(&[1]));
        assert!(got[1].matches(&[5]) && !got[1].matches(&[4]));
        assert!(got[2].matches(&[0, 0, 9]) && !got[2].matches(&[0, 0]));
    }

    #[test]
    fn errors_name_the_field() {
        let base = json!({"name": "a", "register": "holding", "address": 0});
        let with = |extra: Value| {
            let mut probe = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                probe[k] = v.clone();
            }
            probes(json!([probe])).unwrap_err()
        };
        assert_eq!(
            with(json!({"name": "a-b"})),
            "probes[0].name: \"a-b\" must be letters, digits and '_' (it becomes MODBUS_PROBE_<NAME>)"
        );
        assert_eq!(
            with(json!({"count": 0})),
            "probes[0].count: must be 1 to 125, not 0"
        );
        assert_eq!(
            with(json!({"count": 126})),
            "probes[0].count: must be 1 to 125, not 126"
        );
        assert_eq!(
            with(json!({"address": 65535, "count": 2})),
            "probes[0].count: 2 registers from address 65535 run past the last register (65535)"
        );
        assert_eq!(
            with(json!({"equals": [1], "min": 0})),
            "probes[0].equals: give either `equals` or `min`/`max`, not both"
        );
        assert_eq!(
            with(json!({"equals": [1], "count": 2})),
            "probes[0].equals: 1 values for 2 registers"
        );
        assert_eq!(
            with(json!({"min": 9, "max": 3})),
            "probes[0].min: 9 is greater than max (3)"
        );
        assert_eq!(
            probes(json!([base.clone(), {"name": "A", "register": "input", "address": 1}]))
                .unwrap_err(),
            "probes[1].name: another probe already reports MODBUS_PROBE_A"
        );
    }
}
