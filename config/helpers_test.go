package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/config"
)

// load runs Load with the configuration directory dir (holding pgbackrest.conf and conf.d) and no legacy file.
func load(t *testing.T, dir string, args []string, env ...string) (*config.Config, error) {
	t.Helper()
	return config.Load(config.Input{
		Args:             args,
		Env:              env,
		ConfigPath:       dir,
		LegacyConfigFile: filepath.Join(t.TempDir(), "legacy-pgbackrest.conf"),
	})
}

// mustLoad is load that fails the test on error.
func mustLoad(t *testing.T, dir string, args []string, env ...string) *config.Config {
	t.Helper()
	cfg, err := load(t, dir, args, env...)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return cfg
}

// writeTree creates files (path relative to a new temporary directory, which it returns).
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// option returns the resolved option name, failing the test when it is missing.
func option(t *testing.T, cfg *config.Config, name string) config.Option {
	t.Helper()
	o, ok := cfg.Option(name)
	if !ok {
		t.Fatalf("option %s not resolved", name)
	}
	return o
}

// wantSource checks an option's value and that its source renders with every fragment in want.
func wantSource(t *testing.T, cfg *config.Config, name, value string, want ...string) {
	t.Helper()
	o := option(t, cfg, name)
	if o.Value != value {
		t.Errorf("%s = %q, want %q", name, o.Value, value)
	}
	src := o.Source.String()
	for _, w := range want {
		if !strings.Contains(src, w) {
			t.Errorf("%s source %q does not contain %q", name, src, w)
		}
	}
}

// repo returns repository index, failing the test when it is missing.
func repo(t *testing.T, cfg *config.Config, index int) config.Repo {
	t.Helper()
	r, ok := cfg.Repo(index)
	if !ok {
		t.Fatalf("repo%d not configured (repos: %+v)", index, cfg.Repos)
	}
	return r
}

// wantErrors checks that err contains every fragment.
func wantErrors(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded, want errors containing %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not contain %q:\n%v", f, err)
		}
	}
}
