//! What BlueZ currently knows of one device, as far as Ambit cares: the
//! plain snapshot the tracker works on, made from btleplug's properties.

use std::collections::{BTreeMap, BTreeSet};

use btleplug::api::{AddressType, BDAddr, PeripheralProperties};
use uuid::Uuid;

/// One device's advertised state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advert {
    /// The device's address.
    pub address: BDAddr,
    /// `Some(true)` for a random address, `Some(false)` for a public one.
    pub random_address: Option<bool>,
    /// The advertised local name.
    pub name: Option<String>,
    /// Advertised service UUIDs.
    pub services: BTreeSet<Uuid>,
    /// Manufacturer-specific data by company id.
    pub manufacturer_data: BTreeMap<u16, Vec<u8>>,
    /// Signal strength of the latest advertisement; BlueZ has none for a
    /// device it has not heard in the current scan.
    pub rssi: Option<i16>,
}

impl From<PeripheralProperties> for Advert {
    fn from(properties: PeripheralProperties) -> Self {
        // The name the device advertises; else BlueZ's Alias (set on the
        // host), except that the Alias falls back to the address
        // ("AA-BB-...") when a device has no name: that is no name.
        let dashed = properties.address.to_string().replace(':', "-");
        let name = properties
            .advertisement_name
            .or(properties.local_name.filter(|alias| *alias != dashed));
        Self {
            address: properties.address,
            random_address: properties
                .address_type
                .map(|kind| kind == AddressType::Random),
            name,
            services: properties.services.into_iter().collect(),
            manufacturer_data: properties.manufacturer_data.into_iter().collect(),
            rssi: properties.rssi,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_address_as_alias_is_no_name() {
        let address: BDAddr = "AA:BB:CC:DD:EE:FF".parse().unwrap();
        let mut properties = PeripheralProperties {
            address,
            local_name: Some("AA-BB-CC-DD-EE-FF".into()),
            manufacturer_data: HashMap::from([(7, vec![1])]),
            address_type: Some(AddressType::Random),
            ..PeripheralProperties::default()
        };
        let advert = Advert::from(properties.clone());
        assert_eq!(advert.name, None);
        assert_eq!(advert.random_address, Some(true));
        assert_eq!(advert.manufacturer_data, BTreeMap::from([(7, vec![1])]));

        properties.local_name = Some("Kitchen".into());
        assert_eq!(
            Advert::from(properties.clone()).name.as_deref(),
            Some("Kitchen")
        );
        properties.advertisement_name = Some("Thermo".into());
        assert_eq!(Advert::from(properties).name.as_deref(), Some("Thermo"));
    }
}
