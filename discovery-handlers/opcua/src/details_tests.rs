use serde_json::json;

use super::*;

fn plan_of(details: serde_json::Value) -> Result<Plan, String> {
    plan(&DiscoverRequest::new(details)).map_err(|error| error.message().to_owned())
}

#[test]
fn defaults_accept_servers_and_client_and_servers() {
    let plan = plan_of(json!({ "discoveryUrls": ["opc.tcp://127.0.0.1:4840/"] })).unwrap();
    assert_eq!(
        plan.application_types,
        [ApplicationType::Server, ApplicationType::ClientAndServer]
    );
    assert_eq!(plan.timeout, DEFAULT_TIMEOUT);
    assert_eq!(plan.interval, DEFAULT_INTERVAL);
    assert_eq!(plan.concurrency, DEFAULT_CONCURRENCY);
    assert_eq!(plan.max_servers, DEFAULT_MAX_SERVERS);
    assert_eq!(plan.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    assert!(!plan.find_servers_on_network);
    assert!(plan.accepts(ApplicationType::ClientAndServer, "any", "urn:any"));
    assert!(!plan.accepts(ApplicationType::DiscoveryServer, "any", "urn:any"));
    assert!(!plan.accepts(ApplicationType::Client, "any", "urn:any"));
}

#[test]
fn every_field_is_read() {
    let plan = plan_of(json!({
        "discoveryUrls": ["opc.tcp://a:1/", "OPC.TCP://A:1/", "opc.tcp://b"],
        "findServersOnNetwork": true,
        "applicationTypes": ["DiscoveryServer", "server"],
        "applicationNames": { "include": ["Boiler*"], "exclude": ["*Test*"] },
        "applicationUris": { "exclude": ["urn:skip:*"] },
        "timeout": "750ms",
        "interval": "2m",
        "concurrency": 4,
        "maxServers": 10,
        "maxMessageSize": 65536
    }))
    .unwrap();
    let urls: Vec<String> = plan
        .discovery_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        urls,
        ["opc.tcp://a:1/", "opc.tcp://b:4840/"],
        "duplicates are dropped"
    );
    assert!(plan.find_servers_on_network);
    assert_eq!(plan.timeout, Duration::from_millis(750));
    assert_eq!(plan.interval, Duration::from_secs(120));
    assert_eq!((plan.concurrency, plan.max_servers), (4, 10));
    assert_eq!(plan.max_message_size, 65536);
    assert!(plan.accepts(ApplicationType::DiscoveryServer, "Boiler 1", "urn:boiler:1"));
    assert!(!plan.accepts(ApplicationType::ClientAndServer, "Boiler 1", "urn:boiler:1"));
    assert!(!plan.accepts(ApplicationType::Server, "Boiler Test", "urn:boiler:1"));
    assert!(!plan.accepts(ApplicationType::Server, "Pump", "urn:boiler:1"));
    assert!(!plan.accepts(ApplicationType::Server, "Boiler 2", "urn:skip:2"));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (json!({}), "missing field `discoveryUrls`"),
        (
            json!({ "discoveryUrls": [] }),
            "discoveryUrls: name at least one",
        ),
        (
            json!({ "discoveryUrls": ["http://x/"] }),
            "discoveryUrls[0]: \"http://x/\" is not an opc.tcp URL",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "applicationTypes": ["printer"] }),
            "applicationTypes[0]: \"printer\" is not an application type",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "applicationTypes": ["client"] }),
            "applicationTypes[0]: client applications serve no endpoints",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "applicationTypes": [] }),
            "applicationTypes: name at least one",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "applicationNames": { "include": ["[a-"] } }),
            "applicationNames.include[0]: \"[a-\" is not a valid glob",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "applicationUris": { "only": [] } }),
            "applicationUris.only: unknown field `only`",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "timeout": "soon" }),
            "timeout: \"soon\" is not a duration",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "timeout": "1h" }),
            "timeout: 1h is out of range",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "interval": "1ms" }),
            "interval: 1ms is too short",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "concurrency": 0 }),
            "concurrency: 0 is out of range (1 to 256)",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "maxServers": 100000 }),
            "maxServers: 100000 is out of range",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "maxMessageSize": 10 }),
            "maxMessageSize: 10 is out of range",
        ),
        (
            json!({ "discoveryUrls": ["opc.tcp://x/"], "discoveryUrl": "x" }),
            "unknown field `discoveryUrl`",
        ),
    ];
    for (details, expected) in cases {
        let error = plan_of(details.clone()).unwrap_err();
        assert!(
            error.contains(expected),
            "{details}: {error:?} should contain {expected:?}"
        );
    }
    let many: Vec<String> = (0..=MAX_DISCOVERY_URLS)
        .map(|i| format!("opc.tcp://h{i}/"))
        .collect();
    let error = plan_of(json!({ "discoveryUrls": many })).unwrap_err();
    assert!(error.contains("at most 256"), "{error}");
}

