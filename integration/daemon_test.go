package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonArchiving runs PostgreSQL with pgsidecar's archive-push as
// archive_command and the pgsidecar daemon (pgsidecar run) beside it, both as
// the unprivileged user, with a posix and an S3 (MinIO) repository. A
// pgbench load produces at least 16 segments; every one must reach both
// repositories, most of them pushed by the daemon's look-ahead before
// PostgreSQL asked, and stock pgbackrest archive-get must restore one from
// each repository identical to pgsidecar's copy. With the daemon stopped,
// archive_command pushes by itself.
func TestDaemonArchiving(t *testing.T) {
	u := requirePostgres(t)
	svc, bucket := newS3Bucket(t)
	dir := newWorkDir(t, u, "daemon")
	for _, d := range []string{"log", "lock", "spool", "repo"} {
		mkdirAs(t, u, filepath.Join(dir, d))
	}
	conf := filepath.Join(dir, "pgbackrest.conf")
	c := newCluster(t, clusterOptions{
		ArchiveCommand: fmt.Sprintf("%s --config=%s --stanza=db archive-push %%p", pgsidecarBin, conf),
	})
	metricsAddr := freeTCPAddr(t)
	ini := strings.Join(slices.Concat([]string{
		"[global]",
		"log-path=" + filepath.Join(dir, "log"),
		"lock-path=" + filepath.Join(dir, "lock"),
		"archive-async=y",
		"spool-path=" + filepath.Join(dir, "spool"),
		"log-level-console=info",
		"log-level-file=off",
		"compress-type=lz4",
		"process-max=2",
		"archive-timeout=60",
		"metrics-address=" + metricsAddr,
		"repo1-type=posix",
		"repo1-path=" + filepath.Join(dir, "repo"),
		"repo1-retention-full=2",
		"repo2-path=/pgbackrest/repo2",
		"repo2-retention-full=2",
	}, svc.repoOptions(2, bucket), []string{
		"",
		"[db]",
		"pg1-path=" + c.DataDir(),
		fmt.Sprintf("pg1-port=%d", c.Port()),
		"pg1-socket-path=" + c.SocketDir(),
		"pg1-user=" + pgSuperuser,
		"",
	}), "\n")
	writeFileAs(t, u, conf, []byte(ini))
	pgsidecarRun(t, conf, "--stanza=db", "stanza-create")

	daemonLog := filepath.Join(dir, "daemon.log")
	daemon, stopDaemon := startPgsidecarDaemon(t, u, conf, daemonLog)
	socket := filepath.Join(dir, "spool", "pgsidecar-db.sock")
	deadline := time.Now().Add(30 * time.Second)
	for !fileExists(socket) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not create %s; its log:\n%s", socket, tail(daemonLog, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fi, err := os.Lstat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want mode 0600", fi, err)
	}

	c.Start(t)
	first := c.SQL(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Pgbench(t, "-i", "-s", "20", "-q")
	c.Pgbench(t, "-c", "2", "-t", "2000")
	last := c.SwitchWAL(t)
	c.WaitArchived(t, last, 5*time.Minute)

	want := segmentRange(t, first, last)
	if len(want) < 16 {
		t.Fatalf("the load produced %d segments (%s..%s), want at least 16", len(want), first, last)
	}
	posixSegs := posixArchived(t, filepath.Join(dir, "repo"))
	s3Segs := s3Archived(t, svc, bucket, "pgbackrest/repo2/archive/db/15-1/")
	for _, s := range want {
		if !slices.Contains(posixSegs, s) || !slices.Contains(s3Segs, s) {
			t.Errorf("segment %s: in posix %v, in s3 %v", s, slices.Contains(posixSegs, s), slices.Contains(s3Segs, s))
		}
	}

	// The daemon pushed ahead of PostgreSQL, and archive_command asked it.
	dlog, _ := os.ReadFile(daemonLog)
	lookAhead := strings.Count(string(dlog), `"look-ahead": true`)
	if lookAhead == 0 {
		t.Errorf("no look-ahead push in the daemon's log:\n%s", tail(daemonLog, 30))
	}
	plog, _ := os.ReadFile(c.LogPath())
	answered := regexp.MustCompile(`daemon answered.*"op": "push".*"ok": true.*"elapsed": "([^"]+)"`).FindAllStringSubmatch(string(plog), -1)
	if len(answered) == 0 {
		t.Fatalf("archive_command never went through the daemon; server log:\n%s", tail(c.LogPath(), 30))
	}
	var fast int
	var worst time.Duration
	for _, m := range answered {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("elapsed %q: %v", m[1], err)
		}
		worst = max(worst, d)
		if d < 5*time.Millisecond {
			fast++
		}
	}
	if testing.Verbose() {
		t.Logf("daemon log (last lines):\n%s", tail(daemonLog, 8))
	}
	t.Logf("%d segments, %d look-ahead pushes; %d archive_command answers by the daemon, %d under 5 ms, slowest %v",
		len(want), lookAhead, len(answered), fast, worst)

	// Stock pgbackrest restores a segment from each repository, identical
	// to pgsidecar's copy.
	seg := want[len(want)/2]
	ours := filepath.Join(dir, "ours")
	pgsidecarRun(t, conf, "--stanza=db", "archive-get", seg, ours)
	for _, r := range []string{"1", "2"} {
		theirs := filepath.Join(dir, "theirs"+r)
		pgbackrestRun(t, conf, "--stanza=db", "--no-archive-async", "--repo="+r, "archive-get", seg, theirs)
		a, errA := os.ReadFile(ours)
		b, errB := os.ReadFile(theirs)
		if errA != nil || errB != nil || len(a) != 16<<20 || !bytes.Equal(a, b) {
			t.Fatalf("segment %s from repo%s: pgbackrest's copy differs from pgsidecar's (%v, %v, %d bytes)", seg, r, errA, errB, len(a))
		}
	}

	// restore_command through the daemon: prefetched segments, and the
	// metrics endpoint.
	checkDaemonRestoreCommand(t, conf, c.DataDir(), filepath.Join(dir, "spool"), want[:4])
	checkDaemonMetrics(t, metricsAddr)

	// SIGHUP reloads the configuration; the daemon lives on.
	if err := daemon.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(daemonLog); strings.Contains(string(b), "configuration reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP; daemon log:\n%s", tail(daemonLog, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	reloaded := c.SwitchWAL(t)
	c.WaitArchived(t, reloaded, 2*time.Minute)

	// Without the daemon, archive_command pushes by itself.
	stopDaemon()
	if fileExists(socket) {
		t.Errorf("the stopped daemon left its socket")
	}
	alone := c.SwitchWAL(t)
	c.WaitArchived(t, alone, 2*time.Minute)
	if !slices.Contains(posixArchived(t, filepath.Join(dir, "repo")), alone) {
		t.Errorf("segment %s archived without the daemon is not in repo1", alone)
	}
}

// launchDaemon starts `pgsidecar run` for conf as u, in its own process
// group (killed if the test process dies), logging to logPath.
func launchDaemon(t *testing.T, u osUser, conf, logPath string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logf.Close() })
	cmd := exec.Command(pgsidecarBin, "--config="+conf, "--stanza=db", "run")
	cmd.Dir = filepath.Dir(conf)
	cmd.Env = baseEnv(cmd.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential(), Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgsidecar run: %v", err)
	}
	return cmd
}

