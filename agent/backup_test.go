package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
)

func TestConnConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, pg               string
		host, user, db         string
		port                   uint16
		wantUserFromOSDefaults bool
	}{
		{"defaults", "pg1-path=/data\n", "/var/run/postgresql", "", "postgres", 5432, true},
		{"explicit", "pg1-path=/data\npg1-socket-path=/tmp/s o'ck\npg1-port=5433\npg1-user=backup\npg1-database=app\n",
			"/tmp/s o'ck", "backup", "app", 5433, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadCfg(t, "[global]\nrepo1-path="+t.TempDir()+"\n[db]\n"+tc.pg, "--stanza=db", "backup")
			cc, err := connConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if cc.Host != tc.host || cc.Port != tc.port || cc.Database != tc.db {
				t.Errorf("host %q port %d db %q, want %q %d %q", cc.Host, cc.Port, cc.Database, tc.host, tc.port, tc.db)
			}
			if !tc.wantUserFromOSDefaults && cc.User != tc.user {
				t.Errorf("user %q, want %q", cc.User, tc.user)
			}
			if cc.RuntimeParams["application_name"] != "pgsidecar [backup]" {
				t.Errorf("application_name %q", cc.RuntimeParams["application_name"])
			}
		})
	}
}

func TestBackupRepoSelection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ini := "[global]\nrepo1-path=" + filepath.Join(dir, "r1") + "\nrepo2-path=" + filepath.Join(dir, "r2") + "\n[db]\npg1-path=/data\n"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "repo1"},
		{[]string{"--repo=2"}, "repo2"},
	} {
		cfg := loadCfg(t, ini, append([]string{"--stanza=db", "backup"}, tc.args...)...)
		r, err := backupRepo(cfg, openTestRepos(t, cfg))
		if err != nil {
			t.Fatal(err)
		}
		if r.Name() != tc.want {
			t.Errorf("%v: backup goes to %s, want %s", tc.args, r.Name(), tc.want)
		}
	}
}

func TestBackupErrors(t *testing.T) {
	t.Parallel()
	dataA, dataB := initdb(t), initdb(t)
	for _, tc := range []struct {
		name    string
		stanza  string // pg1-path for stanza-create; "" for none
		pgPath  string
		args    []string
		code    int
		mention string
	}{
		{"no stanza", "", dataA, []string{"--type=full"}, 0, "backup.info"},
		{"cluster not running", dataA, dataA, []string{"--type=full"}, codeDBConnect, "connect"},
		{"other cluster", dataA, dataB, []string{"--type=incr"}, codeDBMismatch, "system-id"},
		{"invalid type", dataA, dataA, []string{"--type=bogus"}, -1, "type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repoDir := t.TempDir()
			if tc.stanza != "" {
				cfg := loadCfg(t, "[global]\nrepo1-path="+repoDir+"\n[db]\npg1-path="+tc.stanza+"\n", "--stanza=db", "stanza-create")
				if err := StanzaCreate(t.Context(), cfg, openTestRepos(t, cfg), zap.NewNop()); err != nil {
					t.Fatal(err)
				}
			}
			ini := "[global]\nrepo1-path=" + repoDir + "\n[db]\npg1-path=" + tc.pgPath + "\npg1-socket-path=" + t.TempDir() + "\n"
			cfg, err := config.Load(config.Input{Args: append([]string{"--config=" + writeIni(t, ini), "--stanza=db", "backup"}, tc.args...)})
			if err != nil {
				if tc.code == -1 && strings.Contains(err.Error(), tc.mention) {
					return // rejected by the option parser
				}
				t.Fatal(err)
			}
			err = Backup(t.Context(), cfg, openTestRepos(t, cfg), zap.NewNop())
			if err == nil {
				t.Fatal("backup succeeded")
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q, want it to mention %q", err, tc.mention)
			}
			var coded CodedError
			if tc.code > 0 && (!errors.As(err, &coded) || coded.Code() != tc.code) {
				t.Errorf("error %v: want exit code %d", err, tc.code)
			}
		})
	}
}

// writeIni writes a configuration file with an empty include directory and returns its
// path.
func writeIni(t *testing.T, ini string) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "pgbackrest.conf")
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
