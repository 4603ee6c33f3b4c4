//! The `ambit.dev/v1alpha1` API.

mod device;
mod device_report;
mod device_set;
mod schema;

pub use device::{
    Allocation, Device, DeviceNode, DeviceNodeStatus, DeviceSpec, DeviceStatus, Mount,
};
pub use device_report::{DeviceReport, DeviceReportSpec, ReportedDevice};
pub use device_set::{
    Access, Broker, DevicePluginResources, DeviceSet, DeviceSetNodeStatus, DeviceSetSpec,
    DeviceSetStatus, Discovery, DiscoveryProperty, HandlerState, PropertySource,
};
pub use schema::Details;