// startPgsidecarDaemon starts `pgsidecar run` as u, logging to logPath, and
// returns the process and a function that stops it with SIGTERM and waits
// (also registered as a cleanup).
func startPgsidecarDaemon(t *testing.T, u osUser, conf, logPath string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := launchDaemon(t, u, conf, logPath)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pgsidecar run: %v; log:\n%s", err, tail(logPath, 20))
			}
		case <-time.After(time.Minute):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("pgsidecar run ignored SIGTERM; log:\n%s", tail(logPath, 20))
		}
	}
	t.Cleanup(stop)
	return cmd, stop
}

// segmentRange lists the segments from first to last on timeline 1
// (16 MiB segments).
func segmentRange(t *testing.T, first, last string) []string {
	t.Helper()
	var out []string
	for s := first; s <= last; s = nextSegment(t, s) {
		out = append(out, s)
	}
	return out
}

// posixArchived lists the segment names archived in a posix repository.
func posixArchived(t *testing.T, repoDir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(repoDir, "archive/db/15-1/*/*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range m {
		if name := filepath.Base(p); len(name) > 24 && name[24] == '-' {
			out = append(out, name[:24])
		}
	}
	return out
}

// s3Archived lists the segment names archived under prefix in bucket.
func s3Archived(t *testing.T, svc s3Service, bucket, prefix string) []string {
	t.Helper()
	var out []string
	for _, k := range listS3(t, svc.client(t), bucket, prefix) {
		if name := path.Base(k); len(name) > 24 && name[24] == '-' {
			out = append(out, name[:24])
		}
	}
	return out
}
