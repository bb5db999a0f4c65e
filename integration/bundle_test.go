package integration

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/pgsidecar/pgsidecar/agent"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
)

// TestBundlePgsidecarBackupRestoredByPgbackrest takes a full and an
// incremental backup with pgsidecar and repo1-bundle=y (default bundle size
// and limit) into an encrypted, zst-compressed posix repository. Small files
// must be in bundle objects and nowhere else, the incremental must reference
// the full's bundles for unchanged files; stock pgbackrest 2.45 must list both
// backups as pgsidecar does, verify them and restore the incremental backup
// into a cluster that holds the data recorded when it was taken; pgsidecar's
// own verify must accept them too.
func TestBundlePgsidecarBackupRestoredByPgbackrest(t *testing.T) {
	t.Parallel()
	cfg := newPgbackrestConfig(t, repoVariant{Storage: storagePosix, Cipher: cipherAES, Compress: "zst"})
	cfg.Options = map[string]string{"repo1-bundle": "y", "process-max": "2"}
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.PgsidecarArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")

	c.Pgbench(t, "-i", "-s", "1", "-q")
	c.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL); INSERT INTO fixture_marks (phase) VALUES ('full')")
	c.SQL(t, "CREATE TABLE empty_rel (id int)") // a zero-length relation file
	pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")

	c.Pgbench(t, "-n", "-c", "2", "-t", "100")
	c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('incr')")
	want := c.SQL(t, fixtureDataQuery)
	pgsidecarRun(t, cfg.Path, stanza, "--type=incr", "backup")

	info := pgbackrestInfoJSON(t, cfg.Path)
	if info.Status.Code != 0 || len(info.Backup) != 2 {
		t.Fatalf("pgbackrest info: status %d %s, %d backups, want 2", info.Status.Code, info.Status.Message, len(info.Backup))
	}
	full, incr := info.Backup[0], info.Backup[1]
	if full.Type != "full" || incr.Type != "incr" || incr.Prior == nil || *incr.Prior != full.Label {
		t.Fatalf("backups %s (%s), %s (%s, prior %v): want a full and its incremental", full.Label, full.Type, incr.Label, incr.Type, incr.Prior)
	}
	rs := openBundleRepo(t, cfg)
	fs := checkBundled(t, rs, full.Label, backupDefaultBundleLimit)
	is := checkBundled(t, rs, incr.Label, backupDefaultBundleLimit)
	t.Logf("full: %+v; incr: %+v", fs, is)
	if fs.Bundles < 1 || fs.Bundled < 100 || fs.Empty < 1 || fs.Own < 1 {
		t.Errorf("full backup %s: %+v: want bundles holding the small files, zero-length files, large files on their own", full.Label, fs)
	}
	if is.Bundles < 1 || is.ReferencedBundled < 100 {
		t.Errorf("incremental backup %s: %+v: want bundles of changed files and references into %s's bundles", incr.Label, is, full.Label)
	}

	requireVerified(t, cfg.Path, backupLabels(info)...)
	pgsidecarRun(t, cfg.Path, stanza, "verify")
	requireSameInfo(t, cfg.Path)

	r := pgbackrestRestoreStarted(t, cfg.Path, incr.Label)
	if got := r.SQL(t, fixtureDataQuery); got != want {
		t.Errorf("restored data %q, want %q", got, want)
	}
	if got := r.SQL(t, "SELECT count(*) FROM empty_rel"); got != "0" {
		t.Errorf("empty_rel has %s rows after restore", got)
	}
	r.Stop(t)
}

