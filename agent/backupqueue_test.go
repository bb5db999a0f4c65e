package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/scheduler/schedtest"
	"github.com/pgsidecar/pgsidecar/storage/posix"
)

func qWaitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func qTime(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// qRepo opens a posix repository in dir as repoN.
func qRepo(t *testing.T, index int, dir string) Repo {
	t.Helper()
	s, err := posix.New(posix.Config{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return Repo{Config: config.Repo{Index: index, Type: "posix", Path: dir}, Store: s}
}

// qBackupInfo writes a backup.info holding backups with the given types and
// start times into r.
func qBackupInfo(t *testing.T, cfg *config.Config, r Repo, backups map[repo.BackupType]time.Time) {
	t.Helper()
	bi, err := repo.NewBackupInfo("15", 7000000000000000001, 202209061, "")
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for typ, at := range backups {
		suffix := map[repo.BackupType]string{repo.BackupFull: "F", repo.BackupDiff: "D", repo.BackupIncr: "I"}[typ]
		label := at.UTC().Format("20060102-150405") + suffix
		if typ != repo.BackupFull {
			label = "20200101-000000F_" + label
		}
		labels = append(labels, label)
		bk := repo.Backup{
			Label: label, Type: typ, TimestampStart: at.Unix(), TimestampStop: at.Unix() + 60, DBID: 1,
			BackrestFormat: 5, BackrestVersion: "2.45", ArchiveStart: "000000010000000000000002",
			ArchiveStop: "000000010000000000000002", OptionArchiveCheck: true,
		}
		if typ != repo.BackupFull {
			bk.Prior = "20200101-000000F"
			bk.Reference = []string{"20200101-000000F"}
		}
		bi.Add(bk)
	}
	if err := openStanza(cfg, r).SaveBackupInfo(t.Context(), bi); err != nil {
		t.Fatal(err)
	}
}

// recorder is a fake BackupRunFunc that records the order of the backups,
// counts how many run at once and fails as a lock would if two overlap.
type recorder struct {
	inFlight, maxInFlight atomic.Int32
	lock                  sync.Mutex
	mu                    sync.Mutex
	order                 []string
	hold                  time.Duration
	check                 func(ctx context.Context, req BackupRequest) error
}

func (r *recorder) run(ctx context.Context, req BackupRequest, progress func(done, total uint64)) error {
	n := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.maxInFlight.Load()
		if n <= m || r.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if !r.lock.TryLock() {
		return errors.New("unable to acquire the backup lock: another backup is running")
	}
	defer r.lock.Unlock()
	if r.check != nil {
		if err := r.check(ctx, req); err != nil {
			return err
		}
	}
	progress(0, 100)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.hold):
	}
	progress(100, 100)
	r.mu.Lock()
	r.order = append(r.order, fmt.Sprintf("repo%d %s %s", req.Repo, req.Type, req.Source))
	r.mu.Unlock()
	return nil
}

func (r *recorder) runs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// startQueue runs q until the test ends.
func startQueue(t *testing.T, q *BackupQueue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("queue Run returned %v", err)
		}
	})
}

