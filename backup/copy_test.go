package backup

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/posix"
)

func sha1Hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// testCopier returns a copier into a posix store under a temp dir, for pgdata.
func testCopier(t *testing.T, pgdata string, ct repo.CompressType, pass string) (*copier, *repo.Repository) {
	t.Helper()
	store, err := posix.New(posix.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rs := repo.Open(store, "repo1", "db", "")
	level := uint32(3)
	m := &repo.Manifest{Label: "20260101-000000F", CipherPass: pass, Options: repo.ManifestOptions{CompressType: ct, CompressLevel: &level}}
	c, err := newCopier(rs, m, pgdata, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, rs
}

func TestCopyFile(t *testing.T) {
	t.Parallel()
	content := make([]byte, 3<<20+17) // several buffers, not a multiple of any
	if _, err := rand.Read(content[:1<<20]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ct   repo.CompressType
		pass string
	}{
		{"none", repo.CompressNone, ""},
		{"gz", repo.CompressGz, ""},
		{"zst-aes", repo.CompressZst, "sub-passphrase"},
		{"lz4-aes", repo.CompressLz4, "sub-passphrase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pgdata := t.TempDir()
			c, rs := testCopier(t, pgdata, tc.ct, tc.pass)
			w := newWorker() // reused across files, as a copy goroutine does
			codec, err := tc.ct.Codec()
			if err != nil {
				t.Fatal(err)
			}
			for _, sc := range []struct {
				name     string
				data     []byte
				size     uint64 // the manifest's size
				wantSize int
			}{
				{"whole", content, uint64(len(content)), len(content)},
				{"grew", content, 1 << 20, 1 << 20},
				{"shrank", content[:1000], 5000, 1000},
				{"empty", nil, 0, 0},
			} {
				if err := os.WriteFile(filepath.Join(pgdata, sc.name), sc.data, 0o600); err != nil {
					t.Fatal(err)
				}
				f := repo.ManifestFile{Name: "pg_data/" + sc.name, Size: sc.size}
				res, err := c.one(t.Context(), &f, false, w)
				if err != nil {
					t.Fatalf("%s: %v", sc.name, err)
				}
				want := sc.data[:sc.wantSize]
				if res.size != uint64(len(want)) || res.sum != sha1Hex(want) {
					t.Errorf("%s: copied %d bytes sha1 %s, want %d %s", sc.name, res.size, res.sum, len(want), sha1Hex(want))
				}
				key := c.prefix + f.Name + c.ext
				raw := readObject(t, rs.Store(), key)
				if res.repoSize != uint64(len(raw)) || res.repoSum != sha1Hex(raw) {
					t.Errorf("%s: repo size %d sha1 %s, stored %d %s", sc.name, res.repoSize, res.repoSum, len(raw), sha1Hex(raw))
				}
				if tc.pass != "" && bytes.Contains(raw, []byte("Salted__")) == false {
					t.Errorf("%s: stored object is not encrypted", sc.name)
				}
				back, err := rs.CheckFile(t.Context(), key, storage.Range{}, tc.pass, codec)
				if err != nil {
					t.Fatalf("%s: read back: %v", sc.name, err)
				}
				if back.Size != int64(len(want)) || back.SHA1 != sha1Hex(want) {
					t.Errorf("%s: read back %d %s, want %d %s", sc.name, back.Size, back.SHA1, len(want), sha1Hex(want))
				}
			}
		})
	}
}

func readObject(t *testing.T, s storage.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopyAll(t *testing.T) {
	t.Parallel()
	pgdata := t.TempDir()
	c, rs := testCopier(t, pgdata, repo.CompressGz, "")
	files := map[string][]byte{
		"a": bytes.Repeat([]byte("a"), 100000), "b": []byte("bbb"), "c": bytes.Repeat([]byte("c"), 7000),
		"same": []byte("unchanged"), "changed": []byte("changed!!"), "gone": []byte("x"),
	}
	m := &repo.Manifest{Label: "20260101-000000F", Options: repo.ManifestOptions{CompressType: repo.CompressGz}}
	for name, data := range files {
		if name != "gone" {
			if err := os.WriteFile(filepath.Join(pgdata, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		f := repo.ManifestFile{Name: "pg_data/" + name, Size: uint64(len(data)), RepoSize: uint64(len(data)), Timestamp: 5}
		if name == "same" || name == "changed" {
			f.Reference, f.Checksum, f.RepoSize, f.RepoChecksum = "20250101-000000F", sha1Hex([]byte("unchanged")), 77, sha1Hex([]byte("old"))
		}
		m.Files = append(m.Files, f)
	}
	verify := map[string]bool{"pg_data/same": true, "pg_data/changed": true}
	if err := c.copyAll(t.Context(), m, verify, 3); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != len(files)-1 {
		t.Errorf("%d files after copy, want %d (the removed one dropped)", len(m.Files), len(files)-1)
	}
	for _, f := range m.Files {
		data := files[f.Name[len("pg_data/"):]]
		switch f.Name {
		case "pg_data/gone":
			t.Errorf("removed file is still in the manifest")
		case "pg_data/same":
			if f.Reference != "20250101-000000F" || f.RepoSize != 77 {
				t.Errorf("%s: reference %q repo size %d: the matching delta file was copied", f.Name, f.Reference, f.RepoSize)
			}
			continue
		}
		if f.Reference != "" || f.Checksum != sha1Hex(data) || f.RepoChecksum == "" {
			t.Errorf("%s: reference %q checksum %s rck %q after copy", f.Name, f.Reference, f.Checksum, f.RepoChecksum)
		}
		back, err := rs.CheckFile(t.Context(), c.prefix+f.Name+".gz", storage.Range{}, "", compress.Gz)
		if err != nil || back.SHA1 != sha1Hex(data) {
			t.Errorf("%s: read back %+v, %v", f.Name, back, err)
		}
	}
	if ok, _ := rs.Exists(t.Context(), c.prefix+"pg_data/same.gz"); ok {
		t.Errorf("the matching delta file was stored")
	}
}
