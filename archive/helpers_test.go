package archive

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/posix"
)

const (
	testStanza  = "db"
	testSysID   = uint64(7301234567890123456)
	segmentSize = 16 << 20
	walPageSize = 8192
	pg15Magic   = 0xD110
)

var testCluster = Cluster{Version: "15", SystemID: testSysID}

// makeSegment builds a 16 MiB WAL segment of PostgreSQL 15 for system id
// sysID: a long page header on the first page, short headers on the others,
// and records made of a mix of repeated phrases, random bytes and zeros,
// like real WAL (lz4 compresses it to roughly a third). seed varies the
// content; fill is the fraction of pages that hold records (the rest are
// zero, as after a pg_switch_wal).
func makeSegment(seed uint64, sysID uint64, fill float64) []byte {
	return makeSegmentSize(segmentSize, seed, sysID, fill)
}

// smallSegment is makeSegment for a 1 MiB segment (initdb --wal-segsize=1),
// which keeps the tests quick under the race detector.
func smallSegment(seed uint64, sysID uint64, fill float64) []byte {
	return makeSegmentSize(1<<20, seed, sysID, fill)
}

func makeSegmentSize(size int, seed uint64, sysID uint64, fill float64) []byte {
	b := make([]byte, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	random := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8(key).Read(random)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	phrases := make([][]byte, 256)
	for i := range phrases {
		at := rng.IntN(len(random) - 128)
		phrases[i] = random[at : at+16+rng.IntN(96)]
	}
	var zeros [96]byte
	used := int(float64(size/walPageSize) * fill)
	for page := range size / walPageSize {
		p := b[page*walPageSize : (page+1)*walPageSize]
		binary.LittleEndian.PutUint16(p[0:], pg15Magic)
		binary.LittleEndian.PutUint32(p[4:], 1) // timeline
		binary.LittleEndian.PutUint64(p[8:], uint64(page*walPageSize))
		off := 24
		if page == 0 {
			binary.LittleEndian.PutUint16(p[2:], 0x0002) // XLP_LONG_HEADER
			binary.LittleEndian.PutUint64(p[24:], sysID)
			binary.LittleEndian.PutUint32(p[32:], uint32(size))
			binary.LittleEndian.PutUint32(p[36:], walPageSize)
			off = 40
		}
		if page >= used {
			continue
		}
		for off < walPageSize {
			var chunk []byte
			switch r := rng.Uint64(); {
			case r%10 < 6:
				chunk = phrases[(r>>8)%uint64(len(phrases))]
			case r%10 < 9:
				at := int((r >> 8) % uint64(len(random)-32))
				chunk = random[at : at+8+int(r>>40)%24]
			default:
				chunk = zeros[:32+int(r>>40)%64]
			}
			off += copy(p[off:], chunk)
		}
	}
	return b
}

// writeFile writes data as dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testRepo is a posix repository with the stanza created for cl.
type testRepo struct {
	dir   string
	store storage.Store
	rs    *repo.Repository
	pass  string // archive sub-passphrase, "" when plain
}

// newTestRepo creates a stanza (archive.info only) in a new posix
// repository. wrap, when not nil, decorates the store (fault injection).
func newTestRepo(t testing.TB, name string, encrypted bool, cl Cluster, wrap func(storage.Store) storage.Store) *testRepo {
	t.Helper()
	dir := t.TempDir()
	ps, err := posix.New(posix.Config{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	var s storage.Store = ps
	if wrap != nil {
		s = wrap(ps)
	}
	userPass, sub := "", ""
	if encrypted {
		userPass = "user-pass-" + name
		if sub, err = cipher.NewPassphrase(); err != nil {
			t.Fatal(err)
		}
	}
	// The stanza is written through the bare store so that faults only hit the test.
	ai, err := repo.NewArchiveInfo(cl.Version, cl.SystemID, sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Open(ps, name, testStanza, userPass).SaveArchiveInfo(t.Context(), ai); err != nil {
		t.Fatal(err)
	}
	return &testRepo{dir: dir, store: s, rs: repo.Open(s, name, testStanza, userPass), pass: sub}
}

func repositories(rs ...*testRepo) []*repo.Repository {
	out := make([]*repo.Repository, len(rs))
	for i, r := range rs {
		out[i] = r.rs
	}
	return out
}

// archived lists the files under archive/<stanza>/<archiveID>/ (relative),
// sorted.
func (r *testRepo) archived(t testing.TB, archiveID string) []string {
	t.Helper()
	root := filepath.Join(r.dir, "archive", testStanza, archiveID)
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// codeOf returns the pgBackRest code an error carries, 0 if none.
func codeOf(err error) int {
	var ce interface{ Code() int }
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

func mustContain(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}
