package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
)

// pushTo pushes data as wal to the repositories with compression ct.
func pushTo(t testing.TB, wal string, data []byte, ct compress.Type, rs ...*testRepo) {
	t.Helper()
	opts := PushOptions{CompressType: ct, CompressLevel: ct.DefaultLevel(), HeaderCheck: true}
	if _, err := newPusher(t, opts, rs...).Push(t.Context(), writeFile(t, t.TempDir(), wal, data)); err != nil {
		t.Fatal(err)
	}
}

// segmentPath returns the posix path of the only copy of wal in r.
func segmentPath(t testing.TB, r *testRepo, wal string) string {
	t.Helper()
	for _, f := range r.archived(t, "15-1") {
		if filepath.Base(f)[:len(wal)] == wal {
			return filepath.Join(r.dir, "archive/db/15-1", f)
		}
	}
	t.Fatalf("%s not in %s", wal, r.rs.Name())
	return ""
}

// corrupt flips one byte in the middle of a file.
func corrupt(t testing.TB, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	data := smallSegment(20, testSysID, 0.4)
	other := smallSegment(21, testSysID, 0.4)
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, r1, r2 *testRepo)
		from     string // repository expected to serve the file; "" for an error
		code     int
		notFound bool
		warn     string
	}{
		{"only in the second repository", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.Lz4, r2)
		}, "repo2", 0, false, ""},
		{"in both: the first serves", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.Zst, r1)
			pushTo(t, seg1, data, compress.Gz, r2) // another compression, same content: no duplicate
		}, "repo1", 0, false, ""},
		{"missing everywhere", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, "000000010000000000000002", data, compress.Lz4, r1, r2)
		}, "", 0, true, ""},
		{"checksum mismatch falls through", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.None, r1, r2)
			corrupt(t, segmentPath(t, r1, seg1))
		}, "repo2", 0, false, "repo1"},
		{"corrupt compressed copy falls through", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.Lz4, r1, r2)
			corrupt(t, segmentPath(t, r1, seg1))
		}, "repo2", 0, false, "repo1"},
		{"every copy corrupt", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.None, r1, r2)
			corrupt(t, segmentPath(t, r1, seg1))
			corrupt(t, segmentPath(t, r2, seg1))
		}, "", CodeFileRead, false, "checksum mismatch"},
		{"different content in two repositories", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.Lz4, r1)
			pushTo(t, seg1, other, compress.Lz4, r2)
		}, "", CodeArchiveDup, false, "duplicates found for WAL segment " + seg1},
		{"first repository unreadable", func(t *testing.T, r1, r2 *testRepo) {
			pushTo(t, seg1, data, compress.Lz4, r1, r2)
			for _, f := range []string{"archive.info", "archive.info.copy"} {
				if err := os.Remove(filepath.Join(r1.dir, "archive/db", f)); err != nil {
					t.Fatal(err)
				}
			}
		}, "repo2", 0, false, "repo1"},
		{"no repository usable", func(t *testing.T, r1, r2 *testRepo) {
			for _, r := range []*testRepo{r1, r2} {
				if err := os.RemoveAll(filepath.Join(r.dir, "archive")); err != nil {
					t.Fatal(err)
				}
			}
		}, "", CodeRepoInvalid, false, "unable to find a valid repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r1 := newTestRepo(t, "repo1", false, testCluster, nil)
			r2 := newTestRepo(t, "repo2", true, testCluster, nil)
			tc.setup(t, r1, r2)
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			res, err := Get(ctx, OpenGet(ctx, repositories(r1, r2), testCluster), seg1, dest, nil)
			switch {
			case tc.from != "":
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(dest)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("restored content differs (%v)", err)
				}
				if res.Repo != tc.from || res.ArchiveID != "15-1" || res.SHA1 != sha1hex(data) || res.Size != int64(len(data)) {
					t.Fatalf("result %+v, want from %s", res, tc.from)
				}
			case tc.notFound:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("%v, want ErrNotFound", err)
				}
			default:
				if codeOf(err) != tc.code {
					t.Fatalf("%v (code %d), want code %d", err, codeOf(err), tc.code)
				}
				if tc.warn != "" {
					mustContain(t, err, tc.warn)
				}
			}
			if tc.from == "" {
				if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("destination exists after a failed get: %v", err)
				}
			}
			if tc.from != "" && tc.warn != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return bytes.Contains([]byte(w), []byte(tc.warn)) }) {
				t.Fatalf("warnings %q do not mention %s", res.Warnings, tc.warn)
			}
			entries, _ := os.ReadDir(filepath.Dir(dest))
			if len(entries) > 1 || (len(entries) == 1 && entries[0].Name() != "RECOVERYXLOG") {
				t.Fatalf("temporary files left: %v", entries)
			}
		})
	}
}

