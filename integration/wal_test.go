package integration

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/azure"
	"github.com/pgsidecar/pgsidecar/storage/gcs/gcstest"
	"github.com/pgsidecar/pgsidecar/storage/s3"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// walMinSegments is the number of segments the WAL tests' load produces at
// least (the "at least 64").
const walMinSegments = 64

// TestWALFourRepos archives a pgbench load of at least 64 segments from a
// real PostgreSQL 15 through archive_command = pgsidecar archive-push, with
// the daemon (pgsidecar run) pushing ahead, to four repositories at once:
// posix, S3 (MinIO), GCS (fake-gcs-server) and Azure (Azurite, encrypted).
// Every segment must end up in every repository: pgsidecar verify reads
// each one back, and archive-get from each repository (--repo=N) must give
// the segment PostgreSQL kept in pg_wal, byte for byte. Stock pgbackrest
// check, which switches WAL and waits for it in its repositories, passes
// with pgsidecar as the archive_command, and pgbackrest archive-get reads
// a segment pgsidecar pushed.
func TestWALFourRepos(t *testing.T) {
	u := requirePostgres(t)
	svc, bucket := newS3Bucket(t)
	gcsEndpoint, gcsBucket := newGCSBucket(t)
	az := newAzureContainer(t)
	dir := newWorkDir(t, u, "wal4")
	for _, d := range []string{"log", "lock", "spool", "repo", "get"} {
		mkdirAs(t, u, filepath.Join(dir, d))
	}
	conf := filepath.Join(dir, "pgbackrest.conf")
	c := newCluster(t, clusterOptions{
		ArchiveCommand: fmt.Sprintf("%s --config=%s --stanza=db archive-push %%p", pgsidecarBin, conf),
		Settings:       map[string]string{"wal_keep_size": "'4GB'"},
	})
	s3Lines := append(svc.repoOptions(2, bucket), "repo2-path=/pgbackrest/repo2")
	global := walGlobal(dir)
	ini := strings.Join(slices.Concat([]string{"[global]"}, global,
		[]string{"repo1-type=posix", "repo1-path=" + filepath.Join(dir, "repo")},
		s3Lines,
		[]string{
			"repo3-type=gcs",
			"repo3-path=/pgbackrest/repo3",
			"repo3-gcs-bucket=" + gcsBucket,
			"repo3-gcs-endpoint=" + gcsEndpoint,
			"repo3-gcs-key-type=none",
			"repo4-type=azure",
			"repo4-path=/pgbackrest/repo4",
			"repo4-azure-account=" + az.account,
			"repo4-azure-key=" + az.key,
			"repo4-azure-container=" + az.container,
			"repo4-azure-endpoint=" + az.endpoint,
			"repo4-azure-uri-style=path",
			"repo4-cipher-type=aes-256-cbc",
			"repo4-cipher-pass=" + randomHex(t, 24),
		},
		walDBSection(c)), "\n")
	writeFileAs(t, u, conf, []byte(ini))
	// pgbackrest 2.45 reads neither gcs-key-type=none nor an http:// Azure
	// endpoint: its own configuration names the posix and S3 repositories.
	pbConf := filepath.Join(dir, "pgbackrest-check.conf")
	writeFileAs(t, u, pbConf, []byte(strings.Join(slices.Concat([]string{"[global]"}, global,
		[]string{"repo1-type=posix", "repo1-path=" + filepath.Join(dir, "repo")},
		s3Lines, walDBSection(c)), "\n")))
	pgsidecarRun(t, conf, "--stanza=db", "stanza-create")

	daemonLog := filepath.Join(dir, "daemon.log")
	d := startWALDaemon(t, u, conf, daemonLog)
	d.waitSocket(t, filepath.Join(dir, "spool", "pgsidecar-db.sock"))

	c.Start(t)
	first := c.SQL(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	start := time.Now()
	last := walLoad(t, c, first, walMinSegments)
	c.WaitArchived(t, last, 10*time.Minute)
	want := segmentRange(t, first, last)
	t.Logf("%d segments (%s..%s) archived to 4 repositories in %v", len(want), first, last, time.Since(start).Round(time.Second))
	if len(want) < walMinSegments {
		t.Fatalf("the load produced %d segments, want at least %d", len(want), walMinSegments)
	}
	if n := strings.Count(readString(daemonLog), `"look-ahead": true`); n == 0 {
		t.Errorf("no look-ahead push in the daemon's log:\n%s", tail(daemonLog, 30))
	}

	// pgsidecar verify reads every archived file of each repository back.
	for r := 1; r <= 4; r++ {
		checkVerify(t, conf, r, len(want))
	}
	// archive-get from each repository gives the segment kept in pg_wal.
	start = time.Now()
	for _, seg := range want {
		orig, err := os.ReadFile(filepath.Join(c.DataDir(), "pg_wal", seg))
		if err != nil {
			t.Fatalf("segment %s is no longer in pg_wal (wal_keep_size): %v", seg, err)
		}
		for r := 1; r <= 4; r++ {
			dest := filepath.Join(dir, "get", fmt.Sprintf("%s.%d", seg, r))
			pgsidecarRun(t, conf, "--stanza=db", "--repo="+strconv.Itoa(r), "archive-get", seg, dest)
			got, err := os.ReadFile(dest)
			if err != nil || !bytes.Equal(got, orig) {
				t.Fatalf("segment %s from repo%d differs from pg_wal's (%v, %d bytes)", seg, r, err, len(got))
			}
			_ = os.Remove(dest)
		}
	}
	t.Logf("%d archive-get calls compared in %v", 4*len(want), time.Since(start).Round(time.Second))

	// Stock pgbackrest: check (a WAL switch archived by pgsidecar, found in
	// both of its repositories), and archive-get of pgsidecar's segments.
	pgbackrestRun(t, pbConf, "--stanza=db", "check")
	seg := want[len(want)/2]
	orig, _ := os.ReadFile(filepath.Join(c.DataDir(), "pg_wal", seg))
	for _, r := range []string{"1", "2"} {
		dest := filepath.Join(dir, "get", "pgbackrest"+r)
		pgbackrestRun(t, pbConf, "--stanza=db", "--repo="+r, "archive-get", seg, dest)
		if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, orig) {
			t.Fatalf("pgbackrest archive-get %s from repo%s differs from pg_wal's (%v)", seg, r, err)
		}
	}
}

