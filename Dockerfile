# Build stage: compile a release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin berth

# Runtime stage: a small Debian image with only the binary, running as non-root.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin berth \
    && mkdir -p /data && chown berth /data
COPY --from=build /src/target/release/berth /usr/local/bin/berth
USER berth
VOLUME ["/data"]
EXPOSE 5000
# Reachable from the network, so only with TLS and authentication (berth refuses
# to start without them): mount the auth file and the certificate.
ENV BERTH_ADDR=0.0.0.0:5000 BERTH_DATA_DIR=/data BERTH_LOG_FORMAT=json \
    BERTH_AUTH=/etc/berth/auth.toml \
    BERTH_TLS_CERT=/etc/berth/tls/tls.crt BERTH_TLS_KEY=/etc/berth/tls/tls.key
HEALTHCHECK --interval=30s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5000"]
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve"]
