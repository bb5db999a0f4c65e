package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/pgsidecar/pgsidecar/archive"
	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/scheduler"
)

// Reloader lets the daemon read its configuration again on request
// (SIGHUP). cmd wires it; a nil Reloader disables reloads.
type Reloader struct {
	// Requests receives one value per reload request.
	Requests <-chan os.Signal
	// Load reads the configuration again, from the same input as at start.
	Load func() (*config.Config, error)
}

// daemonOptions are the daemon's tunables; tests shorten them.
type daemonOptions struct {
	// socket is the unix socket path; SocketPath(cfg) when empty.
	socket string
	// rescan is the period of the full rescan of archive_status, which
	// catches what file system events missed.
	rescan time.Duration
	// drain bounds the wait for in-flight pushes at shutdown; they are then
	// cancelled.
	drain time.Duration
	// backlogWarn is the number of ready files above which a warning is logged.
	backlogWarn int
	// retryMin and retryMax bound the backoff before a failed look-ahead
	// push is tried again (a request from PostgreSQL always retries at once).
	retryMin, retryMax time.Duration
	// slowGrace is how long, at least, a look-ahead push of the group waits
	// for its slowest repositories once another one holds the file (and at
	// least as long as that one took): then the slow ones are left behind,
	// to be driven alone, and the group slot is freed. It is also the
	// Pusher's ListWait, so that a repository whose listing hangs does not
	// keep the others from being written.
	slowGrace time.Duration
	// started, when set, is called with the daemon once it listens (tests).
	started func(*daemon)
	// missingRetry is how long the archive-get prefetch leaves a segment it
	// found missing (the end of the archive) before it looks again.
	missingRetry time.Duration
}

func defaultDaemonOptions() daemonOptions {
	return daemonOptions{
		rescan:      time.Second,
		drain:       20 * time.Second,
		backlogWarn: 16,
		retryMin:    5 * time.Second,
		retryMax:    time.Minute,
		slowGrace:   2 * time.Second,
		// A standby asks again every wal_retrieve_retry_interval (5 s).
		missingRetry: 2 * time.Second,
	}
}

// RunDaemon is pgsidecar run: the long-running sidecar daemon of a stanza.
// It runs, under one errgroup:
//
//   - a unix socket server (SocketPath) that answers archive-push and
//     archive-get from PostgreSQL's archive_command and restore_command;
//   - a WAL watcher: fsnotify on pg1-path/pg_wal/archive_status plus a
//     rescan every second, which pushes .ready files before PostgreSQL asks,
//     in WAL order, at most process-max at a time. Each repository
//     progresses on its own: one that fails or lags is left behind, retried
//     with a backoff and caught up from pg_wal on its own slots, while the
//     others go on. PostgreSQL still gets success only once every
//     repository holds the file. Status files are PostgreSQL's: the daemon
//     never renames them;
//   - the reload loop, when d.Reload is set: the new configuration is
//     loaded and its repositories opened and checked before it replaces the
//     current one; a bad one is logged and the current one kept;
//   - with archive-async=y, the archive-get prefetch (archive.Prefetcher):
//     a request for segment N starts fetching N+1.. (process-max at a
//     time, at most archive-get-queue-max bytes) into
//     <spool-path>/archive/<stanza>/in, and the next requests are answered
//     from there;
//   - with metrics-address set, an HTTP server with /metrics (the metrics
//     of d.Registry, read through d.Gatherer) and /healthz, shut down when
//     the daemon drains.
//
// When ctx is cancelled (SIGTERM) the daemon stops accepting connections and
// starting pushes, waits for the pushes in flight (at most 20 s, then they
// are cancelled: a cancelled push leaves no object behind, and PostgreSQL
// asks again), removes its socket and returns nil.
//
// repos are the opened repositories of cfg; they stay the caller's. Metrics
// go to d.Registry.
func RunDaemon(ctx context.Context, cfg *config.Config, repos []Repo, d Deps) error {
	return runDaemon(ctx, cfg, repos, d, defaultDaemonOptions())
}

// generation is one configuration with its repositories and, once built,
// the Pusher over them. A reload replaces the current generation; the old
// one is closed when its last push ends.
type generation struct {
	cfg   *config.Config
	repos []Repo
	owned bool // the daemon opened repos (reload) and closes them
	users sync.WaitGroup
	// pusher is guarded by daemon.mu; nil until built, and again after a
	// push failed (archive.info may have changed: stanza-upgrade).
	// pusherAt is when it was built: it is rebuilt after pusherMaxAge, so
	// that archive.info is read again now and then, as pgBackRest reads it
	// for every push.
	pusher   *archive.Pusher
	pusherAt time.Time
}

