# dpf as a small container image for Cloud Run Jobs and Kubernetes CronJobs.
#   docker build -t dpf .
#   docker run --rm dpf run weather_data_product --replay     # the baked-in products, from their fixtures
#   docker run --rm -v "$PWD/products:/products:ro" dpf validate products/
# Products are baked in from products/ (mount a folder over /products to use others). The data dir of
# the local target is /tmp/dpf; the gcp target writes nothing locally.
#
# The base images are build arguments, e.g. for a registry that mirrors them:
#   docker build --build-arg BUILD_IMAGE=mirror/rust:1.95-bookworm --build-arg RUNTIME_IMAGE=… -t dpf .
# The `prebuilt` target takes a dpf built outside instead of compiling it (CI has just built and
# tested one): target/release/dpf of the build context (.dockerignore lets that one file through), or
# --build-arg DPF_BINARY=PATH for another file of the context.
#   cargo build --release --locked && docker build --target prebuilt -t dpf .
# BuildKit (Docker's builder) and buildah build only the stages the target needs. scripts/image builds
# that target on a local Debian base, and runs it.

ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY schemas schemas
COPY src src
COPY products products
COPY examples examples
RUN cargo build --release --locked && cp target/release/dpf /usr/local/bin/dpf

# glibc and libgcc only, no shell, no package manager; runs as the unprivileged user 65532 (numeric,
# so that Kubernetes can verify `runAsNonRoot`).
FROM ${RUNTIME_IMAGE} AS runtime
COPY products /products
WORKDIR /
ENV DPF_DATA_DIR=/tmp/dpf
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dpf"]
CMD ["list"]

FROM runtime AS prebuilt
ARG DPF_BINARY=target/release/dpf
COPY ${DPF_BINARY} /usr/local/bin/dpf

# The default target, last: the binary from the build stage.
FROM runtime
COPY --from=build /usr/local/bin/dpf /usr/local/bin/dpf
