// Package timeout is a storage.Store decorator that bounds every call: the
// calls without a stream (Stat, Delete, opening a Get) get a deadline, and
// the streaming ones (Put, the body of a Get, a long List) are cancelled when
// they stop making progress, so that a hung connection is detected within
// one stall period and never blocks the archiver or a backup for ever.
package timeout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// ErrStalled reports that a streaming call made no progress for the stall
// period and was cancelled. It is transient: a retry may succeed.
var ErrStalled = errors.New("storage call stalled")

// Config sets the limits. Zero values take the defaults.
type Config struct {
	// Timeout bounds Stat, Delete, the opening of a Get and the wait for each
	// List entry (pgBackRest's io-timeout plays this part). Default 60s.
	Timeout time.Duration
	// Stall is how long a Put may go without the backend taking more data,
	// or a Get body read may block, before the call is cancelled. Default 60s.
	Stall time.Duration
}

// Store is the decorator.
type Store struct {
	inner   storage.Store
	timeout time.Duration
	stall   time.Duration
}

var _ storage.Store = (*Store)(nil)

// New wraps inner.
func New(inner storage.Store, cfg Config) *Store {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 60 * time.Second
	}
	return &Store{inner: inner, timeout: cfg.Timeout, stall: cfg.Stall}
}

// Unwrap returns the inner store.
func (s *Store) Unwrap() storage.Store { return s.inner }

// watchdog cancels a context when the time spent outside "excused" sections
// (reading from the caller's source, running the caller's callback) since the
// last progress exceeds the limit.
type watchdog struct {
	mu      sync.Mutex
	last    time.Time
	excused int
	limit   time.Duration
	cancel  context.CancelCauseFunc
	stop    chan struct{}
	once    sync.Once
}

// startWatchdog starts watching with limit; tick is how often it looks.
func startWatchdog(ctx context.Context, limit, tick time.Duration, what string) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{last: time.Now(), limit: limit, cancel: cancel, stop: make(chan struct{})}
	go w.run(what, max(tick, time.Millisecond))
	return ctx, w
}

func (w *watchdog) run(what string, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.mu.Lock()
			limit := w.limit
			stalled := w.excused == 0 && now.Sub(w.last) > limit
			w.mu.Unlock()
			if stalled {
				w.cancel(fmt.Errorf("%s: no progress for %s: %w", what, limit.Round(time.Millisecond), ErrStalled))
				return
			}
		}
	}
}

// excuse marks the start of time that does not count as a stall.
func (w *watchdog) excuse() {
	w.mu.Lock()
	w.excused++
	w.mu.Unlock()
}

// progress ends an excused section (if excused) and restarts the clock.
func (w *watchdog) progress(excused bool) {
	w.mu.Lock()
	if excused {
		w.excused--
	}
	w.last = time.Now()
	w.mu.Unlock()
}

func (w *watchdog) done() {
	w.once.Do(func() {
		close(w.stop)
		w.cancel(nil)
	})
}

// result replaces a cancellation error caused by the watchdog with its
// cause. The inner error is kept as text only: its context.Canceled would
// make a transient stall look permanent to errors.Is.
func result(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrStalled) && !errors.Is(err, ErrStalled) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// tick is how often a watchdog looks: often enough for the tighter limit.
func (s *Store) tick() time.Duration { return min(s.timeout, s.stall) / 8 }

// sourceReader excuses the time the caller's source takes to produce data.
type sourceReader struct {
	r io.Reader
	w *watchdog
}

func (s sourceReader) Read(p []byte) (int, error) {
	s.w.excuse()
	n, err := s.r.Read(p)
	s.w.progress(true)
	return n, err
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, key, r, s.inner.Put)
}

// PutIfAbsent implements storage.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, key, r, s.inner.PutIfAbsent)
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, fn func(context.Context, string, io.Reader) error) error {
	ctx, w := startWatchdog(ctx, s.stall, s.tick(), "put "+key)
	defer w.done()
	return result(ctx, fn(ctx, key, sourceReader{r: r, w: w}))
}

// Get implements storage.Store. Opening is bounded by Timeout; afterwards
// each Read of the body may block at most Stall. The context stays alive
// until the reader is closed.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	ctx, w := startWatchdog(ctx, s.timeout, s.tick(), "get "+key)
	rc, err := s.inner.Get(ctx, key, rng)
	if err != nil {
		w.done()
		return nil, result(ctx, err)
	}
	// From here the stall limit applies, and only while a Read blocks.
	w.mu.Lock()
	w.limit = s.stall
	w.last = time.Now()
	w.excused++ // the caller holds the reader between reads
	w.mu.Unlock()
	return &bodyReader{ctx: ctx, rc: rc, w: w}, nil
}

type bodyReader struct {
	ctx context.Context //nolint:containedctx // lives as long as the reader
	rc  io.ReadCloser
	w   *watchdog
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.w.progress(true) // leave the caller's time, start the clock
	n, err := b.rc.Read(p)
	b.w.excuse()
	b.w.progress(false)
	if err != nil && err != io.EOF {
		err = result(b.ctx, err)
	}
	return n, err
}

func (b *bodyReader) Close() error {
	err := b.rc.Close()
	b.w.done()
	return err
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	ctx, w := startWatchdog(ctx, s.timeout, s.tick(), "stat "+key)
	defer w.done()
	oi, err := s.inner.Stat(ctx, key)
	return oi, result(ctx, err)
}

// List implements storage.Store. Timeout bounds the wait for each entry,
// not the whole listing; time spent in fn does not count.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	ctx, w := startWatchdog(ctx, s.timeout, s.tick(), "list "+prefix)
	defer w.done()
	err := s.inner.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		w.excuse()
		defer w.progress(true)
		return fn(oi)
	})
	return result(ctx, err)
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, w := startWatchdog(ctx, s.timeout, s.tick(), "delete "+key)
	defer w.done()
	return result(ctx, s.inner.Delete(ctx, key))
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.inner.Close() }