// TestWALFaults runs the archiving of a real PostgreSQL 15 through the
// daemon to a posix repository and a MinIO of its own, and breaks things:
//
//   - MinIO is killed in the middle of a load: PostgreSQL keeps the
//     segments it could not archive (failures in pg_stat_archiver, .ready
//     files left), the posix repository keeps up (the daemon pushes the new
//     segments there while PostgreSQL is stuck), and once MinIO is back
//     everything is archived with nothing missing;
//   - MinIO hangs (SIGSTOP): the posix repository still receives the new
//     segments at once, and all catches up once MinIO resumes;
//   - the daemon is killed with SIGKILL in the middle of the pushes:
//     archive_command pushes by itself, nothing is lost, nothing is
//     half-written (verify), and a new daemon starts over the stale socket;
//   - a segment with the same name and other content is refused (exit 45)
//     and nothing is overwritten.
func TestWALFaults(t *testing.T) {
	u := requirePostgres(t)
	m := startTestMinio(t)
	dir := newWorkDir(t, u, "walfault")
	for _, d := range []string{"log", "lock", "spool", "repo", "get", "dup"} {
		mkdirAs(t, u, filepath.Join(dir, d))
	}
	conf := filepath.Join(dir, "pgbackrest.conf")
	c := newCluster(t, clusterOptions{
		ArchiveCommand: fmt.Sprintf("%s --config=%s --stanza=db archive-push %%p", pgsidecarBin, conf),
		Settings:       map[string]string{"wal_keep_size": "'4GB'"},
	})
	ini := strings.Join(slices.Concat([]string{"[global]"}, walGlobal(dir),
		[]string{
			"repo1-type=posix",
			"repo1-path=" + filepath.Join(dir, "repo"),
			"repo2-type=s3",
			"repo2-path=/pgbackrest/repo2",
			"repo2-s3-bucket=" + m.bucket,
			"repo2-s3-endpoint=http://" + m.addr,
			"repo2-s3-region=us-east-1",
			"repo2-s3-key=" + minioUser,
			"repo2-s3-key-secret=" + minioPassword,
			"repo2-s3-uri-style=path",
			"repo2-cipher-type=aes-256-cbc",
			"repo2-cipher-pass=" + randomHex(t, 24),
		},
		walDBSection(c)), "\n")
	writeFileAs(t, u, conf, []byte(ini))
	pgsidecarRun(t, conf, "--stanza=db", "stanza-create")
	repoDir := filepath.Join(dir, "repo")
	socket := filepath.Join(dir, "spool", "pgsidecar-db.sock")

	daemonLog := filepath.Join(dir, "daemon.log")
	d := startWALDaemon(t, u, conf, daemonLog)
	d.waitSocket(t, socket)
	c.Start(t)
	first := c.SQL(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Pgbench(t, "-i", "-s", "5", "-q")
	before := c.SwitchWAL(t)
	c.WaitArchived(t, before, 5*time.Minute)

	// MinIO dies in the middle of the load.
	m.kill(t)
	down := walLoad(t, c, nextSegment(t, before), 12)
	pending := segmentRange(t, nextSegment(t, before), down)
	waitUntil(t, 3*time.Minute, "the posix repository to receive the segments while MinIO is down", func() bool {
		have := posixArchived(t, repoDir)
		for _, s := range pending {
			if !slices.Contains(have, s) {
				return false
			}
		}
		return true
	})
	var stat, lastArchived, failed string
	waitUntil(t, 3*time.Minute, "archive_command to fail while MinIO is down", func() bool {
		stat = c.SQL(t, "SELECT coalesce(last_archived_wal, '') || '|' || failed_count FROM pg_stat_archiver")
		lastArchived, failed, _ = strings.Cut(stat, "|")
		n, _ := strconv.Atoi(failed)
		return n > 0
	})
	if lastArchived >= down {
		t.Errorf("PostgreSQL archived %s while MinIO was down (last segment of the load %s)", lastArchived, down)
	}
	if !fileExists(filepath.Join(c.DataDir(), "pg_wal", "archive_status", down+".ready")) {
		t.Errorf("%s.ready is gone while MinIO is down", down)
	}
	if !strings.Contains(readString(daemonLog), "repository is failing") {
		t.Errorf("the daemon did not report the failing repository:\n%s", tail(daemonLog, 20))
	}
	t.Logf("MinIO down: posix holds %d segments ahead of PostgreSQL's last archived %s (failures: %s)", len(pending), lastArchived, failed)

	// MinIO is back: everything catches up.
	m.start(t)
	back := c.SwitchWAL(t)
	c.WaitArchived(t, back, 5*time.Minute)
	want := segmentRange(t, first, back)
	checkArchived(t, "posix", posixArchived(t, repoDir), want)
	checkArchived(t, "minio", m.segments(t, "pgbackrest/repo2/archive/db/15-1/"), want)

	// MinIO hangs (SIGSTOP): its uploads stall until the I/O timeout, and
	// the posix repository still receives the new segments at once.
	m.signal(t, syscall.SIGSTOP)
	hangFrom := nextSegment(t, back)
	hang := walLoad(t, c, hangFrom, 6)
	hangStart := time.Now()
	waitUntil(t, 30*time.Second, "the posix repository to receive the segments while MinIO hangs", func() bool {
		have := posixArchived(t, repoDir)
		for _, s := range segmentRange(t, hangFrom, hang) {
			if !slices.Contains(have, s) {
				return false
			}
		}
		return true
	})
	t.Logf("MinIO hung: posix received %d segments, the last %v after the load", len(segmentRange(t, hangFrom, hang)),
		time.Since(hangStart).Round(time.Millisecond))
	if !strings.Contains(readString(daemonLog), "repository is slow") {
		t.Errorf("the daemon did not leave the hung repository behind:\n%s", tail(daemonLog, 20))
	}
	m.signal(t, syscall.SIGCONT)
	back = c.SwitchWAL(t)
	c.WaitArchived(t, back, 5*time.Minute)
	want = segmentRange(t, first, back)
	checkArchived(t, "posix", posixArchived(t, repoDir), want)
	checkArchived(t, "minio", m.segments(t, "pgbackrest/repo2/archive/db/15-1/"), want)

	// The daemon is killed with SIGKILL while it pushes.
	pushedBefore := strings.Count(readString(daemonLog), "pushed WAL file to the archive")
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			if strings.Count(readString(daemonLog), "pushed WAL file to the archive") > pushedBefore {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.kill()
	}()
	serverLogBefore := len(readString(c.LogPath()))
	afterKill := walLoad(t, c, nextSegment(t, back), 8)
	<-killed
	c.WaitArchived(t, afterKill, 5*time.Minute)
	if !strings.Contains(readString(c.LogPath())[serverLogBefore:], "pushed WAL file to the archive") {
		t.Errorf("archive_command never pushed by itself after the daemon was killed; server log:\n%s", tail(c.LogPath(), 20))
	}
	want = segmentRange(t, first, afterKill)
	checkArchived(t, "posix", posixArchived(t, repoDir), want)
	checkArchived(t, "minio", m.segments(t, "pgbackrest/repo2/archive/db/15-1/"), want)
	checkNoStray(t, repoDir)
	for r := 1; r <= 2; r++ {
		checkVerify(t, conf, r, len(want))
	}
	// A new daemon starts over the stale socket and answers again.
	d = startWALDaemon(t, u, conf, filepath.Join(dir, "daemon2.log"))
	d.waitSocket(t, socket)
	again := c.SwitchWAL(t)
	c.WaitArchived(t, again, 2*time.Minute)

	// The same segment name with other content is refused, and the archived
	// copy stays.
	seg := want[len(want)/2]
	orig, err := os.ReadFile(filepath.Join(c.DataDir(), "pg_wal", seg))
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Clone(orig)
	for i := 1 << 20; i < 1<<20+4096; i++ {
		other[i] ^= 0xA5
	}
	dup := filepath.Join(dir, "dup", seg)
	writeFileAs(t, u, dup, other)
	res := pgsidecarTry(t, conf, "--stanza=db", "archive-push", dup)
	if res.Code != 45 || !strings.Contains(res.Stdout+res.Stderr, seg) {
		t.Fatalf("archive-push of %s with other content: %s; want exit 45 naming the segment", seg, res)
	}
	sum := sha1.Sum(orig)
	files, _ := filepath.Glob(filepath.Join(repoDir, "archive/db/15-1", seg[:16], seg+"-*"))
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), hex.EncodeToString(sum[:])) {
		t.Fatalf("posix repository holds %v for %s after the refused push, want only the original", files, seg)
	}
	for r := 1; r <= 2; r++ {
		dest := filepath.Join(dir, "get", fmt.Sprintf("%s.%d", seg, r))
		pgsidecarRun(t, conf, "--stanza=db", "--repo="+strconv.Itoa(r), "archive-get", seg, dest)
		if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, orig) {
			t.Fatalf("%s from repo%d changed after the refused push (%v)", seg, r, err)
		}
	}
}

