package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/config"
)

func TestSecretFormatting(t *testing.T) {
	t.Parallel()
	s := config.Secret("hunter2-secret")
	holder := struct {
		Pass config.Secret
		Ptr  *config.Secret
	}{Pass: s, Ptr: &s}
	outputs := map[string]string{
		"%v":     fmt.Sprintf("%v", s),
		"%s":     fmt.Sprintf("%s", s),
		"%q":     fmt.Sprintf("%q", s),
		"%x":     fmt.Sprintf("%x", s),
		"%d":     fmt.Sprintf("%d", s),
		"%#v":    fmt.Sprintf("%#v", s),
		"%+v":    fmt.Sprintf("%+v", holder),
		"%#v2":   fmt.Sprintf("%#v", holder),
		"Sprint": fmt.Sprint(s, holder),
	}
	text, err := s.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	outputs["text"] = string(text)
	js, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(js)
	for verb, out := range outputs {
		if strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("%s reveals the secret: %s", verb, out)
		}
		if !strings.Contains(out, "<redacted>") && !strings.Contains(out, `\u003credacted\u003e`) {
			t.Errorf("%s = %q, want <redacted>", verb, out)
		}
	}
	if s.Value() != "hunter2-secret" || !s.IsSet() || config.Secret("").IsSet() {
		t.Error("Value or IsSet")
	}
}

// TestSecretsNeverPrinted loads configurations holding every secure option and checks that neither Describe, nor
// the configuration printed or marshalled, nor Options reveals a value.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"repo1-cipher-pass":   "leak-cipher-pass-1",
		"repo2-s3-key":        "leak-s3-key-2",
		"repo2-s3-key-secret": "leak-s3-secret-3",
		"repo2-s3-token":      "leak-s3-token-4",
		"repo3-gcs-key":       "leak-gcs-key-5",
		"repo4-azure-key":     "leak-azure-key-6",
		"repo4-azure-account": "leak-azure-account-7",
	}
	var conf strings.Builder
	conf.WriteString("[global]\nrepo1-cipher-type=aes-256-cbc\nrepo2-type=s3\nrepo2-s3-bucket=b\nrepo2-s3-endpoint=e\n" +
		"repo2-s3-region=r\nrepo3-type=gcs\nrepo3-gcs-bucket=g\nrepo4-type=azure\nrepo4-azure-container=c\n")
	for k, v := range secrets {
		fmt.Fprintf(&conf, "%s=%s\n", k, v)
	}
	dir := writeTree(t, map[string]string{"conf.d/secrets.conf": conf.String()})
	cfg := mustLoad(t, dir, []string{"config"})
	if cfg.Repos[3].Azure.Key.Value() != "leak-azure-key-6" || cfg.Repos[0].Cipher.Pass.Value() != "leak-cipher-pass-1" {
		t.Fatal("secrets not loaded")
	}
	var out bytes.Buffer
	if err := cfg.Describe(&out, true); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	printed := map[string]string{
		"Describe": out.String(),
		"%+v":      fmt.Sprintf("%+v", cfg),
		"%#v":      fmt.Sprintf("%#v", *cfg),
		"json":     string(js),
		"Options":  fmt.Sprint(cfg.Options()),
	}
	for where, text := range printed {
		for name, v := range secrets {
			if strings.Contains(text, v) {
				t.Errorf("%s reveals %s", where, name)
			}
		}
	}
	for name := range secrets {
		line := name + "=<redacted>  (" + filepath.Join(dir, "conf.d", "secrets.conf")
		if !strings.Contains(out.String(), line) {
			t.Errorf("Describe lacks %q:\n%s", line, out.String())
		}
	}

	// The same secrets with problems: the errors name the options, never the values.
	bad := strings.NewReplacer("repo2-s3-bucket=b\n", "", "repo4-azure-container=c\n", "").Replace(conf.String())
	dir = writeTree(t, map[string]string{"conf.d/secrets.conf": bad + "repo1-s3-key=leak-s3-key-2\n"})
	_, err = load(t, dir, []string{"--repo1-cipher-pass", "leak-flag-8", "config"}, "PGBACKREST_REPO2_S3_TOKEN=")
	wantErrors(t, err, "repo2-s3-bucket: required", "repo4-azure-container: required", "repo1-s3-key: only valid when repo1-type = 's3'",
		"repo1-cipher-pass: option is not allowed on the command line")
	for _, v := range append([]string{"leak-flag-8"}, secrets["repo2-s3-key"]) {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error reveals %q:\n%v", v, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "encryption")
	cfg := mustLoad(t, dir, yamlArgs("encryption", "--log-level-console=info", "backup"), "PGBACKREST_LOCK_PATH=/run/locks")
	absDir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var short, long bytes.Buffer
	if err := cfg.Describe(&short, false); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Describe(&long, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"command: backup\n",
		"stanza: db  (PGO default (the stanza PGO creates))\n",
		"format: yaml\n",
		"projection: secret hippo-pgbackrest-secrets\n",
		"[global]\n  config=" + filepath.Join(dir, "postgres.yaml") + "  (flag --config)\n  log-level-console=info  (flag --log-level-console)\n",
		"[repo1]\n  repo1-cipher-pass=<redacted>  (" + filepath.Join(absDir, "conf.d", "pgbackrest-secrets.conf") + ":2 [global])\n" +
			"  repo1-cipher-type=aes-256-cbc  (" + filepath.Join(dir, "postgres.yaml") + ":23 spec.backups.pgbackrest.global.repo1-cipher-type)\n",
		"[pg1]\n  pg1-path=/pgdata/pg16  (PGO default for " + filepath.Join(dir, "postgres.yaml") + ":8 spec.postgresVersion)\n",
		"ignored:\n  lock-path  (env PGBACKREST_LOCK_PATH): pgsidecar takes no lock files\n",
	} {
		if !strings.Contains(short.String(), want) {
			t.Errorf("Describe lacks %q:\n%s", want, short.String())
		}
	}
	if strings.Contains(short.String(), "compress-type=") {
		t.Errorf("defaults listed without showDefaults:\n%s", short.String())
	}
	for _, want := range []string{"  compress-type=gz  (default)\n", "  compress-level=6  (default: for compress-type=gz)\n", "  repo1-retention-full-type=count  (default)\n"} {
		if !strings.Contains(long.String(), want) {
			t.Errorf("Describe(showDefaults) lacks %q", want)
		}
	}
	if strings.Contains(long.String(), "lock-path=") {
		t.Error("an ignored option is listed with the used ones")
	}
}

