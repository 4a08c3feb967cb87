# The companion as a container: `docker build -t ferry-companion .` from the repository's root.
# Point it at your store (FERRY_S3_ENDPOINT and friends) and give it auth or
# FERRY_ALLOW_ANONYMOUS=true: it listens on all interfaces here. The embedded store listens on
# the container's loopback, where browsers cannot reach it, so it is for trying the API only.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferry-companion

FROM debian:bookworm-slim
# ffmpeg makes video previews (FERRY_PREVIEWS=true); ca-certificates serve the AWS credential chain.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/ferry ferry
COPY --from=build /src/target/release/ferry-companion /usr/local/bin/ferry-companion
USER ferry
WORKDIR /var/lib/ferry
ENV FERRY_LISTEN=0.0.0.0:8080 \
    FERRY_DATA_DIR=/var/lib/ferry/data
EXPOSE 8080
ENTRYPOINT ["ferry-companion"]
