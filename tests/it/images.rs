//! The container images (`deploy/images/*.Containerfile`, `make images`):
//! two builds of the same commit give the same digests, and each image is a
//! valid OCI layout holding what docs/images.md says, and nothing else.
//!
//! ```text
//!  make images PROFILE=debug IMAGES_OUT=<tmp>/a ─┐ (at once)  every archive
//!  make images PROFILE=debug IMAGES_OUT=<tmp>/b ─┘            byte-identical
//!  <tmp>/a/<image>.oci.tar ── index.json → manifest → config, layers:
//!     digests and sizes, entrypoint, user, labels, files (owner, mode,
//!     mtime), no shell but in the testbox, every ELF's loader and
//!     DT_NEEDED libraries inside the image; as root, the entrypoint runs
//!     chrooted in the unpacked image (`--version`, or the testbox's shell)
//! ```
//!
//! It packs the debug binaries already built (`make test` builds them
//! first; alone: `cargo build --workspace --bins`), so it takes seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

#[path = "images/elf.rs"]
mod elf;
#[path = "images/tar.rs"]
mod tar;

use tar::{Entry, Kind};

const REGISTRY: &str = "ghcr.io/ambit-dev";
const UID: u32 = 65532;
/// The testbox's applets (docs/images.md).
const APPLETS: &[&str] = &[
    "sh", "env", "ls", "cat", "sleep", "test", "head", "od", "dd", "grep", "wc", "id", "stat",
    "printf", "echo", "wget", "nc", "true", "false",
];

/// The images with one Rust binary each, named after it.
const BINARY_IMAGES: &[&str] = &["ambit", "ambit-agent", "ambit-controller", "ambit-handler"];
/// The busybox image for tests and demos.
const TESTBOX: &str = "ambit-testbox";

/// What one image must be: its name, and the binary in /usr/local/bin that
/// is its entrypoint (None: the testbox, whose entrypoint is /bin/sh).
struct Expected {
    name: &'static str,
    binary: Option<&'static str>,
}

impl Expected {
    fn all() -> impl Iterator<Item = Self> {
        let binaries = BINARY_IMAGES.iter().map(|&name| Self {
            name,
            binary: Some(name),
        });
        binaries.chain([Self {
            name: TESTBOX,
            binary: None,
        }])
    }

    fn entrypoint(&self) -> String {
        self.binary
            .map_or("/bin/sh".into(), |b| format!("/usr/local/bin/{b}"))
    }
}

#[test]
fn images_build_reproducibly_and_hold_only_what_they_need() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Read before building: on a shared work tree, HEAD may move meanwhile.
    let build = BuildFacts::of(&repo)?;
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let builds = [&a, &b].map(|out| {
        Command::new("make")
            .current_dir(&repo)
            .args(["--no-print-directory", "images", "PROFILE=debug"])
            .arg(format!("IMAGES_OUT={}", out.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    });
    for (build, out) in builds.into_iter().zip([&a, &b]) {
        let output = build?.wait_with_output()?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("make images into {}:\n{log}", out.display());
        ensure!(output.status.success(), "make images failed: {log}");
    }

    let made = archives(&a)?;
    let wanted: BTreeSet<String> = Expected::all().map(|i| i.name.to_owned()).collect();
    ensure!(made == wanted, "images built {made:?}, expected {wanted:?}");
    for expected in Expected::all() {
        let file = format!("{}.oci.tar", expected.name);
        let (first, second) = (std::fs::read(a.join(&file))?, std::fs::read(b.join(&file))?);
        let image = Image::read(&first).with_context(|| format!("{file} of build a"))?;
        let again = Image::read(&second).with_context(|| format!("{file} of build b"))?;
        ensure!(
            image.manifest_digest == again.manifest_digest,
            "{}: two builds of one commit, two digests: {} and {} (a binary rebuilt in between?)",
            expected.name,
            image.manifest_digest,
            again.manifest_digest
        );
        ensure!(
            first == second,
            "{file}: the archives differ, the manifests do not"
        );
        check(&expected, &image, &build).with_context(|| format!("image {}", expected.name))?;
        println!(
            "{REGISTRY}/{}:{} {} ok",
            expected.name, build.version, image.manifest_digest
        );
    }
    Ok(())
}

/// The names of the images archived in `dir`; nothing else may be there.
fn archives(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(image) = name.strip_suffix(".oci.tar") {
            found.insert(image.to_owned());
        } else {
            bail!("unexpected file in the images folder: {}", path.display());
        }
    }
    Ok(found)
}

