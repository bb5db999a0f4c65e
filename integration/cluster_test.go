package integration

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// clusterStartTimeout bounds Start: recovery of a restored cluster
	// included.
	clusterStartTimeout = 2 * time.Minute
	// clusterStopTimeout bounds a fast or immediate shutdown.
	clusterStopTimeout = time.Minute
	// pgSuperuser is the bootstrap superuser initdb creates.
	pgSuperuser = "postgres"
)

// clusterOptions configures newCluster.
type clusterOptions struct {
	// ArchiveCommand is PostgreSQL's archive_command; archive_mode is on
	// when it is set and off otherwise.
	ArchiveCommand string
	// DataChecksums runs initdb with --data-checksums.
	DataChecksums bool
	// Settings are extra postgresql.conf settings, written after the
	// harness's own (so they win). Values are written verbatim: quote
	// strings yourself, e.g. "'on'" or "'/path'".
	Settings map[string]string
}

// cluster is a PostgreSQL 15 cluster run as the unprivileged user by the
// test. Its methods are for the test's goroutine only (not concurrent use).
// The postmaster is a child of the test process in its own process group;
// it receives SIGQUIT (immediate shutdown) if the test process dies.
type cluster struct {
	user      osUser
	dir       string // work dir: data, socket, log
	dataDir   string
	socketDir string
	logPath   string
	port      int
	// cmdSettings are extra postgres command-line options (-c name=value).
	cmdSettings []string

	proc    *exec.Cmd     // running postmaster, nil when stopped
	done    chan struct{} // closed when proc has exited
	waitErr error         // proc's exit, readable after done is closed
}

// newCluster initdb's a new cluster (as the unprivileged user, trust
// authentication, superuser "postgres", locale C) in a fresh work dir and
// configures it; it does not start it. At cleanup the cluster is stopped
// (immediate) if it runs and its work dir is removed.
func newCluster(t testing.TB, opts clusterOptions) *cluster {
	t.Helper()
	u := requirePostgres(t)
	c := newClusterDirs(t, u)
	c.dataDir = filepath.Join(c.dir, "data")
	args := []string{"-D", c.dataDir, "-A", "trust", "-U", pgSuperuser, "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"}
	if opts.DataChecksums {
		args = append(args, "--data-checksums")
	}
	mustRunAsUser(t, u, userCmd{Path: filepath.Join(pgBin, "initdb"), Args: args, Dir: c.dir})

	settings := map[string]string{
		"port":                    strconv.Itoa(c.port),
		"listen_addresses":        "''",
		"unix_socket_directories": quoteConf(c.socketDir),
		"wal_level":               "replica",
		"archive_mode":            "off",
		"max_wal_senders":         "4",
		"max_connections":         "30",
		"shared_buffers":          "16MB",
		"max_wal_size":            "256MB",
		"min_wal_size":            "32MB",
		"checkpoint_timeout":      "30min",
		"fsync":                   "off", // test clusters never survive an OS crash
		"synchronous_commit":      "off",
		"full_page_writes":        "on",
		"logging_collector":       "off",
		"log_line_prefix":         quoteConf("%m [%p] "),
		"log_checkpoints":         "on",
	}
	if opts.ArchiveCommand != "" {
		settings["archive_mode"] = "on"
		settings["archive_command"] = quoteConf(opts.ArchiveCommand)
	}
	var conf strings.Builder
	conf.WriteString("\n# integration test harness\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	if len(opts.Settings) > 0 {
		conf.WriteString("# test settings\n")
		for _, k := range slices.Sorted(maps.Keys(opts.Settings)) {
			fmt.Fprintf(&conf, "%s = %s\n", k, opts.Settings[k])
		}
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("open postgresql.conf: %v", err)
	}
	_, err = f.WriteString(conf.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("write postgresql.conf: %v", err)
	}
	return c
}

// attachCluster returns a cluster for an existing data directory, e.g. one
// restored by pgbackrest, owned by the unprivileged user. It gets its own
// port, socket directory and log (given on the postgres command line, so
// they override the restored postgresql.conf), plus settings, also given as
// `-c name=value` (unquoted values, e.g. "archive_mode": "off"). It is not
// started. At cleanup it is stopped (immediate) if it runs; dataDir itself
// is left to its creator.
func attachCluster(t testing.TB, dataDir string, settings map[string]string) *cluster {
	t.Helper()
	u := requirePostgres(t)
	c := newClusterDirs(t, u)
	c.dataDir = dataDir
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		c.cmdSettings = append(c.cmdSettings, "-c", k+"="+settings[k])
	}
	return c
}

