package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/repo"
)

// TestPgsidecarBackupRestoredByPgbackrest takes a full, a differential and an
// incremental backup with pgsidecar of a cluster archiving with stock
// pgbackrest (posix) or pgsidecar (s3), then checks with pgbackrest 2.45 itself that the repository
// lists the three backups with their references, verifies, and restores the
// incremental backup into a cluster that holds the data recorded when it was
// taken. pgsidecar's own verify must accept the repository too.
func TestPgsidecarBackupRestoredByPgbackrest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v             repoVariant
		pgsidecarPush bool
	}{
		{repoVariant{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"}, false},
		{repoVariant{Storage: storageS3, Cipher: cipherAES, Compress: "zst"}, true},
	} {
		v := tc.v
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			cfg := newPgbackrestConfig(t, v)
			cfg.Options = map[string]string{"process-max": "2"}
			archiveCommand := cfg.ArchiveCommand()
			if tc.pgsidecarPush {
				archiveCommand = fmt.Sprintf("%s --config=%s --stanza=%s archive-push %%p", pgsidecarBin, cfg.Path, pgbackrestStanza)
			}
			c := newCluster(t, clusterOptions{ArchiveCommand: archiveCommand, DataChecksums: true})
			cfg.Write(t, c)
			c.Start(t)
			stanza := "--stanza=" + pgbackrestStanza
			pgsidecarRun(t, cfg.Path, stanza, "stanza-create")

			c.Pgbench(t, "-i", "-s", "1", "-q")
			c.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL); INSERT INTO fixture_marks (phase) VALUES ('full')")
			// An unlogged table: its main fork must not be in the backup.
			c.SQL(t, "CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 1000) g")
			pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")

			c.Pgbench(t, "-n", "-c", "2", "-t", "100")
			c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('diff')")
			pgsidecarRun(t, cfg.Path, stanza, "--type=diff", "backup")

			c.Pgbench(t, "-n", "-c", "2", "-t", "100")
			c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('incr')")
			want := c.SQL(t, fixtureDataQuery)
			pgsidecarRun(t, cfg.Path, stanza, "--type=incr", "backup")

			info := pgbackrestInfoJSON(t, cfg.Path)
			if info.Status.Code != 0 {
				t.Fatalf("pgbackrest info: status %d %s", info.Status.Code, info.Status.Message)
			}
			if len(info.Backup) != 3 {
				t.Fatalf("pgbackrest info: %d backups, want 3", len(info.Backup))
			}
			full, diff, incr := info.Backup[0], info.Backup[1], info.Backup[2]
			for i, want := range []string{"full", "diff", "incr"} {
				if got := info.Backup[i].Type; got != want {
					t.Errorf("backup %d (%s): type %s, want %s", i, info.Backup[i].Label, got, want)
				}
			}
			if !fullLabel.MatchString(full.Label) || !strings.HasPrefix(diff.Label, full.Label+"_") || !strings.HasSuffix(diff.Label, "D") {
				t.Errorf("labels %s, %s: not a full and its differential", full.Label, diff.Label)
			}
			if m := incrLabel.FindStringSubmatch(incr.Label); m == nil || m[1] != full.Label {
				t.Errorf("incremental label %s does not belong to the set of %s", incr.Label, full.Label)
			}
			if diff.Prior == nil || *diff.Prior != full.Label {
				t.Errorf("diff prior %v, want %s", diff.Prior, full.Label)
			}
			if incr.Prior == nil || *incr.Prior != diff.Label {
				t.Errorf("incr prior %v, want %s", incr.Prior, diff.Label)
			}
			for _, b := range []pgbackrestBackup{diff, incr} {
				if b.Info.Delta >= b.Info.Size || b.Info.Repository.Delta >= b.Info.Repository.Size {
					t.Errorf("%s: delta %d of size %d (repo %d of %d): unchanged files were copied again",
						b.Label, b.Info.Delta, b.Info.Size, b.Info.Repository.Delta, b.Info.Repository.Size)
				}
				if b.Error == nil || *b.Error {
					t.Errorf("%s: backup error flag %v, want false", b.Label, b.Error)
				}
			}
			if got := strings.Join(incr.Reference, ","); got != full.Label+","+diff.Label {
				t.Errorf("incr references %q, want %s,%s", got, full.Label, diff.Label)
			}

			requireVerified(t, cfg.Path, full.Label, diff.Label, incr.Label)
			pgsidecarRun(t, cfg.Path, stanza, "verify")
			requireSameInfo(t, cfg.Path)

			r := pgbackrestRestoreStarted(t, cfg.Path, incr.Label)
			if got := r.SQL(t, fixtureDataQuery); got != want {
				t.Errorf("restored data %q, want %q", got, want)
			}
			if got := r.SQL(t, "SELECT count(*) FROM scratch"); got != "0" {
				t.Errorf("unlogged table has %s rows after restore, want 0 (reset from its init fork)", got)
			}
			r.Stop(t)
		})
	}
}

