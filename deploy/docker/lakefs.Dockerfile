# lakeFS, built from robolake's wrapper module tools/lakefs-build (LAKEFS_VERSION in
# tools/versions.env), or taken from deploy/docker/prebuilt/ when `robolake stack images` put the
# host's build there. No registry image is needed. Bases are build arguments, as in minio.Dockerfile.
ARG BUILD_IMAGE=golang:1.26-alpine
ARG BASE_IMAGE=alpine:3.22

FROM ${BUILD_IMAGE} AS build
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
COPY deploy/docker/ca/ /usr/local/share/ca-certificates/
COPY deploy/docker/prebuilt/ /prebuilt/
COPY tools/lakefs-build/ /src/
RUN if [ -x /prebuilt/lakefs ]; then mkdir -p /out && cp /prebuilt/lakefs /out/lakefs; \
    else update-ca-certificates 2>/dev/null; cd /src && go build -trimpath -o /out/lakefs github.com/treeverse/lakefs/cmd/lakefs; fi

FROM ${BASE_IMAGE}
# wget for the Compose healthcheck (busybox has it on Alpine; the local base has it).
RUN if command -v apk >/dev/null; then apk add --no-cache ca-certificates; fi \
    && if command -v useradd >/dev/null; then useradd --create-home lakefs; else adduser -D lakefs; fi
COPY --from=build /out/lakefs /usr/bin/lakefs
USER lakefs
WORKDIR /home/lakefs
EXPOSE 8000
ENTRYPOINT ["/usr/bin/lakefs"]
CMD ["run"]
