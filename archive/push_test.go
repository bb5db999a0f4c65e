package archive

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/fault"
	"github.com/pgsidecar/pgsidecar/storage/retry"
)

const seg1 = "000000010000000000000001"

func sha1hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

func newPusher(t testing.TB, opts PushOptions, rs ...*testRepo) *Pusher {
	t.Helper()
	targets, cl, err := OpenPush(t.Context(), repositories(rs...), &testCluster)
	if err != nil {
		t.Fatal(err)
	}
	opts.Cluster = cl
	p, err := NewPusher(targets, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func lz4Opts() PushOptions {
	return PushOptions{CompressType: compress.Lz4, CompressLevel: 1, HeaderCheck: true, ModeCheck: true}
}

// checkSegment checks that r holds exactly the segment wal with content data,
// compressed with ct, encrypted when r is.
func checkSegment(t testing.TB, r *testRepo, wal string, data []byte, ct compress.Type) {
	t.Helper()
	name := wal + "-" + sha1hex(data) + ct.Ext()
	want := []string{wal[:16] + "/" + name}
	if got := r.archived(t, "15-1"); !slices.Equal(got, want) {
		t.Fatalf("%s holds %v, want %v", r.rs.Name(), got, want)
	}
	key := r.rs.ArchiveKey("15-1/" + want[0])
	fc, err := r.rs.CheckFile(t.Context(), key, storage.Range{}, r.pass, ct)
	if err != nil {
		t.Fatalf("%s: read back %s: %v", r.rs.Name(), key, err)
	}
	if fc.SHA1 != sha1hex(data) || fc.Size != int64(len(data)) {
		t.Fatalf("%s: read back %s: sha1 %s size %d, want %s %d", r.rs.Name(), key, fc.SHA1, fc.Size, sha1hex(data), len(data))
	}
	raw, err := os.ReadFile(filepath.Join(r.dir, key))
	if err != nil {
		t.Fatal(err)
	}
	if enc := bytes.HasPrefix(raw, []byte("Salted__")); enc != (r.pass != "") {
		t.Fatalf("%s: stored object encrypted=%v, want %v", r.rs.Name(), enc, r.pass != "")
	}
}

func TestParseName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		want Kind
	}{
		{"000000010000000000000001", Segment},
		{"0000000A00000001000000FF", Segment},
		{"000000010000000000000001.partial", Partial},
		{"00000002.history", History},
		{"000000010000000000000002.00000028.backup", BackupHistory},
		{"", 0},
		{"00000001000000000000000", 0},
		{"0000000100000000000000011", 0},
		{"00000001000000000000000a", 0}, // PostgreSQL writes uppercase only
		{"00000001000000000000000:", 0}, // inside pgBackRest's [0-F]
		{"00000002/history", 0},         // pgBackRest's '.' would match
		{"00000002Xhistory", 0},
		{"000000010000000000000001.partia", 0},
		{"000000010000000000000001.0000002.backup", 0},
		{"000000010000000000000001.00000028.backupx", 0},
		{"../00000002.history", 0},
		{"RECOVERYXLOG", 0},
		{"archive.info", 0},
	} {
		got, err := ParseName(tc.name)
		if got != tc.want || (err == nil) != (tc.want != 0) {
			t.Errorf("ParseName(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if err != nil && (!errors.Is(err, ErrInvalidName) || codeOf(err) != CodeParamInvalid) {
			t.Errorf("ParseName(%q) error %v: want ErrInvalidName with code %d", tc.name, err, CodeParamInvalid)
		}
	}
}

func TestPush(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		ct        compress.Type
		level     int
		encrypted []bool // one entry per repository
	}{
		{"gz/1 plain", compress.Gz, 6, []bool{false}},
		{"gz/1 encrypted", compress.Gz, 6, []bool{true}},
		{"lz4/3", compress.Lz4, 1, []bool{false, true, false}},
		{"zst/3", compress.Zst, 3, []bool{true, false, true}},
		{"none/3", compress.None, 0, []bool{false, true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rs []*testRepo
			for i, enc := range tc.encrypted {
				rs = append(rs, newTestRepo(t, "repo"+string(rune('1'+i)), enc, testCluster, nil))
			}
			p := newPusher(t, PushOptions{CompressType: tc.ct, CompressLevel: tc.level, HeaderCheck: true}, rs...)
			data := makeSegment(1, testSysID, 0.7)
			walPath := writeFile(t, t.TempDir(), seg1, data)
			res, err := p.Push(t.Context(), walPath)
			if err != nil {
				t.Fatal(err)
			}
			if res.SHA1 != sha1hex(data) || res.Size != int64(len(data)) || res.Kind != Segment || len(res.Written) != len(rs) || len(res.Existing) != 0 {
				t.Fatalf("result %+v", res)
			}
			if tc.ct != compress.None && res.Stored >= res.Size {
				t.Fatalf("stored %d bytes of %d: not compressed", res.Stored, res.Size)
			}
			for _, r := range rs {
				checkSegment(t, r, seg1, data, tc.ct)
			}
		})
	}
}

