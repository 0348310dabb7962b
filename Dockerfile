# journeybee-gateway container image.
#
#   docker build -t journeybee-gateway .
#   docker run -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/deploy:/etc/journeybee-gateway:ro" journeybee-gateway
#
# IMPORTANT: in a container the config's listeners must bind all interfaces, or the published
# ports (and Prometheus) reach nothing (127.0.0.1 is the container's own loopback):
#
#   [server]
#   listen = "0.0.0.0:8080"
#   admin_listen = "0.0.0.0:9090"     # keep 9090 unpublished or on a private network
#
# The config and every file it names (secrets, PEM keys) live in the /etc/journeybee-gateway
# volume and must be readable by uid 10001. Secrets may also come from `*_env` variables
# (`docker run -e JOURNEYBEE_WRITE_KEY=...`).

# ------------------------------------------------------------------ build
FROM rust:1-slim-bookworm AS builder
# aws-lc-sys (rustls and jsonwebtoken crypto), ring and libmimalloc-sys compile their C code
# with the `cc` crate on x86_64/aarch64 linux-gnu: only gcc and libc6-dev are needed, and rust:*-slim ships
# both. No cmake, perl, go, nasm, pkg-config or OpenSSL headers (no OpenSSL is linked).
WORKDIR /src

# Dependencies first, against stub sources: this layer is reused as long as the manifests and
# Cargo.lock do not change. Every target the workspace declares needs a stub, or cargo refuses
# to parse it: the `[[bench]]`es (hot_path, allocations, tls_handshake) and the simulator member `sim/` (library and binary)
# too (a new [[bin]]/[[bench]]/[[test]], workspace member or build script needs one here as
# well; `tests/dockerfile.rs` catches a missing one).
#
# The image is built with `--no-default-features`: without the `demo` feature the gateway does
# not depend on the simulator (`journeybee-sim`), so neither it nor `journeybee-gateway demo`
# is in the binary. The simulator's manifest is only there for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY sim/Cargo.toml sim/
RUN mkdir src benches sim/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && echo 'fn main() {}' > benches/hot_path.rs \
 && echo 'fn main() {}' > benches/allocations.rs \
 && echo 'fn main() {}' > benches/tls_handshake.rs \
 && echo '' > sim/src/lib.rs \
 && echo 'fn main() {}' > sim/src/main.rs \
 && cargo build --release --locked --no-default-features \
 && rm -rf src benches sim/src

# The real sources. `touch` makes sure cargo rebuilds the crate over the stub's artifacts even
# when the copied files carry older modification times.
COPY . .
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --no-default-features \
 && ./target/release/journeybee-gateway --version \
 && ! ./target/release/journeybee-gateway demo --help >/dev/null 2>&1

# ------------------------------------------------------------------ runtime
FROM debian:bookworm-slim
# ca-certificates: the system roots used to verify JourneyBee's TLS certificate.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 journeybee \
 && useradd --system --no-log-init --uid 10001 --gid 10001 \
      --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin journeybee

COPY --from=builder /src/target/release/journeybee-gateway /usr/local/bin/journeybee-gateway

VOLUME /etc/journeybee-gateway
ENV JBGW_CONFIG=/etc/journeybee-gateway/gateway.toml
USER 10001:10001
# 8080: the proxied API. 9090: admin (/healthz, /readyz, /metrics, cache purge); keep private.
EXPOSE 8080 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/journeybee-gateway","healthcheck","--url","http://127.0.0.1:9090/healthz"]
# The binary handles SIGTERM itself (stop accepting, drain for shutdown_grace, exit 0).
ENTRYPOINT ["/usr/local/bin/journeybee-gateway"]
CMD ["serve"]
