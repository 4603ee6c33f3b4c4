//! [`Node`] over libudev's devices, for the rules and [`crate::found`].

use std::ffi::OsStr;

use crate::rules::Node;

/// A libudev device, as the rules see it.
#[derive(Clone)]
pub struct UdevNode(udev::Device);

impl UdevNode {
    /// Wraps a libudev device.
    pub fn new(device: udev::Device) -> Self {
        Self(device)
    }
}

fn text(value: &OsStr) -> String {
    value.to_string_lossy().into_owned()
}

impl Node for UdevNode {
    fn sysname(&self) -> String {
        text(self.0.sysname())
    }

    fn subsystem(&self) -> Option<String> {
        self.0.subsystem().map(text)
    }

    fn driver(&self) -> Option<String> {
        self.0.driver().map(text)
    }

    fn devpath(&self) -> String {
        text(self.0.devpath())
    }

    fn devnode(&self) -> Option<String> {
        self.0.devnode().map(|path| text(path.as_os_str()))
    }

    fn attribute(&self, name: &str) -> Option<String> {
        self.0.attribute_value(name).map(text)
    }

    fn property(&self, name: &str) -> Option<String> {
        self.0.property_value(name).map(text)
    }

    fn parent(&self) -> Option<Self> {
        self.0.parent().map(Self)
    }
}