// TestPgsidecarBackupInterop (a cluster with a tablespace) mixes pgsidecar and stock pgbackrest backups in
// one backup set: a pgbackrest full and a pgsidecar full taken back to back
// must describe the same files (names, sizes, checksums, owners, modes,
// paths, databases, page checksum results); a pgbackrest incremental on top of the pgsidecar full
// must reference it; a pgsidecar incremental on top of that must restore
// with pgbackrest.
func TestPgsidecarBackupInterop(t *testing.T) {
	t.Parallel()
	v := repoVariant{Storage: storagePosix, Cipher: cipherNone, Compress: "lz4"}
	cfg := newPgbackrestConfig(t, v)
	cfg.Options = map[string]string{"repo1-retention-full": "9"}
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgbackrestRun(t, cfg.Path, stanza, "stanza-create")
	c.Pgbench(t, "-i", "-s", "1", "-q")
	c.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL); INSERT INTO fixture_marks (phase) VALUES ('full')")
	// A tablespace, with a table in it.
	u := requirePostgres(t)
	tsDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "tablespace"), "ts1"))
	c.SQL(t, "CREATE TABLESPACE ts1 LOCATION '"+tsDir+"'")
	c.SQL(t, "CREATE TABLE in_ts1 TABLESPACE ts1 AS SELECT g FROM generate_series(1, 5000) g")
	// A table with a corrupt page on disk: both tools must report the same page.
	c.SQL(t, "CREATE TABLE corrupt_me AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 100) g")
	relPath := filepath.Join(c.DataDir(), c.SQL(t, "SELECT pg_relation_filepath('corrupt_me')"))
	c.SQL(t, "CHECKPOINT")
	c.Stop(t)
	rel, err := os.ReadFile(relPath)
	if err != nil || len(rel) < 3*8192 {
		t.Fatalf("read %s: %d bytes, %v", relPath, len(rel), err)
	}
	rel[8192+4000] ^= 0xFF
	if err := os.WriteFile(relPath, rel, 0); err != nil {
		t.Fatal(err)
	}
	c.Start(t)

	pgbackrestRun(t, cfg.Path, stanza, "--type=full", "backup")
	pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")
	info := pgbackrestInfoJSON(t, cfg.Path)
	if len(info.Backup) != 2 {
		t.Fatalf("pgbackrest info: %d backups, want 2", len(info.Backup))
	}
	theirs := loadPosixManifest(t, cfg, info.Backup[0].Label)
	ours := loadPosixManifest(t, cfg, info.Backup[1].Label)
	compareManifests(t, theirs, ours)
	corruptName := "pg_data/" + strings.TrimPrefix(relPath, c.DataDir()+"/")
	found := false
	for _, f := range ours.Files {
		if f.Name == corruptName {
			found = true
			if !f.ChecksumPage || !f.ChecksumPageError || f.ChecksumPageErrorList != "[1]" {
				t.Errorf("%s: checksum-page %v error %v list %q, want page 1 reported", f.Name, f.ChecksumPage, f.ChecksumPageError, f.ChecksumPageErrorList)
			}
		}
	}
	if !found {
		t.Errorf("%s is not in the manifest", corruptName)
	}
	if !*info.Backup[0].Error || !*info.Backup[1].Error {
		t.Errorf("backup error flags %v/%v, want both set (a corrupt page)", *info.Backup[0].Error, *info.Backup[1].Error)
	}

	c.Pgbench(t, "-n", "-c", "2", "-t", "50")
	c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('pgbackrest incr')")
	pgbackrestRun(t, cfg.Path, stanza, "--type=incr", "backup")
	c.Pgbench(t, "-n", "-c", "2", "-t", "50")
	c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('pgsidecar incr')")
	c.SQL(t, "INSERT INTO in_ts1 SELECT g FROM generate_series(1, 100) g")
	want := c.SQL(t, fixtureDataQuery) + "|" + c.SQL(t, "SELECT count(*) FROM in_ts1")
	pgsidecarRun(t, cfg.Path, stanza, "--type=incr", "backup")

	info = pgbackrestInfoJSON(t, cfg.Path)
	if len(info.Backup) != 4 {
		t.Fatalf("pgbackrest info: %d backups, want 4", len(info.Backup))
	}
	ourFull, theirIncr, ourIncr := info.Backup[1], info.Backup[2], info.Backup[3]
	if theirIncr.Prior == nil || *theirIncr.Prior != ourFull.Label {
		t.Errorf("pgbackrest incr prior %v, want the pgsidecar full %s", theirIncr.Prior, ourFull.Label)
	}
	if ourIncr.Prior == nil || *ourIncr.Prior != theirIncr.Label {
		t.Errorf("pgsidecar incr prior %v, want the pgbackrest incr %s", ourIncr.Prior, theirIncr.Label)
	}
	incr := loadPosixManifest(t, cfg, ourIncr.Label)
	refs := map[string]int{}
	for _, f := range incr.Files {
		refs[f.Reference]++
	}
	if refs[ourFull.Label] == 0 || refs[""] == 0 {
		t.Errorf("pgsidecar incr: references per backup %v: want files from the full and new copies", refs)
	}
	requireVerified(t, cfg.Path)

	restoreDir := newWorkDir(t, u, "restore")
	dataDir := mkdirAs(t, u, filepath.Join(restoreDir, "data"))
	tsRestored := mkdirAs(t, u, filepath.Join(restoreDir, "ts"))
	pgbackrestRun(t, cfg.Path, stanza, "--pg1-path="+dataDir, "--tablespace-map-all="+tsRestored,
		"--type=immediate", "--target-action=promote", "restore")
	r := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
	r.Start(t)
	if got := r.SQL(t, fixtureDataQuery) + "|" + r.SQL(t, "SELECT count(*) FROM in_ts1"); got != want {
		t.Errorf("restored data %q, want %q", got, want)
	}
	if got := r.SQL(t, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"); !strings.HasPrefix(got, tsRestored) {
		t.Errorf("restored tablespace at %q, want under %s", got, tsRestored)
	}
	r.Stop(t)
}

