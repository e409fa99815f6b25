# dpf as a small container image for Cloud Run Jobs and Kubernetes CronJobs.
#   docker build -t dpf .
#   docker run --rm dpf run weather_data_product --replay     # the baked-in products, from their fixtures
#   docker run --rm -v "$PWD/products:/products:ro" dpf validate products/
# Products are baked in from products/ (mount a folder over /products to use others). The data dir of
# the local target is /tmp/dpf; the gcp target writes nothing locally.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY schemas schemas
COPY src src
COPY products products
COPY examples examples
RUN cargo build --release --locked && cp target/release/dpf /usr/local/bin/dpf

# glibc and libgcc only, no shell, no package manager; runs as the unprivileged user 65532 (numeric,
# so that Kubernetes can verify `runAsNonRoot`).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/dpf /usr/local/bin/dpf
COPY products /products
WORKDIR /
ENV DPF_DATA_DIR=/tmp/dpf
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dpf"]
CMD ["list"]
