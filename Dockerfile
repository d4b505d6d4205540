# pitrguard container image: a static binary on distroless, non-root.
# (No image is built in this repository's CI: the build machines have no container engine.)
#   docker build -t ghcr.io/pitrguard/pitrguard:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them. The workspace's
# member crates (the pure core) come with the manifests: cargo needs them to resolve.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/decision.rs \
    && echo 'fn main() {}' > benches/webhook_load.rs \
    && cargo build --release --locked --target x86_64-unknown-linux-musl || true
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/pitrguard /pitrguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /pitrguard /usr/local/bin/pitrguard
USER 65532:65532
EXPOSE 9443 9090
ENTRYPOINT ["/usr/local/bin/pitrguard"]
CMD ["serve"]
