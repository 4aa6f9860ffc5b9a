# syntax=docker/dockerfile:1
#
# weft container image: a static-ish Rust binary on distroless.
#
#   docker build -t weft:0.1.0 .
#   docker run --rm -p 8080:8080 weft:0.1.0            # SQLite + sandbox, for a first look
#   docker run --rm weft:0.1.0 --version
#
# The Helm chart (helm/weft) runs this image as `weft serve` (and `weft migrate` in its
# hook Job) with WEFT_DATABASE_URL pointing at PostgreSQL.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------- build
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# The whole workspace: cargo needs every member's manifest to resolve it (.dockerignore
# keeps target/, .git/ and the chart out of the context).
COPY . .
# Cache mounts keep the crates.io index, downloaded crates and build artefacts between
# builds; the binary is copied out of the cached target dir before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weft \
 && install -D -m 0755 target/release/weft /out/usr/local/bin/weft

# ---------------------------------------------------------------------------- runtime
# distroless/cc: glibc, libgcc and CA certificates, no shell, no package manager. The
# :nonroot tag runs as uid/gid 65532, which is what the chart's securityContext expects.
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="weft" \
      org.opencontainers.image.description="CPaaS messaging gateway: one API for SMS, voice, WhatsApp, Telegram and email" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/usr/local/bin/weft /usr/local/bin/weft
# The default SQLite file (no database configured) goes in the working directory: the
# nonroot user's home is writable. The chart uses PostgreSQL and a read-only root
# filesystem instead.
WORKDIR /home/nonroot
USER 65532:65532
# Inside a container the default 127.0.0.1:8080 would be unreachable.
ENV WEFT_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["weft"]
CMD ["serve"]
