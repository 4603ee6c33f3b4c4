use serde_json::json;

use super::*;

fn plan_of(details: Value) -> Result<Plan, String> {
    match plan(&DiscoverRequest::new(details)) {
        Ok(plan) => Ok(plan),
        Err(DiscoveryError::InvalidDetails(message)) => Err(message),
        Err(other) => panic!("expected invalid details, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let plan = plan_of(json!({"tcp": {"hosts": ["10.0.0.5"]}})).unwrap();
    let tcp = plan.tcp.unwrap();
    assert_eq!(tcp.ports, [DEFAULT_PORT]);
    assert_eq!(tcp.units, [1]);
    assert_eq!(tcp.concurrency, DEFAULT_CONCURRENCY);
    assert!(plan.rtu.is_none());
    assert_eq!(plan.interval, DEFAULT_INTERVAL);
    assert_eq!(plan.recognise.timeout, DEFAULT_TIMEOUT);
    assert_eq!(plan.recognise.identification, Identification::Auto);
    assert_eq!(plan.recognise.level, Level::Regular);

    let plan = plan_of(json!({"rtu": {"ports": ["/dev/ttyUSB*"]}})).unwrap();
    let rtu = plan.rtu.unwrap();
    assert_eq!(
        rtu.line,
        Line {
            baud_rate: 19200,
            parity: Parity::Even,
            stop_bits: 1
        }
    );
    assert_eq!(rtu.units, [1]);
}

#[test]
fn everything_given() {
    let plan = plan_of(json!({
        "tcp": {
            "hosts": ["127.0.0.0/24", "plc.local"],
            "ports": [5020, 502, 5020],
            "unitIds": [1, "3-4"],
            "concurrency": 200,
        },
        "rtu": {
            "ports": ["/dev/ttyS0"],
            "baudRate": 9600,
            "parity": "none",
            "stopBits": 2,
            "unitIds": ["1-3"],
        },
        "identification": "required",
        "identificationLevel": "extended",
        "probes": [{"name": "model", "register": "holding", "address": 0, "equals": [1234]}],
        "filters": {"vendor": {"include": ["ACME*"]}},
        "timeout": "150ms",
        "interval": "2m",
    }))
    .unwrap();
    let tcp = plan.tcp.unwrap();
    assert_eq!(tcp.ports, [502, 5020]);
    assert_eq!(tcp.units, [1, 3, 4]);
    assert_eq!(tcp.hosts.len(), 257, "256 addresses and a name, at most");
    let rtu = plan.rtu.unwrap();
    assert_eq!(rtu.units, [1, 2, 3]);
    assert_eq!(rtu.line.parity, Parity::None);
    assert_eq!(plan.recognise.timeout, Duration::from_millis(150));
    assert_eq!(plan.interval, Duration::from_secs(120));
    assert_eq!(plan.recognise.probes.len(), 1);
    assert_eq!(plan.recognise.filters.len(), 1);
}

#[test]
fn errors_name_the_field() {
    let tcp = |extra: Value| {
        let mut tcp = json!({"hosts": ["10.0.0.1"]});
        for (k, v) in extra.as_object().unwrap() {
            tcp[k] = v.clone();
        }
        json!({ "tcp": tcp })
    };
    let cases = [
        (
            json!({}),
            "give `tcp` (hosts to scan) or `rtu` (serial ports to scan), or both",
        ),
        (
            json!({"tcp": {"hosts": ["10.0.0.0/8"]}}),
            "tcp.hosts: 16777216 addresses are more than the limit of 4096; set tcp.allowLargeRanges: true to scan up to 16777216 (a /8), knowing a scan then takes addresses / concurrency x timeout",
        ),
        (
            json!({"tcp": {"hosts": ["10.0.0.0/33"]}}),
            "tcp.hosts[0]: \"10.0.0.0/33\" is not a valid CIDR range (e.g. 10.0.0.0/24)",
        ),
        (
            json!({"tcp": {"hosts": "10.0.0.1"}}),
            "tcp.hosts: invalid type: string \"10.0.0.1\", expected a sequence",
        ),
        (json!({"tcp": {}}), "tcp: missing field `hosts`"),
        (
            tcp(json!({"ports": []})),
            "tcp.ports: give at least one port (or leave it out for 502)",
        ),
        (
            tcp(json!({"ports": [502, 0]})),
            "tcp.ports[1]: 0 is not a port",
        ),
        (
            tcp(json!({"ports": [70000]})),
            "tcp.ports[0]: invalid value: integer `70000`, expected u16",
        ),
        (
            tcp(json!({"unitIds": [1, 248]})),
            "tcp.unitIds[1]: unit id 248 is out of range (0-247, or 255)",
        ),
        (
            tcp(json!({"concurrency": 0})),
            "tcp.concurrency: must be 1 to 512, not 0",
        ),
        (
            tcp(json!({"port": 502})),
            "tcp.port: unknown field `port`, expected one of `hosts`, `ports`, `unitIds`, `concurrency`, `allowLargeRanges`",
        ),
        (
            json!({"rtu": {"ports": ["ttyUSB0"]}}),
            "rtu.ports[0]: \"ttyUSB0\" must be an absolute path or glob, e.g. /dev/ttyUSB*",
        ),
        (
            json!({"rtu": {"ports": []}}),
            "rtu.ports: give at least one serial port (a path or a glob)",
        ),
        (
            json!({"rtu": {"ports": ["/dev/x"], "unitIds": [0]}}),
            "rtu.unitIds[0]: unit id 0 is the broadcast address, which no device answers (use 1-247)",
        ),
        (
            json!({"rtu": {"ports": ["/dev/x"], "parity": "mark"}}),
            "rtu.parity: unknown variant `mark`, expected one of `none`, `even`, `odd`",
        ),
        (
            json!({"rtu": {"ports": ["/dev/x"], "stopBits": 3}}),
            "rtu.stopBits: must be 1 or 2, not 3",
        ),
        (
            json!({"rtu": {"ports": ["/dev/x"], "baudRate": 5}}),
            "rtu.baudRate: 5 is not a serial baud rate (300 to 4000000)",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "identification": "off"}),
            "probes: give at least one probe when identification is off: nothing else could recognise a device",
        ),
        (
            json!({
                "tcp": {"hosts": ["h"]},
                "identification": "off",
                "probes": [{"name": "a", "register": "input", "address": 1}],
                "filters": {"vendor": {"include": ["x"]}},
            }),
            "filters: need identification (vendor and product come from Read Device Identification), but identification is off",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "identification": "maybe"}),
            "identification: unknown variant `maybe`, expected one of `auto`, `required`, `off`",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "probes": [{"name": "a", "register": "coil", "address": 1}]}),
            "probes[0].register: unknown variant `coil`, expected `holding` or `input`",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "probes": [{"name": "a", "register": "input", "address": 1, "count": 0}]}),
            "probes[0].count: must be 1 to 125, not 0",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "filters": {"vendor": {"include": ["[x"]}}}),
            "filters.vendor.include[0]: \"[x\" is not a valid glob: Pattern syntax error near position 0: invalid range pattern",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "filters": {"serial": {}}}),
            "filters.serial: unknown field `serial`, expected one of `vendor`, `productCode`, `productName`",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "timeout": "soon"}),
            "timeout: \"soon\" is not a duration such as 500ms or 30s: expected number at 0",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "timeout": "2m"}),
            "timeout: 2m is out of range (10ms to 1m)",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "interval": "1ms"}),
            "interval: 1ms is out of range (100ms to 7days)",
        ),
        (
            json!({"tcp": {"hosts": ["h"]}, "timeout": 5}),
            "timeout: invalid type: integer `5`, expected a string",
        ),
    ];
    for (details, expected) in cases {
        assert_eq!(plan_of(details.clone()).unwrap_err(), expected, "{details}");
    }
}
