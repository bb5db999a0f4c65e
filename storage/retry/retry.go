// Package retry is a storage.Store decorator that retries transient
// failures with exponential backoff and jitter. It never retries a
// permanent error (storage.Permanent: not found, exists, permission,
// invalid, or a cancelled caller), never starts an attempt once ctx is done,
// and replays a Put only when it can do so exactly: the source is an
// io.Seeker, or the failed attempt had not consumed a byte of it. A Get
// whose body breaks mid-stream resumes with a ranged Get from the byte where
// it stopped; a List that breaks resumes after the last key delivered.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Config sets the retry policy. Zero values take the defaults.
type Config struct {
	// Attempts is the total number of attempts, first included. Default 5.
	Attempts int
	// Initial is the first backoff. Default 100ms.
	Initial time.Duration
	// Max caps each backoff. Default 10s.
	Max time.Duration
	// OnRetry, when set, is called before each new attempt with the failed
	// attempt's number (1-based) and error; it must not block.
	OnRetry func(op, key string, attempt int, err error)
}

// Store is the decorator.
type Store struct {
	inner storage.Store
	cfg   Config
}

var _ storage.Store = (*Store)(nil)

// New wraps inner.
func New(inner storage.Store, cfg Config) *Store {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Initial <= 0 {
		cfg.Initial = 100 * time.Millisecond
	}
	if cfg.Max <= 0 {
		cfg.Max = 10 * time.Second
	}
	return &Store{inner: inner, cfg: cfg}
}

// Unwrap returns the inner store.
func (s *Store) Unwrap() storage.Store { return s.inner }

// errNoReplay marks a Put failure that cannot be retried because its
// source was partly consumed and cannot be rewound.
var errNoReplay = errors.New("source consumed and not rewindable")

// do runs fn until it succeeds, fails permanently, or attempts run out.
// fn returns a non-nil error to retry; wrapping errNoReplay stops at once.
func (s *Store) do(ctx context.Context, op, key string, fn func() error) error {
	backoff := s.cfg.Initial
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn()
		if err == nil || storage.Permanent(err) || errors.Is(err, errNoReplay) || attempt >= s.cfg.Attempts {
			if err != nil && attempt > 1 {
				return fmt.Errorf("%s %s after %d attempts: %w", op, key, attempt, err)
			}
			return err
		}
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(op, key, attempt, err)
		}
		// Full jitter: sleep a random time up to the backoff.
		sleep := time.Duration(rand.Int64N(int64(backoff)) + 1)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.Max)
	}
}

// countingReader counts the bytes taken from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, "put", key, r, s.inner.Put)
}

// PutIfAbsent implements storage.Store. When an attempt fails after the
// object may have been created (the reply was lost), a retry reports
// ErrExist; callers that must tell the two apart compare the content.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, "put-if-absent", key, r, s.inner.PutIfAbsent)
}

func (s *Store) put(ctx context.Context, op, key string, r io.Reader, fn func(context.Context, string, io.Reader) error) error {
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	first := true
	return s.do(ctx, op, key, func() error {
		if !first && seeker != nil {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("rewind source of %s: %w: %w", key, errNoReplay, err)
			}
		}
		first = false
		cr := &countingReader{r: r}
		err := fn(ctx, key, cr)
		if err != nil && seeker == nil && cr.n > 0 {
			return fmt.Errorf("%w (%w)", err, errNoReplay)
		}
		return err
	})
}

// Get implements storage.Store. The returned reader resumes after a
// transient read error by opening the rest of the range; repository objects
// are written once, so the rest belongs to the same content.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, "get", key, func() error {
		var err error
		rc, err = s.inner.Get(ctx, key, rng)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resumingReader{ctx: ctx, s: s, key: key, rng: rng, rc: rc}, nil
}

type resumingReader struct {
	ctx     context.Context //nolint:containedctx // lives as long as the reader
	s       *Store
	key     string
	rng     storage.Range
	rc      io.ReadCloser
	read    int64
	resumes int
	pending error // a read error held back while its bytes were delivered
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		var n int
		err := r.pending
		r.pending = nil
		if err == nil {
			n, err = r.rc.Read(p)
			r.read += int64(n)
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if n > 0 {
			r.pending = err
			return n, nil
		}
		if storage.Permanent(err) || r.resumes+1 >= r.s.cfg.Attempts || r.ctx.Err() != nil {
			return 0, err
		}
		r.resumes++
		if r.s.cfg.OnRetry != nil {
			r.s.cfg.OnRetry("get-resume", r.key, r.resumes, err)
		}
		rest := storage.Range{Offset: r.rng.Offset + r.read}
		if r.rng.Length > 0 {
			rest.Length = r.rng.Length - r.read
		}
		_ = r.rc.Close()
		var rc io.ReadCloser
		if oerr := r.s.do(r.ctx, "get", r.key, func() error {
			var err error
			rc, err = r.s.inner.Get(r.ctx, r.key, rest)
			return err
		}); oerr != nil {
			r.rc = eofCloser{}
			return 0, errors.Join(err, oerr)
		}
		r.rc = rc
	}
}

func (r *resumingReader) Close() error { return r.rc.Close() }

type eofCloser struct{}

func (eofCloser) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
func (eofCloser) Close() error             { return nil }

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	var oi storage.ObjectInfo
	err := s.do(ctx, "stat", key, func() error {
		var err error
		oi, err = s.inner.Stat(ctx, key)
		return err
	})
	return oi, err
}

// callbackError carries an error returned by the caller's List callback,
// which is never retried.
type callbackError struct{ err error }

func (c callbackError) Error() string { return c.err.Error() }

// List implements storage.Store. A retried listing skips the keys already
// delivered, so fn sees each key once and in order.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	var last string
	delivered := false
	err := s.do(ctx, "list", prefix, func() error {
		err := s.inner.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			if delivered && oi.Key <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				return callbackError{err}
			}
			last, delivered = oi.Key, true
			return nil
		})
		var ce callbackError
		if errors.As(err, &ce) {
			return fmt.Errorf("%w: %w", errNoReplay, ce)
		}
		return err
	})
	var ce callbackError
	if errors.As(err, &ce) {
		return ce.err
	}
	return err
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, "delete", key, func() error { return s.inner.Delete(ctx, key) })
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.inner.Close() }
