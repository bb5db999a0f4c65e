package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// metricsShutdown bounds the wait for requests in progress when the
// metrics server stops.
const metricsShutdown = 5 * time.Second

// metricsServer is the daemon's HTTP endpoint on metrics-address:
// GET /metrics (Prometheus text format, from the daemon's registry) and
// GET /healthz (200 while the daemon runs, 503 once it drains).
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
	log *zap.Logger
}

// gathererOf returns the registry the metrics are read from: d.Gatherer,
// or d.Registry when it is a registry that gathers too.
func gathererOf(d Deps) prometheus.Gatherer {
	if d.Gatherer != nil {
		return d.Gatherer
	}
	if g, ok := d.Registry.(prometheus.Gatherer); ok {
		return g
	}
	return nil
}

// listenMetrics listens on addr (metrics-address); nil when addr is empty.
// A bad or unusable address is an error naming the option, with code 32.
func listenMetrics(addr string, g prometheus.Gatherer, healthy func() bool, log *zap.Logger) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, withCode(codeOptionInvalid, fmt.Errorf("option 'metrics-address' is '%s', not host:port (e.g. 127.0.0.1:9187): %w", addr, err))
	}
	if g == nil {
		return nil, withCode(codeOptionInvalid, errors.New("option 'metrics-address' is set but the daemon has no metrics registry"))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, withCode(codeOptionInvalid, fmt.Errorf("option 'metrics-address' (%s): %w", addr, err))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !healthy() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "draining\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log)}
	log.Info("metrics server listening", zap.String("metrics-address", ln.Addr().String()))
	return &metricsServer{ln: ln, srv: srv, log: log}, nil
}

// addr returns the address the server listens on.
func (m *metricsServer) addr() string { return m.ln.Addr().String() }

// close releases the listener of a server that never ran.
func (m *metricsServer) close() {
	if m != nil {
		_ = m.ln.Close()
	}
}

// Run serves until ctx is done (the daemon drains), then shuts the server
// down, waiting at most metricsShutdown for requests in progress. A server
// that fails ends the daemon.
func (m *metricsServer) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- m.srv.Serve(m.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("metrics server on %s: %w", m.addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metricsShutdown)
	defer cancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		m.log.Warn("metrics server: requests cut at shutdown", zap.Error(err))
		_ = m.srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server on %s: %w", m.addr(), err)
	}
	return nil
}
