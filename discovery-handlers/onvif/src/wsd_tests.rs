//! Messages shaped like the examples of the WS-Discovery (2005/04)
//! specification and the ONVIF Core specification's discovery section.

use super::*;

const HELLO: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"
    xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
    xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery"
    xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
  <soap:Header>
    <wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>
    <wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Hello</wsa:Action>
    <wsa:MessageID>uuid:73948edc-3204-4455-bae2-7c7d0ff6c37c</wsa:MessageID>
    <wsd:AppSequence InstanceId="4" MessageNumber="1"/>
  </soap:Header>
  <soap:Body>
    <wsd:Hello>
      <wsa:EndpointReference>
        <wsa:Address>urn:uuid:98190dc2-0890-4ef8-ac9a-5940995e6119</wsa:Address>
      </wsa:EndpointReference>
      <wsd:Types>dn:NetworkVideoTransmitter</wsd:Types>
      <wsd:Scopes>onvif://www.onvif.org/type/video_encoder
        onvif://www.onvif.org/location/country/sweden onvif://www.onvif.org/name/gate</wsd:Scopes>
      <wsd:XAddrs>http://169.254.1.2/onvif/device_service http://[fe80::1]/onvif/device_service</wsd:XAddrs>
      <wsd:MetadataVersion>75965</wsd:MetadataVersion>
    </wsd:Hello>
  </soap:Body>
</soap:Envelope>"#;

#[test]
fn hello() {
    let message = parse(HELLO.as_bytes()).unwrap();
    assert_eq!(
        message.message_id.as_deref(),
        Some("uuid:73948edc-3204-4455-bae2-7c7d0ff6c37c")
    );
    assert_eq!(
        message.app_sequence,
        Some(AppSequence {
            instance_id: 4,
            message_number: 1
        })
    );
    let Body::Hello(endpoint) = message.body else {
        panic!("not a Hello")
    };
    assert_eq!(
        endpoint.address,
        "urn:uuid:98190dc2-0890-4ef8-ac9a-5940995e6119"
    );
    assert_eq!(endpoint.types, ["dn:NetworkVideoTransmitter"]);
    assert_eq!(endpoint.scopes.len(), 3);
    assert_eq!(
        endpoint.xaddrs[0],
        "http://169.254.1.2/onvif/device_service"
    );
    assert_eq!(endpoint.metadata_version, 75965);
}

#[test]
fn probe_matches_and_bye() {
    let matches = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
      <s:Header><a:MessageID>urn:uuid:1</a:MessageID><a:RelatesTo>urn:uuid:probe-1</a:RelatesTo></s:Header>
      <s:Body><d:ProbeMatches>
        <d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:cam-a</a:Address></a:EndpointReference><d:XAddrs>http://10.0.0.2/onvif/device_service</d:XAddrs></d:ProbeMatch>
        <d:ProbeMatch><d:XAddrs>http://10.0.0.3/</d:XAddrs></d:ProbeMatch>
      </d:ProbeMatches></s:Body></s:Envelope>"#;
    let message = parse(matches.as_bytes()).unwrap();
    assert_eq!(message.relates_to.as_deref(), Some("urn:uuid:probe-1"));
    let Body::ProbeMatches(endpoints) = message.body else {
        panic!("not ProbeMatches")
    };
    assert_eq!(endpoints.len(), 1, "a match without an address is dropped");
    assert_eq!(endpoints[0].metadata_version, 0);

    let bye = HELLO.replace("wsd:Hello", "wsd:Bye");
    assert!(matches!(parse(bye.as_bytes()).unwrap().body, Body::Bye(_)));
    let other_ns = HELLO.replace(
        "http://schemas.xmlsoap.org/ws/2005/04/discovery",
        "urn:other",
    );
    assert_eq!(parse(other_ns.as_bytes()).unwrap().body, Body::Other);
    let v11 = HELLO.replace(
        "http://schemas.xmlsoap.org/ws/2005/04/discovery",
        "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01",
    );
    assert!(matches!(
        parse(v11.as_bytes()).unwrap().body,
        Body::Hello(_)
    ));
}

#[test]
fn our_probe_parses_as_a_probe() {
    let text = probe("urn:uuid:abc", &["dn:NetworkVideoTransmitter".into()]);
    let message = parse(text.as_bytes()).unwrap();
    assert_eq!(message.message_id.as_deref(), Some("urn:uuid:abc"));
    assert_eq!(
        message.body,
        Body::Other,
        "a Probe is not something we act on"
    );
    assert!(text.contains("<d:Types>dn:NetworkVideoTransmitter</d:Types>"));
}

#[test]
fn hostile_input_is_an_error() {
    for bad in [
        &b"\xff\xfe"[..],
        b"",
        b"<a/>",
        b"<s:Envelope xmlns:s='x'/>",
        b"<s:Envelope xmlns:s='x'><s:Body/></s:Envelope>",
        b"<s:Envelope xmlns:s='x'><s:Body><d:Hello xmlns:d='http://schemas.xmlsoap.org/ws/2005/04/discovery'/></s:Body></s:Envelope>",
    ] {
        assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
    }
    let many = format!(
        "<s:Envelope xmlns:s='x' xmlns:d='{NS_DISCOVERY}' xmlns:a='a'><s:Body><d:ProbeMatches>{}</d:ProbeMatches></s:Body></s:Envelope>",
        "<d:ProbeMatch><a:EndpointReference><a:Address>u</a:Address></a:EndpointReference></d:ProbeMatch>".repeat(200)
    );
    let Body::ProbeMatches(endpoints) = parse(many.as_bytes()).unwrap().body else {
        panic!()
    };
    assert_eq!(endpoints.len(), MAX_MATCHES);
}