// walGlobal returns the [global] options the WAL tests share.
func walGlobal(dir string) []string {
	return []string{
		"log-path=" + filepath.Join(dir, "log"),
		"lock-path=" + filepath.Join(dir, "lock"),
		"archive-async=y",
		"spool-path=" + filepath.Join(dir, "spool"),
		"log-level-console=info",
		"log-level-file=off",
		"compress-type=lz4",
		"process-max=2",
		"archive-timeout=60",
	}
}

// walDBSection returns the [db] section for cluster c.
func walDBSection(c *cluster) []string {
	return []string{
		"",
		"[db]",
		"pg1-path=" + c.DataDir(),
		fmt.Sprintf("pg1-port=%d", c.Port()),
		"pg1-socket-path=" + c.SocketDir(),
		"pg1-user=" + pgSuperuser,
		"",
	}
}

// walLoad runs a pgbench load (initialisation when the database has none
// yet, then transactions), then bulk inserts until at least segments
// segments follow from, and returns the segment switched away from at the
// end.
func walLoad(t *testing.T, c *cluster, from string, segments int) string {
	t.Helper()
	if c.SQL(t, "SELECT count(*) FROM pg_tables WHERE tablename = 'pgbench_accounts'") == "0" {
		c.Pgbench(t, "-i", "-s", "10", "-q")
	}
	c.Pgbench(t, "-c", "2", "-t", "300")
	c.SQL(t, "CREATE TABLE IF NOT EXISTS walgen (id bigint, pad text)")
	for {
		cur := c.SQL(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
		if cur >= from && len(segmentRange(t, from, cur)) >= segments {
			break
		}
		c.SQL(t, "INSERT INTO walgen SELECT g, repeat(md5(random()::text), 8) FROM generate_series(1, 150000) g")
	}
	return c.SwitchWAL(t)
}

// checkVerify runs pgsidecar verify on repository r and requires it to pass
// having read at least segments WAL files.
func checkVerify(t *testing.T, conf string, r, segments int) {
	t.Helper()
	out := pgsidecarRun(t, conf, "--stanza=db", "--repo="+strconv.Itoa(r), "verify")
	m := regexp.MustCompile(`repo` + strconv.Itoa(r) + `: (\d+) WAL files`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pgsidecar verify of repo%d: no WAL count in\n%s", r, out)
	}
	if n, _ := strconv.Atoi(m[1]); n < segments {
		t.Fatalf("pgsidecar verify of repo%d read %d WAL files, want at least %d:\n%s", r, n, segments, out)
	}
}

// checkArchived requires every segment of want in have.
func checkArchived(t *testing.T, repo string, have, want []string) {
	t.Helper()
	var missing []string
	for _, s := range want {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s repository misses %d of %d segments: %v", repo, len(missing), len(want), missing)
	}
}

// checkNoStray requires the archive of a posix repository to hold only
// archive.info and complete WAL files: no temporary file left by an
// interrupted push.
func checkNoStray(t *testing.T, repoDir string) {
	t.Helper()
	root := filepath.Join(repoDir, "archive", "db")
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		name := e.Name()
		if name == "archive.info" || name == "archive.info.copy" || walFileName.MatchString(name) || strings.HasSuffix(name, ".history") {
			return nil
		}
		return fmt.Errorf("stray file %s", p)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond every 200 ms until it holds, failing after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readString returns a file's content, "" when it cannot be read.
func readString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// walDaemon is a `pgsidecar run` started by a WAL test, which may kill it.
type walDaemon struct {
	cmd    *exec.Cmd
	done   chan error
	log    string
	killed atomic.Bool
}

// startWALDaemon starts `pgsidecar run` as u, logging to logPath. At cleanup
// it is stopped with SIGTERM (its exit is then checked) unless it was
// killed.
func startWALDaemon(t *testing.T, u osUser, conf, logPath string) *walDaemon {
	t.Helper()
	cmd := launchDaemon(t, u, conf, logPath)
	d := &walDaemon{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if d.killed.Load() {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done:
			if err != nil && !strings.Contains(err.Error(), "killed") {
				t.Errorf("pgsidecar run: %v; log:\n%s", err, tail(logPath, 20))
			}
		case <-time.After(time.Minute):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
			t.Errorf("pgsidecar run ignored SIGTERM; log:\n%s", tail(logPath, 20))
		}
	})
	return d
}

// waitSocket waits for the daemon's socket.
func (d *walDaemon) waitSocket(t *testing.T, socket string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not listen on %s; its log:\n%s", socket, tail(d.log, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to the daemon and waits for it. It may be called from
// any goroutine.
func (d *walDaemon) kill() {
	d.killed.Store(true)
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// GCS and Azure test services, from the test services contract.
const (
	defaultAzureEndpoint = "http://127.0.0.1:10000/devstoreaccount1"
	azuriteAccount       = "devstoreaccount1"
	azuriteKey           = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// newGCSBucket creates a bucket on the GCS emulator, removed with its
// objects at cleanup, and returns the endpoint and the bucket's name.
func newGCSBucket(t testing.TB) (string, string) {
	t.Helper()
	svc := gcstest.Require(t)
	return svc.Endpoint, svc.NewBucket(t, "pgsidecar-it-")
}

// azureContainer is a container created on the Azure test service.
type azureContainer struct {
	endpoint, account, key, container string
}

// newAzureContainer creates a container on the Azure test service, deleted
// at cleanup.
func newAzureContainer(t testing.TB) azureContainer {
	t.Helper()
	a := azureContainer{
		endpoint:  strings.TrimSuffix(storagetest.Env("PGSIDECAR_TEST_AZURE_ENDPOINT", defaultAzureEndpoint), "/"),
		account:   storagetest.Env("PGSIDECAR_TEST_AZURE_ACCOUNT", azuriteAccount),
		key:       storagetest.Env("PGSIDECAR_TEST_AZURE_KEY", azuriteKey),
		container: "pgsidecar-it-" + randomHex(t, 6),
	}
	// No retries, so that a service that is down is reported at once.
	c, err := azure.New(t.Context(), azure.Config{
		Account: a.account, Container: a.container, Endpoint: a.endpoint, Key: a.key, VerifyTLS: true, MaxRetries: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.CreateContainer(ctx); err != nil {
		var re *azure.ResponseError
		if errors.As(err, &re) {
			t.Fatalf("create container %s: %v", a.container, err)
		}
		storagetest.Unavailable(t, "azure", err)
	}
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.DeleteContainer(ctx); err != nil {
			t.Errorf("delete container %s: %v", a.container, err)
		}
	})
	return a
}

// MinIO's credentials, as the test services contract sets them.
const (
	minioUser     = "pgsidecar"
	minioPassword = "pgsidecar-secret"
)

// testMinio is a MinIO server of one test, over plain HTTP on a free port,
// with its own data directory; unlike the shared one it may be killed.
type testMinio struct {
	bin, data, addr, bucket string
	cmd                     *exec.Cmd
	done                    chan struct{}
}

// startTestMinio starts a MinIO of the test and creates a bucket in it.
// The binary comes from the test services' cache; without it the test is
// skipped, or fails when PGSIDECAR_TEST_REQUIRE lists s3.
func startTestMinio(t *testing.T) *testMinio {
	t.Helper()
	cache := storagetest.Env("PGSIDECAR_CACHE", "")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "pgsidecar")
	}
	m := &testMinio{bin: filepath.Join(cache, "bin", "minio"), data: t.TempDir(),
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), bucket: "pgsidecar-it"}
	if _, err := os.Stat(m.bin); err != nil {
		storagetest.Unavailable(t, "s3", err)
	}
	t.Cleanup(func() { m.kill(t) })
	m.start(t)
	// A MinIO that says it is ready may still answer 503
	// XMinioServerNotInitialized for a moment.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err := m.client(t).CreateBucket(t.Context())
		var respErr *s3.ResponseError
		if err == nil {
			break
		}
		if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("create bucket in the test MinIO: %v", err)
		}
	}
	return m
}

