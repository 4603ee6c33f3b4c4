#!/usr/bin/env python3
"""Builds Ambit's images from their Containerfiles, without a container engine
or a registry, into OCI image archives (`make images`; docs/images.md).

    deploy/images/build.py [--profile release|debug] [--out DIR] [CONTAINERFILE...]
    deploy/images/build.py --build-args     # the same labels for docker/podman

Each Containerfile (default: deploy/images/*.Containerfile) becomes
DIR/<title>.oci.tar, tagged <registry>/<title>:<version>, where <title> is its
org.opencontainers.image.title label:

    build stage    cargo builds the binaries on the host (every package that a
                   stage's `RUN cargo build` names, in one run; none with
                   --profile debug, which packs target/debug as it is), then
                   the stage's `RUN .../rootfs.sh OUT ...` runs here, so that
                   `COPY --from=<stage> OUT...` finds what it wrote
    final stage    FROM scratch, then ARG, COPY, ENV, USER, WORKDIR, LABEL,
                   ENTRYPOINT, CMD (exec form); anything else is refused
    layers         one per COPY: GNU tar of what it copies, sorted, every
                   entry root's and dated SOURCE_DATE_EPOCH; umoci (Debian's)
                   adds it to the image (`raw add-layer`: gzip, diff_id,
                   history), then writes the config (created = the same)
    archive        GNU tar of the OCI layout, made the same way

(Not `umoci insert`: the 0.4.7 that Debian ships leaves out the tar trailer
of the layers it writes, umoci#436, which GNU tar and Python refuse.)

SOURCE_DATE_EPOCH is the environment's, else the commit's time, else 0, so
the same commit builds the same digests.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "ghcr.io/ambit-dev"
TITLE = "org.opencontainers.image.title"
FINAL_KEYWORDS = {"ARG", "COPY", "ENV", "USER", "WORKDIR", "LABEL", "ENTRYPOINT", "CMD"}
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
# GNU tar, reproducibly: sorted, every entry root's, no atime/ctime or
# PID-named pax headers (dates come with --mtime=@SOURCE_DATE_EPOCH).
TAR = ["tar", "--format=posix", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
       "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]


class BuildError(Exception):
    """A Containerfile this builder cannot build as docker would."""


@dataclass
class Instruction:
    file: Path
    line: int
    keyword: str
    rest: str

    def fail(self, message: str) -> BuildError:
        return BuildError(f"{self.file.relative_to(REPO)}:{self.line}: {self.keyword}: {message}")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(path: Path) -> list[Stage]:
    """The stages of a Containerfile: comments dropped, continued lines joined."""
    stages: list[Stage] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if raw.lstrip().startswith("#") or (not raw.strip() and not pending):
            continue
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        text, pending = (pending + raw).strip(), ""
        if not text:
            continue
        keyword, _, rest = text.partition(" ")
        instruction = Instruction(path, start, keyword.upper(), rest.strip())
        if instruction.keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform=")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3) or (len(words) == 3 and name is None):
                raise instruction.fail("expected FROM IMAGE [AS NAME]")
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword != "ARG":
            raise instruction.fail("only ARG may come before the first FROM")
    if pending:
        raise BuildError(f"{path}: ends inside a continued line")
    if not stages:
        raise BuildError(f"{path}: no FROM")
    return stages


def expand(text: str, variables: dict[str, str], where: Instruction) -> str:
    """Docker's ${NAME} and $NAME substitution (no ${NAME:-...} forms)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name is None:
            raise where.fail(f"unsupported substitution {match.group(0)}")
        return variables.get(name, "")

    name = "[A-Za-z_][A-Za-z0-9_]*"
    return re.sub(rf"\$(?:\{{({name})\}}|({name})|\{{[^}}]*\}})", value, text)


def exec_form(instruction: Instruction) -> list[str]:
    try:
        argv = json.loads(instruction.rest)
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise instruction.fail('use the exec form, ["program", "arg"]: the image may have no shell')
    return argv


