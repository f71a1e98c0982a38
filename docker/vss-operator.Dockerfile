# syntax=docker/dockerfile:1
#
# vss-operator: reconciles VssClusters (HTTP /healthz, /readyz, /metrics on
# 8080). A static musl binary on distroless/static: no shell, no libc,
# uid 65532.
#
# Build from the repository root (BuildKit, the default since Docker 23):
#   docker build -f docker/vss-operator.Dockerfile -t vss-operator:dev .

ARG RUST_IMAGE=rust:1.95.0-slim
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-gcc: the TLS stack (ring) compiles C and assembly for the target.
# Unpinned on purpose: the Debian release comes with RUST_IMAGE, and the
# binary is static, so only the build stage sees these packages.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY rust-toolchain.toml ./
# wasm32-wasip2 is listed in rust-toolchain.toml; adding it here keeps
# rustup from fetching it in the middle of the build.
RUN rustup component add rustfmt clippy \
 && rustup target add wasm32-wasip2 "$(uname -m)-unknown-linux-musl"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=vss-operator-target \
    set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    export "CC_${target//-/_}=musl-gcc"; \
    cargo build --release --locked -p vss-operator --bin vss-operator --target "$target"; \
    install -D -m 0755 "target/$target/release/vss-operator" /out/vss-operator

FROM ${BASE_IMAGE}
COPY --from=build /out/vss-operator /vss-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vss-operator"]
CMD ["run"]
