//! Ambit's devices in Dynamic Resource Allocation (`resource.k8s.io/v1`):
//! the driver name, how a Device becomes DRA devices, pools and
//! ResourceSlices. Pure functions, shared by the agent (which publishes the
//! per-node pool of local devices, and prepares claims for the kubelet) and
//! the controller (which publishes the shared devices of a DeviceSet in one
//! pool per set of nodes that see them, whose node selector names those
//! nodes). Kept out of `ambit-crds`, which
//! only defines the API's types.
//!
//! A Device with `capacity` n becomes n DRA devices, one per slot, so the
//! scheduler never gives out more concurrent claims than the capacity. Each
//! carries the Device's name, namespace, DeviceSet, id, slot, and its
//! properties as attributes (typed where the value reads as a bool, an
//! integer or a semantic version), so claims select with CEL:
//!
//! ```text
//! device.attributes["ambit.dev"].device == "cams-1a2b3c4d5e6f7a8b"
//! device.attributes["ambit.dev"].deviceSet == "cams" && device.attributes["ambit.dev"].namespace == "plant"
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::api::resource::v1::{
    Device as DraDevice, DeviceAttribute, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use ambit_crds::v1alpha1::DeviceSpec;

/// The DRA driver name, and the name of the DeviceClass that selects it.
pub const DRIVER: &str = "ambit.dev";

/// The label every ResourceSlice Ambit publishes carries (value: the pool).
pub const POOL_LABEL: &str = "ambit.dev/pool";

/// The label on the slices of a pool of shared devices: their DeviceSet's
/// uid (slices are cluster-scoped, so they are swept when it goes).
pub const SET_UID_LABEL: &str = "ambit.dev/device-set-uid";

/// The label on the slices of one shared device, as earlier builds
/// published them (a pool per Device): the Device's uid. The controller no
/// longer writes it, and deletes the slices that carry it.
pub const DEVICE_UID_LABEL: &str = "ambit.dev/device-uid";

/// Most devices in one ResourceSlice (the API's limit).
pub const MAX_DEVICES_PER_SLICE: usize = 128;

/// Most attributes of one device (the API's limit).
const MAX_ATTRIBUTES: usize = 32;

/// Longest string attribute value (the API's limit).
const MAX_STRING: usize = 64;

/// Longest attribute name (a C identifier).
const MAX_ATTRIBUTE_NAME: usize = 32;

/// Attributes every device has; properties cannot take these names.
pub const BUILTIN_ATTRIBUTES: &[&str] =
    &["device", "namespace", "deviceSet", "id", "slot", "shared"];

/// One Ambit Device as DRA sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Offered<'a> {
    /// The Device's namespace.
    pub namespace: &'a str,
    /// The Device's name.
    pub name: &'a str,
    /// The Device's spec.
    pub spec: &'a DeviceSpec,
}

/// The pool of this node's local devices: the node's name.
pub fn node_pool(node: &str) -> String {
    node.to_owned()
}

/// The pool of the shared devices of the DeviceSet `namespace/set` that
/// the same nodes see: `shared/<namespace>/<set>/<nodes>`, where `nodes`
/// names that set of nodes (a hash), so the pool's node selector is theirs.
/// A device whose nodes change moves to another pool; its DRA device name
/// stays (see [`slot_device_name`]), which is how a node finds it.
/// (A set whose name would make the pool's name too long is named by a
/// hash.)
pub fn shared_pool(namespace: &str, set: &str, nodes: &str) -> String {
    let pool = format!("{SHARED_POOLS}{namespace}/{set}/{nodes}");
    if pool.len() <= MAX_POOL_NAME {
        return pool;
    }
    format!("{SHARED_POOLS}{namespace}/s{}/{nodes}", hex_hash(&[set], 8))
}

/// The longest pool name (the API's limit).
const MAX_POOL_NAME: usize = 253;

/// What the name of every pool of shared devices starts with.
const SHARED_POOLS: &str = "shared/";

/// Whether `pool` holds shared devices (then its DRA device names are
/// unique among every shared pool, and name the Device without the pool).
pub fn is_shared_pool(pool: &str) -> bool {
    pool.starts_with(SHARED_POOLS)
}

/// The DRA device name of `slot` of a Device: a DNS label unique within a
/// pool, and among all pools of shared devices (a node's pool holds local
/// devices of every namespace, so the name hashes namespace and name; the
/// slot is readable at the end).
pub fn slot_device_name(namespace: &str, device: &str, slot: u32) -> String {
    format!("d{}-{slot}", hex_hash(&[namespace, device], 8))
}

