package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/scheduler"
)

// Sources of a backup request.
const (
	// SourceSchedule is a backup started by a repository's schedule.
	SourceSchedule = "schedule"
	// SourceOneOff is a backup asked for by a user (pgsidecar backup).
	SourceOneOff = "one-off"
)

// Errors of the backup queue.
var (
	// ErrQueueClosed reports a request made after the queue stopped, or
	// still queued when it stopped.
	ErrQueueClosed = errors.New("backup queue stopped")
	// ErrNotPrimary reports a backup refused because this instance is a
	// standby: only the primary's agent backs up.
	ErrNotPrimary = errors.New("backup skipped: this instance is a standby, only the primary backs up")
)

// BackupRequest asks the queue for one backup.
type BackupRequest struct {
	// Repo is the index N of repoN.
	Repo int `json:"repo"`
	// Type is full, diff or incr.
	Type string `json:"type"`
	// Source is SourceSchedule or SourceOneOff.
	Source string `json:"source"`
	// StartFast asks for an immediate checkpoint (--start-fast) on top of
	// the configuration's start-fast.
	StartFast bool `json:"start-fast,omitempty"`
}

// BackupResult is the outcome of a request, sent once on the channel Submit
// returns.
type BackupResult struct {
	// ID is the id of the job that ran (shared by coalesced requests).
	ID uint64
	// Err is nil when the backup succeeded.
	Err error
}

// BackupRunFunc takes one backup. progress, which it may call from any
// goroutine, reports the bytes copied so far of the total to copy.
type BackupRunFunc func(ctx context.Context, req BackupRequest, progress func(done, total uint64)) error

// QueueOptions configure a BackupQueue.
type QueueOptions struct {
	// Run takes a backup (see NewBackupRunner); required.
	Run BackupRunFunc
	// IsPrimary, when set, is asked before each backup: on a standby the
	// backup is refused with ErrNotPrimary (and logged), whether scheduled or
	// one-off.
	IsPrimary func(ctx context.Context) (bool, error)
	// Lease, when set, returns the lease to hold in repoN while backing up
	// into it; nil or a nil Lease means no lease.
	Lease func(repoIndex int) *Lease
	// Now is the clock for the times Status shows (time.Now when nil).
	Now func() time.Time
	// Log receives the queue's events; nil discards them.
	Log *zap.Logger
}

// Job states shown by Status.
const (
	JobQueued       = "queued"
	JobWaitingLease = "waiting-lease"
	JobRunning      = "running"
)

// JobStatus describes one queued or running backup. Its JSON form is part
// of the daemon's socket protocol (op "status").
type JobStatus struct {
	ID uint64 `json:"id"`
	BackupRequest
	// State is JobQueued, JobWaitingLease or JobRunning.
	State string `json:"state"`
	// Requests counts the requests coalesced into the job (1 when alone).
	Requests int `json:"requests"`
	// Submitted is when the first request arrived, Started when the job
	// left the queue (zero while queued).
	Submitted time.Time `json:"submitted"`
	Started   time.Time `json:"started,omitzero"`
	// Done and Total are the bytes copied of the bytes to copy; Total 0 means
	// the progress is not known (yet).
	Done  uint64 `json:"done"`
	Total uint64 `json:"total"`
}

// QueueStatus is a snapshot of the queue. Its JSON form is the daemon's
// answer to op "status".
type QueueStatus struct {
	// Running is the backup in progress, nil when none.
	Running *JobStatus `json:"running,omitempty"`
	// Queued lists the waiting backups in the order they will run.
	Queued []JobStatus `json:"queued,omitempty"`
}

// answerStatus answers the socket's op "status": the daemon's backup queue.
func (d *daemon) answerStatus() response {
	st := d.queue.Status()
	return response{OK: true, Status: &st}
}

type job struct {
	id        uint64
	req       BackupRequest
	waiters   []chan BackupResult
	submitted time.Time
	started   time.Time
	state     string
	done      atomic.Uint64
	total     atomic.Uint64
}