func TestPushDuplicate(t *testing.T) {
	t.Parallel()
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", true, testCluster, nil)
	p := newPusher(t, lz4Opts(), r1, r2)
	dir := t.TempDir()
	data := smallSegment(2, testSysID, 0.5)
	walPath := writeFile(t, dir, seg1, data)
	ctx := t.Context()
	if _, err := p.Push(ctx, walPath); err != nil {
		t.Fatal(err)
	}

	// The same content again: success, nothing written, a warning per repository.
	res, err := p.Push(ctx, walPath)
	if err != nil {
		t.Fatalf("same content: %v", err)
	}
	if len(res.Written) != 0 || !slices.Equal(res.Existing, []string{"repo1", "repo2"}) || len(res.Warnings) != 2 {
		t.Fatalf("same content: %+v", res)
	}
	mustContain(t, errors.New(res.Warnings[1]), "WAL file '"+seg1+"' already exists in the repo2 archive with the same checksum")

	// Without archive-mode-check the duplicate is silent.
	opts := lz4Opts()
	opts.ModeCheck = false
	if res, err := newPusher(t, opts, r1, r2).Push(ctx, walPath); err != nil || len(res.Warnings) != 0 {
		t.Fatalf("same content without mode check: %+v, %v", res, err)
	}

	// Other content under the same name: refused, nothing overwritten, even
	// in a repository that lacks the segment.
	r3 := newTestRepo(t, "repo3", false, testCluster, nil)
	other := smallSegment(3, testSysID, 0.5)
	otherPath := writeFile(t, t.TempDir(), seg1, other)
	_, err = newPusher(t, lz4Opts(), r3, r1, r2).Push(ctx, otherPath)
	var de *DuplicateError
	if !errors.As(err, &de) || codeOf(err) != CodeArchiveDup {
		t.Fatalf("different content: %v, want a DuplicateError with code 45", err)
	}
	mustContain(t, err, seg1, "repo1", sha1hex(data), sha1hex(other))
	checkSegment(t, r1, seg1, data, compress.Lz4)
	checkSegment(t, r2, seg1, data, compress.Lz4)
	if got := r3.archived(t, "15-1"); len(got) != 0 {
		t.Fatalf("repo3 received %v despite the duplicate", got)
	}

	// A second copy of the segment in one repository is that repository's
	// error; the others still get the file.
	extra := filepath.Join(r1.dir, "archive/db/15-1/0000000100000000", seg1+"-"+sha1hex(data)+".gz")
	if err := os.WriteFile(extra, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = newPusher(t, lz4Opts(), r1, r3).Push(ctx, walPath)
	if codeOf(err) != CodeCommand || !slices.Equal(res.Written, []string{"repo3"}) {
		t.Fatalf("two copies in repo1: %+v, %v; want code 104 and repo3 written", res, err)
	}
	mustContain(t, err, "repo1", "duplicates found in archive for WAL segment "+seg1)
}

func TestPushHeaderCheck(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	good := makeSegment(4, testSysID, 0.3)
	wrongSys := makeSegment(4, testSysID+1, 0.3)
	wrongVersion := bytes.Clone(good)
	wrongVersion[0], wrongVersion[1] = 0x06, 0xD1 // PostgreSQL 13's magic
	noLong := bytes.Clone(good)
	noLong[2] = 0
	badSize := bytes.Clone(good)
	badSize[34] = 0x11 // 17 MiB + 16 MiB is not a power of two
	for _, tc := range []struct {
		name  string
		wal   string
		data  []byte
		check bool
		code  int // 0: pushed
		msg   string
	}{
		{"good", seg1, good, true, 0, ""},
		{"wrong system id", seg1, wrongSys, true, CodeArchiveMismatch, "system-id 7301234567890123457 do not match stanza version 15, system-id 7301234567890123456"},
		{"wrong version", seg1, wrongVersion, true, CodeArchiveMismatch, "version 13"},
		{"no long header", seg1, noLong, true, CodeFormat, "long header"},
		{"bad segment size", seg1, badSize, true, CodeFormat, "segment size"},
		{"truncated", seg1, good[:segmentSize/2], true, CodeFormat, "is 8388608 bytes but its header gives a segment size of 16777216"},
		{"too short", seg1, good[:20], true, CodeFormat, "too short"},
		{"partial may be short", seg1 + ".partial", good[:segmentSize/2], true, 0, ""},
		{"partial wrong system id", seg1 + ".partial", wrongSys, true, CodeArchiveMismatch, "do not match"},
		{"check off: wrong system id", seg1, wrongSys, false, 0, ""},
		{"check off: garbage", seg1, []byte("not a WAL segment"), false, 0, ""},
		{"history is not checked", "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), true, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newTestRepo(t, "repo1", false, testCluster, nil)
			opts := lz4Opts()
			opts.HeaderCheck = tc.check
			_, err := newPusher(t, opts, r).Push(ctx, writeFile(t, t.TempDir(), tc.wal, tc.data))
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := r.archived(t, "15-1"); len(got) != 1 {
					t.Fatalf("archived %v, want one file", got)
				}
				return
			}
			if codeOf(err) != tc.code {
				t.Fatalf("error %v (code %d), want code %d", err, codeOf(err), tc.code)
			}
			mustContain(t, err, tc.msg)
			if got := r.archived(t, "15-1"); len(got) != 0 {
				t.Fatalf("refused file was archived: %v", got)
			}
		})
	}
}

