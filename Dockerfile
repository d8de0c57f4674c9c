# syntax=docker/dockerfile:1
# jetstream-operator image: the chart's default image (ghcr.io/jetstream-operator/jetstream-operator).
#
#   docker build -t ghcr.io/jetstream-operator/jetstream-operator:0.1.0 .
#
# RUST_IMAGE and RUNTIME_IMAGE name the two base images; the defaults are the public ones.
# Where no registry is reachable, scripts/build-images builds equivalents with the same
# layout (a Debian bookworm rootfs with the Rust toolchain in /usr/local/cargo and
# /usr/local/rustup; glibc, libgcc, CA certificates and user 65532 without a shell) and
# passes them here, so that this file is what gets built.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
#
# Build stage: the release binary, from Cargo.lock exactly (--locked). The cache mounts keep
# the crates.io index, downloaded crates and compiled dependencies between builds (BuildKit).
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin jetstream-operator \
 && install -D -m 0755 target/release/jetstream-operator /out/jetstream-operator

# Runtime stage: glibc, libgcc and CA certificates (for NATS and API server TLS, read by
# rustls-native-certs from /etc/ssl/certs), no shell, no package manager, user 65532.
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="jetstream-operator" \
      org.opencontainers.image.description="Kubernetes operator for NATS JetStream (NACK-compatible jetstream.nats.io/v1beta2 API)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/jetstream-operator /usr/local/bin/jetstream-operator
# NACK's Deployments run /jetstream-controller with NACK's flags: the same binary, so a
# NACK install whose image is swapped for this one runs unchanged.
COPY --from=build /out/jetstream-operator /jetstream-controller
USER 65532:65532
# /livez, /readyz, /metrics (--admin-address)
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jetstream-operator"]
CMD ["run"]
