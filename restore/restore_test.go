package restore

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage/posix"
)

// baseManifest returns a small manifest with pg_data, one tablespace and a few files.
func baseManifest() *repo.Manifest {
	return &repo.Manifest{
		Label:   "20260101-000000F",
		Type:    repo.BackupFull,
		DB:      repo.ManifestDB{ID: 1, SystemID: 7000000000000000001, Version: "15", CatalogVersion: 1},
		Options: repo.ManifestOptions{CompressType: repo.CompressNone},
		Targets: []repo.ManifestTarget{
			{Name: "pg_data", Path: "/orig/data", Type: repo.TargetPath},
			{Name: "pg_tblspc/16385", Path: "/orig/ts1", TablespaceID: 16385, TablespaceName: "ts1", Type: repo.TargetLink},
		},
		Paths: []repo.ManifestPath{
			{Name: "pg_data", Mode: 0o700}, {Name: "pg_data/base", Mode: 0o700}, {Name: "pg_data/pg_tblspc", Mode: 0o700},
			{Name: "pg_tblspc", Mode: 0o700}, {Name: "pg_tblspc/16385", Mode: 0o700},
		},
		Links: []repo.ManifestLink{{Name: "pg_data/pg_tblspc/16385", Destination: "/orig/ts1"}},
		Files: []repo.ManifestFile{
			{Name: "pg_data/PG_VERSION", Size: 3, Mode: 0o600},
			{Name: "pg_data/base/1", Size: 10, Mode: 0o600},
			{Name: "pg_tblspc/16385/PG_15_1/1/2", Size: 10, Mode: 0o600},
		},
	}
}

func TestLayoutRejectsEscapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(m *repo.Manifest)
	}{
		{"dotdot file", func(m *repo.Manifest) { m.Files[0].Name = "pg_data/../etc/passwd" }},
		{"dotdot inner", func(m *repo.Manifest) { m.Files[0].Name = "pg_data/base/../../x" }},
		{"absolute file", func(m *repo.Manifest) { m.Files[0].Name = "/etc/passwd" }},
		{"unclean file", func(m *repo.Manifest) { m.Files[0].Name = "pg_data//base/1" }},
		{"dot file", func(m *repo.Manifest) { m.Files[0].Name = "pg_data/./base" }},
		{"no target", func(m *repo.Manifest) { m.Files[0].Name = "other/base/1" }},
		{"file as the tablespace directory", func(m *repo.Manifest) { m.Files[0].Name = "pg_tblspc" }},
		{"unknown tablespace", func(m *repo.Manifest) { m.Files[0].Name = "pg_tblspc/99999/x" }},
		{"dotdot path", func(m *repo.Manifest) {
			m.Paths = append(m.Paths, repo.ManifestPath{Name: "pg_data/..", Mode: 0o700})
		}},
		{"file through tablespace link", func(m *repo.Manifest) { m.Files[0].Name = "pg_data/pg_tblspc/16385/x" }},
		{"stray link", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.ManifestLink{Name: "pg_data/base", Destination: "/etc"})
		}},
		{"link outside pg_data", func(m *repo.Manifest) {
			m.Links = append(m.Links, repo.ManifestLink{Name: "pg_tblspc/16385/x", Destination: "/etc"})
		}},
		{"bad tablespace target", func(m *repo.Manifest) { m.Targets[1].Name = "pg_tblspc/../16385" }},
		{"relative tablespace", func(m *repo.Manifest) { m.Targets[1].Path, m.Targets[1].TablespaceName = "ts1", "unmapped" }},
		{"unknown target", func(m *repo.Manifest) {
			m.Targets = append(m.Targets, repo.ManifestTarget{Name: "elsewhere", Path: "/x", Type: repo.TargetPath})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			m := baseManifest()
			tc.modify(m)
			_, err := Run(t.Context(), nil, m, Options{Mapping: Mapping{DataDir: filepath.Join(dir, "data"),
				TablespaceMap: map[string]string{"ts1": filepath.Join(dir, "ts1")}}})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Run: %v, want ErrUnsafePath", err)
			}
			ents, err := os.ReadDir(dir)
			if err != nil || len(ents) != 0 {
				t.Fatalf("something was written before the manifest was rejected: %v %v", ents, err)
			}
		})
	}
}