// loadPosixManifest reads the manifest of backup label from an unencrypted
// posix repository.
func loadPosixManifest(t *testing.T, cfg *pgbackrestConfig, label string) *repo.Manifest {
	t.Helper()
	rel := "backup/" + pgbackrestStanza + "/" + label + "/backup.manifest"
	m, err := repo.LoadManifest(rel, cfg.Repo.ReadFile(t, rel))
	if err != nil {
		t.Fatalf("load manifest: %v", err)
	}
	return m
}

// compareManifests checks that two full backups of an idle cluster taken
// back to back describe the same cluster the same way. Files written by the
// checkpoint of the second backup start may differ in size, timestamp and
// content; their names, owners and modes may not.
func compareManifests(t *testing.T, want, got *repo.Manifest) {
	t.Helper()
	if got.DB != want.DB {
		t.Errorf("backup:db %+v, want %+v", got.DB, want.DB)
	}
	if !reflect.DeepEqual(got.Databases, want.Databases) {
		t.Errorf("databases %+v, want %+v", got.Databases, want.Databases)
	}
	if !reflect.DeepEqual(got.Paths, want.Paths) {
		t.Errorf("paths:\n got %+v\nwant %+v", got.Paths, want.Paths)
	}
	if !reflect.DeepEqual(got.Links, want.Links) || !reflect.DeepEqual(got.Targets, want.Targets) || len(got.Links) == 0 {
		t.Errorf("links %+v targets %+v, want %+v %+v", got.Links, got.Targets, want.Links, want.Targets)
	}
	o, w := got.Options, want.Options
	if o.CompressType != w.CompressType || o.Online != w.Online || o.ArchiveCheck != w.ArchiveCheck || *o.CompressLevel != *w.CompressLevel ||
		o.ChecksumPage == nil || w.ChecksumPage == nil || *o.ChecksumPage != *w.ChecksumPage || !*o.ChecksumPage {
		t.Errorf("options %+v, want %+v", o, w)
	}
	if got.ArchiveStart <= want.ArchiveStart || got.ArchiveStop < got.ArchiveStart {
		t.Errorf("archive start/stop %s/%s, want after the first backup's start %s", got.ArchiveStart, got.ArchiveStop, want.ArchiveStart)
	}
	byName := map[string]repo.ManifestFile{}
	for _, f := range want.Files {
		byName[f.Name] = f
	}
	same := 0
	for _, f := range got.Files {
		w, ok := byName[f.Name]
		delete(byName, f.Name)
		if !ok {
			t.Errorf("file %s is not in pgbackrest's manifest", f.Name)
			continue
		}
		if f.Mode != w.Mode || f.User != w.User || f.Group != w.Group {
			t.Errorf("file %s: mode %o %s:%s, want %o %s:%s", f.Name, f.Mode, f.User, f.Group, w.Mode, w.User, w.Group)
		}
		if f.ChecksumPage != w.ChecksumPage || f.ChecksumPageError != w.ChecksumPageError || f.ChecksumPageErrorList != w.ChecksumPageErrorList {
			t.Errorf("file %s: checksum-page %v error %v, want %v %v", f.Name, f.ChecksumPage, f.ChecksumPageError, w.ChecksumPage, w.ChecksumPageError)
		}
		if f.Name == "pg_data/backup_label" || f.Timestamp != w.Timestamp || f.Size != w.Size {
			continue
		}
		same++
		if f.Checksum != w.Checksum && f.Size != 0 {
			t.Errorf("file %s: checksum %s, want %s (same size and timestamp)", f.Name, f.Checksum, w.Checksum)
		}
		if w.RepoChecksum != "" && f.RepoChecksum == "" {
			t.Errorf("file %s: no repo checksum", f.Name)
		}
	}
	for name := range byName {
		t.Errorf("file %s of pgbackrest's manifest is missing", name)
	}
	if same < len(got.Files)/2 {
		t.Errorf("only %d of %d files unchanged between the two backups", same, len(got.Files))
	}
}

