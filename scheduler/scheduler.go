// Package scheduler decides when scheduled backups run: PGO's per-repository
// schedules (full, differential, incremental) as 5-field cron expressions,
// the way Kubernetes CronJobs read them, in UTC unless told otherwise (a spec
// may start with CRON_TZ=<zone>, e.g. "CRON_TZ=Europe/Paris 0 1 * * *"). It
// never reads the wall clock itself: time comes from an injected Clock. It
// only decides when; running the backups one at a time is the queue's job.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/robfig/cron/v3"
)

// Backup types a schedule starts, with pgBackRest's names.
const (
	Full = "full"
	Diff = "diff"
	Incr = "incr"
)

// Entry is one schedule: a backup of Type into repository Repo on Spec.
type Entry struct {
	Repo int
	Type string
	Spec string
}

// String names the entry as PGO's configuration does: "repo1 full '0 1 * * 0'".
func (e Entry) String() string { return fmt.Sprintf("repo%d %s %q", e.Repo, e.Type, e.Spec) }

// Clock is the scheduler's source of time.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type entry struct {
	Entry
	sched cron.Schedule
}

// Scheduler holds parsed schedules.
type Scheduler struct {
	entries []entry
	loc     *time.Location
	clock   Clock
}

// parser accepts the 5 standard fields and the @hourly/@daily/... descriptors
// that Kubernetes CronJobs accept.
func parser() cron.Parser {
	return cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// New parses every entry; it reports every bad one at once, naming it. loc
// is the time zone the specs are read in (nil: UTC, as Kubernetes does).
func New(entries []Entry, loc *time.Location, clock Clock) (*Scheduler, error) {
	if loc == nil {
		loc = time.UTC
	}
	s := &Scheduler{loc: loc, clock: clock}
	var errs []error
	p := parser()
	for _, e := range entries {
		if e.Type != Full && e.Type != Diff && e.Type != Incr {
			errs = append(errs, fmt.Errorf("schedule %s: backup type must be full, diff or incr", e))
			continue
		}
		sched, err := p.Parse(e.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule %s: %w", e, err))
			continue
		}
		s.entries = append(s.entries, entry{Entry: e, sched: sched})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Next returns the first time after t at which a schedule fires, and the
// entries that fire then (in configuration order). With no entries it
// returns the zero time.
func (s *Scheduler) Next(t time.Time) (time.Time, []Entry) {
	var at time.Time
	var due []Entry
	for _, e := range s.entries {
		n := e.sched.Next(t.In(s.loc))
		switch {
		case n.IsZero():
		case at.IsZero() || n.Before(at):
			at, due = n, []Entry{e.Entry}
		case n.Equal(at):
			due = append(due, e.Entry)
		}
	}
	return at, due
}

// Missed returns the entries that should have fired after their last run
// and before now: each once, however many ticks were missed. lastRun gives
// the start of the entry's last backup; the zero time means none was ever
// taken, which makes only a full schedule due (a cluster needs a first full
// backup; a differential or incremental one would become full anyway).
func (s *Scheduler) Missed(now time.Time, lastRun func(Entry) time.Time) []Entry {
	var out []Entry
	for _, e := range s.entries {
		last := lastRun(e.Entry)
		if last.IsZero() {
			if e.Type == Full {
				out = append(out, e.Entry)
			}
			continue
		}
		if n := e.sched.Next(last.In(s.loc)); !n.IsZero() && !n.After(now) {
			out = append(out, e.Entry)
		}
	}
	return out
}

// Run submits the missed entries once, then every entry each time it fires,
// until ctx ends. submit must not block for long: it hands the entry to the
// backup queue, which runs backups one at a time.
func (s *Scheduler) Run(ctx context.Context, lastRun func(Entry) time.Time, submit func(context.Context, Entry)) error {
	now := s.clock.Now()
	for _, e := range s.Missed(now, lastRun) {
		submit(ctx, e)
	}
	for {
		at, due := s.Next(now)
		if at.IsZero() {
			<-ctx.Done()
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.clock.After(at.Sub(now)):
		}
		now = s.clock.Now()
		if now.Before(at) {
			continue // woke early: wait again for the same tick
		}
		for _, e := range slices.Clone(due) {
			submit(ctx, e)
		}
		now = at
	}
}
