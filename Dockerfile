# Multi-stage build: compile with the Rust toolchain, ship a slim Debian image.
# SQLite is bundled into the binary and TLS is rustls, so the runtime needs no OpenSSL.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Build flags of the bundled SQLite (the session extension, for sync).
COPY .cargo ./.cargo
COPY src ./src
COPY migrations ./migrations
COPY prompts ./prompts
COPY benches ./benches
RUN cargo build --release --locked --bin tarn

# Litestream, which tarn runs for continuous replication when TARN_REPLICA_URL is set.
FROM litestream/litestream:0.5.17 AS litestream

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tarn /usr/local/bin/tarn
COPY --from=litestream /usr/local/bin/litestream /usr/local/bin/litestream
COPY prompts /app/prompts
# Runs as root: a Fly volume is mounted root-owned at /data, and the Fly VM is the boundary.
ENV TARN_LISTEN=0.0.0.0:8080 \
    TARN_PROMPTS_DIR=/app/prompts \
    TARN_DATA_DIR=/data/tenants \
    TARN_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/tini", "--", "tarn"]
CMD ["serve"]
