package archive

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestReadyFiles(t *testing.T) {
	t.Parallel()
	wal := t.TempDir()
	if _, err := ReadyFiles(wal); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no archive_status: %v, want fs.ErrNotExist", err)
	}
	status := filepath.Join(wal, "archive_status")
	if err := os.Mkdir(status, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]int{ // WAL file -> size; -1: no WAL file
		"000000020000000000000003":                 3,
		"000000010000000000000002":                 2,
		"00000002.history":                         1,
		"000000010000000000000002.00000028.backup": 4,
		"000000010000000000000003.partial":         5,
		"000000010000000000000001":                 -1, // recycled: skipped
	}
	marked := time.Now().Add(-time.Hour).Truncate(time.Second)
	for name, size := range files {
		if size >= 0 {
			writeFile(t, wal, name, make([]byte, size))
		}
		writeFile(t, status, name+".ready", nil)
		if err := os.Chtimes(filepath.Join(status, name+".ready"), marked, marked); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, status, "000000010000000000000009.done", nil)
	writeFile(t, status, "RECOVERYXLOG.ready", nil)
	writeFile(t, wal, "RECOVERYXLOG", nil)

	got, err := ReadyFiles(wal)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range got {
		names = append(names, f.Name)
		if want := files[f.Name]; int64(want) != f.Size {
			t.Errorf("%s: size %d, want %d", f.Name, f.Size, want)
		}
		if k, _ := ParseName(f.Name); k != f.Kind {
			t.Errorf("%s: kind %v, want %v", f.Name, f.Kind, k)
		}
		if !f.ReadyAt.Equal(marked) {
			t.Errorf("%s: ready at %v, want the status file's mtime %v", f.Name, f.ReadyAt, marked)
		}
	}
	want := []string{
		"00000002.history",
		"000000010000000000000002",
		"000000010000000000000002.00000028.backup",
		"000000010000000000000003.partial",
		"000000020000000000000003",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("ReadyFiles = %q, want %q", names, want)
	}
}
