//! What the handler keeps of a matched device ([`Found`]), and how the
//! matched devices become the protocol's device set ([`device_set`]): ids,
//! properties, device nodes, grouping.
//!
//! ```text
//!   Node (libudev) ──Found::read──► Found { paths, devnode, identity }
//!   {syspath: Found} ──device_set──► group (optional) ──► ids ──► Vec<Device>
//! ```
//!
//! Everything here is plain data, so ids and grouping are tested without
//! libudev.

use std::collections::{BTreeMap, HashMap};

use ambit_discovery::{Device, DeviceNode};

use crate::rules::Node;

/// Property: the device node (`/dev/ttyUSB0`), when the device has one.
pub const DEVNODE: &str = "UDEV_DEVNODE";
/// Property: the devpath (`/devices/.../ttyUSB0/tty/ttyUSB0`).
pub const DEVPATH: &str = "UDEV_DEVPATH";
/// Property: the subsystem (`tty`, `video4linux`).
pub const SUBSYSTEM: &str = "UDEV_SUBSYSTEM";
/// Property: the kernel name (`ttyUSB0`).
pub const SYSNAME: &str = "UDEV_SYSNAME";
/// Property: the USB vendor id (`0403`).
pub const VENDOR_ID: &str = "UDEV_VENDOR_ID";
/// Property: the USB product id (`6001`).
pub const PRODUCT_ID: &str = "UDEV_PRODUCT_ID";
/// Property: the serial number.
pub const SERIAL: &str = "UDEV_SERIAL";
/// Property: the vendor's name.
pub const VENDOR: &str = "UDEV_VENDOR";
/// Property: the product's name.
pub const PRODUCT: &str = "UDEV_PRODUCT";
/// Property: every device node of a grouped device, comma-separated.
pub const DEVNODES: &str = "UDEV_DEVNODES";

/// A matched device, as read from udev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The devpath, unique among present devices (`/devices/...`).
    pub devpath: String,
    /// The kernel name.
    pub sysname: String,
    /// The subsystem.
    pub subsystem: Option<String>,
    /// The device node.
    pub devnode: Option<String>,
    /// What identifies the hardware, where known.
    pub identity: Identity,
}

/// What identifies a device's hardware, independent of where it is plugged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `ID_BUS`, or `usb` when a USB device was found among the ancestors.
    pub bus: Option<String>,
    /// Vendor id (`ID_VENDOR_ID`, else `idVendor` of the USB device).
    pub vendor_id: Option<String>,
    /// Product id (`ID_MODEL_ID`, else `idProduct`).
    pub product_id: Option<String>,
    /// Serial number (`ID_SERIAL_SHORT`, else `serial` of the USB device).
    pub serial: Option<String>,
    /// Vendor name (`ID_VENDOR_FROM_DATABASE`, `ID_VENDOR`, else `manufacturer`).
    pub vendor: Option<String>,
    /// Product name (`ID_MODEL_FROM_DATABASE`, `ID_MODEL`, else `product`).
    pub product: Option<String>,
    /// The devpath of the USB device the device belongs to (its port).
    pub usb_devpath: Option<String>,
    /// The USB interface number (`ID_USB_INTERFACE_NUM`, else `bInterfaceNumber`).
    pub interface: Option<String>,
    /// The `index` attribute (video4linux: which node of the camera).
    pub index: Option<String>,
}

impl Found {
    /// Reads what the handler needs of `node`.
    pub fn read<N: Node + Clone>(node: &N) -> Self {
        let mut identity = Identity {
            bus: node.property("ID_BUS"),
            vendor_id: node.property("ID_VENDOR_ID"),
            product_id: node.property("ID_MODEL_ID"),
            serial: node.property("ID_SERIAL_SHORT"),
            vendor: node
                .property("ID_VENDOR_FROM_DATABASE")
                .or_else(|| node.property("ID_VENDOR")),
            product: node
                .property("ID_MODEL_FROM_DATABASE")
                .or_else(|| node.property("ID_MODEL")),
            interface: node.property("ID_USB_INTERFACE_NUM"),
            index: node.attribute("index").map(|i| i.trim().to_owned()),
            usb_devpath: None,
        };
        // Without udevd's database (or for properties it did not set) the
        // USB ancestors' sysfs attributes tell the same.
        let mut current = Some(node.clone());
        for _ in 0..256 {
            let Some(device) = current else { break };
            if device.subsystem().as_deref() == Some("usb") {
                match device.property("DEVTYPE").as_deref() {
                    Some("usb_interface") if identity.interface.is_none() => {
                        identity.interface = device.attribute("bInterfaceNumber");
                    }
                    Some("usb_device") => {
                        fill_from_usb_device(&mut identity, &device);
                        break;
                    }
                    _ => {}
                }
            }
            current = device.parent();
        }
        identity.tidy();
        Self {
            devpath: node.devpath(),
            sysname: node.sysname(),
            subsystem: node.subsystem(),
            devnode: node.devnode(),
            identity,
        }
    }

