//! The README's demo, in its non-interactive mode: it must start, converge
//! (every DeviceSet Ready, every broker Running) and print its table.

use std::process::Command;

#[test]
fn the_demo_converges_and_prints_its_table() {
    let output = Command::new(env!("CARGO_BIN_EXE_ambit-demo"))
        .args(["--until-converged", "--nodes", "2"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("export KUBECONFIG="),
        "it says how to point kubectl at it:\n{stdout}"
    );
    assert!(stdout.contains("Converged"), "{stdout}");
    for expected in [
        "echo-sensors",
        "usb-cameras",
        "plcs",
        "ble-thermometers",
        "tcp://127.0.0.1:",
        "boilers",
        "opc.tcp://127.0.0.1:",
        "ble://",
        "Running",
        "True (Ready)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
