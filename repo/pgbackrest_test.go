package repo

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stockRepo is a posix repository in a temp dir that the installed pgbackrest reads.
type stockRepo struct {
	t    *testing.T
	bin  string
	root string
}

func newStockRepo(t *testing.T) *stockRepo {
	t.Helper()
	bin, err := exec.LookPath("pgbackrest")
	if err != nil {
		t.Skip("pgbackrest is not installed")
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil || !strings.Contains(string(out), "pgBackRest 2.45") {
		t.Skipf("pgbackrest 2.45 is required, found %q (%v)", out, err)
	}
	return &stockRepo{t: t, bin: bin, root: t.TempDir()}
}

// put writes a file and its .copy, as pgBackRest does.
func (r *stockRepo) put(rel string, data []byte) {
	r.t.Helper()
	p := filepath.Join(r.root, "repo", filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		r.t.Fatal(err)
	}
	for _, name := range []string{p, p + CopyExt} {
		if err := os.WriteFile(name, data, 0o640); err != nil {
			r.t.Fatal(err)
		}
	}
}

// info runs "pgbackrest info --output=json" and returns the stanza object.
func (r *stockRepo) info(stanza string, args ...string) map[string]any {
	r.t.Helper()
	cmdArgs := append([]string{"--no-config", "--repo1-path=" + filepath.Join(r.root, "repo"),
		"--log-path=" + r.root, "--lock-path=" + r.root, "--log-level-console=error", "--log-level-file=off",
		"--stanza=" + stanza, "--output=json"}, args...)
	cmd := exec.CommandContext(r.t.Context(), r.bin, append(cmdArgs, "info")...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PGBACKREST_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("pgbackrest info: %v\n%s", err, out)
	}
	var stanzas []map[string]any
	if err := json.Unmarshal(out, &stanzas); err != nil || len(stanzas) != 1 {
		r.t.Fatalf("pgbackrest info output %q: %v", out, err)
	}
	return stanzas[0]
}

func statusCode(t *testing.T, stanza map[string]any) float64 {
	t.Helper()
	status, _ := stanza["status"].(map[string]any)
	code, ok := status["code"].(float64)
	if !ok {
		t.Fatalf("no status in %v", stanza)
	}
	return code
}

func names(list any, key string) []string {
	var out []string
	items, _ := list.([]any)
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			s, _ := m[key].(string)
			out = append(out, s)
		}
	}
	return out
}