fn plan_with(details: serde_json::Value, properties: &[(&str, &str)]) -> Result<Plan, String> {
    let mut request = DiscoverRequest::new(details);
    request.properties = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    plan(&request).map_err(|error| error.message().to_owned())
}

#[test]
fn a_session_reads_credentials_from_properties() {
    let details = json!({ "discoveryUrls": ["opc.tcp://x/"], "session": { "required": true } });
    let plan = plan_with(details, &[("username", "op"), ("password", "pw")]).unwrap();
    let session = plan.session.unwrap();
    assert!(session.required);
    assert_eq!(session.policy, SecurityPolicy::None);
    assert_eq!(session.mode, MessageSecurityMode::None);
    assert_eq!(session.application_uri, DEFAULT_APPLICATION_URI);
    assert_eq!(session.credentials.user, Some(("op".into(), "pw".into())));
    let shown = format!("{:?}", session.credentials);
    assert!(!shown.contains("pw") && !shown.contains("op"), "{shown}");

    let plan = plan_of(json!({ "discoveryUrls": ["opc.tcp://x/"], "session": {} })).unwrap();
    let session = plan.session.unwrap();
    assert!(!session.required && session.credentials.user.is_none());
    assert!(
        plan_of(json!({ "discoveryUrls": ["opc.tcp://x/"] }))
            .unwrap()
            .session
            .is_none()
    );
}

#[test]
fn session_errors_name_the_field_or_property() {
    let url = json!(["opc.tcp://x/"]);
    type Case = (
        serde_json::Value,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: [Case; 8] = [
        (
            json!({ "discoveryUrls": url }),
            &[("username", "op")],
            "properties: \"username\" is read only to open a session",
        ),
        (
            json!({ "discoveryUrls": url, "session": {} }),
            &[("token", "t")],
            "properties: the opcua handler reads no property \"token\"",
        ),
        (
            json!({ "discoveryUrls": url, "session": {} }),
            &[("username", "op")],
            "properties: give both username and password",
        ),
        (
            json!({ "discoveryUrls": url, "session": { "securityPolicy": "Basic512" } }),
            &[],
            "session.securityPolicy: \"Basic512\" is not a security policy",
        ),
        (
            json!({ "discoveryUrls": url, "session": { "securityMode": "Encrypt" } }),
            &[],
            "session.securityMode: \"Encrypt\" is not a security mode",
        ),
        (
            json!({ "discoveryUrls": url, "session": { "securityPolicy": "Basic256Sha256" } }),
            &[],
            "session: securityPolicy None goes with securityMode None",
        ),
        (
            json!({ "discoveryUrls": url, "session": { "securityPolicy": "Basic256Sha256", "securityMode": "Sign" } }),
            &[],
            "session: securityMode Sign needs a client certificate",
        ),
        (
            json!({ "discoveryUrls": url, "session": {} }),
            &[("clientCertificate", "nope"), ("clientPrivateKey", "nope")],
            "properties: clientCertificate is not a PEM X.509 certificate",
        ),
    ];
    for (details, properties, expected) in cases {
        let error = plan_with(details.clone(), properties).unwrap_err();
        assert!(
            error.contains(expected),
            "{details}: {error:?} should contain {expected:?}"
        );
    }
}