func TestQueueSchedulesAndOneOffRunOneAtATime(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Stanza: "db"}
	r1, r2 := qRepo(t, 1, t.TempDir()), qRepo(t, 2, t.TempDir())
	r1.Config.Schedules.Full = "0 1 * * *"
	r2.Config.Schedules.Differential = "0 1 * * *"
	cfg.Repos = []config.Repo{r1.Config, r2.Config}
	repos := []Repo{r1, r2}
	clock := schedtest.NewClock(qTime("2026-11-29 00:30"))
	// Both repositories were backed up at midnight: nothing is missed at start.
	qBackupInfo(t, cfg, r1, map[repo.BackupType]time.Time{repo.BackupFull: qTime("2026-11-29 00:00")})
	qBackupInfo(t, cfg, r2, map[repo.BackupType]time.Time{repo.BackupFull: qTime("2026-11-29 00:00")})

	holder := "test-agent/1/q"
	rec := &recorder{hold: 30 * time.Millisecond}
	rec.check = func(ctx context.Context, req BackupRequest) error {
		// The backup runs under its repository's lease.
		l := NewLease(repos[req.Repo-1].Store, "db", LeaseConfig{Holder: holder})
		cur, _, err := l.read(ctx)
		if err != nil {
			return fmt.Errorf("lease while backing up: %w", err)
		}
		if cur.Holder != holder {
			return fmt.Errorf("lease held by %s", cur.Holder)
		}
		return nil
	}
	q := NewBackupQueue(QueueOptions{
		Run: rec.run, Log: zaptest.NewLogger(t),
		Lease: NewLeases("db", repos, LeaseConfig{Holder: holder, Retry: 5 * time.Millisecond}),
	})
	startQueue(t, q)
	ctx, cancel := context.WithCancel(t.Context())
	schedDone := make(chan error, 1)
	go func() { schedDone <- RunScheduler(ctx, cfg, repos, q, clock, zaptest.NewLogger(t)) }()
	clock.WaitPending(t, 1)
	if got := rec.runs(); len(got) != 0 {
		t.Fatalf("backups before the schedules were due: %v", got)
	}
	clock.Advance(qTime("2026-11-29 01:00"))
	_, oneOff := q.Submit(BackupRequest{Repo: 1, Type: "incr", Source: SourceOneOff})
	qWaitUntil(t, "three backups", func() bool { return len(rec.runs()) == 3 })
	if res := <-oneOff; res.Err != nil {
		t.Fatalf("one-off backup: %v", res.Err)
	}
	got := rec.runs()
	slices.Sort(got)
	want := []string{"repo1 full schedule", "repo1 incr one-off", "repo2 diff schedule"}
	if !slices.Equal(got, want) {
		t.Fatalf("backups %v, want %v", got, want)
	}
	if m := rec.maxInFlight.Load(); m != 1 {
		t.Fatalf("%d backups ran at once", m)
	}
	// The last backup may still be releasing its lease when its run is
	// recorded; none may be left behind for long.
	for _, r := range repos {
		qWaitUntil(t, r.Name()+" lease released", func() bool {
			ok, err := openStanza(cfg, r).Exists(t.Context(), "backup/db/"+LeaseFile)
			return err == nil && !ok
		})
	}
	cancel()
	if err := <-schedDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunScheduler returned %v", err)
	}
}

func TestQueueCoalescesAndReportsStatus(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var mu sync.Mutex
	var ran []string
	run := func(ctx context.Context, req BackupRequest, progress func(done, total uint64)) error {
		progress(40, 100)
		if req.Repo == 1 && req.Type == "full" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mu.Lock()
		ran = append(ran, fmt.Sprintf("repo%d %s", req.Repo, req.Type))
		mu.Unlock()
		if req.Repo == 2 {
			return errors.New("repo2 unreachable")
		}
		return nil
	}
	q := NewBackupQueue(QueueOptions{Run: run, Log: zaptest.NewLogger(t)})
	startQueue(t, q)
	firstID, first := q.Submit(BackupRequest{Repo: 1, Type: "full", Source: SourceSchedule})
	qWaitUntil(t, "the first backup to start", func() bool {
		st := q.Status()
		return st.Running != nil && st.Running.Done == 40
	})
	// Queued behind the running full: a schedule that piled up twice, a
	// one-off of the same kind, another repository, and another full of repo1
	// (not merged into the running one: it must start after the request).
	idA, a := q.Submit(BackupRequest{Repo: 1, Type: "incr", Source: SourceSchedule})
	idB, b := q.Submit(BackupRequest{Repo: 2, Type: "incr", Source: SourceSchedule})
	idC, c := q.Submit(BackupRequest{Repo: 1, Type: "incr", Source: SourceSchedule})
	idD, d := q.Submit(BackupRequest{Repo: 1, Type: "incr", Source: SourceOneOff})
	idE, e := q.Submit(BackupRequest{Repo: 1, Type: "full", Source: SourceOneOff})
	if idA != idC || idA != idD || idA == idB || idE == firstID || idE == idA {
		t.Fatalf("ids %d %d %d %d %d (first %d): want a, c and d merged", idA, idB, idC, idD, idE, firstID)
	}
	st := q.Status()
	if st.Running == nil || st.Running.ID != firstID || st.Running.State != JobRunning || st.Running.Total != 100 {
		t.Fatalf("running %+v", st.Running)
	}
	var queued []string
	for _, j := range st.Queued {
		queued = append(queued, fmt.Sprintf("%d repo%d %s %s x%d %s", j.ID, j.Repo, j.Type, j.Source, j.Requests, j.State))
	}
	want := []string{
		fmt.Sprintf("%d repo1 incr one-off x3 queued", idA),
		fmt.Sprintf("%d repo2 incr schedule x1 queued", idB),
		fmt.Sprintf("%d repo1 full one-off x1 queued", idE),
	}
	if !slices.Equal(queued, want) {
		t.Fatalf("queued\n%v\nwant\n%v", queued, want)
	}
	close(release)
	for i, ch := range []<-chan BackupResult{first, a, c, d, e} {
		if res := <-ch; res.Err != nil {
			t.Fatalf("request %d: %v", i, res.Err)
		}
	}
	if res := <-b; res.Err == nil || !strings.Contains(res.Err.Error(), "repo2 unreachable") || res.ID != idB {
		t.Fatalf("failed backup reported %+v", res)
	}
	mu.Lock()
	got := slices.Clone(ran)
	mu.Unlock()
	if !slices.Equal(got, []string{"repo1 full", "repo1 incr", "repo2 incr", "repo1 full"}) {
		t.Fatalf("ran %v", got)
	}
	if st := q.Status(); st.Running != nil || len(st.Queued) != 0 {
		t.Fatalf("status after all ran: %+v", st)
	}
}

