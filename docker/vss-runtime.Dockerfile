# syntax=docker/dockerfile:1
#
# vss-runtime: one VSS instance (gRPC for clients 7700, for peers and the
# operator 7702, HTTP probes/metrics 7701).
# A static musl binary on distroless/static: no shell, no libc, uid 65532.
#
# Build from the repository root (BuildKit, the default since Docker 23):
#   docker build -f docker/vss-runtime.Dockerfile -t vss-runtime:dev .

# The toolchain version matches rust-toolchain.toml; the Debian release
# underneath does not matter because the binary is static.
ARG RUST_IMAGE=rust:1.95.0-slim
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-gcc: wasmtime compiles a small C helper for the target.
# Unpinned on purpose: the Debian release comes with RUST_IMAGE, and the
# binary is static, so only the build stage sees these packages.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain file alone first, so the toolchain layer survives source edits.
COPY rust-toolchain.toml ./
# wasm32-wasip2: the build compiles the built-in slot types to Wasm and
# embeds them. The musl target is the one of the machine building (x86_64
# or aarch64), so the image is native to it.
RUN rustup component add rustfmt clippy \
 && rustup target add wasm32-wasip2 "$(uname -m)-unknown-linux-musl"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=vss-runtime-target \
    set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    export "CC_${target//-/_}=musl-gcc"; \
    cargo build --release --locked -p vss-runtime --bin vss-runtime --target "$target"; \
    install -D -m 0755 "target/$target/release/vss-runtime" /out/vss-runtime

FROM ${BASE_IMAGE}
# At /vss-runtime: the operator starts the container with that command.
COPY --from=build /out/vss-runtime /vss-runtime
# Numeric, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 65532:65532
EXPOSE 7700 7701 7702
ENTRYPOINT ["/vss-runtime"]