// pusherMaxAge is how long a Pusher (the archive.info it checked) is used.
const pusherMaxAge = 5 * time.Minute

// entry is the state of one WAL file the daemon pushes or pushed, per
// repository: each repository progresses on its own.
type entry struct {
	seen    time.Time        // when the daemon first saw the file (lag in seconds)
	have    map[string]bool  // repositories that hold the file durably
	busy    map[string]bool  // repositories with an upload of the file in flight
	errs    map[string]error // last failure per repository, cleared by a success
	running int              // pushes of the file in flight
	changed chan struct{}    // closed, and replaced, at every outcome
	// fileErr is the failure of the last push that concerned the whole
	// file (unreadable, duplicate, cluster mismatch); fileAttempts counts
	// such failures in a row and fileRetryAt delays the next look-ahead.
	fileErr      error
	fileAttempts int
	fileRetryAt  time.Time
}

func newEntry(now time.Time) *entry {
	return &entry{seen: now, have: map[string]bool{}, busy: map[string]bool{}, errs: map[string]error{},
		changed: make(chan struct{})}
}

// notifyLocked wakes the requests waiting on e. daemon.mu is held.
func (e *entry) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// lane is one repository's progress. A lane whose push failed, or that
// lagged the other repositories of a push by more than the grace period, is
// behind: it leaves the group of repositories that look-ahead pushes
// together and is driven on its own slots (one probe at a time while it
// fails, process-max uploads while it catches up from pg_wal), so that a
// dead or slow repository never holds the slots of the others. It rejoins
// the group once it misses no file that the group holds.
type lane struct {
	inflight int       // uploads in flight to the repository
	attempts int       // failed pushes in a row
	retryAt  time.Time // when a failed lane may be probed again
	behind   bool
}

// daemon is the state of RunDaemon.
type daemon struct {
	log    *zap.Logger
	deps   Deps
	opts   daemonOptions
	walDir string
	socket string
	m      *daemonMetrics

	// work is the context of pushes and answers; it outlives ctx by the
	// drain period.
	work   context.Context
	pushes sync.WaitGroup
	conns  sync.WaitGroup

	mu      sync.Mutex
	gen     *generation
	entries map[string]*entry
	lanes   map[string]*lane
	group   int  // look-ahead pushes of the group in flight (at most process-max)
	closing bool // no new push starts
	backlog bool // the backlog warning is raised

	kick chan struct{} // asks the watcher for a rescan

	queue *BackupQueue // the stanza's backups, one at a time

	prefetch *archive.Prefetcher // archive-get prefetch; nil when off
	gm       *getMetrics
	metrics  *metricsServer // /metrics and /healthz; nil when off
}

// answerBackup queues a one-off backup (pgsidecar backup run from a shell)
// behind the running and queued ones and answers when it has run.
func (d *daemon) answerBackup(req request) response {
	if req.PgPath != "" && filepath.Join(filepath.Clean(req.PgPath), "pg_wal") != d.walDir {
		return response{Fallback: true, Message: fmt.Sprintf("this daemon serves %s, not %s", d.walDir, req.PgPath)}
	}
	id, done := d.queue.Submit(BackupRequest{Repo: req.Repo, Type: req.Type, Source: SourceOneOff, StartFast: req.StartFast})
	d.log.Info("one-off backup queued", zap.Int("repo", req.Repo), zap.String("type", req.Type), zap.Uint64("id", id))
	select {
	case res := <-done:
		if res.Err != nil {
			return errorResponse(res.Err)
		}
		return response{OK: true, Message: fmt.Sprintf("backup %d of repo%d done", res.ID, req.Repo)}
	case <-d.work.Done():
		return response{Fallback: true, Message: "the daemon is shutting down"}
	}
}

// newDaemonQueue builds the backup queue of the daemon: backups of the
// configured repositories, on the primary only, each under the repository's
// lease so that two agents never back up the stanza at once.
func newDaemonQueue(cfg *config.Config, repos []Repo, log *zap.Logger) (*BackupQueue, error) {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	holder, err := NewHolderID(host, os.Getpid())
	if err != nil {
		return nil, err
	}
	return NewBackupQueue(QueueOptions{
		Run:       NewBackupRunner(cfg, repos, log),
		IsPrimary: NewPrimaryCheck(cfg),
		Lease:     NewLeases(cfg.Stanza, repos, LeaseConfig{Holder: holder, Log: log, Process: CurrentProcess(host)}),
		Log:       log,
	}), nil
}

