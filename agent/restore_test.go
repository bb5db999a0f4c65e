package agent

import (
	"os"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/config"
)

func TestRestoreCommand(t *testing.T) {
	t.Parallel()
	file := writeIni(t, "[global]\nrepo1-path=/repo\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=secret\n[db]\npg1-path=/data\n")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Input{Args: []string{
		"--config=" + file, "--stanza=db", "--pg1-path=/new data", "--repo=1", "--process-max=4", "--delta",
		"--type=time", "--target=2026-01-01 00:00:00", "--log-level-console=info", "restore",
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := restoreCommand(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := exe + " --config=" + file + ` --pg1-path="/new data" --repo=1 --stanza=db archive-get %f "%p"`
	if got != want {
		t.Errorf("restore_command\n%s\nwant\n%s", got, want)
	}
	for _, secret := range []string{"secret", "cipher", "process-max", "delta", "target", "log-level"} {
		if strings.Contains(got, secret) {
			t.Errorf("restore_command passes %q on: %s", secret, got)
		}
	}
}
