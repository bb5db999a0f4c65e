package scheduler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/scheduler/schedtest"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNewRejectsBadEntries(t *testing.T) {
	t.Parallel()
	_, err := New([]Entry{
		{Repo: 1, Type: Full, Spec: "0 1 * * 0"},
		{Repo: 2, Type: Diff, Spec: "61 * * * *"},
		{Repo: 3, Type: "weekly", Spec: "0 1 * * *"},
		{Repo: 4, Type: Incr, Spec: "0 1 * *"},
		{Repo: 1, Type: Incr, Spec: "0 1 * * * *"},
	}, nil, SystemClock{})
	if err == nil {
		t.Fatal("bad schedules accepted")
	}
	for _, want := range []string{"repo2 diff", "repo3 weekly", "repo4 incr", "repo1 incr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "repo1 full") {
		t.Errorf("a good schedule reported: %v", err)
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	s, err := New([]Entry{
		{Repo: 1, Type: Full, Spec: "0 1 * * 0"},   // Sundays 01:00
		{Repo: 1, Type: Diff, Spec: "0 1 * * 1-6"}, // other days 01:00
		{Repo: 2, Type: Incr, Spec: "@hourly"},
		{Repo: 3, Type: Full, Spec: "0 1 * * *"},
	}, nil, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	// 2026-11-29 is a Sunday.
	at, due := s.Next(utc("2026-11-29 00:30"))
	if !at.Equal(utc("2026-11-29 01:00")) {
		t.Fatalf("next at %v", at)
	}
	got := []string{}
	for _, e := range due {
		got = append(got, e.String())
	}
	if strings.Join(got, ",") != `repo1 full "0 1 * * 0",repo2 incr "@hourly",repo3 full "0 1 * * *"` {
		t.Fatalf("due %v", got)
	}
	at, due = s.Next(utc("2026-11-29 01:00"))
	if !at.Equal(utc("2026-11-29 02:00")) || len(due) != 1 || due[0].Repo != 2 {
		t.Fatalf("after 01:00: %v %v", at, due)
	}
	at, due = s.Next(utc("2026-11-29 23:59"))
	if !at.Equal(utc("2026-11-30 00:00")) || len(due) != 1 {
		t.Fatalf("at midnight: %v %v", at, due)
	}
}

func TestSpecsReadInTheGivenZone(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("UTC+2", 2*3600)
	s, err := New([]Entry{{Repo: 1, Type: Full, Spec: "0 1 * * *"}}, loc, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	at, _ := s.Next(utc("2026-11-29 00:00"))
	if !at.Equal(utc("2026-11-29 23:00")) {
		t.Fatalf("01:00 at UTC+2 is %v, want 23:00 UTC", at.UTC())
	}
}

func TestMissedRunsOnce(t *testing.T) {
	t.Parallel()
	s, err := New([]Entry{
		{Repo: 1, Type: Full, Spec: "0 1 * * 0"},
		{Repo: 1, Type: Incr, Spec: "@hourly"},
		{Repo: 2, Type: Full, Spec: "0 1 * * *"},
		{Repo: 2, Type: Diff, Spec: "0 */4 * * *"},
	}, nil, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	now := utc("2026-11-29 12:30")
	last := map[string]time.Time{
		"repo1 full": utc("2026-11-22 01:00"), // missed today's 01:00 run
		"repo1 incr": utc("2026-11-29 12:00"), // ran this hour: nothing missed
		"repo2 full": {},                      // never backed up
		"repo2 diff": {},                      // never: not due, the full covers it
	}
	missed := s.Missed(now, func(e Entry) time.Time { return last[e.String()[:10]] })
	var got []string
	for _, e := range missed {
		got = append(got, e.String()[:10])
	}
	if strings.Join(got, ",") != "repo1 full,repo2 full" {
		t.Fatalf("missed %v", got)
	}
}

func TestRunSubmitsMissedThenTicks(t *testing.T) {
	t.Parallel()
	clock := schedtest.NewClock(utc("2026-11-29 00:30"))
	s, err := New([]Entry{
		{Repo: 1, Type: Full, Spec: "0 1 * * *"},
		{Repo: 1, Type: Diff, Spec: "0 1 * * *"},
		{Repo: 2, Type: Incr, Spec: "30 1 * * *"},
	}, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Entry, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	lastRun := func(e Entry) time.Time {
		if e.Repo == 1 && e.Type == Full {
			return utc("2026-11-27 01:00") // missed yesterday's
		}
		return utc("2026-11-29 00:00")
	}
	go func() { done <- s.Run(ctx, lastRun, func(_ context.Context, e Entry) { got <- e }) }()
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			select {
			case e := <-got:
				if e.String()[:10] != w {
					t.Fatalf("submitted %v, want %s", e, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("nothing submitted, want %s", w)
			}
		}
	}
	expect("repo1 full") // the missed run, once
	clock.WaitPending(t, 1)
	clock.Advance(utc("2026-11-29 01:00"))
	expect("repo1 full", "repo1 diff") // both due the same minute
	clock.WaitPending(t, 1)
	clock.Advance(utc("2026-11-29 01:30"))
	expect("repo2 incr")
	select {
	case e := <-got:
		t.Fatalf("unexpected submission %v", e)
	default:
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v", err)
	}
}

// TestCronTZPrefix: a spec may name its own time zone, as Kubernetes CronJobs
// did before spec.timeZone (CRON_TZ=...); daylight saving time is followed.
func TestCronTZPrefix(t *testing.T) {
	t.Parallel()
	s, err := New([]Entry{{Repo: 1, Type: Full, Spec: "CRON_TZ=America/New_York 0 1 * * *"}}, nil, SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	if at, _ := s.Next(utc("2026-11-29 00:00")); !at.Equal(utc("2026-11-29 06:00")) { // EST, UTC-5
		t.Errorf("01:00 in New York on 2026-11-29 is %v, want 06:00 UTC", at.UTC())
	}
	if at, _ := s.Next(utc("2026-07-01 00:00")); !at.Equal(utc("2026-07-01 05:00")) { // EDT, UTC-4
		t.Errorf("01:00 in New York on 2026-07-01 is %v, want 05:00 UTC", at.UTC())
	}
	if _, err := New([]Entry{{Repo: 1, Type: Full, Spec: "CRON_TZ=Mars/Olympus 0 1 * * *"}}, nil, SystemClock{}); err == nil ||
		!strings.Contains(err.Error(), "Mars/Olympus") {
		t.Errorf("unknown zone: error %v, want one naming it", err)
	}
}
