package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/config"
	"github.com/pgsidecar/pgsidecar/repo"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

const infoGolden = "../repo/testdata"

// infoStock returns the path of pgbackrest 2.45; it fails when PostgreSQL
// tools are required (PGSIDECAR_TEST_REQUIRE contains "postgres") and skips
// otherwise.
func infoStock(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("pgbackrest")
	if err == nil {
		out, verr := exec.CommandContext(t.Context(), bin, "version").Output()
		if verr != nil || !strings.Contains(string(out), "pgBackRest 2.45") {
			err = &exec.Error{Name: bin, Err: os.ErrNotExist}
		}
	}
	if err != nil {
		storagetest.Unavailable(t, "postgres", fmt.Errorf("pgbackrest 2.45 is not installed: %w", err))
	}
	return bin
}

// infoCopy copies file src to dst, creating dst's directory.
func infoCopy(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	infoWrite(t, dst, data)
}

func infoWrite(t *testing.T, dst string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// infoRepoDir lays out golden repository src (a directory of
// repo/testdata) under root as stanza: info files and manifests with their
// copies, and an empty file for every archived file of the listing.
func infoRepoDir(t *testing.T, root, src, stanza string) {
	t.Helper()
	src = filepath.Join(infoGolden, src)
	archive := filepath.Join(root, "archive", stanza)
	backup := filepath.Join(root, "backup", stanza)
	for _, ext := range []string{"", ".copy"} {
		infoCopy(t, filepath.Join(src, "archive.info"), filepath.Join(archive, "archive.info"+ext))
		infoCopy(t, filepath.Join(src, "backup.info"), filepath.Join(backup, "backup.info"+ext))
	}
	manifests, err := filepath.Glob(filepath.Join(src, "*.manifest"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no manifests in %s: %v", src, err)
	}
	for _, m := range manifests {
		label := strings.TrimSuffix(filepath.Base(m), ".manifest")
		for _, ext := range []string{"", ".copy"} {
			infoCopy(t, m, filepath.Join(backup, label, "backup.manifest"+ext))
		}
	}
	f, err := os.Open(filepath.Join(src, "archive-files.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		name := strings.TrimPrefix(sc.Text(), "./")
		if name == "" || strings.HasPrefix(name, "archive.info") {
			continue
		}
		infoWrite(t, filepath.Join(archive, filepath.FromSlash(name)), nil)
		n++
	}
	if err := sc.Err(); err != nil || n == 0 {
		t.Fatalf("archive listing of %s: %d files, %v", src, n, err)
	}
}

// infoPass returns the passphrase of the encrypted golden repository.
func infoPass(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(infoGolden, "pgbackrest-enc/repo2/user-passphrase.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// infoCase is one info invocation: a configuration file shared by
// pgbackrest and pgsidecar, and the command-line options.
type infoCase struct {
	name string
	// repos maps repoN options (without the "repoN-" prefix) per repository.
	repos []map[string]string
	args  []string
}

// infoConf writes the configuration file of c.
func infoConf(t *testing.T, c infoCase) (file, include string) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("[global]\n")
	b.WriteString("log-path=" + dir + "\nlock-path=" + dir + "\nlog-level-file=off\nlog-level-console=error\n")
	for i, r := range c.repos {
		for k, v := range r {
			b.WriteString("repo" + string(rune('1'+i)) + "-" + k + "=" + v + "\n")
		}
	}
	file = filepath.Join(dir, "pgbackrest.conf")
	infoWrite(t, file, []byte(b.String()))
	include = filepath.Join(dir, "conf.d")
	if err := os.Mkdir(include, 0o700); err != nil {
		t.Fatal(err)
	}
	return file, include
}

// infoBoth runs stock pgbackrest and Info on case c and returns both outputs.
func infoBoth(t *testing.T, bin string, c infoCase) (stock, ours []byte) {
	t.Helper()
	file, include := infoConf(t, c)
	args := append([]string{"--config=" + file, "--config-include-path=" + include}, c.args...)
	args = append(args, "info")

	cmd := exec.CommandContext(t.Context(), bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PGBACKREST_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stock, err := cmd.Output()
	if err != nil {
		t.Fatalf("pgbackrest %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}

	cfg, err := config.Load(config.Input{Args: args})
	if err != nil {
		t.Fatalf("load configuration: %v", err)
	}
	repos, err := OpenRepos(t.Context(), cfg, Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = CloseRepos(repos) })
	var out bytes.Buffer
	if err := Info(t.Context(), cfg, repos, &out); err != nil {
		t.Fatalf("Info: %v", err)
	}
	return stock, out.Bytes()
}

// infoCompare checks that ours, without pgsidecar's additions, is
// pgBackRest's output: JSON as values and byte for byte, text line by line.
func infoCompare(t *testing.T, json bool, stock, ours []byte) {
	t.Helper()
	ours = infoWithoutExtras(t, json, ours)
	if json {
		// pgBackRest writes control characters other than \n \r \t \b \f
		// raw (in error messages quoting garbage), which encoding/json
		// rejects: such output is compared as bytes only.
		var want, got any
		if err := infoDecode(stock, &want); err == nil {
			if err := infoDecode(ours, &got); err != nil {
				t.Fatalf("Info output %q: %v", ours, err)
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("JSON differs\npgbackrest: %s\npgsidecar:  %s", stock, ours)
			}
		} else if !bytes.ContainsFunc(stock, func(r rune) bool { return r < 0x20 }) {
			t.Fatalf("pgbackrest output %q: %v", stock, err)
		}
		if !bytes.Equal(stock, ours) {
			t.Fatalf("JSON equal as values but not as text\npgbackrest: %s\npgsidecar:  %s", stock, ours)
		}
		return
	}
	want := strings.Split(string(stock), "\n")
	got := strings.Split(string(ours), "\n")
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g || (i >= len(want)) != (i >= len(got)) {
			t.Fatalf("text differs at line %d\npgbackrest: %q\npgsidecar:  %q\n--- pgbackrest\n%s--- pgsidecar\n%s", i+1, w, g, stock, ours)
		}
	}
}

func infoDecode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// infoStatus returns the status code of every stanza of a JSON report, so
// that the cases assert what they are about and not only agreement.
func infoStatus(t *testing.T, report []byte) []string {
	t.Helper()
	var stanzas []struct {
		Name   string `json:"name"`
		Status struct {
			Code int `json:"code"`
		} `json:"status"`
		Backup []json.RawMessage `json:"backup"`
	}
	// Raw control characters only occur inside strings of a compact report.
	clean := bytes.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, report)
	if err := json.Unmarshal(clean, &stanzas); err != nil {
		t.Fatalf("report %q: %v", report, err)
	}
	var out []string
	for _, s := range stanzas {
		out = append(out, fmt.Sprintf("%s:%d/%d", s.Name, s.Status.Code, len(s.Backup)))
	}
	return out
}

func TestInfoMatchesPgBackRest(t *testing.T) {
	t.Parallel()
	bin := infoStock(t)
	pass := infoPass(t)

	root := t.TempDir()
	dir := func(name string) string { return filepath.Join(root, name) }
	infoRepoDir(t, dir("repo1"), "pgbackrest/repo1", "golden")
	infoRepoDir(t, dir("repo3"), "pgbackrest/repo3-bundle", "golden")
	infoRepoDir(t, dir("enc"), "pgbackrest-enc/repo2", "golden")
	// A second copy of repo1: equal timestamps across repositories.
	infoRepoDir(t, dir("repo1-copy"), "pgbackrest/repo1", "golden")

	// Several stanzas in one repository: a second stanza, a stanza without
	// backup.info and one whose archive.info is missing.
	infoRepoDir(t, dir("multi"), "pgbackrest/repo1", "golden")
	infoRepoDir(t, dir("multi"), "pgbackrest/repo3-bundle", "bundle")
	infoWrite(t, filepath.Join(dir("multi"), "backup", "nodata", "stray"), []byte("x"))
	infoRepoDir(t, dir("multi"), "pgbackrest/repo1", "noarchive")
	for _, ext := range []string{"", ".copy"} {
		if err := os.Remove(filepath.Join(dir("multi"), "archive", "noarchive", "archive.info"+ext)); err != nil {
			t.Fatal(err)
		}
	}
	// A repository whose backup.info copy is damaged and main file missing.
	infoRepoDir(t, dir("broken"), "pgbackrest/repo1", "golden")
	if err := os.Remove(filepath.Join(dir("broken"), "backup", "golden", "backup.info")); err != nil {
		t.Fatal(err)
	}
	infoWrite(t, filepath.Join(dir("broken"), "backup", "golden", "backup.info.copy"), []byte("garbage\n"))

	plain := func(name string) map[string]string { return map[string]string{"path": dir(name)} }
	encrypted := func(name, pass string) map[string]string {
		return map[string]string{"path": dir(name), "cipher-type": "aes-256-cbc", "cipher-pass": pass}
	}
	const (
		full = "20261129-102857F"
		incr = "20261129-102857F_20261129-102920I"
	)
	cases := []struct {
		infoCase
		// status lists "<stanza>:<status code>/<backups>" of the report.
		status []string
	}{
		{infoCase{"plain", []map[string]string{plain("repo1")}, []string{"--stanza=golden"}}, []string{"golden:0/3"}},
		{infoCase{"bundle", []map[string]string{plain("repo3")}, []string{"--stanza=golden"}}, []string{"golden:0/2"}},
		{infoCase{"set-full", []map[string]string{plain("repo1")}, []string{"--stanza=golden", "--set=" + full}}, []string{"golden:0/1"}},
		{infoCase{"set-incr", []map[string]string{plain("repo1")}, []string{"--stanza=golden", "--set=" + incr}}, []string{"golden:0/1"}},
		{infoCase{"set-missing", []map[string]string{plain("repo1"), plain("repo3")}, []string{"--stanza=golden", "--set=20200101-000000F"}}, []string{"golden:6/0"}},
		{infoCase{"type-incr", []map[string]string{plain("repo1"), plain("repo3")}, []string{"--stanza=golden", "--type=incr"}}, []string{"golden:0/2"}},
		{infoCase{"two-repos", []map[string]string{plain("repo1"), plain("repo3")}, []string{"--stanza=golden"}}, []string{"golden:0/5"}},
		{infoCase{"three-repos-mixed-cipher", []map[string]string{plain("repo1"), encrypted("enc", pass), plain("repo3")}, []string{"--stanza=golden"}}, []string{"golden:0/7"}},
		{infoCase{"copies", []map[string]string{plain("repo1"), plain("repo1-copy")}, []string{"--stanza=golden"}}, []string{"golden:0/6"}},
		{infoCase{"copies-set", []map[string]string{plain("repo1"), plain("repo1-copy")}, []string{"--stanza=golden", "--set=" + incr}}, []string{"golden:0/2"}},
		{infoCase{"repo-selected", []map[string]string{plain("repo1"), plain("repo3")}, []string{"--stanza=golden", "--repo=2"}}, []string{"golden:0/2"}},
		{infoCase{"missing-stanza", []map[string]string{plain("repo1"), plain("repo3")}, []string{"--stanza=missing"}}, []string{"missing:1/0"}},
		{infoCase{"all-stanzas", []map[string]string{plain("multi"), plain("repo3")}, nil},
			[]string{"bundle:4/2", "golden:0/5", "noarchive:4/0", "nodata:4/0"}},
		{infoCase{"no-stanzas", []map[string]string{plain("empty")}, nil}, nil},
		{infoCase{"encrypted", []map[string]string{encrypted("enc", pass)}, []string{"--stanza=golden"}}, []string{"golden:0/2"}},
		{infoCase{"encrypted-set", []map[string]string{encrypted("enc", pass)}, []string{"--stanza=golden", "--set=20261129-102907F_20261129-102925I"}}, []string{"golden:0/1"}},
		{infoCase{"wrong-passphrase", []map[string]string{plain("repo1"), encrypted("enc", "not-the-passphrase")}, []string{"--stanza=golden"}}, []string{"golden:4/3"}},
		{infoCase{"encrypted-read-plain", []map[string]string{plain("enc")}, []string{"--stanza=golden"}}, []string{"golden:99/0"}},
		{infoCase{"plain-read-encrypted", []map[string]string{encrypted("repo1", pass)}, []string{"--stanza=golden"}}, []string{"golden:99/0"}},
		{infoCase{"damaged-info", []map[string]string{plain("broken"), plain("repo3")}, []string{"--stanza=golden"}}, []string{"golden:4/2"}},
	}
	for _, c := range cases {
		for _, output := range []string{"text", "json"} {
			t.Run(c.name+"/"+output, func(t *testing.T) {
				t.Parallel()
				ic := c.infoCase
				ic.args = append(append([]string{}, ic.args...), "--output="+output)
				stock, ours := infoBoth(t, bin, ic)
				infoCompare(t, output == "json", stock, ours)
				if output == "json" {
					if got := infoStatus(t, ours); !reflect.DeepEqual(got, c.status) {
						t.Errorf("stanzas %v, want %v", got, c.status)
					}
				}
			})
		}
	}
}

func TestInfoSizeFormat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		size uint64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1KB"}, {1126, "1KB"}, {1127, "1.1KB"}, {1075, "1KB"},
		{575812, "562.3KB"}, {603232, "589KB"}, {1048575, "1024.0KB"},
		{1 << 20, "1MB"}, {31938844, "30.5MB"}, {1 << 30, "1GB"}, {3 << 29, "1.5GB"},
		{5 << 40, "5120GB"},
	} {
		if got := infoSize(c.size); got != c.want {
			t.Errorf("infoSize(%d) = %q, want %q", c.size, got, c.want)
		}
	}
}

// infoSaved writes what save returns to root/key and root/key.copy.
func infoSaved(t *testing.T, root, key string, save func() ([]byte, error)) {
	t.Helper()
	data, err := save()
	if err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"", ".copy"} {
		infoWrite(t, filepath.Join(root, filepath.FromSlash(key+ext)), data)
	}
}

// infoCraftedRepo stores the crafted files of repo/testdata (re-saved by
// package repo) under root: stanza varied (backup.info with a 9.6 and a 15
// cluster, offline, erroneous and block incremental backups, and the
// manifest of its incr backup with links, a tablespace and page errors) and
// stanza bi (a block incremental full backup).
func infoCraftedRepo(t *testing.T, root, stanza string) {
	t.Helper()
	crafted := filepath.Join(infoGolden, "crafted")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(crafted, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := repo.LoadBackupInfo("backup.info", read("backup-varied.info"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := repo.NewArchiveInfo(b.History[0].Version, b.History[0].SystemID, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddHistory(b.History[1].Version, b.History[1].SystemID); err != nil {
		t.Fatal(err)
	}
	m, err := repo.LoadManifest("backup.manifest", read("20250102-030405F_20250103-040506I.manifest"))
	if err != nil {
		t.Fatal(err)
	}
	infoSaved(t, root, "archive/"+stanza+"/archive.info", a.Save)
	infoSaved(t, root, "backup/"+stanza+"/backup.info", b.Save)
	infoSaved(t, root, "backup/"+stanza+"/"+repo.BackupManifestPath(m.Label), m.Save)
	// WAL of the 9.6 cluster only. What pgBackRest does not count: a first
	// WAL directory holding only history, backup and partial files, files
	// directly under the archive id, directories not named like WAL
	// directories and nested deeper, uncompressed and compressed segments.
	sha := strings.Repeat("0123456789", 4)
	for _, name := range []string{
		"00000002.history",
		"0000000100000000/000000010000000000000001.00000028.backup",
		"0000000100000000/000000010000000000000002.partial-" + sha + ".gz",
		"0000000100000000/00000002.history",
		"000000020000000A/000000020000000A000000FE-" + sha + ".zst",
		"000000020000000A/000000020000000A000000FF-" + sha,
		"000000020000000A/000000020000000A000000FE.00000028.backup",
		"000000020000000B/000000020000000B00000001-" + sha + ".lz4",
		"000000020000000B/000000020000000B00000002-" + sha + ".gz.tmp",
		"000000020000000B/000000020000000B00000003.partial-" + sha + ".gz",
		"000000020000000C/sub/000000020000000C00000001-" + sha + ".gz",
		"000000020000000c/000000020000000C00000001-" + sha + ".gz",
		"000000020000000B00000009-" + sha + ".gz",
	} {
		infoWrite(t, filepath.Join(root, "archive", stanza, "9.6-1", filepath.FromSlash(name)), nil)
	}

	bm, err := repo.LoadManifest("backup.manifest", read("20250105-000000F.manifest"))
	if err != nil {
		t.Fatal(err)
	}
	bb, err := repo.NewBackupInfo(bm.DB.Version, bm.DB.SystemID, bm.DB.CatalogVersion, "")
	if err != nil {
		t.Fatal(err)
	}
	ba, err := repo.NewArchiveInfo(bm.DB.Version, bm.DB.SystemID, "")
	if err != nil {
		t.Fatal(err)
	}
	for bb.CurrentID < bm.DB.ID {
		if err := bb.AddHistory(bm.DB.Version, bm.DB.SystemID, bm.DB.CatalogVersion); err != nil {
			t.Fatal(err)
		}
		if err := ba.AddHistory(bm.DB.Version, bm.DB.SystemID); err != nil {
			t.Fatal(err)
		}
	}
	entry, err := repo.BackupFromManifest(bm)
	if err != nil {
		t.Fatal(err)
	}
	bb.Add(entry)
	infoSaved(t, root, "archive/bi/archive.info", ba.Save)
	infoSaved(t, root, "backup/bi/backup.info", bb.Save)
	infoSaved(t, root, "backup/bi/"+repo.BackupManifestPath(bm.Label), bm.Save)
	// WAL under the archive id of the first (not current) history entry:
	// pgBackRest matches the history entry by id, system id and version.
	infoWrite(t, filepath.Join(root, "archive", "bi", "15-1", "0000000100000000", "000000010000000000000003-"+sha), nil)
	infoWrite(t, filepath.Join(root, "archive", "bi", "15-3", "0000000100000000", "000000010000000000000007-"+sha+".bz2"), nil)
}

func TestInfoMatchesPgBackRestCrafted(t *testing.T) {
	t.Parallel()
	bin := infoStock(t)
	root := t.TempDir()
	crafted := filepath.Join(root, "crafted")
	infoCraftedRepo(t, crafted, "varied")
	// The crafted cluster as stanza golden, next to the real golden one: the
	// current databases differ.
	other := filepath.Join(root, "other")
	infoCraftedRepo(t, other, "golden")
	golden := filepath.Join(root, "golden")
	infoRepoDir(t, golden, "pgbackrest/repo1", "golden")

	repos := func(dirs ...string) []map[string]string {
		var out []map[string]string
		for _, d := range dirs {
			out = append(out, map[string]string{"path": d})
		}
		return out
	}
	cases := []struct {
		infoCase
		status []string
	}{
		{infoCase{"all", repos(crafted), nil}, []string{"bi:0/1", "varied:0/4"}},
		{infoCase{"set-links-errors", repos(crafted), []string{"--stanza=varied", "--set=20250102-030405F_20250103-040506I"}}, []string{"varied:0/1"}},
		{infoCase{"set-without-manifest", repos(crafted), []string{"--stanza=varied", "--set=20250102-030405F"}}, []string{"varied:6/0"}},
		{infoCase{"set-block-incr", repos(crafted), []string{"--stanza=bi", "--set=20250105-000000F"}}, []string{"bi:0/1"}},
		{infoCase{"type-diff", repos(crafted), []string{"--stanza=varied", "--type=diff"}}, []string{"varied:0/1"}},
		{infoCase{"db-mismatch", repos(golden, other), []string{"--stanza=golden"}}, []string{"golden:5/7"}},
		{infoCase{"db-mismatch-set", repos(other, golden), []string{"--stanza=golden", "--set=20261129-102857F"}}, []string{"golden:5/1"}},
	}
	for _, c := range cases {
		for _, output := range []string{"text", "json"} {
			t.Run(c.name+"/"+output, func(t *testing.T) {
				t.Parallel()
				ic := c.infoCase
				ic.args = append(append([]string{}, ic.args...), "--output="+output)
				stock, ours := infoBoth(t, bin, ic)
				infoCompare(t, output == "json", stock, ours)
				if output == "json" {
					if got := infoStatus(t, ours); !reflect.DeepEqual(got, c.status) {
						t.Errorf("stanzas %v, want %v", got, c.status)
					}
				}
			})
		}
	}
}
