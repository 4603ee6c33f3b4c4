//! The `details` of a udev DeviceSet, validated into a [`Config`].
//!
//! ```yaml
//! details:
//!   rules:                      # any rule may match; within a rule, every match must hold
//!     - SUBSYSTEM=="video4linux", ATTR{index}=="0"
//!     - SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001|6015"
//!   group: false                # fold matched children into their matched parent
//!   permissions: rw             # of every device node handed to pods: r, w, m
//! ```
//!
//! Everything is checked up front; every error names the field, and for a
//! rule the rule's index and the column.

use ambit_discovery::{DiscoverRequest, DiscoveryError};
use serde::Deserialize;

use crate::found::Shape;
use crate::rules::Rules;

/// The most rules one DeviceSet may give.
pub const MAX_RULES: usize = 64;
/// The longest rule, in bytes.
pub const MAX_RULE_LENGTH: usize = 4096;
/// Device-node permissions when `permissions` is not given.
pub const DEFAULT_PERMISSIONS: &str = "rw";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Details {
    rules: Vec<String>,
    #[serde(default)]
    group: bool,
    #[serde(default)]
    permissions: Option<String>,
}

/// A validated discovery configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The rules; a device matches when any does.
    pub rules: Rules,
    /// How matched devices become the device set.
    pub shape: Shape,
}

/// Validates the request's details.
pub fn parse(request: &DiscoverRequest) -> Result<Config, DiscoveryError> {
    let details: Details = request.details_as()?;
    let invalid = |message: String| DiscoveryError::InvalidDetails(message);
    if details.rules.is_empty() {
        return Err(invalid(
            "rules: give at least one rule, e.g. SUBSYSTEM==\"video4linux\"".to_owned(),
        ));
    }
    if details.rules.len() > MAX_RULES {
        return Err(invalid(format!(
            "rules: {} rules are more than the limit of {MAX_RULES}",
            details.rules.len()
        )));
    }
    if let Some((index, rule)) = details
        .rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.len() > MAX_RULE_LENGTH)
    {
        return Err(invalid(format!(
            "rules[{index}]: {} bytes are more than the limit of {MAX_RULE_LENGTH}",
            rule.len()
        )));
    }
    let rules = Rules::parse(&details.rules).map_err(|error| invalid(error.to_string()))?;
    let permissions = details
        .permissions
        .unwrap_or_else(|| DEFAULT_PERMISSIONS.to_owned());
    check_permissions(&permissions).map_err(|why| invalid(format!("permissions: {why}")))?;
    Ok(Config {
        rules,
        shape: Shape {
            group: details.group,
            permissions,
        },
    })
}

fn check_permissions(permissions: &str) -> Result<(), String> {
    if permissions.is_empty() {
        return Err("give at least one of r, w, m (e.g. rw)".to_owned());
    }
    let mut seen = String::new();
    for c in permissions.chars() {
        if !matches!(c, 'r' | 'w' | 'm') {
            return Err(format!(
                "{permissions:?} holds {c:?}; use r (read), w (write) and m (mknod), e.g. rw"
            ));
        }
        if seen.contains(c) {
            return Err(format!("{permissions:?} gives {c:?} twice"));
        }
        seen.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error(details: serde_json::Value) -> String {
        match parse(&DiscoverRequest::new(details)) {
            Err(DiscoveryError::InvalidDetails(message)) => message,
            other => panic!("expected invalid details, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config = parse(&DiscoverRequest::new(json!({
            "rules": ["SUBSYSTEM==\"tty\""]
        })))
        .unwrap();
        assert_eq!(
            config.shape,
            Shape {
                group: false,
                permissions: "rw".into()
            }
        );
        assert_eq!(config.rules.rules().len(), 1);
    }

    #[test]
    fn every_field() {
        let config = parse(&DiscoverRequest::new(json!({
            "rules": ["SUBSYSTEM==\"tty\"", "KERNEL==\"video*\""],
            "group": true,
            "permissions": "r",
        })))
        .unwrap();
        assert!(config.shape.group);
        assert_eq!(config.shape.permissions, "r");
        assert_eq!(config.rules.rules().len(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(error(json!({})), "missing field `rules`");
        assert_eq!(
            error(json!({"rules": []})),
            "rules: give at least one rule, e.g. SUBSYSTEM==\"video4linux\""
        );
        assert_eq!(
            error(json!({"rules": ["SUBSYSTEM==\"tty\""], "permission": "r"})),
            "permission: unknown field `permission`, expected one of `rules`, `group`, `permissions`"
        );
        assert_eq!(
            error(json!({"rules": [7]})),
            "rules[0]: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            error(json!({"rules": ["SUBSYSTEM==\"tty\"", "KERNEL=\"x\""]})),
            "rules[1], column 7: `=` assigns, and rules here only match: use `==` or `!=`"
        );
        assert_eq!(
            error(json!({"rules": ["SUBSYSTEM==\"tty\""], "permissions": "rx"})),
            "permissions: \"rx\" holds 'x'; use r (read), w (write) and m (mknod), e.g. rw"
        );
        assert_eq!(
            error(json!({"rules": ["SUBSYSTEM==\"tty\""], "permissions": "rr"})),
            "permissions: \"rr\" gives 'r' twice"
        );
        assert_eq!(
            error(json!({"rules": ["SUBSYSTEM==\"tty\""], "permissions": ""})),
            "permissions: give at least one of r, w, m (e.g. rw)"
        );
        let many: Vec<String> = (0..65).map(|_| "KERNEL==\"x\"".to_owned()).collect();
        assert_eq!(
            error(json!({ "rules": many })),
            "rules: 65 rules are more than the limit of 64"
        );
        let long = format!("KERNEL==\"{}\"", "x".repeat(5000));
        assert_eq!(
            error(json!({ "rules": [long] })),
            "rules[0]: 5010 bytes are more than the limit of 4096"
        );
    }
}
