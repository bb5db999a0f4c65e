package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// invalidCase is a configuration Load must reject.
type invalidCase struct {
	name  string
	files map[string]string
	args  []string
	env   []string
	// yaml makes args start with --config <dir>/postgres.yaml.
	yaml bool
	want []string
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	s3Keys := "[global]\nrepo1-s3-key=k\nrepo1-s3-key-secret=s\n"
	tests := []invalidCase{
		{
			name:  "unknown option in a file",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=/r\nrepo1-bogus=1\n"},
			args:  []string{"backup"},
			want:  []string{"repo1-bogus: unknown option", "pgbackrest.conf:3 [global]"},
		},
		{
			name:  "unknown option in another stanza's section",
			files: map[string]string{"pgbackrest.conf": "[other:backup]\nstart-fastt=y\n"},
			args:  []string{"--stanza=db", "--pg1-path=/pg", "backup"},
			want:  []string{"start-fastt: unknown option", "pgbackrest.conf:2 [other:backup]"},
		},
		{
			name: "unknown option in the environment",
			args: []string{"--stanza=db", "--pg1-path=/pg", "backup"},
			env:  []string{"PGBACKREST_REPO1_BOGUS=x"},
			want: []string{"repo1-bogus: unknown option", "env PGBACKREST_REPO1_BOGUS"},
		},
		{
			name: "unknown flag",
			args: []string{"--stanzza=db", "backup"},
			want: []string{"stanzza: unknown option (flag --stanzza)"},
		},
		{
			name:  "repository index above 4 in a file",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo5-path=/r5\n"},
			args:  []string{"config"},
			want:  []string{"repo5-path: pgsidecar supports repo1 to repo4", "pgbackrest.conf:2 [global]"},
		},
		{
			name: "repository index above 4 in the environment and on the command line",
			args: []string{"--repo7-type=s3", "config"},
			env:  []string{"PGBACKREST_REPO6_PATH=/r6"},
			want: []string{"repo7-type: pgsidecar supports repo1 to repo4 (flag --repo7-type)", "repo6-path: pgsidecar supports repo1 to repo4 (env PGBACKREST_REPO6_PATH)"},
		},
		{
			name: "repository index above 4 in YAML",
			yaml: true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    repos:\n    - name: repo5\n" +
				"      volume:\n        volumeClaimSpec: {}\n"},
			args: []string{"config"},
			want: []string{"postgres.yaml:4 backups.pgbackrest.repos[0].name: repo5: pgsidecar supports repo1 to repo4"},
		},
		{
			name: "YAML repository with two storage types",
			yaml: true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    repos:\n    - name: repo1\n" +
				"      volume:\n        volumeClaimSpec: {}\n      s3:\n        bucket: b\n        endpoint: e\n        region: r\n"},
			args: []string{"config"},
			want: []string{"backups.pgbackrest.repos[0]: repo1 has 2 storage types (volume, s3)"},
		},
		{
			name:  "YAML repository without storage",
			yaml:  true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    repos:\n    - name: repo2\n"},
			args:  []string{"config"},
			want:  []string{"backups.pgbackrest.repos[0]: repo2 has no storage"},
		},
		{
			name: "YAML unknown keys in pgbackrest, a repo and s3",
			yaml: true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    retention: 3\n    repos:\n    - name: repo1\n" +
				"      bucket: x\n      s3:\n        bucket: b\n        endpoint: e\n        region: r\n        insecure: true\n",
				"conf.d/s3.conf": s3Keys},
			args: []string{"config"},
			want: []string{
				`backups.pgbackrest.retention: unknown field "retention"`,
				`backups.pgbackrest.repos[0].bucket: unknown field "bucket"`,
				`backups.pgbackrest.repos[0].s3.insecure: unknown field "insecure"`,
			},
		},
		{
			name:  "YAML unknown pgBackRest option in global",
			yaml:  true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    global:\n      repo1-retension-full: 2\n    repos:\n    - name: repo1\n      volume: {}\n"},
			args:  []string{"config"},
			want:  []string{"repo1-retension-full: unknown option", "postgres.yaml:4 backups.pgbackrest.global.repo1-retension-full"},
		},
		{
			name: "YAML schedule without five fields",
			yaml: true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    repos:\n    - name: repo1\n" +
				"      schedules:\n        full: \"0 0 1 * * 0\"\n      volume: {}\n"},
			args: []string{"config"},
			want: []string{"repos[0].schedules.full: schedule \"0 0 1 * * 0\" has 6 fields"},
		},
		{
			name:  "INI repository with options of two storage types",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-type=s3\nrepo1-s3-bucket=b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\nrepo1-gcs-bucket=g\n", "conf.d/s3.conf": s3Keys},
			args:  []string{"config"},
			want:  []string{"repo1-gcs-bucket: only valid when repo1-type = 'gcs', but repo1-type is 's3'", "pgbackrest.conf:6 [global]"},
		},
		{
			name:  "INI S3 options on a posix repository",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo2-path=/r2\nrepo2-s3-bucket=b\nrepo2-storage-verify-tls=n\n"},
			args:  []string{"config"},
			want: []string{
				"repo2-s3-bucket: only valid when repo2-type = 's3', but repo2-type is 'posix' (default)",
				"repo2-storage-verify-tls: only valid when repo2-type in ('azure', 'gcs', 's3')",
			},
		},
		{
			name:  "S3 repository without bucket, endpoint and region",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo3-type=s3\nrepo3-s3-key-type=auto\n"},
			args:  []string{"config"},
			want: []string{
				"repo3-s3-bucket: required when repo3-type=s3 but not set",
				"repo3-s3-endpoint: required when repo3-type=s3 but not set",
				"repo3-s3-region: required when repo3-type=s3 but not set",
				"pgbackrest.conf:2 [global]",
			},
		},
		{
			name:  "S3 repository with shared keys but no key",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-type=s3\nrepo1-s3-bucket=b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\n"},
			args:  []string{"config"},
			want:  []string{"repo1-s3-key: required when repo1-s3-key-type=shared", "repo1-s3-key-secret: required when repo1-s3-key-type=shared"},
		},
		{
			name: "cipher type without passphrase",
			yaml: true,
			files: map[string]string{"postgres.yaml": "backups:\n  pgbackrest:\n    global:\n      repo1-cipher-type: aes-256-cbc\n" +
				"    repos:\n    - name: repo1\n      volume: {}\n"},
			args: []string{"config"},
			want: []string{"repo1-cipher-pass: required when repo1-cipher-type=aes-256-cbc but not set", "backups.pgbackrest.global.repo1-cipher-type"},
		},
		{
			name:  "bad boolean",
			files: map[string]string{"pgbackrest.conf": "[global]\nstart-fast=yes\n"},
			args:  []string{"config"},
			want:  []string{"start-fast: boolean option must be 'y' or 'n'", "pgbackrest.conf:2 [global]"},
		},
		{
			name: "bad boolean on the command line and in the environment",
			args: []string{"--start-fast=true", "config"},
			env:  []string{"PGBACKREST_DELTA=1"},
			want: []string{"start-fast: boolean option argument must be 'y' or 'n' (flag --start-fast)", "delta: boolean option must be 'y' or 'n' (env PGBACKREST_DELTA)"},
		},
		{
			name:  "bad integer and out of range",
			files: map[string]string{"pgbackrest.conf": "[global]\nprocess-max=four\n[global:backup]\nrepo1-retention-full=0\n"},
			args:  []string{"--stanza=db", "--pg1-path=/pg", "backup"},
			want:  []string{"process-max: 'four' is not a valid integer", "repo1-retention-full: '0' is out of range (1 to 9999999)", "[global:backup]"},
		},
		{
			name:  "bad sizes",
			files: map[string]string{"pgbackrest.conf": "[global]\nbuffer-size=1XB\narchive-get-queue-max=lots\nmanifest-save-threshold=2TiB\n"},
			args:  []string{"config"},
			want: []string{
				"buffer-size: '1XB' is not a valid size", "archive-get-queue-max: 'lots' is not a valid size",
				"manifest-save-threshold: '2TiB' is out of range (1 to 1TiB)",
			},
		},
		{
			name:  "size not in the allow list",
			files: map[string]string{"pgbackrest.conf": "[global]\nbuffer-size=3MiB\n"},
			args:  []string{"config"},
			want:  []string{"buffer-size: '3MiB' is not allowed (allowed: 16KiB, 32KiB"},
		},
		{
			name:  "bad time",
			files: map[string]string{"pgbackrest.conf": "[global]\narchive-timeout=1m\nio-timeout=0.01\n"},
			args:  []string{"config"},
			want:  []string{"archive-timeout: '1m' is not a valid time", "io-timeout: '0.01' is out of range (0.1 to 3600)"},
		},
		{
			name:  "values outside allow lists",
			files: map[string]string{"pgbackrest.conf": "[global]\ncompress-type=foo\nrepo1-type=s3\nrepo1-s3-uri-style=sideways\nrepo1-s3-bucket=b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\nlog-level-console=loud\n", "conf.d/s3.conf": s3Keys},
			args:  []string{"config"},
			want: []string{
				"compress-type: 'foo' is not allowed (allowed: none, bz2, gz, lz4, zst)",
				"repo1-s3-uri-style: 'sideways' is not allowed (allowed: host, path)",
				"log-level-console: 'loud' is not allowed",
			},
		},
		{
			name: "secure options on the command line",
			args: []string{"--repo1-cipher-pass=cmdline-secret-1", "--repo1-s3-key", "cmdline-secret-2", "config"},
			want: []string{
				"repo1-cipher-pass: option is not allowed on the command line", "(flag --repo1-cipher-pass)",
				"repo1-s3-key: option is not allowed on the command line",
			},
		},
		{
			name:  "relative and double-slash paths",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=backups\nrepo2-path=/a//b\n"},
			args:  []string{"config"},
			want:  []string{"repo1-path: 'backups' must begin with /", "repo2-path: '/a//b' cannot contain //"},
		},
		{
			name:  "same option twice in a section, across files",
			files: map[string]string{"pgbackrest.conf": "[global]\nprocess-max=2\n", "conf.d/more.conf": "[global]\nprocess-max=3\n"},
			args:  []string{"config"},
			want:  []string{"process-max: option cannot be set multiple times in section [global]", "pgbackrest.conf:2 [global]", "more.conf:2 [global]"},
		},
		{
			name:  "deprecated and current name in one section",
			files: map[string]string{"pgbackrest.conf": "[db]\ndb-path=/a\npg1-path=/b\n"},
			args:  []string{"--stanza=db", "backup"},
			want:  []string{"pg1-path: duplicate options ('db-path', 'pg1-path') in section [db]"},
		},
		{
			name:  "empty value",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=\n"},
			args:  []string{"config"},
			want:  []string{"repo1-path: must have a value (", "pgbackrest.conf:2 [global])"},
		},
		{
			name:  "INI syntax errors",
			files: map[string]string{"pgbackrest.conf": "repo1-path=/x\n[global\n[global]\nrepo1-cipher-pass syntax-secret\n=novalue\n"},
			args:  []string{"config"},
			want: []string{
				"pgbackrest.conf:1: key/value found outside of section", "pgbackrest.conf:2: ini section should end with ]",
				"pgbackrest.conf:4: missing '=' in key/value", "pgbackrest.conf:5: key is zero-length",
			},
		},
		{
			name:  "section for an unknown command",
			files: map[string]string{"pgbackrest.conf": "[global:bakup]\nstart-fast=y\n"},
			args:  []string{"config"},
			want:  []string{"pgbackrest.conf:2: section [global:bakup] names an unknown command 'bakup'"},
		},
		{
			name: "missing explicit config file",
			args: []string{"--config=/nonexistent/pgbackrest.conf", "config"},
			want: []string{"read configuration file", "/nonexistent/pgbackrest.conf"},
		},
		{
			name: "missing explicit include path",
			args: []string{"--config-include-path=/nonexistent/conf.d", "config"},
			want: []string{"read configuration include path", "/nonexistent/conf.d"},
		},
		{
			name: "option not valid for the command",
			args: []string{"--type=full", "--stanza=db", "archive-push", "/wal"},
			want: []string{"type: option not valid for command 'archive-push' (flag --type)"},
		},
		{
			name: "flag whose dependency is not met",
			args: []string{"--target=2024-01-01", "--stanza=db", "--pg1-path=/pg", "restore"},
			want: []string{"target: option not valid without option type in ('lsn', 'name', 'time', 'xid') (flag --target)"},
		},
		{
			name: "required options of the command",
			args: []string{"backup"},
			want: []string{"stanza: required by command 'backup' but not set", "pg1-path: required by command 'backup' but not set"},
		},
		{
			name:  "--repo names a repository that is not configured",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=/r1\nrepo2-path=/r2\n"},
			args:  []string{"--repo=3", "--stanza=db", "info"},
			want:  []string{"repo: repository 3 is not configured (configured: repo1, repo2) (flag --repo)"},
		},
		{
			name: "--repo above 4",
			args: []string{"--repo=5", "info"},
			want: []string{"repo: '5' is out of range (1 to 4)"},
		},
		{
			name:  "two local repositories on one path",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-path=/backup\nrepo3-path=/backup/\n"},
			args:  []string{"config"},
			want:  []string{"repo3-path: local repo1 and repo3 paths are both '/backup' but must be different"},
		},
		{
			name:  "S3 bucket with dots and TLS verification",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-type=s3\nrepo1-s3-bucket=my.bucket\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\n", "conf.d/s3.conf": s3Keys},
			args:  []string{"config"},
			want:  []string{"repo1-s3-bucket: 'my.bucket' is not valid: RFC-2818 forbids dots"},
		},
		{
			name:  "compress-level out of range for the compression type",
			files: map[string]string{"pgbackrest.conf": "[global]\ncompress-type=gz\ncompress-level=12\n"},
			args:  []string{"config"},
			want:  []string{"compress-level: '12' is out of range for compress-type=gz (-1 to 9)"},
		},
		{
			name:  "beta option without --beta",
			files: map[string]string{"pgbackrest.conf": "[global]\nrepo1-bundle=y\nrepo1-block=y\n"},
			args:  []string{"config"},
			want:  []string{"repo1-block: option not valid without option 'beta'"},
		},
		{
			name: "command line errors",
			args: []string{"-x", "backup"},
			want: []string{"option '-x' must begin with --"},
		},
		{
			name: "negated and set",
			args: []string{"--no-online", "--online", "--stanza=db", "--pg1-path=/p", "backup"},
			want: []string{"online: option cannot be set and negated"},
		},
		{
			name: "set twice",
			args: []string{"--process-max=2", "--process-max=3", "config"},
			want: []string{"process-max: option cannot be set multiple times"},
		},
		{
			name: "negate an option that cannot be negated",
			args: []string{"--no-process-max", "config"},
			want: []string{"no-process-max: option cannot be negated (flag --no-process-max)"},
		},
		{
			name: "parameters for a command without parameters",
			args: []string{"--stanza=db", "--pg1-path=/p", "backup", "extra"},
			want: []string{"command 'backup' does not allow parameters"},
		},
		{
			name: "unknown command",
			args: []string{"bakup"},
			want: []string{"invalid command 'bakup'"},
		},
		{
			name: "command role",
			args: []string{"archive-push:async"},
			want: []string{"pgsidecar has no command roles"},
		},
		{
			name: "options but no command",
			args: []string{"--stanza=db"},
			want: []string{"no command found"},
		},
		{
			name: "environment variable without a value",
			args: []string{"config"},
			env:  []string{"PGBACKREST_REPO1_PATH="},
			want: []string{"repo1-path: environment variable must have a value (env PGBACKREST_REPO1_PATH)"},
		},
		{
			name: "negation in the environment",
			args: []string{"config"},
			env:  []string{"PGBACKREST_NO_ONLINE=y"},
			want: []string{"online: negate and reset prefixes are only allowed on the command line (env PGBACKREST_NO_ONLINE)"},
		},
		{
			name:  "option that needs an index",
			files: map[string]string{"pgbackrest.conf": "[db]\npg-path=/x\nlog1-path=/y\n"},
			args:  []string{"config"},
			want:  []string{"pg-path: option requires an index, e.g. pg1-path (", "log1-path: option cannot have an index ("},
		},
		{
			name:  "YAML that is not PGO's",
			yaml:  true,
			files: map[string]string{"postgres.yaml": "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: b\n"},
			args:  []string{"config"},
			want:  []string{"yaml holds neither a PostgresCluster manifest nor backups.pgbackrest"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeTree(t, tc.files)
			args := tc.args
			if tc.yaml {
				args = append([]string{"--config", filepath.Join(dir, "postgres.yaml")}, args...)
			}
			cfg, err := load(t, dir, args, tc.env...)
			if cfg != nil {
				t.Errorf("Load returned a configuration with the error")
			}
			wantErrors(t, err, tc.want...)
			for _, secret := range []string{"cmdline-secret-1", "cmdline-secret-2", "syntax-secret"} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals a secret value:\n%v", err)
				}
			}
		})
	}
}

