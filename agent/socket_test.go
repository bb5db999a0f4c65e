package agent

import "testing"

// TestSocketPathSameForEveryCommand: the daemon and every client command
// resolve the same socket from one configuration, with or without
// archive-async (pgBackRest resolves spool-path for archive-push only with
// it; the thin client must find the daemon anyway).
func TestSocketPathSameForEveryCommand(t *testing.T) {
	t.Parallel()
	for _, async := range []string{"", "archive-async=y\n"} {
		ini := "[global]\nrepo1-path=/repo\nspool-path=/custom/spool\n" + async + "[db]\npg1-path=/pgdata\n"
		want := "/custom/spool/pgsidecar-db.sock"
		for _, args := range [][]string{
			{"run"}, {"archive-push", "/pgdata/pg_wal/000000010000000000000001"},
			{"archive-get", "000000010000000000000001", "/pgdata/pg_wal/RECOVERYXLOG"},
			{"backup"}, {"info"},
		} {
			cfg := loadCfg(t, ini, append([]string{"--stanza=db"}, args...)...)
			got, err := SocketPath(cfg)
			if err != nil || got != want {
				t.Errorf("%q with %q: socket %q, %v; want %s", args[0], async, got, err, want)
			}
		}
	}
}
