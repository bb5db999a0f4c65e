package pg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

func TestParseControl(t *testing.T) {
	t.Parallel()
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, 7447044617112341234)
	binary.LittleEndian.PutUint32(b[8:], 1300)
	binary.LittleEndian.PutUint32(b[12:], 202209061)
	c, err := ParseControl(b, "pg_control")
	if err != nil {
		t.Fatal(err)
	}
	if c.SystemID != 7447044617112341234 || c.ControlVersion != 1300 || c.CatalogVersion != 202209061 {
		t.Fatalf("ParseControl = %+v", c)
	}
	binary.LittleEndian.PutUint32(b[8:], 942)
	if _, err := ParseControl(b, "old/pg_control"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "old/pg_control") {
		t.Fatalf("old control version: %v", err)
	}
	if _, err := ParseControl(b[:10], "short"); err == nil || !strings.Contains(err.Error(), "short") {
		t.Fatalf("short pg_control: %v", err)
	}
}

func TestParseWALHeader(t *testing.T) {
	t.Parallel()
	b := make([]byte, 64)
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], 0x0007)
	binary.LittleEndian.PutUint32(b[4:], 3)
	binary.LittleEndian.PutUint64(b[24:], 99887766)
	binary.LittleEndian.PutUint32(b[32:], 16<<20)
	h, err := ParseWALHeader(b, "seg")
	if err != nil {
		t.Fatal(err)
	}
	if h != (WALHeader{Version: "15", SystemID: 99887766, Timeline: 3, SegmentSize: 16 << 20}) {
		t.Fatalf("ParseWALHeader = %+v", h)
	}
	binary.LittleEndian.PutUint16(b[2:], 0x0005)
	if _, err := ParseWALHeader(b, "seg"); err == nil {
		t.Fatal("short page header accepted as a segment start")
	}
	binary.LittleEndian.PutUint16(b[0:], 0x1234)
	if _, err := ParseWALHeader(b, "seg"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("bad magic: %v", err)
	}
}

// TestRealCluster checks the parsers against what PostgreSQL 15's own
// tools report for a cluster made by initdb (run by the integration user
// when root, else by the current user).
func TestRealCluster(t *testing.T) {
	t.Parallel()
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		storagetest.Unavailable(t, "postgres", fmt.Errorf("PostgreSQL 15 not installed: %w", err))
	}
	dir, err := os.MkdirTemp("", "pgsidecar-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) string {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		if os.Geteuid() == 0 {
			cmd = exec.Command("runuser", append([]string{"-u", "pgsidecar", "--", filepath.Join(bin, name)}, args...)...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	run("initdb", "-D", data, "-U", "postgres", "--no-sync")
	ver, err := ReadVersion(data)
	if err != nil || ver != "15" {
		t.Fatalf("ReadVersion = %q, %v", ver, err)
	}
	c, err := ReadControl(data)
	if err != nil {
		t.Fatal(err)
	}
	out := run("pg_controldata", data)
	for _, want := range []string{
		"Database system identifier:           " + strconv.FormatUint(c.SystemID, 10),
		"pg_control version number:            " + strconv.FormatUint(uint64(c.ControlVersion), 10),
		"Catalog version number:               " + strconv.FormatUint(uint64(c.CatalogVersion), 10),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pg_controldata lacks %q:\n%s", want, out)
		}
	}
	segs, err := filepath.Glob(filepath.Join(data, "pg_wal", "0000000100000000000000*"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segment after initdb: %v", err)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseWALHeader(b, segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if h.SystemID != c.SystemID || h.Version != "15" || h.Timeline != 1 || h.SegmentSize != 16<<20 {
		t.Fatalf("WAL header %+v does not match the cluster (system id %d)", h, c.SystemID)
	}
}
