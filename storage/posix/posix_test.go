package posix_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/posix"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := posix.New(posix.Config{Root: filepath.Join(t.TempDir(), "repo1")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storagetest.Options{})
}

func TestFileModes(t *testing.T) {
	root := t.TempDir()
	s, err := posix.New(posix.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "archive/db/archive.info", emptyReader{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "archive/db/archive.info"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v, want 0640", st.Mode().Perm())
	}
	dst, err := os.Stat(filepath.Join(root, "archive/db"))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v, want 0750", dst.Mode().Perm())
	}
}

func TestRelativeRootRejected(t *testing.T) {
	if _, err := posix.New(posix.Config{Root: "relative/repo"}); err == nil {
		t.Fatal("relative root accepted")
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }
