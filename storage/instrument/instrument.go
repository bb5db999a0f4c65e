// Package instrument is a storage.Store decorator that records Prometheus
// metrics for every call: operations by result, latency, and bytes moved.
// The registry is injected; nothing is registered globally. Cancellations by
// the caller are counted as "canceled", not as failures.
package instrument

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Operation names used as the "op" label.
var ops = []string{"put", "put_if_absent", "get", "stat", "list", "delete"}

// Metrics holds the collectors shared by every instrumented store of a
// process; create it once per registry.
type Metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgsidecar_storage_operations_total",
			Help: "Storage calls by repository, backend, operation and result (ok, not_found, exists, error, canceled).",
		}, []string{"repo", "backend", "op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pgsidecar_storage_operation_duration_seconds",
			Help:    "Duration of storage calls; for get, until the body is closed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"repo", "backend", "op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgsidecar_storage_bytes_total",
			Help: "Bytes uploaded (put) and downloaded (get).",
		}, []string{"repo", "backend", "direction"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Store is the decorator.
type Store struct {
	inner   storage.Store
	m       *Metrics
	repo    string
	backend string
}

var _ storage.Store = (*Store)(nil)

// New wraps inner; repo ("repo1") and backend ("s3") label its series,
// which are created at once so that dashboards see zeros, not gaps.
func New(inner storage.Store, m *Metrics, repo, backend string) *Store {
	for _, op := range ops {
		for _, res := range []string{"ok", "error"} {
			m.calls.WithLabelValues(repo, backend, op, res)
		}
		m.duration.WithLabelValues(repo, backend, op)
	}
	m.bytes.WithLabelValues(repo, backend, "up")
	m.bytes.WithLabelValues(repo, backend, "down")
	return &Store{inner: inner, m: m, repo: repo, backend: backend}
}

// Unwrap returns the inner store.
func (s *Store) Unwrap() storage.Store { return s.inner }

func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, storage.ErrNotExist):
		return "not_found"
	case errors.Is(err, storage.ErrExist):
		return "exists"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

func (s *Store) observe(op string, start time.Time, err error) {
	s.m.calls.WithLabelValues(s.repo, s.backend, op, resultOf(err)).Inc()
	s.m.duration.WithLabelValues(s.repo, s.backend, op).Observe(time.Since(start).Seconds())
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, "put", key, r, s.inner.Put)
}

// PutIfAbsent implements storage.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return s.put(ctx, "put_if_absent", key, r, s.inner.PutIfAbsent)
}

func (s *Store) put(ctx context.Context, op, key string, r io.Reader, fn func(context.Context, string, io.Reader) error) error {
	start := time.Now()
	cr := &countReader{r: r}
	err := fn(ctx, key, cr)
	s.observe(op, start, err)
	if err == nil {
		s.m.bytes.WithLabelValues(s.repo, s.backend, "up").Add(float64(cr.n))
	}
	return err
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := s.inner.Get(ctx, key, rng)
	if err != nil {
		s.observe("get", start, err)
		return nil, err
	}
	return &body{s: s, rc: rc, start: start}, nil
}

type body struct {
	s     *Store
	rc    io.ReadCloser
	start time.Time
	n     int64
	err   error
	done  bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	if !b.done {
		b.done = true
		b.s.observe("get", b.start, b.err)
		b.s.m.bytes.WithLabelValues(b.s.repo, b.s.backend, "down").Add(float64(b.n))
	}
	return err
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	start := time.Now()
	oi, err := s.inner.Stat(ctx, key)
	s.observe("stat", start, err)
	return oi, err
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	start := time.Now()
	err := s.inner.List(ctx, prefix, fn)
	s.observe("list", start, err)
	return err
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.inner.Delete(ctx, key)
	s.observe("delete", start, err)
	return err
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.inner.Close() }
