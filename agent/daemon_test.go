package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsidecar/pgsidecar/archive"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/pg"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
	"github.com/pgsidecar/pgsidecar/storage/posix"
)

// daemonFixture is a data directory with pg_control and PG_VERSION of a real
// PostgreSQL 15 cluster and an empty pg_wal/archive_status (the cluster
// does not run: the tests write the segments and status files PostgreSQL
// would), a stanza created in a posix repository, and a configuration for
// both the daemon and its clients.
type daemonFixture struct {
	data, wal, status string
	repoDir, spool    string
	ini               string
	sysID             uint64
}

func newDaemonFixture(t *testing.T, extraINI string) *daemonFixture {
	t.Helper()
	src := initdb(t)
	ctl, err := pg.ReadControl(src)
	if err != nil {
		t.Fatal(err)
	}
	f := &daemonFixture{data: filepath.Join(t.TempDir(), "data"), repoDir: t.TempDir(), sysID: ctl.SystemID}
	f.wal = filepath.Join(f.data, "pg_wal")
	f.status = filepath.Join(f.wal, "archive_status")
	if err := os.MkdirAll(f.status, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.data, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PG_VERSION", "global/pg_control"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f.data, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A short spool path: a socket path must stay under 108 bytes.
	if f.spool, err = os.MkdirTemp("", "pgsc-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(f.spool) })
	f.ini = "[global]\nrepo1-path=" + f.repoDir + "\narchive-async=y\nspool-path=" + f.spool +
		"\ncompress-type=lz4\nprocess-max=2\nlog-level-file=off\n" + extraINI + "[db]\npg1-path=" + f.data + "\n"
	stanzaFor(t, f.ini)
	return f
}

// cfg loads the fixture's configuration for a command.
func (f *daemonFixture) cfg(t *testing.T, args ...string) *config.Config {
	t.Helper()
	return loadCfg(t, f.ini, append([]string{"--stanza=db"}, args...)...)
}

// addWAL writes segment name into pg_wal and, with ready, its .ready status
// file, as PostgreSQL does when a segment is complete.
func (f *daemonFixture) addWAL(t *testing.T, name string, seed uint64, ready bool) []byte {
	t.Helper()
	b := walSegment(f.sysID, seed)
	if err := os.WriteFile(filepath.Join(f.wal, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if ready {
		if err := os.WriteFile(filepath.Join(f.status, name+".ready"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// archived lists the repository files of a segment, not counting the
// temporary files of uploads in progress.
func (f *daemonFixture) archived(t *testing.T, name string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(f.repoDir, "archive/db/15-1", name[:16], name+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range m {
		if !strings.Contains(filepath.Base(p), "-tmp-") {
			out = append(out, p)
		}
	}
	return out
}

// segmentDir lists everything in the repository directory of a segment,
// temporary files included.
func (f *daemonFixture) segmentDir(t *testing.T, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.repoDir, "archive/db/15-1", name[:16]))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// testDaemonOptions are short periods for tests.
func testDaemonOptions() daemonOptions {
	return daemonOptions{rescan: 50 * time.Millisecond, drain: 10 * time.Second, backlogWarn: 16,
		retryMin: 100 * time.Millisecond, retryMax: time.Second, slowGrace: 200 * time.Millisecond}
}

// runningDaemon is a daemon started by a test.
type runningDaemon struct {
	d      *daemon
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startDaemon runs the daemon until the test ends or stop is called.
func startDaemon(t *testing.T, cfg *config.Config, repos []Repo, deps Deps, opts daemonOptions) *runningDaemon {
	t.Helper()
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningDaemon{cancel: cancel, done: make(chan error, 1)}
	started := make(chan *daemon, 1)
	opts.started = func(d *daemon) { started <- d }
	go func() { r.done <- runDaemon(ctx, cfg, repos, deps, opts) }()
	select {
	case r.d = <-started:
	case err := <-r.done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels the daemon and returns its result.
func (r *runningDaemon) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue returns the value of a gauge or counter with the given labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return value(m)
		}
	}
	return -1
}

func value(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// faultRepos opens the fixture's repository through a fault store.
func faultRepos(t *testing.T, cfg *config.Config, fs *fault.Store) []Repo {
	t.Helper()
	ps, err := posix.New(posix.Config{Root: cfg.Repos[0].Path})
	if err != nil {
		t.Fatal(err)
	}
	fs.Inner = ps
	return []Repo{{Config: cfg.Repos[0], Store: fs}}
}

// TestDaemonLookAhead checks that the watcher archives .ready segments
// before anyone asks, never renames PostgreSQL's status files, answers a
// request for an archived segment at once, forgets a segment once
// PostgreSQL marked it done, and exports the backlog metrics.
func TestDaemonLookAhead(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zapcore.InfoLevel)
	opts := testDaemonOptions()
	opts.backlogWarn = 2
	r := startDaemon(t, cfg, openTestRepos(t, cfg), Deps{Log: zap.New(core), Registry: reg}, opts)

	segs := []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"}
	contents := map[string][]byte{}
	for i, s := range segs {
		contents[s] = f.addWAL(t, s, uint64(10+i), true)
	}
	waitFor(t, 60*time.Second, "the look-ahead pushes", func() bool {
		for _, s := range segs {
			if len(f.archived(t, s)) != 1 {
				return false
			}
		}
		return true
	})
	for _, s := range segs {
		if _, err := os.Stat(filepath.Join(f.status, s+".ready")); err != nil {
			t.Fatalf("the daemon touched PostgreSQL's status file of %s: %v", s, err)
		}
	}
	if n := logs.FilterMessage("WAL archive backlog is growing").Len(); n != 1 {
		t.Errorf("backlog warnings: %d, want 1 (3 ready files, threshold 2)", n)
	}
	if v := metricValue(t, reg, "pgsidecar_archive_ready_files", nil); v != 3 {
		t.Errorf("ready files metric %v, want 3", v)
	}
	if v := metricValue(t, reg, "pgsidecar_archive_ready_bytes", nil); v != 3*16<<20 {
		t.Errorf("ready bytes metric %v, want %d", v, 3*16<<20)
	}
	waitFor(t, 5*time.Second, "the push counter", func() bool {
		return metricValue(t, reg, "pgsidecar_archive_push_total", map[string]string{"repo": "repo1", "result": "written"}) == 3
	})
	if age := metricValue(t, reg, "pgsidecar_archive_last_push_age_seconds", nil); !(age >= 0 && age < 60) {
		t.Errorf("last push age %v", age)
	}

	// PostgreSQL's archive_command now asks: the daemon answers at once,
	// through the command's own path (Run, without opening a repository).
	var total time.Duration
	for _, s := range segs {
		push := f.cfg(t, "archive-push", filepath.Join(f.wal, s))
		start := time.Now()
		if err := Run(t.Context(), push, Deps{Log: zap.NewNop()}, io.Discard); err != nil {
			t.Fatalf("archive-push %s: %v", s, err)
		}
		total += time.Since(start)
	}
	// The protocol alone, over many calls.
	const calls = 50
	start := time.Now()
	for range calls {
		resp, err := callDaemon(t.Context(), r.d.socket, request{Op: "push", Name: segs[0], Path: filepath.Join(f.wal, segs[0])}, 5*time.Second)
		if err != nil || !resp.OK {
			t.Fatalf("push request: %+v %v", resp, err)
		}
	}
	perCall := time.Since(start) / calls
	avg := total / time.Duration(len(segs))
	t.Logf("archive-push of an archived segment: %v per command (config load excluded), %v per socket round trip", avg, perCall)
	if avg > 200*time.Millisecond || perCall > 200*time.Millisecond {
		t.Errorf("answers for archived segments are slow: %v per command, %v per call", avg, perCall)
	}
	if n := metricValue(t, reg, "pgsidecar_archive_push_total", map[string]string{"repo": "repo1", "result": "written"}); n != 3 {
		t.Errorf("requests pushed again: %v writes, want 3", n)
	}

	// PostgreSQL marks them done: the daemon forgets them.
	for _, s := range segs {
		if err := os.Rename(filepath.Join(f.status, s+".ready"), filepath.Join(f.status, s+".done")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the entries to be forgotten", func() bool {
		r.d.mu.Lock()
		defer r.d.mu.Unlock()
		return len(r.d.entries) == 0
	})
	if v := metricValue(t, reg, "pgsidecar_archive_ready_files", nil); v != 0 {
		t.Errorf("ready files metric %v after .done, want 0", v)
	}

	// The archived content is the segment's.
	for _, s := range segs[:1] {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := runCommand(t, f.ini, "archive-get", s, dest); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, contents[s]) {
			t.Fatalf("%s: archived content differs", s)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	if _, err := os.Lstat(r.d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestDaemonRequestWaits checks that a request for a segment whose
// look-ahead push is in flight waits for it rather than pushing twice, and
// that a request for a segment the watcher has not seen pushes it.
func TestDaemonRequestWaits(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	gate := make(chan struct{})
	inPut := make(chan string, 8)
	var puts atomic.Int32
	fs := &fault.Store{BeforePut: func(ctx context.Context, key string, r io.Reader) (io.Reader, error) {
		if strings.Contains(key, "000000010000000000000005") {
			puts.Add(1)
			inPut <- key
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return r, nil
	}}
	r := startDaemon(t, cfg, faultRepos(t, cfg, fs), Deps{}, testDaemonOptions())

	seg := "000000010000000000000005"
	f.addWAL(t, seg, 5, true)
	select {
	case <-inPut:
	case <-time.After(30 * time.Second):
		t.Fatal("the look-ahead push did not start")
	}
	answered := make(chan error, 1)
	start := time.Now()
	go func() {
		answered <- Run(context.Background(), f.cfg(t, "archive-push", filepath.Join(f.wal, seg)), Deps{Log: zap.NewNop()}, io.Discard)
	}()
	select {
	case err := <-answered:
		t.Fatalf("the request answered before the push ended: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	if err := <-answered; err != nil {
		t.Fatalf("archive-push: %v", err)
	}
	t.Logf("request waited %v for the in-flight push", time.Since(start))
	if n := puts.Load(); n != 1 {
		t.Fatalf("%d uploads of the segment, want 1", n)
	}
	if len(f.archived(t, seg)) != 1 {
		t.Fatal("segment not archived")
	}

	// A segment without a .ready file is pushed on request.
	other := "000000010000000000000006"
	f.addWAL(t, other, 6, false)
	resp, err := callDaemon(t.Context(), r.d.socket, request{Op: "push", Name: other, Path: filepath.Join(f.wal, other)}, 30*time.Second)
	if err != nil || !resp.OK {
		t.Fatalf("push on request: %+v %v", resp, err)
	}
	if len(f.archived(t, other)) != 1 {
		t.Fatal("segment pushed on request not archived")
	}

	// A push that fails gives its code to the client: a missing file.
	missing := "000000010000000000000007"
	err = Run(t.Context(), f.cfg(t, "archive-push", filepath.Join(f.wal, missing)), Deps{Log: zap.NewNop()}, io.Discard)
	if codeOf(err) != archive.CodeFileMissing {
		t.Fatalf("missing segment: %v (code %d), want code %d", err, codeOf(err), archive.CodeFileMissing)
	}
}

// TestDaemonRefusesInvalidRequests checks that names and paths that are not
// a WAL file of pg_wal are refused before any file is looked at.
func TestDaemonRefusesInvalidRequests(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	var touched atomic.Int32
	fs := &fault.Store{
		BeforePut: func(context.Context, string, io.Reader) (io.Reader, error) {
			touched.Add(1)
			return nil, errors.New("no put expected")
		},
		BeforeList: func(context.Context, string) error { touched.Add(1); return errors.New("no list expected") },
	}
	r := startDaemon(t, cfg, faultRepos(t, cfg, fs), Deps{}, testDaemonOptions())
	// A valid segment outside pg_wal: refused although the file exists.
	outside := filepath.Join(f.data, "000000010000000000000001")
	if err := os.WriteFile(outside, walSegment(f.sysID, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	seg := "000000010000000000000001"
	for _, tc := range []struct {
		name string
		req  request
	}{
		{"traversal name", request{Op: "push", Name: "../../etc/passwd", Path: "/etc/passwd"}},
		{"shell in name", request{Op: "push", Name: seg + "; rm", Path: filepath.Join(f.wal, seg+"; rm")}},
		{"empty name", request{Op: "push", Name: "", Path: f.wal}},
		{"lowercase name", request{Op: "push", Name: strings.ToLower("00000001000000000000000A"), Path: filepath.Join(f.wal, "00000001000000000000000a")}},
		{"path outside pg_wal", request{Op: "push", Name: seg, Path: outside}},
		{"traversal path", request{Op: "push", Name: seg, Path: f.wal + "/../" + seg}},
		{"relative path", request{Op: "push", Name: seg, Path: "pg_wal/" + seg}},
		{"path of another name", request{Op: "push", Name: seg, Path: filepath.Join(f.wal, "000000010000000000000002")}},
		{"get outside pg_wal", request{Op: "get", Name: seg, Path: "/tmp/RECOVERYXLOG"}},
		{"get over a directory", request{Op: "get", Name: seg, Path: f.status}},
		{"get to another file", request{Op: "get", Name: seg, Path: filepath.Join(f.wal, "postgresql.conf")}},
		{"get traversal", request{Op: "get", Name: "../" + seg, Path: filepath.Join(f.wal, "RECOVERYXLOG")}},
		{"unknown op", request{Op: "delete", Name: seg, Path: filepath.Join(f.wal, seg)}},
	} {
		resp, err := callDaemon(t.Context(), r.d.socket, tc.req, 5*time.Second)
		if err != nil || resp.OK || resp.Code != archive.CodeParamInvalid {
			t.Errorf("%s: %+v, %v; want a refusal with code %d", tc.name, resp, err, archive.CodeParamInvalid)
		}
	}
	// A client of another cluster (a restore beside this one, sharing the
	// socket) is sent back to do the work itself.
	other := filepath.Join(filepath.Dir(f.data), "restored")
	for _, op := range []string{"push", "get"} {
		_, err := callDaemon(t.Context(), r.d.socket, request{Op: op, Name: seg, Path: filepath.Join(other, "pg_wal", "RECOVERYXLOG"), PgPath: other}, 5*time.Second)
		if !errors.Is(err, errNoDaemon) || !strings.Contains(err.Error(), "declined") {
			t.Errorf("%s for another pg1-path: %v; want the daemon to decline", op, err)
		}
	}
	// Raw garbage and an oversized line are refused too, and the daemon lives on.
	for _, raw := range []string{"not json\n", strings.Repeat("x", maxRequestLine+10) + "\n"} {
		c, err := net.Dial("unix", r.d.socket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		_ = c.Close()
		if !strings.Contains(string(b), `"code":96`) {
			t.Errorf("raw request answered %q", b)
		}
	}
	// Another protocol version is declined: the client then works alone.
	c, err := net.Dial("unix", r.d.socket)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, `{"v":2,"op":"push","name":"`+seg+`","path":"`+filepath.Join(f.wal, seg)+`"}`+"\n")
	b, _ := io.ReadAll(c)
	_ = c.Close()
	if !strings.Contains(string(b), `"fallback":true`) {
		t.Errorf("version 2 answered %q", b)
	}
	if n := touched.Load(); n != 0 {
		t.Errorf("refused requests reached the repository %d times", n)
	}
	r.d.mu.Lock()
	n := len(r.d.entries)
	r.d.mu.Unlock()
	if n != 0 {
		t.Errorf("refused requests started %d pushes", n)
	}
}

// TestArchivePushFallback checks that archive-push and archive-get work
// without a daemon (no socket, or a stale one nobody answers on), and that
// a daemon starts over a stale socket but never over a live one or a file.
func TestArchivePushFallback(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	seg := "000000010000000000000008"
	content := f.addWAL(t, seg, 8, true)
	push := f.cfg(t, "archive-push", filepath.Join(f.wal, seg))
	socket, err := SocketPath(push)
	if err != nil {
		t.Fatal(err)
	}
	if socket != filepath.Join(f.spool, "pgsidecar-db.sock") {
		t.Fatalf("socket path %s", socket)
	}
	if err := Run(t.Context(), push, Deps{Log: zap.NewNop()}, io.Discard); err != nil {
		t.Fatalf("archive-push without a daemon: %v", err)
	}
	if len(f.archived(t, seg)) != 1 {
		t.Fatal("not archived without a daemon")
	}

	// Something that accepts and hangs up, or never answers: the client
	// works alone (after archive-timeout for the silent one).
	for i, hangUp := range []bool{true, false} {
		ln, err := net.Listen("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if hangUp {
					_ = c.Close()
				} else {
					defer c.Close()
				}
			}
		}()
		s := []string{"000000010000000000000011", "000000010000000000000012"}[i]
		f.addWAL(t, s, uint64(20+i), true)
		start := time.Now()
		err = Run(t.Context(), f.cfg(t, "--archive-timeout=1", "archive-push", filepath.Join(f.wal, s)), Deps{Log: zap.NewNop()}, io.Discard)
		_ = ln.Close()
		if err != nil || len(f.archived(t, s)) != 1 {
			t.Fatalf("archive-push beside a daemon that hangs up=%v: %v, archived %v", hangUp, err, f.archived(t, s))
		}
		if !hangUp && time.Since(start) < time.Second {
			t.Errorf("a silent daemon was given up after %v, before archive-timeout", time.Since(start))
		}
	}

	// A stale socket: the client works alone, the daemon replaces it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	_ = ln.Close()
	dest := filepath.Join(f.wal, "RECOVERYXLOG")
	if err := Run(t.Context(), f.cfg(t, "archive-get", seg, "pg_wal/RECOVERYXLOG"), Deps{Log: zap.NewNop()}, io.Discard); err == nil {
		t.Fatal("a relative destination outside pg1-path's working directory was accepted")
	}
	if err := Run(t.Context(), f.cfg(t, "archive-get", seg, dest), Deps{Log: zap.NewNop()}, io.Discard); err != nil {
		t.Fatalf("archive-get beside a stale socket: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
		t.Fatal("archive-get content differs")
	}
	l2, fi, err := listenSocket(socket)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, _, err := listenSocket(socket); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Errorf("listen over a live socket: %v", err)
	}
	_ = l2.Close()
	removeSocket(socket, fi)
	if err := os.WriteFile(socket, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := listenSocket(socket); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(socket); string(b) != "not a socket" {
		t.Error("a regular file was replaced")
	}
}

// TestDaemonArchiveGet checks archive-get through the daemon: a found file
// is restored into pg_wal, a missing one gives exit code 1.
func TestDaemonArchiveGet(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	var gets atomic.Int32
	fs := &fault.Store{BeforeGet: func(context.Context, string, storage.Range) error { gets.Add(1); return nil }}
	startDaemon(t, cfg, faultRepos(t, cfg, fs), Deps{}, testDaemonOptions())
	seg := "00000001000000000000000A"
	content := f.addWAL(t, seg, 10, true)
	waitFor(t, 30*time.Second, "the look-ahead push", func() bool { return len(f.archived(t, seg)) == 1 })

	dest := filepath.Join(f.wal, "RECOVERYXLOG")
	before := gets.Load()
	if err := Run(t.Context(), f.cfg(t, "archive-get", seg, dest), Deps{Log: zap.NewNop()}, io.Discard); err != nil {
		t.Fatalf("archive-get: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
		t.Fatal("archive-get content differs")
	}
	if gets.Load() == before {
		t.Fatal("archive-get did not go through the daemon")
	}
	err := Run(t.Context(), f.cfg(t, "archive-get", "00000001000000000000000F", dest), Deps{Log: zap.NewNop()}, io.Discard)
	if codeOf(err) != codeNotFound || !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("missing segment: %v (code %d), want code 1", err, codeOf(err))
	}
}

// TestDaemonCancelMidPush checks that a daemon stopped in the middle of an
// upload leaves no object, partial or temporary, and that the next daemon
// archives the segment.
func TestDaemonCancelMidPush(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	seg := "00000001000000000000000B"
	inPut := make(chan struct{}, 1)
	fs := &fault.Store{BeforePut: func(ctx context.Context, key string, r io.Reader) (io.Reader, error) {
		if !strings.Contains(key, seg) {
			return r, nil
		}
		return &stallingReader{ctx: ctx, r: r, after: 64 << 10, stalled: inPut}, nil
	}}
	opts := testDaemonOptions()
	opts.drain = 100 * time.Millisecond
	r := startDaemon(t, cfg, faultRepos(t, cfg, fs), Deps{}, opts)
	content := f.addWAL(t, seg, 11, true)
	select {
	case <-inPut:
	case <-time.After(30 * time.Second):
		t.Fatal("the upload did not start")
	}
	if err := r.stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	if left := f.segmentDir(t, seg); len(left) != 0 {
		t.Fatalf("a cancelled push left %v", left)
	}

	// A new daemon archives it.
	startDaemon(t, cfg, openTestRepos(t, cfg), Deps{}, testDaemonOptions())
	waitFor(t, 30*time.Second, "the retried push", func() bool { return len(f.archived(t, seg)) == 1 })
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if err := runCommand(t, f.ini, "archive-get", seg, dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
		t.Fatal("archived content differs")
	}
}

// stallingReader passes after bytes, then signals stalled and blocks until
// ctx is done.
type stallingReader struct {
	ctx     context.Context
	r       io.Reader
	after   int
	read    int
	stalled chan struct{}
}

func (s *stallingReader) Read(p []byte) (int, error) {
	if s.read >= s.after {
		select {
		case s.stalled <- struct{}{}:
		default:
		}
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	p = p[:min(len(p), s.after-s.read)]
	n, err := s.r.Read(p)
	s.read += n
	return n, err
}

// TestDaemonReload checks that a reload keeps the current configuration when
// the new one does not load or its repositories cannot be used, and that a
// good one takes effect for the next pushes.
func TestDaemonReload(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	core, logs := observer.New(zapcore.InfoLevel)
	requests := make(chan os.Signal, 1)
	var next atomic.Pointer[func() (*config.Config, error)]
	reloader := &Reloader{Requests: requests, Load: func() (*config.Config, error) { return (*next.Load())() }}
	r := startDaemon(t, cfg, openTestRepos(t, cfg), Deps{Log: zap.New(core), Reload: reloader}, testDaemonOptions())

	reload := func(load func() (*config.Config, error), want string) {
		t.Helper()
		n := logs.FilterMessage(want).Len()
		next.Store(&load)
		requests <- syscall.SIGHUP
		waitFor(t, 10*time.Second, "the reload outcome "+want, func() bool { return logs.FilterMessage(want).Len() > n })
	}
	const failed, ok = "configuration reload failed: keeping the current configuration", "configuration reloaded"

	// A configuration that does not load.
	reload(func() (*config.Config, error) {
		return config.Load(config.Input{Args: []string{"--stanza=db", "--no-such-option=1", "run"}})
	}, failed)
	// One whose repository has no stanza.
	empty := t.TempDir()
	reload(func() (*config.Config, error) {
		return loadCfg(t, strings.Replace(f.ini, "repo1-path="+f.repoDir, "repo1-path="+empty, 1), "--stanza=db", "run"), nil
	}, failed)
	// One for another data directory.
	reload(func() (*config.Config, error) {
		return loadCfg(t, strings.Replace(f.ini, "pg1-path="+f.data, "pg1-path="+empty, 1), "--stanza=db", "run"), nil
	}, failed)
	if r.d.config() != cfg {
		t.Fatal("a bad configuration replaced the current one")
	}
	seg := "00000001000000000000000C"
	f.addWAL(t, seg, 12, true)
	waitFor(t, 30*time.Second, "a push with the kept configuration", func() bool { return len(f.archived(t, seg)) == 1 })
	if m := f.archived(t, seg); !strings.HasSuffix(m[0], ".lz4") {
		t.Fatalf("pushed %s, want lz4", m[0])
	}

	// A good one: zst from now on.
	reload(func() (*config.Config, error) {
		return loadCfg(t, strings.Replace(f.ini, "compress-type=lz4", "compress-type=zst", 1), "--stanza=db", "run"), nil
	}, ok)
	if r.d.config().CompressType != "zst" {
		t.Fatalf("compress-type %s after reload", r.d.config().CompressType)
	}
	seg = "00000001000000000000000D"
	f.addWAL(t, seg, 13, true)
	waitFor(t, 30*time.Second, "a push with the new configuration", func() bool { return len(f.archived(t, seg)) == 1 })
	if m := f.archived(t, seg); !strings.HasSuffix(m[0], ".zst") {
		t.Fatalf("pushed %s after the reload, want zst", m[0])
	}
}

// TestDaemonRetriesFailedPush checks that a look-ahead push that failed is
// tried again after a backoff, without any request, and that failures are
// counted per repository.
func TestDaemonRetriesFailedPush(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	seg := "00000001000000000000000E"
	var failures atomic.Int32
	fs := &fault.Store{BeforePut: func(_ context.Context, key string, r io.Reader) (io.Reader, error) {
		if strings.Contains(key, seg) && failures.Add(1) <= 2 {
			return nil, storage.ErrPermission
		}
		return r, nil
	}}
	reg := prometheus.NewRegistry()
	startDaemon(t, cfg, faultRepos(t, cfg, fs), Deps{Registry: reg}, testDaemonOptions())
	f.addWAL(t, seg, 14, true)
	waitFor(t, 30*time.Second, "the retried push", func() bool { return len(f.archived(t, seg)) == 1 })
	if n := failures.Load(); n != 3 {
		t.Errorf("%d upload attempts, want 3 (two failures, then success)", n)
	}
	if v := metricValue(t, reg, "pgsidecar_archive_push_total", map[string]string{"repo": "repo1", "result": "failed"}); v != 2 {
		t.Errorf("failed pushes counted %v, want 2", v)
	}
	waitFor(t, 5*time.Second, "the written counter", func() bool {
		return metricValue(t, reg, "pgsidecar_archive_push_total", map[string]string{"repo": "repo1", "result": "written"}) == 1
	})
}

// TestDaemonRepoLanes checks that each repository progresses on its own: a
// stalled repository does not hold back the look-ahead of the other, the
// answer to PostgreSQL still requires every repository (code 104 while one
// fails), the lag metrics show the repository behind, and once it works
// again it catches up from pg_wal with every segment stored once.
func TestDaemonRepoLanes(t *testing.T) {
	t.Parallel()
	repo2 := t.TempDir()
	f := newDaemonFixture(t, "repo2-path="+repo2+"\n")
	cfg := f.cfg(t, "run")
	repos := openTestRepos(t, cfg)
	const (
		stall = iota
		fail
		work
	)
	var mode atomic.Int32
	var stalled atomic.Int32
	gate := make(chan struct{})
	repos[1].Store = &fault.Store{Inner: repos[1].Store, BeforePut: func(ctx context.Context, key string, r io.Reader) (io.Reader, error) {
		if mode.Load() == stall {
			stalled.Add(1)
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if mode.Load() == fail {
			return nil, storage.ErrPermission
		}
		return r, nil
	}, BeforeList: func(ctx context.Context, _ string) error {
		// A hung repository hangs its listings too.
		if mode.Load() == stall {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	r := startDaemon(t, cfg, repos, Deps{Registry: reg}, testDaemonOptions())

	segs := make([]string, 8)
	for i := range segs {
		segs[i] = fmt.Sprintf("0000000100000000000000%02X", 0x20+i)
		f.addWAL(t, segs[i], uint64(100+i), true)
	}
	archivedIn := func(dir, seg string) int {
		m, err := filepath.Glob(filepath.Join(dir, "archive/db/15-1", seg[:16], seg+"-*.lz4"))
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}
	lag := func(repo, name string) float64 {
		return metricValue(t, reg, name, map[string]string{"repo": repo})
	}
	// repo2 stalls: repo1 still receives every segment, more than
	// process-max (2) look-ahead slots would allow if it waited for repo2.
	waitFor(t, 60*time.Second, "repo1 to receive every segment while repo2 stalls", func() bool {
		for _, s := range segs {
			if archivedIn(f.repoDir, s) != 1 {
				return false
			}
		}
		return true
	})
	if n := stalled.Load(); n > 2 {
		t.Errorf("%d uploads to the stalled repo2, want at most 2 (process-max)", n)
	}
	waitFor(t, 10*time.Second, "the lag metrics", func() bool {
		return lag("repo1", "pgsidecar_archive_repo_lag_segments") == 0 &&
			lag("repo2", "pgsidecar_archive_repo_lag_segments") == float64(len(segs))
	})
	if s := lag("repo2", "pgsidecar_archive_repo_lag_seconds"); !(s > 0 && s < 120) {
		t.Errorf("repo2 lag seconds %v", s)
	}
	if s := lag("repo1", "pgsidecar_archive_repo_lag_seconds"); s != 0 {
		t.Errorf("repo1 lag seconds %v, want 0", s)
	}

	// repo2 now fails: PostgreSQL gets an error (the segment is not in every
	// repository), and its status file stays.
	mode.Store(fail)
	close(gate)
	err := Run(t.Context(), f.cfg(t, "archive-push", filepath.Join(f.wal, segs[0])), Deps{Log: zap.NewNop()}, io.Discard)
	if codeOf(err) != archive.CodeCommand || !strings.Contains(err.Error(), "repo2") {
		t.Fatalf("archive-push with repo2 failing: %v (code %d), want code %d naming repo2", err, codeOf(err), archive.CodeCommand)
	}
	if _, err := os.Stat(filepath.Join(f.status, segs[0]+".ready")); err != nil {
		t.Fatal(err)
	}

	// repo2 works again: it catches up alone, and PostgreSQL's requests all
	// succeed.
	mode.Store(work)
	waitFor(t, 60*time.Second, "repo2 to catch up", func() bool {
		for _, s := range segs {
			if archivedIn(repo2, s) != 1 {
				return false
			}
		}
		return true
	})
	for _, s := range segs {
		resp, err := callDaemon(t.Context(), r.d.socket, request{V: protocolVersion, Op: "push", Name: s, Path: filepath.Join(f.wal, s)}, 30*time.Second)
		if err != nil || !resp.OK {
			t.Fatalf("push %s after the catch-up: %+v %v", s, resp, err)
		}
		if archivedIn(f.repoDir, s) != 1 || archivedIn(repo2, s) != 1 {
			t.Fatalf("%s stored %d and %d times", s, archivedIn(f.repoDir, s), archivedIn(repo2, s))
		}
	}
	waitFor(t, 10*time.Second, "repo2's lag to clear", func() bool {
		return lag("repo2", "pgsidecar_archive_repo_lag_segments") == 0 && lag("repo2", "pgsidecar_archive_repo_lag_seconds") == 0
	})
	if v := metricValue(t, reg, "pgsidecar_archive_push_total", map[string]string{"repo": "repo1", "result": "written"}); v != float64(len(segs)) {
		t.Errorf("repo1 written %v times, want %d", v, len(segs))
	}
}
