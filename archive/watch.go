package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ReadyFile is a WAL file that PostgreSQL has marked ready for archiving.
type ReadyFile struct {
	// Name is the WAL file name (it passed ParseName).
	Name string
	// Kind is the kind of Name.
	Kind Kind
	// Size is the size of the WAL file in pg_wal.
	Size int64
	// ReadyAt is the modification time of the .ready status file: when
	// PostgreSQL marked the file ready. It survives a restart of the
	// daemon, so the age of the oldest one is the archiving lag.
	ReadyAt time.Time
}

// ReadyFiles lists the files that PostgreSQL has marked ready for archiving
// in walDir (pg_wal): those with a "<name>.ready" status file in
// walDir/archive_status. It only reads; status files are PostgreSQL's and
// are never renamed here.
//
// Files come in the order PostgreSQL's archiver takes them: timeline
// history files first, then by name, which is WAL order within a timeline
// and puts a newer timeline after an older one. Status files whose name is
// not a WAL file name are skipped, and so are those whose WAL file no longer
// exists (PostgreSQL removed or recycled it). A missing archive_status
// directory gives an error wrapping fs.ErrNotExist.
func ReadyFiles(walDir string) ([]ReadyFile, error) {
	status := filepath.Join(walDir, "archive_status")
	entries, err := os.ReadDir(status)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", status, err)
	}
	var out []ReadyFile
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok {
			continue
		}
		kind, err := ParseName(name)
		if err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(walDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stat WAL file: %w", err)
		}
		st, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // archived meanwhile: the status file is now .done
		}
		if err != nil {
			return nil, fmt.Errorf("stat status file: %w", err)
		}
		out = append(out, ReadyFile{Name: name, Kind: kind, Size: fi.Size(), ReadyAt: st.ModTime()})
	}
	slices.SortFunc(out, func(a, b ReadyFile) int { return CompareArchiveOrder(a.Name, b.Name) })
	return out, nil
}

// CompareArchiveOrder compares two WAL file names in the order PostgreSQL's
// archiver archives them: timeline history files before anything else,
// then by name. It returns -1, 0 or +1.
func CompareArchiveOrder(a, b string) int {
	ha, hb := strings.HasSuffix(a, ".history"), strings.HasSuffix(b, ".history")
	switch {
	case ha && !hb:
		return -1
	case hb && !ha:
		return 1
	}
	return strings.Compare(a, b)
}