// BenchmarkBackupFull compares the throughput of a full backup of a pgbench
// -s 20 database (about 300 MB) by pgsidecar and by pgbackrest 2.45, both
// with process-max 2, gz level 6 and page checksums into a posix repository. It reports
// MB/s of data read from the cluster.
func BenchmarkBackupFull(b *testing.B) {
	v := repoVariant{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"}
	cfg := newPgbackrestConfig(b, v)
	cfg.Options = map[string]string{"process-max": "2", "repo1-retention-full": "99", "compress-level": "6"}
	c := newCluster(b, clusterOptions{ArchiveCommand: cfg.ArchiveCommand(), DataChecksums: true})
	cfg.Write(b, c)
	c.Start(b)
	stanza := "--stanza=" + pgbackrestStanza
	pgbackrestRun(b, cfg.Path, stanza, "stanza-create")
	c.Pgbench(b, "-i", "-s", "20", "-q")
	c.SQL(b, "CHECKPOINT")
	for _, tool := range []string{"pgsidecar", "pgbackrest"} {
		b.Run(tool, func(b *testing.B) {
			var size int64
			for b.Loop() {
				if tool == "pgsidecar" {
					pgsidecarRun(b, cfg.Path, stanza, "--type=full", "backup")
				} else {
					pgbackrestRun(b, cfg.Path, stanza, "--type=full", "backup")
				}
				b.StopTimer()
				info := pgbackrestInfoJSON(b, cfg.Path)
				size = info.Backup[len(info.Backup)-1].Info.Size
				b.StartTimer()
			}
			b.ReportMetric(float64(size)*float64(b.N)/1e6/b.Elapsed().Seconds(), "MB/s")
		})
	}
}

// pgbenchInvariant holds in every consistent state of a pgbench database
// written only by pgbench's TPC-B-like transactions: the balances of
// accounts, tellers and branches each add up to the sum of the history.
const pgbenchInvariant = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) " +
	"AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) " +
	"AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"

