package restore

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/pgsidecar/pgsidecar/repo"
)

func TestPipeCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, pipeChunkSize - 1, pipeChunkSize, pipeChunkSize + 1, 3*pipeChunkSize + 12345, 11 * pipeChunkSize} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		var out bytes.Buffer
		h := sha1.New()
		// A reader returning short reads exercises partial chunks.
		n, err := pipeCopy(&out, h, iotest.HalfReader(bytes.NewReader(data)))
		if err != nil || n != int64(size) {
			t.Fatalf("size %d: copied %d, %v", size, n, err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("size %d: output differs from input", size)
		}
		if want := sha1.Sum(data); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("size %d: hash of %x, want %x", size, h.Sum(nil), want)
		}
	}
}

// failingWriter fails once it has accepted limit bytes.
type failingWriter struct{ n, limit int }

var errDiskFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		return 0, errDiskFull
	}
	w.n += len(p)
	return len(p), nil
}

func TestPipeCopyErrors(t *testing.T) {
	data := make([]byte, 20*pipeChunkSize)
	// A write error stops the reader and the hasher (no goroutine blocks).
	w := &failingWriter{limit: 5 * pipeChunkSize}
	if _, err := pipeCopy(w, sha1.New(), bytes.NewReader(data)); !errors.Is(err, errDiskFull) {
		t.Errorf("write error: got %v, want %v", err, errDiskFull)
	}
	// A read error after some data is returned after what was read is written.
	errBroken := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(data[:3*pipeChunkSize+7]), iotest.ErrReader(errBroken))
	var out bytes.Buffer
	n, err := pipeCopy(&out, sha1.New(), src)
	if !errors.Is(err, errBroken) {
		t.Errorf("read error: got %v, want %v", err, errBroken)
	}
	if n != int64(out.Len()) || n > 3*pipeChunkSize+7 {
		t.Errorf("read error: %d bytes reported, %d written", n, out.Len())
	}
}

// TestRunWorkers: every file is handed to one exactly once; small workers
// take only small files, from the small end; an error stops the rest.
func TestRunWorkers(t *testing.T) {
	var files []*repo.ManifestFile
	for i := range 200 {
		files = append(files, &repo.ManifestFile{Name: fmt.Sprint(i), Size: uint64(200-i) * 16 << 10}) // largest first
	}
	var mu sync.Mutex
	seen := map[string]int{}
	err := runWorkers(t.Context(), files, 2, 6, func(_ context.Context, f *repo.ManifestFile) error {
		mu.Lock()
		seen[f.Name]++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if seen[f.Name] != 1 {
			t.Errorf("%s handled %d times", f.Name, seen[f.Name])
		}
	}
	errBoom := errors.New("boom")
	var calls atomic.Int64
	err = runWorkers(t.Context(), files, 1, 0, func(_ context.Context, f *repo.ManifestFile) error {
		calls.Add(1)
		if f.Name == "3" {
			return errBoom
		}
		return nil
	})
	if !errors.Is(err, errBoom) || calls.Load() != 4 {
		t.Errorf("error %v after %d calls, want %v after 4", err, calls.Load(), errBoom)
	}
}
