# apex-ingest for a registry that can pull base images (scripts/image builds the
# same thing FROM scratch where it cannot). Multi-stage; the runtime runs as a
# non-root user and needs only a read-only root file system plus /data.
#   docker build -t registry.example.com/fleet/apex-ingest:0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
# protoc for the Temporal SDK's protobufs; cmake and zlib for librdkafka's bundled build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler cmake zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin apex-ingest \
 && strip target/release/apex-ingest

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /data --create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /src/target/release/apex-ingest /usr/local/bin/apex-ingest
USER 65532:65532
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/apex-ingest"]
CMD ["--help"]
