# zaqar-server in a container: a build stage with the Rust toolchain, a
# small runtime stage with the two binaries only, run as a non-root user.
#
#   docker build -t zaqar-rs .
#   docker run -p 8888:8888 -p 9000:9000 -v /srv/zaqar/etc:/etc/zaqar:ro \
#       -v zaqar-data:/var/lib/zaqar zaqar-rs
#
# The configuration is mounted at /etc/zaqar: zaqar.conf there (and
# zaqar.conf.d/*.conf) is found without flags, as oslo.config finds it. In a
# container the listeners must bind 0.0.0.0 ([drivers:transport:wsgi] bind,
# [drivers:transport:websocket] bind); the default is 127.0.0.1. The SQLite
# store (the default) lives in the /var/lib/zaqar volume.

# The rust-version of Cargo.toml (the oldest toolchain the lock file builds with).
ARG RUST_VERSION=1.89
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --release --bin zaqar-server --bin zaqar-status \
 && strip target/release/zaqar-server target/release/zaqar-status

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/zaqar \
        --create-home --shell /usr/sbin/nologin zaqar \
 && install -d -m 0755 /etc/zaqar
COPY --from=build /src/target/release/zaqar-server /src/target/release/zaqar-status /usr/local/bin/
ENV ZAQAR_DATA_DIR=/var/lib/zaqar
VOLUME ["/var/lib/zaqar"]
EXPOSE 8888 9000
USER zaqar:zaqar
# SIGTERM drains in-flight requests; SIGHUP reloads the policy and log levels.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/zaqar-server"]
