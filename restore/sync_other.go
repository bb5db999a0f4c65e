//go:build !linux

package restore

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// syncRoots makes everything written under the restore's directories
// durable by fsyncing every file and directory (no syncfs(2) here).
func (l *layout) syncRoots() error {
	for _, r := range l.roots {
		err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink != 0 {
				return err
			}
			fh, err := os.Open(p)
			if err != nil {
				return err
			}
			err = fh.Sync()
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("sync %s: %w", r.dir, err)
		}
	}
	return nil
}

// withWriteback returns f: early write-back is Linux-only.
func withWriteback(f *os.File) io.Writer { return f }