// endedWith turns an actor's return at shutdown (ctx's error) into a clean
// end, so the daemon's result is that of the actor that failed, if any.
func endedWith(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func runDaemon(ctx context.Context, cfg *config.Config, repos []Repo, deps Deps, opts daemonOptions) error {
	log := deps.Log
	if log == nil {
		log = zap.NewNop()
	}
	pg := pgPath(cfg)
	if pg == "" {
		return withCode(codeOptionMissing, errors.New("run requires option pg1-path: the daemon watches pg1-path/pg_wal"))
	}
	if opts.socket == "" {
		s, err := SocketPath(cfg)
		if err != nil {
			return withCode(codeOptionInvalid, err)
		}
		opts.socket = s
	}
	m, err := newDaemonMetrics(deps.Registry)
	if err != nil {
		return err
	}
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	d := &daemon{
		log: log, deps: deps, opts: opts, walDir: filepath.Join(pg, "pg_wal"), socket: opts.socket, m: m,
		work:    work,
		gen:     &generation{cfg: cfg, repos: repos},
		entries: map[string]*entry{},
		lanes:   map[string]*lane{},
		kick:    make(chan struct{}, 1),
	}
	ln, sockInfo, err := listenSocket(d.socket)
	if err != nil {
		return err
	}
	defer removeSocket(d.socket, sockInfo)
	if d.prefetch, err = newDaemonPrefetcher(cfg, d); err != nil {
		// An optimization only: restore_command is answered without it.
		log.Warn("archive-get prefetch off", zap.Error(err))
		d.prefetch = nil
	}
	if d.gm, err = newGetMetrics(deps.Registry, d.prefetch); err != nil {
		_ = ln.Close()
		return err
	}
	if d.metrics, err = listenMetrics(cfg.MetricsAddress, gathererOf(deps), d.healthy, log); err != nil {
		_ = ln.Close()
		return err
	}
	defer d.metrics.close()
	log.Info("daemon started", zap.String("stanza", cfg.Stanza), zap.String("socket", d.socket),
		zap.String("pg-wal", d.walDir), zap.Int("process-max", max(cfg.ProcessMax, 1)))

	if opts.started != nil {
		opts.started(d)
	}
	queue, err := newDaemonQueue(cfg, repos, log)
	if err != nil {
		return err
	}
	d.queue = queue
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.serve(gctx, ln) })
	g.Go(func() error { return d.watch(gctx) })
	if d.prefetch != nil {
		g.Go(func() error { return d.prefetch.Run(gctx) })
	}
	if d.metrics != nil {
		g.Go(func() error { return d.metrics.Run(gctx) })
	}
	// Backups: one queue for the stanza, fed by the schedules and by
	// one-off requests; they end with ctx.
	g.Go(func() error { return endedWith(gctx, queue.Run(gctx)) })
	g.Go(func() error {
		return endedWith(gctx, RunScheduler(gctx, cfg, repos, queue, scheduler.SystemClock{}, log))
	})
	if deps.Reload != nil {
		g.Go(func() error { return d.reloadLoop(gctx, deps.Reload) })
	}
	err = g.Wait()

	// Drain: no new pushes; wait for those in flight and their answers.
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		d.pushes.Wait()
		d.conns.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(opts.drain):
		log.Warn("pushes still running after the drain period: cancelling them", zap.Duration("drain", opts.drain))
		cancelWork()
		<-drained
	}
	d.mu.Lock()
	last := d.gen
	d.mu.Unlock()
	d.retire(last)
	log.Info("daemon stopped")
	return err
}

