package integration

import (
	"bytes"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixtureDataQuery summarizes the fixture's data; its result is recorded
// when each backup is taken, for restore tests to compare against.
const fixtureDataQuery = "SELECT (SELECT count(*) FROM pgbench_accounts) || ':' || (SELECT sum(abalance) FROM pgbench_accounts) || ':' || (SELECT string_agg(phase, ',' ORDER BY id) FROM fixture_marks)"

// archiveWaitTimeout bounds the wait for one segment to be archived.
const archiveWaitTimeout = time.Minute

// pgbackrestFixture is a running cluster archiving with pgbackrest into a
// repository of one variant, holding a full and an incremental backup.
type pgbackrestFixture struct {
	// Variant is the repository setup.
	Variant repoVariant
	// Cluster runs, with archive_command pushing to the repository.
	Cluster *cluster
	// Config is the pgbackrest configuration: Config.Path the
	// pgbackrest.conf (stanza pgbackrestStanza), Config.Repo where the
	// repository is and its passphrase.
	Config *pgbackrestConfig
	// FullLabel and IncrLabel are the two backups' labels.
	FullLabel, IncrLabel string
	// FullData and IncrData are fixtureDataQuery's results when the backups
	// were taken (nothing was written while they ran).
	FullData, IncrData string
	// Switched are the segments SwitchWAL switched away from between the
	// two backups.
	Switched []string
	// ArchiveID is the archive id, e.g. "15-1".
	ArchiveID string
	// WALFiles are the archived WAL files as repository-relative paths,
	// sorted; Segments are their segment names, in the same order.
	WALFiles []string
	Segments []string
}

// pgbackrestRepo builds the fixture for variant v: a new cluster (data
// checksums on) archiving with pgbackrest, stanza-create and check, pgbench
// data, a full backup, more writes and WAL switches, an incremental
// backup. Everything is removed at cleanup.
func pgbackrestRepo(t testing.TB, v repoVariant) *pgbackrestFixture {
	t.Helper()
	cfg := newPgbackrestConfig(t, v)
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	f := &pgbackrestFixture{Variant: v, Cluster: c, Config: cfg}
	stanza := "--stanza=" + pgbackrestStanza

	pgbackrestRun(t, cfg.Path, stanza, "stanza-create")
	pgbackrestRun(t, cfg.Path, stanza, "check")

	c.Pgbench(t, "-i", "-s", "1", "-q")
	c.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL); INSERT INTO fixture_marks (phase) VALUES ('full')")
	f.FullData = c.SQL(t, fixtureDataQuery)
	pgbackrestRun(t, cfg.Path, stanza, "--type=full", "backup")

	c.Pgbench(t, "-n", "-c", "2", "-t", "100")
	c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('incr')")
	for range 3 {
		f.Switched = append(f.Switched, c.SwitchWAL(t))
	}
	c.WaitArchived(t, f.Switched[len(f.Switched)-1], archiveWaitTimeout)
	f.IncrData = c.SQL(t, fixtureDataQuery)
	pgbackrestRun(t, cfg.Path, stanza, "--type=incr", "backup")

	info := pgbackrestInfoJSON(t, cfg.Path)
	if len(info.Backup) != 2 {
		t.Fatalf("pgbackrest info: %d backups, want 2", len(info.Backup))
	}
	f.FullLabel, f.IncrLabel = info.Backup[0].Label, info.Backup[1].Label
	if len(info.Archive) != 1 {
		t.Fatalf("pgbackrest info: %d archive ids, want 1", len(info.Archive))
	}
	f.ArchiveID = info.Archive[0].ID
	f.WALFiles = pgbackrestArchivedWAL(t, cfg.Path)
	for _, p := range f.WALFiles {
		f.Segments = append(f.Segments, path.Base(p)[:24])
	}
	return f
}

// nextSegment returns the WAL segment after seg (16 MB segments, the
// default: 256 per log id).
func nextSegment(t testing.TB, seg string) string {
	t.Helper()
	tli, err1 := strconv.ParseUint(seg[:8], 16, 32)
	log, err2 := strconv.ParseUint(seg[8:16], 16, 32)
	n, err3 := strconv.ParseUint(seg[16:], 16, 32)
	if err1 != nil || err2 != nil || err3 != nil || n > 0xFF {
		t.Fatalf("bad segment name %q", seg)
	}
	if n++; n > 0xFF {
		log, n = log+1, 0
	}
	return fmt.Sprintf("%08X%08X%08X", tli, log, n)
}

var (
	fullLabel = regexp.MustCompile(`^\d{8}-\d{6}F$`)
	incrLabel = regexp.MustCompile(`^(\d{8}-\d{6}F)_\d{8}-\d{6}I$`)
)

