package config_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestPrecedence sets process-max in every place pgBackRest reads it and removes them from the top down:
// flag > env > [stanza:command] > [stanza] > [global:command] > [global] > default.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	sections := map[string]string{
		"global":        "[global]\nprocess-max=2\n",
		"global:backup": "[global:backup]\nprocess-max=3\n",
		"db":            "[db]\nprocess-max=4\n",
		"db:backup":     "[db:backup]\nprocess-max=5\n",
		// Sections that must never apply to "backup --stanza=db".
		"other": "[other]\nprocess-max=90\n[other:backup]\nprocess-max=91\n[global:archive-push]\nprocess-max=92\n[db:restore]\nprocess-max=93\n",
	}
	layers := []string{"global", "global:backup", "db", "db:backup"}
	tests := []struct {
		name     string
		sections []string
		env      bool
		flag     bool
		want     string
		source   string
	}{
		{"flag wins", layers, true, true, "7", "flag --process-max"},
		{"env over files", layers, true, false, "6", "env PGBACKREST_PROCESS_MAX"},
		{"stanza:command over stanza", layers, false, false, "5", "[db:backup]"},
		{"stanza over global:command", layers[:3], false, false, "4", "[db]"},
		{"global:command over global", layers[:2], false, false, "3", "[global:backup]"},
		{"global", layers[:1], false, false, "2", "[global]"},
		{"default", nil, false, false, "1", "default"},
		{"flag over default", nil, false, true, "7", "flag --process-max"},
		{"env over global only", layers[:1], true, false, "6", "env PGBACKREST_PROCESS_MAX"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conf strings.Builder
			conf.WriteString(sections["other"])
			for _, s := range tc.sections {
				conf.WriteString(sections[s])
			}
			// The sections are spread over the main file and conf.d to show that their order in files does not matter.
			dir := writeTree(t, map[string]string{
				"conf.d/a.conf":   conf.String(),
				"pgbackrest.conf": "[db]\npg1-path=/pgdata\n",
			})
			args := []string{"--stanza=db", "backup"}
			if tc.flag {
				args = append(args, "--process-max=7")
			}
			var env []string
			if tc.env {
				env = []string{"PGBACKREST_PROCESS_MAX=6"}
			}
			cfg := mustLoad(t, dir, args, env...)
			wantSource(t, cfg, "process-max", tc.want, tc.source)
		})
	}
}

// TestReset checks that --reset-<option> returns an option to its default whatever the files and environment say.
func TestReset(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"pgbackrest.conf": "[global]\ncompress-type=lz4\nstart-fast=y\n"})
	cfg := mustLoad(t, dir, []string{"--reset-compress-type", "--reset-start-fast", "--stanza=db", "--pg1-path=/p", "backup"},
		"PGBACKREST_COMPRESS_TYPE=zst")
	wantSource(t, cfg, "compress-type", "gz", "default")
	if cfg.StartFast || cfg.CompressLevel != 6 {
		t.Errorf("start-fast %v compress-level %d", cfg.StartFast, cfg.CompressLevel)
	}
}

// TestSectionRules covers the options pgBackRest skips: a stanza option in a global section, an option that the
// command does not take, a command-line-only option in a file and an option whose dependency is not met.
func TestSectionRules(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"pgbackrest.conf": "[global]\npg1-path=/wrong\nrepo1-retention-full=2\nstanza=x\n" +
		"spool-path=/spool\nrepo1-cipher-pass=unused-pass\nlock-path=/locks\n[global:archive-push]\nrepo1-retention-diff=3\n[db]\npg1-path=/right\n"})
	cfg := mustLoad(t, dir, []string{"--stanza=db", "archive-push", "/wal"})
	if cfg.Pgs[0].Path != "/right" {
		t.Errorf("pg1-path = %q", cfg.Pgs[0].Path)
	}
	if cfg.Repos[0].Retention.Full != 0 || cfg.Repos[0].Cipher.Pass.IsSet() {
		t.Errorf("archive-push must not load retention or an unused cipher pass: %+v", cfg.Repos[0].Retention)
	}
	// Unlike pgBackRest, spool-path counts without archive-async: the daemon's
	// socket is there.
	if o, ok := cfg.Option("spool-path"); !ok || o.Value != "/spool" {
		t.Errorf("spool-path = %+v, %v; want /spool", o, ok)
	}
	got := map[string]string{}
	for _, i := range cfg.Ignored() {
		got[i.Name] = i.Reason + " @ " + i.Source.String()
	}
	want := map[string]string{
		"pg1-path":             "stanza option in global section [global]",
		"stanza":               "command-line only option in a configuration file",
		"repo1-retention-diff": "not valid for command 'archive-push'",
		"repo1-cipher-pass":    "not valid without option repo1-cipher-type = 'aes-256-cbc'",
		"lock-path":            "pgsidecar takes no lock files",
	}
	for name, reason := range want {
		if !strings.Contains(got[name], reason) || !strings.Contains(got[name], "pgbackrest.conf:") {
			t.Errorf("ignored %s = %q, want reason %q", name, got[name], reason)
		}
	}
	if _, ok := got["repo1-retention-full"]; ok {
		t.Error("options of other commands in [global] are skipped silently, as pgBackRest does")
	}
	if len(got) != len(want) {
		t.Errorf("ignored = %v", slices.Sorted(maps.Keys(got)))
	}
}
