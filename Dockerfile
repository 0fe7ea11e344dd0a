# syntax=docker/dockerfile:1
# One of klambda's binaries in a minimal, static, non-root image:
#   docker build --build-arg BINARY=manager      -t ghcr.io/klambda/manager .
#   docker build --build-arg BINARY=activator    -t ghcr.io/klambda/activator .
#   docker build --build-arg BINARY=runtime-shim -t ghcr.io/klambda/runtime-shim .
#   docker build --build-arg BINARY=eventsources -t ghcr.io/klambda/eventsources .
#   docker build --build-arg BINARY=code-store   -t ghcr.io/klambda/code-store .
# The binary is /<BINARY> and is the entrypoint. (Without Docker, hack/imagebuild builds
# the same layout; see hack/cluster/images.sh.)
ARG BINARY=manager
ARG GO_VERSION=1.26
# A Lambda base image with the runtime-shim added, for the manager's embeddedShim (one
# container per environment):
#   docker build --target runtime-image --build-arg BINARY=runtime-shim \
#     --build-arg RUNTIME_BASE=public.ecr.aws/lambda/nodejs:22 -t registry.example/klambda/nodejs:22 .
ARG RUNTIME_BASE=public.ecr.aws/lambda/provided:al2023

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG BINARY
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# What --version and klambda_build_info report: docker build --build-arg VERSION=$(git
# describe --tags) --build-arg COMMIT=$(git rev-parse HEAD) ... Empty: "dev", and the
# commit Go stamps from .git when the build context has it (else "unknown").
ARG VERSION=
ARG COMMIT=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X github.com/klambda/klambda/internal/buildinfo.version=${VERSION} -X github.com/klambda/klambda/internal/buildinfo.commit=${COMMIT}" \
      -o /out/${BINARY} ./cmd/${BINARY}

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot AS base
USER 65532:65532

# ENTRYPOINT does not expand build arguments, so each binary has its stage; the last
# stage picks one by BINARY (BuildKit builds only that one).
FROM base AS manager
COPY --from=build /out/manager /manager
ENTRYPOINT ["/manager"]

FROM base AS activator
COPY --from=build /out/activator /activator
ENTRYPOINT ["/activator"]

FROM base AS runtime-shim
COPY --from=build /out/runtime-shim /runtime-shim
ENTRYPOINT ["/runtime-shim"]

FROM base AS eventsources
COPY --from=build /out/eventsources /eventsources
ENTRYPOINT ["/eventsources"]

FROM base AS code-store
COPY --from=build /out/code-store /code-store
ENTRYPOINT ["/code-store"]

# Not a default target: build it with --target runtime-image (and BINARY=runtime-shim).
FROM ${RUNTIME_BASE} AS runtime-image
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM ${BINARY}
