package integration

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeTCPAddr returns a loopback address with a port free a moment ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// checkDaemonRestoreCommand runs archive-get as restore_command does, into
// pg_wal/RECOVERYXLOG of the daemon's cluster, for consecutive archived
// segments: the daemon answers the first from the repositories and the
// others from its prefetch area (spool/archive/db/in), each identical to
// what archive-get without the daemon restores.
func checkDaemonRestoreCommand(t *testing.T, conf, dataDir, spool string, segs []string) {
	t.Helper()
	dest := filepath.Join(dataDir, "pg_wal", "RECOVERYXLOG")
	defer os.Remove(dest)
	area := filepath.Join(spool, "archive", "db", "in")
	for i, s := range segs {
		if i > 0 {
			waitUntil(t, 60*time.Second, s+" in the prefetch area", func() bool { return fileExists(filepath.Join(area, s)) })
		}
		res := pgsidecarTry(t, conf, "--stanza=db", "archive-get", s, dest)
		if res.Code != 0 {
			t.Fatalf("archive-get %s through the daemon: %s", s, res)
		}
		if !strings.Contains(res.Stderr, "daemon answered") || strings.Contains(res.Stderr, "(prefetched)") != (i > 0) {
			t.Errorf("archive-get %s: prefetched=%v expected; stderr:\n%s", s, i > 0, res.Stderr)
		}
		alone := filepath.Join(filepath.Dir(conf), "alone-"+s) // outside pg_wal: no daemon
		pgsidecarRun(t, conf, "--stanza=db", "archive-get", s, alone)
		a, errA := os.ReadFile(dest)
		b, errB := os.ReadFile(alone)
		if errA != nil || errB != nil || len(a) != 16<<20 || string(a) != string(b) {
			t.Fatalf("segment %s: the daemon's copy differs from archive-get's (%v, %v, %d bytes)", s, errA, errB, len(a))
		}
	}
}

// checkDaemonMetrics reads the daemon's /metrics and /healthz.
func checkDaemonMetrics(t *testing.T, addr string) {
	t.Helper()
	get := func(path string) (int, string) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		"pgsidecar_archive_ready_files ",
		`pgsidecar_archive_repo_lag_seconds{repo="repo1"}`,
		`pgsidecar_archive_repo_lag_seconds{repo="repo2"}`,
		`pgsidecar_archive_push_total{repo="repo2",result="written"}`,
		`pgsidecar_archive_get_total{result="prefetched"}`,
		`pgsidecar_storage_operations_total{`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
