// Package integration holds pgsidecar's end-to-end tests: real PostgreSQL 15
// clusters, real pgBackRest 2.45 and the pgsidecar binary, against posix
// repositories and the S3 test service (MinIO).
//
// The package has no library code; everything lives in _test.go files. The
// harness (cluster, pgbackrest and repository fixtures) needs root, because
// PostgreSQL and pgbackrest run as the unprivileged OS user pgsidecar that
// `bash scripts/services.sh postgres` creates. Without these prerequisites the
// tests skip, unless PGSIDECAR_TEST_REQUIRE lists "postgres", in which case
// they fail.
package integration
