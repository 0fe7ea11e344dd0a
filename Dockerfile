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
# Any other Lambda base image with the runtime-shim added, for the manager's embeddedShim
# (one container per environment; klambda's own runtime images are the runtime-* targets):
#   docker build --target runtime-image \
#     --build-arg RUNTIME_BASE=public.ecr.aws/lambda/java:21 -t registry.example/klambda/runtime-java:21 .
ARG RUNTIME_BASE=public.ecr.aws/lambda/provided:al2023

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS src
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .

# One go build for every target: the binary BINARY names and the runtime-shim, which the
# runtime images add to Lambda's base images (go builds a package named twice once), so
# that every image's binaries are built the same way.
FROM src AS build
ARG BINARY
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# What --version and klambda_build_info report: docker build --build-arg VERSION=$(git
# describe --tags) --build-arg COMMIT=$(git rev-parse HEAD) ... Empty: "dev", and the
# commit Go stamps from .git when the build context has it (else "unknown").
ARG VERSION=
ARG COMMIT=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X github.com/klambda/klambda/internal/buildinfo.version=${VERSION} -X github.com/klambda/klambda/internal/buildinfo.commit=${COMMIT}" \
      -o /out/ ./cmd/${BINARY} ./cmd/runtime-shim

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot AS base
USER 65532:65532

# ENTRYPOINT does not expand build arguments, so each binary has its stage; the last
# stage picks one by BINARY (BuildKit builds only that one).
# The runtime-shim of both architectures, for the manager's imageFunctions.shims: it adds
# the shim to Image functions' images (one container per environment).
FROM src AS shims
ARG VERSION=
ARG COMMIT=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    for a in amd64:x86_64 arm64:arm64; do \
      CGO_ENABLED=0 GOOS=linux GOARCH=${a%%:*} go build -trimpath \
        -ldflags="-s -w -X github.com/klambda/klambda/internal/buildinfo.version=${VERSION} -X github.com/klambda/klambda/internal/buildinfo.commit=${COMMIT}" \
        -o /out/shims/${a#*:}/runtime-shim ./cmd/runtime-shim || exit 1; \
    done

FROM base AS manager
COPY --from=build /out/manager /manager
COPY --from=shims /out/shims /klambda/shims
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

# klambda's runtime images, the ones the chart's config.runtimeImages name (with
# embeddedShim path /klambda/runtime-shim): Lambda's public base image of each runtime, for
# both platforms, with the runtime-shim added. Not default targets; for release x.y.z:
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=x.y.z \
#     --target runtime-nodejs-22 -t ghcr.io/klambda/runtime-nodejs:22-x.y.z --push .
# Target runtime-<name>-<tag without dots> is image runtime-<name>:<tag>-x.y.z;
# charts/klambda's TestDockerfileBuildsTheChartsRuntimeImages keeps the two lists the same.
# (`make release` builds only a stand-in of provided:al2023 without Docker: this machine
# cannot pull Lambda's base images.)
FROM public.ecr.aws/lambda/provided:al2023 AS runtime-provided-al2023
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM public.ecr.aws/lambda/provided:al2 AS runtime-provided-al2
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM public.ecr.aws/lambda/nodejs:20 AS runtime-nodejs-20
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM public.ecr.aws/lambda/nodejs:22 AS runtime-nodejs-22
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM public.ecr.aws/lambda/python:3.12 AS runtime-python-312
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM public.ecr.aws/lambda/python:3.13 AS runtime-python-313
COPY --from=build /out/runtime-shim /klambda/runtime-shim

# Not a default target: build it with --target runtime-image and RUNTIME_BASE.
FROM ${RUNTIME_BASE} AS runtime-image
COPY --from=build /out/runtime-shim /klambda/runtime-shim

FROM ${BINARY}