// TestPgbackrestFixture builds the fixture for every repository variant
// and checks with pgbackrest itself that the repository is valid: two
// backups, a contiguous archive holding the switched segments, the
// variant's compression and encryption applied.
func TestPgbackrestFixture(t *testing.T) {
	t.Parallel()
	for _, v := range repoVariants() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			f := pgbackrestRepo(t, v)
			t.Logf("fixture built in %v: full %s, incr %s, %d WAL segments %s..%s",
				time.Since(start).Round(time.Millisecond), f.FullLabel, f.IncrLabel,
				len(f.Segments), f.Segments[0], f.Segments[len(f.Segments)-1])
			checkFixtureInfo(t, f)
			checkFixtureArchive(t, f)
			checkFixtureVerify(t, f)
			checkFixtureRepoFormat(t, f)
			checkPgsidecarReads(t, f)
		})
	}
}

// checkFixtureInfo checks `pgbackrest info`: stanza ok, the variant's
// cipher, a full backup and an incremental one on top of it.
func checkFixtureInfo(t *testing.T, f *pgbackrestFixture) {
	t.Helper()
	info := pgbackrestInfoJSON(t, f.Config.Path)
	if info.Status.Code != 0 || info.Status.Message != "ok" {
		t.Errorf("info status = %d %q, want 0 ok", info.Status.Code, info.Status.Message)
	}
	if info.Cipher != f.Variant.Cipher {
		t.Errorf("info cipher = %q, want %q", info.Cipher, f.Variant.Cipher)
	}
	if len(info.Backup) != 2 {
		t.Fatalf("info: %d backups, want 2", len(info.Backup))
	}
	full, incr := info.Backup[0], info.Backup[1]
	if full.Type != "full" || !fullLabel.MatchString(full.Label) || full.Prior != nil {
		t.Errorf("first backup = %s %s (prior %v), want a full backup without prior", full.Type, full.Label, full.Prior)
	}
	m := incrLabel.FindStringSubmatch(incr.Label)
	if incr.Type != "incr" || m == nil || m[1] != full.Label {
		t.Errorf("second backup = %s %s, want an incr backup labelled after %s", incr.Type, incr.Label, full.Label)
	}
	if incr.Prior == nil || *incr.Prior != full.Label || !slices.Contains(incr.Reference, full.Label) {
		t.Errorf("incr backup prior %v references %v, want %s for both", incr.Prior, incr.Reference, full.Label)
	}
	for _, b := range info.Backup {
		if b.Error == nil || *b.Error {
			t.Errorf("backup %s: error flag %v, want false", b.Label, b.Error)
		}
		if b.Info.Size <= 0 || b.Info.Repository.Size <= 0 {
			t.Errorf("backup %s: size %d, repository size %d, want both > 0", b.Label, b.Info.Size, b.Info.Repository.Size)
		}
	}
	if incr.Info.Delta >= full.Info.Size {
		t.Errorf("incr delta %d >= full size %d: not incremental", incr.Info.Delta, full.Info.Size)
	}
	if len(info.Archive) != 1 || info.Archive[0].ID != "15-1" {
		t.Fatalf("info archive = %+v, want the one archive id 15-1", info.Archive)
	}
	if a := info.Archive[0]; a.Min != f.Segments[0] || a.Max != f.Segments[len(f.Segments)-1] {
		t.Errorf("info archive min..max = %s..%s, repository holds %s..%s",
			a.Min, a.Max, f.Segments[0], f.Segments[len(f.Segments)-1])
	}
}

// checkFixtureArchive checks the archived WAL: contiguous, each segment
// once, covering both backups and the switched segments.
func checkFixtureArchive(t *testing.T, f *pgbackrestFixture) {
	t.Helper()
	for i := 1; i < len(f.Segments); i++ {
		if want := nextSegment(t, f.Segments[i-1]); f.Segments[i] != want {
			t.Errorf("archive not contiguous: %s follows %s, want %s", f.Segments[i], f.Segments[i-1], want)
		}
	}
	for _, s := range f.Switched {
		if !slices.Contains(f.Segments, s) {
			t.Errorf("switched segment %s not in the archive %v", s, f.Segments)
		}
	}
	info := pgbackrestInfoJSON(t, f.Config.Path)
	for _, b := range info.Backup {
		for _, s := range []string{b.Archive.Start, b.Archive.Stop} {
			if !slices.Contains(f.Segments, s) {
				t.Errorf("backup %s needs segment %s, not in the archive", b.Label, s)
			}
		}
	}
	if f.ArchiveID != "15-1" {
		t.Errorf("archive id = %q, want 15-1", f.ArchiveID)
	}
	for _, p := range f.WALFiles {
		if want := "archive/" + pgbackrestStanza + "/" + f.ArchiveID + "/" + path.Base(p)[:16] + "/"; !strings.HasPrefix(p, want) {
			t.Errorf("WAL file %s not below %s", p, want)
		}
	}
}