func TestGetDestination(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var gets atomic.Int32
	r1 := newTestRepo(t, "repo1", false, testCluster, func(s storage.Store) storage.Store {
		return &fault.Store{Inner: s, BeforeGet: func(context.Context, string, storage.Range) error { gets.Add(1); return nil }}
	})
	r2 := newTestRepo(t, "repo2", false, testCluster, nil)
	data := smallSegment(22, testSysID, 0.2)
	pushTo(t, seg1, data, compress.Lz4, r1, r2)
	sources := OpenGet(ctx, repositories(r1, r2), testCluster)
	gets.Store(0)

	// A destination directory that does not exist is a local error: no
	// other copy is tried.
	_, err := Get(ctx, sources, seg1, filepath.Join(t.TempDir(), "missing", "RECOVERYXLOG"), nil)
	if codeOf(err) != CodeFileWrite || gets.Load() != 1 {
		t.Fatalf("%v (code %d) after %d gets, want code 64 after one", err, codeOf(err), gets.Load())
	}

	// An existing destination is replaced.
	dest := writeFile(t, t.TempDir(), "RECOVERYXLOG", []byte("stale"))
	if _, err := Get(ctx, sources, seg1, dest, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("destination not replaced")
	}
}

func TestOpenGetHistory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newTestRepo(t, "repo1", false, testCluster, nil)
	// History: 1 = this cluster, 2 = PostgreSQL 16 after an upgrade, 3 =
	// this cluster again (a restore of it and stanza-upgrade back).
	ai, err := r.rs.LoadArchiveInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ai.AddHistory("16", 99); err != nil {
		t.Fatal(err)
	}
	if err := ai.AddHistory("15", testSysID); err != nil {
		t.Fatal(err)
	}
	if err := r.rs.SaveArchiveInfo(ctx, ai); err != nil {
		t.Fatal(err)
	}

	src := OpenGet(ctx, repositories(r), testCluster)[0]
	if src.Err != nil || !slices.Equal(src.ArchiveIDs, []string{"15-3"}) {
		t.Fatalf("ids %v, %v; want only 15-3 (15-1 has no directory)", src.ArchiveIDs, src.Err)
	}
	if s := OpenGet(ctx, repositories(r), Cluster{Version: "14", SystemID: testSysID})[0]; codeOf(s.Err) != CodeArchiveMismatch {
		t.Fatalf("another cluster: %v, want code 44", s.Err)
	}

	// A segment archived under the old id is found there once it exists.
	data := smallSegment(23, testSysID, 0.2)
	old := []Target{{Repo: r.rs, ArchiveID: "15-1"}}
	p, err := NewPusher(old, PushOptions{CompressType: compress.Lz4, CompressLevel: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(ctx, writeFile(t, t.TempDir(), seg1, data)); err != nil {
		t.Fatal(err)
	}
	sources := OpenGet(ctx, repositories(r), testCluster)
	if !slices.Equal(sources[0].ArchiveIDs, []string{"15-3", "15-1"}) {
		t.Fatalf("ids %v, want 15-3 then 15-1", sources[0].ArchiveIDs)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	res, err := Get(ctx, sources, seg1, dest, nil)
	if err != nil || res.ArchiveID != "15-1" {
		t.Fatalf("%+v, %v; want found in 15-1", res, err)
	}

	// The same segment with other content under the newest id: duplicates.
	newest := []Target{{Repo: r.rs, ArchiveID: "15-3"}}
	if p, err = NewPusher(newest, PushOptions{CompressType: compress.Lz4, CompressLevel: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Push(ctx, writeFile(t, t.TempDir(), seg1, smallSegment(24, testSysID, 0.2))); err != nil {
		t.Fatal(err)
	}
	var de *DuplicateError
	if _, err := Get(ctx, sources, seg1, dest, nil); !errors.As(err, &de) || len(de.Matches) != 2 {
		t.Fatalf("%v, want a DuplicateError listing both copies", err)
	}
}

func TestQueueExceeded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := QueueExceeded(dir, 1); err == nil {
		t.Fatal("no archive_status: no error")
	}
	if err := os.Mkdir(filepath.Join(dir, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"} {
		writeFile(t, dir, name, make([]byte, 1000))
		if i < 2 {
			writeFile(t, filepath.Join(dir, "archive_status"), name+".ready", nil)
		} else {
			writeFile(t, filepath.Join(dir, "archive_status"), name+".done", nil)
		}
	}
	for _, tc := range []struct {
		max  int64
		want bool
	}{{1999, true}, {2000, false}, {5000, false}, {999, true}} {
		got, err := QueueExceeded(dir, tc.max)
		if err != nil || got != tc.want {
			t.Errorf("QueueExceeded(%d) = %v, %v; want %v", tc.max, got, err, tc.want)
		}
	}
}

func TestSizeFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1KB"}, {1536, "1.5KB"}, {1 << 20, "1MB"},
		{16 << 20, "16MB"}, {(1 << 30) * 5 / 2, "2.5GB"}, {1<<30 + 1, "1GB"}, {1100, "1KB"}, {1130, "1.1KB"},
	} {
		if got := sizeFormat(tc.n); got != tc.want {
			t.Errorf("sizeFormat(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := DropWarning(seg1, 1<<30); got != "dropped WAL file '"+seg1+"' because archive queue exceeded 1GB" {
		t.Errorf("DropWarning = %q", got)
	}
}
