package restore

import (
	"fmt"
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
