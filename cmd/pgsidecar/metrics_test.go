package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunBadMetricsAddress checks that pgsidecar run with a metrics-address
// it cannot listen on exits with the option-invalid code and names the
// option, and that help run documents it.
func TestRunBadMetricsAddress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"conf.d", "spool", "repo", "pg/pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "pgbackrest.conf")
	ini := "[global]\nrepo1-path=" + filepath.Join(dir, "repo") + "\narchive-async=y\nspool-path=" + filepath.Join(dir, "spool") +
		"\nlog-level-console=error\n[db]\npg1-path=" + filepath.Join(dir, "pg") + "\n"
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, nil, "--stanza=db", "--config="+file, "--config-include-path="+filepath.Join(dir, "conf.d"),
		"--metrics-address=no-port", "run")
	if code != 32 || // option-invalid-value
		!strings.Contains(errOut, "option 'metrics-address' is 'no-port', not host:port") {
		t.Fatalf("exit %d, stderr %q; want 32 naming metrics-address", code, errOut)
	}
	code, out, _ := runCmd(t, nil, "help", "run")
	if code != 0 || !strings.Contains(out, "metrics-address") || !strings.Contains(out, "archive-get-queue-max") {
		t.Fatalf("help run: exit %d, %q", code, out)
	}
}