// startPgbench runs pgbench against c in the background for d and returns a
// function that waits for it and reports its failure.
func startPgbench(t *testing.T, c *cluster, d time.Duration) func() error {
	t.Helper()
	u := requirePostgres(t)
	cmd := exec.Command(filepath.Join(pgBin, "pgbench"), "-h", c.SocketDir(), "-p", strconv.Itoa(c.Port()), "-U", pgSuperuser,
		"-n", "-c", "4", "-T", strconv.Itoa(int(d.Seconds())), "postgres")
	cmd.Dir = c.WorkDir()
	cmd.Env = baseEnv(c.WorkDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential(), Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbench: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	return func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("pgbench: %w\n%s", err, out.String())
		}
		return nil
	}
}

// TestPgsidecarBackupUnderLoad takes a full and an incremental backup while
// pgbench writes, restores the incremental one with pgbackrest to its
// consistency point and checks that the restored database is consistent:
// pgbench's balance invariant holds and amcheck finds the indexes intact.
func TestPgsidecarBackupUnderLoad(t *testing.T) {
	t.Parallel()
	v := repoVariant{Storage: storagePosix, Cipher: cipherAES, Compress: "lz4"}
	cfg := newPgbackrestConfig(t, v)
	cfg.Options = map[string]string{"process-max": "3"}
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")
	c.Pgbench(t, "-i", "-s", "5", "-q")

	for _, typ := range []string{"full", "incr"} {
		wait := startPgbench(t, c, 6*time.Second)
		time.Sleep(time.Second)
		pgsidecarRun(t, cfg.Path, stanza, "--type="+typ, "backup")
		if err := wait(); err != nil {
			t.Fatal(err)
		}
	}
	info := pgbackrestInfoJSON(t, cfg.Path)
	if len(info.Backup) != 2 {
		t.Fatalf("pgbackrest info: %d backups, want 2", len(info.Backup))
	}
	if rep := pgbackrestVerify(t, cfg.Path); rep.Status != "ok" {
		t.Fatalf("pgbackrest verify: %s\n%s", rep.Status, rep.Text)
	}

	u := requirePostgres(t)
	dataDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "restore"), "data"))
	pgbackrestRun(t, cfg.Path, stanza, "--pg1-path="+dataDir, "--set="+info.Backup[1].Label,
		"--type=immediate", "--target-action=promote", "restore")
	r := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
	r.Start(t)
	if got := r.SQL(t, pgbenchInvariant); got != "t" {
		t.Errorf("restored pgbench balances are inconsistent")
	}
	if got := r.SQL(t, "SELECT count(*) FROM pgbench_history"); got == "0" {
		t.Errorf("restored pgbench_history is empty: the writes during the backups are missing")
	}
	r.SQL(t, "CREATE EXTENSION amcheck")
	for _, idx := range []string{"pgbench_accounts_pkey", "pgbench_branches_pkey", "pgbench_tellers_pkey"} {
		r.SQL(t, "SELECT bt_index_check('"+idx+"', true)")
	}
	r.Stop(t)
}