// BackupQueue runs backups one at a time across all repositories of the
// stanza, in the order they were asked for. Requests never fail because
// another backup runs: they wait their turn. A request for a repository and
// type already waiting in the queue joins that job (PGO CronJobs that pile up
// make one backup, not a backlog). The daemon owns one queue.
type BackupQueue struct {
	opts QueueOptions
	log  *zap.Logger
	now  func() time.Time

	mu      sync.Mutex
	nextID  uint64
	queued  []*job
	running *job
	closed  bool
	wake    chan struct{}
}

// NewBackupQueue returns an idle queue; Run works through it.
func NewBackupQueue(opts QueueOptions) *BackupQueue {
	q := &BackupQueue{opts: opts, log: opts.Log, now: opts.Now, wake: make(chan struct{}, 1)}
	if q.log == nil {
		q.log = zap.NewNop()
	}
	if q.now == nil {
		q.now = time.Now
	}
	return q
}

// Submit queues req and returns the job's id and a channel that receives its
// result once (buffered: the caller need not read it). It never blocks on a
// running backup. An invalid request or one made after the queue stopped gets
// its error on the channel at once, with id 0.
func (q *BackupQueue) Submit(req BackupRequest) (uint64, <-chan BackupResult) {
	ch := make(chan BackupResult, 1)
	if err := validRequest(req); err != nil {
		ch <- BackupResult{Err: err}
		return 0, ch
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		ch <- BackupResult{Err: ErrQueueClosed}
		return 0, ch
	}
	for _, j := range q.queued {
		if j.req.Repo == req.Repo && j.req.Type == req.Type {
			j.waiters = append(j.waiters, ch)
			if req.Source == SourceOneOff {
				j.req.Source = SourceOneOff // a user waits on it
			}
			q.log.Info("backup request joins a queued one", zap.Uint64("id", j.id),
				zap.Int("repo", req.Repo), zap.String("type", req.Type), zap.String("source", req.Source))
			return j.id, ch
		}
	}
	q.nextID++
	j := &job{id: q.nextID, req: req, waiters: []chan BackupResult{ch}, submitted: q.now(), state: JobQueued}
	q.queued = append(q.queued, j)
	ahead := len(q.queued) - 1
	if q.running != nil {
		ahead++
	}
	q.log.Info("backup queued", zap.Uint64("id", j.id), zap.Int("repo", req.Repo),
		zap.String("type", req.Type), zap.String("source", req.Source), zap.Int("ahead", ahead))
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return j.id, ch
}

func validRequest(req BackupRequest) error {
	if req.Repo < 1 {
		return fmt.Errorf("backup request: repo%d is not a repository", req.Repo)
	}
	if !repo.BackupType(req.Type).Valid() {
		return fmt.Errorf("backup request: invalid backup type '%s' (full, diff or incr)", req.Type)
	}
	if req.Source != SourceSchedule && req.Source != SourceOneOff {
		return fmt.Errorf("backup request: invalid source %q", req.Source)
	}
	return nil
}

// Status returns what runs and what waits.
func (q *BackupQueue) Status() QueueStatus {
	q.mu.Lock()
	defer q.mu.Unlock()
	var st QueueStatus
	if q.running != nil {
		s := q.running.status()
		st.Running = &s
	}
	for _, j := range q.queued {
		st.Queued = append(st.Queued, j.status())
	}
	return st
}

// status must be called with q.mu held.
func (j *job) status() JobStatus {
	return JobStatus{
		ID: j.id, BackupRequest: j.req, State: j.state, Requests: len(j.waiters),
		Submitted: j.submitted, Started: j.started, Done: j.done.Load(), Total: j.total.Load(),
	}
}

// next waits for the first queued job and makes it the running one.
func (q *BackupQueue) next(ctx context.Context) (*job, error) {
	for {
		q.mu.Lock()
		if len(q.queued) > 0 {
			j := q.queued[0]
			q.queued = q.queued[1:]
			j.state, j.started = JobRunning, q.now()
			q.running = j
			q.mu.Unlock()
			return j, nil
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.wake:
		}
	}
}

