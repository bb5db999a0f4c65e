package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
	"github.com/pgsidecar/pgsidecar/storage/posix"
	"github.com/pgsidecar/pgsidecar/storage/retry"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

var errFlaky = errors.New("connection reset")

func newPosix(t *testing.T) storage.Store {
	t.Helper()
	s, err := posix.New(posix.Config{Root: filepath.Join(t.TempDir(), "repo")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var fast = retry.Config{Attempts: 4, Initial: time.Millisecond, Max: 5 * time.Millisecond}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return retry.New(newPosix(t), fast) }, storagetest.Options{})
}

// TestConformanceWithFlakyInner runs the suite with every first call of each
// kind failing, so that each operation is proven to survive a retry.
func TestConformanceWithFlakyInner(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		var calls atomic.Int64
		flaky := func() error {
			if calls.Add(1)%3 == 1 {
				return errFlaky
			}
			return nil
		}
		f := &fault.Store{
			Inner:        newPosix(t),
			BeforeStat:   func(context.Context, string) error { return flaky() },
			BeforeDelete: func(context.Context, string) error { return flaky() },
			BeforeList:   func(context.Context, string) error { return flaky() },
			BeforeGet:    func(context.Context, string, storage.Range) error { return flaky() },
			BeforePut: func(_ context.Context, _ string, r io.Reader) (io.Reader, error) {
				return r, flaky() // fails before reading: safe to replay
			},
		}
		return retry.New(f, retry.Config{Attempts: 10, Initial: time.Millisecond, Max: 2 * time.Millisecond})
	}, storagetest.Options{})
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	for _, sentinel := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrPermission, storage.ErrInvalid, context.Canceled} {
		t.Run(sentinel.Error(), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			f := &fault.Store{Inner: newPosix(t), BeforeStat: func(context.Context, string) error {
				calls.Add(1)
				return fmt.Errorf("backend says: %w", sentinel)
			}}
			_, err := retry.New(f, fast).Stat(t.Context(), "x")
			if !errors.Is(err, sentinel) {
				t.Fatalf("error %v, want %v", err, sentinel)
			}
			if calls.Load() != 1 {
				t.Fatalf("%d attempts for a permanent error, want 1", calls.Load())
			}
		})
	}
}

func TestGivesUpAfterAttempts(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var retries []int
	f := &fault.Store{Inner: newPosix(t), BeforeDelete: func(context.Context, string) error {
		calls.Add(1)
		return errFlaky
	}}
	cfg := fast
	cfg.OnRetry = func(op, key string, attempt int, err error) { retries = append(retries, attempt) }
	err := retry.New(f, cfg).Delete(t.Context(), "x")
	if !errors.Is(err, errFlaky) || calls.Load() != 4 {
		t.Fatalf("error %v after %d calls, want errFlaky after 4", err, calls.Load())
	}
	if !slices.Equal(retries, []int{1, 2, 3}) {
		t.Fatalf("OnRetry attempts %v, want [1 2 3]", retries)
	}
}

func TestNoAttemptAfterCancel(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	f := &fault.Store{Inner: newPosix(t), BeforeDelete: func(context.Context, string) error {
		calls.Add(1)
		cancel()
		return errFlaky
	}}
	err := retry.New(f, retry.Config{Attempts: 5, Initial: time.Hour}).Delete(ctx, "x")
	if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
		t.Fatalf("error %v after %d calls, want Canceled after 1", err, calls.Load())
	}
}

// consumeThenFail reads part of the source and fails, like a connection
// reset in the middle of an upload.
func consumeThenFail(_ context.Context, _ string, r io.Reader) (io.Reader, error) {
	if _, err := io.CopyN(io.Discard, r, 3); err != nil {
		return nil, err
	}
	return nil, errFlaky
}

