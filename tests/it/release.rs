//! `make release` (scripts/release.sh, docs/release.md): one folder that
//! holds what a user downloads, each file what it claims to be.
//!
//! ```text
//!  make release PROFILE=debug RELEASE_OUT=<tmp>
//!  <tmp>/ambit-<version>.tgz      helm show chart: Chart.yaml's name and version
//!       /images/<image>.oci.tar   every image, nothing else
//!       /sbom/<image>.cdx.json    CycloneDX; metadata.component the image (the
//!                                 archive's digest); components with purls: the
//!                                 binary's workspace crates and crates.io crates,
//!                                 the Debian packages at dpkg's versions; every
//!                                 dependency ref a component
//!       /LICENSE, /CHANGELOG.md   the repository's
//!       /SHA256SUMS               every other file, sorted, each sum right
//! ```
//!
//! It packs the debug binaries already built (`make test` builds them
//! first; alone: `cargo build --workspace --bins`): about 40 s. The first
//! run on a machine also installs cargo-cyclonedx into the cache (3–4
//! minutes on 2 cores).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What one image's SBOM must list (the crates of its binary's package, and
/// the Debian packages of the libraries `ldd` finds for it), and the debug
/// binary the image packs.
struct Expected {
    image: &'static str,
    binary: Option<&'static str>,
    crates: &'static [&'static str],
    debs: &'static [&'static str],
}

const EXPECTED: &[Expected] = &[
    Expected {
        image: "ambit-agent",
        binary: Some("ambit-agent"),
        crates: &["ambit-agent", "ambit-crds", "ambit-udev", "kube", "tokio"],
        debs: &["libudev1", "libdbus-1-3", "libc6"],
    },
    Expected {
        image: "ambit-controller",
        binary: Some("ambit-controller"),
        crates: &["ambit-controller", "ambit-crds", "kube"],
        debs: &["libc6"],
    },
    Expected {
        image: "ambit-handler",
        binary: Some("ambit-handler"),
        crates: &["ambit-handlers", "ambit-discovery", "ambit-udev", "tonic"],
        debs: &["libudev1", "libc6"],
    },
    Expected {
        image: "ambit",
        binary: Some("ambit"),
        crates: &["ambit-cli", "ambit-crds", "kube"],
        debs: &["libc6"],
    },
    Expected {
        image: "ambit-testbox",
        binary: None,
        crates: &[],
        debs: &["busybox-static"],
    },
];

#[test]
fn release_folder_holds_the_chart_images_sboms_and_checksums() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(repo.join("target"), PathBuf::from);
    for binary in EXPECTED.iter().filter_map(|e| e.binary) {
        let path = target.join("debug").join(binary);
        ensure!(
            path.is_file(),
            "{} is missing: this test packs the debug binaries, build them first \
             (cargo build --workspace --bins; make test does)",
            path.display()
        );
    }
    let out = tempfile::tempdir()?;
    let started = Instant::now();
    let output = Command::new("make")
        .current_dir(&repo)
        .args(["--no-print-directory", "release", "PROFILE=debug"])
        .arg(format!("RELEASE_OUT={}", out.path().display()))
        .output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("make release in {:.0?}:\n{log}", started.elapsed());
    ensure!(output.status.success(), "make release failed: {log}");
    let out = out.path();

    let chart = check_chart(out)?;
    let files = files(out)?;
    let mut wanted: BTreeSet<String> = ["LICENSE", "CHANGELOG.md", "SHA256SUMS", &chart]
        .map(String::from)
        .into();
    for expected in EXPECTED {
        wanted.insert(format!("images/{}.oci.tar", expected.image));
        wanted.insert(format!("sbom/{}.cdx.json", expected.image));
    }
    let found: BTreeSet<String> = files.iter().cloned().collect();
    ensure!(
        found == wanted,
        "the folder holds {found:?}, expected {wanted:?}"
    );
    for name in ["LICENSE", "CHANGELOG.md"] {
        ensure!(
            std::fs::read(out.join(name))? == std::fs::read(repo.join(name))?,
            "{name} is not the repository's"
        );
    }
    for expected in EXPECTED {
        let file = format!("sbom/{}.cdx.json", expected.image);
        let summary = check_sbom(out, expected).with_context(|| file.clone())?;
        println!("{file}: {summary} ok");
    }
    let listed = check_sums(out, &files)?;
    println!("SHA256SUMS: {listed} files ok");
    Ok(())
}

/// The packaged chart is Chart.yaml's name and version; returns its file name.
fn check_chart(out: &Path) -> anyhow::Result<String> {
    let source: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
        ambit_tests::helm::chart_dir().join("Chart.yaml"),
    )?)?;
    let version = source["version"]
        .as_str()
        .context("Chart.yaml has no version")?;
    let name = format!("ambit-{version}.tgz");
    let path = out.join(&name);
    ensure!(path.is_file(), "no {name}");
    let helm = ambit_tests::helm::Helm::ensure()?;
    let shown: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&helm.run(&["show", "chart", &path.to_string_lossy()])?)?;
    ensure!(
        shown["name"].as_str() == Some("ambit") && shown["version"].as_str() == Some(version),
        "helm show chart {name}: name {:?}, version {:?}; Chart.yaml says ambit {version}",
        shown["name"],
        shown["version"]
    );
    Ok(name)
}