// newClusterDirs creates the work dir, socket dir and log of a cluster and
// registers its cleanup.
func newClusterDirs(t testing.TB, u osUser) *cluster {
	t.Helper()
	c := &cluster{user: u, dir: newWorkDir(t, u, "cluster"), port: freePort(t)}
	c.socketDir = mkdirAs(t, u, filepath.Join(c.dir, "sock"))
	c.logPath = filepath.Join(c.dir, "postgres.log")
	writeFileAs(t, u, c.logPath, nil)
	t.Cleanup(func() { c.stopImmediate(t) })
	return c
}

// quoteConf quotes s as a postgresql.conf string value.
func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// DataDir returns the cluster's data directory.
func (c *cluster) DataDir() string { return c.dataDir }

// Port returns the cluster's port (the number in its socket's name; the
// cluster does not listen on TCP).
func (c *cluster) Port() int { return c.port }

// SocketDir returns the directory of the cluster's Unix socket.
func (c *cluster) SocketDir() string { return c.socketDir }

// WorkDir returns the cluster's work dir (owned by the unprivileged user,
// removed at cleanup); tests may put their own files there.
func (c *cluster) WorkDir() string { return c.dir }

// LogPath returns the server log.
func (c *cluster) LogPath() string { return c.logPath }

// ConnString returns a libpq/pgx connection string for the superuser over
// the Unix socket (trust authentication).
func (c *cluster) ConnString() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", c.socketDir, c.port, pgSuperuser)
}

// Running reports whether the postmaster started by Start is still running.
func (c *cluster) Running() bool {
	if c.proc == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Start starts the postmaster and waits until it accepts connections
// (postmaster.pid status "ready", as pg_ctl -w waits). When the data dir
// has a recovery.signal and no standby.signal (a restored cluster), Start
// also waits until recovery has ended and the cluster is promoted
// (pg_is_in_recovery() false); a recovery target that pauses never gets
// there. Start fails the test with the server log if the postmaster exits
// or is not ready within two minutes.
func (c *cluster) Start(t testing.TB) {
	t.Helper()
	if c.Running() {
		t.Fatalf("cluster already running")
	}
	promote := fileExists(filepath.Join(c.dataDir, "recovery.signal")) &&
		!fileExists(filepath.Join(c.dataDir, "standby.signal"))
	logf, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("open server log: %v", err)
	}
	defer logf.Close()
	args := append([]string{"-D", c.dataDir, "-p", strconv.Itoa(c.port), "-k", c.socketDir, "-c", "listen_addresses="}, c.cmdSettings...)
	cmd := exec.Command(filepath.Join(pgBin, "postgres"), args...)
	cmd.Dir = c.dir
	cmd.Env = baseEnv(c.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.user.credential(),
		Setpgid:    true,
		Pdeathsig:  syscall.SIGQUIT,
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	c.proc, c.done = cmd, make(chan struct{})
	done := c.done
	go func() {
		err := cmd.Wait()
		c.waitErr = err
		close(done)
	}()

	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	deadline := time.Now().Add(clusterStartTimeout)
	for ready := false; ; {
		select {
		case <-done:
			c.proc = nil
			t.Fatalf("postgres exited during startup (%v); server log:\n%s", c.waitErr, tail(c.logPath, 40))
		case <-time.After(50 * time.Millisecond):
		}
		if !ready {
			status, ok := postmasterStatus(pidFile, cmd.Process.Pid)
			ready = ok && status == "ready"
		}
		if ready && !promote {
			return
		}
		if ready {
			if res := c.psql(t, "SELECT pg_is_in_recovery()"); res.Code == 0 && strings.TrimSpace(res.Stdout) == "f" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready (promoted: %v) after %v; server log:\n%s", promote, clusterStartTimeout, tail(c.logPath, 40))
		}
	}
}

// postmasterStatus reads the status line of postmaster.pid (line 8, as
// pg_ctl -w does) when the file belongs to pid.
func postmasterStatus(pidFile string, pid int) (string, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return "", false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[0]) != strconv.Itoa(pid) {
		return "", false
	}
	return strings.TrimSpace(lines[7]), true
}