// noIO is a store that fails the test on any call.
func noIO(t *testing.T) func(storage.Store) storage.Store {
	return func(s storage.Store) storage.Store {
		fail := func(op, key string) error {
			t.Errorf("storage %s %s called", op, key)
			return errors.New("unexpected I/O")
		}
		return &fault.Store{
			Inner:        s,
			BeforePut:    func(_ context.Context, key string, r io.Reader) (io.Reader, error) { return nil, fail("put", key) },
			BeforeGet:    func(_ context.Context, key string, _ storage.Range) error { return fail("get", key) },
			BeforeStat:   func(_ context.Context, key string) error { return fail("stat", key) },
			BeforeList:   func(_ context.Context, prefix string) error { return fail("list", prefix) },
			BeforeDelete: func(_ context.Context, key string) error { return fail("delete", key) },
		}
	}
}

func TestInvalidNamesRefusedBeforeIO(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, "repo1", false, testCluster, nil)
	targets, cl, err := OpenPush(t.Context(), repositories(r), &testCluster)
	if err != nil {
		t.Fatal(err)
	}
	// From here on, any storage call fails the test.
	guarded := newTestRepo(t, "repo1", false, testCluster, noIO(t))
	targets[0].Repo = guarded.rs
	opts := lz4Opts()
	opts.Cluster = cl
	p, err := NewPusher(targets, opts)
	if err != nil {
		t.Fatal(err)
	}
	sources := []Source{{Repo: guarded.rs, ArchiveIDs: []string{"15-1"}}}
	dir := t.TempDir()
	for _, name := range []string{"foo", "00000001000000000000000g", "archive.info", "00000002Xhistory", "000000010000000000000001.ready", "."} {
		// The file exists, so only the name can be the reason.
		p1 := dir
		if name != "." {
			p1 = writeFile(t, dir, name, []byte("data"))
		}
		if _, err := p.Push(t.Context(), p1); !errors.Is(err, ErrInvalidName) || codeOf(err) != CodeParamInvalid {
			t.Errorf("Push(%q): %v, want ErrInvalidName with code 96", name, err)
		}
		if _, err := Get(t.Context(), sources, name, filepath.Join(dir, "dest"), nil); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(%q): %v, want ErrInvalidName", name, err)
		}
	}
	if _, err := Get(t.Context(), sources, "../"+seg1, filepath.Join(dir, "dest"), nil); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Get of a path: %v, want ErrInvalidName", err)
	}
	// A missing file is reported as such, still without storage I/O.
	if _, err := p.Push(t.Context(), filepath.Join(dir, seg1)); codeOf(err) != CodeFileMissing {
		t.Errorf("missing file: %v, want code 55", err)
	}
}