// serve accepts connections until ctx is done.
func (d *daemon) serve(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			d.log.Warn("accept on the daemon socket failed", zap.Error(err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		d.conns.Go(func() { d.handle(c) })
	}
}

// handle answers one connection.
func (d *daemon) handle(c net.Conn) {
	defer c.Close()
	req, err := readRequest(c)
	if err != nil {
		d.log.Debug("bad request on the daemon socket", zap.Error(err))
		_ = writeResponse(c, response{Code: codeParamInvalid, Message: "bad request: " + err.Error()})
		return
	}
	start := time.Now()
	resp := d.answer(req)
	if err := writeResponse(c, resp); err != nil {
		d.log.Debug("answer not delivered", zap.String("op", req.Op), zap.String("wal", req.Name), zap.Error(err))
	}
	d.log.Debug("answered", zap.String("op", req.Op), zap.String("wal", req.Name), zap.Bool("ok", resp.OK),
		zap.Duration("elapsed", time.Since(start)))
}

// answer validates a request and runs it. The name is checked before any
// path is looked at, and no file is touched for an invalid request.
func (d *daemon) answer(req request) response {
	if req.V != protocolVersion {
		return response{Fallback: true, Message: fmt.Sprintf("protocol version %d is not supported", req.V)}
	}
	if req.Op == "backup" {
		return d.answerBackup(req)
	}
	if req.Op == "status" {
		return d.answerStatus()
	}
	if _, err := archive.ParseName(req.Name); err != nil {
		return errorResponse(err)
	}
	if req.PgPath != "" && filepath.Join(filepath.Clean(req.PgPath), "pg_wal") != d.walDir {
		return response{Fallback: true, Message: fmt.Sprintf("this daemon serves %s, not %s", d.walDir, req.PgPath)}
	}
	if !filepath.IsAbs(req.Path) {
		return errorResponse(withCode(codeParamInvalid, fmt.Errorf("path %q is not absolute", req.Path)))
	}
	p := filepath.Clean(req.Path)
	switch req.Op {
	case "push":
		if p != filepath.Join(d.walDir, req.Name) {
			return errorResponse(withCode(codeParamInvalid, fmt.Errorf("path %q is not %s in %s", req.Path, req.Name, d.walDir)))
		}
		err := d.push(d.work, req.Name)
		if errors.Is(err, errClosing) {
			return response{Fallback: true, Message: err.Error()}
		}
		if err != nil {
			return errorResponse(err)
		}
		return response{OK: true, Message: "WAL file " + req.Name + " is archived in every repository"}
	case "get":
		if filepath.Dir(p) != d.walDir || !restoreName(filepath.Base(p)) {
			return errorResponse(withCode(codeParamInvalid, fmt.Errorf("destination %q is not a WAL file or RECOVERYXLOG/RECOVERYHISTORY in %s", req.Path, d.walDir)))
		}
		res, err := d.get(d.work, req.Name, p)
		if err != nil {
			return errorResponse(err)
		}
		msg := fmt.Sprintf("found %s in the %s: %s archive", req.Name, res.Repo, res.ArchiveID)
		if res.Prefetched {
			msg += " (prefetched)"
		}
		return response{OK: true, Message: msg}
	}
	return errorResponse(withCode(codeParamInvalid, fmt.Errorf("unknown operation %q", req.Op)))
}

// restoreName reports whether name may be the destination of a restore in
// pg_wal: what PostgreSQL passes as %p (RECOVERYXLOG, RECOVERYHISTORY) or a
// WAL file name (pg_rewind, standby tools).
func restoreName(name string) bool {
	if name == "RECOVERYXLOG" || name == "RECOVERYHISTORY" {
		return true
	}
	_, err := archive.ParseName(name)
	return err == nil
}

// errClosing reports a push refused because the daemon is shutting down.
var errClosing = errors.New("the daemon is shutting down")

// push archives the WAL file name of pg_wal and returns when it is durable
// in every repository or failed. Uploads in flight (look-ahead) are waited
// for instead of started again, and repositories that hold the file answer
// at once; the others are pushed now, whatever their backoff, since
// PostgreSQL asks. The answer is success only when every repository holds
// the file: PostgreSQL keeps it until then.
func (d *daemon) push(ctx context.Context, name string) error {
	asked := map[string]bool{}
	d.mu.Lock()
	e := d.entries[name]
	if e == nil {
		e = newEntry(time.Now())
		d.entries[name] = e
	}
	for {
		missing := d.missingLocked(e)
		if len(missing) == 0 {
			d.mu.Unlock()
			return nil
		}
		var start []string
		busy := false
		for _, r := range missing {
			switch {
			case e.busy[r]:
				busy = true
			case !asked[r]:
				start = append(start, r)
			}
		}
		if len(start) > 0 {
			if d.closing {
				d.mu.Unlock()
				return errClosing
			}
			for _, r := range start {
				asked[r] = true
			}
			d.startLocked(name, e, start, pushRequest)
			continue
		}
		if !busy {
			err := d.failureLocked(e, name, missing)
			d.mu.Unlock()
			return err
		}
		ch := e.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("archive-push %s: %w", name, ctx.Err())
		}
		d.mu.Lock()
	}
}

