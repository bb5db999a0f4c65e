package integration

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pgsidecarRestore restores with pgsidecar (--pg1-path=a new directory, the
// fixture's configuration, args) and returns the directory and the command's
// result.
func pgsidecarRestore(t testing.TB, confPath string, args ...string) (string, cmdResult) {
	t.Helper()
	u := requirePostgres(t)
	dataDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "restore"), "data"))
	return dataDir, pgsidecarRestoreInto(t, confPath, dataDir, args...)
}

// pgsidecarRestoreInto runs pgsidecar restore into dataDir and fails the test
// on a non-zero exit.
func pgsidecarRestoreInto(t testing.TB, confPath, dataDir string, args ...string) cmdResult {
	t.Helper()
	args = append([]string{"--stanza=" + pgbackrestStanza, "--pg1-path=" + dataDir, "--log-level-console=info"}, args...)
	res := pgsidecarTry(t, confPath, append(args, "restore")...)
	if res.Code != 0 {
		t.Fatalf("pgsidecar restore %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// TestRestoreStockPgbackrest restores backups that stock pgbackrest wrote,
// plain and encrypted, with pgsidecar: the incremental backup to its
// consistency point holds the data recorded when it was taken, and the
// recovery settings name pgsidecar's archive-get.
func TestRestoreStockPgbackrest(t *testing.T) {
	t.Parallel()
	for _, v := range []repoVariant{
		{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"},
		{Storage: storageS3, Cipher: cipherAES, Compress: "zst"},
	} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			f := pgbackrestRepo(t, v)
			dataDir, _ := pgsidecarRestore(t, f.Config.Path, "--set="+f.IncrLabel, "--type=immediate", "--target-action=promote", "--process-max=3")
			auto, err := os.ReadFile(filepath.Join(dataDir, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			wantCmd := fmt.Sprintf("restore_command = '%s --config=%s", pgsidecarBin, f.Config.Path)
			if !strings.Contains(string(auto), wantCmd) || !strings.Contains(string(auto), "archive-get %f \"%p\"'") ||
				!strings.Contains(string(auto), "recovery_target = 'immediate'") {
				t.Errorf("postgresql.auto.conf lacks the recovery settings (%s...):\n%s", wantCmd, auto)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "recovery.signal")); err != nil {
				t.Errorf("recovery.signal: %v", err)
			}
			c := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
			c.Start(t)
			if got := c.SQL(t, fixtureDataQuery); got != f.IncrData {
				t.Errorf("restored data %q, want %q", got, f.IncrData)
			}
			if got := c.SQL(t, "SELECT pg_is_in_recovery()"); got != "f" {
				t.Errorf("pg_is_in_recovery() = %s after restore, want f (promoted)", got)
			}
			c.Stop(t)
		})
	}
}

// TestRestorePITR archives and backs up with pgsidecar, writes rows before
// and after a target, and restores with pgsidecar to the target given as a
// time, a restore point name and an LSN: the rows before are there, none
// after. A delta restore over a modified restored directory then equals a
// clean restore and downloads only what changed.
func TestRestorePITR(t *testing.T) {
	t.Parallel()
	cfg := newPgbackrestConfig(t, repoVariant{Storage: storagePosix, Cipher: cipherAES, Compress: "lz4"})
	archiveCommand := fmt.Sprintf("%s --config=%s --stanza=%s archive-push %%p", pgsidecarBin, cfg.Path, pgbackrestStanza)
	c := newCluster(t, clusterOptions{ArchiveCommand: archiveCommand, DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")
	u := requirePostgres(t)
	tsDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "tablespace"), "ts1"))
	c.SQL(t, "CREATE TABLESPACE ts1 LOCATION '"+tsDir+"'")
	c.SQL(t, "CREATE TABLE pitr (id serial PRIMARY KEY, phase text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()) TABLESPACE ts1")
	c.Pgbench(t, "-i", "-s", "1", "-q")
	c.SQL(t, "CREATE DATABASE excluded_db")
	excludedOID := c.SQL(t, "SELECT oid FROM pg_database WHERE datname = 'excluded_db'")
	pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")
	// The restores use the incremental backup, which references the full one.
	c.Pgbench(t, "-n", "-c", "2", "-t", "100")
	c.SQL(t, "INSERT INTO pitr (phase) VALUES ('before')")
	pgsidecarRun(t, cfg.Path, stanza, "--type=incr", "backup")
	// Each restore maps the tablespace to a new directory: its original one
	// is in use (and not empty).
	restoreTS := func(t *testing.T, args ...string) (string, string, cmdResult) {
		t.Helper()
		ts := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "tablespace"), "ts1"))
		dataDir, res := pgsidecarRestore(t, cfg.Path, append(args, "--tablespace-map=ts1="+ts)...)
		return dataDir, ts, res
	}
	if res := pgsidecarTry(t, cfg.Path, stanza, "--pg1-path="+mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "restore"), "data")), "restore"); res.Code == 0 {
		t.Errorf("restore over the source's tablespace directory succeeded")
	}

	for range 5 {
		c.SQL(t, "INSERT INTO pitr (phase) VALUES ('before')")
	}
	lsn := c.SQL(t, "SELECT pg_current_wal_insert_lsn()")
	target := c.SQL(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	c.SQL(t, "SELECT pg_create_restore_point('pitr_target')")
	time.Sleep(1100 * time.Millisecond)
	for range 5 {
		c.SQL(t, "INSERT INTO pitr (phase) VALUES ('after')")
	}
	c.WaitArchived(t, c.SwitchWAL(t), archiveWaitTimeout)
	wantBefore := c.SQL(t, "SELECT string_agg(id::text, ',' ORDER BY id) FROM pitr WHERE phase = 'before'")

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"time", []string{"--type=time", "--target=" + target}},
		{"name", []string{"--type=name", "--target=pitr_target"}},
		{"lsn", []string{"--type=lsn", "--target=" + lsn}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir, ts, _ := restoreTS(t, append(tc.args, "--target-action=promote")...)
			r := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
			r.Start(t)
			defer r.Stop(t)
			if got := r.SQL(t, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM pitr WHERE phase = 'before'"); got != wantBefore {
				t.Errorf("rows before the target: %q, want %q", got, wantBefore)
			}
			if got := r.SQL(t, "SELECT count(*) FROM pitr WHERE phase = 'after'"); got != "0" {
				t.Errorf("%s rows written after the target were recovered", got)
			}
			if got := r.SQL(t, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"); got != ts {
				t.Errorf("restored tablespace at %q, want %s", got, ts)
			}
		})
	}

	// A selective restore zeroes the excluded database's files (sparse, same
	// size) but restores everything else: the cluster starts and the
	// database can be dropped.
	t.Run("db-exclude", func(t *testing.T) {
		dataDir, _, res := restoreTS(t, "--db-exclude=excluded_db", "--type=immediate", "--target-action=promote")
		if !strings.Contains(res.Stderr, `"zeroed": `) || strings.Contains(res.Stderr, `"zeroed": 0`) {
			t.Errorf("no files zeroed:\n%s", res.Stderr)
		}
		dbDir := filepath.Join(dataDir, "base", excludedOID)
		ents, err := os.ReadDir(dbDir)
		if err != nil {
			t.Fatal(err)
		}
		nonEmpty := 0
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dbDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if e.Name() == "PG_VERSION" {
				if len(data) == 0 || data[0] == 0 {
					t.Errorf("PG_VERSION of the excluded database was zeroed")
				}
				continue
			}
			if len(data) > 0 {
				nonEmpty++
			}
			if slices.ContainsFunc(data, func(b byte) bool { return b != 0 }) {
				t.Errorf("%s of the excluded database is not zeroed", e.Name())
			}
		}
		if nonEmpty == 0 {
			t.Errorf("the excluded database has no non-empty files: nothing was tested")
		}
		r := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
		r.Start(t)
		defer r.Stop(t)
		if got := r.SQL(t, "SELECT count(*) FROM pitr WHERE phase = 'before'"); got == "0" {
			t.Errorf("the included database lost its rows")
		}
		r.SQL(t, "DROP DATABASE excluded_db")
	})

	t.Run("delta", func(t *testing.T) {
		clean, cleanTS, _ := restoreTS(t, "--type=none")
		dir, dirTS, _ := restoreTS(t, "--type=none")
		files := dirFiles(t, dir)
		// Change one file (same size), delete another, add a file and a directory.
		var changed, deleted string
		for _, name := range sortedKeys(files) {
			if !strings.HasPrefix(name, "base/") || files[name].size == 0 || files[name].dir {
				continue
			}
			switch {
			case changed == "":
				changed = name
			case deleted == "":
				deleted = name
			}
		}
		if changed == "" || deleted == "" {
			t.Fatalf("no files to change in %s", dir)
		}
		fh, err := os.OpenFile(filepath.Join(dir, changed), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt([]byte("garbage"), 0); err != nil {
			t.Fatal(err)
		}
		_ = fh.Close()
		if err := os.Remove(filepath.Join(dir, deleted)); err != nil {
			t.Fatal(err)
		}
		writeFileAs(t, u, filepath.Join(dir, "base", "extra"), []byte("extra"))
		versionDirs, err := filepath.Glob(filepath.Join(dirTS, "PG_15_*"))
		if err != nil || len(versionDirs) != 1 {
			t.Fatalf("tablespace version directory: %v %v", versionDirs, err)
		}
		writeFileAs(t, u, filepath.Join(versionDirs[0], "extra"), []byte("extra"))
		mkdirAs(t, u, filepath.Join(dir, "extra_dir"))
		writeFileAs(t, u, filepath.Join(mkdirAs(t, u, filepath.Join(dir, "extra_dir", "sub")), "f"), []byte("f"))

		// Without --delta the non-empty directory is refused.
		tsMap := "--tablespace-map=ts1=" + dirTS
		if res := pgsidecarTry(t, cfg.Path, stanza, "--pg1-path="+dir, tsMap, "--type=none", "restore"); res.Code == 0 {
			t.Fatalf("restore into a non-empty directory without --delta succeeded")
		}
		res := pgsidecarRestoreInto(t, cfg.Path, dir, "--type=none", "--delta", tsMap)
		want, got := dirFiles(t, clean), dirFiles(t, dir)
		for name, e := range dirFiles(t, cleanTS) {
			want["ts/"+name] = e
		}
		for name, e := range dirFiles(t, dirTS) {
			got["ts/"+name] = e
		}
		for _, name := range sortedKeys(want) {
			if g, ok := got[name]; !ok {
				t.Errorf("%s: missing after delta restore", name)
			} else if g != want[name] && name != "postgresql.auto.conf" {
				t.Errorf("%s: %+v after delta restore, clean restore has %+v", name, g, want[name])
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("%s: left by the delta restore", name)
			}
		}
		stat := func(key string) int {
			m := regexp.MustCompile(`"`+key+`": (\d+)`).FindAllStringSubmatch(res.Stderr, -1)
			if len(m) == 0 {
				t.Fatalf("no %q in the restore log:\n%s", key, res.Stderr)
			}
			n, _ := strconv.Atoi(m[len(m)-1][1])
			return n
		}
		total := 0
		for name, e := range want {
			if e.mode.IsRegular() && name != "recovery.signal" { // written by the restore, not in the backup
				total++
			}
		}
		// The changed and the deleted file, and pg_control (always written last).
		if got := stat("downloaded"); got != 3 {
			t.Errorf("delta restore downloaded %d files, want 3 (changed, deleted, pg_control)", got)
		}
		// Every other file of the backup was kept; the delta restore wrote
		// postgresql.auto.conf again (it is in the backup), so the clean
		// restore's recovery edits are what count: both have none.
		if got := stat("kept"); got != total-3 {
			t.Errorf("delta restore kept %d files, want %d", got, total-3)
		}
	})
}

// dirEntry is what dirFiles records of a file or directory.
type dirEntry struct {
	dir  bool
	mode fs.FileMode
	size int64
	sha1 string
}

// dirFiles lists dir recursively: relative name to kind, mode, size and SHA-1.
func dirFiles(t testing.TB, dir string) map[string]dirEntry {
	t.Helper()
	out := map[string]dirEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := dirEntry{dir: d.IsDir(), mode: fi.Mode()}
		if fi.Mode().IsRegular() {
			fh, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha1.New()
			n, err := io.Copy(h, fh)
			_ = fh.Close()
			if err != nil {
				return err
			}
			e.size, e.sha1 = n, hex.EncodeToString(h.Sum(nil))
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
