//! Stable names for Device and DeviceReport objects.
//!
//! A Device is named `<deviceset>-<hash>`, the hash taken over the set's name,
//! the handler's id for the device and, for a local device, the node. The
//! same device always gets the same name (so a device that comes back finds
//! its old object), and 64 bits of hash make collisions no practical risk
//! (about one in 10^10 for a million devices in one namespace).
//!
//! Names stay within 63 characters, so a Device name can be used as a label
//! value and as the name part of an extended resource (`ambit.dev/<device>`).

use sha2::{Digest, Sha256};

/// The longest name a Device gets: a DNS-1123 label.
pub const MAX_NAME_LEN: usize = 63;

/// Hex digits of hash in a name (64 bits).
const HASH_HEX_LEN: usize = 16;

/// The name of the Device for `id` found by `device_set`; `node` is the node
/// a local device is attached to, `None` for a shared (network) device.
pub fn device_name(device_set: &str, id: &str, node: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    for part in [device_set, id, node.unwrap_or("")] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update([u8::from(node.is_some())]);
    named(device_set, &hasher.finalize(), MAX_NAME_LEN)
}

/// The name of shard `shard` of the DeviceReport of `node` for
/// `device_set`: `<deviceset>-r<hash>-<shard>`, within 63 characters.
pub fn report_name(device_set: &str, node: &str, shard: u32) -> String {
    let mut hasher = Sha256::new();
    for part in [device_set, node] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let suffix = format!("-{shard}");
    let base = named(
        device_set,
        &hasher.finalize(),
        MAX_NAME_LEN - suffix.len() - 1,
    );
    let (prefix, hash) = base.rsplit_once('-').unwrap_or(("d", &base));
    format!("{prefix}-r{hash}{suffix}")
}

/// `<prefix of name>-<hash>`, at most `max` characters, a DNS-1123 label.
fn named(name: &str, digest: &[u8], max: usize) -> String {
    let hash: String = digest
        .iter()
        .take(HASH_HEX_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();

    let room = max - HASH_HEX_LEN - 1;
    let prefix = name
        .get(..room.min(name.len()))
        .unwrap_or(name)
        .trim_end_matches(['-', '.'])
        .replace('.', "-");
    if prefix.is_empty() {
        format!("d-{hash}")
    } else {
        format!("{prefix}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_are_per_set_node_and_shard() {
        let a = report_name("cams", "edge-1", 0);
        assert!(a.starts_with("cams-r") && a.ends_with("-0"), "{a}");
        assert_eq!(a, report_name("cams", "edge-1", 0));
        assert_ne!(a, report_name("cams", "edge-2", 0));
        assert_ne!(a, report_name("cams", "edge-1", 1));
        assert_ne!(a, report_name("cams2", "edge-1", 0));
        let long = report_name(&"plant.a.".repeat(30), &"n".repeat(200), 255);
        assert!(long.len() <= MAX_NAME_LEN, "{long}");
        assert!(long.ends_with("-255"), "{long}");
    }

    #[test]
    fn names_are_stable_and_distinct() {
        let a = device_name("cams", "/dev/video0", Some("edge-1"));
        assert_eq!(a, device_name("cams", "/dev/video0", Some("edge-1")));
        assert_ne!(a, device_name("cams", "/dev/video0", Some("edge-2")));
        assert_ne!(a, device_name("cams", "/dev/video1", Some("edge-1")));
        assert_ne!(a, device_name("cams", "/dev/video0", None));
        assert_ne!(a, device_name("cams2", "/dev/video0", Some("edge-1")));
        assert!(a.starts_with("cams-"));
        assert_eq!(a.len(), "cams-".len() + HASH_HEX_LEN);
    }

    #[test]
    fn parts_cannot_be_shifted_into_each_other() {
        assert_ne!(device_name("ab", "c", None), device_name("a", "bc", None));
        assert_ne!(device_name("a", "b", Some("")), device_name("a", "b", None));
    }

    #[test]
    fn names_are_dns_labels_even_for_long_dotted_sets() {
        let set = "plant.a.".repeat(30);
        let name = device_name(&set, "x", None);
        assert!(name.len() <= MAX_NAME_LEN, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
    }
}
