# syntax=docker/dockerfile:1
# Jangar's image: `docker build -t jangar .` (BuildKit, for the cache mounts). See deploy/README.md.
#
# It listens on 0.0.0.0:3210, and `jangar serve` refuses a non-loopback listener without
# credentials: give it JANGAR_ADMIN_KEY (or another of the admin key variables), or keep admin key
# hashes (`jangar keys generate`) or an identity provider's auth.json in /data.

# The builder and the runtime share a Debian release, so the binary finds the glibc it was linked
# against. 1.91 is the workspace's rust-version.
FROM rust:1.91-bookworm AS build
WORKDIR /src
COPY . .
# target/ is a cache mount (gone after this step), so the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin jangar \
    && cp target/release/jangar /usr/local/bin/jangar

# Nothing to install: SQLite is compiled in, TLS for identity providers' keys (rustls) carries its
# own root certificates, and the PostgreSQL client speaks plain TCP.
FROM debian:bookworm-slim
# A fixed, numeric uid, so Kubernetes' runAsNonRoot can check it and volumes can be chowned to it.
RUN groupadd --gid 10001 jangar \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin jangar \
    && mkdir /data && chown 10001:10001 /data && chmod 0700 /data
COPY --from=build /usr/local/bin/jangar /usr/local/bin/jangar
USER 10001:10001
ENV JANGAR_DATA_DIR=/data \
    JANGAR_LISTEN=0.0.0.0:3210
# A named volume starts as a copy of this directory, owned by 10001; a bind mount must be chowned.
VOLUME /data
EXPOSE 3210
# Extra arguments go to `serve` (`docker run jangar --cors-origin https://app.example.com`); other
# commands need `--entrypoint jangar`. SIGTERM (Docker's default stop signal) stops it gracefully.
ENTRYPOINT ["/usr/local/bin/jangar", "serve"]
