package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata returns an absolute path into the config package's seed examples.
func testdata(t *testing.T, parts ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"..", "..", "config", "testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, env, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestConfigSeedExamples runs `pgsidecar config` on the seed's examples and
// checks the values users wrote come out, with their sources, and no secret.
func TestConfigSeedExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config string
		want         []string
		secrets      []string
	}{
		{"repo-path", "repo-path/postgres.yaml", []string{
			"repo1-path=/pgbackrest/postgres-operator/hippo/repo1  (", "spec.backups.pgbackrest.global.repo1-path)",
		}, nil},
		{"minio", "minio/postgres.yaml", []string{
			"repo1-type=s3", "repo1-s3-uri-style=path", "repo1-s3-bucket=hippo-backups", "repo1-s3-endpoint=minio.minio.svc:9000",
			"repo1-s3-key=<redacted>", "conf.d/s3.conf:2 [global])",
		}, []string{"minio-test-access-key", "minio-test-secret-key-9f3a"}},
		{"four repos, YAML", "multi-repo-yaml/postgres.yaml", []string{
			"repo1-type=posix", "repo2-type=s3", "repo3-type=gcs", "repo4-type=azure",
		}, nil},
		{"four repos, INI", "multi-repo-ini/pgbackrest.conf", []string{
			"repo1-path=/pgbackrest/repo1", "repo2-type=s3", "repo3-type=gcs", "repo4-type=azure", "repo4-azure-key=<redacted>",
		}, nil},
		{"encryption", "encryption/postgres.yaml", []string{
			"repo1-cipher-type=aes-256-cbc", "repo1-cipher-pass=<redacted>  (", "pgbackrest-secrets.conf:2 [global])",
			"projection: secret hippo-pgbackrest-secrets",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfgFile := testdata(t, tc.config)
			include := filepath.Join(filepath.Dir(cfgFile), "conf.d")
			args := []string{"--stanza=db", "--config=" + cfgFile, "config"}
			if _, err := os.Stat(include); err == nil {
				args = append(args, "--config-include-path="+include)
			}
			code, out, errOut := runCmd(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			secrets := tc.secrets
			for _, f := range mustGlob(t, filepath.Join(include, "*.conf")) {
				secrets = append(secrets, secretValues(t, f)...)
			}
			for _, s := range secrets {
				if strings.Contains(out+errOut, s) {
					t.Errorf("secret %q printed", s)
				}
			}
		})
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// secretValues returns the values of the secure options in an INI file.
func secretValues(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && (strings.HasSuffix(k, "-key") || strings.HasSuffix(k, "-key-secret") || strings.HasSuffix(k, "-pass") || strings.HasSuffix(k, "-account")) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestConfigRejectsInvalid checks each invalid case of the issue exits with
// the configuration error code and a message naming the option and file.
func TestConfigRejectsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ini string
		want      []string
	}{
		{"unknown option", "[global]\nrepo1-pathh=/x\n", []string{"repo1-pathh", "pgbackrest.conf:2"}},
		{"repo outside 1..4", "[global]\nrepo5-path=/x\n", []string{"repo5-path", "repo1 to repo4"}},
		{"two storage types", "[global]\nrepo1-type=s3\nrepo1-s3-bucket=b\nrepo1-s3-endpoint=e\nrepo1-s3-region=r\nrepo1-azure-container=c\n", []string{"repo1-azure-container", "repo1-type"}},
		{"s3 without bucket, endpoint, region", "[global]\nrepo1-type=s3\n", []string{"repo1-s3-bucket", "repo1-s3-endpoint", "repo1-s3-region"}},
		{"cipher without passphrase", "[global]\nrepo1-cipher-type=aes-256-cbc\n", []string{"repo1-cipher-pass"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o700); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "pgbackrest.conf")
			if err := os.WriteFile(file, []byte(tc.ini), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCmd(t, nil, "--stanza=db", "--config="+file, "--config-include-path="+filepath.Join(dir, "conf.d"), "config")
			if code != exitConfig {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitConfig, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("error lacks %q: %s", w, errOut)
				}
			}
			if strings.Contains(errOut, "include path") {
				t.Errorf("unexpected include-path error: %s", errOut)
			}
		})
	}
}

func TestRepoWithoutStorageInYAML(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "postgres.yaml")
	yaml := "backups:\n  pgbackrest:\n    repos:\n    - name: repo1\n      schedules:\n        full: \"0 1 * * 0\"\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, nil, "--config="+file, "--config-include-path="+filepath.Join(dir, "conf.d"), "config")
	if code != exitConfig || !strings.Contains(errOut, "repos[0]") {
		t.Fatalf("exit %d, stderr %q; want %d naming repos[0]", code, errOut, exitConfig)
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runCmd(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "pgsidecar ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(t, nil, "help")
	if code != 0 || !strings.Contains(out, "archive-push") || !strings.Contains(out, "config") {
		t.Fatalf("help: exit %d, %q", code, out)
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCmd(t, nil, "frobnicate")
	if code == 0 || code > 125 || !strings.Contains(errOut, "frobnicate") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestExitCodesNeverAbove125(t *testing.T) {
	t.Parallel()
	for _, code := range []int{-5, 0, 1, 45, 125, 126, 255, 1000} {
		got := exitCode(codeErr(code))
		if got < 1 || got > 125 {
			t.Errorf("exitCode(code %d) = %d, want 1..125", code, got)
		}
	}
}

type codeErr int

func (c codeErr) Error() string { return "coded" }
func (c codeErr) Code() int     { return int(c) }
