package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pgsidecar/pgsidecar/repo"
)

func TestCopyAllReportsProgress(t *testing.T) {
	t.Parallel()
	pgdata := t.TempDir()
	c, _ := testCopier(t, pgdata, repo.CompressNone, "")
	sizes := map[string]int{"a": 100000, "b": 3, "c": 7000, "d": 0, "ref": 500}
	m := &repo.Manifest{Label: "20260101-000000F", Options: repo.ManifestOptions{CompressType: repo.CompressNone}}
	var want uint64
	for name, n := range sizes {
		if err := os.WriteFile(filepath.Join(pgdata, name), bytes.Repeat([]byte("x"), n), 0o600); err != nil {
			t.Fatal(err)
		}
		f := repo.ManifestFile{Name: "pg_data/" + name, Size: uint64(n), Timestamp: 5}
		if name == "ref" {
			f.Reference = "20250101-000000F" // referenced, not copied: not counted
		} else {
			want += uint64(n)
		}
		m.Files = append(m.Files, f)
	}
	var mu sync.Mutex
	var calls int
	var maxDone, lastTotal uint64
	c.progress = func(done, total uint64) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if done > total {
			t.Errorf("progress %d of %d", done, total)
		}
		maxDone, lastTotal = max(maxDone, done), total
	}
	if err := c.copyAll(t.Context(), m, nil, 2); err != nil {
		t.Fatal(err)
	}
	if lastTotal != want || maxDone != want {
		t.Fatalf("progress ended at %d of %d, want %d of %d", maxDone, lastTotal, want, want)
	}
	if calls != len(sizes) { // once at the start, once per copied file
		t.Fatalf("%d progress calls, want %d", calls, len(sizes))
	}
}