// repoNamesLocked returns the names of the current repositories. d.mu is held.
func (d *daemon) repoNamesLocked() []string {
	names := make([]string, len(d.gen.repos))
	for i, r := range d.gen.repos {
		names[i] = r.Name()
	}
	return names
}

// missingLocked returns the current repositories that do not hold e's file.
// d.mu is held.
func (d *daemon) missingLocked(e *entry) []string {
	var out []string
	for _, r := range d.repoNamesLocked() {
		if !e.have[r] {
			out = append(out, r)
		}
	}
	return out
}

// failureLocked is the error of a request whose pushes ended with missing
// repositories still lacking the file. d.mu is held.
func (d *daemon) failureLocked(e *entry, name string, missing []string) error {
	if e.fileErr != nil {
		return e.fileErr
	}
	pe := &archive.PushError{WAL: name}
	for _, r := range missing {
		err := e.errs[r]
		if err == nil {
			err = errors.New("the push ended without storing the file")
		}
		pe.Repos = append(pe.Repos, archive.RepoError{Repo: r, Err: err})
	}
	return pe
}

// laneLocked returns the lane of repository name. d.mu is held.
func (d *daemon) laneLocked(name string) *lane {
	l := d.lanes[name]
	if l == nil {
		l = &lane{}
		d.lanes[name] = l
	}
	return l
}

// pushKind says who started a push and which slots it holds.
type pushKind int

const (
	pushRequest pushKind = iota // PostgreSQL asked: no slot
	pushGroup                   // look-ahead for the lanes that keep up: a group slot
	pushLane                    // look-ahead for lanes that are behind: their own slots
)

// startLocked starts a push of name to repos. d.mu is held.
func (d *daemon) startLocked(name string, e *entry, repos []string, kind pushKind) {
	for _, r := range repos {
		e.busy[r] = true
		d.laneLocked(r).inflight++
	}
	e.running++
	if kind == pushGroup {
		d.group++
	}
	d.m.inflight.Inc()
	d.pushes.Go(func() { d.run(name, e, repos, kind) })
}

// run pushes one file to repos and records each repository's outcome as it
// comes: a fast repository is free for the next file while a slow one
// still uploads. A group push whose slowest repositories lag the first one
// by more than the grace period leaves them behind and frees its slot.
func (d *daemon) run(name string, e *entry, repos []string, kind pushKind) {
	start := time.Now()
	slot := kind == pushGroup // guarded by d.mu
	remaining := make(map[string]bool, len(repos))
	for _, r := range repos {
		remaining[r] = true
	}
	var reported sync.Map
	var straggle *time.Timer
	release := func() { // d.mu is held
		if slot {
			slot = false
			d.group--
		}
	}
	leaveBehind := func() {
		d.mu.Lock()
		if slot && len(remaining) > 0 {
			for r := range remaining {
				if l := d.laneLocked(r); !l.behind {
					l.behind = true
					d.log.Warn("repository is slow: it is pushed alone until it catches up", zap.String("repo", r),
						zap.String("wal", name), zap.Duration("elapsed", time.Since(start)))
				}
			}
			release()
		}
		d.mu.Unlock()
		d.rescanSoon()
	}
	done := func(r string, err error) {
		reported.Store(r, true)
		d.mu.Lock()
		delete(remaining, r)
		d.repoDoneLocked(e, r, err, true)
		if slot && len(remaining) > 0 && straggle == nil {
			straggle = time.AfterFunc(max(time.Since(start), d.opts.slowGrace), leaveBehind)
		}
		d.mu.Unlock()
		d.rescanSoon()
	}
	var res archive.PushResult
	g, p, err := d.pusher(d.work)
	if err == nil {
		res, err = p.PushRepos(d.work, filepath.Join(d.walDir, name), repos, done)
		var pe *archive.PushError
		if err != nil && !errors.As(err, &pe) {
			// archive.info may have changed (stanza-upgrade): read it again.
			d.mu.Lock()
			if g.pusher == p {
				g.pusher = nil
			}
			d.mu.Unlock()
		}
		g.users.Done()
	}
	d.m.inflight.Dec()
	d.m.record(res, err)
	look := kind != pushRequest
	if err == nil {
		d.m.lastPush.Store(time.Now().UnixNano())
		d.log.Info("pushed WAL file to the archive", zap.String("wal", name), zap.Bool("look-ahead", look),
			zap.Strings("written", res.Written), zap.Strings("already-archived", res.Existing),
			zap.Duration("elapsed", time.Since(start)))
	} else {
		d.log.Warn("WAL push failed", zap.String("wal", name), zap.Bool("look-ahead", look),
			zap.Strings("repos", repos), zap.Error(err))
	}
	d.mu.Lock()
	var pe *archive.PushError
	whole := err != nil && !errors.As(err, &pe)
	for _, r := range repos {
		if _, ok := reported.Load(r); ok {
			continue
		}
		rerr := err
		if rerr == nil {
			rerr = fmt.Errorf("archive-push %s: %s is not a repository of the current configuration", name, r)
		}
		d.repoDoneLocked(e, r, rerr, false)
	}
	if whole {
		e.fileErr = err
		e.fileRetryAt = time.Now().Add(d.backoff(e.fileAttempts))
		e.fileAttempts++
	} else {
		e.fileErr, e.fileAttempts = nil, 0
	}
	e.running--
	release()
	if straggle != nil {
		straggle.Stop()
	}
	e.notifyLocked()
	d.mu.Unlock()
	d.rescanSoon()
}

