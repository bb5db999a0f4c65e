package config_test

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/config"
)

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, cfg *config.Config)
	}{
		{
			name: "value forms, negation and abbreviations",
			args: []string{"--stan", "db", "--pg1-path=/pgdata/", "--no-online", "--start-fast", "--delta=n", "--type", "full", "backup", "--process-max=3"},
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.Stanza != "db" || cfg.Online || !cfg.StartFast || cfg.Delta || cfg.Type != "full" || cfg.ProcessMax != 3 {
					t.Errorf("stanza %q online %v start-fast %v delta %v type %q process-max %d",
						cfg.Stanza, cfg.Online, cfg.StartFast, cfg.Delta, cfg.Type, cfg.ProcessMax)
				}
				if cfg.Pgs[0].Path != "/pgdata" {
					t.Errorf("trailing slash not removed: %q", cfg.Pgs[0].Path)
				}
				wantSource(t, cfg, "stanza", "db", "flag --stan")
				// --no-online disables archive-check for backup through its dependency default.
				if cfg.ArchiveCheck {
					t.Error("archive-check must default to n when online=n")
				}
			},
		},
		{
			name: "hash and list options given several times",
			args: []string{"--stanza=db", "--pg1-path=/p", "--recovery-option=primary_conninfo=host=x", "--recovery-option", "recovery_target_timeline=current",
				"--db-include=app", "--db-include=reports", "--type=time", "--target=2024-05-01 10:00:00+00", "--target-action=promote", "restore"},
			check: func(t *testing.T, cfg *config.Config) {
				want := map[string]string{"primary_conninfo": "host=x", "recovery_target_timeline": "current"}
				if !maps.Equal(cfg.RecoveryOption, want) || !slices.Equal(cfg.DBInclude, []string{"app", "reports"}) {
					t.Errorf("recovery-option %v db-include %v", cfg.RecoveryOption, cfg.DBInclude)
				}
				if cfg.Type != "time" || cfg.Target != "2024-05-01 10:00:00+00" || cfg.TargetAction != "promote" || cfg.Set != "latest" {
					t.Errorf("type %q target %q action %q set %q", cfg.Type, cfg.Target, cfg.TargetAction, cfg.Set)
				}
			},
		},
		{
			name: "deprecated names",
			args: []string{"--stanza=db", "--db-path=/old", "--repo-path=/r", "--retention-full=3", "--hardlink", "backup"},
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.Pgs[0].Path != "/old" || cfg.Repos[0].Path != "/r" || cfg.Repos[0].Retention.Full != 3 || !cfg.Repos[0].Hardlink {
					t.Errorf("pg1 %q repo1 %q retention %d hardlink %v", cfg.Pgs[0].Path, cfg.Repos[0].Path, cfg.Repos[0].Retention.Full, cfg.Repos[0].Hardlink)
				}
				wantSource(t, cfg, "pg1-path", "/old", "flag --db-path")
			},
		},
		{
			name: "archive-push takes the WAL path and no --repo",
			args: []string{"--stanza=db", "archive-push", "pg_wal/000000010000000000000002", "--archive-queue-max=1GiB"},
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.Command != "archive-push" || len(cfg.Parameters) != 1 || cfg.RepoSelected != 0 {
					t.Errorf("command %q parameters %q repo %d", cfg.Command, cfg.Parameters, cfg.RepoSelected)
				}
				if q := cfg.ArchivePushQueueMax; q == nil || *q != 1<<30 {
					t.Errorf("archive-push-queue-max (deprecated archive-queue-max) = %v, want 1GiB", q)
				}
			},
		},
		{
			name: "help and version read no configuration",
			args: []string{"help", "backup"},
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.Command != "help" || !slices.Equal(cfg.Parameters, []string{"backup"}) || len(cfg.Repos) != 0 {
					t.Errorf("help: %+v", cfg)
				}
			},
		},
		{
			name: "no arguments means help",
			args: nil,
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.Command != "help" {
					t.Errorf("command %q", cfg.Command)
				}
			},
		},
		{
			name: "repo selection",
			args: []string{"--repo1-path=/a", "--repo2-path=/b", "--repo=2", "--stanza=db", "info", "--output=json"},
			check: func(t *testing.T, cfg *config.Config) {
				if cfg.RepoSelected != 2 || cfg.Output != "json" || len(cfg.Repos) != 2 {
					t.Errorf("repo %d output %q repos %d", cfg.RepoSelected, cfg.Output, len(cfg.Repos))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The configuration directory holds a broken file: only help and version may ignore it.
			dir := t.TempDir()
			if tc.args != nil && tc.args[0] == "help" {
				dir = writeTree(t, map[string]string{"pgbackrest.conf": "not an ini file"})
			}
			tc.check(t, mustLoad(t, dir, tc.args))
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=/from-file\n"})
	cfg := mustLoad(t, dir, []string{"--stanza=db", "backup"},
		"HOME=/root",
		"PGBACKREST_PG1_PATH=/pgdata",
		"PGBACKREST_REPO1_PATH=/from-env",
		"PGBACKREST_REPO1_CIPHER_TYPE=aes-256-cbc",
		"PGBACKREST_REPO1_CIPHER_PASS=env-cipher-pass",
		"PGBACKREST_START_FAST=y",
		"PGBACKREST_EXCLUDE=tmp/:log/",
		"PGBACKREST_ANNOTATION=team=db:env=prod",
		"PGBACKREST_TARGET=ignored-for-backup",
		"PGBACKREST_BUFFER_SIZE=64KiB",
		"PGBACKREST_ARCHIVE_TIMEOUT=0.5",
	)
	r := repo(t, cfg, 1)
	if r.Path != "/from-env" || r.Cipher.Pass.Value() != "env-cipher-pass" || !cfg.StartFast {
		t.Errorf("repo1 %q cipher %v start-fast %v", r.Path, r.Cipher.Pass.IsSet(), cfg.StartFast)
	}
	if !slices.Equal(cfg.Exclude, []string{"tmp/", "log/"}) || !maps.Equal(cfg.Annotation, map[string]string{"team": "db", "env": "prod"}) {
		t.Errorf("exclude %q annotation %v", cfg.Exclude, cfg.Annotation)
	}
	if cfg.BufferSize != 64<<10 {
		t.Errorf("buffer-size %d", cfg.BufferSize)
	}
	if cfg.ArchiveTimeout != 500*time.Millisecond {
		t.Errorf("archive-timeout %v", cfg.ArchiveTimeout)
	}
	wantSource(t, cfg, "repo1-path", "/from-env", "env PGBACKREST_REPO1_PATH")
	wantSource(t, cfg, "repo1-cipher-pass", "<redacted>", "env PGBACKREST_REPO1_CIPHER_PASS")
	if cfg.Target != "" {
		t.Error("target is not a backup option")
	}
}

// TestConfigFiles follows pgBackRest's cfgFileLoad rules for --config, --config-path, --config-include-path and
// --no-config.
func TestConfigFiles(t *testing.T) {
	t.Parallel()
	tree := map[string]string{
		"pgbackrest.conf":       "[global]\nrepo1-path=/default-file\n",
		"conf.d/a.conf":         "[global]\nrepo2-path=/default-include\n",
		"conf.d/ignored.txt":    "[global]\nrepo3-path=/not-a-conf-file\n",
		"other/pgbackrest.conf": "[global]\nrepo1-path=/other-file\n",
		"other/conf.d/b.conf":   "[global]\nrepo2-path=/other-include\n",
		"explicit.conf":         "[global]\nrepo1-path=/explicit\n",
		"inc/c.conf":            "[global]\nrepo4-path=/explicit-include\n",
	}
	tests := []struct {
		name string
		args func(dir string) []string
		want map[int]string
	}{
		{"defaults", func(string) []string { return nil }, map[int]string{1: "/default-file", 2: "/default-include"}},
		{"--config alone skips conf.d", func(d string) []string { return []string{"--config=" + filepath.Join(d, "explicit.conf")} },
			map[int]string{1: "/explicit"}},
		{"--config with --config-include-path", func(d string) []string {
			return []string{"--config=" + filepath.Join(d, "explicit.conf"), "--config-include-path=" + filepath.Join(d, "inc")}
		}, map[int]string{1: "/explicit", 4: "/explicit-include"}},
		{"--config-include-path keeps the default file", func(d string) []string {
			return []string{"--config-include-path=" + filepath.Join(d, "inc")}
		}, map[int]string{1: "/default-file", 4: "/explicit-include"}},
		{"--config-path moves both defaults", func(d string) []string { return []string{"--config-path=" + filepath.Join(d, "other")} },
			map[int]string{1: "/other-file", 2: "/other-include"}},
		{"--no-config", func(string) []string { return []string{"--no-config"} }, map[int]string{1: "/var/lib/pgbackrest"}},
		{"--no-config with --config-include-path", func(d string) []string {
			return []string{"--no-config", "--config-include-path=" + filepath.Join(d, "inc")}
		}, map[int]string{4: "/explicit-include"}},
		{"PGBACKREST_CONFIG acts like --config", nil, map[int]string{1: "/explicit"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeTree(t, tree)
			var args, env []string
			if tc.args != nil {
				args = tc.args(dir)
			} else {
				env = []string{"PGBACKREST_CONFIG=" + filepath.Join(dir, "explicit.conf")}
			}
			cfg := mustLoad(t, dir, append(args, "config"), env...)
			got := map[int]string{}
			for _, r := range cfg.Repos {
				got[r.Index] = r.Path
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("repos %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLegacyConfigFile checks pgBackRest's fallback to /etc/pgbackrest.conf when the default file is missing.
func TestLegacyConfigFile(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"legacy.conf": "[global]\nrepo1-path=/legacy\n"})
	cfg, err := config.Load(config.Input{
		Args: []string{"config"}, ConfigPath: filepath.Join(dir, "etc"), LegacyConfigFile: filepath.Join(dir, "legacy.conf"),
	})
	if err != nil {
		t.Fatal(err)
	}
	wantSource(t, cfg, "repo1-path", "/legacy", "legacy.conf:2 [global]")
}

// TestDefaults loads a bare sidecar: no files, only what the command requires.
func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg := mustLoad(t, t.TempDir(), []string{"--stanza=db", "--pg1-path=/pgdata", "backup"})
	if len(cfg.Repos) != 1 {
		t.Fatalf("repos = %+v", cfg.Repos)
	}
	r := cfg.Repos[0]
	if r.Index != 1 || r.Type != "posix" || r.Path != "/var/lib/pgbackrest" || r.Cipher.Type != "none" {
		t.Errorf("repo1 = %d %s %s %s", r.Index, r.Type, r.Path, r.Cipher.Type)
	}
	if r.Retention.FullType != "count" || r.Retention.ArchiveType != "full" || r.Retention.Full != 0 || r.Retention.History != nil {
		t.Errorf("retention = %+v", r.Retention)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"compress-type", cfg.CompressType, "gz"},
		{"compress-level", cfg.CompressLevel, 6},
		{"process-max", cfg.ProcessMax, 1},
		{"log-level-console", cfg.LogLevelConsole, "warn"},
		{"log-level-file", cfg.LogLevelFile, "info"},
		{"buffer-size", cfg.BufferSize, int64(1 << 20)},
		{"io-timeout", cfg.IOTimeout, time.Minute},
		{"db-timeout", cfg.DBTimeout, 30 * time.Minute},
		{"archive-timeout", cfg.ArchiveTimeout, time.Minute},
		{"archive-check", cfg.ArchiveCheck, true},
		{"expire-auto", cfg.ExpireAuto, true},
		{"start-fast", cfg.StartFast, false},
		{"online", cfg.Online, true},
		{"type", cfg.Type, "incr"},
		{"manifest-save-threshold", cfg.ManifestSaveThreshold, int64(1 << 30)},
		{"pg1-port", cfg.Pgs[0].Port, 5432},
		{"pg1-database", cfg.Pgs[0].Database, "postgres"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Warnings()) == 0 {
		t.Error("pgBackRest warns when repo1-retention-full is not set")
	}
}

// TestCompressLevelDefaults checks pgBackRest's per-type compress-level defaults and the deprecated compress option.
func TestCompressLevelDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args  []string
		typ   string
		level int
	}{
		{[]string{"--compress-type=gz"}, "gz", 6},
		{[]string{"--compress-type=lz4"}, "lz4", 1},
		{[]string{"--compress-type=zst"}, "zst", 3},
		{[]string{"--compress-type=bz2"}, "bz2", 9},
		{[]string{"--compress-type=none"}, "none", 0},
		{[]string{"--compress-type=zst", "--compress-level=19"}, "zst", 19},
		{[]string{"--compress-type=lz4", "--compress-level=-5"}, "lz4", -5},
		{[]string{"--no-compress"}, "none", 0},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"/"+tc.args[len(tc.args)-1], func(t *testing.T) {
			t.Parallel()
			cfg := mustLoad(t, t.TempDir(), append(tc.args, "--stanza=db", "archive-push", "/wal"))
			if cfg.CompressType != tc.typ || cfg.CompressLevel != tc.level {
				t.Errorf("compress %s/%d, want %s/%d", cfg.CompressType, cfg.CompressLevel, tc.typ, tc.level)
			}
		})
	}
}

// TestRepoIndexes follows pgBackRest: the repositories are the indexes with an option set; repo1 exists only when
// nothing configures any repository.
func TestRepoIndexes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		conf string
		want []int
	}{
		{"nothing configured", "", []int{1}},
		{"only repo2", "[global]\nrepo2-path=/two\n", []int{2}},
		{"repo3 and repo1", "[global]\nrepo3-path=/three\nrepo1-retention-full=2\n", []int{1, 3}},
		{"an index holding only an ignored option is dropped", "[global]\nrepo4-path=/four\nrepo2-cipher-pass=x\n", []int{4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustLoad(t, writeTree(t, map[string]string{"pgbackrest.conf": tc.conf}), []string{"config"})
			var got []int
			for _, r := range cfg.Repos {
				got = append(got, r.Index)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("repos %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExtensionCommands checks pgsidecar's own commands: config takes every option and requires only what the
// repositories need; run takes the options of the commands it runs and reads its own [global:run] section.
func TestExtensionCommands(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=/r\n[global:backup]\nprocess-max=8\n" +
		"[global:run]\nprocess-max=2\narchive-async=y\n[db]\npg1-path=/pgdata\n"})

	cfg := mustLoad(t, dir, []string{"--stanza=db", "run"})
	if cfg.ProcessMax != 2 || !cfg.ArchiveAsync || cfg.Pgs[0].Path != "/pgdata" || cfg.Repos[0].Retention.FullType != "count" {
		t.Errorf("run: process-max %d archive-async %v pg1 %q", cfg.ProcessMax, cfg.ArchiveAsync, cfg.Pgs[0].Path)
	}
	if _, err := load(t, dir, []string{"run"}); err == nil || !strings.Contains(err.Error(), "stanza: required by command 'run'") {
		t.Errorf("run without a stanza: %v", err)
	}

	cfg = mustLoad(t, dir, []string{"config", "--type=full", "--link-map=a=b", "--output=json"})
	if cfg.Stanza != "" || cfg.Type != "full" || cfg.LinkMap["a"] != "b" || cfg.Output != "json" || cfg.ProcessMax != 1 {
		t.Errorf("config: stanza %q type %q link-map %v output %q process-max %d", cfg.Stanza, cfg.Type, cfg.LinkMap, cfg.Output, cfg.ProcessMax)
	}
	if len(cfg.Pgs) != 0 {
		t.Errorf("config without --stanza reads no stanza section: %+v", cfg.Pgs)
	}
}