// TestAllProblemsTogether checks that one Load reports every problem, each with its option and location.
func TestAllProblemsTogether(t *testing.T) {
	t.Parallel()
	dir := writeTree(t, map[string]string{
		"pgbackrest.conf": "[global]\ncompress-type=foo\nrepo5-path=/r\nprocess-max=x\n" +
			"repo1-type=s3\nrepo1-gcs-bucket=g\nrepo1-cipher-type=aes-256-cbc\n",
		"conf.d/keys.conf": "[global]\nrepo1-s3-key=all-problems-key\nrepo1-s3-key-secret=all-problems-secret\n",
	})
	_, err := load(t, dir, []string{"--repo1-cipher-pass=all-problems-pass", "config"}, "PGBACKREST_BOGUS=1")
	want := []string{
		"compress-type: 'foo' is not allowed", "repo5-path: pgsidecar supports repo1 to repo4",
		"process-max: 'x' is not a valid integer", "repo1-gcs-bucket: only valid when repo1-type = 'gcs'",
		"repo1-s3-bucket: required", "repo1-s3-endpoint: required", "repo1-s3-region: required",
		"repo1-cipher-pass: option is not allowed on the command line", "repo1-cipher-pass: required when repo1-cipher-type=aes-256-cbc",
		"bogus: unknown option",
	}
	wantErrors(t, err, want...)
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < len(want) {
		t.Errorf("want at least %d joined errors, got %v", len(want), err)
	}
	for _, s := range []string{"all-problems-key", "all-problems-secret", "all-problems-pass"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error reveals %q", s)
		}
	}
}
