# Ambit's task runner. CI runs `make test`, exactly as the README says.
.PHONY: demo test setup check lint fmt deny crds cluster bench-controlplane images release

# Install what is missing, then run Ambit's demo: a local cluster with
# simulated devices, an agent per node and the controller, until Ctrl-C.
demo: setup
	cargo build --locked --workspace --bins
	./target/debug/ambit-demo

# Install what is missing, then run every check and test.
test: setup check
	cargo build --locked --workspace --bins
	cargo test --locked --workspace --all-targets

# Install what is missing (apt, pip, the control plane's Go builds).
setup:
	./scripts/setup.sh

# Fast checks: formatting, lints and the dependency policy (stale
# generated files fail a test).
check: fmt lint deny

fmt:
	cargo fmt --all -- --check

lint:
	cargo clippy --locked --workspace --all-targets -- -D warnings

# Licenses, bans and sources of every dependency (deny.toml; advisories
# need GitHub, which is not reachable here: docs/security.md).
CARGO_DENY_VERSION = 0.20.2
deny:
	"$$(./scripts/cargo-tool.sh cargo-deny $(CARGO_DENY_VERSION))" deny --locked check licenses bans sources

# Regenerate the CRD manifests from the Rust types (and the chart's copy).
crds:
	cargo run --quiet -p ambit-cli -- crds --out crds/manifests
	cp crds/manifests/*.yaml deploy/helm/ambit/crds/

# Container images (deploy/images/*.Containerfile) as OCI archives in
# $(IMAGES_OUT), built without a container engine, the same digests for the
# same commit (docs/images.md). Builds the release binaries first;
# PROFILE=debug packs the debug binaries already built, building nothing.
PROFILE ?= release
IMAGES_OUT ?= target/images
images:
	python3 deploy/images/build.py --profile $(PROFILE) --out $(IMAGES_OUT)

# What a user downloads, in $(RELEASE_OUT): the chart packaged, the images,
# an SBOM per image (CycloneDX), LICENSE, CHANGELOG.md and SHA256SUMS
# (docs/release.md). PROFILE=debug packs the debug binaries, as for images.
RELEASE_OUT ?= target/release-artifacts
release:
	./scripts/release.sh --profile $(PROFILE) --out "$(RELEASE_OUT)"

# Start the local control plane with 3 KWOK nodes and Ambit's CRDs, until Ctrl-C.
cluster: setup
	cargo run --quiet -p ambit-tests --bin ambit-controlplane -- --nodes 3

# How long the control plane takes to build and to start.
bench-controlplane:
	cargo run --release --quiet -p ambit-tests --bin controlplane-bench -- 5
