package timeout_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
	"github.com/pgsidecar/pgsidecar/storage/posix"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
	"github.com/pgsidecar/pgsidecar/storage/timeout"
)

func newPosix(t *testing.T) storage.Store {
	t.Helper()
	s, err := posix.New(posix.Config{Root: filepath.Join(t.TempDir(), "repo")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return timeout.New(newPosix(t), timeout.Config{Timeout: 10 * time.Second, Stall: 10 * time.Second})
	}, storagetest.Options{})
}

// blockUntilDone waits for ctx, as a hung connection does.
func blockUntilDone(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestStalledPutIsCancelled(t *testing.T) {
	t.Parallel()
	f := &fault.Store{Inner: newPosix(t), BeforePut: func(ctx context.Context, _ string, r io.Reader) (io.Reader, error) {
		// Read a little, then hang like an upload whose socket stopped.
		if _, err := io.CopyN(io.Discard, r, 10); err != nil {
			return nil, err
		}
		return nil, blockUntilDone(ctx)
	}}
	s := timeout.New(f, timeout.Config{Timeout: time.Second, Stall: 200 * time.Millisecond})
	start := time.Now()
	err := s.Put(t.Context(), "wal/1", bytes.NewReader(make([]byte, 100)))
	if !errors.Is(err, timeout.ErrStalled) {
		t.Fatalf("Put error = %v, want ErrStalled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stall detected after %v, want about 200ms", d)
	}
	if storage.Permanent(err) {
		t.Fatalf("a stall must be retryable, Permanent(%v) = true", err)
	}
}

// slowReader takes longer than the stall period for every read.
type slowReader struct {
	data  *bytes.Reader
	delay time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.delay)
	return s.data.Read(p[:min(len(p), 4)])
}

func TestSlowSourceIsNotAStall(t *testing.T) {
	t.Parallel()
	s := timeout.New(newPosix(t), timeout.Config{Timeout: time.Second, Stall: 50 * time.Millisecond})
	data := []byte("0123456789abcdef")
	if err := s.Put(t.Context(), "slow", &slowReader{data: bytes.NewReader(data), delay: 120 * time.Millisecond}); err != nil {
		t.Fatalf("Put from a slow source: %v", err)
	}
}

func TestStalledGetBodyIsCancelled(t *testing.T) {
	t.Parallel()
	inner := newPosix(t)
	if err := inner.Put(t.Context(), "obj", bytes.NewReader([]byte("hello"))); err != nil {
		t.Fatal(err)
	}
	f := &fault.Store{Inner: inner, WrapGet: func(rc io.ReadCloser) io.ReadCloser { return &hangingBody{rc: rc} }}
	s := timeout.New(f, timeout.Config{Timeout: time.Second, Stall: 100 * time.Millisecond})
	rc, err := s.Get(t.Context(), "obj", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The caller may hold the reader as long as it likes between reads.
	time.Sleep(300 * time.Millisecond)
	_, err = io.ReadAll(rc)
	if !errors.Is(err, timeout.ErrStalled) {
		t.Fatalf("read error = %v, want ErrStalled", err)
	}
}

// hangingBody returns one byte, then blocks until the call's context ends;
// it learns about the context through the inner reader failing when closed.
type hangingBody struct {
	rc   io.ReadCloser
	sent bool
}

func (h *hangingBody) Read(p []byte) (int, error) {
	if !h.sent {
		h.sent = true
		return h.rc.Read(p[:1])
	}
	// The posix reader checks the call context on every Read.
	for {
		if _, err := h.rc.Read(p[:0]); err != nil {
			return 0, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *hangingBody) Close() error { return h.rc.Close() }

func TestHungStatTimesOut(t *testing.T) {
	t.Parallel()
	f := &fault.Store{Inner: newPosix(t), BeforeStat: func(ctx context.Context, _ string) error { return blockUntilDone(ctx) }}
	s := timeout.New(f, timeout.Config{Timeout: 100 * time.Millisecond, Stall: time.Minute})
	_, err := s.Stat(t.Context(), "x")
	if !errors.Is(err, timeout.ErrStalled) {
		t.Fatalf("Stat error = %v, want ErrStalled", err)
	}
}

func TestSlowListCallbackIsNotATimeout(t *testing.T) {
	t.Parallel()
	inner := newPosix(t)
	for _, k := range []string{"a/1", "a/2", "a/3"} {
		if err := inner.Put(t.Context(), k, bytes.NewReader(nil)); err != nil {
			t.Fatal(err)
		}
	}
	s := timeout.New(inner, timeout.Config{Timeout: 50 * time.Millisecond, Stall: time.Minute})
	n := 0
	err := s.List(t.Context(), "a/", func(storage.ObjectInfo) error {
		time.Sleep(120 * time.Millisecond)
		n++
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("List with a slow callback = %v after %d entries, want nil after 3", err, n)
	}
}

func TestCallerCancellationIsNotAStall(t *testing.T) {
	t.Parallel()
	f := &fault.Store{Inner: newPosix(t), BeforeDelete: func(ctx context.Context, _ string) error { return blockUntilDone(ctx) }}
	s := timeout.New(f, timeout.Config{Timeout: time.Minute, Stall: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.Delete(ctx, "x")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, timeout.ErrStalled) {
		t.Fatalf("Delete error = %v, want the caller's deadline, not a stall", err)
	}
}
