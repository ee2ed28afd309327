# MinIO server. The community edition publishes source only, no images: this builds it, or takes
# the binary robolake already built on the host (`robolake stack images` puts it in
# deploy/docker/prebuilt/ of the build context; then the build needs no Go and no registry).
# The pin is MINIO_VERSION in tools/versions.env; keep the default below equal to it (a unit test
# checks). Bases are build arguments: public images by default, robolake's local Debian base
# (`robolake stack images --base local`) where no registry answers.
ARG BUILD_IMAGE=golang:1.26-alpine
ARG BASE_IMAGE=alpine:3.22

FROM ${BUILD_IMAGE} AS build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# A static binary, so the runtime image needs no libc of the builder's; GOTOOLCHAIN=local keeps
# the build on this image's Go instead of fetching the one go.mod names.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN=/out
COPY deploy/docker/ca/ /usr/local/share/ca-certificates/
COPY deploy/docker/prebuilt/ /prebuilt/
RUN if [ -x /prebuilt/minio ]; then mkdir -p /out && cp /prebuilt/minio /out/minio; \
    else update-ca-certificates 2>/dev/null; go install -trimpath "github.com/minio/minio@${MINIO_VERSION}"; fi

FROM ${BASE_IMAGE}
# curl for the Compose healthcheck (/minio/health/live); ca-certificates for TLS peers. The local
# base has both already.
RUN if command -v apk >/dev/null; then apk add --no-cache ca-certificates curl; fi
COPY --from=build /out/minio /usr/bin/minio
EXPOSE 9000 9090
ENTRYPOINT ["/usr/bin/minio"]
CMD ["server", "--address", ":9000", "--console-address", ":9090", "/data"]