// Stop shuts the cluster down (fast: SIGINT) and waits for the postmaster
// to exit cleanly.
func (c *cluster) Stop(t testing.TB) {
	t.Helper()
	if !c.Running() {
		t.Fatalf("cluster not running")
	}
	if err := c.proc.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("signal postgres: %v", err)
	}
	select {
	case <-c.done:
	case <-time.After(clusterStopTimeout):
		t.Fatalf("postgres did not stop within %v; server log:\n%s", clusterStopTimeout, tail(c.logPath, 40))
	}
	c.proc = nil
	if c.waitErr != nil {
		t.Fatalf("postgres fast shutdown: %v; server log:\n%s", c.waitErr, tail(c.logPath, 40))
	}
}

// stopImmediate is the cleanup: an immediate shutdown (SIGQUIT) if the
// postmaster still runs, SIGKILL to its process group if that does not
// work, and SIGKILL to whatever is left in the group (an archive_command).
func (c *cluster) stopImmediate(t testing.TB) {
	if c.proc == nil {
		return
	}
	pgid := c.proc.Process.Pid
	if c.Running() {
		_ = c.proc.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(clusterStopTimeout):
			t.Errorf("postgres ignored immediate shutdown for %v; killing its process group", clusterStopTimeout)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-c.done
		}
	}
	c.proc = nil
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill leftovers of postgres process group %d: %v", pgid, err)
	}
}

// psql runs one psql -c command as the superuser and returns its result.
func (c *cluster) psql(t testing.TB, query string) cmdResult {
	t.Helper()
	return runAsUser(t, c.user, userCmd{
		Path: filepath.Join(pgBin, "psql"),
		Args: []string{"-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
			"-h", c.socketDir, "-p", strconv.Itoa(c.port), "-U", pgSuperuser, "-d", "postgres", "-c", query},
		Dir:     c.dir,
		Timeout: 2 * time.Minute,
	})
}

// SQL runs query with psql -Atc as the superuser and returns its output
// without the trailing newline: one line per row, columns separated by |.
// Several statements separated by ; run in one implicit transaction and
// the rows of each are printed, one statement after the other. An SQL
// error fails the test.
func (c *cluster) SQL(t testing.TB, query string) string {
	t.Helper()
	res := c.psql(t, query)
	if res.Code != 0 {
		t.Fatalf("SQL %q: %s", query, res)
	}
	return strings.TrimRight(res.Stdout, "\n")
}

// SwitchWAL writes a row (so that the current segment is not empty), forces
// a WAL switch and returns the name of the segment switched away from.
func (c *cluster) SwitchWAL(t testing.TB) string {
	t.Helper()
	c.SQL(t, "CREATE TABLE IF NOT EXISTS harness_wal_switch (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now()); "+
		"INSERT INTO harness_wal_switch DEFAULT VALUES")
	seg := c.SQL(t, "SELECT pg_walfile_name(pg_switch_wal())")
	if !isWALSegment(seg) {
		t.Fatalf("pg_switch_wal: unexpected segment name %q", seg)
	}
	return seg
}

// Pgbench runs pgbench as the superuser against database postgres with
// args (e.g. "-i", "-s", "1") and returns its standard output. A failure
// fails the test with pgbench's output.
func (c *cluster) Pgbench(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"-h", c.socketDir, "-p", strconv.Itoa(c.port), "-U", pgSuperuser}, args...)
	full = append(full, "postgres")
	return mustRunAsUser(t, c.user, userCmd{Path: filepath.Join(pgBin, "pgbench"), Args: full, Dir: c.dir}).Stdout
}

// WaitArchived polls pg_stat_archiver until segment (a 24-digit WAL file
// name) or a later one has been archived, failing the test after timeout
// with the archiver's last failure and the server log. The archiver
// archives in name order, so a later last_archived_wal implies segment.
func (c *cluster) WaitArchived(t testing.TB, segment string, timeout time.Duration) {
	t.Helper()
	if !isWALSegment(segment) {
		t.Fatalf("WaitArchived: %q is not a WAL segment name", segment)
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		last = c.SQL(t, "SELECT coalesce(last_archived_wal, '') || '|' || failed_count || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver")
		archived, _, _ := strings.Cut(last, "|")
		if len(archived) >= 24 && isWALSegment(archived[:24]) && archived[:24] >= segment {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("segment %s not archived within %v (last_archived_wal|failed_count|last_failed_wal = %s); server log:\n%s",
		segment, timeout, last, tail(c.logPath, 30))
}

// isWALSegment reports whether s is a 24-digit upper-case hex WAL segment
// name.
func isWALSegment(s string) bool {
	if len(s) != 24 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}
