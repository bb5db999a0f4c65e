package config_test

import (
	"strings"
	"testing"
)

// TestMetricsAddress checks pgsidecar's metrics-address option: valid for
// run and config from every source, empty by default, refused for a
// pgBackRest command on the command line and ignored there in a file.
func TestMetricsAddress(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"pgbackrest.conf": "[global]\nmetrics-address=127.0.0.1:9187\n[db]\npg1-path=/pgdata\n"})
	for _, cmd := range []string{"run", "config"} {
		cfg := mustLoad(t, dir, []string{"--stanza=db", cmd})
		if cfg.MetricsAddress != "127.0.0.1:9187" {
			t.Errorf("%s: MetricsAddress = %q", cmd, cfg.MetricsAddress)
		}
		wantSource(t, cfg, "metrics-address", "127.0.0.1:9187", "pgbackrest.conf")
	}
	cfg := mustLoad(t, dir, []string{"--stanza=db", "run"}, "PGBACKREST_METRICS_ADDRESS=[::1]:9999")
	if cfg.MetricsAddress != "[::1]:9999" {
		t.Errorf("from the environment: MetricsAddress = %q", cfg.MetricsAddress)
	}
	cfg = mustLoad(t, dir, []string{"--stanza=db", "--metrics-address=:9300", "run"})
	if cfg.MetricsAddress != ":9300" {
		t.Errorf("from a flag: MetricsAddress = %q", cfg.MetricsAddress)
	}
	// The run section, which stock pgbackrest skips without a warning.
	section := writeTree(t, map[string]string{"pgbackrest.conf": "[global:run]\nmetrics-address=0.0.0.0:9187\n[db]\npg1-path=/pgdata\n"})
	if cfg := mustLoad(t, section, []string{"--stanza=db", "run"}); cfg.MetricsAddress != "0.0.0.0:9187" {
		t.Errorf("from [global:run]: MetricsAddress = %q", cfg.MetricsAddress)
	}
	empty := writeTree(t, map[string]string{"pgbackrest.conf": "[db]\npg1-path=/pgdata\n"})
	if cfg := mustLoad(t, empty, []string{"--stanza=db", "run"}); cfg.MetricsAddress != "" {
		t.Errorf("default MetricsAddress = %q, want empty", cfg.MetricsAddress)
	}
	// archive-push shares the file: the option is not its own and is left out.
	push := mustLoad(t, dir, []string{"--stanza=db", "archive-push", "/pgdata/pg_wal/000000010000000000000001"})
	if push.MetricsAddress != "" {
		t.Errorf("archive-push: MetricsAddress = %q", push.MetricsAddress)
	}
	_, err := load(t, empty, []string{"--stanza=db", "--metrics-address=:9300", "archive-push", "/wal"})
	wantErrors(t, err, "metrics-address: option not valid for command 'archive-push'")
	if err != nil && strings.Contains(err.Error(), "unknown option") {
		t.Errorf("metrics-address unknown: %v", err)
	}
}