func TestLayoutMapsTargets(t *testing.T) {
	t.Parallel()
	m := baseManifest()
	for _, tc := range []struct {
		name    string
		mapping Mapping
		want    map[string]string
	}{
		{"as backed up", Mapping{DataDir: "/new/data"}, map[string]string{
			"pg_data/base/1": "/new/data/base/1", "pg_tblspc/16385/PG_15_1/1/2": "/orig/ts1/PG_15_1/1/2", "pg_tblspc/16385": "/orig/ts1",
		}},
		{"by name", Mapping{DataDir: "/new/data", TablespaceMap: map[string]string{"ts1": "/t"}}, map[string]string{
			"pg_tblspc/16385/PG_15_1/1/2": "/t/PG_15_1/1/2",
		}},
		{"by oid", Mapping{DataDir: "/new/data", TablespaceMap: map[string]string{"16385": "/o"}}, map[string]string{
			"pg_tblspc/16385/PG_15_1/1/2": "/o/PG_15_1/1/2",
		}},
		{"all", Mapping{DataDir: "/new/data", TablespaceMapAll: "/all"}, map[string]string{
			"pg_tblspc/16385/PG_15_1/1/2": "/all/ts1/PG_15_1/1/2",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := newLayout(m, tc.mapping)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got, err := l.fsPath(name); err != nil || got != want {
					t.Errorf("fsPath(%s) = %q, %v; want %q", name, got, err, want)
				}
			}
		})
	}
	if _, err := newLayout(m, Mapping{DataDir: "/d", TablespaceMap: map[string]string{"nope": "/x"}}); err == nil {
		t.Error("a --tablespace-map naming no tablespace was accepted")
	}
}

