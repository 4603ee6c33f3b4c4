//! Answers shaped like the ONVIF Device and Media service specifications'
//! messages (their WSDL's element names and the tt schema types).

use super::*;

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:ter="http://www.onvif.org/ver10/error"><env:Body>{body}</env:Body></env:Envelope>"#
    )
}

#[test]
fn device_information() {
    let text = envelope(
        "<tds:GetDeviceInformationResponse><tds:Manufacturer>Acme</tds:Manufacturer><tds:Model>C-1</tds:Model>\
         <tds:FirmwareVersion>2.4.1</tds:FirmwareVersion><tds:SerialNumber>SN42</tds:SerialNumber>\
         <tds:HardwareId>hw-7</tds:HardwareId></tds:GetDeviceInformationResponse>",
    );
    let info = answer(
        &text,
        "GetDeviceInformationResponse",
        super::device_information,
    )
    .unwrap();
    assert_eq!(info.manufacturer.as_deref(), Some("Acme"));
    assert_eq!(info.firmware_version.as_deref(), Some("2.4.1"));
    assert_eq!(info.hardware_id.as_deref(), Some("hw-7"));
    let wrong = answer(&text, "GetProfilesResponse", super::profiles).unwrap_err();
    assert!(wrong.to_string().contains("expected GetProfilesResponse"));
}

#[test]
fn not_authorized_fault() {
    let text = envelope(
        r#"<env:Fault><env:Code><env:Value>env:Sender</env:Value><env:Subcode><env:Value>ter:NotAuthorized</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">Sender not Authorized</env:Text></env:Reason></env:Fault>"#,
    );
    let Err(AnswerError::Fault(fault)) = answer(
        &text,
        "GetDeviceInformationResponse",
        super::device_information,
    ) else {
        panic!("not a fault")
    };
    assert_eq!(fault.code, "ter:NotAuthorized");
    assert!(fault.is_not_authorized());
    assert_eq!(
        fault.to_string(),
        "SOAP fault ter:NotAuthorized: Sender not Authorized"
    );
    let other = Fault {
        code: "ter:ActionNotSupported".into(),
        reason: "no".into(),
    };
    assert!(!other.is_not_authorized());
}

#[test]
fn clock_interfaces_profiles_and_uris() {
    let clock = envelope(
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>\
         <tt:UTCDateTime><tt:Time><tt:Hour>3</tt:Hour><tt:Minute>4</tt:Minute><tt:Second>5</tt:Second></tt:Time>\
         <tt:Date><tt:Year>2026</tt:Year><tt:Month>1</tt:Month><tt:Day>2</tt:Day></tt:Date></tt:UTCDateTime>\
         </tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>",
    );
    let at = answer(&clock, "GetSystemDateAndTimeResponse", system_time).unwrap();
    assert_eq!(
        humantime::format_rfc3339_seconds(at).to_string(),
        "2026-01-02T03:04:05Z"
    );

    let interfaces = envelope(
        r#"<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0"><tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name><tt:HwAddress>00-0F-7C-AA-BB-CC</tt:HwAddress></tt:Info></tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"#,
    );
    assert_eq!(
        answer(&interfaces, "GetNetworkInterfacesResponse", mac_address).unwrap(),
        "00:0f:7c:aa:bb:cc"
    );
    assert_eq!(normalize_mac("000f7cAABBCC"), "00:0f:7c:aa:bb:cc");
    assert_eq!(normalize_mac("not a mac"), "not a mac");

    let profiles = envelope(
        r#"<trt:GetProfilesResponse><trt:Profiles token="main" fixed="true"><tt:Name>Main</tt:Name><tt:VideoEncoderConfiguration token="v0"><tt:Name>v</tt:Name><tt:Encoding>H264</tt:Encoding><tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution></tt:VideoEncoderConfiguration></trt:Profiles><trt:Profiles token="sub"><tt:Name>Sub</tt:Name></trt:Profiles><trt:Profiles><tt:Name>no token</tt:Name></trt:Profiles></trt:GetProfilesResponse>"#,
    );
    let list = answer(&profiles, "GetProfilesResponse", super::profiles).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].resolution.as_deref(), Some("1920x1080"));
    assert_eq!(list[1].encoding, None);

    let uri = envelope(
        "<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>rtsp://10.0.0.5:554/main</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>",
    );
    assert_eq!(
        answer(&uri, "GetStreamUriResponse", stream_uri).unwrap(),
        "rtsp://10.0.0.5:554/main"
    );
}

#[test]
fn requests_are_well_formed_xml() {
    for request in [
        get_system_date_and_time(),
        get_device_information(),
        get_capabilities(),
        get_network_interfaces(),
        get_profiles(),
        get_stream_uri("a<b"),
    ] {
        let text = request.envelope(Some("<x:Security xmlns:x='urn:x'/>"));
        let document = crate::xml::parse(&text, MAX_RESPONSE).unwrap();
        assert!(crate::xml::body(&document).is_ok());
        assert!(request.action.starts_with("http://www.onvif.org/ver10/"));
    }
}