// repoDoneLocked records the outcome of an upload of e's file to repository
// r. A failure of the repository itself (laneFault) puts its lane behind,
// with a backoff. d.mu is held.
func (d *daemon) repoDoneLocked(e *entry, r string, err error, laneFault bool) {
	if !e.busy[r] {
		return
	}
	delete(e.busy, r)
	l := d.laneLocked(r)
	l.inflight--
	if err == nil {
		e.have[r] = true
		delete(e.errs, r)
		l.attempts, l.retryAt = 0, time.Time{}
	} else {
		e.errs[r] = err
		if laneFault {
			if !l.behind {
				d.log.Warn("repository is failing: it is pushed alone until it catches up", zap.String("repo", r), zap.Error(err))
			}
			l.retryAt = time.Now().Add(d.backoff(l.attempts))
			l.attempts++
			l.behind = true
		}
	}
	e.notifyLocked()
}

// backoff is the wait before the next attempt after attempts failures.
func (d *daemon) backoff(attempts int) time.Duration {
	return min(d.opts.retryMin<<min(attempts, 10), d.opts.retryMax)
}

// pusher returns the current generation, with a user added (the caller calls
// g.users.Done), and its Pusher.
func (d *daemon) pusher(ctx context.Context) (*generation, *archive.Pusher, error) {
	d.mu.Lock()
	g := d.gen
	g.users.Add(1)
	p := g.pusher
	maxAge := pusherMaxAge
	if p != nil && len(p.Unusable()) > 0 {
		maxAge = d.opts.retryMax // a repository may be back
	}
	if p != nil && time.Since(g.pusherAt) > maxAge {
		p, g.pusher = nil, nil
	}
	d.mu.Unlock()
	if p != nil {
		return g, p, nil
	}
	p, err := newPusher(ctx, g.cfg, g.repos, d.log, d.opts.slowGrace)
	if err != nil {
		g.users.Done()
		return nil, nil, err
	}
	d.mu.Lock()
	if g.pusher == nil {
		g.pusher, g.pusherAt = p, time.Now()
	}
	d.mu.Unlock()
	return g, p, nil
}

// rescanSoon asks the watcher for a rescan.
func (d *daemon) rescanSoon() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// watch runs the WAL watcher until ctx is done.
func (d *daemon) watch(ctx context.Context) error {
	status := filepath.Join(d.walDir, "archive_status")
	w, err := fsnotify.NewWatcher()
	if err != nil {
		d.log.Warn("file system events unavailable: rescanning only", zap.Error(err))
	} else {
		defer w.Close()
	}
	var events chan fsnotify.Event
	var errs chan error
	watching := false
	tick := time.NewTicker(d.opts.rescan)
	defer tick.Stop()
	for {
		if w != nil && !watching {
			if err := w.Add(status); err == nil {
				watching = true
				events, errs = w.Events, w.Errors
			}
		}
		d.scan()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-d.kick:
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Name == status && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				_ = w.Remove(status)
				watching = false
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			d.log.Warn("file system events", zap.Error(err))
		}
	}
}