/// The first `bytes` bytes of the SHA-256 of `parts` (each length-prefixed,
/// so no two lists of parts collide by where they split), in hex.
pub fn hex_hash(parts: &[&str], bytes: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The slots of a Device: its capacity, at least one.
pub fn slots(spec: &DeviceSpec) -> u32 {
    u32::try_from(spec.capacity.max(1)).unwrap_or(1)
}

/// The DRA devices of one Ambit Device, one per slot.
pub fn devices_of(offered: &Offered<'_>) -> Vec<DraDevice> {
    let attributes = attributes(offered);
    (0..slots(offered.spec))
        .map(|slot| {
            let mut attributes = attributes.clone();
            attributes.insert("slot".into(), int(i64::from(slot)));
            DraDevice {
                name: slot_device_name(offered.namespace, offered.name, slot),
                attributes: Some(attributes),
                ..Default::default()
            }
        })
        .collect()
}

/// The attributes of a Device's DRA devices, without the slot.
fn attributes(offered: &Offered<'_>) -> BTreeMap<String, DeviceAttribute> {
    let mut attributes = BTreeMap::new();
    attributes.insert("device".into(), string(offered.name));
    attributes.insert("namespace".into(), string(offered.namespace));
    attributes.insert("deviceSet".into(), string(&offered.spec.device_set));
    attributes.insert("shared".into(), boolean(offered.spec.shared));
    if offered.spec.id.len() <= MAX_STRING {
        attributes.insert("id".into(), string(&offered.spec.id));
    }
    // Properties, in name order, while there is room (one is kept for the slot).
    for (key, value) in &offered.spec.properties {
        if attributes.len() + 1 >= MAX_ATTRIBUTES {
            break;
        }
        let Some(name) = attribute_name(key) else {
            continue;
        };
        if BUILTIN_ATTRIBUTES.contains(&name.as_str()) || attributes.contains_key(&name) {
            continue;
        }
        if let Some(value) = typed(value) {
            attributes.insert(name, value);
        }
    }
    attributes
}

/// A property name as an attribute name (a C identifier of at most 32
/// characters): other characters become `_`; `None` when too long.
pub fn attribute_name(property: &str) -> Option<String> {
    let mut name: String = property
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    (!name.is_empty() && name.len() <= MAX_ATTRIBUTE_NAME).then_some(name)
}

/// A property value, typed: `true`/`false` a bool, an integer an int, a
/// semantic version a version, else a string of at most 64 bytes (`None`
/// when longer).
pub fn typed(value: &str) -> Option<DeviceAttribute> {
    match value {
        "true" => return Some(boolean(true)),
        "false" => return Some(boolean(false)),
        _ => {}
    }
    if let Ok(number) = value.parse::<i64>() {
        // Leading zeros or a sign would not survive as a number.
        if number.to_string() == value {
            return Some(int(number));
        }
    }
    if is_semver(value) {
        return Some(DeviceAttribute {
            version: Some(value.to_owned()),
            ..Default::default()
        });
    }
    (value.len() <= MAX_STRING).then(|| string(value))
}

/// `MAJOR.MINOR.PATCH` with optional `-prerelease` and `+build`, as
/// semver.org says (the API validates versions the same way).
fn is_semver(value: &str) -> bool {
    let (core, _build) = value.split_once('+').unwrap_or((value, ""));
    let (core, pre) = match core.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (core, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let number = |n: &&str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (*n == "0" || !n.starts_with('0'))
    };
    let ident =
        |i: &str| !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    numbers.len() == 3
        && numbers.iter().all(number)
        && pre.is_none_or(|p| p.split('.').all(ident))
        && value
            .split_once('+')
            .is_none_or(|(_, b)| b.split('.').all(ident))
        && value.len() <= MAX_STRING
}

fn string(value: &str) -> DeviceAttribute {
    DeviceAttribute {
        string: Some(value.to_owned()),
        ..Default::default()
    }
}

fn int(value: i64) -> DeviceAttribute {
    DeviceAttribute {
        int: Some(value),
        ..Default::default()
    }
}

fn boolean(value: bool) -> DeviceAttribute {
    DeviceAttribute {
        bool: Some(value),
        ..Default::default()
    }
}

/// Where a pool's devices can be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach<'a> {
    /// One node (its local devices).
    Node(&'a str),
    /// Every node whose `kubernetes.io/hostname` label is one of these (a
    /// shared device, by the nodes that see it).
    Nodes(&'a [String]),
}

/// The ResourceSlices of one pool, at most 128 devices each, named
/// `<prefix>-<index>`. `generation` is the pool's generation: it must grow
/// whenever the pool's content changes, so the scheduler never mixes old
/// and new slices.
pub fn slices(
    prefix: &str,
    pool: &str,
    reach: &Reach<'_>,
    devices: Vec<DraDevice>,
    generation: i64,
    owner: Option<OwnerReference>,
    labels: &BTreeMap<String, String>,
) -> Vec<ResourceSlice> {
    let chunks: Vec<Vec<DraDevice>> = if devices.is_empty() {
        vec![vec![]]
    } else {
        devices
            .chunks(MAX_DEVICES_PER_SLICE)
            .map(<[DraDevice]>::to_vec)
            .collect()
    };
    let count = i64::try_from(chunks.len()).unwrap_or(i64::MAX);
    let mut labels = labels.clone();
    labels.insert(POOL_LABEL.into(), label_value(pool));
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, devices)| {
            let (node_name, node_selector) = match reach {
                Reach::Node(node) => (Some((*node).to_owned()), None),
                Reach::Nodes(nodes) => (None, Some(select_nodes(nodes))),
            };
            ResourceSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{prefix}-{index}")),
                    labels: Some(labels.clone()),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..Default::default()
                },
                spec: ResourceSliceSpec {
                    driver: DRIVER.into(),
                    pool: ResourcePool {
                        name: pool.to_owned(),
                        generation,
                        resource_slice_count: count,
                    },
                    node_name,
                    node_selector,
                    devices: Some(devices),
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// The node label a pool's node selector matches on.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A node selector naming exactly the nodes whose `kubernetes.io/hostname`
/// label is one of `hostnames`. (A slice's selector must have exactly one
/// term, and a `metadata.name` field selector may name only one node, so
/// the well-known hostname label it is.)
pub fn select_nodes(hostnames: &[String]) -> NodeSelector {
    NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: HOSTNAME_LABEL.into(),
                operator: "In".into(),
                values: Some(hostnames.to_vec()),
            }]),
            ..Default::default()
        }],
    }
}

