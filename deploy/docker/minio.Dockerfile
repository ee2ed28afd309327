# MinIO server, built from source: the community edition publishes source only, no images.
# The pin is MINIO_VERSION in tools/versions.env; keep the default below equal to it (a unit test
# checks). Building takes a few minutes the first time; later builds reuse the cached layer.
ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION}-alpine AS build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# A static binary, so the runtime image needs no libc of the builder's; GOTOOLCHAIN=local keeps
# the build on this image's Go instead of fetching the one go.mod names.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN=/out
RUN go install -trimpath "github.com/minio/minio@${MINIO_VERSION}"

FROM alpine:${ALPINE_VERSION}
# curl for the Compose healthcheck (/minio/health/live); ca-certificates for TLS peers.
RUN apk add --no-cache ca-certificates curl
COPY --from=build /out/minio /usr/bin/minio
EXPOSE 9000 9090
ENTRYPOINT ["/usr/bin/minio"]
CMD ["server", "--address", ":9000", "--console-address", ":9090", "/data"]
