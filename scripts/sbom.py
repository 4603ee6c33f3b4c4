#!/usr/bin/env python3
"""CycloneDX 1.5 SBOMs for Ambit's image archives (`make release`; docs/release.md).

    scripts/sbom.py --cargo-cyclonedx BIN --out DIR ARCHIVE...

Each archive (`make images`) becomes DIR/<title>.cdx.json. What an image's
files are decides what its SBOM lists:

    /usr/local/bin/<bin>    a Rust binary: the crates of the workspace package
                            with that bin target, as cargo-cyclonedx describes
                            them (default features, the host's target), less
                            the few that only feature unification across the
                            workspace brings in: kept are those that
                            `cargo tree -p <package>` resolves
    /etc/passwd, /etc/group written by deploy/images/rootfs.sh: no component
    any other file          the Debian package that owns it on this machine,
                            where rootfs.sh copied it from (dpkg-query -S and
                            -W): pkg:deb/<distro>/<name>@<version>?arch=...;
                            the CA bundle is ca-certificates' (made from its
                            certificates by update-ca-certificates)

metadata.component is the image itself (pkg:oci, by manifest digest); it
depends on the binary's crate and on each Debian package. The timestamp is
the image's creation date, the serial number derived from its digest, and
every list sorted, so the same image gives the same SBOM.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
SPEC_VERSION = "1.5"
RUST_BINARIES = "usr/local/bin/"
# Files rootfs.sh writes itself rather than copies from a package.
WRITTEN = {"etc/passwd", "etc/group"}
# Files no package owns, made from one: path in the image -> package.
MADE_FROM = {"etc/ssl/certs/ca-certificates.crt": "ca-certificates"}
TITLE = "org.opencontainers.image.title"


class SbomError(Exception):
    """An image whose contents this script cannot account for."""


def run(argv: list[str], **kwargs) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SbomError(f"{shlex.join(argv)} failed ({result.returncode}):\n"
                        f"{result.stderr.strip()}")
    return result.stdout


@dataclass
class Image:
    """What an archive says about itself: names, digest, and its files."""

    title: str
    version: str
    description: str
    licenses: str
    created: str
    architecture: str
    repository: str
    digest: str
    files: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, archive: Path) -> Image:
        with tarfile.open(archive) as outer:
            def blob(digest: str):
                return outer.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")

            [descriptor] = json.load(outer.extractfile("index.json"))["manifests"]
            manifest = json.load(blob(descriptor["digest"]))
            config = json.load(blob(manifest["config"]["digest"]))
            files = set()
            for layer in manifest["layers"]:
                with tarfile.open(fileobj=blob(layer["digest"]), mode="r|gz") as entries:
                    files.update(e.name.removeprefix("./") for e in entries if e.isreg())
        labels = config["config"].get("Labels") or {}
        reference = descriptor["annotations"]["io.containerd.image.name"]
        return cls(
            title=labels[TITLE],
            version=labels.get("org.opencontainers.image.version", ""),
            description=labels.get("org.opencontainers.image.description", ""),
            licenses=labels.get("org.opencontainers.image.licenses", ""),
            created=labels.get("org.opencontainers.image.created", config.get("created", "")),
            architecture=config["architecture"],
            repository=reference.rpartition(":")[0],
            digest=descriptor["digest"],
            files=sorted(files),
        )

    @property
    def purl(self) -> str:
        return (f"pkg:oci/{self.title}@{quote(self.digest, safe='')}"
                f"?arch={self.architecture}&repository_url={self.repository}&tag={self.version}")


class Debian:
    """Which installed Debian package owns a file, and its version."""

    def __init__(self) -> None:
        release = dict(line.split("=", 1) for line in
                       Path("/etc/os-release").read_text().splitlines() if "=" in line)
        self.vendor = release.get("ID", "debian").strip('"')
        version = release.get("VERSION_ID", "").strip('"')
        self.distro = f"{self.vendor}-{version}" if version else ""

    @staticmethod
    def owner(path: str) -> str:
        """The package (name:arch) owning /path, trying it as ldd named it,
        under /usr (merged /usr: /lib is /usr/lib), and with links resolved."""
        host = f"/{path}"
        candidates = [host, f"/usr{host}", os.path.realpath(host)]
        for candidate in dict.fromkeys(candidates):
            result = subprocess.run(["dpkg-query", "-S", candidate],
                                    capture_output=True, text=True)
            for line in result.stdout.splitlines():
                owners, _, owned = line.rpartition(": ")
                if owned == candidate and not line.startswith("diversion "):
                    return owners.split(", ")[0]
        raise SbomError(f"/{path}: no Debian package owns it on this machine "
                        f"(tried {', '.join(dict.fromkeys(candidates))})")

    def component(self, package: str, paths: list[str]) -> dict:
        fields = run(["dpkg-query", "-W", "-f=${Package}\t${Version}\t${Architecture}\t${Homepage}",
                      package])
        name, version, arch, homepage = fields.split("\t")
        qualifiers = f"arch={arch}" + (f"&distro={self.distro}" if self.distro else "")
        purl = f"pkg:deb/{self.vendor}/{name}@{quote(version, safe='.-_~')}?{qualifiers}"
        component = {
            "type": "library" if all(".so" in p for p in paths) else "application",
            "bom-ref": purl,
            "publisher": self.vendor.capitalize(),
            "name": name,
            "version": version,
            "purl": purl,
        }
        if homepage:
            component["externalReferences"] = [{"type": "website", "url": homepage}]
        component["evidence"] = {"occurrences": [{"location": f"/{p}"} for p in paths]}
        return component


class Cargo:
    """The workspace's crates per package, from cargo-cyclonedx, run once."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        metadata = json.loads(run(["cargo", "metadata", "--locked", "--no-deps",
                                   "--format-version", "1"], cwd=REPO))
        self.root = metadata["workspace_root"]
        self.bins: dict[str, str] = {}
        for package in metadata["packages"]:
            for target in package["targets"]:
                if "bin" in target["kind"]:
                    if target["name"] in self.bins:
                        raise SbomError(f"two packages have a binary {target['name']}")
                    self.bins[target["name"]] = package["name"]
        self.dirs = {p["name"]: Path(p["manifest_path"]).parent for p in metadata["packages"]}
        self._boms: dict[str, dict] | None = None

    def boms(self) -> dict[str, dict]:
        """cargo-cyclonedx writes one SBOM beside every member's Cargo.toml;
        they are read and removed at once (a name of this run's own)."""
        if self._boms is None:
            name = f".sbom-{os.getpid()}"
            outputs = {package: d / f"{name}.json" for package, d in self.dirs.items()}
            env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
            try:
                run([self.tool, "cyclonedx", "--quiet", "--format", "json",
                     "--spec-version", SPEC_VERSION, "--override-filename", name],
                    cwd=REPO, env=env)
                self._boms = {p: json.loads(f.read_text()) for p, f in outputs.items()}
            finally:
                for output in outputs.values():
                    output.unlink(missing_ok=True)
        return self._boms

    def resolved(self, package: str, triple: str) -> set[tuple[str, str]]:
        """(name, version) of every crate a build of `package` alone compiles."""
        tree = run(["cargo", "tree", "--locked", "-p", package, "-e", "normal,build",
                    "--target", triple, "--prefix", "none", "--format", "{p}"], cwd=REPO)
        return {(words[0], words[1].removeprefix("v"))
                for words in (line.split() for line in tree.splitlines()) if len(words) >= 2}

    def describe(self, binary: str) -> tuple[dict, list[dict], list[dict], list[dict]]:
        """The binary's crate, its crates, their dependency graph, the tool entries."""
        package = self.bins.get(binary)
        if package is None:
            raise SbomError(f"/{RUST_BINARIES}{binary}: no workspace package has that binary")
        bom = self.relocate(self.boms()[package])
        crate = bom["metadata"]["component"]
        crate.pop("components", None)  # its targets: the image holds one binary
        properties = bom["metadata"].get("properties", [])
        triple = next(p["value"] for p in properties if p["name"] == "cdx:rustc:sbom:target:triple")
        wanted = self.resolved(package, triple)
        components = [c for c in bom["components"] if (c["name"], c["version"]) in wanted]
        kept = {crate["bom-ref"]} | {c["bom-ref"] for c in components}
        dependencies = [
            {"ref": d["ref"], "dependsOn": sorted(r for r in d.get("dependsOn", []) if r in kept)}
            for d in bom.get("dependencies", []) if d["ref"] in kept
        ]
        dropped = len(bom["components"]) - len(components)
        print(f"sbom.py: {binary}: {len(components)} crates of {package} "
              f"({dropped} left out: only workspace feature unification has them)", file=sys.stderr)
        return crate, components, dependencies, bom["metadata"].get("tools", [])

    def relocate(self, value):
        """bom-refs name path crates by absolute path: make them checkout-independent."""
        if isinstance(value, str):
            return value.replace(f"path+file://{self.root}", "path+file://.")
        if isinstance(value, list):
            return [self.relocate(v) for v in value]
        if isinstance(value, dict):
            return {k: self.relocate(v) for k, v in value.items()}
        return value


