package backup

import (
	"bytes"
	"crypto/rand"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/restore"
	"github.com/pgsidecar/pgsidecar/storage"
)

// TestPlanJobsPgbackrestOrder replays the bundling case of pgBackRest 2.45's
// backup test ("online 11 full backup with tablespaces, bundles"): bundle size
// and limit 8 KiB. pgBackRest logs base/1/2 on its own, then bundle 1 =
// stuff.conf, postgresql.auto.conf, postgresql.conf, PG_VERSION (bigish.dat
// and base/1/1 do not fit and are skipped), bundle 2 = bigish.dat, bundle 3 =
// base/1/1, bundle 4 = pg_control; zero-length files are not queued. A
// tablespace file forms its own queue, after pg_data's.
func TestPlanJobsPgbackrestOrder(t *testing.T) {
	t.Parallel()
	m := &repo.Manifest{Files: []repo.ManifestFile{
		{Name: "pg_data/PG_VERSION", Size: 2, Timestamp: 1572200000},
		{Name: "pg_data/base/1/1", Size: 8192, Timestamp: 1572200000},
		{Name: "pg_data/base/1/2", Size: 24576, Timestamp: 1572400000},
		{Name: "pg_data/bigish.dat", Size: 8191, Timestamp: 1500000001},
		{Name: "pg_data/global/pg_control", Size: 8192, Timestamp: 1572400000},
		{Name: "pg_data/postgresql.auto.conf", Size: 12, Timestamp: 1500000000},
		{Name: "pg_data/postgresql.conf", Size: 11, Timestamp: 1570000000},
		{Name: "pg_data/stuff.conf", Size: 12, Timestamp: 1500000000},
		{Name: "pg_tblspc/32768/PG_11_201809051/1/6", Size: 100, Timestamp: 1572200000},
	}}
	c := &copier{bundle: true, bundleSize: 8192, bundleLimit: 8192}
	todo := make([]int, len(m.Files))
	for i := range todo {
		todo[i] = len(todo) - 1 - i // the order the files come in must not matter
	}
	type job struct {
		id    uint64
		files string
	}
	var got []job
	for _, j := range c.planJobs(m, todo) {
		var names []string
		for _, i := range j.files {
			names = append(names, strings.TrimPrefix(m.Files[i].Name, "pg_data/"))
		}
		got = append(got, job{j.bundleID, strings.Join(names, ",")})
	}
	want := []job{
		{0, "base/1/2"},
		{1, "stuff.conf,postgresql.auto.conf,postgresql.conf,PG_VERSION"},
		{2, "bigish.dat"},
		{3, "base/1/1"},
		{4, "global/pg_control"},
		{5, "pg_tblspc/32768/PG_11_201809051/1/6"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("jobs\n%v\nwant\n%v", got, want)
	}

	// Without bundling: one job per file, largest first.
	c.bundle = false
	jobs := c.planJobs(m, slices.Clone(todo))
	if len(jobs) != len(m.Files) || m.Files[jobs[0].files[0]].Name != "pg_data/base/1/2" {
		t.Fatalf("unbundled jobs %v", jobs)
	}
	for _, j := range jobs {
		if j.bundleID != 0 || len(j.files) != 1 {
			t.Fatalf("unbundled job %+v", j)
		}
	}
}

// bundleFixture is a data directory and the manifest of its files.
type bundleFixture struct {
	pgdata   string
	contents map[string][]byte // by manifest name
	m        *repo.Manifest
}

const tsOID = "16385"

// newBundleFixture writes a data directory with small files (bundled), large
// files (stored on their own), zero-length files and a tablespace, and
// returns it with the manifest a walk would give.
func newBundleFixture(t *testing.T, label string) *bundleFixture {
	t.Helper()
	pgdata := t.TempDir()
	big := make([]byte, 300<<10)
	if _, err := rand.Read(big[:100<<10]); err != nil {
		t.Fatal(err)
	}
	contents := map[string][]byte{
		"pg_data/PG_VERSION":                      []byte("15\n"),
		"pg_data/global/pg_control":               bytes.Repeat([]byte{7}, 8192),
		"pg_data/base/1/1259":                     bytes.Repeat([]byte("page"), 4096),
		"pg_data/base/1/1249":                     big,
		"pg_data/base/1/empty":                    nil,
		"pg_data/postgresql.auto.conf":            []byte("# nothing\n"),
		"pg_data/pg_xact/0000":                    bytes.Repeat([]byte{1, 2, 3}, 3000),
		"pg_data/global/pg_filenode.map":          bytes.Repeat([]byte("map"), 170),
		"pg_data/base/1/pg_filenode.map":          bytes.Repeat([]byte("MAP"), 170),
		"pg_data/stale":                           []byte("untouched for long"),
		"pg_data/empty":                           nil,
		"pg_tblspc/" + tsOID + "/PG_15_1/1/2":     bytes.Repeat([]byte("tablespace"), 100),
		"pg_tblspc/" + tsOID + "/PG_15_1/1/3":     big[:150<<10],
		"pg_tblspc/" + tsOID + "/PG_15_1/1/empty": nil,
	}
	for i := range 40 { // enough small files for several bundles
		contents["pg_data/base/1/"+strconv.Itoa(20000+i)] = bytes.Repeat([]byte{byte(i)}, 1000+i*97)
	}
	level := uint32(3)
	m := &repo.Manifest{
		Label: label, Type: repo.BackupFull, Bundle: true,
		DB:      repo.ManifestDB{ID: 1, SystemID: 7000000000000000001, Version: "15", CatalogVersion: 1},
		Options: repo.ManifestOptions{CompressType: repo.CompressNone, CompressLevel: &level},
		Targets: []repo.ManifestTarget{
			{Name: "pg_data", Path: "/orig/data", Type: repo.TargetPath},
			{Name: "pg_tblspc/" + tsOID, Path: "/orig/ts1", TablespaceID: 16385, TablespaceName: "ts1", Type: repo.TargetLink},
		},
		Links: []repo.ManifestLink{{Name: "pg_data/pg_tblspc/" + tsOID, Destination: "/orig/ts1"}},
	}
	dirs := map[string]bool{"pg_data": true, "pg_data/pg_tblspc": true, "pg_tblspc": true, "pg_tblspc/" + tsOID: true}
	for i, name := range slices.Sorted(maps.Keys(contents)) {
		p := filepath.Join(pgdata, strings.TrimPrefix(name, "pg_data/"))
		if strings.HasPrefix(name, "pg_tblspc/") {
			p = filepath.Join(pgdata, name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, contents[name], 0o600); err != nil {
			t.Fatal(err)
		}
		for d := filepath.Dir(filepath.FromSlash(name)); d != "."; d = filepath.Dir(d) {
			dirs[filepath.ToSlash(d)] = true
		}
		ts := int64(1700000000 + i%7) // several files per second
		if name == "pg_data/stale" {
			ts = 1600000000
		}
		m.Files = append(m.Files, repo.ManifestFile{
			Name: name, Size: uint64(len(contents[name])), RepoSize: uint64(len(contents[name])), Timestamp: ts, Mode: 0o600,
		})
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		m.Paths = append(m.Paths, repo.ManifestPath{Name: d, Mode: 0o700})
	}
	return &bundleFixture{pgdata: pgdata, contents: contents, m: m}
}

// bundleCopier is testCopier for fixture x's manifest: bundling with a small
// bundle size (64 KiB) and limit (16 KiB) so that the fixture fills several
// bundles and has files over the limit.
func bundleCopier(t *testing.T, rs *repo.Repository, x *bundleFixture) *copier {
	t.Helper()
	c, err := newCopier(rs, x.m, x.pgdata, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.bundleSize, c.bundleLimit = 64<<10, 16<<10
	return c
}

// checkBundles checks the manifest entries of m's files stored by m itself
// against the repository: every bundle object is exactly the concatenation of
// its files' stored bytes (bno/repo-size contiguous from 0, rck the SHA-1 of each
// slice), each slice decodes to its file; files over the limit are stored on
// their own, the others in bundles; zero-length files are not stored. It
// returns the number of bundle objects.
func checkBundles(t *testing.T, rs *repo.Repository, m *repo.Manifest, limit uint64) int {
	t.Helper()
	codec, err := m.Options.CompressType.Codec()
	if err != nil {
		t.Fatal(err)
	}
	ext, _ := m.Options.CompressType.Ext()
	prefix := rs.BackupKey(m.Label + "/")
	objects := map[string][]byte{}
	err = rs.Store().List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		objects[strings.TrimPrefix(oi.Key, prefix)] = readObject(t, rs.Store(), oi.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inBundle := map[uint64][]*repo.ManifestFile{}
	for i := range m.Files {
		f := &m.Files[i]
		if f.Reference != "" {
			continue
		}
		own := f.Name + ext
		switch {
		case f.Size == 0:
			if f.BundleID != 0 || f.RepoSize != 0 || f.RepoChecksum != "" {
				t.Errorf("%s: zero-length file with bundle %d repo size %d rck %q", f.Name, f.BundleID, f.RepoSize, f.RepoChecksum)
			}
			if _, ok := objects[own]; ok {
				t.Errorf("%s: zero-length file stored", f.Name)
			}
		case f.Size > limit:
			if f.BundleID != 0 {
				t.Errorf("%s: %d bytes, over the limit, bundled in %d", f.Name, f.Size, f.BundleID)
			}
			if _, ok := objects[own]; !ok {
				t.Errorf("%s: not stored as %s", f.Name, own)
			}
		default:
			if f.BundleID == 0 {
				t.Errorf("%s: %d bytes, not bundled", f.Name, f.Size)
			}
			if _, ok := objects[own]; ok {
				t.Errorf("%s: bundled and stored on its own", f.Name)
			}
			inBundle[f.BundleID] = append(inBundle[f.BundleID], f)
		}
	}
	bundles := 0
	for key := range objects {
		if strings.HasPrefix(key, "bundle/") {
			bundles++
			id, err := strconv.ParseUint(strings.TrimPrefix(key, "bundle/"), 10, 64)
			if err != nil || len(inBundle[id]) == 0 {
				t.Errorf("object %s holds no file of the manifest", key)
			}
		}
	}
	for id, files := range inBundle {
		raw, ok := objects["bundle/"+strconv.FormatUint(id, 10)]
		if !ok {
			t.Errorf("bundle %d: no object", id)
			continue
		}
		slices.SortFunc(files, func(a, b *repo.ManifestFile) int { return int(a.BundleOffset) - int(b.BundleOffset) })
		var next uint64
		for _, f := range files {
			if f.BundleOffset != next {
				t.Errorf("bundle %d: %s at offset %d, want %d (contiguous)", id, f.Name, f.BundleOffset, next)
			}
			next = f.BundleOffset + f.RepoSize
			if next > uint64(len(raw)) {
				t.Errorf("bundle %d: %s ends at %d, past the object's %d bytes", id, f.Name, next, len(raw))
				break
			}
			slice := raw[f.BundleOffset:next]
			if f.RepoChecksum != "" && sha1Hex(slice) != f.RepoChecksum {
				t.Errorf("bundle %d: %s: rck %s, slice SHA-1 %s", id, f.Name, f.RepoChecksum, sha1Hex(slice))
			}
			if m.CipherPass != "" && !bytes.HasPrefix(slice, []byte("Salted__")) {
				t.Errorf("bundle %d: %s is not encrypted on its own", id, f.Name)
			}
			back, err := rs.CheckFile(t.Context(), rs.BackupKey(repo.BundlePath(m.Label, id)),
				storage.Range{Offset: int64(f.BundleOffset), Length: int64(f.RepoSize)}, m.CipherPass, codec)
			if err != nil || uint64(back.Size) != f.Size || back.SHA1 != f.Checksum {
				t.Errorf("bundle %d: %s reads back %+v, %v; want %d bytes %s", id, f.Name, back, err, f.Size, f.Checksum)
			}
		}
		if next != uint64(len(raw)) {
			t.Errorf("bundle %d: files cover %d of its %d bytes", id, next, len(raw))
		}
	}
	return bundles
}

// restoreAndCompare restores m from rs with package restore and compares
// every file with want.
func restoreAndCompare(t *testing.T, rs *repo.Repository, m *repo.Manifest, want map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	data, ts := filepath.Join(dir, "data"), filepath.Join(dir, "ts")
	st, err := restore.Run(t.Context(), rs, m, restore.Options{
		Mapping: restore.Mapping{DataDir: data, TablespaceMap: map[string]string{"ts1": ts}}, ProcessMax: 3,
	})
	if err != nil {
		t.Fatalf("restore %s: %v", m.Label, err)
	}
	if st.Files != len(want) {
		t.Errorf("restore %s: %d files, want %d", m.Label, st.Files, len(want))
	}
	for name, content := range want {
		p := filepath.Join(data, strings.TrimPrefix(name, "pg_data/"))
		if rest, ok := strings.CutPrefix(name, "pg_tblspc/"+tsOID+"/"); ok {
			p = filepath.Join(ts, rest)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("restore %s: %s: %d bytes, %v; want %d bytes", m.Label, name, len(got), err, len(content))
		}
	}
}

// TestCopyAllBundled backs a data directory up with bundling (full, then an
// incremental after some files changed, one vanished and one appeared) for
// each compression and encryption, checks the manifest entries against the
// bundle objects, that the incremental references the full's bundles and
// stores only what changed, and restores both with package restore.
func TestCopyAllBundled(t *testing.T) {
	t.Parallel()
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
			x := newBundleFixture(t, "20260101-000000F")
			x.m.Options.CompressType, x.m.CipherPass = tc.ct, tc.pass
			_, rs := testCopier(t, x.pgdata, tc.ct, tc.pass)
			c := bundleCopier(t, rs, x)
			if err := c.copyAll(t.Context(), x.m, nil, 3); err != nil {
				t.Fatal(err)
			}
			if n := checkBundles(t, rs, x.m, c.bundleLimit); n < 3 {
				t.Errorf("%d bundle objects, want several", n)
			}
			full := x.m
			restoreAndCompare(t, rs, full, x.contents)

			// Incremental: change two files (one bundled, one large), remove one,
			// add one.
			want := maps.Clone(x.contents)
			changed := map[string][]byte{
				"pg_data/postgresql.auto.conf": []byte("work_mem = '8MB'\n"),
				"pg_data/base/1/1249":          bytes.Repeat([]byte("new"), 110<<10),
				"pg_data/base/1/30000":         []byte("a new relation"),
			}
			for name, content := range changed {
				if err := os.WriteFile(filepath.Join(x.pgdata, strings.TrimPrefix(name, "pg_data/")), content, 0o600); err != nil {
					t.Fatal(err)
				}
				want[name] = content
			}
			if err := os.Remove(filepath.Join(x.pgdata, "base", "1", "20003")); err != nil {
				t.Fatal(err)
			}
			delete(want, "pg_data/base/1/20003")
			incr := &repo.Manifest{
				Label: "20260101-000000F_20260102-000000I", Type: repo.BackupIncr, Bundle: true,
				DB: full.DB, Options: repo.ManifestOptions{CompressType: tc.ct, CompressLevel: full.Options.CompressLevel}, Targets: full.Targets, Links: full.Links, Paths: full.Paths,
			}
			for _, f := range full.Files {
				if _, gone := want[f.Name]; !gone {
					continue
				}
				g := repo.ManifestFile{Name: f.Name, Size: f.Size, RepoSize: f.Size, Timestamp: f.Timestamp, Mode: f.Mode}
				if content, ok := changed[f.Name]; ok {
					g.Size, g.RepoSize, g.Timestamp = uint64(len(content)), uint64(len(content)), f.Timestamp+100
				}
				incr.Files = append(incr.Files, g)
			}
			incr.Files = append(incr.Files, repo.ManifestFile{Name: "pg_data/base/1/30000", Size: 14, RepoSize: 14, Timestamp: 1700000100, Mode: 0o600})
			// The full's start is 0: every referenced file is delta-checked, found
			// unchanged, and keeps its reference; bundles of such files get no object.
			verify := ApplyPrior(incr, full, nil)
			if len(verify) < 20 {
				t.Fatalf("%d files to delta-check, want every referenced one", len(verify))
			}
			ci := bundleCopier(t, rs, &bundleFixture{pgdata: x.pgdata, m: incr})
			if err := ci.copyAll(t.Context(), incr, verify, 2); err != nil {
				t.Fatal(err)
			}
			checkBundles(t, rs, incr, ci.bundleLimit)
			fullFiles := map[string]repo.ManifestFile{}
			for _, f := range full.Files {
				fullFiles[f.Name] = f
			}
			for _, f := range incr.Files {
				_, isChanged := changed[f.Name]
				p := fullFiles[f.Name]
				switch {
				case f.Size == 0:
					if f.Reference != "" {
						t.Errorf("%s: zero-length file references %s", f.Name, f.Reference)
					}
				case isChanged:
					if f.Reference != "" {
						t.Errorf("%s: changed, but references %s", f.Name, f.Reference)
					}
				default:
					if f.Reference != full.Label || f.BundleID != p.BundleID || f.BundleOffset != p.BundleOffset || f.RepoSize != p.RepoSize {
						t.Errorf("%s: reference %q bundle %d/%d repo size %d; want %s's %d/%d %d", f.Name, f.Reference,
							f.BundleID, f.BundleOffset, f.RepoSize, full.Label, p.BundleID, p.BundleOffset, p.RepoSize)
					}
				}
			}
			restoreAndCompare(t, rs, incr, want)
		})
	}
}

// TestCopyAllBundleNothingToStore: a bundle whose files all match their
// prior (delta) or vanished gets no object, its id is used up, and the
// files keep their references.
func TestCopyAllBundleNothingToStore(t *testing.T) {
	t.Parallel()
	pgdata := t.TempDir()
	_, rs := testCopier(t, pgdata, repo.CompressGz, "")
	m := &repo.Manifest{Label: "20260101-000000F_20260102-000000I", Bundle: true, Options: repo.ManifestOptions{CompressType: repo.CompressGz}}
	verify := map[string]bool{}
	for _, name := range []string{"a", "b"} {
		data := []byte("content of " + name)
		if err := os.WriteFile(filepath.Join(pgdata, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		m.Files = append(m.Files, repo.ManifestFile{
			Name: "pg_data/" + name, Size: uint64(len(data)), RepoSize: 33, Timestamp: 5, Checksum: sha1Hex(data),
			RepoChecksum: sumA, Reference: "20260101-000000F", BundleID: 3, BundleOffset: 99,
		})
		verify["pg_data/"+name] = true
	}
	m.Files = append(m.Files, repo.ManifestFile{Name: "pg_data/gone", Size: 9, Timestamp: 5, Checksum: sumB, Reference: "20260101-000000F", BundleID: 3})
	verify["pg_data/gone"] = true
	c, err := newCopier(rs, m, pgdata, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.copyAll(t.Context(), m, verify, 2); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 {
		t.Fatalf("%d files, want 2 (the vanished one dropped)", len(m.Files))
	}
	for _, f := range m.Files {
		if f.Reference != "20260101-000000F" || f.BundleID != 3 || f.BundleOffset != 99 || f.RepoSize != 33 {
			t.Errorf("%s: %+v: the prior's reference and bundle were not kept", f.Name, f)
		}
	}
	if ok, _ := rs.Exists(t.Context(), c.bundleKey(1)); ok {
		t.Error("a bundle of unchanged files was stored")
	}
}

// TestCopyAllBundleFailure: a file that cannot be read fails the bundle, and
// no partial bundle object is left.
func TestCopyAllBundleFailure(t *testing.T) {
	t.Parallel()
	pgdata := t.TempDir()
	_, rs := testCopier(t, pgdata, repo.CompressZst, "pass")
	m := &repo.Manifest{Label: "20260101-000000F", Bundle: true, CipherPass: "pass", Options: repo.ManifestOptions{CompressType: repo.CompressZst}}
	for _, name := range []string{"a", "b", "c"} {
		m.Files = append(m.Files, repo.ManifestFile{Name: "pg_data/" + name, Size: 1000, Timestamp: int64(len(name))})
		if name == "b" { // a directory: opens, but cannot be read
			if err := os.Mkdir(filepath.Join(pgdata, name), 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(pgdata, name), bytes.Repeat([]byte(name), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := newCopier(rs, m, pgdata, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.copyAll(t.Context(), m, nil, 1)
	if err == nil || !strings.Contains(err.Error(), "pg_data/b") {
		t.Fatalf("copy with an unreadable file: %v, want an error naming it", err)
	}
	err = rs.Store().List(t.Context(), rs.BackupKey(m.Label+"/"), func(oi storage.ObjectInfo) error {
		return errors.New("object left behind: " + oi.Key)
	})
	if err != nil {
		t.Error(err)
	}
}

// TestCopyAllBundledProgress: with bundling, progress still ends at the total
// of the files copied (zero-length files count nothing).
func TestCopyAllBundledProgress(t *testing.T) {
	t.Parallel()
	x := newBundleFixture(t, "20260101-000000F")
	_, rs := testCopier(t, x.pgdata, repo.CompressNone, "")
	c := bundleCopier(t, rs, x)
	var want, last uint64
	for _, data := range x.contents {
		want += uint64(len(data))
	}
	c.progress = func(done, total uint64) {
		if done > total || total != want {
			t.Errorf("progress %d of %d, want a total of %d", done, total, want)
		}
		last = max(last, done)
	}
	if err := c.copyAll(t.Context(), x.m, nil, 1); err != nil {
		t.Fatal(err)
	}
	if last != want {
		t.Errorf("progress ended at %d, want %d", last, want)
	}
}
