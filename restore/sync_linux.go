package restore

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// syncRoots makes everything written under the restore's directories (the
// data directory and each tablespace or link target) durable with one
// syncfs(2) per file system instead of an fsync per file: a restore writes
// thousands of files, and per-file fsyncs serialize the copy behind the disk.
// Since Linux 5.8 syncfs reports write-back errors of the file system.
func (l *layout) syncRoots() error {
	for _, r := range l.roots {
		fh, err := os.Open(r.dir)
		if err != nil {
			return fmt.Errorf("open %s to sync it: %w", r.dir, err)
		}
		err = unix.Syncfs(int(fh.Fd()))
		_ = fh.Close()
		if err != nil {
			return fmt.Errorf("sync the file system of %s: %w", r.dir, err)
		}
	}
	return nil
}

// writebackWriter writes to a file and starts the kernel's write-back of
// every writebackStep bytes as they are written (sync_file_range with
// SYNC_FILE_RANGE_WRITE: it queues the I/O and does not wait), as
// PostgreSQL's *_flush_after settings do. The disk then works while the
// restore computes, and the final syncfs has little left to flush.
type writebackWriter struct {
	f            *os.File
	off, started int64
}

const writebackStep = 8 << 20

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackStep {
		// Advisory: a failure here only means the final sync does the work.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.started, w.off-w.started, unix.SYNC_FILE_RANGE_WRITE)
		w.started = w.off
	}
	return n, err
}

// withWriteback returns f with early write-back for large files.
func withWriteback(f *os.File) io.Writer { return &writebackWriter{f: f} }
