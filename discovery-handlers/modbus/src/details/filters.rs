//! Filters on identification objects: include and exclude lists of shell
//! globs (`*`, `?`, `[a-z]`), matched case-sensitively against the whole value.
//!
//! ```yaml
//! filters:
//!   vendor: { include: ["Schneider*", "WAGO*"], exclude: ["*Test*"] }
//!   productCode: { include: ["BMX*"] }
//! ```
//!
//! A device passes when every filter passes: its value matches some
//! `include` pattern (or `include` is empty) and no `exclude` pattern. A
//! device that did not tell the object (no device identification, or not
//! that object) fails any `include` and passes any `exclude`.

use ambit_discovery::fields::globs;
use glob::Pattern;
use serde::Deserialize;

use crate::identify::{ObjectId, PRODUCT_CODE, PRODUCT_NAME, VENDOR};

/// `filters`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FiltersSpec {
    vendor: Option<FilterSpec>,
    product_code: Option<FilterSpec>,
    product_name: Option<FilterSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterSpec {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// One object's filter.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub object: ObjectId,
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl Filter {
    /// Whether a device whose object has `value` (`None`: not told) passes.
    pub(crate) fn passes(&self, value: Option<&str>) -> bool {
        let included = self.include.is_empty()
            || value.is_some_and(|v| self.include.iter().any(|p| p.matches(v)));
        let excluded = value.is_some_and(|v| self.exclude.iter().any(|p| p.matches(v)));
        included && !excluded
    }
}

/// Validates `filters` into one filter per object named.
pub(crate) fn validate(spec: FiltersSpec) -> Result<Vec<Filter>, String> {
    let named = [
        ("vendor", VENDOR, spec.vendor),
        ("productCode", PRODUCT_CODE, spec.product_code),
        ("productName", PRODUCT_NAME, spec.product_name),
    ];
    let mut filters = Vec::new();
    for (field, object, spec) in named {
        let Some(spec) = spec else { continue };
        let field = format!("filters.{field}");
        filters.push(Filter {
            object,
            include: globs(&field, "include", &spec.include)?,
            exclude: globs(&field, "exclude", &spec.exclude)?,
        });
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(value: serde_json::Value) -> Result<Filter, String> {
        let spec: FiltersSpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let mut filters = validate(spec)?;
        assert_eq!(filters.len(), 1);
        Ok(filters.remove(0))
    }

    #[test]
    fn include_and_exclude_globs() {
        let f =
            filter(json!({"vendor": {"include": ["Schneider*", "WAGO"], "exclude": ["*Test*"]}}))
                .unwrap();
        assert_eq!(f.object, VENDOR);
        assert!(f.passes(Some("Schneider Electric")));
        assert!(f.passes(Some("WAGO")));
        assert!(!f.passes(Some("WAGO Kontakttechnik")));
        assert!(!f.passes(Some("Schneider Test Rig")));
        assert!(!f.passes(Some("schneider")), "case-sensitive");
        assert!(!f.passes(None), "an include needs a known value");

        let exclude_only = filter(json!({"productCode": {"exclude": ["SIM-*"]}})).unwrap();
        assert!(exclude_only.passes(None));
        assert!(exclude_only.passes(Some("BMX-P34")));
        assert!(!exclude_only.passes(Some("SIM-PLC-1")));
    }

    #[test]
    fn bad_globs_are_named() {
        assert_eq!(
            filter(json!({"productName": {"include": ["ok", "[a-"]}})).unwrap_err(),
            "filters.productName.include[1]: \"[a-\" is not a valid glob: Pattern syntax error near position 0: invalid range pattern"
        );
    }
}