/// What every image's labels and timestamps must say: from Cargo.toml and git.
struct BuildFacts {
    version: String,
    revision: String,
    epoch: u64,
}

impl BuildFacts {
    fn of(repo: &Path) -> anyhow::Result<Self> {
        let git = |args: &[&str]| -> Option<String> {
            let output = Command::new("git")
                .current_dir(repo)
                .args(args)
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let manifest = std::fs::read_to_string(repo.join("Cargo.toml"))?;
        let version = manifest
            .lines()
            .skip_while(|l| l.trim() != "[workspace.package]")
            .find_map(|l| l.strip_prefix("version = "))
            .context("no workspace version in Cargo.toml")?
            .trim_matches('"')
            .to_owned();
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(epoch) => epoch.parse()?,
            Err(_) => git(&["log", "-1", "--format=%ct"]).map_or(Ok(0), |e| e.parse())?,
        };
        let revision = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        Ok(Self {
            version,
            revision,
            epoch,
        })
    }
}

/// One OCI archive, read and checked as a layout: every blob's digest and
/// size, index.json → manifest → config, each layer's diff_id.
struct Image {
    manifest_digest: String,
    index: Value,
    config: Value,
    history: usize,
    /// The files of all layers, by path without the leading `/`.
    files: BTreeMap<String, Entry>,
}

impl Image {
    fn read(archive: &[u8]) -> anyhow::Result<Self> {
        let mut blobs = BTreeMap::new();
        let mut layout = BTreeMap::new();
        for entry in tar::read(archive)? {
            if entry.kind == Kind::File {
                match entry.path.strip_prefix("blobs/sha256/") {
                    Some(digest) => {
                        let actual = tar::sha256(&entry.data)?;
                        ensure!(digest == actual, "blob {digest} holds sha256:{actual}");
                        blobs.insert(format!("sha256:{digest}"), entry.data);
                    }
                    None => {
                        layout.insert(entry.path, entry.data);
                    }
                }
            }
        }
        let json = |bytes: &[u8]| -> anyhow::Result<Value> { Ok(serde_json::from_slice(bytes)?) };
        let oci_layout = json(layout.get("oci-layout").context("no oci-layout")?)?;
        ensure!(
            oci_layout["imageLayoutVersion"] == "1.0.0",
            "oci-layout: {oci_layout}"
        );
        let index = json(layout.get("index.json").context("no index.json")?)?;
        ensure!(index["schemaVersion"] == 2, "index.json: {index}");
        let descriptors = index["manifests"]
            .as_array()
            .context("index without manifests")?;
        ensure!(
            descriptors.len() == 1,
            "index.json: one manifest, got {index}"
        );
        let descriptor = &descriptors[0];
        let media_type = "application/vnd.oci.image.manifest.v1+json";
        ensure!(descriptor["mediaType"] == media_type, "{descriptor}");
        let mut used = BTreeSet::new();
        let mut blob = |descriptor: &Value| -> anyhow::Result<&Vec<u8>> {
            let digest = descriptor["digest"]
                .as_str()
                .context("descriptor without digest")?;
            let data = blobs
                .get(digest)
                .with_context(|| format!("no blob {digest}"))?;
            ensure!(
                descriptor["size"].as_u64() == Some(data.len() as u64),
                "{digest}: descriptor says {} bytes, blob has {}",
                descriptor["size"],
                data.len()
            );
            used.insert(digest.to_owned());
            Ok(data)
        };
        let manifest = json(blob(descriptor)?)?;
        ensure!(manifest["schemaVersion"] == 2, "manifest: {manifest}");
        ensure!(
            manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json",
            "manifest: {manifest}"
        );
        let config = json(blob(&manifest["config"])?)?;
        let layers = manifest["layers"]
            .as_array()
            .context("manifest without layers")?;
        let diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .context("no diff_ids")?;
        ensure!(
            layers.len() == diff_ids.len(),
            "{} layers, {} diff_ids",
            layers.len(),
            diff_ids.len()
        );
        let mut files = BTreeMap::new();
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            ensure!(
                layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip",
                "layer: {layer}"
            );
            let layer_tar = tar::gunzip(blob(layer)?)?;
            let actual = format!("sha256:{}", tar::sha256(&layer_tar)?);
            ensure!(
                diff_id == actual.as_str(),
                "layer {layer}: diff_id {diff_id}, holds {actual}"
            );
            for entry in tar::read(&layer_tar)? {
                files.insert(entry.path.clone(), entry);
            }
        }
        ensure!(
            used.len() == blobs.len(),
            "blobs nothing refers to: {used:?} of {:?}",
            blobs.keys()
        );
        let history = config["history"].as_array().map_or(0, Vec::len);
        ensure!(
            history == layers.len(),
            "{history} history entries for {} layers",
            layers.len()
        );
        Ok(Self {
            manifest_digest: descriptor["digest"].as_str().unwrap_or_default().to_owned(),
            index,
            config,
            history,
            files,
        })
    }
}

