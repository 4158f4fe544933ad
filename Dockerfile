# PlexSpaces node image: a multi-stage build, a small runtime image (distroless, non-root).
#
#   docker build -t plexspaces:dev .
#   docker run --rm -p 8094:8094 -e PLEXSPACES_HTTP_ADDR=0.0.0.0:8094 \
#       -e PLEXSPACES_GRPC_ADDR=0.0.0.0:8000 -e PLEXSPACES_JWT_SECRET=change-me plexspaces:dev
#
# See docs/deploy-kubernetes.md. The proto files are compiled with protox (pure Rust): no
# protoc is needed in the build stage.

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p plexspaces-cli --bin plexspaces \
 && strip target/release/plexspaces \
 && mkdir -p /out/data \
 && cp target/release/plexspaces /out/plexspaces

# glibc + libgcc + CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/plexspaces /usr/local/bin/plexspaces
COPY --from=build --chown=65532:65532 /out/data /var/lib/plexspaces
ENV PLEXSPACES_DATA_DIR=/var/lib/plexspaces
# HTTP API, gRPC API, cluster transport (TCP) and gossip (UDP).
EXPOSE 8094/tcp 8000/tcp 7000/tcp 7000/udp
USER 65532:65532
# SIGTERM starts the graceful drain: /ready answers 503, in-flight requests finish, virtual
# actors are deactivated with a final snapshot and their directory entries released.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/plexspaces"]
CMD ["start"]
