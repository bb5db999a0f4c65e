package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
)

// prefetchSeg is the name of segment i of timeline 1 (1 MiB segments).
func prefetchSeg(i int) string { return fmt.Sprintf("0000000100000000%08X", i) }

// getCounter counts the Gets of a store by key.
type getCounter struct {
	mu   sync.Mutex
	keys map[string]int
}

func (c *getCounter) wrap(s storage.Store) storage.Store {
	return &fault.Store{Inner: s, BeforeGet: func(_ context.Context, key string, _ storage.Range) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.keys[key]++
		return nil
	}}
}

// segment returns how many times objects of WAL segment wal were read.
func (c *getCounter) segment(wal string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.keys {
		if strings.Contains(k, "/"+wal+"-") {
			n += v
		}
	}
	return n
}

// prefetchFixture is an encrypted posix repository holding segments 1 to n
// (1 MiB, lz4), pushed by the Pusher, and a running Prefetcher over it.
type prefetchFixture struct {
	r        *testRepo
	gets     *getCounter
	p        *Prefetcher
	contents map[string][]byte
	dest     string
	maxBytes atomic.Int64 // the most bytes seen in the prefetch area
	released atomic.Int32 // source sets released
}

func newPrefetchFixture(t *testing.T, n int, queueMax int64, workers int, before func(*prefetchFixture)) *prefetchFixture {
	t.Helper()
	f := &prefetchFixture{gets: &getCounter{keys: map[string]int{}}, contents: map[string][]byte{}}
	f.r = newTestRepo(t, "repo1", true, testCluster, f.gets.wrap)
	pusher := newPusher(t, lz4Opts(), f.r)
	src := t.TempDir()
	for i := 1; i <= n; i++ {
		name := prefetchSeg(i)
		f.contents[name] = smallSegment(uint64(100+i), testSysID, 0.3)
		if _, err := pusher.Push(t.Context(), writeFile(t, src, name, f.contents[name])); err != nil {
			t.Fatal(err)
		}
	}
	if before != nil {
		before(f)
	}
	wal := t.TempDir()
	f.dest = filepath.Join(wal, "RECOVERYXLOG")
	dir := filepath.Join(t.TempDir(), "archive", testStanza, "in")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, prefetchSeg(2), []byte("left by an earlier run")) // must not be served
	p, err := NewPrefetcher(PrefetchConfig{
		Dir: dir, QueueMax: queueMax, Workers: workers, MissingRetry: time.Hour,
		Sources: func(ctx context.Context) ([]Source, func(), error) {
			return OpenGet(ctx, repositories(f.r), testCluster), func() { f.released.Add(1) }, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	watched := make(chan struct{})
	go func() { // the prefetch area's size, sampled
		defer close(watched)
		for ctx.Err() == nil {
			f.maxBytes.Store(max(f.maxBytes.Load(), dirBytes(dir)))
			time.Sleep(200 * time.Microsecond)
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		<-watched
		if left := dirBytes(dir); left != 0 {
			t.Errorf("the prefetch area holds %d bytes after Run", left)
		}
	})
	return f
}

// dirBytes adds up the sizes of the files in dir, temporary ones included.
func dirBytes(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// get asks the Prefetcher for wal, with a direct get over fresh sources.
func (f *prefetchFixture) get(t *testing.T, wal string) (GetResult, error) {
	t.Helper()
	return f.p.Get(t.Context(), wal, f.dest, func(ctx context.Context) (GetResult, error) {
		return Get(ctx, OpenGet(ctx, repositories(f.r), testCluster), wal, f.dest, nil)
	})
}

// ready lists the segments present in the prefetch area.
func (f *prefetchFixture) ready() []string {
	entries, _ := os.ReadDir(f.p.Dir())
	var out []string
	for _, e := range entries {
		if _, err := ParseName(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPrefetchServesFollowingSegments asks for segments 1 to 10 in order:
// the first comes from the repository, the others from the prefetch area,
// each object read once, never more than the queue bound on disk; the end
// of the archive is not-found, and is looked for again at the next request.
func TestPrefetchServesFollowingSegments(t *testing.T) {
	t.Parallel()
	const n, queue = 10, 3 << 20 // three 1 MiB segments
	f := newPrefetchFixture(t, n, queue, 2, nil)
	for i := 1; i <= n; i++ {
		name := prefetchSeg(i)
		before := f.gets.segment(name)
		if i > 1 {
			// The queue fills up to its bound before PostgreSQL asks.
			want := min(queue>>20, n-i+1)
			waitUntil(t, fmt.Sprintf("%d segments from %s prefetched", want, name), func() bool { return len(f.ready()) >= want })
			if got := f.ready(); len(got) != want || got[0] != name {
				t.Fatalf("prefetch area before the request for %s: %v", name, got)
			}
			before = f.gets.segment(name)
		}
		res, err := f.get(t, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, _ := os.ReadFile(f.dest); !bytes.Equal(got, f.contents[name]) {
			t.Fatalf("%s: restored content differs", name)
		}
		if res.Prefetched != (i > 1) || res.Repo != "repo1" || res.Size != 1<<20 {
			t.Fatalf("%s: %+v, want prefetched=%v from repo1", name, res, i > 1)
		}
		if i > 1 && f.gets.segment(name) != before {
			t.Fatalf("%s: read from the repository at the request although prefetched", name)
		}
		if got := f.gets.segment(name); got != 1 {
			t.Errorf("%s read %d times from the repository, want 1", name, got)
		}
	}
	if m := f.maxBytes.Load(); m > queue {
		t.Errorf("the prefetch area held %d bytes, more than archive-get-queue-max %d", m, queue)
	}
	// The end of the archive: not found, and remembered by the prefetch
	// only (a request always looks again, for a standby polls).
	end := prefetchSeg(n + 1)
	waitUntil(t, "the prefetch to find the end of the archive", func() bool {
		f.p.mu.Lock()
		defer f.p.mu.Unlock()
		e := f.p.files[end]
		return e != nil && e.state == stateMissing
	})
	if _, err := f.get(t, end); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s: %v, want ErrNotFound", end, err)
	}
	for i := n + 2; i <= n+4; i++ {
		if got := f.gets.segment(prefetchSeg(i)); got != 0 {
			t.Errorf("%s fetched past the end of the archive", prefetchSeg(i))
		}
	}
	data := smallSegment(200, testSysID, 0.3)
	pushTo(t, end, data, compress.Lz4, f.r)
	res, err := f.get(t, end)
	if err != nil || res.Prefetched {
		t.Fatalf("%s after it was archived: %+v, %v", end, res, err)
	}
	if got, _ := os.ReadFile(f.dest); !bytes.Equal(got, data) {
		t.Fatal("new segment: restored content differs")
	}
}

// TestPrefetchWindow checks that a request drops what is before it (and a
// leftover of an earlier run is never served), that a queue smaller than
// a segment prefetches nothing, and that other files are read directly.
func TestPrefetchWindow(t *testing.T) {
	t.Parallel()
	t.Run("moves", func(t *testing.T) {
		t.Parallel()
		f := newPrefetchFixture(t, 9, 4<<20, 4, nil)
		if _, err := f.get(t, prefetchSeg(1)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "segments 2 to 5", func() bool { return len(f.ready()) == 4 })
		res, err := f.get(t, prefetchSeg(4))
		if err != nil || !res.Prefetched {
			t.Fatalf("segment 4: %+v, %v", res, err)
		}
		want := []string{prefetchSeg(5), prefetchSeg(6), prefetchSeg(7), prefetchSeg(8)}
		waitUntil(t, "segments 5 to 8", func() bool { return fmt.Sprint(f.ready()) == fmt.Sprint(want) })
		// Another timeline: the window follows, the rest goes.
		if _, err := f.get(t, "000000020000000000000009"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("timeline 2: %v", err)
		}
		waitUntil(t, "the area emptied", func() bool { return len(f.ready()) == 0 })
	})
	t.Run("queue below one segment", func(t *testing.T) {
		t.Parallel()
		f := newPrefetchFixture(t, 3, 1<<19, 2, nil)
		for i := 1; i <= 3; i++ {
			res, err := f.get(t, prefetchSeg(i))
			if err != nil || res.Prefetched {
				t.Fatalf("segment %d: %+v, %v", i, res, err)
			}
		}
		if m := f.maxBytes.Load(); m > 1<<19 {
			t.Errorf("the prefetch area held %d bytes", m)
		}
	})
	t.Run("history files are not prefetched", func(t *testing.T) {
		t.Parallel()
		f := newPrefetchFixture(t, 2, 4<<20, 2, nil)
		pushTo(t, "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), compress.Lz4, f.r)
		res, err := f.get(t, "00000002.history")
		if err != nil || res.Prefetched {
			t.Fatalf("history: %+v, %v", res, err)
		}
		time.Sleep(50 * time.Millisecond)
		if got := f.gets.segment(prefetchSeg(1)); got != 0 {
			t.Errorf("a history file started a prefetch")
		}
	})
}

// TestPrefetchCorruptNotServed corrupts the only copy of segment 3: the
// prefetch does not keep it, the request for it fails with code 42 and
// leaves the destination alone.
func TestPrefetchCorruptNotServed(t *testing.T) {
	t.Parallel()
	f := newPrefetchFixture(t, 5, 4<<20, 2, func(f *prefetchFixture) {
		corrupt(t, segmentPath(t, f.r, prefetchSeg(3)))
	})
	for i := 1; i <= 2; i++ {
		if _, err := f.get(t, prefetchSeg(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the prefetch of segment 3", func() bool {
		f.p.mu.Lock()
		defer f.p.mu.Unlock()
		e := f.p.files[prefetchSeg(3)]
		return e != nil && e.state == stateFailed
	})
	for _, s := range f.ready() {
		if s == prefetchSeg(3) {
			t.Fatal("a corrupt segment is in the prefetch area")
		}
	}
	_, err := f.get(t, prefetchSeg(3))
	if codeOf(err) != CodeFileRead {
		t.Fatalf("segment 3: %v (code %d), want code %d", err, codeOf(err), CodeFileRead)
	}
	if got, _ := os.ReadFile(f.dest); !bytes.Equal(got, f.contents[prefetchSeg(2)]) {
		t.Fatal("the destination was changed by a failed get")
	}
}

func TestSegmentArithmetic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int64
		next string
	}{
		{"0000000100000000000000FF", 16 << 20, "000000010000000100000000"},
		{"000000010000000000000FFF", 1 << 20, "000000010000000100000000"},
		{"00000003000000AB00000001", 1 << 30, "00000003000000AB00000002"},
		{"00000003000000AB00000003", 1 << 30, "00000003000000AC00000000"},
	} {
		tli, no, ok := segmentNumber(tc.name, tc.size)
		if !ok {
			t.Fatalf("%s: not parsed", tc.name)
		}
		if got := segmentName(tli, no+1, tc.size); got != tc.next {
			t.Errorf("after %s (%d bytes): %s, want %s", tc.name, tc.size, got, tc.next)
		}
	}
	if _, _, ok := segmentNumber("000000010000000000000100", 16<<20); ok {
		t.Error("segment 0x100 of 16 MiB segments accepted")
	}
}

// TestMoveIntoCopy checks the copy used across file systems: the SHA-1 is
// checked and the destination written whole.
func TestMoveIntoCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := writeFile(t, dir, "seg", []byte("content"))
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if err := copyInto(src, dest, "0000000000000000000000000000000000000000"); err == nil {
		t.Fatal("a wrong SHA-1 was accepted")
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed copy left the destination")
	}
	if err := copyInto(src, dest, "040f06fd774092478d450774f5ba30c5da78acc8"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "content" {
		t.Fatalf("copied %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
