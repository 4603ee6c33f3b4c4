//! A birth certificate's metrics as Device properties, bounded: the count,
//! and for the first `maxMetrics` (`bdSeq` left out) the name, the
//! datatype and the engineering unit when the metric's PropertySet has one.
//!
//! Keys are environment variable names, indexed because metric names are
//! free text: `SPARKPLUG_METRIC_0_NAME=Temperature`,
//! `SPARKPLUG_METRIC_0_DATATYPE=Double`, `SPARKPLUG_METRIC_0_UNIT=degC`.

use std::collections::BTreeMap;

use crate::proto::Payload;
use crate::proto::payload::property_value;

/// Property: how many metrics the birth certificate had (without bdSeq).
pub const METRIC_COUNT: &str = "SPARKPLUG_METRIC_COUNT";
/// Longest property value kept; longer ones are cut at a char boundary.
pub const MAX_VALUE_CHARS: usize = 256;

/// One metric's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    name: String,
    datatype: Option<u32>,
    unit: Option<String>,
}

/// The metrics of one birth certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    count: usize,
    list: Vec<MetricInfo>,
}

/// Describes the metrics of `payload`, keeping `max` at most.
pub fn describe(payload: &Payload, max: usize) -> Metrics {
    let named = payload
        .metrics
        .iter()
        .filter(|m| m.name.as_deref() != Some("bdSeq"));
    let count = named.clone().count();
    let list = named
        .take(max)
        .map(|m| MetricInfo {
            name: bounded(m.name.as_deref().unwrap_or_default()),
            datatype: m.datatype,
            unit: m.properties.as_ref().and_then(|set| {
                set.keys
                    .iter()
                    .zip(&set.values)
                    .find(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "engUnit" | "engUnits" | "engineeringUnits" | "unit" | "units"
                        )
                    })
                    .and_then(|(_, v)| match &v.value {
                        Some(property_value::Value::StringValue(s)) => Some(bounded(s)),
                        _ => None,
                    })
            }),
        })
        .collect();
    Metrics { count, list }
}

/// Adds the properties of `metrics`.
pub fn properties(metrics: &Metrics, out: &mut BTreeMap<String, String>) {
    out.insert(METRIC_COUNT.into(), metrics.count.to_string());
    for (i, metric) in metrics.list.iter().enumerate() {
        out.insert(format!("SPARKPLUG_METRIC_{i}_NAME"), metric.name.clone());
        if let Some(datatype) = metric.datatype {
            out.insert(
                format!("SPARKPLUG_METRIC_{i}_DATATYPE"),
                datatype_name(datatype),
            );
        }
        if let Some(unit) = &metric.unit {
            out.insert(format!("SPARKPLUG_METRIC_{i}_UNIT"), unit.clone());
        }
    }
}

/// The Sparkplug B datatype's name (specification 6.4.16), or its number.
fn datatype_name(datatype: u32) -> String {
    const NAMES: [&str; 35] = [
        "Unknown",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Float",
        "Double",
        "Boolean",
        "String",
        "DateTime",
        "Text",
        "UUID",
        "DataSet",
        "Bytes",
        "File",
        "Template",
        "PropertySet",
        "PropertySetList",
        "Int8Array",
        "Int16Array",
        "Int32Array",
        "Int64Array",
        "UInt8Array",
        "UInt16Array",
        "UInt32Array",
        "UInt64Array",
        "FloatArray",
        "DoubleArray",
        "BooleanArray",
        "StringArray",
        "DateTimeArray",
    ];
    usize::try_from(datatype)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| datatype.to_string(), |name| (*name).to_owned())
}

/// `text` cut to [`MAX_VALUE_CHARS`] characters.
pub fn bounded(text: &str) -> String {
    text.chars().take(MAX_VALUE_CHARS).collect()
}
