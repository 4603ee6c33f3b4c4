use opcua::types::{LocalizedText, UAString, UserTokenPolicy};

use super::*;

fn endpoint(url: &str, policy: &str, mode: MessageSecurityMode, level: u8) -> EndpointDescription {
    EndpointDescription {
        endpoint_url: UAString::from(url),
        security_policy_uri: UAString::from(format!(
            "http://opcfoundation.org/UA/SecurityPolicy#{policy}"
        )),
        security_mode: mode,
        security_level: level,
        user_identity_tokens: Some(vec![
            UserTokenPolicy {
                token_type: UserTokenType::UserName,
                ..Default::default()
            },
            UserTokenPolicy {
                token_type: UserTokenType::Anonymous,
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

fn found() -> Found {
    Found {
        url: OpcUrl::parse("opc.tcp://127.0.0.1:4840/").unwrap(),
        via: OpcUrl::parse("opc.tcp://127.0.0.1:4840/").unwrap(),
        application: ApplicationDescription {
            application_uri: UAString::from("urn:plant:boiler"),
            product_uri: UAString::from("urn:vendor:boiler"),
            application_name: LocalizedText::new("en", "Boiler 1"),
            application_type: ApplicationType::ClientAndServer,
            ..Default::default()
        },
        endpoints: vec![
            endpoint(
                "opc.tcp://0.0.0.0:4840/ua",
                "None",
                MessageSecurityMode::None,
                0,
            ),
            endpoint(
                "opc.tcp://boiler:4840/ua",
                "Basic256Sha256",
                MessageSecurityMode::SignAndEncrypt,
                3,
            ),
            endpoint(
                "opc.tcp://boiler:4840/ua",
                "Basic256Sha256",
                MessageSecurityMode::Sign,
                2,
            ),
            endpoint(
                "opc.tcp://boiler:4840/ua",
                "Basic256Sha256",
                MessageSecurityMode::Sign,
                2,
            ),
            endpoint(
                "opc.tcp://boiler:4840/ua",
                "Nope",
                MessageSecurityMode::Invalid,
                9,
            ),
        ],
        build_info: BTreeMap::new(),
    }
}

#[test]
fn reports_the_application_and_its_endpoints_most_secure_first() {
    let device = device(&found());
    assert_eq!(device.id, "opc.tcp://127.0.0.1:4840/");
    assert!(device.shared && device.device_nodes.is_empty());
    let p = &device.properties;
    assert_eq!(p[DISCOVERY_URL], "opc.tcp://127.0.0.1:4840/");
    assert_eq!(p[FOUND_VIA], "opc.tcp://127.0.0.1:4840/");
    assert_eq!(p[APPLICATION_URI], "urn:plant:boiler");
    assert_eq!(p[APPLICATION_NAME], "Boiler 1");
    assert_eq!(p[APPLICATION_TYPE], "ClientAndServer");
    assert_eq!(p[PRODUCT_URI], "urn:vendor:boiler");
    assert_eq!(p[SECURITY_POLICIES], "Basic256Sha256,None");
    assert_eq!(p[SECURITY_MODES], "None,Sign,SignAndEncrypt");
    assert_eq!(
        p[ENDPOINT_COUNT], "3",
        "invalid and repeated endpoints are dropped"
    );
    assert_eq!(p["OPCUA_ENDPOINT_0_SECURITY_MODE"], "SignAndEncrypt");
    assert_eq!(p["OPCUA_ENDPOINT_0_SECURITY_POLICY"], "Basic256Sha256");
    assert_eq!(
        p["OPCUA_ENDPOINT_0_SECURITY_POLICY_URI"],
        "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
    );
    assert_eq!(p["OPCUA_ENDPOINT_0_SECURITY_LEVEL"], "3");
    assert_eq!(p["OPCUA_ENDPOINT_0_USER_TOKENS"], "Anonymous,UserName");
    assert_eq!(
        p["OPCUA_ENDPOINT_0_URL"], "opc.tcp://127.0.0.1:4840/ua",
        "host as reached"
    );
    assert_eq!(p["OPCUA_ENDPOINT_1_SECURITY_MODE"], "Sign");
    assert_eq!(p["OPCUA_ENDPOINT_2_SECURITY_POLICY"], "None");
    assert_eq!(p["OPCUA_ENDPOINT_2_URL"], "opc.tcp://127.0.0.1:4840/ua");
    assert!(!p.contains_key("OPCUA_ENDPOINT_3_URL"));
    for key in p.keys() {
        assert!(
            key.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{key}"
        );
    }
}

#[test]
fn the_same_answer_in_another_order_is_the_same_device() {
    let mut shuffled = found();
    shuffled.endpoints.reverse();
    assert_eq!(device(&shuffled), device(&found()));
}

#[test]
fn endpoints_are_listed_up_to_the_limit_and_empty_values_left_out() {
    let mut many = found();
    many.application.product_uri = UAString::null();
    many.endpoints = (0..100)
        .map(|i| {
            endpoint(
                &format!("opc.tcp://boiler:{}/", 1000 + i),
                "None",
                MessageSecurityMode::None,
                0,
            )
        })
        .collect();
    let device = device(&many);
    assert_eq!(
        device.properties[ENDPOINT_COUNT],
        MAX_LISTED_ENDPOINTS.to_string()
    );
    assert!(!device.properties.contains_key(PRODUCT_URI));
    assert!(device.properties.contains_key(&format!(
        "{ENDPOINT_PREFIX}{}_URL",
        MAX_LISTED_ENDPOINTS - 1
    )));
    assert!(
        !device
            .properties
            .contains_key(&format!("{ENDPOINT_PREFIX}{MAX_LISTED_ENDPOINTS}_URL"))
    );
}