// TestBundlePgbackrestBackupRestoredByPgsidecar is the other direction, on
// MinIO with aes-256-cbc and lz4 and non-default bundle options (size 5MiB,
// limit 512KiB): stock pgbackrest takes a bundled full backup, which pgsidecar
// restores; pgsidecar then takes a bundled incremental on top of it, which
// must reference pgbackrest's bundles and follow the same bundle options;
// pgbackrest takes an incremental on top of pgsidecar's. pgbackrest and
// pgsidecar verify all three, and pgsidecar restores the last one, whose
// files come from bundles of both tools.
func TestBundlePgbackrestBackupRestoredByPgsidecar(t *testing.T) {
	t.Parallel()
	const limit = 512 << 10
	cfg := newPgbackrestConfig(t, repoVariant{Storage: storageS3, Cipher: cipherAES, Compress: "lz4"})
	cfg.Options = map[string]string{"repo1-bundle": "y", "repo1-bundle-size": "5MiB", "repo1-bundle-limit": "512KiB", "process-max": "2"}
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgbackrestRun(t, cfg.Path, stanza, "stanza-create")

	c.Pgbench(t, "-i", "-s", "1", "-q")
	c.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL); INSERT INTO fixture_marks (phase) VALUES ('full')")
	fullData := c.SQL(t, fixtureDataQuery)
	pgbackrestRun(t, cfg.Path, stanza, "--type=full", "backup")
	fullLabel := pgbackrestInfoJSON(t, cfg.Path).Backup[0].Label
	rs := openBundleRepo(t, cfg)
	if fs := checkBundled(t, rs, fullLabel, limit); fs.Bundles < 3 {
		t.Errorf("pgbackrest full backup %s: %+v: want several bundles", fullLabel, fs)
	}

	dataDir, _ := pgsidecarRestore(t, cfg.Path, "--set="+fullLabel, "--type=immediate", "--target-action=promote")
	r := attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
	r.Start(t)
	if got := r.SQL(t, fixtureDataQuery); got != fullData {
		t.Errorf("pgbackrest full backup restored by pgsidecar: data %q, want %q", got, fullData)
	}
	r.Stop(t)

	c.Pgbench(t, "-n", "-c", "2", "-t", "100")
	c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('incr')")
	// New files for pgsidecar's incremental that only the configured options
	// lay out this way: one of about 1.1MB (over the 512KiB limit, under the
	// 2MiB default: stored on its own) and 30 of about 280KB (8MB: more than
	// one 5MiB bundle, one bundle at the 20MiB default).
	c.SQL(t, "CREATE TABLE mid AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 8000) g")
	c.SQL(t, "DO $$ BEGIN FOR i IN 1..30 LOOP EXECUTE format('CREATE TABLE small_%s AS SELECT g, repeat(''y'', 100) AS pad FROM generate_series(1, 2000) g', i); END LOOP; END $$")
	pgsidecarRun(t, cfg.Path, stanza, "--type=incr", "backup")
	c.Pgbench(t, "-n", "-c", "2", "-t", "100")
	c.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('incr2')")
	want := c.SQL(t, fixtureDataQuery)
	pgbackrestRun(t, cfg.Path, stanza, "--type=incr", "backup")

	info := pgbackrestInfoJSON(t, cfg.Path)
	if len(info.Backup) != 3 {
		t.Fatalf("pgbackrest info: %d backups, want 3", len(info.Backup))
	}
	ours, theirs := info.Backup[1], info.Backup[2]
	is := checkBundled(t, rs, ours.Label, limit)
	t.Logf("pgsidecar incr: %+v", is)
	if is.Bundles < 2 || is.OwnUnderDefaultLimit < 1 || is.ReferencedBundled < 100 {
		t.Errorf("pgsidecar incremental backup %s: %+v: want several 5MiB bundles, a file over the 512KiB limit on its own, and references into %s's bundles",
			ours.Label, is, fullLabel)
	}
	if ts := checkBundled(t, rs, theirs.Label, limit); ts.ReferencedBundled < 100 {
		t.Errorf("pgbackrest incremental backup %s: %+v: want references into the prior bundles", theirs.Label, ts)
	}
	if theirs.Prior == nil || *theirs.Prior != ours.Label {
		t.Errorf("pgbackrest incr prior %v, want pgsidecar's %s", theirs.Prior, ours.Label)
	}

	requireVerified(t, cfg.Path, backupLabels(info)...)
	pgsidecarRun(t, cfg.Path, stanza, "verify")

	dataDir, _ = pgsidecarRestore(t, cfg.Path, "--set="+theirs.Label, "--type=immediate", "--target-action=promote", "--process-max=3")
	r = attachCluster(t, dataDir, map[string]string{"archive_mode": "off"})
	r.Start(t)
	if got := r.SQL(t, fixtureDataQuery); got != want {
		t.Errorf("restored data %q, want %q", got, want)
	}
	r.Stop(t)
}

// backupDefaultBundleLimit is repo-bundle-limit's default (2MiB).
const backupDefaultBundleLimit = 2 << 20

