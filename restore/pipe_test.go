package restore

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
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
