package storagetest

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// RequireEnv names the variable that lists the backends whose suites must
// run: "s3,gcs,azure" makes an unreachable service a failure, not a skip.
const RequireEnv = "PGSIDECAR_TEST_REQUIRE"

// Required reports whether the backend's suite is listed in RequireEnv.
func Required(backend string) bool {
	return slices.Contains(strings.Split(os.Getenv(RequireEnv), ","), backend)
}

// Unavailable ends the test when a backend's service (or PostgreSQL,
// backend "postgres") cannot be reached: it
// fails when the backend is required and skips otherwise, naming the
// service and why.
func Unavailable(t testing.TB, backend string, why error) {
	t.Helper()
	if Required(backend) {
		t.Fatalf("%s suite is required (%s=%s) but its service is unreachable: %v", backend, RequireEnv, os.Getenv(RequireEnv), why)
	}
	t.Skipf("%s service unreachable (set %s=%s to make this a failure): %v", backend, RequireEnv, backend, why)
}

// Env returns the value of the environment variable name, or def when it
// is unset or empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
