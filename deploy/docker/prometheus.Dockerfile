# Prometheus, built from its Go module (PROMETHEUS_VERSION in tools/versions.env: module v0.3y.z is
# release v3.y.z; the module carries no compiled web UI, the API works), or taken from
# deploy/docker/prebuilt/ when `robolake stack images` put the host's build there.
ARG BUILD_IMAGE=golang:1.26-alpine
ARG BASE_IMAGE=alpine:3.22

FROM ${BUILD_IMAGE} AS build
ARG PROMETHEUS_VERSION=v0.316.0
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN=/out
COPY deploy/docker/ca/ /usr/local/share/ca-certificates/
COPY deploy/docker/prebuilt/ /prebuilt/
RUN if [ -x /prebuilt/prometheus ]; then mkdir -p /out && cp /prebuilt/prometheus /out/prometheus; \
    else update-ca-certificates 2>/dev/null; go install -trimpath \
      -ldflags "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION}" \
      "github.com/prometheus/prometheus/cmd/prometheus@${PROMETHEUS_VERSION}"; fi

FROM ${BASE_IMAGE}
RUN if command -v useradd >/dev/null; then useradd --create-home prometheus; else adduser -D prometheus; fi \
    && mkdir -p /prometheus /etc/prometheus && chown prometheus /prometheus
COPY --from=build /out/prometheus /usr/bin/prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