/// Checks one SBOM; returns how many components and dependency entries it has.
fn check_sbom(out: &Path, expected: &Expected) -> anyhow::Result<String> {
    let bom: Value = serde_json::from_slice(&std::fs::read(
        out.join("sbom")
            .join(format!("{}.cdx.json", expected.image)),
    )?)?;
    ensure!(
        bom["bomFormat"] == "CycloneDX",
        "bomFormat is {}",
        bom["bomFormat"]
    );
    ensure!(bom["specVersion"].is_string(), "no specVersion");
    let image = &bom["metadata"]["component"];
    ensure!(
        image["name"] == expected.image && image["type"] == "container",
        "metadata.component is {image}, not the container image {}",
        expected.image
    );
    let digest = manifest_digest(
        &out.join("images")
            .join(format!("{}.oci.tar", expected.image)),
    )?;
    let purl = format!("pkg:oci/{}@{}?", expected.image, digest.replace(':', "%3A"));
    let image_purl = image["purl"].as_str().unwrap_or_default();
    ensure!(
        image_purl.starts_with(&purl),
        "the image's purl {image_purl} is not {purl}…"
    );

    let components = bom["components"].as_array().context("no components")?;
    let mut purls = BTreeMap::new();
    for component in components {
        let name = component["name"]
            .as_str()
            .context("a component without a name")?;
        let purl = component["purl"].as_str();
        purls.insert(
            name,
            purl.with_context(|| format!("component {name} has no purl"))?,
        );
    }
    for name in expected.crates {
        let purl = purls
            .get(name)
            .with_context(|| format!("no component {name}"))?;
        ensure!(
            purl.starts_with(&format!("pkg:cargo/{name}@")),
            "{name}: purl {purl}"
        );
    }
    if expected.crates.is_empty() {
        let crates: Vec<_> = purls
            .values()
            .filter(|p| p.starts_with("pkg:cargo/"))
            .collect();
        ensure!(
            crates.is_empty(),
            "no Rust in this image, yet crates: {crates:?}"
        );
    }
    for name in expected.debs {
        let purl = purls
            .get(name)
            .with_context(|| format!("no Debian package {name}"))?;
        let version = dpkg_version(name)?;
        let encoded = version.replace(':', "%3A").replace('+', "%2B");
        let wanted = format!("pkg:deb/debian/{name}@{encoded}?arch=");
        ensure!(
            purl.starts_with(&wanted),
            "{name}: purl {purl}, expected {wanted}…"
        );
    }

    let refs: BTreeSet<&str> = components
        .iter()
        .filter_map(|c| c["bom-ref"].as_str())
        .collect();
    let dependencies = bom["dependencies"].as_array().context("no dependencies")?;
    let top = dependencies
        .iter()
        .find(|d| d["ref"] == image["bom-ref"])
        .context("the image's own entry is missing from dependencies")?;
    ensure!(
        top["dependsOn"].as_array().is_some_and(|d| !d.is_empty()),
        "the image depends on nothing"
    );
    for dependency in dependencies {
        let listed = dependency["dependsOn"].as_array().into_iter().flatten();
        for r in std::iter::once(&dependency["ref"]).chain(listed) {
            let r = r
                .as_str()
                .context("a dependency ref that is not a string")?;
            ensure!(
                r == image_purl || refs.contains(r),
                "dependency ref {r} names no component"
            );
        }
    }
    Ok(format!(
        "{} components, {} dependency entries",
        components.len(),
        dependencies.len()
    ))
}

/// The digest of the one manifest an OCI archive's index.json names.
fn manifest_digest(archive: &Path) -> anyhow::Result<String> {
    let output = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg("index.json")
        .output()?;
    ensure!(
        output.status.success(),
        "tar -xOf {} index.json failed",
        archive.display()
    );
    let index: Value = serde_json::from_slice(&output.stdout)?;
    Ok(index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?
        .to_owned())
}

fn dpkg_version(package: &str) -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()?;
    ensure!(output.status.success(), "dpkg-query -W {package} failed");
    Ok(String::from_utf8(output.stdout)?)
}

/// SHA256SUMS lists every other file, sorted, with its right sum; returns
/// how many.
fn check_sums(out: &Path, files: &[String]) -> anyhow::Result<usize> {
    let sums = std::fs::read_to_string(out.join("SHA256SUMS"))?;
    let mut listed = vec![];
    for line in sums.lines() {
        let Some((sum, path)) = line.split_once("  ") else {
            bail!("SHA256SUMS: not `<sha256>  <path>`: {line:?}");
        };
        let actual = format!("{:x}", Sha256::digest(std::fs::read(out.join(path))?));
        ensure!(
            sum == actual,
            "SHA256SUMS: {path} is {actual}, listed as {sum}"
        );
        listed.push(path.to_owned());
    }
    let others: Vec<String> = files
        .iter()
        .filter(|f| *f != "SHA256SUMS")
        .cloned()
        .collect();
    ensure!(
        listed == others,
        "SHA256SUMS lists {listed:?}, the folder holds {others:?}"
    );
    Ok(listed.len())
}

/// Every file below `dir`, by path relative to it, sorted bytewise.
fn files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = vec![];
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir)?.to_string_lossy().into_owned();
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}