// start runs the server (again) and waits until it is ready.
func (m *testMinio) start(t *testing.T) {
	t.Helper()
	certs := t.TempDir() // empty: plain HTTP
	logf, err := os.OpenFile(filepath.Join(m.data, "minio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, "server", "--address", m.addr, "--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		"--certs-dir", certs, filepath.Join(m.data, "data"))
	cmd.Env = []string{"HOME=" + m.data, "PATH=/usr/bin:/bin", "MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioPassword,
		"MINIO_SITE_REGION=us-east-1", "MINIO_UPDATE=off"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	done := m.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + m.addr + "/minio/health/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("the test MinIO exited at start")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test MinIO is not ready after a minute: %v", err)
		}
	}
}

// kill stops the server with SIGKILL and waits for it.
func (m *testMinio) kill(t *testing.T) {
	t.Helper()
	if m.cmd == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
	m.cmd = nil
}

// signal sends sig to the server (SIGSTOP, SIGCONT).
func (m *testMinio) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-m.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("signal the test MinIO: %v", err)
	}
}

// client returns a store at the root of the server's bucket (the driver
// over plain HTTP), closed at cleanup.
func (m *testMinio) client(t *testing.T) *s3.Store {
	t.Helper()
	st, err := s3.New(t.Context(), s3.Config{
		Bucket: m.bucket, Endpoint: "http://" + m.addr, Region: "us-east-1",
		Key: minioUser, KeySecret: minioPassword, URIStyle: s3.URIStylePath,
	})
	if err != nil {
		t.Fatalf("open the test MinIO: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// segments lists the segment names archived under prefix.
func (m *testMinio) segments(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	err := m.client(t).List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		if name := path.Base(oi.Key); walFileName.MatchString(name) {
			out = append(out, name[:24])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list the test MinIO: %v", err)
	}
	return out
}
