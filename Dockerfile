# The raftplane image: one static binary (CGO_ENABLED=0) on busybox, run as
# an unprivileged user (uid 10001), its data in the /data volume.
#
#   docker build -t raftplane .
#   docker run -p 5000:5000 -v raftplane-data:/data raftplane      # a one-node cluster
#
# Ports: 5000 clients and the REST API (-http), 7000 Raft and the internal
# RPC (-raft), 7946 TCP and UDP gossip (-gossip). Health: GET /healthz (the
# process serves: the HEALTHCHECK below), GET /readyz (this node can commit:
# point a load balancer or a Kubernetes readiness probe at it).
# deploy/README.md covers a 3-node cluster (Compose, systemd, Kubernetes).
#
# Why busybox and not scratch: the HEALTHCHECK needs wget, and the Kubernetes
# StatefulSet in deploy/kubernetes needs a shell to decide which pod
# bootstraps the cluster. The binary itself needs nothing from the image but
# the CA roots (for -jwks-url), copied from the build stage.

ARG GO_VERSION=1.26
ARG BUSYBOX_VERSION=1.37.0-musl

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# The modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
# The context keeps .git (see .dockerignore), so the binary is stamped with
# its commit: `raftplane version` names it.
COPY . .
# build: the one command that makes the binary (deploy/packaging_test.go runs
# this line on the same context, with /out replaced by a temporary folder).
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/raftplane ./cmd/raftplane
RUN /out/raftplane version

FROM busybox:${BUSYBOX_VERSION}
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/raftplane /usr/local/bin/raftplane
# A fixed uid, so that volumes can be prepared from outside (chown 10001,
# or a Kubernetes fsGroup). /data belongs to it: Docker copies that owner
# into a new named volume mounted there.
RUN addgroup -S -g 10001 raftplane \
 && adduser -S -D -H -h /data -u 10001 -G raftplane -s /bin/sh raftplane \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0750 /data
USER 10001:10001
WORKDIR /data
ENV RAFTPLANE_DATA=/data
VOLUME ["/data"]
EXPOSE 5000/tcp 7000/tcp 7946/tcp 7946/udp
# SIGTERM is a graceful leave (hand over leadership, close clients with
# allowReconnect): give it more than -shutdown-timeout (15s) with
# `docker stop -t 30` or stop_grace_period.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:5000/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/raftplane"]
# A one-node cluster reachable on the published port 5000. Any arguments
# given to `docker run` replace these (see deploy/README.md for a cluster).
CMD ["-http", "0.0.0.0:5000", "-advertise", "127.0.0.1"]