// FuzzLoad feeds arbitrary pgbackrest.conf content through Load: it must not panic, must return either a
// configuration or an error, and must never print the value given to the secure repo1-cipher-pass.
func FuzzLoad(f *testing.F) {
	f.Add("[global]\nrepo1-path=/x\nrepo2-type=s3\n", "config")
	f.Add("[global]\nrepo1-cipher-type=aes-256-cbc\ncompress-level=99\n[db]\npg1-path=rel\n", "backup")
	f.Add("[db:archive-push]\narchive-async=y\nspool-path=/s\nrepo3-gcs-bucket=b\nrepo3-type=gcs\n", "archive-push")
	f.Add("[global]\nrecovery-option=a\nrecovery-option=b=c\nbuffer-size=3MiB\n", "restore")
	f.Fuzz(func(t *testing.T, conf, command string) {
		const secret = "fuzz-secret-value-42"
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "pgbackrest.conf"), []byte(conf+"\n[global]\nrepo1-cipher-pass="+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(config.Input{
			Args: []string{"--stanza=db", command}, ConfigPath: dir, LegacyConfigFile: filepath.Join(dir, "none"),
		})
		switch {
		case err != nil:
			if cfg != nil {
				t.Fatal("configuration returned with an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error reveals the secret: %v", err)
			}
		case cfg == nil:
			t.Fatal("no configuration and no error")
		default:
			var out bytes.Buffer
			if err := cfg.Describe(&out, true); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), secret) {
				t.Fatalf("Describe reveals the secret:\n%s", out.String())
			}
		}
	})
}
