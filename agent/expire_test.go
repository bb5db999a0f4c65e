package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsidecar/pgsidecar/repo"
)

const (
	expF1  = "20261101-000000F"
	expI1  = "20261101-000000F_20261102-000000I"
	expBad = "20261103-000000F" // failed: only backup.manifest.copy
	expF2  = "20261105-000000F"
	expF3  = "20261107-000000F" // unfinished, newer than every backup
	// expFound is a complete pgBackRest backup of repo/testdata not in backup.info.
	expFound = "20261129-102857F"
)

// expSystemID is the system id of the cluster of repo/testdata/pgbackrest.
const expSystemID = 7713538493753673880

func expSeg(n int) string { return fmt.Sprintf("00000001%08X%08X", 0, n) }

// expireRepoDir writes a posix repository for stanza db: F1 (WAL 2..3) with an
// incremental, F2 (WAL 6..7), a failed and an unfinished backup directory and
// WAL segments 1..8.
func expireRepoDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	ai, err := repo.NewArchiveInfo("15", expSystemID, "")
	if err != nil {
		t.Fatal(err)
	}
	bi, err := repo.NewBackupInfo("15", expSystemID, 202209061, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		label, prior string
		start, stop  int
	}{{expF1, "", 2, 3}, {expI1, expF1, 4, 4}, {expF2, "", 6, 7}} {
		typ := repo.BackupFull
		if b.prior != "" {
			typ = repo.BackupIncr
		}
		bi.Add(repo.Backup{
			Label: b.label, Prior: b.prior, Type: typ, DBID: 1, BackrestFormat: 5, BackrestVersion: "2.45",
			ArchiveStart: expSeg(b.start), ArchiveStop: expSeg(b.stop), TimestampStart: 1, TimestampStop: 2,
			LSNStart: "0/2000028", LSNStop: "0/3000050", OptionOnline: true, OptionArchiveCheck: true,
		})
		for _, f := range []string{"backup.manifest", "backup.manifest.copy", "pg_data/PG_VERSION.gz"} {
			write("backup/db/"+b.label+"/"+f, []byte("x"))
		}
	}
	write("backup/db/"+expBad+"/backup.manifest.copy", []byte("x"))
	write("backup/db/"+expF3+"/backup.manifest.copy", []byte("x"))
	write("backup/db/"+expF3+"/pg_data/base/1/1.gz", []byte("x"))
	for n := 1; n <= 8; n++ {
		write("archive/db/15-1/0000000100000000/"+expSeg(n)+"-"+strings.Repeat("0", 40)+".gz", []byte("x"))
	}
	write("archive/db/15-1/0000000100000000/"+expSeg(2)+".00000028.backup", []byte("x"))
	for name, save := range map[string]func() ([]byte, error){"archive/db/archive.info": ai.Save, "backup/db/backup.info": bi.Save} {
		data, err := save()
		if err != nil {
			t.Fatal(err)
		}
		write(name, data)
		write(name+".copy", data)
	}
	return dir
}

