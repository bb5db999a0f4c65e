package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/archive"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
)

// TestDaemonArchiveGetPrefetch asks the daemon, through archive-get as
// restore_command runs it, for segments 1 to 6 of a repository holding
// them: the first is read from the repository, the daemon prefetches the
// following ones into <spool-path>/archive/db/in (within
// archive-get-queue-max), and answers the next requests from there. The
// end of the archive is exit code 1.
func TestDaemonArchiveGetPrefetch(t *testing.T) {
	t.Parallel()
	const queue = 3 * (16 << 20) // three segments
	f := newDaemonFixture(t, fmt.Sprintf("archive-get-queue-max=%d\n", queue))
	cfg := f.cfg(t, "run")
	var mu sync.Mutex
	gets := map[string]int{} // WAL segment -> Gets of its objects
	fs := &fault.Store{BeforeGet: func(_ context.Context, key string, _ storage.Range) error {
		base := filepath.Base(key)
		if len(base) > 24 && base[24] == '-' {
			mu.Lock()
			gets[base[:24]]++
			mu.Unlock()
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	r := startDaemon(t, cfg, faultRepos(t, cfg, fs), Deps{Registry: reg}, testDaemonOptions())
	if r.d.prefetch == nil {
		t.Fatal("archive-async=y: the prefetch is off")
	}
	in := filepath.Join(f.spool, "archive", "db", "in")
	if r.d.prefetch.Dir() != in {
		t.Fatalf("prefetch area %s, want %s", r.d.prefetch.Dir(), in)
	}
	const n = 6
	segs := make([]string, n)
	contents := map[string][]byte{}
	for i := range n {
		segs[i] = fmt.Sprintf("0000000100000000000000%02X", i+1)
		contents[segs[i]] = f.addWAL(t, segs[i], uint64(50+i), true)
	}
	waitFor(t, 120*time.Second, "the look-ahead pushes", func() bool {
		for _, s := range segs {
			if len(f.archived(t, s)) != 1 {
				return false
			}
		}
		return true
	})
	// Recovery restores into pg_wal; the segments there are PostgreSQL's.
	for _, s := range segs {
		_ = os.Remove(filepath.Join(f.wal, s))
		_ = os.Remove(filepath.Join(f.status, s+".ready"))
	}
	inArea := func() []string {
		entries, _ := os.ReadDir(in)
		var out []string
		for _, e := range entries {
			if _, err := archive.ParseName(e.Name()); err == nil {
				out = append(out, e.Name()) // not the temporary files of fetches
			}
		}
		return out
	}
	count := func(s string) int {
		mu.Lock()
		defer mu.Unlock()
		return gets[s]
	}
	dest := filepath.Join(f.wal, "RECOVERYXLOG")
	for i, s := range segs {
		if i > 0 {
			want := min(3, n-i)
			waitFor(t, 60*time.Second, "the prefetch before "+s, func() bool { return len(inArea()) >= want })
			if got := inArea(); len(got) != want || got[0] != s {
				t.Fatalf("prefetch area before the request for %s: %v, want %d segments from it", s, got, want)
			}
		}
		before := count(s)
		if err := Run(t.Context(), f.cfg(t, "archive-get", s, dest), Deps{Log: zap.NewNop()}, io.Discard); err != nil {
			t.Fatalf("archive-get %s: %v", s, err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, contents[s]) {
			t.Fatalf("%s: restored content differs", s)
		}
		if i > 0 && count(s) != before {
			t.Fatalf("%s was read from the repository at the request, not from the prefetch area", s)
		}
		if c := count(s); c != 1 {
			t.Errorf("%s read %d times from the repository, want 1", s, c)
		}
	}
	if v := metricValue(t, reg, "pgsidecar_archive_get_total", map[string]string{"result": "prefetched"}); v != n-1 {
		t.Errorf("prefetched answers counted %v, want %d", v, n-1)
	}
	end := fmt.Sprintf("0000000100000000000000%02X", n+1)
	err := Run(t.Context(), f.cfg(t, "archive-get", end, dest), Deps{Log: zap.NewNop()}, io.Discard)
	if codeOf(err) != codeNotFound || !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("end of the archive: %v (code %d), want code 1", err, codeOf(err))
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(in); len(left) != 0 {
		t.Errorf("the prefetch area holds %v after the daemon stopped", left)
	}
}

// TestDaemonPrefetchOff checks that without archive-async the daemon
// answers archive-get as before, from the repositories, and keeps no
// prefetch area.
func TestDaemonPrefetchOff(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	f.ini = strings.Replace(f.ini, "archive-async=y\n", "", 1)
	cfg := f.cfg(t, "run")
	if cfg.ArchiveAsync {
		t.Fatal("archive-async still set")
	}
	opts := testDaemonOptions()
	opts.socket = filepath.Join(f.spool, "off.sock") // spool-path needs archive-async=y
	r := startDaemon(t, cfg, openTestRepos(t, cfg), Deps{}, opts)
	if r.d.prefetch != nil {
		t.Fatal("prefetch on without archive-async")
	}
	seg := "000000010000000000000001"
	content := f.addWAL(t, seg, 1, true)
	if _, err := r.d.get(t.Context(), seg, filepath.Join(f.wal, "RECOVERYXLOG")); !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("get before the push: %v, want not found", err)
	}
	waitFor(t, 60*time.Second, "the look-ahead push", func() bool { return len(f.archived(t, seg)) == 1 })
	res, err := r.d.get(t.Context(), seg, filepath.Join(f.wal, "RECOVERYXLOG"))
	if err != nil || res.Prefetched {
		t.Fatalf("get: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(f.wal, "RECOVERYXLOG")); !bytes.Equal(got, content) {
		t.Fatal("restored content differs")
	}
}

// TestDaemonPrefetchUnusable checks that a prefetch area that cannot be
// made leaves the daemon running without prefetch.
func TestDaemonPrefetchUnusable(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	if err := os.WriteFile(filepath.Join(f.spool, "archive"), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg(t, "run")
	r := startDaemon(t, cfg, openTestRepos(t, cfg), Deps{}, testDaemonOptions())
	if r.d.prefetch != nil {
		t.Fatal("prefetch on over a file")
	}
	if _, err := r.d.get(t.Context(), "000000010000000000000001", filepath.Join(f.wal, "RECOVERYXLOG")); !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("get: %v, want not found", err)
	}
}
