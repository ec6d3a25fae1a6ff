# Builds the idp binary with KurrentDB support and runs it unprivileged.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p api --features kurrentdb

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/idp --create-home idp
COPY --from=build /src/target/release/idp /usr/local/bin/idp
USER idp
ENV IDP_LISTEN=0.0.0.0:8080 IDP_DATA_DIR=/var/lib/idp
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://localhost:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/idp"]
CMD ["serve"]