def pairs(instruction: Instruction, words: list[str]) -> list[tuple[str, str]]:
    result = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise instruction.fail(f"expected KEY=VALUE, got {word!r}")
        result.append((key, value))
    return result


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        command = shlex.join(argv)
        raise BuildError(f"{command} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result


def git(*args: str) -> str | None:
    try:
        # safe.directory: a user other than the checkout's owner reads it too.
        argv = ["git", "-c", f"safe.directory={REPO}", *args]
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass
class Build:
    """What every image of one run shares: where binaries are, the labels' values."""

    profile: str
    version: str
    revision: str
    epoch: int
    target: Path
    registry: str = REGISTRY

    @classmethod
    def here(cls, profile: str) -> Build:
        with open(REPO / "Cargo.toml", "rb") as cargo:
            version = tomllib.load(cargo)["workspace"]["package"]["version"]
        epoch = os.environ.get("SOURCE_DATE_EPOCH") or git("log", "-1", "--format=%ct") or "0"
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        revision = git("rev-parse", "HEAD") or "unknown"
        return cls(profile, version, revision, int(epoch), REPO / target)

    @property
    def created(self) -> str:
        return datetime.fromtimestamp(self.epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def args(self) -> dict[str, str]:
        """The build arguments the Containerfiles' labels read."""
        return {
            "VERSION": self.version,
            "REVISION": self.revision,
            "CREATED": self.created,
            "SOURCE_DATE_EPOCH": str(self.epoch),
        }


def stage_runs(stage: Stage, program: str) -> list[list[str]]:
    """The argv of each `RUN` of `stage` whose program is `program`."""
    found = []
    for instruction in stage.instructions:
        if instruction.keyword != "RUN":
            continue
        try:
            words = shlex.split(instruction.rest)
        except ValueError as error:
            raise instruction.fail(str(error)) from None
        words = [w for w in words if not w.startswith("--mount=")]
        if words and Path(words[0]).name == program:
            found.append(words)
    return found


def packages(stage: Stage) -> list[str]:
    """The packages a build stage's `RUN cargo build ... -p P` builds."""
    names = []
    for argv in stage_runs(stage, "cargo"):
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-p", "--package"):
                names.append(value)
    return names


class Image:
    """One Containerfile's final stage, built in a scratch directory."""

    def __init__(self, path: Path, build: Build, work: Path):
        self.path, self.build, self.work = path, build, work
        self.stages = parse(path)
        self.final = self.stages[-1]
        self.layers: list[tuple[Path, str]] = []
        self.config: list[str] = []
        self.labels: dict[str, str] = {}
        self.workdir = "/"
        self.built_stages: dict[str, Path] = {}

    def stage(self, name: str, where: Instruction) -> Stage:
        for stage in self.stages[:-1]:
            if stage.name == name:
                return stage
        raise where.fail(f"no earlier stage named {name!r}")

    def stage_root(self, name: str, where: Instruction) -> Path:
        """The emulated file system of build stage `name`: what its rootfs.sh wrote."""
        if name in self.built_stages:
            return self.built_stages[name]
        runs = stage_runs(self.stage(name, where), "rootfs.sh")
        if len(runs) != 1 or len(runs[0]) < 3:
            raise where.fail(f"stage {name!r} needs exactly one `RUN .../rootfs.sh OUT ...`")
        _, out, *args = runs[0]
        binary = re.compile(r"^(\./)?target/release/")
        binaries = self.build.target / self.build.profile
        args = [binary.sub(f"{binaries}/", a) for a in args]
        for arg in args:
            if arg.startswith(str(binaries)) and not Path(arg).is_file():
                raise where.fail(f"{arg} is missing: build it (cargo build --workspace --bins)")
        root = self.work / f"stage-{name}"
        script = REPO / "deploy" / "images" / "rootfs.sh"
        run(["bash", str(script), str(root / out.lstrip("/")), *args], cwd=REPO)
        self.built_stages[name] = root
        return root

    def interpret(self) -> None:
        if self.final.base != "scratch":
            raise BuildError(f"{self.path}: the final stage must be FROM scratch, "
                             f"not {self.final.base}")
        variables: dict[str, str] = {}
        args = self.build.args()
        for instruction in self.final.instructions:
            keyword = instruction.keyword
            if keyword not in FINAL_KEYWORDS:
                raise instruction.fail(
                    f"not supported in the final stage (only {', '.join(sorted(FINAL_KEYWORDS))})"
                )
            if keyword in ("ENTRYPOINT", "CMD"):
                flag = "--config.entrypoint" if keyword == "ENTRYPOINT" else "--config.cmd"
                self.config += [f"{flag}={a}" for a in exec_form(instruction)]
                continue
            text = expand(instruction.rest, variables, instruction)
            if keyword == "ARG":
                name, _, default = text.partition("=")
                variables[name] = args.get(name, default)
            elif keyword == "ENV":
                words = shlex.split(text)
                if words and "=" not in words[0]:
                    words = [f"{words[0]}={text.split(None, 1)[1] if len(words) > 1 else ''}"]
                for key, value in pairs(instruction, words):
                    variables[key] = value
                    self.config.append(f"--config.env={key}={value}")
            elif keyword == "LABEL":
                self.labels.update(pairs(instruction, shlex.split(text)))
            elif keyword == "USER":
                self.config.append(f"--config.user={text}")
            elif keyword == "WORKDIR":
                self.workdir = os.path.join(self.workdir, text)
                if not any((layer / self.workdir.lstrip("/")).is_dir() for layer, _ in self.layers):
                    raise instruction.fail(f"{self.workdir} is not in the image: COPY it first")
                self.config.append(f"--config.workingdir={self.workdir}")
            elif keyword == "COPY":
                self.copy(instruction, shlex.split(text))
        self.config += [f"--config.label={k}={v}" for k, v in self.labels.items()]
        if TITLE not in self.labels:
            raise BuildError(f"{self.path}: no {TITLE} label (it names the image)")

    def copy(self, instruction: Instruction, words: list[str]) -> None:
        """COPY [--from=STAGE] SRC... DEST into a layer of its own, as docker does."""
        stage = None
        while words and words[0].startswith("--"):
            flag = words.pop(0)
            if not flag.startswith("--from="):
                raise instruction.fail(f"unsupported flag {flag} (only --from=STAGE)")
            stage = flag.removeprefix("--from=")
        if len(words) < 2:
            raise instruction.fail("expected SRC... DEST")
        *sources, dest = words
        if any(c in s for s in sources for c in "*?["):
            raise instruction.fail("wildcards are not supported")
        layer = self.work / f"layer-{len(self.layers)}"
        makedirs(layer, layer)
        dest = os.path.join(self.workdir, dest) + ("/" if dest.endswith("/") else "")
        for source in sources:
            if stage is None:
                origin = REPO / source
            else:
                origin = self.stage_root(stage, instruction) / source.lstrip("/")
            if not origin.exists():
                where = f" in stage {stage}" if stage else ""
                raise instruction.fail(f"{source} does not exist{where}")
            if origin.is_dir():
                target = layer / dest.lstrip("/")
            elif dest.endswith("/") or len(sources) > 1:
                target = layer / dest.lstrip("/") / origin.name
            else:
                target = layer / dest.lstrip("/")
            makedirs(layer, target if origin.is_dir() else target.parent)
            if origin.is_dir():
                shutil.copytree(origin, target, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(origin, target, follow_symlinks=False)
            if stage is None:  # the checkout's modes follow its umask: keep only x
                normalise_modes(target)
        if not any(layer.iterdir()):
            raise instruction.fail("copies nothing")
        self.layers.append((layer, f"COPY {shlex.join(instruction.rest.split())}"))

    def write(self, out: Path) -> Path:
        """Builds the OCI layout with umoci, then archives it to OUT/<title>.oci.tar."""
        build, created = self.build, self.build.created
        layout, tag = self.work / "layout", build.version
        image = f"{layout}:{tag}"
        run(["umoci", "init", "--layout", str(layout)])
        run(["umoci", "new", "--image", image])
        for layer, created_by in self.layers:
            tarball = self.work / f"{layer.name}.tar"
            run([*TAR, f"--mtime=@{build.epoch}", "-C", str(layer), "-cf", str(tarball),
                 "--", *sorted(os.listdir(layer))])
            run(["umoci", "raw", "add-layer", "--image", image, f"--history.created={created}",
                 f"--history.created_by={created_by}", str(tarball)])
        arch = ARCH.get(platform.machine(), platform.machine())
        run(["umoci", "config", "--image", image, "--no-history", f"--created={created}",
             f"--architecture={arch}", "--os=linux", *self.config])
        run(["umoci", "gc", "--layout", str(layout)])
        index_path = layout / "index.json"
        index = json.loads(index_path.read_text())
        [manifest] = index["manifests"]
        manifest["annotations"]["io.containerd.image.name"] = self.reference
        index_path.write_text(json.dumps(index, separators=(",", ":")))
        archive = out / f"{self.labels[TITLE]}.oci.tar"
        partial = archive.with_suffix(".tar.partial")
        run([*TAR, f"--mtime=@{build.epoch}", "--mode=u=rwX,go=rX", "-C", str(layout),
             "-cf", str(partial), "oci-layout", "index.json", "blobs"])
        partial.replace(archive)
        return archive

    @property
    def reference(self) -> str:
        return f"{self.build.registry}/{self.labels[TITLE]}:{self.build.version}"

    def summary(self, archive: Path) -> str:
        """`reference digest sizes`, read back from the layout."""
        blobs = self.work / "layout" / "blobs" / "sha256"
        [descriptor] = json.loads((self.work / "layout" / "index.json").read_text())["manifests"]
        manifest = json.loads((blobs / descriptor["digest"].removeprefix("sha256:")).read_bytes())
        compressed = sum(layer["size"] for layer in manifest["layers"])
        unpacked = 0
        for layer in manifest["layers"]:
            with gzip.open(blobs / layer["digest"].removeprefix("sha256:")) as stream:
                while chunk := stream.read(1 << 20):
                    unpacked += len(chunk)
        shown = archive.relative_to(REPO) if archive.is_relative_to(REPO) else archive
        return (f"{self.reference}  {descriptor['digest']}  {mib(compressed)} compressed, "
                f"{mib(unpacked)} uncompressed  ({shown})")


def makedirs(top: Path, path: Path) -> None:
    """Creates `path` below `top`, every new directory 0755 (docker's mode)."""
    missing = []
    while not path.exists() and path != top:
        missing.append(path)
        path = path.parent
    top.mkdir(mode=0o755, exist_ok=True)
    top.chmod(0o755)
    for directory in reversed(missing):
        directory.mkdir()
        directory.chmod(0o755)


def normalise_modes(path: Path) -> None:
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not item.is_symlink():
            item.chmod(0o755 if item.is_dir() or item.stat().st_mode & 0o111 else 0o644)


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def cargo_build(images: list[Image]) -> None:
    """Builds, in one cargo run, the packages every image's build stages build."""
    names = []
    for image in images:
        for stage in image.stages[:-1]:
            names += [n for n in packages(stage) if n not in names]
    if not names:
        return
    argv = ["cargo", "build", "--release", "--locked", *[a for n in names for a in ("-p", n)]]
    print(f"==> {shlex.join(argv)}", flush=True)
    started = time.monotonic()
    if subprocess.run(argv, cwd=REPO).returncode != 0:
        raise BuildError(f"{shlex.join(argv)} failed")
    print(f"    built in {time.monotonic() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["release", "debug"], default="release",
                        help="pack target/<profile>; debug packs what is built, building nothing")
    parser.add_argument("--out", type=Path, default=REPO / "target" / "images")
    parser.add_argument("--build-args", action="store_true",
                        help="print the --build-arg flags giving docker/podman the same labels")
    parser.add_argument("containerfiles", nargs="*", type=Path)
    options = parser.parse_args()
    build = Build.here(options.profile)
    if options.build_args:
        print(" ".join(f"--build-arg {shlex.quote(f'{k}={v}')}" for k, v in build.args().items()))
        return 0
    for tool in ("umoci", "tar"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found: `make setup` installs it (scripts/setup-deps.txt)")
    paths = options.containerfiles or sorted((REPO / "deploy" / "images").glob("*.Containerfile"))
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".work-") as scratch:
        images = [Image(p.resolve(), build, Path(scratch) / p.stem) for p in paths]
        if build.profile == "release":
            cargo_build(images)
        print(f"==> images of {build.version} ({build.revision[:12]}, "
              f"SOURCE_DATE_EPOCH={build.epoch}) into {out}", flush=True)
        for image in images:
            started = time.monotonic()
            image.work.mkdir()
            image.interpret()
            archive = image.write(out)
            print(f"{image.summary(archive)}  {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as error:
        print(f"build.py: {error}", file=sys.stderr)
        sys.exit(1)
