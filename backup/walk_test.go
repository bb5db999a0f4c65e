package backup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/repo"
)

const testTablespaceID = "PG_15_202209061"

// writeTree creates files (name -> content) under root; names ending in "/" are
// directories.
func writeTree(t *testing.T, root string, names []string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(root, filepath.FromSlash(n))
		if strings.HasSuffix(n, "/") {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"+n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWalkExclusions(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	pgdata := filepath.Join(root, "data")
	tsDir := filepath.Join(root, "ts1")
	writeTree(t, pgdata, []string{
		"PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "postgresql.auto.conf.tmp",
		"postmaster.pid", "postmaster.opts", "backup_label", "backup_label.old", "recovery.signal", "standby.signal",
		"backup_manifest", "backup_manifest.tmp", "global/pg_control", "global/1262", "global/pg_internal.init",
		"base/1/1259", "base/1/1259_fsm", "base/1/1259_vm", "base/1/pg_internal.init", "base/1/pg_internal.init.123",
		"base/1/pg_internal.initx", "base/1/t3_16384", "base/1/t3_16384_fsm.1", "base/1/PG_VERSION",
		"base/1/16400", "base/1/16400.1", "base/1/16400_fsm", "base/1/16400_init", "base/1/16401_vm",
		"base/pgsql_tmp/pgsql_tmp1.0", "base/1/pgsql_tmp5",
		"pg_wal/000000010000000000000001", "pg_wal/archive_status/000000010000000000000001.done", "pg_wal/summaries/x",
		"pg_dynshmem/a", "pg_notify/0000", "pg_replslot/s/state", "pg_serial/0000", "pg_snapshots/x",
		"pg_stat_tmp/global.stat", "pg_subtrans/0000", "pg_stat/pgstat.stat", "pg_xact/0000",
		"pg_tblspc/", "log/", "log/postgresql.log", "excluded_dir/a", "skipme",
	})
	writeTree(t, tsDir, []string{testTablespaceID + "/16385/16386", testTablespaceID + "/16385/t1_1", "other/file"})
	if err := os.Symlink(tsDir, filepath.Join(pgdata, "pg_tblspc", "16384")); err != nil {
		t.Fatal(err)
	}
	w, err := Walk(t.Context(), WalkOptions{
		PgPath: pgdata, TablespaceID: testTablespaceID, Online: true,
		Exclude: []string{"log/", "skipme", "excluded_dir"}, Tablespaces: map[uint32]string{16384: "ts1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var files, paths []string
	for _, f := range w.Files {
		files = append(files, f.Name)
	}
	for _, p := range w.Paths {
		paths = append(paths, p.Name)
	}
	slices.Sort(files)
	slices.Sort(paths)
	wantFiles := []string{
		"pg_data/PG_VERSION", "pg_data/base/1/1259", "pg_data/base/1/1259_fsm", "pg_data/base/1/1259_vm",
		"pg_data/base/1/16400_init", "pg_data/base/1/16401_vm", "pg_data/base/1/PG_VERSION",
		"pg_data/base/1/pg_internal.initx", "pg_data/global/1262", "pg_data/global/pg_control",
		"pg_data/pg_stat/pgstat.stat", "pg_data/pg_wal/summaries/x", "pg_data/pg_xact/0000",
		"pg_data/postgresql.auto.conf", "pg_data/postgresql.conf",
		"pg_tblspc/16384/" + testTablespaceID + "/16385/16386",
	}
	if !slices.Equal(files, wantFiles) {
		t.Errorf("files:\n got %q\nwant %q", files, wantFiles)
	}
	wantPaths := []string{
		"pg_data", "pg_data/base", "pg_data/base/1", "pg_data/global", "pg_data/log",
		"pg_data/pg_dynshmem", "pg_data/pg_notify", "pg_data/pg_replslot", "pg_data/pg_serial", "pg_data/pg_snapshots",
		"pg_data/pg_stat", "pg_data/pg_stat_tmp", "pg_data/pg_subtrans", "pg_data/pg_tblspc", "pg_data/pg_wal",
		"pg_data/pg_wal/archive_status", "pg_data/pg_wal/summaries", "pg_data/pg_xact",
		"pg_tblspc", "pg_tblspc/16384", "pg_tblspc/16384/" + testTablespaceID, "pg_tblspc/16384/" + testTablespaceID + "/16385",
	}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("paths:\n got %q\nwant %q", paths, wantPaths)
	}
	if len(w.Links) != 1 || w.Links[0].Name != "pg_data/pg_tblspc/16384" || w.Links[0].Destination != tsDir {
		t.Errorf("links: %+v", w.Links)
	}
	var ts *repo.ManifestTarget
	for i := range w.Targets {
		if w.Targets[i].Name == "pg_tblspc/16384" {
			ts = &w.Targets[i]
		}
	}
	if ts == nil || ts.Type != repo.TargetLink || ts.Path != tsDir || ts.TablespaceID != 16384 || ts.TablespaceName != "ts1" {
		t.Errorf("tablespace target: %+v", ts)
	}

	// Offline, pg_wal's contents are kept.
	w, err = Walk(t.Context(), WalkOptions{PgPath: pgdata, TablespaceID: testTablespaceID, Online: false})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range w.Files {
		found[f.Name] = true
	}
	for _, n := range []string{"pg_data/pg_wal/000000010000000000000001", "pg_data/pg_wal/archive_status/000000010000000000000001.done", "pg_data/skipme"} {
		if !found[n] {
			t.Errorf("offline walk without excludes: %s missing", n)
		}
	}
	if w.Targets[1].TablespaceName != "ts16384" {
		t.Errorf("tablespace name without a map: %q, want ts16384", w.Targets[1].TablespaceName)
	}
}

func TestWalkErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, pgdata string)
		opts  WalkOptions
		want  string
	}{
		{"directory in pg_tblspc", func(t *testing.T, pgdata string) {
			writeTree(t, pgdata, []string{"pg_tblspc/16384/"})
		}, WalkOptions{}, "should contain only symlinks"},
		{"unknown tablespace", func(t *testing.T, pgdata string) {
			ts := t.TempDir()
			writeTree(t, ts, []string{testTablespaceID + "/"})
			writeTree(t, pgdata, []string{"pg_tblspc/"})
			if err := os.Symlink(ts, filepath.Join(pgdata, "pg_tblspc", "16384")); err != nil {
				t.Fatal(err)
			}
		}, WalkOptions{Tablespaces: map[uint32]string{}}, "not found in tablespace map"},
		{"link to a link", func(t *testing.T, pgdata string) {
			d := t.TempDir()
			if err := os.Symlink(d, filepath.Join(d, "..", filepath.Base(d)+"-link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(d, "..", filepath.Base(d)+"-link"), filepath.Join(pgdata, "pg_wal")); err != nil {
				t.Fatal(err)
			}
		}, WalkOptions{}, "cannot reference another link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pgdata := t.TempDir()
			writeTree(t, pgdata, []string{"PG_VERSION"})
			tc.setup(t, pgdata)
			tc.opts.PgPath, tc.opts.TablespaceID = pgdata, testTablespaceID
			_, err := Walk(t.Context(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Walk: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSkipRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		parent, name string
		dbPath       bool
		online       bool
		want         bool
	}{
		{"pg_data", "postmaster.pid", false, true, true},
		{"pg_data/base", "postmaster.pid", false, true, false},
		{"pg_data/base/1", "pg_internal.init", true, true, true},
		{"pg_data/base/1", "pg_internal.init.7", true, true, true},
		{"pg_data/base/1", "pg_internal.init.x", true, true, false},
		{"pg_data/log", "pg_internal.init", false, true, false},
		{"pg_data/base/1", "t1_2", true, true, true},
		{"pg_data/base/1", "t1_2_vm.3", true, true, true},
		{"pg_data/base/1", "t1_2_init", true, true, false},
		{"pg_data/base/1", "t1_x", true, true, false},
		{"pg_data/log", "t1_2", false, true, false},
		{"pg_data/pg_wal", "000000010000000000000001", false, true, true},
		{"pg_data/pg_wal", "000000010000000000000001", false, false, false},
	} {
		if got := skipFile(tc.parent, tc.name, tc.dbPath, tc.online); got != tc.want {
			t.Errorf("skipFile(%s, %s, db=%v, online=%v) = %v, want %v", tc.parent, tc.name, tc.dbPath, tc.online, got, tc.want)
		}
	}
}

func TestRemoveUnlogged(t *testing.T) {
	t.Parallel()
	var files []repo.ManifestFile
	for _, n := range []string{
		"pg_data/base/1/100", "pg_data/base/1/100.1", "pg_data/base/1/100_fsm", "pg_data/base/1/100_init",
		"pg_data/base/1/1000", "pg_data/global/200", "pg_data/global/200_init", "pg_data/log/300", "pg_data/log/300_init",
		"pg_tblspc/5/" + testTablespaceID + "/1/400_vm", "pg_tblspc/5/" + testTablespaceID + "/1/400_init",
	} {
		files = append(files, repo.ManifestFile{Name: n})
	}
	var got []string
	for _, f := range removeUnlogged(files, testTablespaceID) {
		got = append(got, f.Name)
	}
	want := []string{
		"pg_data/base/1/100_init", "pg_data/base/1/1000", "pg_data/global/200_init", "pg_data/log/300", "pg_data/log/300_init",
		"pg_tblspc/5/" + testTablespaceID + "/1/400_init",
	}
	if !slices.Equal(got, want) {
		t.Errorf("removeUnlogged:\n got %q\nwant %q", got, want)
	}
}
