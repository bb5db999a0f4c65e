package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/pg"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// requireTool fails when PostgreSQL tools are required and missing, and
// skips otherwise.
func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		storagetest.Unavailable(t, "postgres", fmt.Errorf("%s not installed: %w", path, err))
	}
}

// initdb makes a cluster data directory (not started): enough for
// pg_control and PG_VERSION. As root it runs initdb as the test user.
func initdb(t *testing.T) string {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin/initdb"
	requireTool(t, bin)
	dir, err := os.MkdirTemp("", "pgsidecar-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "-D", data, "-U", "postgres", "--no-sync")
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("runuser", "-u", "pgsidecar", "--", bin, "-D", data, "-U", "postgres", "--no-sync")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	return data
}

// loadCfg resolves a configuration from INI text for command.
func loadCfg(t *testing.T, ini string, args ...string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "pgbackrest.conf")
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Input{Args: append([]string{"--config=" + file, "--config-include-path=" + filepath.Join(dir, "conf.d")}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func openTestRepos(t *testing.T, cfg *config.Config) []Repo {
	t.Helper()
	repos, err := OpenRepos(t.Context(), cfg, Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = CloseRepos(repos) })
	return repos
}

func TestStanzaCreate(t *testing.T) {
	t.Parallel()
	data := initdb(t)
	ctl, err := pg.ReadControl(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cipher string
	}{{"plain", ""}, {"encrypted", "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=stanza-create-test-pass\n"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repoDir := t.TempDir()
			ini := "[global]\nrepo1-path=" + repoDir + "\n" + tc.cipher + "[db]\npg1-path=" + data + "\n"
			cfg := loadCfg(t, ini, "--stanza=db", "stanza-create")
			repos := openTestRepos(t, cfg)
			ctx := t.Context()
			if err := StanzaCreate(ctx, cfg, repos, zap.NewNop()); err != nil {
				t.Fatalf("stanza-create: %v", err)
			}
			for _, f := range []string{"archive/db/archive.info", "backup/db/backup.info"} {
				a, err := os.ReadFile(filepath.Join(repoDir, f))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(repoDir, f+".copy"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Errorf("%s and its copy differ", f)
				}
				if enc := bytes.HasPrefix(a, []byte("Salted__")); enc != (tc.cipher != "") {
					t.Errorf("%s encrypted=%v, want %v", f, enc, tc.cipher != "")
				}
			}
			rs := openStanza(cfg, repos[0])
			ai, bi, err := loadStanzaInfo(ctx, rs)
			if err != nil {
				t.Fatal(err)
			}
			ah, _ := ai.Current()
			bh, _ := bi.Current()
			if ah.SystemID != ctl.SystemID || ah.Version != "15" || bh.CatalogVersion != ctl.CatalogVersion || ai.CurrentID != 1 {
				t.Fatalf("archive.info %+v / backup.info %+v do not describe the cluster %+v", ah, bh, ctl)
			}
			if (ai.CipherPass != "") != (tc.cipher != "") || (tc.cipher != "" && (len(ai.CipherPass) != 64 || ai.CipherPass == bi.CipherPass)) {
				t.Fatalf("sub-passphrases %q / %q", ai.CipherPass, bi.CipherPass)
			}

			// Running it again is fine; a lost copy is restored.
			if err := os.Remove(filepath.Join(repoDir, "backup/db/backup.info.copy")); err != nil {
				t.Fatal(err)
			}
			if err := StanzaCreate(ctx, cfg, repos, zap.NewNop()); err != nil {
				t.Fatalf("second stanza-create: %v", err)
			}
			if _, err := os.Stat(filepath.Join(repoDir, "backup/db/backup.info.copy")); err != nil {
				t.Fatalf("copy not restored: %v", err)
			}
			pgbackrestAccepts(t, repoDir, tc.cipher, ctl.SystemID)
		})
	}
}

// pgbackrestAccepts runs stock pgbackrest info on the repository.
func pgbackrestAccepts(t *testing.T, repoDir, cipherINI string, systemID uint64) {
	t.Helper()
	requireTool(t, "/usr/bin/pgbackrest")
	conf := filepath.Join(t.TempDir(), "pgbackrest.conf")
	ini := "[global]\nrepo1-path=" + repoDir + "\nlog-path=" + filepath.Dir(conf) + "\nlock-path=" + filepath.Dir(conf) + "\n" + cipherINI
	if err := os.WriteFile(conf, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pgbackrest", "--config="+conf, "--stanza=db", "--output=json", "info").CombinedOutput()
	if err != nil {
		t.Fatalf("pgbackrest info: %v\n%s", err, out)
	}
	var info []struct {
		Status struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Cipher string `json:"cipher"`
		DB     []struct {
			SystemID uint64 `json:"system-id"`
			Version  string `json:"version"`
		} `json:"db"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("pgbackrest info output: %v\n%s", err, out)
	}
	if len(info) != 1 || info[0].Status.Code != 2 || len(info[0].DB) != 1 || info[0].DB[0].SystemID != systemID || info[0].DB[0].Version != "15" {
		t.Fatalf("pgbackrest info does not show the new stanza (want status 2 'no valid backups', system-id %d): %s", systemID, out)
	}
	if want := map[bool]string{true: "aes-256-cbc", false: "none"}[cipherINI != ""]; info[0].Cipher != want {
		t.Fatalf("pgbackrest sees cipher %q, want %q", info[0].Cipher, want)
	}
}

func TestStanzaCreateRefusals(t *testing.T) {
	t.Parallel()
	data := initdb(t)
	ctx := t.Context()
	t.Run("NotEmpty", func(t *testing.T) {
		t.Parallel()
		repoDir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(repoDir, "archive/db/15-1"), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repoDir, "archive/db/15-1/stray"), nil, 0o640); err != nil {
			t.Fatal(err)
		}
		cfg := loadCfg(t, "[global]\nrepo1-path="+repoDir+"\n[db]\npg1-path="+data+"\n", "--stanza=db", "stanza-create")
		err := StanzaCreate(ctx, cfg, openTestRepos(t, cfg), zap.NewNop())
		var ce CodedError
		if !errors.As(err, &ce) || ce.Code() != codePathNotEmpty {
			t.Fatalf("stanza-create over stray files: %v, want code %d", err, codePathNotEmpty)
		}
	})
	t.Run("CipherChangeRefused", func(t *testing.T) {
		t.Parallel()
		repoDir := t.TempDir()
		plain := loadCfg(t, "[global]\nrepo1-path="+repoDir+"\n[db]\npg1-path="+data+"\n", "--stanza=db", "stanza-create")
		if err := StanzaCreate(ctx, plain, openTestRepos(t, plain), zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		enc := loadCfg(t, "[global]\nrepo1-path="+repoDir+"\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=now-encrypted\n[db]\npg1-path="+data+"\n", "--stanza=db", "stanza-create")
		err := StanzaCreate(ctx, enc, openTestRepos(t, enc), zap.NewNop())
		if !errors.Is(err, repo.ErrNotEncrypted) {
			t.Fatalf("turning encryption on for an existing plain repo: %v, want ErrNotEncrypted", err)
		}
	})
	t.Run("WrongPassphrase", func(t *testing.T) {
		t.Parallel()
		repoDir := t.TempDir()
		mk := func(pass string) *config.Config {
			return loadCfg(t, "[global]\nrepo1-path="+repoDir+"\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass="+pass+"\n[db]\npg1-path="+data+"\n", "--stanza=db", "stanza-create")
		}
		first := mk("right-pass")
		if err := StanzaCreate(ctx, first, openTestRepos(t, first), zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		wrong := mk("WrongPass-Abc123")
		err := StanzaCreate(ctx, wrong, openTestRepos(t, wrong), zap.NewNop())
		if !errors.Is(err, repo.ErrWrongPassphrase) || !strings.Contains(err.Error(), "wrong passphrase for repo1") {
			t.Fatalf("wrong passphrase: %v", err)
		}
		if strings.Contains(err.Error(), "WrongPass-Abc123") || strings.Contains(err.Error(), "right-pass") {
			t.Fatalf("error reveals a passphrase: %v", err)
		}
		plain := loadCfg(t, "[global]\nrepo1-path="+repoDir+"\n[db]\npg1-path="+data+"\n", "--stanza=db", "stanza-create")
		if err := StanzaCreate(ctx, plain, openTestRepos(t, plain), zap.NewNop()); !errors.Is(err, repo.ErrEncrypted) {
			t.Fatalf("encrypted repo without passphrase: %v, want ErrEncrypted", err)
		}
	})
	t.Run("OtherCluster", func(t *testing.T) {
		t.Parallel()
		repoDir := t.TempDir()
		cfg := loadCfg(t, "[global]\nrepo1-path="+repoDir+"\n[db]\npg1-path="+data+"\n", "--stanza=db", "stanza-create")
		repos := openTestRepos(t, cfg)
		if err := StanzaCreate(ctx, cfg, repos, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		// Rewrite the stanza for another system id, as if pointed at another cluster.
		rs := openStanza(cfg, repos[0])
		ai, bi, err := loadStanzaInfo(ctx, rs)
		if err != nil {
			t.Fatal(err)
		}
		ai.History[0].SystemID++
		bi.History[0].SystemID++
		if err := rs.SaveArchiveInfo(ctx, ai); err != nil {
			t.Fatal(err)
		}
		if err := rs.SaveBackupInfo(ctx, bi); err != nil {
			t.Fatal(err)
		}
		err = StanzaCreate(ctx, cfg, repos, zap.NewNop())
		var ce CodedError
		if !errors.As(err, &ce) || ce.Code() != codeDBMismatch {
			t.Fatalf("stanza of another cluster: %v, want code %d", err, codeDBMismatch)
		}
		// stanza-upgrade makes this cluster current (history id 2).
		if err := StanzaUpgrade(ctx, cfg, repos, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		ai, _, err = loadStanzaInfo(ctx, rs)
		if err != nil || ai.CurrentID != 2 || len(ai.History) != 2 {
			t.Fatalf("after stanza-upgrade: %+v, %v", ai, err)
		}
		if err := StanzaCreate(ctx, cfg, repos, zap.NewNop()); err != nil {
			t.Fatalf("stanza-create after upgrade: %v", err)
		}
	})
}
