package backup

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// initdbChecksums makes a data directory with data checksums (not started); it skips
// when PostgreSQL 15 is not installed (and fails if PGSIDECAR_TEST_REQUIRE names
// postgres).
func initdbChecksums(t *testing.T) string {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin/initdb"
	if _, err := os.Stat(bin); err != nil {
		storagetest.Unavailable(t, "postgres", fmt.Errorf("%s not installed: %w", bin, err))
	}
	dir, err := os.MkdirTemp("", "pgsidecar-backup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	args := []string{"-D", data, "-U", "postgres", "--no-sync", "--data-checksums"}
	cmd := exec.Command(bin, args...)
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("runuser", append([]string{"-u", "pgsidecar", "--", bin}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	return data
}

func checkPages(data []byte, name string, file io.ReaderAt) (bool, string) {
	pc := newPageChecker(file, name)
	// Odd write sizes cross page boundaries.
	for len(data) > 0 {
		n := min(len(data), 3001)
		_, _ = pc.Write(data[:n])
		data = data[n:]
	}
	return pc.result()
}

func TestPageChecksum(t *testing.T) {
	t.Parallel()
	data := initdbChecksums(t)
	// pg_class of template1: several pages, all valid.
	rel, err := os.ReadFile(filepath.Join(data, "base", "1", "1259"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rel) < 3*pageSize || len(rel)%pageSize != 0 {
		t.Fatalf("pg_class has %d bytes", len(rel))
	}
	for i := 0; i < len(rel); i += pageSize {
		page := rel[i : i+pageSize]
		if got, want := PageChecksum(page, uint32(i/pageSize)), binary.LittleEndian.Uint16(page[pdChecksumOff:]); got != want {
			t.Errorf("page %d: checksum %#x, stored %#x", i/pageSize, got, want)
		}
	}
	if bad, list := checkPages(rel, "1259", bytes.NewReader(rel)); bad || list != "" {
		t.Errorf("valid file: error %v list %q", bad, list)
	}

	// The same pages as segment 1 have other block numbers: every non-empty page fails.
	if bad, _ := checkPages(rel, "1259.1", bytes.NewReader(rel)); !bad {
		t.Errorf("pages checked with the wrong block numbers passed")
	}

	// Corrupt pages 0, 1 and 3 (as on disk, so the re-read sees the same bytes).
	corrupt := bytes.Clone(rel)
	for _, p := range []int{0, 1, 3} {
		if p*pageSize+pageSize <= len(corrupt) {
			corrupt[p*pageSize+pageSize-100] ^= 0xFF
		}
	}
	bad, list := checkPages(corrupt, "1259", bytes.NewReader(corrupt))
	want := "[[0,1],3]"
	if len(corrupt) < 4*pageSize {
		want = "[[0,1]]"
	}
	if !bad || list != want {
		t.Errorf("corrupt pages: error %v list %q, want true %q", bad, list, want)
	}
	// A page that changed on disk since it was read is being written: not an error.
	if bad, list := checkPages(corrupt, "1259", bytes.NewReader(rel)); bad || list != "" {
		t.Errorf("pages changed since read: error %v list %q, want none", bad, list)
	}

	// New (all-zero) pages are valid; a trailing partial page marks the file misaligned.
	zero := make([]byte, 2*pageSize)
	if bad, _ := checkPages(zero, "5", nil); bad {
		t.Errorf("zero pages reported invalid")
	}
	if bad, list := checkPages(append(bytes.Clone(rel), make([]byte, 600)...), "1259", nil); !bad || list != "" {
		t.Errorf("misaligned file: error %v list %q, want true and no list", bad, list)
	}
}

func TestPageErrorList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pages []uint32
		want  string
	}{
		{[]uint32{0}, "[0]"},
		{[]uint32{0, 3, 4, 5, 7}, "[0,[3,5],7]"},
		{[]uint32{1, 2}, "[[1,2]]"},
		{[]uint32{131072, 131074}, "[131072,131074]"},
	} {
		if got := pageErrorList(tc.pages); got != tc.want {
			t.Errorf("pageErrorList(%v) = %s, want %s", tc.pages, got, tc.want)
		}
	}
}

// pageChecksumRef is PostgreSQL's pg_checksum_page written as plainly as
// possible: the oracle for the optimised PageChecksum.
func pageChecksumRef(page []byte, blockNo uint32) uint16 {
	sums := checksumBaseOffsets
	comp := func(s *uint32, v uint32) {
		tmp := *s ^ v
		*s = tmp*checksumFNV ^ tmp>>17
	}
	for i := 0; i < pageSize/(4*checksumNSums); i++ {
		for j := range checksumNSums {
			off := (i*checksumNSums + j) * 4
			v := binary.LittleEndian.Uint32(page[off:])
			if off == pdChecksumOff {
				v &^= 0xFFFF
			}
			comp(&sums[j], v)
		}
	}
	for range 2 {
		for j := range checksumNSums {
			comp(&sums[j], 0)
		}
	}
	var c uint32
	for _, s := range sums {
		c ^= s
	}
	return uint16((c^blockNo)%65535 + 1)
}

func TestPageChecksumMatchesReference(t *testing.T) {
	t.Parallel()
	page := make([]byte, pageSize)
	for seed := range uint32(200) {
		for i := range page {
			page[i] = byte(uint32(i)*2654435761>>13 ^ seed*97)
		}
		if got, want := PageChecksum(page, seed*7919), pageChecksumRef(page, seed*7919); got != want {
			t.Fatalf("seed %d: checksum %#x, reference %#x", seed, got, want)
		}
	}
}

func BenchmarkPageChecksum(b *testing.B) {
	page := make([]byte, pageSize)
	for i := range page {
		page[i] = byte(i * 31)
	}
	b.SetBytes(pageSize)
	for b.Loop() {
		PageChecksum(page, 1)
	}
}