/// Checks one image against what it must be.
fn check(expected: &Expected, image: &Image, build: &BuildFacts) -> anyhow::Result<()> {
    let reference = format!("{REGISTRY}/{}:{}", expected.name, build.version);
    let annotations = &image.index["manifests"][0]["annotations"];
    ensure!(
        annotations["org.opencontainers.image.ref.name"] == build.version.as_str()
            && annotations["io.containerd.image.name"] == reference.as_str(),
        "index annotations: {annotations}"
    );

    let config = &image.config;
    let created = rfc3339(build.epoch);
    ensure!(config["os"] == "linux", "os: {}", config["os"]);
    ensure!(
        config["architecture"] == go_arch(),
        "architecture: {}",
        config["architecture"]
    );
    ensure!(
        config["created"] == created.as_str(),
        "created: {}",
        config["created"]
    );
    ensure!(image.history > 0, "no history");
    let run = &config["config"];
    ensure!(
        run["Entrypoint"] == serde_json::json!([expected.entrypoint()]),
        "{run}"
    );
    ensure!(
        run["User"] == format!("{UID}:{UID}").as_str(),
        "user: {}",
        run["User"]
    );
    let labels = &run["Labels"];
    for (key, value) in [
        ("title", expected.name),
        ("version", &build.version),
        ("revision", &build.revision),
        ("created", &created),
        ("source", "https://github.com/ambit-dev/ambit"),
        ("licenses", "Apache-2.0"),
    ] {
        let label = &labels[format!("org.opencontainers.image.{key}")];
        ensure!(label == value, "label {key}: {label}, expected {value}");
    }
    ensure!(
        labels["org.opencontainers.image.description"].is_string(),
        "{labels}"
    );

    check_files(expected, &image.files, build.epoch)?;
    check_elves(&image.files)?;
    run_chrooted(expected, &image.files, &build.version)
}

/// Owners, modes and dates of every entry; the files only those an image
/// may hold; passwd, group, the CA bundle, /tmp; a shell only in the testbox.
fn check_files(
    expected: &Expected,
    files: &BTreeMap<String, Entry>,
    epoch: u64,
) -> anyhow::Result<()> {
    for entry in files.values() {
        ensure!(
            entry.uid == 0 && entry.gid == 0,
            "{}: owned by {}:{}",
            entry.path,
            entry.uid,
            entry.gid
        );
        ensure!(
            entry.mtime == epoch,
            "{}: mtime {}, expected {epoch}",
            entry.path,
            entry.mtime
        );
    }
    let file = |path: &str| -> anyhow::Result<&Entry> {
        let entry = files.get(path).with_context(|| format!("no {path}"))?;
        ensure!(entry.kind == Kind::File, "{path} is not a file");
        Ok(entry)
    };
    let text =
        |path: &str| -> anyhow::Result<String> { Ok(String::from_utf8(file(path)?.data.clone())?) };
    ensure!(
        text("etc/passwd")?.contains(&format!("\nambit:x:{UID}:{UID}:")),
        "etc/passwd"
    );
    ensure!(
        text("etc/group")?.contains(&format!("\nambit:x:{UID}:")),
        "etc/group"
    );
    ensure!(
        text("etc/ssl/certs/ca-certificates.crt")?.contains("-----BEGIN CERTIFICATE-----"),
        "the CA bundle holds no certificate"
    );
    let tmp = files.get("tmp").context("no /tmp")?;
    ensure!(
        tmp.kind == Kind::Dir && tmp.mode == 0o1777,
        "/tmp: {:?} {:o}",
        tmp.kind,
        tmp.mode
    );
    let entrypoint = match expected.binary {
        Some(binary) => file(&format!("usr/local/bin/{binary}"))?,
        None => file("bin/busybox")?,
    };
    ensure!(
        entrypoint.mode & 0o111 == 0o111,
        "{}: mode {:o}",
        entrypoint.path,
        entrypoint.mode
    );

    let multiarch = format!("lib/{}-linux-gnu/", std::env::consts::ARCH);
    let mut allowed: BTreeSet<String> = [
        "etc/passwd",
        "etc/group",
        "etc/ssl/certs/ca-certificates.crt",
    ]
    .map(String::from)
    .into();
    match expected.binary {
        Some(binary) => {
            allowed.insert(format!("usr/local/bin/{binary}"));
            for entry in files.values() {
                let name = entry.path.rsplit('/').next().unwrap_or_default();
                ensure!(
                    entry.kind != Kind::Symlink
                        && !["sh", "bash", "dash", "busybox"].contains(&name),
                    "/{}: a shell or link in an image that has neither",
                    entry.path
                );
            }
        }
        None => {
            allowed.insert("bin/busybox".into());
            for applet in APPLETS {
                let link = files
                    .get(&format!("bin/{applet}"))
                    .with_context(|| format!("no /bin/{applet}"))?;
                ensure!(
                    link.kind == Kind::Symlink && link.link == "busybox",
                    "/bin/{applet}: {link:?}"
                );
            }
        }
    }
    for entry in files.values().filter(|e| e.kind == Kind::File) {
        let library =
            entry.path.starts_with(&multiarch) || entry.path.starts_with("lib64/ld-linux");
        ensure!(
            allowed.contains(&entry.path) || (library && entry.path.contains(".so")),
            "/{}: not something this image should hold",
            entry.path
        );
    }
    Ok(())
}