func TestQueueRefusals(t *testing.T) {
	t.Parallel()
	var ran atomic.Int32
	run := func(context.Context, BackupRequest, func(done, total uint64)) error { ran.Add(1); return nil }
	primary := atomic.Bool{}
	q := NewBackupQueue(QueueOptions{Run: run, Log: zaptest.NewLogger(t),
		IsPrimary: func(context.Context) (bool, error) { return primary.Load(), nil }})
	for _, req := range []BackupRequest{
		{Repo: 0, Type: "full", Source: SourceOneOff},
		{Repo: 1, Type: "weekly", Source: SourceOneOff},
		{Repo: 1, Type: "full", Source: "cron"},
	} {
		id, ch := q.Submit(req)
		if res := <-ch; res.Err == nil || id != 0 {
			t.Errorf("%+v accepted: %d %+v", req, id, res)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	_, ch := q.Submit(BackupRequest{Repo: 1, Type: "full", Source: SourceSchedule})
	if res := <-ch; !errors.Is(res.Err, ErrNotPrimary) {
		t.Fatalf("backup on a standby: %v", res.Err)
	}
	primary.Store(true)
	_, ch = q.Submit(BackupRequest{Repo: 1, Type: "full", Source: SourceSchedule})
	if res := <-ch; res.Err != nil {
		t.Fatalf("backup on the primary: %v", res.Err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("%d backups ran, want 1", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	_, ch = q.Submit(BackupRequest{Repo: 1, Type: "full", Source: SourceOneOff})
	if res := <-ch; !errors.Is(res.Err, ErrQueueClosed) {
		t.Fatalf("request after stop: %v", res.Err)
	}
}

func TestScheduleMissedRunsOnceAtStart(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Stanza: "db"}
	r1, r2, r3 := qRepo(t, 1, t.TempDir()), qRepo(t, 2, t.TempDir()), qRepo(t, 3, t.TempDir())
	r1.Config.Schedules.Full = "0 1 * * *"         // daily; last full a week ago: 7 ticks missed
	r1.Config.Schedules.Incremental = "30 * * * *" // newest backup at 12:10 is after the 11:30 tick
	r2.Config.Schedules.Full = "0 1 * * 0"         // weekly; full taken today
	r2.Config.Schedules.Differential = "0 */4 * * *"
	r3.Config.Schedules.Differential = "0 */4 * * *" // no backup.info: not due (no full yet)
	r3.Config.Schedules.Full = "0 1 * * 0"           // no backup.info: due, a first full
	cfg.Repos = []config.Repo{r1.Config, r2.Config, r3.Config}
	repos := []Repo{r1, r2, r3}
	qBackupInfo(t, cfg, r1, map[repo.BackupType]time.Time{
		repo.BackupFull: qTime("2026-11-22 01:00"), repo.BackupIncr: qTime("2026-11-29 12:10"),
	})
	// repo2's diff tick at 08:00 and 12:00 passed without a diff, but the
	// full taken at 12:05 covers them.
	qBackupInfo(t, cfg, r2, map[repo.BackupType]time.Time{
		repo.BackupFull: qTime("2026-11-29 12:05"), repo.BackupDiff: qTime("2026-11-29 03:00"),
	})
	clock := schedtest.NewClock(qTime("2026-11-29 12:20"))
	rec := &recorder{}
	q := NewBackupQueue(QueueOptions{Run: rec.run, Log: zaptest.NewLogger(t)})
	startQueue(t, q)
	ctx, cancel := context.WithCancel(t.Context())
	schedDone := make(chan error, 1)
	go func() { schedDone <- RunScheduler(ctx, cfg, repos, q, clock, zaptest.NewLogger(t)) }()
	clock.WaitPending(t, 1)
	qWaitUntil(t, "the missed backups", func() bool {
		st := q.Status()
		return st.Running == nil && len(st.Queued) == 0 && len(rec.runs()) >= 2
	})
	got := rec.runs()
	if !slices.Equal(got, []string{"repo1 full schedule", "repo3 full schedule"}) {
		t.Fatalf("missed runs %v", got)
	}
	// The next tick (12:30 incr of repo1) runs it, once.
	clock.Advance(qTime("2026-11-29 12:30"))
	qWaitUntil(t, "the next tick", func() bool { return len(rec.runs()) == 3 })
	if got := rec.runs()[2]; got != "repo1 incr schedule" {
		t.Fatalf("tick ran %s", got)
	}
	cancel()
	if err := <-schedDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunScheduler returned %v", err)
	}
}

func TestScheduleEntriesAndBadSpec(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Stanza: "db", Repos: []config.Repo{
		{Index: 1, Schedules: config.Schedules{Full: "0 1 * * 0", Incremental: "0 1 * * 1-6"}},
		{Index: 2},
		{Index: 4, Schedules: config.Schedules{Differential: "@daily"}},
	}}
	var got []string
	for _, e := range ScheduleEntries(cfg) {
		got = append(got, e.String())
	}
	want := []string{`repo1 full "0 1 * * 0"`, `repo1 incr "0 1 * * 1-6"`, `repo4 diff "@daily"`}
	if !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	cfg.Repos[1].Schedules.Full = "61 * * * *"
	q := NewBackupQueue(QueueOptions{Run: func(context.Context, BackupRequest, func(uint64, uint64)) error { return nil }})
	err := RunScheduler(t.Context(), cfg, nil, q, schedtest.NewClock(qTime("2026-11-29 00:00")), nil)
	if err == nil || !strings.Contains(err.Error(), "repo2 full") {
		t.Fatalf("bad schedule: %v", err)
	}
}

// startTestCluster starts PostgreSQL 15 on data (from initdb) listening only
// on a unix socket in the data directory's parent, and stops it at the end.
func startTestCluster(t *testing.T, data string) (socketDir string) {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin/pg_ctl"
	requireTool(t, bin)
	socketDir = filepath.Dir(data)
	args := []string{"-D", data, "-l", filepath.Join(socketDir, "postgres.log"), "-w",
		"-o", "-k " + socketDir + " -p 5432 -c listen_addresses=''"}
	pgctl := func(a ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command("runuser", append([]string{"-u", "pgsidecar", "--", bin}, a...)...)
		}
		return exec.Command(bin, a...)
	}
	if out, err := pgctl(append(args, "start")...).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(socketDir, "postgres.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { _ = pgctl("-D", data, "-m", "immediate", "-w", "stop").Run() })
	return socketDir
}

// TestQueueRealBackupsOneAfterTheOther submits full backups to two
// repositories of a running cluster at the same moment, through the queue
// with Backup itself as the run function, the primary check and the leases:
// both succeed, one after the other (two at once would fail on the cluster's
// backup lock), and each repository lists its backup.
func TestQueueRealBackupsOneAfterTheOther(t *testing.T) {
	t.Parallel()
	data := initdb(t)
	socket := startTestCluster(t, data)
	dir := t.TempDir()
	ini := "[global]\nrepo1-path=" + filepath.Join(dir, "r1") + "\nrepo2-path=" + filepath.Join(dir, "r2") +
		"\nstart-fast=y\narchive-check=n\ncompress-type=lz4\n[db]\npg1-path=" + data +
		"\npg1-socket-path=" + socket + "\npg1-user=postgres\n"
	create := loadCfg(t, ini, "--stanza=db", "stanza-create")
	if err := StanzaCreate(t.Context(), create, openTestRepos(t, create), zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	cfg := loadCfg(t, ini, "--stanza=db", "run")
	repos := openTestRepos(t, cfg)
	log := zaptest.NewLogger(t)
	var inFlight, maxInFlight atomic.Int32
	backup := NewBackupRunner(cfg, repos, log)
	holder, err := NewHolderID("test", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	q := NewBackupQueue(QueueOptions{
		Run: func(ctx context.Context, req BackupRequest, progress func(done, total uint64)) error {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
			}
			return backup(ctx, req, progress)
		},
		IsPrimary: NewPrimaryCheck(cfg),
		Lease:     NewLeases(cfg.Stanza, repos, LeaseConfig{Holder: holder, Log: log}),
		Log:       log,
	})
	startQueue(t, q)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ch := q.Submit(BackupRequest{Repo: i + 1, Type: "full", Source: SourceOneOff})
			errs[i] = (<-ch).Err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("backup to repo%d: %v", i+1, err)
		}
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("%d backups ran at once", m)
	}
	var starts []int64
	for _, r := range repos {
		bi, err := openStanza(cfg, r).LoadBackupInfo(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(bi.Backups) != 1 || bi.Backups[0].Type != repo.BackupFull {
			t.Fatalf("%s: backups %+v", r.Name(), bi.Backups)
		}
		starts = append(starts, bi.Backups[0].TimestampStart, bi.Backups[0].TimestampStop)
		if ok, err := openStanza(cfg, r).Exists(t.Context(), "backup/db/"+LeaseFile); err != nil || ok {
			t.Errorf("%s: lease left behind (%v, %v)", r.Name(), ok, err)
		}
	}
	// One finished before the other started.
	if !(starts[1] <= starts[2] || starts[3] <= starts[0]) {
		t.Fatalf("backups overlap: repo1 %d-%d, repo2 %d-%d", starts[0], starts[1], starts[2], starts[3])
	}
}

// TestQueuePrimaryCheckOnStandby checks isPrimary on a primary and on its
// streaming standby, and that the queue refuses a backup on the standby.
func TestQueuePrimaryCheckOnStandby(t *testing.T) {
	t.Parallel()
	primary := initdb(t)
	primarySocket := startTestCluster(t, primary)
	bin := "/usr/lib/postgresql/15/bin/pg_basebackup"
	requireTool(t, bin)
	dir, err := os.MkdirTemp("", "pgsidecar-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	standby := filepath.Join(dir, "data")
	args := []string{"-D", standby, "-R", "-X", "stream", "-h", primarySocket, "-p", "5432", "-U", "postgres"}
	cmd := exec.Command(bin, args...)
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("runuser", append([]string{"-u", "pgsidecar", "--", bin}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	standbySocket := startTestCluster(t, standby)
	for _, tc := range []struct {
		data, socket string
		want         bool
	}{{primary, primarySocket, true}, {standby, standbySocket, false}} {
		cfg := loadCfg(t, "[global]\nrepo1-path="+t.TempDir()+"\n[db]\npg1-path="+tc.data+"\npg1-socket-path="+tc.socket+"\npg1-user=postgres\n",
			"--stanza=db", "backup")
		check := NewPrimaryCheck(cfg)
		ok, err := check(t.Context())
		if err != nil || ok != tc.want {
			t.Fatalf("%s: primary %v, %v; want %v", tc.data, ok, err, tc.want)
		}
		var ran atomic.Int32
		q := NewBackupQueue(QueueOptions{
			Run:       func(context.Context, BackupRequest, func(uint64, uint64)) error { ran.Add(1); return nil },
			IsPrimary: check, Log: zaptest.NewLogger(t),
		})
		startQueue(t, q)
		_, ch := q.Submit(BackupRequest{Repo: 1, Type: "incr", Source: SourceSchedule})
		res := <-ch
		if tc.want && (res.Err != nil || ran.Load() != 1) {
			t.Fatalf("primary: %v, %d runs", res.Err, ran.Load())
		}
		if !tc.want && (!errors.Is(res.Err, ErrNotPrimary) || ran.Load() != 0) {
			t.Fatalf("standby: %v, %d runs", res.Err, ran.Load())
		}
	}
}
