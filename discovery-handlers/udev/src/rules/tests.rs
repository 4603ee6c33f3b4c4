use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;

/// A device as plain data: what a udev device shows the rules.
#[derive(Clone, Default)]
struct Fake {
    sysname: String,
    subsystem: Option<String>,
    driver: Option<String>,
    devpath: String,
    devnode: Option<String>,
    attributes: BTreeMap<String, String>,
    properties: BTreeMap<String, String>,
    parent: Option<Rc<Fake>>,
}

impl Node for Fake {
    fn sysname(&self) -> String {
        self.sysname.clone()
    }
    fn subsystem(&self) -> Option<String> {
        self.subsystem.clone()
    }
    fn driver(&self) -> Option<String> {
        self.driver.clone()
    }
    fn devpath(&self) -> String {
        self.devpath.clone()
    }
    fn devnode(&self) -> Option<String> {
        self.devnode.clone()
    }
    fn attribute(&self, name: &str) -> Option<String> {
        self.attributes.get(name).cloned()
    }
    fn property(&self, name: &str) -> Option<String> {
        self.properties.get(name).cloned()
    }
    fn parent(&self) -> Option<Self> {
        self.parent.as_deref().cloned()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An FTDI serial adapter: usb_device → usb_interface → ttyUSB0 → tty.
fn ftdi_tty() -> Fake {
    let usb = Fake {
        sysname: "1-1".into(),
        subsystem: Some("usb".into()),
        driver: Some("usb".into()),
        devpath: "/devices/pci0000:00/usb1/1-1".into(),
        attributes: map(&[
            ("idVendor", "0403"),
            ("idProduct", "6001"),
            ("serial", "A10K3XYZ"),
            ("manufacturer", "FTDI"),
        ]),
        properties: map(&[("DEVTYPE", "usb_device")]),
        ..Fake::default()
    };
    let interface = Fake {
        sysname: "1-1:1.0".into(),
        subsystem: Some("usb".into()),
        driver: Some("ftdi_sio".into()),
        devpath: "/devices/pci0000:00/usb1/1-1/1-1:1.0".into(),
        attributes: map(&[("bInterfaceNumber", "00")]),
        properties: map(&[("DEVTYPE", "usb_interface")]),
        parent: Some(Rc::new(usb)),
        ..Fake::default()
    };
    let port = Fake {
        sysname: "ttyUSB0".into(),
        subsystem: Some("usb-serial".into()),
        driver: Some("ftdi_sio".into()),
        devpath: "/devices/pci0000:00/usb1/1-1/1-1:1.0/ttyUSB0".into(),
        attributes: map(&[("port_number", "0")]),
        parent: Some(Rc::new(interface)),
        ..Fake::default()
    };
    Fake {
        sysname: "ttyUSB0".into(),
        subsystem: Some("tty".into()),
        devpath: "/devices/pci0000:00/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0".into(),
        devnode: Some("/dev/ttyUSB0".into()),
        attributes: map(&[("dev", "188:0\n")]),
        properties: map(&[
            ("TAGS", ":systemd:uaccess:"),
            (
                "DEVLINKS",
                "/dev/serial/by-id/usb-FTDI-if00 /dev/serial/by-path/x",
            ),
            ("ID_VENDOR_ID", "0403"),
        ]),
        parent: Some(Rc::new(port)),
        ..Fake::default()
    }
}

fn matches(rule: &str, node: &Fake) -> bool {
    Rules::parse(&[rule])
        .unwrap_or_else(|error| panic!("{rule}: {error}"))
        .matches(node)
}

fn error(rule: &str) -> String {
    match Rules::parse(&["KERNEL==\"x\"", rule]) {
        Ok(rules) => panic!("{rule} parsed as {rules:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn own_keys_look_at_the_device() {
    let tty = ftdi_tty();
    assert!(matches(r#"SUBSYSTEM=="tty""#, &tty));
    assert!(matches(r#"KERNEL=="ttyUSB[0-9]*""#, &tty));
    assert!(matches(r#"DEVPATH=="*/tty/ttyUSB0""#, &tty));
    assert!(matches(r#"NAME=="ttyUSB0""#, &tty));
    assert!(matches(r#"SYMLINK=="serial/by-id/*""#, &tty));
    assert!(matches(r#"TAG=="uaccess""#, &tty));
    assert!(matches(r#"ENV{ID_VENDOR_ID}=="0403""#, &tty));
    assert!(
        matches(r#"ATTR{dev}=="188:0""#, &tty),
        "trailing newline ignored"
    );
    // Own keys never look at parents.
    assert!(!matches(r#"DRIVER=="ftdi_sio""#, &tty));
    assert!(!matches(r#"ATTR{idVendor}=="0403""#, &tty));
    assert!(!matches(r#"SUBSYSTEM=="usb""#, &tty));
    assert!(!matches(r#"TAG=="seat""#, &tty));
}

#[test]
fn parent_keys_look_up_the_chain() {
    let tty = ftdi_tty();
    assert!(matches(r#"ATTRS{idVendor}=="0403""#, &tty));
    assert!(matches(r#"DRIVERS=="ftdi_sio""#, &tty));
    assert!(matches(r#"KERNELS=="1-1:1.0""#, &tty));
    assert!(matches(r#"SUBSYSTEMS=="usb-serial""#, &tty));
    assert!(matches(r#"TAGS=="systemd""#, &tty));
    assert!(!matches(r#"ATTRS{idVendor}=="046d""#, &tty));
}

#[test]
fn parent_keys_must_hold_on_one_device() {
    let tty = ftdi_tty();
    // idVendor is on the USB device, bInterfaceNumber on the interface.
    assert!(matches(
        r#"ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001""#,
        &tty
    ));
    assert!(matches(
        r#"KERNELS=="1-1:1.0", ATTRS{bInterfaceNumber}=="00", DRIVERS=="ftdi_sio""#,
        &tty
    ));
    assert!(!matches(
        r#"ATTRS{idVendor}=="0403", ATTRS{bInterfaceNumber}=="00""#,
        &tty
    ));
}

#[test]
fn a_rule_needs_every_term_and_any_rule_will_do() {
    let tty = ftdi_tty();
    assert!(!matches(
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="046d""#,
        &tty
    ));
    let rules = Rules::parse(&[
        r#"SUBSYSTEM=="video4linux""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403""#,
    ])
    .unwrap();
    assert!(rules.matches(&tty));
    let rules = Rules::parse(&[r#"SUBSYSTEM=="video4linux""#, r#"KERNEL=="ttyS*""#]).unwrap();
    assert!(!rules.matches(&tty));
}

#[test]
fn not_equal_and_missing_values() {
    let tty = ftdi_tty();
    assert!(matches(r#"SUBSYSTEM!="video4linux""#, &tty));
    assert!(!matches(r#"SUBSYSTEM!="tty""#, &tty));
    // A missing value reads as empty, as in udev.
    assert!(matches(r#"ENV{ID_SERIAL}!="?*""#, &tty));
    assert!(matches(r#"ENV{ID_SERIAL}=="""#, &tty));
    assert!(!matches(r#"ENV{ID_VENDOR_ID}=="""#, &tty));
    assert!(matches(r#"DRIVER!="?*""#, &tty));
    // ...but a missing attribute fails the match either way, as in udev.
    assert!(!matches(r#"ATTR{idVendor}!="0403""#, &tty));
    assert!(!matches(r#"ATTR{idVendor}=="""#, &tty));
    assert!(matches(r#"ATTRS{idVendor}!="046d""#, &tty));
    assert!(!matches(r#"ATTRS{idVendor}!="0403""#, &tty));
    // Multi-valued: != holds when no value matches.
    assert!(matches(r#"TAG!="seat""#, &tty));
    assert!(!matches(r#"TAG!="uaccess""#, &tty));
}

#[test]
fn globs_and_alternatives() {
    let tty = ftdi_tty();
    assert!(matches(r#"KERNEL=="ttyACM*|ttyUSB*""#, &tty));
    assert!(matches(r#"KERNEL=="tty???0""#, &tty));
    assert!(matches(r#"KERNEL=="tty[!A]SB*""#, &tty));
    assert!(
        matches(r#"DEVPATH=="**ttyUSB0""#, &tty),
        "runs of * are one *"
    );
    assert!(!matches(r#"KERNEL=="ttyusb*""#, &tty), "case-sensitive");
    assert!(!matches(r#"KERNEL=="ttyUSB""#, &tty), "whole value");
}

#[test]
fn syntax_variants() {
    let tty = ftdi_tty();
    assert!(matches(
        r#"  SUBSYSTEM == "tty" ,KERNEL=="ttyUSB0",  "#,
        &tty
    ));
    assert!(matches("SUBSYSTEM==\"tty\",\n  KERNEL==\"ttyUSB0\"", &tty));
    let rules = Rules::parse(&[r#"ENV{X}=="a\"b\\c""#]).unwrap();
    let term = rules.rules()[0].terms().next().unwrap();
    assert_eq!(term.pattern.source(), r#"a"b\c"#);
    assert_eq!(term.to_string(), r#"ENV{X}=="a\"b\\c""#);
}

#[test]
fn errors_name_rule_and_column() {
    let cases = [
        (
            "",
            "rules[1], column 1: the rule is empty: give at least one match, e.g. SUBSYSTEM==\"tty\"",
        ),
        (
            "   ",
            "rules[1], column 1: the rule is empty: give at least one match, e.g. SUBSYSTEM==\"tty\"",
        ),
        (
            r#"SUBSYSTEM=="tty", KERNAL=="x""#,
            "rules[1], column 19: unknown key \"KERNAL\"; known keys: KERNEL, SUBSYSTEM, DRIVER, DEVPATH, NAME, SYMLINK, ATTR{..}, ENV{..}, TAG, KERNELS, SUBSYSTEMS, DRIVERS, ATTRS{..}, TAGS",
        ),
        (
            r#"subsystem=="tty""#,
            "rules[1], column 1: unknown key \"subsystem\" (keys are upper case: SUBSYSTEM); known keys: KERNEL, SUBSYSTEM, DRIVER, DEVPATH, NAME, SYMLINK, ATTR{..}, ENV{..}, TAG, KERNELS, SUBSYSTEMS, DRIVERS, ATTRS{..}, TAGS",
        ),
        (
            r#"SUBSYSTEM="tty""#,
            "rules[1], column 10: `=` assigns, and rules here only match: use `==` or `!=`",
        ),
        (
            r#"MODE:="0660""#,
            "rules[1], column 1: MODE is not supported: MODE is an action; set device-node permissions with `permissions`",
        ),
        (
            r#"ACTION=="add", SUBSYSTEM=="tty""#,
            "rules[1], column 1: ACTION is not supported: discovery reports the devices that exist, not events; drop the ACTION match",
        ),
        (
            r#"SUBSYSTEM=="tty" KERNEL=="x""#,
            "rules[1], column 18: expected `,` between matches, found 'K'",
        ),
        (
            r#"SUBSYSTEM=="tty"#,
            "rules[1], column 12: the value's closing `\"` is missing",
        ),
        (
            r#"SUBSYSTEM==tty"#,
            "rules[1], column 12: expected a value in double quotes, found 't'",
        ),
        (
            r#"SUBSYSTEM"#,
            "rules[1], column 10: expected `==` or `!=` after SUBSYSTEM",
        ),
        (
            r#"SUBSYSTEM=!"tty""#,
            "rules[1], column 10: unknown operator `=!`: use `==` or `!=`",
        ),
        (
            r#"ATTRS=="x""#,
            "rules[1], column 1: ATTRS needs a name in braces, e.g. ATTRS{idVendor}",
        ),
        (
            r#"ATTRS{idVendor=="x""#,
            "rules[1], column 15: `ATTRS{` is not closed with `}`",
        ),
        (
            r#"ATTRS{ }=="x""#,
            "rules[1], column 7: `ATTRS{}` needs a name between the braces",
        ),
        (
            r#"KERNEL{x}=="y""#,
            "rules[1], column 1: KERNEL takes no {...} argument",
        ),
        (
            r#"SUBSYSTEM=="tty", KERNEL=="tty[A-""#,
            "rules[1], column 31: invalid pattern \"tty[A-\": invalid range pattern",
        ),
        (
            r#"KERNEL=="ok|[x""#,
            "rules[1], column 13: invalid pattern \"[x\": invalid range pattern",
        ),
        (
            r#", KERNEL=="x""#,
            "rules[1], column 1: expected a key such as SUBSYSTEM, found ','",
        ),
        (
            r#"KÉRNEL=="x""#,
            "rules[1], column 1: unknown key \"KÉRNEL\"; known keys: KERNEL, SUBSYSTEM, DRIVER, DEVPATH, NAME, SYMLINK, ATTR{..}, ENV{..}, TAG, KERNELS, SUBSYSTEMS, DRIVERS, ATTRS{..}, TAGS",
        ),
    ];
    for (rule, expected) in cases {
        assert_eq!(error(rule), expected, "rule {rule:?}");
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" is two bytes but one column.
    assert_eq!(
        error(r#"ENV{X}=="é", KERNEL"#),
        "rules[1], column 20: expected `==` or `!=` after KERNEL"
    );
}

/// Property-style: arbitrary bytes never panic, and every error names a
/// rule and a column inside the text (or just past its end).
#[test]
fn hostile_input_never_panics_and_errors_point_inside() {
    let alphabet: Vec<char> = "KERNELSUBSYTMATRDVIG{}=!\",*?[]|-\\ é\n\t:+x0"
        .chars()
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        match Rules::parse(&[text.as_str()]) {
            Ok(rules) => assert_eq!(rules.rules().len(), 1),
            Err(error) => {
                assert_eq!(error.rule, 0);
                let columns = text.chars().count() + 1;
                assert!(
                    (1..=columns).contains(&error.error.column),
                    "{text:?}: column {} outside 1..={columns}",
                    error.error.column
                );
                assert!(!error.error.message.is_empty());
            }
        }
    }
    // Mutations of valid rules: some still parse, none panics.
    let valid = r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403|10c4", KERNEL!="ttyS*""#;
    assert!(Rules::parse(&[valid]).is_ok());
    for cut in 0..=valid.len() {
        let _ = Rules::parse(&[&valid[..cut]]);
        let mut bytes = valid.as_bytes().to_vec();
        if cut < bytes.len() {
            bytes[cut] = b'"';
            let _ = Rules::parse(&[String::from_utf8_lossy(&bytes).as_ref()]);
        }
    }
}
