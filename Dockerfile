# The hourglass server image. Build it from the repository root:
#   docker build -t hourglass:0.1.0 .
# See docs/deploy.md. Two stages:
#   build    Debian 12 with the toolchain, running the very scripts that the README and CI run
#            (tools/install_deps.sh, then tools/build.sh), without the tests.
#   runtime  debian:bookworm-slim with only the shared libraries the binary links (the packages
#            below are checked against `ldd` of the built binary by the CTest test
#            dockerfile_runtime_libraries), running as the numeric non-root user 65532.

FROM debian:bookworm AS build
WORKDIR /src
# The dependencies first, in their own layer: it is rebuilt only when these files change.
COPY tools/install_deps.sh tools/
COPY package.json package-lock.json ./
RUN bash tools/install_deps.sh
COPY . .
RUN HOURGLASS_SKIP_DEPS=1 HOURGLASS_BUILD_DIR=build-image \
      HOURGLASS_CMAKE_ARGS=-DHOURGLASS_BUILD_TESTS=OFF bash tools/build.sh \
    && strip --strip-debug -o /hourglass build-image/service/hourglass \
    && strip --strip-debug -o /hourglassctl build-image/tools/hourglassctl/hourglassctl

FROM debian:bookworm-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hourglass" \
      org.opencontainers.image.description="Delayed-task service: gRPC API, timing wheel, write-ahead log, Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
# Exactly the packages that hold the libraries `ldd hourglass` lists, runtime packages only,
# plus ca-certificates: push delivery to https:// and TLS gRPC endpoints verifies their
# certificates against the system CAs.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libbrotli1 \
      libc-ares2 \
      libc6 \
      libcivetweb1 \
      libcom-err2 \
      libcurl4 \
      libffi8 \
      libgcc-s1 \
      libgmp10 \
      libgnutls30 \
      libgrpc++1.51 \
      libgrpc29 \
      libgssapi-krb5-2 \
      libhogweed6 \
      libidn2-0 \
      libjemalloc2 \
      libk5crypto3 \
      libkeyutils1 \
      libkrb5-3 \
      libkrb5support0 \
      libldap-2.5-0 \
      libnettle8 \
      libnghttp2-14 \
      libp11-kit0 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libpsl5 \
      libre2-9 \
      librtmp1 \
      libsasl2-2 \
      libssh2-1 \
      libssl3 \
      libstdc++6 \
      libtasn1-6 \
      libunistring2 \
      libzstd1 \
      zlib1g \
    && rm -rf /var/lib/apt/lists/*
# A numeric user (and a passwd entry for tools that look the name up) owning the data directory.
RUN groupadd --gid 65532 hourglass \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/hourglass \
      --shell /usr/sbin/nologin hourglass \
    && mkdir -p /var/lib/hourglass \
    && chown 65532:65532 /var/lib/hourglass \
    && chmod 0750 /var/lib/hourglass
COPY --from=build /hourglass /usr/local/bin/hourglass
# The operators' client, for `kubectl exec ... hourglassctl list --state dead`.
COPY --from=build /hourglassctl /usr/local/bin/hourglassctl
USER 65532:65532
WORKDIR /var/lib/hourglass
# 7070: gRPC (hourglass.v1, grpc.health.v1, reflection). 9464: Prometheus /metrics.
EXPOSE 7070 9464
VOLUME ["/var/lib/hourglass"]
# More flags may follow as arguments (docker run IMAGE --log_level=debug; Kubernetes args).
ENTRYPOINT ["/usr/local/bin/hourglass", "--data_dir=/var/lib/hourglass"]