    /// The id from the hardware's identity, when there is one: the same
    /// after a re-plug into any port (serial known) or the same port (no
    /// serial). `None`: the devpath is all there is.
    fn hardware_id(&self) -> Option<String> {
        let identity = &self.identity;
        let base = match (&identity.serial, &identity.usb_devpath) {
            (Some(serial), _) => {
                let bus = identity.bus.as_deref().unwrap_or("usb");
                match (&identity.vendor_id, &identity.product_id) {
                    (Some(vendor), Some(product)) => format!("{bus}-{vendor}:{product}:{serial}"),
                    _ => format!("{bus}-{serial}"),
                }
            }
            (None, Some(port)) => format!("usb-port:{port}"),
            (None, None) => return None,
        };
        let mut id = base;
        if let Some(interface) = &identity.interface {
            id.push_str(&format!("/if{interface}"));
        }
        id.push('/');
        id.push_str(self.subsystem.as_deref().unwrap_or("none"));
        if let Some(index) = &identity.index {
            id.push_str(&format!("/index{index}"));
        }
        Some(id)
    }

    fn properties(&self) -> BTreeMap<String, String> {
        let mut properties = BTreeMap::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                properties.insert(key.to_owned(), value.clone());
            }
        };
        put(DEVNODE, &self.devnode);
        put(DEVPATH, &Some(self.devpath.clone()));
        put(SUBSYSTEM, &self.subsystem);
        put(SYSNAME, &Some(self.sysname.clone()));
        put(VENDOR_ID, &self.identity.vendor_id);
        put(PRODUCT_ID, &self.identity.product_id);
        put(SERIAL, &self.identity.serial);
        put(VENDOR, &self.identity.vendor);
        put(PRODUCT, &self.identity.product);
        properties
    }
}

impl Identity {
    /// Drops empty values, so an empty serial never makes an id.
    fn tidy(&mut self) {
        for value in [
            &mut self.bus,
            &mut self.vendor_id,
            &mut self.product_id,
            &mut self.serial,
            &mut self.vendor,
            &mut self.product,
            &mut self.interface,
            &mut self.index,
        ] {
            if let Some(text) = value {
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    *value = None;
                } else if trimmed.len() != text.len() {
                    *value = Some(trimmed.to_owned());
                }
            }
        }
    }
}

fn fill_from_usb_device<N: Node>(identity: &mut Identity, usb: &N) {
    identity.usb_devpath = Some(usb.devpath());
    identity.bus.get_or_insert_with(|| "usb".to_owned());
    let fill = |slot: &mut Option<String>, attribute: &str| {
        if slot.is_none() {
            *slot = usb.attribute(attribute);
        }
    };
    fill(&mut identity.vendor_id, "idVendor");
    fill(&mut identity.product_id, "idProduct");
    fill(&mut identity.serial, "serial");
    fill(&mut identity.vendor, "manufacturer");
    fill(&mut identity.product, "product");
}

/// How matched devices become the device set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Fold matched devices into their topmost matched ancestor.
    pub group: bool,
    /// cgroup permissions of every device node (`rw`, `r`, `rwm`).
    pub permissions: String,
}

/// The complete device set for the matched devices, keyed by devpath,
/// sorted by id.
pub fn device_set(found: &BTreeMap<String, Found>, shape: &Shape) -> Vec<Device> {
    // Group members under the topmost matched ancestor (devpaths are
    // paths: an ancestor's is a prefix at a `/`).
    let mut groups: BTreeMap<&str, Vec<&Found>> = BTreeMap::new();
    for (devpath, device) in found {
        let head = if shape.group {
            topmost_matched_ancestor(found, devpath).unwrap_or(devpath)
        } else {
            devpath
        };
        groups.entry(head).or_default().push(device);
    }

    let mut ids: HashMap<String, usize> = HashMap::new();
    let candidates: Vec<(Option<String>, &str, &Vec<&Found>)> = groups
        .iter()
        .map(|(head, members)| {
            let id = found.get(*head).and_then(Found::hardware_id);
            if let Some(id) = &id {
                *ids.entry(id.clone()).or_default() += 1;
            }
            (id, *head, members)
        })
        .collect();

    let mut devices: Vec<Device> = candidates
        .into_iter()
        .filter_map(|(id, head, members)| {
            let head_device = found.get(head)?;
            // Two devices claiming one hardware id (a vendor that gives every
            // unit the same serial) fall back to their devpaths.
            let id = match id {
                Some(id) if ids.get(&id) == Some(&1) => id,
                _ => head.to_owned(),
            };
            let mut device = Device::new(id);
            device.properties = head_device.properties();
            let nodes: Vec<&str> = members
                .iter()
                .filter_map(|m| m.devnode.as_deref())
                .collect();
            if shape.group && !nodes.is_empty() {
                device
                    .properties
                    .insert(DEVNODES.to_owned(), nodes.join(","));
            }
            device.device_nodes = nodes
                .iter()
                .map(|node| DeviceNode {
                    host_path: (*node).to_owned(),
                    container_path: String::new(),
                    permissions: shape.permissions.clone(),
                })
                .collect();
            Some(device)
        })
        .collect();
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    devices
}

fn topmost_matched_ancestor<'a>(
    found: &'a BTreeMap<String, Found>,
    devpath: &str,
) -> Option<&'a str> {
    devpath
        .match_indices('/')
        .map(|(at, _)| &devpath[..at])
        .filter(|prefix| !prefix.is_empty())
        .find_map(|prefix| found.get_key_value(prefix).map(|(key, _)| key.as_str()))
}

#[cfg(test)]
#[path = "found_tests.rs"]
mod tests;
