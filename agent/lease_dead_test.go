package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgsidecar/pgsidecar/scheduler/schedtest"
	"github.com/pgsidecar/pgsidecar/storage"
)

// leaseChild starts `sleep 600` and returns it; it is killed and reaped at
// the end of the test.
func leaseChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// leaseProcState returns the state letter of process pid in /proc.
func leaseProcState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndexByte(b, ')')
	return b[i+2]
}

func TestCurrentProcess(t *testing.T) {
	t.Parallel()
	p := CurrentProcess("pod-0")
	if p.Host != "pod-0" || p.PID != os.Getpid() || len(p.Boot) != 36 || !strings.HasPrefix(p.PIDNamespace, "pid:[") || !p.usable() {
		t.Fatalf("CurrentProcess = %+v", p)
	}
}

// TestLeaseOfDeadHolderTakenOver writes the lease of a holder with the
// process identity of the given case and checks whether an agent of this
// process (same host, boot and pid namespace) takes it over at once, though
// it expires only in an hour.
func TestLeaseOfDeadHolderTakenOver(t *testing.T) {
	t.Parallel()
	me := CurrentProcess("pod-0")
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	running := leaseChild(t)
	zombie := leaseChild(t)
	if err := zombie.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Killed and not reaped (leaseChild's cleanup waits for it).
	qWaitUntil(t, "the zombie", func() bool { return leaseProcState(t, zombie.Process.Pid) == 'Z' })
	with := func(change func(*LeaseProcess)) LeaseProcess {
		p := me
		change(&p)
		return p
	}
	for _, c := range []struct {
		name   string
		holder LeaseProcess
		taken  bool
	}{
		{"exited", with(func(p *LeaseProcess) { p.PID = exited.Process.Pid }), true},
		{"zombie", with(func(p *LeaseProcess) { p.PID = zombie.Process.Pid }), true},
		// A previous process that had our pid (a restarted container's pid 1).
		{"our-pid", me, true},
		{"running", with(func(p *LeaseProcess) { p.PID = running.Process.Pid }), false},
		{"other-host", with(func(p *LeaseProcess) { p.PID, p.Host = exited.Process.Pid, "pod-1" }), false},
		{"other-boot", with(func(p *LeaseProcess) { p.PID, p.Boot = exited.Process.Pid, "00000000-0000-0000-0000-000000000000" }), false},
		{"other-pid-namespace", with(func(p *LeaseProcess) { p.PID, p.PIDNamespace = exited.Process.Pid, "pid:[1]" }), false},
		{"no-identity", LeaseProcess{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := qRepo(t, 1, t.TempDir()).Store
			clock := schedtest.NewClock(qTime("2026-11-29 12:00"))
			b, err := json.Marshal(leaseContent{Holder: "pod-0/1/aa", Acquired: qTime("2026-11-29 11:59"),
				Expires: qTime("2026-11-29 13:00"), Process: c.holder})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put(t.Context(), "backup/db/"+LeaseFile, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
			l := NewLease(s, "db", LeaseConfig{Holder: "pod-0/2/bb", TTL: time.Minute, Retry: time.Hour, Clock: clock,
				Process: me, Log: zaptest.NewLogger(t)})
			ok, cur, err := l.tryAcquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.taken {
				t.Fatalf("lease of %+v taken: %v, want %v (held by %+v)", c.holder, ok, c.taken, cur)
			}
			want := "pod-0/1/aa"
			if c.taken {
				want = "pod-0/2/bb"
			}
			if h := qLeaseHolder(t, s); h != want {
				t.Fatalf("lease held by %q, want %q", h, want)
			}
			if !c.taken {
				return
			}
			// The new lease names this process, for the next agent's check.
			raw, err := storage.ReadAll(t.Context(), s, l.Key())
			if err != nil {
				t.Fatal(err)
			}
			var got leaseContent
			if err := json.Unmarshal(raw, &got); err != nil || got.Process != me {
				t.Fatalf("new lease %s (%v): process is not %+v", raw, err, me)
			}
		})
	}
}

// TestLeaseWithoutProcessWaitsForExpiry checks that an agent without a
// process identity (LeaseConfig.Process zero) never judges a holder dead.
func TestLeaseWithoutProcessWaitsForExpiry(t *testing.T) {
	t.Parallel()
	me := CurrentProcess("pod-0")
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	s := qRepo(t, 1, t.TempDir()).Store
	holder := me
	holder.PID = exited.Process.Pid
	b, err := json.Marshal(leaseContent{Holder: "pod-0/1/aa", Acquired: qTime("2026-11-29 11:59"),
		Expires: qTime("2026-11-29 13:00"), Process: holder})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "backup/db/"+LeaseFile, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	l := NewLease(s, "db", LeaseConfig{Holder: "pod-0/2/bb", Clock: schedtest.NewClock(qTime("2026-11-29 12:00")), Log: zaptest.NewLogger(t)})
	if ok, _, err := l.tryAcquire(t.Context()); ok || err != nil {
		t.Fatalf("took an unexpired lease without a process identity: %v, %v", ok, err)
	}
}
