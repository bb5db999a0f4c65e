package integration

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClone is PGO's dataSource clone with pgsidecar. A source cluster
// archives and backs up with pgsidecar into repository A (posix,
// encrypted). A clone is restored by pgsidecar into a new empty data
// directory to a point in time, with a configuration of the restore's own
// that names repository A (as PGO's restore job runs `pgbackrest restore`
// with the source's repository options), so that restore_command fetches
// the source's WAL. The clone has a configuration of its own, for its own
// repository B (posix, another passphrase), where its stanza is created
// before it starts; its archive_command, given on its command line as PGO
// gives it, overrides the source's one in the restored postgresql.conf.
// (PGO's restore job promotes with archive_mode=off; here the clone's own
// archive_command is already active at the promotion, which is stricter:
// the history file and the partial segment are the first to go astray.)
// The clone starts on its own port beside the running source, holds the
// source's data up to the target and nothing after it, is promoted onto a
// new timeline, takes writes and archives them (the timeline history file
// first) and backs up into repository B only: repository A's archive
// gets nothing from the clone, and the source keeps archiving there.
func TestClone(t *testing.T) {
	t.Parallel()
	u := requirePostgres(t)
	stanza := "--stanza=" + pgbackrestStanza

	// The source, archiving and backing up into repository A.
	srcVariant := repoVariant{Storage: storagePosix, Cipher: cipherAES, Compress: "lz4"}
	srcCfg := newPgbackrestConfig(t, srcVariant)
	src := newCluster(t, clusterOptions{ArchiveCommand: srcCfg.PgsidecarArchiveCommand(), DataChecksums: true})
	srcCfg.Write(t, src)
	src.Start(t)
	pgsidecarRun(t, srcCfg.Path, stanza, "stanza-create")
	src.Pgbench(t, "-i", "-s", "1", "-q")
	src.SQL(t, "CREATE TABLE fixture_marks (id serial PRIMARY KEY, phase text NOT NULL); INSERT INTO fixture_marks (phase) VALUES ('full')")
	pgsidecarRun(t, srcCfg.Path, stanza, "--type=full", "backup")
	src.Pgbench(t, "-n", "-c", "2", "-t", "100")
	src.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('before')")
	want := src.SQL(t, matrixDataQuery)
	target := src.SQL(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	time.Sleep(100 * time.Millisecond)
	src.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('after')")
	src.Pgbench(t, "-n", "-c", "2", "-t", "50")
	src.WaitArchived(t, src.SwitchWAL(t), archiveWaitTimeout)
	srcTLI := timeline(t, src)
	archiveA := filepath.Join(srcCfg.Repo.Path, "archive", pgbackrestStanza)
	beforeA := dirFiles(t, archiveA)

	// The clone: its own configuration and repository B, and the
	// configuration its restore uses, naming repository A. Each has its
	// own log, lock and spool directories.
	cloneCfg := newPgbackrestConfig(t, repoVariant{Storage: storagePosix, Cipher: cipherAES, Compress: "zst"})
	restoreCfg := newPgbackrestConfig(t, srcVariant)
	restoreCfg.Repo = srcCfg.Repo
	dataDir := mkdirAs(t, u, filepath.Join(newWorkDir(t, u, "clone"), "data"))
	clone := attachCluster(t, dataDir, map[string]string{"archive_mode": "on", "archive_command": cloneCfg.PgsidecarArchiveCommand()})
	restoreCfg.Write(t, clone)
	cloneCfg.Write(t, clone)
	pgsidecarRestoreInto(t, restoreCfg.Path, dataDir, "--type=time", "--target="+target, "--target-action=promote")
	auto, err := os.ReadFile(filepath.Join(dataDir, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if wantCmd := fmt.Sprintf("restore_command = '%s --config=%s ", pgsidecarBin, restoreCfg.Path); !strings.Contains(string(auto), wantCmd) {
		t.Fatalf("postgresql.auto.conf: no restore_command reading repository A through the restore's configuration (%s...):\n%s", wantCmd, auto)
	}
	// The stanza of repository B, from the restored pg_control, before
	// the clone starts: its archive_command works from the promotion on.
	pgsidecarRun(t, cloneCfg.Path, stanza, "stanza-create")
	clone.Start(t) // recovers from repository A up to the target, then promotes

	if got := clone.SQL(t, matrixDataQuery); got != want {
		t.Errorf("clone data %q, want the source's at the target %q", got, want)
	}
	if got := clone.SQL(t, "SELECT count(*) FROM fixture_marks WHERE phase = 'after'"); got != "0" {
		t.Errorf("the clone holds %s rows written after the target", got)
	}
	cloneTLI := timeline(t, clone)
	if cloneTLI <= srcTLI {
		t.Fatalf("clone on timeline %d, want a new one after the source's %d", cloneTLI, srcTLI)
	}
	clone.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('clone')")
	clone.Pgbench(t, "-n", "-c", "2", "-t", "50")
	cloneSeg := clone.SwitchWAL(t)
	clone.WaitArchived(t, cloneSeg, archiveWaitTimeout)

	// Repository B holds the clone's timeline: its history file and the
	// segment it switched away from. The clone backs up there.
	history := fmt.Sprintf("%08X.history", cloneTLI)
	filesB := repoFiles(t, filepath.Join(cloneCfg.Repo.Path, "archive", pgbackrestStanza))
	for _, want := range []string{history, cloneSeg + "-"} {
		if !slices.ContainsFunc(filesB, func(f string) bool { return strings.HasPrefix(path.Base(f), want) }) {
			t.Fatalf("the clone's archive_command did not archive %s into repository B, which holds %v", want, filesB)
		}
	}
	pgsidecarRun(t, cloneCfg.Path, stanza, "--type=full", "backup")
	if info := pgsidecarInfoJSON(t, cloneCfg.Path); len(info.Backup) != 1 {
		t.Errorf("repository B: %d backups, want the clone's one", len(info.Backup))
	}
	pgsidecarRun(t, cloneCfg.Path, stanza, "verify")

	// The source goes on archiving into repository A, which got nothing
	// from the clone: no file changed, new files are the source's
	// segments (and their directories) only.
	src.SQL(t, "INSERT INTO fixture_marks (phase) VALUES ('source after clone')")
	srcSeg := src.SwitchWAL(t)
	src.WaitArchived(t, srcSeg, archiveWaitTimeout)
	if got := timeline(t, src); got != srcTLI {
		t.Errorf("source on timeline %d, want %d", got, srcTLI)
	}
	afterA := dirFiles(t, archiveA)
	srcPrefix := fmt.Sprintf("%08X", srcTLI)
	sawSource := false
	for _, name := range sortedKeys(afterA) {
		old, existed := beforeA[name]
		base := filepath.Base(name)
		switch {
		case existed && old != afterA[name]:
			t.Errorf("repository A: %s changed while the clone ran", name)
		case existed:
		case afterA[name].dir && len(base) == 16 && strings.HasPrefix(base, srcPrefix):
		case walFileName.MatchString(base) && strings.HasPrefix(base, srcPrefix):
			sawSource = sawSource || strings.HasPrefix(base, srcSeg+"-")
		default:
			t.Errorf("repository A: new file %s, not a segment of the source's timeline %d", name, srcTLI)
		}
	}
	for name := range beforeA {
		if _, ok := afterA[name]; !ok {
			t.Errorf("repository A: %s disappeared", name)
		}
	}
	if !sawSource {
		t.Errorf("repository A lacks the source's segment %s archived after the clone started", srcSeg)
	}
	if info := pgsidecarInfoJSON(t, srcCfg.Path); len(info.Backup) != 1 {
		t.Errorf("repository A: %d backups, want the source's one", len(info.Backup))
	}
	pgsidecarRun(t, srcCfg.Path, stanza, "verify")
	clone.Stop(t)
}

// timeline returns the timeline c writes WAL on (c is not in recovery).
func timeline(t *testing.T, c *cluster) uint64 {
	t.Helper()
	hex := c.SQL(t, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
	tli, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		t.Fatalf("timeline %q: %v", hex, err)
	}
	return tli
}