func mustSave(t *testing.T, save func() ([]byte, error)) []byte {
	t.Helper()
	data, err := save()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestStockPgBackRestReadsSavedFiles has pgBackRest 2.45 read info files and manifests
// written by this package.
func TestStockPgBackRestReadsSavedFiles(t *testing.T) {
	t.Parallel()
	r := newStockRepo(t)

	t.Run("varied", func(t *testing.T) {
		path := "testdata/crafted/backup-varied.info"
		b, err := LoadBackupInfo(path, readFile(t, path))
		if err != nil {
			t.Fatal(err)
		}
		a, err := NewArchiveInfo(b.History[0].Version, b.History[0].SystemID, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.AddHistory(b.History[1].Version, b.History[1].SystemID); err != nil {
			t.Fatal(err)
		}
		mpath := "testdata/crafted/20250102-030405F_20250103-040506I.manifest"
		m, err := LoadManifest(mpath, readFile(t, mpath))
		if err != nil {
			t.Fatal(err)
		}
		r.put("archive/varied/archive.info", mustSave(t, a.Save))
		r.put("backup/varied/backup.info", mustSave(t, b.Save))
		r.put("backup/varied/"+BackupManifestPath(m.Label), mustSave(t, m.Save))

		all := r.info("varied")
		if code := statusCode(t, all); code != 0 {
			t.Fatalf("status %v: %v", code, all["status"])
		}
		var labels []string
		for _, bk := range b.Backups {
			labels = append(labels, bk.Label)
		}
		if got := names(all["backup"], "label"); !slices.Equal(got, labels) {
			t.Errorf("pgbackrest lists %v, want %v", got, labels)
		}

		set := r.info("varied", "--set="+m.Label)
		backups, _ := set["backup"].([]any)
		if len(backups) != 1 {
			t.Fatalf("info --set: %v", set)
		}
		bk := backups[0].(map[string]any)
		if got := names(bk["database-ref"], "name"); !slices.Contains(got, "we=ird") {
			t.Errorf("database list %v lacks the database whose name contains '='", got)
		}
		if got := names(bk["tablespace"], "name"); !slices.Equal(got, []string{"ts one"}) {
			t.Errorf("tablespaces %v", got)
		}
		if got := names(bk["link"], "destination"); len(got) != 2 {
			t.Errorf("links %v", got)
		}
		if errs, _ := bk["error-list"].([]any); len(errs) != 1 || errs[0] != "base/1/1255" {
			t.Errorf("error list %v", bk["error-list"])
		}
	})

	t.Run("multi-history", func(t *testing.T) {
		path := "testdata/crafted/archive-multi-history.info"
		a, err := LoadArchiveInfo(path, readFile(t, path))
		if err != nil {
			t.Fatal(err)
		}
		h := a.History
		b, err := NewBackupInfo(h[0].Version, h[0].SystemID, 201306121, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h[1:] {
			if err := b.AddHistory(e.Version, e.SystemID, 202209061); err != nil {
				t.Fatal(err)
			}
		}
		r.put("archive/multi/archive.info", mustSave(t, a.Save))
		r.put("backup/multi/backup.info", mustSave(t, b.Save))
		info := r.info("multi")
		if code := statusCode(t, info); code != 2 { // 2 = "no valid backups": the files themselves were accepted
			t.Fatalf("status %v: %v", code, info["status"])
		}
		if dbs, _ := info["db"].([]any); len(dbs) != len(h) {
			t.Errorf("pgbackrest sees %d history entries, want %d", len(dbs), len(h))
		}
		if ids := names(info["archive"], "id"); !slices.Contains(ids, "15-11") {
			t.Errorf("archive ids %v", ids)
		}
	})

	t.Run("block-incr-from-manifest", func(t *testing.T) {
		path := "testdata/crafted/20250105-000000F.manifest"
		m, err := LoadManifest(path, readFile(t, path))
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewBackupInfo(m.DB.Version, m.DB.SystemID, m.DB.CatalogVersion, "")
		if err != nil {
			t.Fatal(err)
		}
		a, err := NewArchiveInfo(m.DB.Version, m.DB.SystemID, "")
		if err != nil {
			t.Fatal(err)
		}
		for b.CurrentID < m.DB.ID {
			if err := b.AddHistory(m.DB.Version, m.DB.SystemID, m.DB.CatalogVersion); err != nil {
				t.Fatal(err)
			}
			if err := a.AddHistory(m.DB.Version, m.DB.SystemID); err != nil {
				t.Fatal(err)
			}
		}
		entry, err := BackupFromManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		b.Add(entry)
		r.put("archive/bi/archive.info", mustSave(t, a.Save))
		r.put("backup/bi/backup.info", mustSave(t, b.Save))
		r.put("backup/bi/"+BackupManifestPath(m.Label), mustSave(t, m.Save))
		info := r.info("bi", "--set="+m.Label)
		if code := statusCode(t, info); code != 0 {
			t.Fatalf("status %v: %v", code, info["status"])
		}
		bk := info["backup"].([]any)[0].(map[string]any)
		repo := bk["info"].(map[string]any)["repository"].(map[string]any)
		if repo["size-map"] != float64(*entry.RepoSizeMap) || bk["label"] != m.Label || bk["type"] != "full" {
			t.Errorf("pgbackrest reports %v", bk)
		}
	})
}