func TestPushFailingRepo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var broken atomic.Bool
	broken.Store(true)
	failPut := func(s storage.Store) storage.Store {
		return &fault.Store{Inner: s, BeforePut: func(_ context.Context, key string, r io.Reader) (io.Reader, error) {
			if broken.Load() {
				return nil, storage.ErrPermission
			}
			return r, nil
		}}
	}
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", true, testCluster, failPut)
	r3 := newTestRepo(t, "repo3", true, testCluster, nil)
	p := newPusher(t, lz4Opts(), r1, r2, r3)
	data := smallSegment(5, testSysID, 0.5)
	walPath := writeFile(t, t.TempDir(), seg1, data)

	res, err := p.Push(ctx, walPath)
	var pe *PushError
	if !errors.As(err, &pe) || codeOf(err) != CodeCommand || len(pe.Repos) != 1 || pe.Repos[0].Repo != "repo2" {
		t.Fatalf("push with repo2 failing: %v, want a PushError naming repo2 only, code 104", err)
	}
	mustContain(t, err, "archive-push command encountered error(s)", "repo2")
	if !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("error %v does not wrap the cause", err)
	}
	if !slices.Equal(res.Written, []string{"repo1", "repo3"}) {
		t.Fatalf("written %v, want repo1 and repo3", res.Written)
	}
	checkSegment(t, r1, seg1, data, compress.Lz4)
	checkSegment(t, r3, seg1, data, compress.Lz4)
	if got := r2.archived(t, "15-1"); len(got) != 0 {
		t.Fatalf("repo2 holds %v", got)
	}

	// PostgreSQL retries once the repository works again.
	broken.Store(false)
	res, err = p.Push(ctx, walPath)
	if err != nil || !slices.Equal(res.Written, []string{"repo2"}) || !slices.Equal(res.Existing, []string{"repo1", "repo3"}) {
		t.Fatalf("retry: %+v, %v", res, err)
	}
	checkSegment(t, r2, seg1, data, compress.Lz4)

	// A listing failure is the repository's error too.
	r4 := newTestRepo(t, "repo4", false, testCluster, func(s storage.Store) storage.Store {
		return &fault.Store{Inner: s, BeforeList: func(context.Context, string) error { return errors.New("list refused") }}
	})
	seg2 := "000000010000000000000002"
	_, err = newPusher(t, lz4Opts(), r1, r4).Push(ctx, writeFile(t, t.TempDir(), seg2, data))
	if codeOf(err) != CodeCommand {
		t.Fatalf("listing failure: %v, want code 104", err)
	}
	mustContain(t, err, "repo4", "list refused")
	if got := r1.archived(t, "15-1"); len(got) != 2 {
		t.Fatalf("repo1 holds %v, want two segments", got)
	}
}

