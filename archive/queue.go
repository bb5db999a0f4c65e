package archive

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// QueueExceeded reports whether the WAL files that PostgreSQL has marked
// ready for archiving in walDir (pg_wal) take more than max bytes. It
// follows pgBackRest's archivePushDrop: it walks the .ready files of
// walDir/archive_status in name order and adds up their WAL files' sizes.
// When that is true, archive-push drops the file (reports success without
// archiving it) to keep pg_wal from filling the disk. This breaks
// point-in-time recovery and is only done with archive-push-queue-max set.
func QueueExceeded(walDir string, max int64) (bool, error) {
	status := filepath.Join(walDir, "archive_status")
	entries, err := os.ReadDir(status)
	if err != nil {
		return false, withCode(CodeFileOpen, fmt.Errorf("list %s: %w", status, err))
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".ready"); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var total int64
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(walDir, n))
		if err != nil {
			return false, withCode(CodeFileOpen, fmt.Errorf("stat WAL file: %w", err))
		}
		if total += fi.Size(); total > max {
			return true, nil
		}
	}
	return false, nil
}

// DropWarning is the warning archive-push logs when it drops a file because
// the queue exceeded max bytes.
func DropWarning(walName string, max int64) string {
	return fmt.Sprintf("dropped WAL file '%s' because archive queue exceeded %s", walName, sizeFormat(max))
}

// sizeFormat renders a size as pgBackRest's strSizeFormat does: bytes below
// 1KB, then KB, MB or GB, with one decimal when the tenths digit is not zero.
func sizeFormat(n int64) string {
	if n < 1<<10 {
		return fmt.Sprintf("%dB", n)
	}
	unit, name := int64(1<<10), "KB"
	if n >= 1<<30 {
		unit, name = 1<<30, "GB"
	} else if n >= 1<<20 {
		unit, name = 1<<20, "MB"
	}
	if int64(float64(n)/(float64(unit)/10))%10 != 0 {
		return fmt.Sprintf("%.1f%s", float64(n)/float64(unit), name)
	}
	return fmt.Sprintf("%d%s", n/unit, name)
}
