package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
)

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, url string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestDaemonMetricsEndpoint starts the daemon with metrics-address and
// reads /metrics (the backlog, a repository's lag, the storage metrics of
// the instrumented repository) and /healthz; the server is gone once the
// daemon stopped.
func TestDaemonMetricsEndpoint(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "metrics-address=127.0.0.1:0\n")
	cfg := f.cfg(t, "run")
	if cfg.MetricsAddress != "127.0.0.1:0" {
		t.Fatalf("metrics-address = %q", cfg.MetricsAddress)
	}
	reg := prometheus.NewRegistry()
	repos, err := OpenRepos(t.Context(), cfg, Deps{Log: zap.NewNop(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = CloseRepos(repos) })
	r := startDaemon(t, cfg, repos, Deps{Registry: reg, Gatherer: reg}, testDaemonOptions())
	if r.d.metrics == nil {
		t.Fatal("no metrics server")
	}
	base := "http://" + r.d.metrics.addr()
	seg := "000000010000000000000001"
	f.addWAL(t, seg, 1, true)
	waitFor(t, 60*time.Second, "the look-ahead push", func() bool {
		return metricValue(t, reg, "pgsidecar_archive_push_total", map[string]string{"repo": "repo1", "result": "written"}) == 1 &&
			metricValue(t, reg, "pgsidecar_archive_repo_lag_segments", map[string]string{"repo": "repo1"}) == 0
	})

	code, body, err := httpGet(t, base+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", code, err)
	}
	for _, want := range []string{
		"pgsidecar_archive_ready_files 1",
		`pgsidecar_archive_repo_lag_seconds{repo="repo1"}`,
		`pgsidecar_archive_repo_lag_segments{repo="repo1"} 0`,
		`pgsidecar_archive_push_total{repo="repo1",result="written"} 1`,
		`pgsidecar_storage_operations_total{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body, err := httpGet(t, base+"/healthz"); err != nil || code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q, %v", code, body, err)
	}
	if code, _, err := httpGet(t, base+"/nothing"); err != nil || code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, %v", code, err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := httpGet(t, base+"/healthz"); err == nil {
		t.Error("the metrics server still answers after the daemon stopped")
	}
}

// TestDaemonMetricsAddressInvalid checks that a metrics-address the daemon
// cannot listen on stops it at start with an error naming the option, and
// that it leaves no socket behind.
func TestDaemonMetricsAddressInvalid(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	for _, tc := range []struct{ name, addr, want string }{
		{"not host:port", "metrics.example", "option 'metrics-address' is 'metrics.example', not host:port"},
		{"bad port", "127.0.0.1:99999", "option 'metrics-address' (127.0.0.1:99999)"},
		{"in use", busy.Addr().String(), "option 'metrics-address' (" + busy.Addr().String() + "): listen tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDaemonFixture(t, "")
			cfg := f.cfg(t, "--metrics-address="+tc.addr, "run")
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := runDaemon(ctx, cfg, openTestRepos(t, cfg), Deps{Log: zap.NewNop(), Registry: prometheus.NewRegistry()}, testDaemonOptions())
			if err == nil || !strings.Contains(err.Error(), tc.want) || codeOf(err) != codeOptionInvalid {
				t.Fatalf("runDaemon: %v (code %d), want %q with code %d", err, codeOf(err), tc.want, codeOptionInvalid)
			}
			if _, err := os.Stat(filepath.Join(f.spool, "pgsidecar-db.sock")); !os.IsNotExist(err) {
				t.Errorf("socket left behind: %v", err)
			}
		})
	}
}

// TestDaemonLagAfterRestart checks that the per-repository lag in seconds
// is the age of the oldest pending .ready file, so that a restarted
// daemon does not report a lag of zero while segments are still pending.
func TestDaemonLagAfterRestart(t *testing.T) {
	t.Parallel()
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "run")
	seg := "000000010000000000000005"
	f.addWAL(t, seg, 5, true)
	marked := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(f.status, seg+".ready"), marked, marked); err != nil {
		t.Fatal(err)
	}
	down := &fault.Store{BeforePut: func(context.Context, string, io.Reader) (io.Reader, error) {
		return nil, storage.ErrPermission // the repository refuses: the segment stays pending
	}}
	repos := faultRepos(t, cfg, down)
	lag := map[string]string{"repo": "repo1"}
	for run := 1; run <= 2; run++ {
		reg := prometheus.NewRegistry()
		r := startDaemon(t, cfg, repos, Deps{Registry: reg}, testDaemonOptions())
		waitFor(t, 30*time.Second, "the lag metrics", func() bool {
			return metricValue(t, reg, "pgsidecar_archive_repo_lag_segments", lag) == 1
		})
		if v := metricValue(t, reg, "pgsidecar_archive_repo_lag_seconds", lag); v < 3600 || v > 3600+120 {
			t.Errorf("daemon %d: lag %v s, want the age of the .ready file, about 3600", run, v)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
}