func TestPushUnusableRepo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", false, testCluster, nil)
	for _, f := range []string{"archive.info", "archive.info.copy"} {
		if err := os.Remove(filepath.Join(r2.dir, "archive/db", f)); err != nil {
			t.Fatal(err)
		}
	}
	other := newTestRepo(t, "repo3", false, Cluster{Version: "15", SystemID: 42}, nil)
	targets, cl, err := OpenPush(ctx, repositories(r1, r2, other), &testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if targets[0].Err != nil || targets[1].Err == nil || codeOf(targets[2].Err) != CodeArchiveMismatch {
		t.Fatalf("targets: %v / %v / %v", targets[0].Err, targets[1].Err, targets[2].Err)
	}
	mustContain(t, targets[2].Err, "PostgreSQL version 15, system-id 7301234567890123456 do not match repo3 stanza version 15, system-id 42")
	opts := lz4Opts()
	opts.Cluster = cl
	p, err := NewPusher(targets, opts)
	if err != nil {
		t.Fatal(err)
	}
	data := smallSegment(6, testSysID, 0.2)
	res, err := p.Push(ctx, writeFile(t, t.TempDir(), seg1, data))
	if codeOf(err) != CodeCommand || !slices.Equal(res.Written, []string{"repo1"}) {
		t.Fatalf("%+v, %v: want code 104 with repo1 written", res, err)
	}
	mustContain(t, err, "repo2", "archive.info", "repo3", "do not match")
	checkSegment(t, r1, seg1, data, compress.Lz4)

	// No usable repository: code 103.
	_, _, err = OpenPush(ctx, repositories(r2, other), &testCluster)
	if codeOf(err) != CodeRepoInvalid {
		t.Fatalf("no usable repository: %v, want code 103", err)
	}
	mustContain(t, err, "unable to find a valid repository", "repo2", "repo3")
	if _, err := NewPusher(targets[1:], opts); codeOf(err) != CodeRepoInvalid {
		t.Fatalf("NewPusher without usable targets: %v, want code 103", err)
	}

	// Without pg_control the first usable repository is the truth and the
	// others must agree with it.
	targets, cl, err = OpenPush(ctx, repositories(r2, other, r1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl.SystemID != 42 || targets[1].Err != nil || codeOf(targets[2].Err) != CodeArchiveMismatch {
		t.Fatalf("cluster %+v, targets %v / %v", cl, targets[1].Err, targets[2].Err)
	}
	mustContain(t, targets[2].Err, "repo3 stanza version 15, system-id 42 do not match repo1")
}

func TestPushHistoryFiles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", true, testCluster, nil)
	p := newPusher(t, lz4Opts(), r1, r2)
	dir := t.TempDir()
	for _, tc := range []struct{ name, stored string }{
		{"00000002.history", "00000002.history"},
		{"000000010000000000000002.00000028.backup", "0000000100000000/000000010000000000000002.00000028.backup"},
	} {
		for i, content := range []string{"first content\n", "second, longer content replaces the first\n"} {
			res, err := p.Push(ctx, writeFile(t, dir, tc.name, []byte(content)))
			if err != nil {
				t.Fatalf("push %s #%d: %v", tc.name, i, err)
			}
			if res.Stored != int64(len(content)) || len(res.Written) != 2 {
				t.Fatalf("push %s: %+v", tc.name, res)
			}
			for _, r := range []*testRepo{r1, r2} {
				raw, err := os.ReadFile(filepath.Join(r.dir, "archive/db/15-1", tc.stored))
				if err != nil {
					t.Fatal(err)
				}
				if enc := bytes.HasPrefix(raw, []byte("Salted__")); enc != (r.pass != "") {
					t.Fatalf("%s in %s: encrypted=%v", tc.name, r.rs.Name(), enc)
				}
				sources := OpenGet(ctx, repositories(r), testCluster)
				dest := filepath.Join(t.TempDir(), "RECOVERYHISTORY")
				if _, err := Get(ctx, sources, tc.name, dest, nil); err != nil {
					t.Fatalf("get %s from %s: %v", tc.name, r.rs.Name(), err)
				}
				if got, _ := os.ReadFile(dest); string(got) != content {
					t.Fatalf("get %s from %s: %q, want %q", tc.name, r.rs.Name(), got, content)
				}
			}
		}
	}
}

func TestPushPartial(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newTestRepo(t, "repo1", true, testCluster, nil)
	p := newPusher(t, lz4Opts(), r)
	data := makeSegment(7, testSysID, 0.1)
	name := seg1 + ".partial"
	if _, err := p.Push(ctx, writeFile(t, t.TempDir(), name, data)); err != nil {
		t.Fatal(err)
	}
	want := []string{"0000000100000000/" + name + "-" + sha1hex(data) + ".lz4"}
	if got := r.archived(t, "15-1"); !slices.Equal(got, want) {
		t.Fatalf("archived %v, want %v", got, want)
	}
	// The full segment of the same name is another file.
	if _, err := p.Push(ctx, writeFile(t, t.TempDir(), seg1, smallSegment(8, testSysID, 0.1))); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	res, err := Get(ctx, OpenGet(ctx, repositories(r), testCluster), name, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) || res.SHA1 != sha1hex(data) {
		t.Fatal("partial segment does not round-trip")
	}
}

func TestEncryptReaderRewind(t *testing.T) {
	t.Parallel()
	plain := smallSegment(9, testSysID, 0.05)[:3*encryptChunk+123]
	const pass = "sub-passphrase"
	er, err := newEncryptReader(plain, pass)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 100000)
	if _, err := io.ReadFull(er, head); err != nil {
		t.Fatal(err)
	}
	if pos, err := er.Seek(0, io.SeekCurrent); err != nil || pos != int64(len(head)) {
		t.Fatalf("position %d, %v; want %d", pos, err, len(head))
	}
	if _, err := er.Seek(10, io.SeekStart); err == nil {
		t.Fatal("seek to 10 succeeded")
	}
	if _, err := er.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(er)
	if err != nil {
		t.Fatal(err)
	}
	if want := 16 + (len(plain)/16+1)*16; len(all) != want {
		t.Fatalf("ciphertext is %d bytes, want %d", len(all), want)
	}
	dr, err := cipher.NewDecrypter(bytes.NewReader(all), []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(dr); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("rewound stream does not decrypt to the plaintext: %v", err)
	}

	// Through the retry decorator: a Put that fails after consuming the
	// stream is replayed from the start and stores a valid object.
	var failures atomic.Int32
	r := newTestRepo(t, "repo1", true, testCluster, func(s storage.Store) storage.Store {
		flaky := &fault.Store{Inner: s, BeforePut: func(_ context.Context, key string, r io.Reader) (io.Reader, error) {
			if failures.Add(1) == 1 {
				_, _ = io.CopyN(io.Discard, r, 70000)
				return nil, errors.New("connection reset")
			}
			return r, nil
		}}
		return retry.New(flaky, retry.Config{Attempts: 3, Initial: 1})
	})
	data := smallSegment(10, testSysID, 0.3)
	if _, err := newPusher(t, lz4Opts(), r).Push(t.Context(), writeFile(t, t.TempDir(), seg1, data)); err != nil {
		t.Fatalf("push through a flaky store: %v", err)
	}
	if failures.Load() < 2 {
		t.Fatal("the put was not retried")
	}
	checkSegment(t, r, seg1, data, compress.Lz4)
}