// Run works through the queue, one backup at a time, until ctx ends; then it
// fails the requests still queued with ErrQueueClosed, refuses new ones and
// returns ctx's error. A failed backup is reported to its requesters, not
// returned: the queue goes on.
func (q *BackupQueue) Run(ctx context.Context) error {
	defer func() {
		q.mu.Lock()
		q.closed = true
		pending := q.queued
		q.queued = nil
		q.mu.Unlock()
		for _, j := range pending {
			for _, ch := range j.waiters {
				ch <- BackupResult{ID: j.id, Err: ErrQueueClosed}
			}
		}
	}()
	for {
		j, err := q.next(ctx)
		if err != nil {
			return err
		}
		err = q.runJob(ctx, j)
		q.mu.Lock()
		q.running = nil
		waiters := j.waiters
		q.mu.Unlock()
		switch {
		case errors.Is(err, ErrNotPrimary):
			q.log.Info("backup skipped on a standby", zap.Uint64("id", j.id), zap.Int("repo", j.req.Repo),
				zap.String("type", j.req.Type), zap.String("source", j.req.Source))
		case err != nil:
			q.log.Error("backup failed", zap.Uint64("id", j.id), zap.Int("repo", j.req.Repo),
				zap.String("type", j.req.Type), zap.String("source", j.req.Source), zap.Error(err))
		default:
			q.log.Info("backup done", zap.Uint64("id", j.id), zap.Int("repo", j.req.Repo),
				zap.String("type", j.req.Type), zap.String("source", j.req.Source))
		}
		for _, ch := range waiters {
			ch <- BackupResult{ID: j.id, Err: err}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// runJob checks for a primary, takes the repository's lease and runs the
// backup.
func (q *BackupQueue) runJob(ctx context.Context, j *job) error {
	if q.opts.IsPrimary != nil {
		ok, err := q.opts.IsPrimary(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotPrimary
		}
	}
	progress := func(done, total uint64) {
		j.total.Store(total)
		for { // keep the largest: calls may arrive out of order
			old := j.done.Load()
			if done <= old || j.done.CompareAndSwap(old, done) {
				break
			}
		}
	}
	run := func(ctx context.Context) error {
		q.setState(j, JobRunning)
		return q.opts.Run(ctx, j.req, progress)
	}
	var lease *Lease
	if q.opts.Lease != nil {
		lease = q.opts.Lease(j.req.Repo)
	}
	if lease == nil {
		return run(ctx)
	}
	q.setState(j, JobWaitingLease)
	return lease.Do(ctx, run)
}

func (q *BackupQueue) setState(j *job, state string) {
	q.mu.Lock()
	j.state = state
	q.mu.Unlock()
}

// NewBackupRunner returns the production BackupRunFunc: Backup with a copy of
// cfg whose --repo and --type are the request's, reporting its progress to
// the queue's Status.
func NewBackupRunner(cfg *config.Config, repos []Repo, log *zap.Logger) BackupRunFunc {
	return func(ctx context.Context, req BackupRequest, progress func(done, total uint64)) error {
		c := *cfg
		c.RepoSelected, c.Type = req.Repo, req.Type
		c.StartFast = c.StartFast || req.StartFast
		return backupWithProgress(ctx, &c, repos, log.With(zap.String("source", req.Source)), progress)
	}
}

// NewPrimaryCheck returns the QueueOptions.IsPrimary of pg1.
func NewPrimaryCheck(cfg *config.Config) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		if len(cfg.Pgs) == 0 {
			return false, errors.New("backup requires option pg1-path")
		}
		cc, err := connConfig(cfg)
		if err != nil {
			return false, err
		}
		return isPrimary(ctx, cc)
	}
}

// NewLeases returns the QueueOptions.Lease of the opened repositories.
func NewLeases(stanza string, repos []Repo, lc LeaseConfig) func(repoIndex int) *Lease {
	return func(repoIndex int) *Lease {
		for _, r := range repos {
			if r.Config.Index == repoIndex {
				return NewLease(r.Store, stanza, lc)
			}
		}
		return nil
	}
}

// ScheduleEntries returns the schedules of every repository of cfg.
func ScheduleEntries(cfg *config.Config) []scheduler.Entry {
	var out []scheduler.Entry
	for _, r := range cfg.Repos {
		for _, s := range []struct{ typ, spec string }{
			{scheduler.Full, r.Schedules.Full},
			{scheduler.Diff, r.Schedules.Differential},
			{scheduler.Incr, r.Schedules.Incremental},
		} {
			if s.spec != "" {
				out = append(out, scheduler.Entry{Repo: r.Index, Type: s.typ, Spec: s.spec})
			}
		}
	}
	return out
}

// covers reports whether a backup of type have makes a scheduled backup of
// type want redundant: a full covers everything, a diff covers diffs and
// incrs, an incr only incrs.
func covers(have repo.BackupType, want string) bool {
	switch have {
	case repo.BackupFull:
		return true
	case repo.BackupDiff:
		return want == scheduler.Diff || want == scheduler.Incr
	}
	return want == scheduler.Incr
}

// LastRuns returns, per schedule entry, the start of the newest backup in
// backup.info that covers it: for a full schedule the newest full; for a diff
// schedule the newest diff or full (a full taken after a missed diff tick
// already contains what the diff would have); for an incr schedule the newest
// backup of any type. This is what "missed" means for the scheduler: a tick
// passed with no backup at least as deep as the schedule's. A repository whose
// backup.info cannot be read (no stanza yet, unreachable) gives the zero time
// for its entries, which makes only full schedules due at start-up; the error
// is logged.
func LastRuns(ctx context.Context, cfg *config.Config, repos []Repo, entries []scheduler.Entry, log *zap.Logger) map[scheduler.Entry]time.Time {
	out := make(map[scheduler.Entry]time.Time, len(entries))
	infos := map[int]*repo.BackupInfo{}
	for _, e := range entries {
		bi, ok := infos[e.Repo]
		if !ok {
			for _, r := range repos {
				if r.Config.Index != e.Repo {
					continue
				}
				var err error
				if bi, err = openStanza(cfg, r).LoadBackupInfo(ctx); err != nil {
					log.Warn("read backup.info for the schedules", zap.String("repo", r.Name()), zap.Error(err))
					bi = nil
				}
			}
			infos[e.Repo] = bi
		}
		if bi == nil {
			continue
		}
		var last int64
		for _, b := range bi.Backups {
			if covers(b.Type, e.Type) && b.TimestampStart > last {
				last = b.TimestampStart
			}
		}
		if last > 0 {
			out[e] = time.Unix(last, 0).UTC()
		}
	}
	return out
}

// RunScheduler submits the backups the repositories' schedules (cfg.Repos[i].Schedules,
// read in UTC) call for to queue until ctx ends: a run missed while the agent was down
// once at start, then each tick. It returns ctx's error, or at once when a
// schedule is invalid. With no schedules it waits for ctx.
func RunScheduler(ctx context.Context, cfg *config.Config, repos []Repo, queue *BackupQueue, clock scheduler.Clock, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	entries := ScheduleEntries(cfg)
	s, err := scheduler.New(entries, nil, clock)
	if err != nil {
		return fmt.Errorf("read schedules: %w", err)
	}
	if len(entries) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	last := LastRuns(ctx, cfg, repos, entries, log)
	return s.Run(ctx, func(e scheduler.Entry) time.Time { return last[e] }, func(_ context.Context, e scheduler.Entry) {
		id, _ := queue.Submit(BackupRequest{Repo: e.Repo, Type: e.Type, Source: SourceSchedule})
		log.Info("scheduled backup submitted", zap.Stringer("schedule", e), zap.Uint64("id", id))
	})
}
