//! The labels and annotations the controller puts on what it creates (their
//! keys and meaning are in `ambit_crds::contract`), and the names it gives
//! them.
//!
//! Every broker pod, Job and Service carries labels naming its DeviceSet and
//! (where it has one) its Device, so `kubectl get pods -l ambit.dev/device-set=cams`
//! finds them, and Services select by them.

use std::collections::BTreeMap;

use ambit_crds::contract::{self, DEVICE_LABEL, MANAGED_BY, NODE_LABEL, SET_LABEL, SPEC_HASH};
use sha2::{Digest, Sha256};

/// The label naming a shared device's namespace on its ResourceSlices, so
/// that controllers scoped to one namespace each see only their own slices.
pub const NAMESPACE_LABEL: &str = "ambit.dev/namespace";

/// The label selector of the ResourceSlices this controller manages (the
/// agents' slices are managed by `ambit-agent`).
pub fn slice_selector(namespace: Option<&str>) -> String {
    let managed = format!("{MANAGED_BY}={}", contract::CONTROLLER);
    match namespace {
        Some(ns) => format!("{managed},{NAMESPACE_LABEL}={ns}"),
        None => managed,
    }
}

/// Whether `value` can be a label value (63 characters, alphanumerics and
/// `-_.` inside).
pub fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .last()
            .is_none_or(|c| c.is_ascii_alphanumeric())
}

/// Labels naming the set, and the device and node when given (each only
/// when it fits a label value; the node is also an annotation).
pub fn of(set: &str, device: Option<&str>, node: Option<&str>) -> BTreeMap<String, String> {
    [
        (SET_LABEL, Some(set)),
        (DEVICE_LABEL, device),
        (NODE_LABEL, node),
    ]
    .into_iter()
    .filter_map(|(key, value)| {
        value
            .filter(|v| is_label_value(v))
            .map(|v| (key.to_owned(), v.to_owned()))
    })
    .collect()
}

/// A short, stable hash of `parts` (hex, `len` digits, at most 64).
pub fn short_hash(parts: &[&str], len: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.chars().take(len).collect()
}

/// A hash of any serializable value, for [`SPEC_HASH`].
pub fn spec_hash(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    short_hash(&[&json], 16)
}

/// The [`SPEC_HASH`] annotation of `object`.
pub fn spec_hash_of(object: &impl kube::Resource) -> Option<&String> {
    object.meta().annotations.as_ref()?.get(SPEC_HASH)
}

/// `base` with `suffix`, shortened so the result is a DNS-1035 label (a
/// Service name): at most 63 characters, starting with a letter.
pub fn dns_label(base: &str, suffix: &str) -> String {
    let mut name = String::new();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.push_str("x-");
    }
    name.push_str(base);
    let room = 63 - suffix.len();
    if name.len() > room {
        // Keep it unique with a hash of the whole base.
        let hash = short_hash(&[base], 8);
        name.truncate(room - hash.len() - 1);
        name = format!("{}-{hash}", name.trim_end_matches(['-', '.']));
    }
    format!("{}{suffix}", name.replace('.', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_leave_out_what_does_not_fit() {
        let long = "n".repeat(70);
        let labels = of("cams", Some("cams-0123"), Some(&long));
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[SET_LABEL], "cams");
        assert!(!labels.contains_key(NODE_LABEL));
    }

    #[test]
    fn service_names_are_dns_1035_labels() {
        assert_eq!(dns_label("cams-0123", "-svc"), "cams-0123-svc");
        assert_eq!(dns_label("1st-floor", "-svc"), "x-1st-floor-svc");
        let long = dns_label(&"a.b".repeat(40), "-svc");
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{long}"
        );
        assert_ne!(
            dns_label(&format!("{}x", "a".repeat(70)), ""),
            dns_label(&format!("{}y", "a".repeat(70)), "")
        );
    }
}