func TestConcurrentPushes(t *testing.T) {
	t.Parallel()
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", true, testCluster, nil)
	p := newPusher(t, lz4Opts(), r1, r2)
	dir := t.TempDir()
	segs := map[string][]byte{}
	for i := range 6 {
		name := "0000000100000000000000" + string("0123456789ABCDEF"[i]) + "0"
		segs[name] = smallSegment(uint64(100+i), testSysID, 0.2)
	}
	errs := make(chan error, len(segs))
	for name, data := range segs {
		go func() {
			_, err := p.Push(t.Context(), writeFile(t, dir, name, data))
			errs <- err
		}()
	}
	for range segs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range segs {
		for _, r := range []*testRepo{r1, r2} {
			key := r.rs.ArchiveKey(repo.ArchivePath("15-1", name+"-"+sha1hex(data)+".lz4"))
			fc, err := r.rs.CheckFile(t.Context(), key, storage.Range{}, r.pass, compress.Lz4)
			if err != nil || fc.SHA1 != sha1hex(data) {
				t.Fatalf("%s in %s: %+v, %v", name, r.rs.Name(), fc, err)
			}
		}
	}
}

func TestNewPusherOptions(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, "repo1", false, testCluster, nil)
	targets, cl, err := OpenPush(t.Context(), repositories(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl != testCluster {
		t.Fatalf("cluster from archive.info %+v, want %+v", cl, testCluster)
	}
	for _, tc := range []struct {
		name string
		opts PushOptions
		ok   bool
	}{
		{"lz4", PushOptions{CompressType: compress.Lz4, CompressLevel: 1, HeaderCheck: true, Cluster: cl}, true},
		{"none", PushOptions{CompressType: compress.None}, true},
		{"bz2 cannot be written", PushOptions{CompressType: compress.Bz2, CompressLevel: 9}, false},
		{"gz level out of range", PushOptions{CompressType: compress.Gz, CompressLevel: 10}, false},
		{"header check without a cluster", PushOptions{CompressType: compress.Gz, CompressLevel: 6, HeaderCheck: true}, false},
	} {
		if _, err := NewPusher(targets, tc.opts); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestPushRepos checks that a push restricted to some repositories reads the
// file once for them, writes only there, and reports each repository's
// outcome as soon as it is known: a fast repository before a stalled one.
func TestPushRepos(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	gate := make(chan struct{})
	stall := func(s storage.Store) storage.Store {
		return &fault.Store{Inner: s, BeforePut: func(ctx context.Context, key string, r io.Reader) (io.Reader, error) {
			select {
			case <-gate:
				return r, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}}
	}
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", true, testCluster, stall)
	r3 := newTestRepo(t, "repo3", true, testCluster, nil)
	p := newPusher(t, lz4Opts(), r1, r2, r3)
	if got := p.Repos(); !slices.Equal(got, []string{"repo1", "repo2", "repo3"}) {
		t.Fatalf("Repos() = %v", got)
	}
	data := smallSegment(9, testSysID, 0.5)
	walPath := writeFile(t, t.TempDir(), seg1, data)

	// Only repo3.
	var mu sync.Mutex
	reported := map[string]error{}
	record := func(repo string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := reported[repo]; dup {
			t.Errorf("%s reported twice", repo)
		}
		reported[repo] = err
	}
	res, err := p.PushRepos(ctx, walPath, []string{"repo3"}, record)
	if err != nil || !slices.Equal(res.Written, []string{"repo3"}) {
		t.Fatalf("push to repo3: %+v %v", res, err)
	}
	checkSegment(t, r3, seg1, data, compress.Lz4)
	if got := r1.archived(t, "15-1"); len(got) != 0 {
		t.Fatalf("repo1 was not selected but holds %v", got)
	}
	if len(reported) != 1 || reported["repo3"] != nil {
		t.Fatalf("reports %v, want repo3 ok", reported)
	}

	// repo1 and repo2, repo2 stalled: repo1 is reported while repo2 waits,
	// and repo3 is neither listed nor written.
	reported = map[string]error{}
	fast := make(chan struct{})
	pushed := make(chan error, 1)
	go func() {
		_, err := p.PushRepos(ctx, walPath, []string{"repo1", "repo2"}, func(repo string, err error) {
			record(repo, err)
			if repo == "repo1" {
				close(fast)
			}
		})
		pushed <- err
	}()
	select {
	case <-fast:
	case <-time.After(30 * time.Second):
		t.Fatal("repo1 was not reported while repo2 stalled")
	}
	select {
	case err := <-pushed:
		t.Fatalf("the push returned before repo2 was done: %v", err)
	default:
	}
	close(gate)
	if err := <-pushed; err != nil {
		t.Fatalf("push to repo1 and repo2: %v", err)
	}
	checkSegment(t, r1, seg1, data, compress.Lz4)
	checkSegment(t, r2, seg1, data, compress.Lz4)
	if len(reported) != 2 || reported["repo1"] != nil || reported["repo2"] != nil {
		t.Fatalf("reports %v, want repo1 and repo2 ok", reported)
	}

	// Same name, other content, to the repository that holds it: refused,
	// and no repository is reported (they share the returned error).
	reported = map[string]error{}
	other := writeFile(t, t.TempDir(), seg1, smallSegment(10, testSysID, 0.5))
	_, err = p.PushRepos(ctx, other, []string{"repo3"}, record)
	if codeOf(err) != CodeArchiveDup || len(reported) != 0 {
		t.Fatalf("duplicate: %v (reports %v), want code 45 and no report", err, reported)
	}
	checkSegment(t, r3, seg1, data, compress.Lz4)
}

// TestPushListWait checks that with ListWait a repository whose listing
// hangs does not keep the others from being written and reported, that it
// is written once its listing comes, and that a duplicate it then reveals
// is still refused there.
func TestPushListWait(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var gate atomic.Pointer[chan struct{}]
	stallList := func(s storage.Store) storage.Store {
		return &fault.Store{Inner: s, BeforeList: func(ctx context.Context, _ string) error {
			if g := gate.Load(); g != nil {
				select {
				case <-*g:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}}
	}
	r1 := newTestRepo(t, "repo1", false, testCluster, nil)
	r2 := newTestRepo(t, "repo2", true, testCluster, stallList)
	opts := lz4Opts()
	opts.ListWait = 50 * time.Millisecond
	p := newPusher(t, opts, r1, r2)

	run := func(seg string, data []byte) (chan struct{}, chan error, chan struct{}) {
		g := make(chan struct{})
		gate.Store(&g)
		fast := make(chan struct{})
		pushed := make(chan error, 1)
		walPath := writeFile(t, t.TempDir(), seg, data)
		go func() {
			_, err := p.PushRepos(ctx, walPath, nil, func(repo string, err error) {
				if repo == "repo1" && err == nil {
					close(fast)
				}
			})
			pushed <- err
		}()
		return g, pushed, fast
	}
	data := smallSegment(21, testSysID, 0.5)
	g, pushed, fast := run(seg1, data)
	select {
	case <-fast:
	case err := <-pushed:
		t.Fatalf("the push ended before repo1 was reported: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("repo1 was not written while repo2's listing hung")
	}
	checkSegment(t, r1, seg1, data, compress.Lz4)
	close(g)
	if err := <-pushed; err != nil {
		t.Fatalf("push: %v", err)
	}
	checkSegment(t, r2, seg1, data, compress.Lz4)

	// repo2 already holds seg2 with other content; its listing is late.
	seg2 := "000000010000000000000002"
	gate.Store(nil)
	old := smallSegment(22, testSysID, 0.5)
	if _, err := newPusher(t, lz4Opts(), r2).Push(ctx, writeFile(t, t.TempDir(), seg2, old)); err != nil {
		t.Fatal(err)
	}
	g, pushed, _ = run(seg2, smallSegment(23, testSysID, 0.5))
	time.Sleep(200 * time.Millisecond)
	close(g)
	var de *DuplicateError
	if err := <-pushed; !errors.As(err, &de) || de.Repo != "repo2" {
		t.Fatalf("late duplicate: %v, want a DuplicateError in repo2", err)
	}
	if got := r2.archived(t, "15-1"); !slices.Contains(got, seg2[:16]+"/"+seg2+"-"+sha1hex(old)+".lz4") || len(got) != 2 {
		t.Fatalf("repo2 holds %v after the refused push, want its own copy of %s kept", got, seg2)
	}
}
