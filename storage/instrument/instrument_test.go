package instrument_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/instrument"
	"github.com/pgsidecar/pgsidecar/storage/posix"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
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
	m, err := instrument.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return instrument.New(newPosix(t), m, "repo1", "posix")
	}, storagetest.Options{})
}

func TestCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := instrument.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := instrument.New(newPosix(t), m, "repo2", "posix")
	if err := s.Put(t.Context(), "a", bytes.NewReader(make([]byte, 1234))); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(t.Context(), "a", storage.Range{Offset: 34})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatal(err)
	}
	want := `
# HELP pgsidecar_storage_bytes_total Bytes uploaded (put) and downloaded (get).
# TYPE pgsidecar_storage_bytes_total counter
pgsidecar_storage_bytes_total{backend="posix",direction="down",repo="repo2"} 1200
pgsidecar_storage_bytes_total{backend="posix",direction="up",repo="repo2"} 1234
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pgsidecar_storage_bytes_total"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op, result string
		want       float64
	}{{"put", "ok", 1}, {"get", "ok", 1}, {"stat", "not_found", 1}, {"stat", "ok", 0}, {"delete", "error", 0}} {
		got, err := counter(reg, tc.op, tc.result)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("operations{op=%s,result=%s} = %v, want %v", tc.op, tc.result, got, tc.want)
		}
	}
}

func counter(reg *prometheus.Registry, op, result string) (float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "pgsidecar_storage_operations_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == op && labels["result"] == result {
				return mt.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, nil
}

func TestDoubleRegistrationFails(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := instrument.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := instrument.NewMetrics(reg); err == nil {
		t.Fatal("registering the storage metrics twice in one registry succeeded")
	}
}