/// A label value for `text`: itself when it is one, else a hash.
pub fn label_value(text: &str) -> String {
    let fits = text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if fits {
        return text.to_owned();
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether two sets of slices say the same (names, pools apart from their
/// generation, reach and devices): then nothing needs writing.
pub fn same_content(a: &ResourceSliceSpec, b: &ResourceSliceSpec) -> bool {
    a.driver == b.driver
        && a.pool.name == b.pool.name
        && a.pool.resource_slice_count == b.pool.resource_slice_count
        && a.node_name == b.node_name
        && a.node_selector == b.node_selector
        && a.devices.as_deref().unwrap_or_default() == b.devices.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(capacity: i32, properties: &[(&str, &str)]) -> DeviceSpec {
        DeviceSpec {
            device_set: "cams".into(),
            id: "cam-1".into(),
            shared: true,
            node: None,
            capacity,
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            device_nodes: vec![],
            mounts: vec![],
        }
    }

    #[test]
    fn one_dra_device_per_slot_with_the_devices_identity() {
        let spec = spec(3, &[("RESOLUTION", "1080"), ("ONLINE", "true")]);
        let devices = devices_of(&Offered {
            namespace: "plant",
            name: "cams-1",
            spec: &spec,
        });
        assert_eq!(devices.len(), 3);
        let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        assert!(
            names[0].ends_with("-0") && names[2].ends_with("-2"),
            "{names:?}"
        );
        let attrs = devices[1].attributes.clone().unwrap_or_default();
        assert_eq!(attrs["device"].string.as_deref(), Some("cams-1"));
        assert_eq!(attrs["namespace"].string.as_deref(), Some("plant"));
        assert_eq!(attrs["deviceSet"].string.as_deref(), Some("cams"));
        assert_eq!(attrs["slot"].int, Some(1));
        assert_eq!(attrs["RESOLUTION"].int, Some(1080));
        assert_eq!(attrs["ONLINE"].bool, Some(true));
    }

    #[test]
    fn device_names_are_dns_labels_distinct_across_namespaces() {
        let a = slot_device_name("a", "cams-1", 0);
        assert_ne!(a, slot_device_name("b", "cams-1", 0));
        assert_ne!(a, slot_device_name("a", "cams-1", 1));
        assert!(a.len() <= 63);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    #[test]
    fn values_are_typed_where_they_read_as_a_type() {
        assert_eq!(typed("42").and_then(|a| a.int), Some(42));
        assert_eq!(typed("-7").and_then(|a| a.int), Some(-7));
        assert_eq!(typed("007").and_then(|a| a.string), Some("007".into()));
        assert_eq!(typed("false").and_then(|a| a.bool), Some(false));
        assert_eq!(typed("1.2.3").and_then(|a| a.version), Some("1.2.3".into()));
        assert_eq!(
            typed("1.2.3-rc.1+b5").and_then(|a| a.version),
            Some("1.2.3-rc.1+b5".into())
        );
        assert_eq!(
            typed("1.02.3").and_then(|a| a.string),
            Some("1.02.3".into())
        );
        assert_eq!(typed("1.2").and_then(|a| a.string), Some("1.2".into()));
        assert!(
            typed(&"x".repeat(65)).is_none(),
            "too long for a string attribute"
        );
    }

    #[test]
    fn property_names_become_c_identifiers_or_are_skipped() {
        assert_eq!(attribute_name("OPCUA_URL").as_deref(), Some("OPCUA_URL"));
        assert_eq!(attribute_name("vendor.id").as_deref(), Some("vendor_id"));
        assert_eq!(attribute_name("1st").as_deref(), Some("_1st"));
        assert_eq!(attribute_name(&"a".repeat(33)), None);
        assert_eq!(attribute_name(""), None);
    }

    #[test]
    fn attributes_stop_at_the_limit_and_builtins_win() {
        let many: Vec<(String, String)> =
            (0..50).map(|i| (format!("P{i:02}"), "x".into())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut spec = spec(1, &refs);
        spec.properties.insert("device".into(), "spoofed".into());
        let devices = devices_of(&Offered {
            namespace: "n",
            name: "real",
            spec: &spec,
        });
        let attrs = devices[0].attributes.clone().unwrap_or_default();
        assert_eq!(attrs.len(), MAX_ATTRIBUTES);
        assert_eq!(attrs["device"].string.as_deref(), Some("real"));
    }

    #[test]
    fn pools_are_split_into_slices_of_at_most_128() {
        let devices: Vec<DraDevice> = (0..300)
            .map(|i| DraDevice {
                name: format!("d{i}"),
                ..Default::default()
            })
            .collect();
        let slices = slices(
            "ambit-edge-1",
            "edge-1",
            &Reach::Node("edge-1"),
            devices,
            4,
            None,
            &BTreeMap::new(),
        );
        assert_eq!(slices.len(), 3);
        assert!(
            slices
                .iter()
                .all(|s| s.spec.pool.resource_slice_count == 3 && s.spec.pool.generation == 4)
        );
        assert_eq!(
            slices[2].spec.devices.as_ref().map(Vec::len),
            Some(300 - 256)
        );
        assert_eq!(slices[0].metadata.name.as_deref(), Some("ambit-edge-1-0"));
    }

    #[test]
    fn shared_pools_name_their_set_and_select_its_nodes() {
        let pool = shared_pool("plant", "opcua", "0123abcd");
        assert_eq!(pool, "shared/plant/opcua/0123abcd");
        assert!(is_shared_pool(&pool));
        assert!(!is_shared_pool(&node_pool("edge-1")));
        let long = shared_pool("plant", &"s".repeat(250), "0123abcd");
        assert!(
            long.len() <= MAX_POOL_NAME && is_shared_pool(&long),
            "{long}"
        );
        let nodes = vec!["a".to_owned(), "b".to_owned()];
        let slices = slices(
            "p",
            &pool,
            &Reach::Nodes(&nodes),
            vec![],
            1,
            None,
            &BTreeMap::new(),
        );
        let selector = slices[0].spec.node_selector.clone().unwrap_or_default();
        let expressions = selector.node_selector_terms[0]
            .match_expressions
            .clone()
            .unwrap_or_default();
        let field = &expressions[0];
        assert_eq!(field.values.as_deref(), Some(&nodes[..]));
        assert_eq!(
            label_value(&pool).len(),
            32,
            "a pool with slashes is hashed for its label"
        );
    }
}