// checkFixtureVerify checks `pgbackrest verify`: status ok, every archived
// segment and every file of both backups valid.
func checkFixtureVerify(t *testing.T, f *pgbackrestFixture) {
	t.Helper()
	r := pgbackrestVerify(t, f.Config.Path)
	if r.Status != "ok" {
		t.Errorf("verify status %q, want ok:\n%s", r.Status, r.Text)
	}
	wal, ok := r.WAL[f.ArchiveID]
	if !ok {
		t.Fatalf("verify did not check archive id %s:\n%s", f.ArchiveID, r.Text)
	}
	if wal["checked"] != len(f.Segments) || wal["valid"] != len(f.Segments) {
		t.Errorf("verify: %d WAL checked, %d valid, want %d each:\n%s", wal["checked"], wal["valid"], len(f.Segments), r.Text)
	}
	if len(r.Backups) != 2 {
		t.Errorf("verify checked %d backups, want 2:\n%s", len(r.Backups), r.Text)
	}
	for _, label := range []string{f.FullLabel, f.IncrLabel} {
		files := r.BackupFiles[label]
		if r.Backups[label] != "valid" || files["checked"] == 0 || files["valid"] != files["checked"] {
			t.Errorf("verify backup %s: status %q, %d files checked, %d valid; want valid, all valid:\n%s",
				label, r.Backups[label], files["checked"], files["valid"], r.Text)
		}
	}
	for id, counts := range r.WAL {
		for _, k := range []string{"missing", "checksum invalid", "size invalid", "other"} {
			if counts[k] != 0 {
				t.Errorf("verify archive %s: %s = %d", id, k, counts[k])
			}
		}
	}
}

// checkFixtureRepoFormat reads raw repository files: WAL compressed with
// the variant's type, info files encrypted exactly when the variant is.
func checkFixtureRepoFormat(t *testing.T, f *pgbackrestFixture) {
	t.Helper()
	for _, p := range f.WALFiles {
		if !strings.HasSuffix(p, "."+f.Variant.Compress) {
			t.Errorf("WAL file %s: want extension .%s", p, f.Variant.Compress)
		}
	}
	info := f.Config.Repo.ReadFile(t, "backup/"+pgbackrestStanza+"/backup.info")
	encrypted := bytes.HasPrefix(info, []byte("Salted__"))
	if want := f.Variant.Cipher != cipherNone; encrypted != want {
		t.Errorf("backup.info starts %q: encrypted = %v, want %v", info[:min(len(info), 16)], encrypted, want)
	}
	if !encrypted && !bytes.HasPrefix(info, []byte("[backrest]")) {
		t.Errorf("backup.info starts %q, want [backrest]", info[:min(len(info), 16)])
	}
	wal := f.Config.Repo.ReadFile(t, f.WALFiles[0])
	if got := bytes.HasPrefix(wal, []byte("Salted__")); got != encrypted {
		t.Errorf("WAL file %s: encrypted = %v, want %v", f.WALFiles[0], got, encrypted)
	}
	magic := map[string][]byte{"gz": {0x1f, 0x8b}, "lz4": {0x04, 0x22, 0x4d, 0x18}, "zst": {0x28, 0xb5, 0x2f, 0xfd}}[f.Variant.Compress]
	if !encrypted && !bytes.HasPrefix(wal, magic) {
		t.Errorf("WAL file %s starts % x, want %s magic % x", f.WALFiles[0], wal[:min(len(wal), 4)], f.Variant.Compress, magic)
	}
}

// pgbackrestRestore restores the fixture's repository with `pgbackrest
// restore` and args (e.g. "--set=<label>", "--type=immediate") into a new
// data directory and returns it as a stopped cluster whose archive_mode is
// off, so that it never archives into the fixture's repository.
func pgbackrestRestore(t testing.TB, f *pgbackrestFixture, args ...string) *cluster {
	t.Helper()
	u := requirePostgres(t)
	dataDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "restore"), "data"))
	args = append([]string{"--stanza=" + pgbackrestStanza, "--pg1-path=" + dataDir}, args...)
	pgbackrestRun(t, f.Config.Path, append(args, "restore")...)
	return attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
}

// TestPgbackrestRestoreBaseline restores the fixture's backups with
// pgbackrest itself into clusters of the harness: the full backup to its
// consistency point, the incremental one with all archived WAL. Both hold
// the data recorded when they were taken. This is the baseline the
// pgsidecar interop tests compare against.
func TestPgbackrestRestoreBaseline(t *testing.T) {
	t.Parallel()
	for _, v := range []repoVariant{
		{Storage: storagePosix, Cipher: cipherAES, Compress: "gz"},
		{Storage: storageS3, Cipher: cipherNone, Compress: "lz4"},
	} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			f := pgbackrestRepo(t, v)
			for _, tc := range []struct {
				name string
				args []string
				want string
			}{
				{"full-immediate", []string{"--set=" + f.FullLabel, "--type=immediate", "--target-action=promote"}, f.FullData},
				{"incr-end-of-archive", nil, f.IncrData},
			} {
				c := pgbackrestRestore(t, f, tc.args...)
				c.Start(t)
				if got := c.SQL(t, fixtureDataQuery); got != tc.want {
					t.Errorf("%s: restored data %q, want %q", tc.name, got, tc.want)
				}
				if got := c.SQL(t, "SELECT pg_is_in_recovery()"); got != "f" {
					t.Errorf("%s: pg_is_in_recovery() = %s after restore, want f (promoted)", tc.name, got)
				}
				c.Stop(t)
			}
		})
	}
}