/// Every ELF file's program interpreter and DT_NEEDED libraries are in the
/// image, where the loader looks without an ld.so.cache (or are the loader
/// itself, which libc names and which is loaded first).
fn check_elves(files: &BTreeMap<String, Entry>) -> anyhow::Result<()> {
    let arch = std::env::consts::ARCH;
    let search = [
        format!("lib/{arch}-linux-gnu"),
        format!("usr/lib/{arch}-linux-gnu"),
        "lib".into(),
        "usr/lib".into(),
    ];
    let is_file = |path: &str| files.get(path).is_some_and(|f| f.kind == Kind::File);
    let mut elves = Vec::new();
    for entry in files.values().filter(|e| e.kind == Kind::File) {
        if let Some(elf) = elf::read(&entry.data).with_context(|| format!("/{}", entry.path))? {
            elves.push((&entry.path, elf));
        }
    }
    let mut loaders = BTreeSet::new();
    for (path, elf) in &elves {
        if let Some(interpreter) = &elf.interpreter {
            ensure!(
                is_file(interpreter.trim_start_matches('/')),
                "/{path}: no loader {interpreter}"
            );
            loaders.insert(interpreter.rsplit('/').next().unwrap_or_default());
        }
    }
    for (path, elf) in &elves {
        for needed in &elf.needed {
            ensure!(
                loaders.contains(needed.as_str())
                    || search.iter().any(|dir| is_file(&format!("{dir}/{needed}"))),
                "/{path} needs {needed}, which the image lacks"
            );
        }
    }
    ensure!(!elves.is_empty(), "no ELF file at all");
    Ok(())
}

/// As root: unpacks the image and runs its entrypoint chrooted there, so the
/// binary and its libraries load from the image alone.
fn run_chrooted(
    expected: &Expected,
    files: &BTreeMap<String, Entry>,
    version: &str,
) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("{}: not root, so not run chrooted", expected.name);
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    for entry in files.values() {
        let path = root.path().join(&entry.path);
        match entry.kind {
            Kind::Dir => std::fs::create_dir_all(&path)?,
            Kind::Symlink => std::os::unix::fs::symlink(&entry.link, &path)?,
            Kind::File => {
                std::fs::write(&path, &entry.data)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))?;
            }
        }
    }
    let (args, wanted) = match expected.binary {
        Some(binary) => (vec!["--version"], format!("{binary} {version}")),
        None => (
            vec!["-c", "id -u; test -d /tmp && echo tmp"],
            format!("{UID}\ntmp"),
        ),
    };
    let output = Command::new("chroot")
        .arg(format!("--userspec={UID}:{UID}"))
        .arg(root.path())
        .arg(expected.entrypoint())
        .args(&args)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.trim() == wanted,
        "chroot {} {args:?}: {}, stdout {stdout:?}, stderr {:?}",
        expected.entrypoint(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// `seconds` since the epoch as RFC 3339 in UTC (`1970-01-01T00:00:00Z`).
fn rfc3339(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_796_188_453), "2026-12-02T05:14:13Z");
}
