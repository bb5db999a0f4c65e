package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/pgsidecar/pgsidecar/repo"
)

// TestBackupRemovesPartialBackup leaves directories in a repository as a
// backup that died leaves them (backup.manifest.copy and some files, no
// backup.manifest) and checks, against a running cluster, that the newest
// one is removed before a backup starts, but not while another session
// holds the cluster's backup lock (a backup may be writing it), and that an
// older one behind a complete backup is left to expire, as pgBackRest does.
func TestBackupRemovesPartialBackup(t *testing.T) {
	t.Parallel()
	data := initdb(t)
	socket := startTestCluster(t, data)
	repoDir := t.TempDir()
	ini := "[global]\nrepo1-path=" + repoDir + "\nstart-fast=y\narchive-check=n\ncompress-type=lz4\nexpire-auto=n\n" +
		"[db]\npg1-path=" + data + "\npg1-socket-path=" + socket + "\npg1-user=postgres\n"
	stanzaFor(t, ini)
	cfg := loadCfg(t, ini, "--stanza=db", "--type=full", "backup")
	repos := openTestRepos(t, cfg)
	log := zaptest.NewLogger(t)
	cc, err := connConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := func(label string) string { return filepath.Join(repoDir, "backup", "db", label) }
	leave := func(label string, complete bool) {
		t.Helper()
		files := []string{"backup.manifest.copy", "pg_data/PG_VERSION.lz4", "pg_data/base/1/1249.lz4"}
		if complete {
			files = append(files, "backup.manifest")
		}
		for _, f := range files {
			p := filepath.Join(dir(label), filepath.FromSlash(f))
			if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists := func(label string) bool {
		_, err := os.Stat(dir(label))
		return err == nil
	}
	const partial, complete = "20260101-000000F", "20260102-000000F"

	// Another session holds the backup lock: the directory may be a running backup's.
	leave(partial, false)
	conn, err := pgx.ConnectConfig(t.Context(), cc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "select pg_advisory_lock("+strconv.FormatInt(backupAdvisoryLockID, 10)+"::bigint)"); err != nil {
		t.Fatal(err)
	}
	if err := removePartialBackup(t.Context(), cfg, repos[0], cc, log); err != nil {
		t.Fatal(err)
	}
	if !exists(partial) {
		t.Fatalf("%s removed while the backup lock was held", partial)
	}
	if err := conn.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := removePartialBackup(t.Context(), cfg, repos[0], cc, log); err != nil {
		t.Fatal(err)
	}
	if exists(partial) {
		t.Fatalf("%s left in place with the backup lock free", partial)
	}

	// Only the newest directory can be an unfinished backup to clean up.
	leave(partial, false)
	leave(complete, true)
	if err := removePartialBackup(t.Context(), cfg, repos[0], cc, log); err != nil {
		t.Fatal(err)
	}
	if !exists(partial) || !exists(complete) {
		t.Fatalf("removed with a newer complete backup: %s %v, %s %v", partial, !exists(partial), complete, !exists(complete))
	}
	if err := os.RemoveAll(dir(complete)); err != nil {
		t.Fatal(err)
	}

	// A backup removes the unfinished one first (expire-auto is off).
	if err := Backup(t.Context(), cfg, repos, log); err != nil {
		t.Fatalf("backup: %v", err)
	}
	if exists(partial) {
		t.Fatalf("%s left by the backup", partial)
	}
	bi, err := openStanza(cfg, repos[0]).LoadBackupInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(bi.Backups) != 1 || bi.Backups[0].Type != repo.BackupFull || !exists(bi.Backups[0].Label) {
		t.Fatalf("backups after the backup: %+v", bi.Backups)
	}
}