func TestRecoverySettings(t *testing.T) {
	t.Parallel()
	const cmd = "/bin/pgsidecar --stanza=db archive-get %f \"%p\""
	for _, tc := range []struct {
		name string
		rec  Recovery
		want string // rendered settings, one per line
	}{
		{"default", Recovery{Type: TypeDefault}, "restore_command = '" + cmd + "'"},
		{"immediate", Recovery{Type: TypeImmediate, TargetAction: "promote"},
			"restore_command = '" + cmd + "'\nrecovery_target = 'immediate'\nrecovery_target_action = 'promote'\nrecovery_target_timeline = 'current'"},
		{"time exclusive", Recovery{Type: TypeTime, Target: "2026-01-01 00:00:00+00", TargetExclusive: true, TargetAction: "pause", TargetTimeline: "2"},
			"restore_command = '" + cmd + "'\nrecovery_target_time = '2026-01-01 00:00:00+00'\nrecovery_target_inclusive = 'false'\nrecovery_target_timeline = '2'"},
		{"name", Recovery{Type: TypeName, Target: "rp"}, "restore_command = '" + cmd + "'\nrecovery_target_name = 'rp'"},
		{"lsn", Recovery{Type: TypeLSN, Target: "0/3000000"}, "restore_command = '" + cmd + "'\nrecovery_target_lsn = '0/3000000'"},
		{"xid", Recovery{Type: TypeXID, Target: "1234"}, "restore_command = '" + cmd + "'\nrecovery_target_xid = '1234'"},
		{"standby with options", Recovery{Type: TypeStandby, Options: map[string]string{"primary-conninfo": "host=x", "a_b": "1"}, ArchiveModeOff: true},
			"a_b = '1'\nprimary_conninfo = 'host=x'\narchive_mode = 'off'\nrestore_command = '" + cmd + "'"},
		{"own restore_command", Recovery{Options: map[string]string{"restore-command": "cp x y"}}, "restore_command = 'cp x y'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.rec.RestoreCommand = cmd
			out, err := RenderAutoConf(nil, "2026-01-01 00:00:00", tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			want := "# Recovery settings generated by pgBackRest restore on 2026-01-01 00:00:00\n" + tc.want + "\n"
			if string(out) != want {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
		})
	}
	for _, bad := range []Recovery{
		{Type: TypeTime},
		{Options: map[string]string{"standby_mode": "on"}},
	} {
		if _, err := bad.Settings(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}

func TestRenderAutoConfExisting(t *testing.T) {
	t.Parallel()
	existing := "# Do not edit\nwork_mem = '4MB'\nrecovery_target_time = 'x'\n  recovery_target_action='pause'\n"
	got, err := RenderAutoConf([]byte(existing), "L", Recovery{Type: TypeName, Target: "rp", RestoreCommand: "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := "# Do not edit\nwork_mem = '4MB'\n# Removed by pgBackRest restore on L # recovery_target_time = 'x'\n" +
		"# Removed by pgBackRest restore on L #   recovery_target_action='pause'\n\n" +
		"# Recovery settings generated by pgBackRest restore on L\nrestore_command = 'c'\nrecovery_target_name = 'rp'\n"
	if string(got) != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	none, err := RenderAutoConf([]byte(existing), "L", Recovery{Type: TypeNone})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(none), "Recovery settings") || !strings.Contains(string(none), "# Removed by pgBackRest restore on L # recovery_target_time") {
		t.Errorf("type none: %q", none)
	}
}

func TestWriteRecoverySignals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ      string
		online   bool
		recovery bool
		standby  bool
	}{
		{TypeDefault, true, true, false},
		{TypeStandby, true, false, true},
		{TypeNone, true, true, false},
		{TypeNone, false, false, false},
		{TypePreserve, true, false, false},
	} {
		dir := t.TempDir()
		if err := WriteRecovery(dir, "L", Recovery{Type: tc.typ, RestoreCommand: "c"}, tc.online); err != nil {
			t.Fatal(err)
		}
		if got := exists(filepath.Join(dir, RecoverySignal)); got != tc.recovery {
			t.Errorf("%s online=%v: recovery.signal %v, want %v", tc.typ, tc.online, got, tc.recovery)
		}
		if got := exists(filepath.Join(dir, StandbySignal)); got != tc.standby {
			t.Errorf("%s online=%v: standby.signal %v, want %v", tc.typ, tc.online, got, tc.standby)
		}
	}
}

func sum(b []byte) string {
	h := sha1.Sum(b)
	return hex.EncodeToString(h[:])
}

func TestDeltaDecisions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	content := []byte("0123456789")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	same := write("same", content)
	changed := write("changed", []byte("0123456780"))
	shorter := write("shorter", content[:5])
	empty := write("empty", nil)
	if err := os.Symlink(same, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	f := &repo.ManifestFile{Size: uint64(len(content)), Checksum: sum(content)}
	for _, tc := range []struct {
		path string
		file *repo.ManifestFile
		want bool
	}{
		{same, f, true},
		{changed, f, false},
		{shorter, f, false},
		{filepath.Join(dir, "missing"), f, false},
		{filepath.Join(dir, "link"), f, false},
		{empty, &repo.ManifestFile{Size: 0, Checksum: repo.ZeroChecksum}, true},
		{same, &repo.ManifestFile{Size: uint64(len(content))}, false}, // no checksum: download
	} {
		got, err := matches(tc.path, tc.file, false)
		if err != nil || got != tc.want {
			t.Errorf("matches(%s) = %v, %v; want %v", filepath.Base(tc.path), got, err, tc.want)
		}
	}

	// The clean removes what the manifest does not have and entries of the wrong kind.
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mk("base/1")
	mk("extra/sub")
	mk("wasdir")
	if err := os.WriteFile(filepath.Join(root, "base/1/keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "base/1/drop"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "precious"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "base/evil")); err != nil {
		t.Fatal(err)
	}
	exp := map[string]entryKind{
		filepath.Join(root, "base"):             {kind: os.ModeDir},
		filepath.Join(root, "base/1"):           {kind: os.ModeDir},
		filepath.Join(root, "base/1/keep"):      {},
		filepath.Join(root, "base/evil"):        {kind: os.ModeDir}, // a directory in the backup
		filepath.Join(root, "wasdir"):           {},                 // a file in the backup
		filepath.Join(root, "base/1/keep/nope"): {},
	}
	n, err := clean(root, exp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("clean removed %d entries, want 4 (drop, extra, evil link, wasdir)", n)
	}
	for _, p := range []string{"base/1/drop", "extra", "base/evil", "wasdir"} {
		if exists(filepath.Join(root, p)) {
			t.Errorf("%s survived the clean", p)
		}
	}
	if !exists(filepath.Join(root, "base/1/keep")) || !exists(filepath.Join(outside, "precious")) {
		t.Error("the clean removed a wanted file or followed a link")
	}
}

func TestZeroedDatabases(t *testing.T) {
	t.Parallel()
	m := baseManifest()
	m.DB = repo.ManifestDB{Version: "15", CatalogVersion: 202209061}
	m.Databases = []repo.ManifestDatabase{
		{Name: "template0", ID: 4}, {Name: "template1", ID: 1}, {Name: "postgres", ID: 5},
		{Name: "app", ID: 16390}, {Name: "other", ID: 16400}, {Name: "third", ID: 16410},
	}
	for _, id := range []string{"1", "4", "5", "16390", "16400", "16410"} {
		m.Files = append(m.Files, repo.ManifestFile{Name: "pg_data/base/" + id + "/PG_VERSION", Size: 3})
	}
	m.Files = append(m.Files, repo.ManifestFile{Name: "pg_tblspc/16385/PG_15_202209061/16400/PG_VERSION", Size: 3})
	for _, tc := range []struct {
		name             string
		include, exclude []string
		want             string
		bad              bool
	}{
		{name: "none", want: ""},
		{name: "include by name", include: []string{"app"}, want: "16400,16410"},
		{name: "include by oid", include: []string{"16400", "third"}, want: "16390"},
		{name: "exclude", exclude: []string{"other"}, want: "16400"},
		{name: "exclude a system db", exclude: []string{"postgres"}, want: "5"},
		{name: "include and exclude system", include: []string{"app"}, exclude: []string{"template1"}, want: "1,16400,16410"},
		{name: "include a system db", include: []string{"postgres"}, bad: true},
		{name: "unknown", exclude: []string{"nope"}, bad: true},
		{name: "included and excluded", include: []string{"app"}, exclude: []string{"app"}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := zeroedDatabases(m, tc.include, tc.exclude)
			if tc.bad {
				if !errors.Is(err, ErrDatabase) {
					t.Fatalf("err %v, want ErrDatabase", err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != tc.want {
				t.Fatalf("zeroed %v, %v; want %s", got, err, tc.want)
			}
		})
	}
	zero := zeroMatcher(m, []string{"16400"})
	for name, want := range map[string]bool{
		"pg_data/base/16400/1259":                          true,
		"pg_data/base/16400/PG_VERSION":                    false,
		"pg_data/base/16390/1259":                          false,
		"pg_tblspc/16385/PG_15_202209061/16400/16500":      true,
		"pg_tblspc/16385/PG_15_202209061/16400/PG_VERSION": false,
		"pg_data/global/pg_control":                        false,
	} {
		if got := zero(name); got != want {
			t.Errorf("zeroed(%s) = %v, want %v", name, got, want)
		}
	}
}

// testRepo stores m's files (uncompressed, unencrypted) in a posix
// repository: contents by manifest name; names in bundled go into bundle 1.
func testRepo(t *testing.T, m *repo.Manifest, contents map[string][]byte, bundled map[string]bool) *repo.Repository {
	t.Helper()
	store, err := posix.New(posix.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rs := repo.Open(store, "repo1", "db", "")
	var bundle []byte
	for i := range m.Files {
		f := &m.Files[i]
		data := contents[f.Name]
		f.Size, f.RepoSize, f.Checksum, f.Timestamp = uint64(len(data)), uint64(len(data)), sum(data), 1700000000+int64(i)
		if len(data) == 0 {
			continue
		}
		if bundled[f.Name] {
			f.BundleID, f.BundleOffset = 1, uint64(len(bundle))
			bundle = append(bundle, data...)
			continue
		}
		rel, err := m.RepoPath(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(t.Context(), rs.BackupKey(rel), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if len(bundle) > 0 {
		if err := store.Put(t.Context(), rs.BackupKey(repo.BundlePath(m.Label, 1)), bytes.NewReader(bundle)); err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

func TestRunRestoresAndDelta(t *testing.T) {
	t.Parallel()
	m := baseManifest()
	m.Paths = append(m.Paths, repo.ManifestPath{Name: "pg_data/global", Mode: 0o750}, repo.ManifestPath{Name: "pg_tblspc/16385/PG_15_1", Mode: 0o700},
		repo.ManifestPath{Name: "pg_tblspc/16385/PG_15_1/1", Mode: 0o700})
	m.Files = append(m.Files,
		repo.ManifestFile{Name: "pg_data/global/pg_control", Mode: 0o600},
		repo.ManifestFile{Name: "pg_data/empty", Mode: 0o640},
		repo.ManifestFile{Name: "pg_data/base/bundled", Mode: 0o600},
		repo.ManifestFile{Name: "pg_data/tablespace_map", Mode: 0o600},
	)
	contents := map[string][]byte{
		"pg_data/PG_VERSION": []byte("15\n"), "pg_data/base/1": []byte("0123456789"),
		"pg_tblspc/16385/PG_15_1/1/2": []byte("tablespace"), "pg_data/global/pg_control": []byte("control"),
		"pg_data/base/bundled": []byte("in a bundle"), "pg_data/tablespace_map": []byte("16385 /orig/ts1\n"),
	}
	rs := testRepo(t, m, contents, map[string]bool{"pg_data/base/bundled": true})
	dir := t.TempDir()
	data, ts := filepath.Join(dir, "data"), filepath.Join(dir, "ts")
	opts := Options{Mapping: Mapping{DataDir: data, TablespaceMap: map[string]string{"ts1": ts}}, ProcessMax: 2}
	st, err := Run(t.Context(), rs, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.Downloaded != 5 || st.Empty != 1 || st.Kept != 0 {
		t.Errorf("stats %+v, want 5 downloaded, 1 empty", st)
	}
	check := func() {
		t.Helper()
		for name, want := range contents {
			if name == "pg_data/tablespace_map" {
				continue
			}
			p := filepath.Join(data, strings.TrimPrefix(name, "pg_data/"))
			if strings.HasPrefix(name, "pg_tblspc/") {
				p = filepath.Join(ts, strings.TrimPrefix(name, "pg_tblspc/16385/"))
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %q, %v; want %q", name, got, err, want)
			}
		}
		if dest, err := os.Readlink(filepath.Join(data, "pg_tblspc", "16385")); err != nil || dest != ts {
			t.Errorf("tablespace link: %q, %v; want %s", dest, err, ts)
		}
		if exists(filepath.Join(data, "tablespace_map")) || exists(filepath.Join(data, manifestFile)) {
			t.Error("tablespace_map or the manifest copy was left in pg_data")
		}
		fi, err := os.Stat(filepath.Join(data, "empty"))
		if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o640 {
			t.Errorf("empty file: %v, %v", fi, err)
		}
		if fi, err := os.Stat(filepath.Join(data, "global")); err != nil || fi.Mode().Perm() != 0o750 {
			t.Errorf("global: %v, %v; want mode 0750", fi, err)
		}
		if fi, err := os.Stat(filepath.Join(data, "base", "1")); err != nil || fi.ModTime().Unix() != m.Files[1].Timestamp {
			t.Errorf("base/1: %v, %v; want the manifest's timestamp", fi, err)
		}
	}
	check()

	// A second restore is refused without --delta; with it, only what changed is downloaded.
	if _, err := Run(t.Context(), rs, m, opts); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a non-empty directory: %v, want ErrNotEmpty", err)
	}
	if err := os.WriteFile(filepath.Join(data, "base", "1"), []byte("9876543210"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ts, "PG_15_1", "1", "2")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "base", "extra"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "PG_15_1", "extra"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Outside its PG_<version>_<catalog> directory a tablespace location is left alone.
	if err := os.WriteFile(filepath.Join(ts, "other_cluster"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opts.Delta = true
	st, err = Run(t.Context(), rs, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	// base/1, the tablespace file and pg_control (always) are downloaded;
	// PG_VERSION, the bundled file and the empty file are kept.
	if st.Downloaded != 3 || st.Kept != 3 || st.Removed != 2 {
		t.Errorf("delta stats %+v, want 3 downloaded, 3 kept, 2 removed", st)
	}
	check()
	if exists(filepath.Join(data, "base", "extra")) || exists(filepath.Join(ts, "PG_15_1", "extra")) {
		t.Error("the delta restore left files the backup does not have")
	}
	if !exists(filepath.Join(ts, "other_cluster")) {
		t.Error("the delta restore removed a file outside the tablespace's version directory")
	}

	// A running cluster is never restored over.
	if err := os.WriteFile(filepath.Join(data, "postmaster.pid"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), rs, m, opts); !errors.Is(err, ErrRunning) {
		t.Errorf("restore over a running cluster: %v, want ErrRunning", err)
	}

	// A corrupted repository file fails the restore.
	bad := *m
	bad.Files = slices.Clone(m.Files)
	bad.Files[1].Checksum = sum([]byte("something else"))
	if _, err := Run(t.Context(), rs, &bad, Options{Mapping: Mapping{DataDir: filepath.Join(dir, "d2"), TablespaceMap: map[string]string{"ts1": filepath.Join(dir, "t2")}}}); !errors.Is(err, repo.ErrChecksumMismatch) {
		t.Errorf("restore of a file with the wrong checksum: %v, want ErrChecksumMismatch", err)
	}
}
