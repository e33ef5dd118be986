# syntax=docker/dockerfile:1.7
#
# The `olivine` binary in a small image:
#
#   docker build -t olivine .
#   docker run --rm -p 8080:8080 -v olivine-data:/data olivine            # embedded SQLite in /data
#   docker run --rm -e DATABASE_URL=postgres://... olivine migrate        # apply migrations, exit
#
# The build script (kernel/build.rs) builds the first-party plugins in plugins/ for
# wasm32-wasip2 with a nested `cargo build` and embeds them in the binary, so the builder
# needs the wasm target and the guest side of the tree (plugins/, sdk/, wit/). The kernel's
# dev-dependency on examples/sandbox-processor and runtime's on sdk/ must exist for cargo
# to load the workspace, even though a release build of the binary compiles neither.
# Deployment notes (Kubernetes, metrics, alerts): deploy/README.md.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY wit ./wit
COPY runtime ./runtime
COPY sdk ./sdk
COPY plugins ./plugins
COPY migrations ./migrations
COPY examples ./examples
COPY kernel ./kernel
# Cache mounts: the registry for both workspaces (the nested plugin build shares
# CARGO_HOME), the host target dir, and the plugins' own target dir (build.rs reads the
# .wasm files from plugins/target/wasm32-wasip2/release/). A cache mount is not part of the
# image, so the binary is copied out in the same step.
RUN --mount=type=cache,id=olivine-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=olivine-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=olivine-target,target=/src/target,sharing=locked \
    --mount=type=cache,id=olivine-plugins-target,target=/src/plugins/target,sharing=locked \
    cargo build --release --locked -p olivine-kernel --bin olivine \
 && install -D -m 0755 target/release/olivine /out/olivine

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001) so Kubernetes' runAsUser and fsGroup can name it.
RUN groupadd --gid 10001 olivine \
 && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin olivine \
 && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=builder /out/olivine /usr/local/bin/olivine
# /data holds the node's own state: the plugin compile cache, the search index and, in
# embedded mode (no DATABASE_URL), the SQLite database, admin token and master key.
ENV OLIVINE_ADDR=0.0.0.0:8080 \
    OLIVINE_DATA_DIR=/data
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: the slim image has no HTTP client; orchestrators probe /healthz and
# /readyz themselves (deploy/kubernetes/base/deployment.yaml).
ENTRYPOINT ["olivine"]
CMD ["serve"]
