package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgsidecar/pgsidecar/scheduler/schedtest"
	"github.com/pgsidecar/pgsidecar/storage"
)

// qWriteLease stores a lease of holder expiring at expires.
func qWriteLease(t *testing.T, s storage.Store, holder string, expires time.Time) {
	t.Helper()
	b, err := json.Marshal(leaseContent{Holder: holder, Acquired: expires.Add(-time.Hour), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "backup/db/"+LeaseFile, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

func qLeaseHolder(t *testing.T, s storage.Store) string {
	t.Helper()
	b, err := storage.ReadAll(t.Context(), s, "backup/db/"+LeaseFile)
	if errors.Is(err, storage.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var c leaseContent
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("lease %q: %v", b, err)
	}
	return c.Holder
}

func TestLeaseTwoAgentsNeverBackUpAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Two agents (two pods after a failover), each with its own queue and its
	// own store on the same repository.
	rec := &recorder{hold: 20 * time.Millisecond}
	var queues []*BackupQueue
	for i := range 2 {
		holder, err := NewHolderID(fmt.Sprintf("pod-%d", i), 100+i)
		if err != nil {
			t.Fatal(err)
		}
		r := qRepo(t, 1, dir)
		q := NewBackupQueue(QueueOptions{
			Run: rec.run, Log: zaptest.NewLogger(t),
			Lease: NewLeases("db", []Repo{r}, LeaseConfig{Holder: holder, Retry: 2 * time.Millisecond, Log: zaptest.NewLogger(t)}),
		})
		startQueue(t, q)
		queues = append(queues, q)
	}
	var results []<-chan BackupResult
	for range 4 {
		for _, q := range queues {
			for _, typ := range []string{"full", "incr"} {
				_, ch := q.Submit(BackupRequest{Repo: 1, Type: typ, Source: SourceOneOff})
				results = append(results, ch)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, ch := range results {
		if res := <-ch; res.Err != nil {
			t.Fatalf("request %d: %v", i, res.Err)
		}
	}
	if m := rec.maxInFlight.Load(); m != 1 {
		t.Fatalf("%d backups ran at once", m)
	}
	if n := len(rec.runs()); n < 4 {
		t.Fatalf("only %d backups ran", n)
	}
	if h := qLeaseHolder(t, qRepo(t, 1, dir).Store); h != "" {
		t.Fatalf("lease of %s left behind", h)
	}
}

func TestLeaseExpiredIsTakenOver(t *testing.T) {
	t.Parallel()
	s := qRepo(t, 1, t.TempDir()).Store
	clock := schedtest.NewClock(qTime("2026-11-29 12:00"))
	qWriteLease(t, s, "crashed-pod/7/aa", qTime("2026-11-29 11:59"))
	l := NewLease(s, "db", LeaseConfig{Holder: "me/1/bb", TTL: time.Minute, Clock: clock, Log: zaptest.NewLogger(t)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("acquire over an expired lease: %v", err)
	}
	if h := qLeaseHolder(t, s); h != "me/1/bb" {
		t.Fatalf("lease held by %q", h)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h := qLeaseHolder(t, s); h != "" {
		t.Fatalf("lease of %q after release", h)
	}
}

func TestLeaseOfAnotherAgentIsLeftAlone(t *testing.T) {
	t.Parallel()
	s := qRepo(t, 1, t.TempDir()).Store
	clock := schedtest.NewClock(qTime("2026-11-29 12:00"))
	qWriteLease(t, s, "other-pod/7/aa", qTime("2026-11-29 12:04"))
	l := NewLease(s, "db", LeaseConfig{Holder: "me/1/bb", TTL: time.Minute, Retry: time.Minute, Clock: clock, Log: zaptest.NewLogger(t)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Acquire(ctx) }()
	// It waits for the other agent's lease; two minutes on it is still valid.
	clock.WaitPending(t, 1)
	clock.Advance(qTime("2026-11-29 12:01"))
	clock.WaitPending(t, 1)
	clock.Advance(qTime("2026-11-29 12:02"))
	clock.WaitPending(t, 1)
	select {
	case err := <-done:
		t.Fatalf("acquired a lease held by another agent: %v", err)
	default:
	}
	if err := l.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewing another agent's lease: %v", err)
	}
	if h := qLeaseHolder(t, s); h != "other-pod/7/aa" {
		t.Fatalf("the other agent's lease became %q", h)
	}
	// Once it has expired, the waiting agent takes it over.
	clock.Advance(qTime("2026-11-29 12:05"))
	if err := <-done; err != nil {
		t.Fatalf("acquire after expiry: %v", err)
	}
	if h := qLeaseHolder(t, s); h != "me/1/bb" {
		t.Fatalf("lease held by %q", h)
	}
	cancel()
}

func TestLeaseRenewedAndLost(t *testing.T) {
	t.Parallel()
	s := qRepo(t, 1, t.TempDir()).Store
	clock := schedtest.NewClock(qTime("2026-11-29 12:00"))
	l := NewLease(s, "db", LeaseConfig{Holder: "me/1/bb", TTL: 3 * time.Minute, Clock: clock, Log: zaptest.NewLogger(t)})
	readExpiry := func() time.Time {
		b, err := storage.ReadAll(t.Context(), s, l.Key())
		if err != nil {
			t.Fatal(err)
		}
		var c leaseContent
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c.Expires
	}
	var once sync.Once
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.Do(t.Context(), func(ctx context.Context) error {
			once.Do(func() { close(started) })
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-started
	if e := readExpiry(); !e.Equal(qTime("2026-11-29 12:03")) {
		t.Fatalf("lease expires %v", e)
	}
	// Renewed every TTL/3 while the backup runs.
	clock.WaitPending(t, 1)
	clock.Advance(qTime("2026-11-29 12:01"))
	qWaitUntil(t, "the renewal", func() bool { return readExpiry().Equal(qTime("2026-11-29 12:04")) })
	// Another agent took it over (it judged it expired): the backup stops.
	qWriteLease(t, s, "other-pod/7/aa", qTime("2026-11-29 12:10"))
	clock.WaitPending(t, 1)
	clock.Advance(qTime("2026-11-29 12:02"))
	err := <-done
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Do returned %v, want the lease lost", err)
	}
	if h := qLeaseHolder(t, s); h != "other-pod/7/aa" {
		t.Fatalf("the other agent's lease became %q", h)
	}
}

func TestLeaseOwnStaleOrUnreadableIsRetaken(t *testing.T) {
	t.Parallel()
	s := qRepo(t, 1, t.TempDir()).Store
	clock := schedtest.NewClock(time.Now().Add(24 * time.Hour))
	l := NewLease(s, "db", LeaseConfig{Holder: "me/1/bb", TTL: time.Minute, Clock: clock, Log: zaptest.NewLogger(t)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Our own lease, left expired by a release that failed: taken and extended.
	qWriteLease(t, s, "me/1/bb", clock.Now().Add(-time.Hour))
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := storage.ReadAll(ctx, s, l.Key())
	if err != nil {
		t.Fatal(err)
	}
	var c leaseContent
	if err := json.Unmarshal(b, &c); err != nil || c.Holder != "me/1/bb" || !c.Expires.Equal(clock.Now().Add(time.Minute).UTC()) {
		t.Fatalf("own lease after acquire: %s (%v)", b, err)
	}
	// Garbage is held until its modification time plus the TTL, then taken.
	if err := s.Put(ctx, l.Key(), bytes.NewReader([]byte("not json"))); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if h := qLeaseHolder(t, s); h != "me/1/bb" {
		t.Fatalf("lease held by %q", h)
	}
}
