package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgsidecar/pgsidecar/archive"
	"github.com/pgsidecar/pgsidecar/config"
)

// spoolPath returns spool-path, or pgBackRest's default when it is not set
// (pgBackRest only resolves it with archive-async=y).
func spoolPath(cfg *config.Config) string {
	if o, ok := cfg.Option("spool-path"); ok && o.Value != "" {
		return o.Value
	}
	return defaultSpoolPath
}

// prefetchDir is where the daemon keeps the segments it prefetches for
// restore_command: pgBackRest's queue of asynchronous archive-get,
// <spool-path>/archive/<stanza>/in.
func prefetchDir(cfg *config.Config) string {
	return filepath.Join(spoolPath(cfg), "archive", cfg.Stanza, "in")
}

// newDaemonPrefetcher builds the daemon's archive-get prefetch, or nil when
// it is off. As pgBackRest's asynchronous archive-get, it needs
// archive-async=y; archive-get-queue-max bounds it (nothing is prefetched
// when it is smaller than one segment) and process-max segments are
// fetched at once. An error (the directory cannot be made or emptied)
// leaves the daemon without prefetch.
func newDaemonPrefetcher(cfg *config.Config, d *daemon) (*archive.Prefetcher, error) {
	if !cfg.ArchiveAsync || cfg.ArchiveGetQueueMax <= 0 {
		return nil, nil
	}
	p, err := archive.NewPrefetcher(archive.PrefetchConfig{
		Dir:          prefetchDir(cfg),
		QueueMax:     cfg.ArchiveGetQueueMax,
		Workers:      max(cfg.ProcessMax, 1),
		MissingRetry: d.opts.missingRetry,
		Sources:      d.getSources,
		Log:          d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("archive-get prefetch in spool-path %s: %w", spoolPath(cfg), err)
	}
	return p, nil
}

// getSources opens the current repositories for archive-get. release ends
// the use of the configuration generation they belong to.
func (d *daemon) getSources(ctx context.Context) ([]archive.Source, func(), error) {
	d.mu.Lock()
	g := d.gen
	g.users.Add(1)
	d.mu.Unlock()
	c, err := readCluster(g.cfg)
	if err != nil {
		g.users.Done()
		return nil, nil, err
	}
	sources := archive.OpenGet(ctx, stanzas(g.cfg, g.repos), archive.Cluster{Version: c.version, SystemID: c.control.SystemID})
	return sources, g.users.Done, nil
}

// get restores name to dest, as archive-get does: from the prefetch area
// when the prefetch holds it, otherwise over the warm repositories.
func (d *daemon) get(ctx context.Context, name, dest string) (archive.GetResult, error) {
	var res archive.GetResult
	var err error
	if d.prefetch != nil {
		res, err = d.prefetch.Get(ctx, name, dest, func(ctx context.Context) (archive.GetResult, error) {
			return d.getDirect(ctx, name, dest)
		})
	} else {
		res, err = d.getDirect(ctx, name, dest)
	}
	d.gm.record(res, err)
	return res, err
}

// getDirect restores name to dest from the repositories.
func (d *daemon) getDirect(ctx context.Context, name, dest string) (archive.GetResult, error) {
	d.mu.Lock()
	g := d.gen
	g.users.Add(1)
	d.mu.Unlock()
	defer g.users.Done()
	c, err := readCluster(g.cfg)
	if err != nil {
		return archive.GetResult{}, err
	}
	sources := archive.OpenGet(ctx, stanzas(g.cfg, g.repos), archive.Cluster{Version: c.version, SystemID: c.control.SystemID})
	res, err := archive.Get(ctx, sources, name, dest, d.log)
	if errors.Is(err, archive.ErrNotFound) {
		return res, withCode(codeNotFound, err)
	}
	return res, err
}

// getMetrics are the daemon's archive-get metrics.
type getMetrics struct {
	gets *prometheus.CounterVec
}

// newGetMetrics registers the archive-get metrics with reg (nil: none); p,
// when not nil, is the prefetch whose queue size is exported.
func newGetMetrics(reg prometheus.Registerer, p *archive.Prefetcher) (*getMetrics, error) {
	m := &getMetrics{gets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgsidecar_archive_get_total",
		Help: "WAL files asked for by restore_command, by result (prefetched, fetched, missing, failed)."}, []string{"result"})}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.gets}
	if p != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgsidecar_archive_get_prefetch_bytes",
			Help: "Bytes of prefetched WAL segments waiting in the archive-get queue (at most archive-get-queue-max)."},
			func() float64 { return float64(p.Bytes()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register archive-get metrics: %w", err)
		}
	}
	return m, nil
}

// record counts one answered request.
func (m *getMetrics) record(res archive.GetResult, err error) {
	result := "fetched"
	switch {
	case errors.Is(err, archive.ErrNotFound):
		result = "missing"
	case err != nil:
		result = "failed"
	case res.Prefetched:
		result = "prefetched"
	}
	m.gets.WithLabelValues(result).Inc()
}