// scan reads archive_status, updates the backlog metrics, forgets the files
// PostgreSQL has archived (their .ready is gone), and starts look-ahead
// pushes in WAL order while fewer than process-max are in flight.
func (d *daemon) scan() {
	files, err := archive.ReadyFiles(d.walDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("scan of archive_status failed", zap.Error(err))
		}
		return
	}
	var bytes int64
	ready := make(map[string]bool, len(files))
	for _, f := range files {
		bytes += f.Size
		ready[f.Name] = true
	}
	d.m.ready.Set(float64(len(files)))
	d.m.readyBytes.Set(float64(bytes))

	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch over := len(files) > d.opts.backlogWarn; {
	case over && !d.backlog:
		d.log.Warn("WAL archive backlog is growing", zap.Int("ready-files", len(files)), zap.Int64("ready-bytes", bytes),
			zap.Int("threshold", d.opts.backlogWarn))
	case !over && d.backlog:
		d.log.Info("WAL archive backlog is back under the threshold", zap.Int("ready-files", len(files)))
	}
	d.backlog = len(files) > d.opts.backlogWarn
	for name, e := range d.entries {
		if e.running == 0 && !ready[name] {
			delete(d.entries, name)
		}
	}
	for _, f := range files {
		if d.entries[f.Name] == nil {
			d.entries[f.Name] = newEntry(now)
		}
	}
	names := d.repoNamesLocked()
	d.lagLocked(files, names, now)
	if d.closing {
		return
	}
	limit := max(d.gen.cfg.ProcessMax, 1)
	for _, f := range files {
		e := d.entries[f.Name]
		if now.Before(e.fileRetryAt) {
			continue
		}
		var group, alone []string
		for _, r := range names {
			if e.have[r] || e.busy[r] {
				continue
			}
			l := d.laneLocked(r)
			if !l.behind {
				group = append(group, r)
				continue
			}
			lim := limit
			if l.attempts > 0 {
				lim = 1 // probe a failing repository with one push at a time
			}
			if l.inflight < lim && !now.Before(l.retryAt) {
				alone = append(alone, r)
			}
		}
		if len(group) > 0 && d.group < limit {
			d.startLocked(f.Name, e, group, pushGroup)
		}
		// Lanes behind at the same file share one read of it; each frees
		// its own slot when its upload ends.
		if len(alone) > 0 {
			d.startLocked(f.Name, e, alone, pushLane)
		}
	}
}

// lagLocked updates each repository's lag (ready files it does not hold,
// and the age of the oldest), and lets a lane that is behind rejoin the
// group once it no longer fails and misses no file that every lane of the
// group holds. d.mu is held.
func (d *daemon) lagLocked(files []archive.ReadyFile, names []string, now time.Time) {
	for _, r := range names {
		l := d.laneLocked(r)
		segs, oldest, caughtUp := 0, time.Time{}, l.attempts == 0
		for _, f := range files {
			e := d.entries[f.Name]
			if e.have[r] {
				continue
			}
			segs++
			// When PostgreSQL marked the file ready, which survives a restart
			// of the daemon; when the daemon first saw it otherwise.
			at := f.ReadyAt
			if at.IsZero() || e.seen.Before(at) {
				at = e.seen
			}
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
			if caughtUp && l.behind && d.groupHasLocked(e, names) {
				caughtUp = false
			}
		}
		if l.behind && caughtUp {
			l.behind = false
			d.log.Info("repository caught up: it rejoins the look-ahead group", zap.String("repo", r))
		}
		lagSeconds := 0.0
		if segs > 0 {
			lagSeconds = max(now.Sub(oldest).Seconds(), 0)
		}
		d.m.lagSegments.WithLabelValues(r).Set(float64(segs))
		d.m.lagSeconds.WithLabelValues(r).Set(lagSeconds)
	}
}

// groupHasLocked reports whether some lane of the group (not behind) exists
// and every such lane holds e's file. d.mu is held.
func (d *daemon) groupHasLocked(e *entry, names []string) bool {
	any := false
	for _, r := range names {
		if d.laneLocked(r).behind {
			continue
		}
		if !e.have[r] {
			return false
		}
		any = true
	}
	return any
}

// reloadLoop reloads the configuration on each request until ctx is done.
func (d *daemon) reloadLoop(ctx context.Context, r *Reloader) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.Requests:
			if err := d.reload(ctx, r.Load); err != nil {
				d.log.Error("configuration reload failed: keeping the current configuration", zap.Error(err))
			} else {
				d.log.Info("configuration reloaded")
			}
		}
	}
}