func TestPutReplaysSeekableSource(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	inner := newPosix(t)
	f := &fault.Store{Inner: inner, BeforePut: func(ctx context.Context, key string, r io.Reader) (io.Reader, error) {
		if calls.Add(1) == 1 {
			return consumeThenFail(ctx, key, r)
		}
		return r, nil
	}}
	src := bytes.NewReader([]byte("0123456789"))
	if _, err := src.Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := retry.New(f, fast).Put(t.Context(), "k", src); err != nil {
		t.Fatalf("Put: %v", err)
	}
	rc, err := inner.Get(t.Context(), "k", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if string(got) != "23456789" {
		t.Fatalf("stored %q, want the source from its starting offset", got)
	}
}

func TestPutDoesNotReplayConsumedStream(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	f := &fault.Store{Inner: newPosix(t), BeforePut: func(ctx context.Context, key string, r io.Reader) (io.Reader, error) {
		calls.Add(1)
		return consumeThenFail(ctx, key, r)
	}}
	err := retry.New(f, fast).Put(t.Context(), "k", io.MultiReader(bytes.NewReader([]byte("0123456789"))))
	if !errors.Is(err, errFlaky) || calls.Load() != 1 {
		t.Fatalf("error %v after %d calls, want errFlaky after exactly 1", err, calls.Load())
	}
}

// breakingBody fails once after delivering `after` bytes.
type breakingBody struct {
	rc    io.ReadCloser
	after int
	done  int
	broke *atomic.Bool
}

func (b *breakingBody) Read(p []byte) (int, error) {
	if !b.broke.Load() && b.done >= b.after {
		b.broke.Store(true)
		return 0, errFlaky
	}
	if !b.broke.Load() && b.done+len(p) > b.after {
		p = p[:b.after-b.done]
	}
	n, err := b.rc.Read(p)
	b.done += n
	return n, err
}

func (b *breakingBody) Close() error { return b.rc.Close() }

func TestGetResumesMidStream(t *testing.T) {
	t.Parallel()
	inner := newPosix(t)
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := inner.Put(t.Context(), "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, rng := range []storage.Range{{}, {Offset: 1000, Length: 50_000}} {
		var broke atomic.Bool
		var opened []storage.Range
		f := &fault.Store{
			Inner:     inner,
			BeforeGet: func(_ context.Context, _ string, r storage.Range) error { opened = append(opened, r); return nil },
			WrapGet:   func(rc io.ReadCloser) io.ReadCloser { return &breakingBody{rc: rc, after: 30_000, broke: &broke} },
		}
		rc, err := retry.New(f, fast).Get(t.Context(), "big", rng)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("range %+v: %v", rng, err)
		}
		end := len(data)
		if rng.Length > 0 {
			end = int(rng.Offset + rng.Length)
		}
		if !bytes.Equal(got, data[rng.Offset:end]) {
			t.Fatalf("range %+v: resumed read returned %d bytes that differ", rng, len(got))
		}
		want := storage.Range{Offset: rng.Offset + 30_000}
		if rng.Length > 0 {
			want.Length = rng.Length - 30_000
		}
		if len(opened) != 2 || opened[1] != want {
			t.Fatalf("range %+v: opened %v, want a resume at %+v", rng, opened, want)
		}
	}
}

func TestListResumesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	inner := newPosix(t)
	for i := range 6 {
		if err := inner.Put(t.Context(), fmt.Sprintf("l/%d", i), bytes.NewReader(nil)); err != nil {
			t.Fatal(err)
		}
	}
	// The inner listing breaks after three entries the first time.
	var calls atomic.Int64
	breaking := &listBreaker{Store: inner, calls: &calls}
	var got []string
	err := retry.New(breaking, fast).List(t.Context(), "l/", func(oi storage.ObjectInfo) error {
		got = append(got, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"l/0", "l/1", "l/2", "l/3", "l/4", "l/5"}; !slices.Equal(got, want) {
		t.Fatalf("List delivered %v, want %v", got, want)
	}
}

type listBreaker struct {
	storage.Store
	calls *atomic.Int64
}

func (l *listBreaker) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	first := l.calls.Add(1) == 1
	n := 0
	return l.Store.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if first && n == 3 {
			return errFlaky
		}
		n++
		return fn(oi)
	})
}
