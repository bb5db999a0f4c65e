# syntax=docker/dockerfile:1
# pgsidecar: one static binary in a minimal image that runs as a non-root
# user, as the backup sidecar container next to PostgreSQL.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/pgsidecar ./cmd/pgsidecar

FROM gcr.io/distroless/static-debian12:nonroot
# 26 is the postgres user and group of the Crunchy images that PGO runs, so the
# sidecar can read the data directory and pg_wal on the shared volume; other
# images set the pod's runAsUser to their postgres uid instead.
USER 26:26
COPY --from=build /out/pgsidecar /usr/local/bin/pgsidecar
ENTRYPOINT ["/usr/local/bin/pgsidecar"]
CMD ["run"]