// reload loads, opens and checks a new configuration, then makes it
// current. The stanza, pg1-path and the socket cannot change without a
// restart.
func (d *daemon) reload(ctx context.Context, load func() (*config.Config, error)) error {
	cfg, err := load()
	if err != nil {
		return err
	}
	d.mu.Lock()
	old := d.gen.cfg
	d.mu.Unlock()
	if cfg.Stanza != old.Stanza || pgPath(cfg) != pgPath(old) {
		return fmt.Errorf("stanza and pg1-path cannot change without a restart (stanza %q, pg1-path %q)", cfg.Stanza, pgPath(cfg))
	}
	if s, err := SocketPath(cfg); err != nil || s != d.socket {
		return fmt.Errorf("the socket path cannot change without a restart (%s, now %q: %v)", d.socket, s, err)
	}
	// Storage metrics are registered once, at start: the reloaded
	// repositories are not instrumented.
	repos, err := OpenRepos(ctx, cfg, Deps{Log: d.log, Env: d.deps.Env, Version: d.deps.Version})
	if err != nil {
		return err
	}
	p, err := newPusher(ctx, cfg, repos, d.log, d.opts.slowGrace)
	if err != nil {
		_ = CloseRepos(repos)
		return err
	}
	d.mu.Lock()
	prev := d.gen
	d.gen = &generation{cfg: cfg, repos: repos, owned: true, pusher: p, pusherAt: time.Now()}
	d.mu.Unlock()
	if d.prefetch != nil {
		d.prefetch.Refresh()
	}
	go d.retire(prev)
	return nil
}

// retire closes a generation's repositories, when the daemon opened them,
// after its last user is done.
func (d *daemon) retire(g *generation) {
	g.users.Wait()
	if g.owned {
		if err := CloseRepos(g.repos); err != nil {
			d.log.Warn("close repositories", zap.Error(err))
		}
	}
}

// healthy reports whether the daemon runs and has not started to drain.
func (d *daemon) healthy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.closing
}

// config returns the current configuration.
func (d *daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen.cfg
}

// daemonMetrics are the daemon's Prometheus metrics.
type daemonMetrics struct {
	ready       prometheus.Gauge
	readyBytes  prometheus.Gauge
	inflight    prometheus.Gauge
	pushes      *prometheus.CounterVec
	lagSegments *prometheus.GaugeVec
	lagSeconds  *prometheus.GaugeVec
	lastPush    atomic.Int64 // unix nanoseconds of the last successful push
}

// newDaemonMetrics registers the daemon's metrics with reg (nil: none).
func newDaemonMetrics(reg prometheus.Registerer) (*daemonMetrics, error) {
	m := &daemonMetrics{
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgsidecar_archive_ready_files",
			Help: "WAL files PostgreSQL has marked ready for archiving (.ready status files)."}),
		readyBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgsidecar_archive_ready_bytes",
			Help: "Size of the WAL files ready for archiving."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgsidecar_archive_pushes_in_flight",
			Help: "WAL pushes in progress."}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgsidecar_archive_push_total",
			Help: "WAL file pushes by repository and result (written, existing, failed)."}, []string{"repo", "result"}),
		lagSegments: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgsidecar_archive_repo_lag_segments",
			Help: "WAL files ready for archiving that the repository does not hold yet."}, []string{"repo"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgsidecar_archive_repo_lag_seconds",
			Help: "Age of the oldest WAL file ready for archiving that the repository does not hold yet (0 when none)."}, []string{"repo"}),
	}
	if reg == nil {
		return m, nil
	}
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgsidecar_archive_last_push_age_seconds",
		Help: "Seconds since the last successful WAL push (NaN before the first)."},
		m.lastPushAge)
	for _, c := range []prometheus.Collector{m.ready, m.readyBytes, m.inflight, m.pushes, m.lagSegments, m.lagSeconds, age} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register daemon metrics: %w", err)
		}
	}
	return m, nil
}

// lastPushAge is the age of the last successful push in seconds, NaN before
// the first.
func (m *daemonMetrics) lastPushAge() float64 {
	t := m.lastPush.Load()
	if t == 0 {
		return math.NaN()
	}
	return time.Since(time.Unix(0, t)).Seconds()
}

// record counts one push per repository.
func (m *daemonMetrics) record(res archive.PushResult, err error) {
	for _, r := range res.Written {
		m.pushes.WithLabelValues(r, "written").Inc()
	}
	for _, r := range res.Existing {
		m.pushes.WithLabelValues(r, "existing").Inc()
	}
	var pe *archive.PushError
	switch {
	case errors.As(err, &pe):
		for _, r := range pe.Repos {
			m.pushes.WithLabelValues(r.Repo, "failed").Inc()
		}
	case err != nil:
		m.pushes.WithLabelValues("", "failed").Inc()
	}
}