// repoTree lists the files and directories under dir (directories end in "/").
func repoTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExpire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		args        []string
		afterBackup bool
		setup       func(t *testing.T, dir string)
		code        int
		gone, kept  []string // paths under the repository
		backups     []string
		logs        []string
	}{
		{
			name: "retention", args: []string{"--repo1-retention-full=1"},
			gone: []string{"backup/db/" + expF1 + "/", "backup/db/" + expI1 + "/", "backup/db/" + expBad + "/",
				"archive/db/15-1/0000000100000000/" + expSeg(5) + "-" + strings.Repeat("0", 40) + ".gz",
				"archive/db/15-1/0000000100000000/" + expSeg(2) + ".00000028.backup"},
			kept: []string{"backup/db/" + expF2 + "/backup.manifest", "backup/db/" + expF3 + "/backup.manifest.copy",
				"archive/db/15-1/0000000100000000/" + expSeg(6) + "-" + strings.Repeat("0", 40) + ".gz",
				"archive/db/archive.info", "backup/db/backup.info.copy"},
			backups: []string{expF2},
			logs: []string{"repo1: expire full backup set " + expF1 + ", " + expI1,
				"repo1: remove expired backup " + expI1, "repo1: remove expired backup " + expBad,
				"repo1: remove expired backup " + expF1, "repo1: keep unfinished backup " + expF3 + " (a backup may be in progress)",
				"repo1: 15-1 remove archive, start = " + expSeg(1) + ", stop = " + expSeg(5)},
		},
		{
			name: "after backup removes the unfinished directory", args: []string{"--repo1-retention-full=1"}, afterBackup: true,
			gone:    []string{"backup/db/" + expF1 + "/", "backup/db/" + expF3 + "/"},
			kept:    []string{"backup/db/" + expF2 + "/backup.manifest"},
			backups: []string{expF2},
			logs:    []string{"repo1: remove expired backup " + expF3},
		},
		{
			name: "retention kept", args: []string{"--repo1-retention-full=2"},
			gone: []string{"backup/db/" + expBad + "/",
				"archive/db/15-1/0000000100000000/" + expSeg(1) + "-" + strings.Repeat("0", 40) + ".gz"},
			kept: []string{"backup/db/" + expI1 + "/backup.manifest", "backup/db/" + expF3 + "/",
				"archive/db/15-1/0000000100000000/" + expSeg(5) + "-" + strings.Repeat("0", 40) + ".gz"},
			backups: []string{expF1, expI1, expF2},
			logs:    []string{"repo1: 15-1 remove archive, start = " + expSeg(1) + ", stop = " + expSeg(1)},
		},
		{
			name: "no retention", gone: []string{"backup/db/" + expBad + "/"},
			kept:    []string{"archive/db/15-1/0000000100000000/" + expSeg(1) + "-" + strings.Repeat("0", 40) + ".gz"},
			backups: []string{expF1, expI1, expF2},
			logs:    []string{"\noption 'repo1-retention-archive' is not set - archive logs will not be expired"},
		},
		{
			// --set ignores retention; the resumable newest directory is not one of
			// the set's dependents, so it stays.
			name: "adhoc", args: []string{"--repo1-retention-full=9", "--set=" + expI1},
			gone:    []string{"backup/db/" + expI1 + "/", "backup/db/" + expBad + "/"},
			kept:    []string{"backup/db/" + expF1 + "/backup.manifest", "backup/db/" + expF3 + "/"},
			backups: []string{expF1, expF2},
			logs:    []string{"repo1: expire adhoc backup " + expI1},
		},
		{
			name: "adhoc latest full", args: []string{"--set=" + expF2},
			backups: []string{expF1, expI1},
			logs:    []string{"repo1: expire adhoc backup " + expF2, "repo1: expiring latest backup " + expF2},
		},
		{
			name: "adhoc missing label", args: []string{"--set=20200101-000000F"},
			backups: []string{expF1, expI1, expF2},
			logs:    []string{"backup 20200101-000000F does not exist"},
		},
		{
			// backup.info is reconciled with the directories first, as pgBackRest's
			// infoBackupLoadFileReconstruct does.
			name: "reconstruct",
			setup: func(t *testing.T, dir string) {
				t.Helper()
				if err := os.Remove(filepath.Join(dir, "backup/db", expI1, "backup.manifest")); err != nil {
					t.Fatal(err)
				}
				m, err := os.ReadFile("../repo/testdata/pgbackrest/repo1/" + expFound + ".manifest")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Join(dir, "backup/db", expFound), 0o750); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{"backup.manifest", "backup.manifest.copy"} {
					if err := os.WriteFile(filepath.Join(dir, "backup/db", expFound, f), m, 0o640); err != nil {
						t.Fatal(err)
					}
				}
			},
			// expF3 is no longer the newest directory: it is removed.
			gone:    []string{"backup/db/" + expI1 + "/", "backup/db/" + expF3 + "/"},
			kept:    []string{"backup/db/" + expFound + "/backup.manifest"},
			backups: []string{expF1, expF2, expFound},
			logs: []string{"backup '" + expI1 + "' missing manifest removed from backup.info",
				"backup '" + expFound + "' found in repository added to backup.info",
				"repo1: remove expired backup " + expF3, "repo1: remove expired backup " + expI1},
		},
		{
			name: "unreadable manifest not in backup.info",
			setup: func(t *testing.T, dir string) {
				t.Helper()
				if err := os.WriteFile(filepath.Join(dir, "backup/db", expBad, "backup.manifest"), []byte("garbage"), 0o640); err != nil {
					t.Fatal(err)
				}
			},
			args: []string{"--repo1-retention-full=1"}, code: codeExpireCommand,
			kept:    []string{"backup/db/" + expBad + "/backup.manifest", "backup/db/" + expF1 + "/backup.manifest"},
			backups: []string{expF1, expI1, expF2},
		},
		{
			name: "dry run", args: []string{"--repo1-retention-full=1", "--dry-run"},
			kept: []string{"backup/db/" + expF1 + "/backup.manifest", "backup/db/" + expI1 + "/backup.manifest.copy",
				"backup/db/" + expBad + "/backup.manifest.copy",
				"archive/db/15-1/0000000100000000/" + expSeg(1) + "-" + strings.Repeat("0", 40) + ".gz"},
			backups: []string{expF1, expI1, expF2},
			logs: []string{"[DRY-RUN] repo1: expire full backup set " + expF1 + ", " + expI1,
				"[DRY-RUN] repo1: remove expired backup " + expF1,
				"[DRY-RUN] repo1: 15-1 remove archive, start = " + expSeg(1) + ", stop = " + expSeg(5)},
		},
		{name: "adhoc invalid label", args: []string{"--set=latest"}, code: codeOptionInvalid, backups: []string{expF1, expI1, expF2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := expireRepoDir(t)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			cfg := loadCfg(t, "[global]\nrepo1-path="+dir+"\n[db]\npg1-path=/nonexistent\n",
				append(append([]string{"--stanza=db"}, tc.args...), "expire")...)
			repos := openTestRepos(t, cfg)
			core, logs := observer.New(zap.InfoLevel)
			log := zap.New(core)
			var err error
			if tc.afterBackup {
				err = ExpireAfterBackup(t.Context(), cfg, repos, log)
			} else {
				err = Expire(t.Context(), cfg, repos, log)
			}
			if got := codeOf(err); got != tc.code && !(tc.code == 0 && err == nil) {
				t.Fatalf("err = %v (code %d), want code %d", err, got, tc.code)
			}
			if tc.code == 0 && err != nil {
				t.Fatal(err)
			}
			tree := repoTree(t, dir)
			for _, g := range tc.gone {
				if slices.Contains(tree, g) {
					t.Errorf("%s still exists", g)
				}
			}
			for _, k := range tc.kept {
				if !slices.Contains(tree, k) {
					t.Errorf("%s was removed", k)
				}
			}
			bi, err := openStanza(cfg, repos[0]).LoadBackupInfo(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range bi.Backups {
				got = append(got, b.Label)
				for _, f := range []string{"backup.manifest", "backup.manifest.copy"} {
					if !slices.Contains(tree, "backup/db/"+b.Label+"/"+f) {
						t.Errorf("backup %s in backup.info lost its %s", b.Label, f)
					}
				}
			}
			if !slices.Equal(got, tc.backups) {
				t.Errorf("backup.info lists %v, want %v", got, tc.backups)
			}
			info, _ := os.ReadFile(filepath.Join(dir, "backup/db/backup.info"))
			infoCopy, _ := os.ReadFile(filepath.Join(dir, "backup/db/backup.info.copy"))
			if !bytes.Equal(info, infoCopy) {
				t.Error("backup.info and its copy differ")
			}
			var msgs []string
			for _, e := range logs.All() {
				msgs = append(msgs, e.Message)
			}
			all := strings.Join(msgs, "\n")
			for _, want := range tc.logs {
				if !strings.Contains(all, want) {
					t.Errorf("log lacks %q:\n%s", want, all)
				}
			}
		})
	}
}

func TestExpireRefusesOnlyFull(t *testing.T) {
	t.Parallel()
	dir := expireRepoDir(t)
	for _, set := range []string{expF1, expF2} {
		cfg := loadCfg(t, "[global]\nrepo1-path="+dir+"\n[db]\npg1-path=/nonexistent\n", "--stanza=db", "--set="+set, "expire")
		repos := openTestRepos(t, cfg)
		err := Expire(t.Context(), cfg, repos, zap.NewNop())
		if set == expF1 && err != nil {
			t.Fatalf("expire --set=%s: %v", set, err)
		}
		if set == expF2 && codeOf(err) != codeExpireCommand {
			t.Fatalf("expire --set=%s (the only full left): err %v, want code %d", set, err, codeExpireCommand)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "backup/db", expF2, "backup.manifest")); err != nil {
		t.Errorf("refused expiry touched %s: %v", expF2, err)
	}
}
