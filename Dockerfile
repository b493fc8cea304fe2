# syntax=docker/dockerfile:1
# The bellows operator image: `docker build -t bellows .` (BuildKit, the
# default builder since Docker 23, is needed for the cache mounts).
#
# No Docker engine runs in this project's CI, so scripts/build-release.sh
# keeps this file honest: it copies exactly the files the COPY lines below
# name into a scratch directory, runs the same `cargo build` command there
# (it fails if the two commands differ), and smoke-tests the binary,
# including that it links nothing the runtime image below lacks.

# Builder: the toolchain of Cargo.toml's rust-version (1.94, edition 2024),
# on Debian 12 (bookworm), the release the runtime image is built from, so
# the binary needs no newer glibc than the runtime has (2.36).
FROM rust:1.94-bookworm AS builder
WORKDIR /src

# The manifest and lockfile alone first: this layer, and the download, are
# redone only when the dependencies change, not on every source edit. The
# registry is a cache mount, so crates are kept across builds but never land
# in an image layer.
COPY Cargo.toml Cargo.lock ./
# testkit/ is a path dev-dependency (test support): cargo reads it to
# resolve the lockfile, though nothing of it is built into the binary.
COPY testkit ./testkit
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo fetch --locked

# The sources: src/ is all `cargo build --bin bellows` reads (no build.rs,
# no include_str!; the [[test]] target e2e/main.rs is not needed to build
# the binary). --locked: exactly the versions in Cargo.lock, or fail.
# target/ is a cache mount too, so an edit rebuilds only the bellows crate;
# the binary is copied out of the mount, which is gone after this step.
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin bellows \
    && cp target/release/bellows /bellows

# Runtime: distroless "cc" = glibc, libgcc_s and CA certificates, no shell
# and no package manager. Not "static": the binary is linked dynamically
# against glibc (sqlx and kube use rustls, so no OpenSSL is needed); not
# scratch: it would need glibc and the CA bundle (kube's rustls reads the
# system roots) copied in by hand. The :nonroot variant's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="bellows" \
      org.opencontainers.image.description="Kubernetes operator for phased (expand/contract) database schema rollouts" \
      org.opencontainers.image.source="https://github.com/bellows-dev/bellows" \
      org.opencontainers.image.licenses="Apache-2.0"

# Owned by root and not writable by the user that runs it.
COPY --from=builder /bellows /bellows

# Numeric, so the kubelet can check runAsNonRoot without reading
# /etc/passwd; the same user and group as the Helm chart's securityContext.
USER 65532:65532

# glibc's malloc keeps one arena instead of one per thread (the runtime's
# two workers share it; the operator waits on the API server, not on
# malloc). At 500 rollouts rolled at once: 68.7 MiB peak RSS with 2 arenas
# against 77.0 with the default, and later 47.5 with 1 against 48.4 with 2
# (docs/operations.md, Scale).
ENV MALLOC_ARENA_MAX=1

# /metrics, /healthz and /readyz (`bellows run --metrics-addr`).
EXPOSE 8080

# The binary is the entrypoint and `run` only the default argument: the Helm
# chart sets `args: [run, ...]` and no `command`, and Kubernetes' args
# replace CMD but keep ENTRYPOINT. `docker run IMAGE crd` prints the CRD.
ENTRYPOINT ["/bellows"]
CMD ["run"]