// openBundleRepo opens the stanza of cfg's repository (repo1) with
// pgsidecar's own configuration loading and storage drivers.
func openBundleRepo(t *testing.T, cfg *pgbackrestConfig) *repo.Repository {
	t.Helper()
	include := t.TempDir()
	c, err := config.Load(config.Input{Args: []string{"--config=" + cfg.Path, "--config-include-path=" + include,
		"--stanza=" + pgbackrestStanza, "info"}})
	if err != nil {
		t.Fatal(err)
	}
	repos, err := agent.OpenRepos(t.Context(), c, agent.Deps{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.CloseRepos(repos) })
	return repo.Open(repos[0].Store, repos[0].Name(), pgbackrestStanza, cfg.Repo.CipherPass)
}

// bundleStats counts what checkBundled found in one backup.
type bundleStats struct {
	// Bundles is the number of bundle objects; Bundled the files in them,
	// Own the files stored on their own (over the limit, backup_label),
	// Empty the zero-length files; ReferencedBundled the files referenced
	// from prior backups' bundles; OwnUnderDefaultLimit the files stored on
	// their own that the default limit (2MiB) would have bundled.
	Bundles, Bundled, Own, Empty, ReferencedBundled, OwnUnderDefaultLimit int
}

// checkBundled checks the objects of backup label against its manifest: the
// manifest says backup-bundle; every non-empty file of at most limit bytes
// stored by this backup is in a bundle and has no object of its own; each
// bundle object is exactly its files' stored bytes, contiguous from offset 0;
// larger files are stored on their own; zero-length files are stored nowhere;
// the backup holds no other objects.
func checkBundled(t *testing.T, rs *repo.Repository, label string, limit uint64) bundleStats {
	t.Helper()
	bi, err := rs.LoadBackupInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m, err := rs.LoadManifest(t.Context(), label, bi.CipherPass)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Bundle || m.BundleRaw {
		t.Errorf("%s: backup-bundle %v backup-bundle-raw %v, want true and false", label, m.Bundle, m.BundleRaw)
	}
	ext, err := m.Options.CompressType.Ext()
	if err != nil {
		t.Fatal(err)
	}
	prefix := rs.BackupKey(label + "/")
	objects := map[string]int64{}
	err = rs.Store().List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		objects[strings.TrimPrefix(oi.Key, prefix)] = oi.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var st bundleStats
	expected := map[string]bool{"backup.manifest": true, "backup.manifest.copy": true}
	inBundle := map[uint64][]repo.ManifestFile{}
	for _, f := range m.Files {
		switch {
		case f.Reference != "":
			if f.BundleID != 0 {
				st.ReferencedBundled++
			}
		case f.Size == 0:
			st.Empty++
			if f.BundleID != 0 || f.RepoChecksum != "" {
				t.Errorf("%s: %s: zero-length file with bundle %d rck %q", label, f.Name, f.BundleID, f.RepoChecksum)
			}
		case f.BundleID != 0:
			st.Bundled++
			if f.Size > limit {
				t.Errorf("%s: %s: %d bytes, over the limit, bundled", label, f.Name, f.Size)
			}
			inBundle[f.BundleID] = append(inBundle[f.BundleID], f)
		default:
			st.Own++
			if f.Name == "pg_data/backup_label" || f.Name == "pg_data/tablespace_map" {
				// Always stored on their own, as pgBackRest's backupFilePut() does.
			} else if f.Size <= limit {
				t.Errorf("%s: %s: %d bytes, at most the limit, stored on its own", label, f.Name, f.Size)
			} else if f.Size <= backupDefaultBundleLimit {
				st.OwnUnderDefaultLimit++
			}
			expected[f.Name+ext] = true
		}
	}
	for id, files := range inBundle {
		key := "bundle/" + strconv.FormatUint(id, 10)
		expected[key] = true
		size, ok := objects[key]
		if !ok {
			t.Errorf("%s: bundle %d holds %d files but has no object", label, id, len(files))
			continue
		}
		st.Bundles++
		slices.SortFunc(files, func(a, b repo.ManifestFile) int { return int(a.BundleOffset) - int(b.BundleOffset) })
		var next uint64
		for _, f := range files {
			if f.BundleOffset != next {
				t.Errorf("%s: bundle %d: %s at offset %d, want %d", label, id, f.Name, f.BundleOffset, next)
			}
			next = f.BundleOffset + f.RepoSize
		}
		if next != uint64(size) {
			t.Errorf("%s: bundle %d: files cover %d bytes of %d", label, id, next, size)
		}
	}
	for key := range objects {
		if !expected[key] {
			t.Errorf("%s: unexpected object %s", label, key)
		}
	}
	return st
}
