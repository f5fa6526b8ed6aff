# syntax=docker/dockerfile:1
#
# Bifrost node image.
#
#   docker build -t bifrost:latest .
#   docker run --rm bifrost:latest keygen                      # a cluster key
#   docker run -p 8080:8080 -v bifrost-data:/var/lib/bifrost bifrost:latest
#
# Build stage: Swift 6.3 on Debian bookworm. The Swift standard library and Foundation are linked
# statically (--static-swift-stdlib), so the runtime stage is plain debian:bookworm-slim with only
# LMDB (liblmdb0, linked dynamically through pkg-config; lmdb-utils for mdb_copy backups), CA certificates (HTTPS to providers) and
# wget (for HEALTHCHECK).
#
# The node listens on 8080 (HTTP API) and 7946 (UDP gossip and TCP sync); its LMDB files live in
# /var/lib/bifrost, which must be a persistent volume. SIGTERM drains it: /health turns 503 at
# once, in-flight requests finish, it leaves the cluster and closes its log.
# Configuration: docs/CONFIGURATION.md; deployment: docs/OPERATIONS.md ("Deploy") and deploy/.

ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends liblmdb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# Dependencies first, so this layer is reused until the manifest or the pins change.
# Package.resolved is not committed (.gitignore); when the context has one, its pins are used.
COPY Package.* ./
RUN swift package resolve $([ -f Package.resolved ] && echo --force-resolved-versions)
# The manifest names every target, tests included, so all of their directories are needed.
COPY Sources ./Sources
COPY tools ./tools
COPY Tests ./Tests
RUN set -e; \
    for product in bifrost bifrost-dump bifrost-replay bifrost-config; do \
        swift build -c release --static-swift-stdlib --product "$product"; \
    done; \
    bin="$(swift build -c release --static-swift-stdlib --show-bin-path)"; \
    mkdir -p /staging; \
    for product in bifrost bifrost-dump bifrost-replay bifrost-config; do \
        cp "$bin/$product" /staging/; \
    done; \
    strip --strip-debug /staging/*

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends liblmdb0 lmdb-utils ca-certificates wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 bifrost \
    && useradd --system --uid 10001 --gid bifrost --home-dir /var/lib/bifrost --no-create-home \
        --shell /usr/sbin/nologin bifrost \
    && mkdir -p /var/lib/bifrost /etc/bifrost \
    && chown bifrost:bifrost /var/lib/bifrost
COPY --from=build /staging/ /usr/local/bin/
# Fails the image build if a shared library the binaries need is missing here.
RUN bifrost --help >/dev/null && bifrost-dump --help >/dev/null && bifrost-replay --help >/dev/null \
    && bifrost-config --help >/dev/null

# The data directory: LMDB's data.mdb and lock.mdb. Mount a persistent volume here (a named volume,
# a PersistentVolumeClaim); it belongs to one node id for its whole life.
ENV DATA_DIR=/var/lib/bifrost
VOLUME /var/lib/bifrost
WORKDIR /var/lib/bifrost
USER bifrost:bifrost

# 8080: HTTP API (BIND_ADDRESS). 7946: gossip (UDP) and event sync (TCP) (GOSSIP_PORT).
EXPOSE 8080/tcp 7946/tcp 7946/udp

# /health: 200 while serving, 503 while starting or draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD wget -q --tries=1 -T 2 -O /dev/null http://127.0.0.1:8080/health || exit 1

STOPSIGNAL SIGTERM
ENTRYPOINT ["bifrost"]
CMD ["serve"]