def sbom(image: Image, cargo: Cargo, debian: Debian) -> dict:
    crates, components, dependencies, tools = [], [], [], []
    packages: dict[str, list[str]] = {}
    for path in image.files:
        if path.startswith(RUST_BINARIES):
            crate, crate_components, crate_dependencies, tools = cargo.describe(
                path.removeprefix(RUST_BINARIES))
            crate["evidence"] = {"occurrences": [{"location": f"/{path}"}]}
            crates.append(crate)
            components += crate_components
            dependencies += crate_dependencies
        elif path not in WRITTEN:
            owner = MADE_FROM.get(path) or debian.owner(path)
            packages.setdefault(owner, []).append(path)
    debs = [debian.component(p, paths) for p, paths in sorted(packages.items())]
    unique = {c["bom-ref"]: c for c in crates + components + debs}
    component = {
        "type": "container",
        "bom-ref": image.purl,
        "name": image.title,
        "version": image.version,
        "description": image.description,
        "purl": image.purl,
    }
    if image.licenses:
        component["licenses"] = [{"expression": image.licenses}]
    top = {"ref": image.purl, "dependsOn": sorted(c["bom-ref"] for c in crates + debs)}
    graph = {d["ref"]: d for d in dependencies}
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, image.purl)}",
        "version": 1,
        "metadata": {
            "timestamp": image.created,
            "tools": [*tools, {"vendor": "Ambit", "name": "scripts/sbom.py"}],
            "component": component,
        },
        "components": sorted(unique.values(), key=lambda c: (c["name"], c["version"], c["bom-ref"])),
        "dependencies": [top, *(graph[r] for r in sorted(graph))],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cargo-cyclonedx", required=True, help="the cargo-cyclonedx binary")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("archives", nargs="+", type=Path)
    options = parser.parse_args()
    cargo, debian = Cargo(options.cargo_cyclonedx), Debian()
    options.out.mkdir(parents=True, exist_ok=True)
    for archive in options.archives:
        image = Image.read(archive)
        document = sbom(image, cargo, debian)
        path = options.out / f"{image.title}.cdx.json"
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        debs = sum(c["purl"].startswith("pkg:deb/") for c in document["components"])
        print(f"{path.name}: {len(document['components'])} components "
              f"({debs} Debian packages), {path.stat().st_size / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SbomError as error:
        print(f"sbom.py: {error}", file=sys.stderr)
        sys.exit(1)
