package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPgsidecarExpire takes, with repo1-retention-full=2, a full backup with a
// differential and an incremental on it, a second full and a third full (WAL
// archived between them), then expires with pgsidecar: the oldest full, its
// diff and its incr must go with the WAL only they needed. Stock pgbackrest
// expire, run on a copy of the same repository, must leave exactly the same
// files; pgbackrest info and verify must agree the result is consistent. A
// fourth full with expire-auto (the default) then expires the second full.
func TestPgsidecarExpire(t *testing.T) {
	t.Parallel()
	u := requirePostgres(t)
	cfg := newPgbackrestConfig(t, repoVariant{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"})
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand()})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")

	c.Pgbench(t, "-i", "-s", "1", "-q")
	work := func() {
		c.Pgbench(t, "-n", "-c", "2", "-t", "50")
		c.SwitchWAL(t)
	}
	backup := func(typ string, args ...string) {
		work()
		pgsidecarRun(t, cfg.Path, append([]string{stanza, "--type=" + typ}, append(args, "backup")...)...)
	}
	backup("full")
	backup("diff")
	backup("incr")
	backup("full")
	backup("full", "--no-expire-auto")
	// Stopped, the cluster archives nothing more while the repositories are compared.
	c.Stop(t)

	before := pgbackrestInfoJSON(t, cfg.Path)
	if len(before.Backup) != 5 {
		t.Fatalf("%d backups before expire, want 5", len(before.Backup))
	}
	expired, kept := before.Backup[:3], before.Backup[3:]
	walBefore := pgbackrestArchivedWAL(t, cfg.Path)

	// A copy of the repository for stock pgbackrest expire.
	copyDir := filepath.Join(newWorkDir(t, u, "expire-copy"), "repo")
	mustRunAsUser(t, u, userCmd{Path: "cp", Args: []string{"-a", cfg.Repo.Path, copyDir}})
	conf, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	copyConf := filepath.Join(filepath.Dir(copyDir), "pgbackrest.conf")
	writeFileAs(t, u, copyConf, []byte(strings.Replace(string(conf), "repo1-path="+cfg.Repo.Path+"\n", "repo1-path="+copyDir+"\n", 1)))

	res := pgsidecarTry(t, cfg.Path, stanza, "--log-level-console=info", "expire")
	if res.Code != 0 {
		t.Fatalf("pgsidecar expire: %s", res)
	}
	logs := res.Stdout + res.Stderr
	labels := expired[0].Label + ", " + expired[1].Label + ", " + expired[2].Label
	for _, want := range []string{
		"repo1: expire full backup set " + labels,
		"repo1: remove expired backup " + expired[2].Label,
		"repo1: remove expired backup " + expired[0].Label,
		"repo1: 15-1 remove archive, start = ",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("pgsidecar expire log lacks %q:\n%s", want, logs)
		}
	}
	pgbackrestRun(t, copyConf, stanza, "expire")
	// Every "repoN: ..." line stock expire logged, pgsidecar logged too.
	stock, err := os.ReadFile(filepath.Join(cfg.Dir, "log", pgbackrestStanza+"-expire.log"))
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, line := range strings.Split(string(stock), "\n") {
		_, msg, ok := strings.Cut(line, " INFO: ")
		if !ok || !strings.HasPrefix(msg, "repo1: ") {
			continue
		}
		compared++
		if !strings.Contains(logs, msg) {
			t.Errorf("pgbackrest expire logged %q, pgsidecar did not:\n%s", msg, logs)
		}
	}
	if compared < 3 {
		t.Errorf("only %d repo1 lines in pgbackrest's expire log:\n%s", compared, stock)
	}

	after := pgbackrestInfoJSON(t, cfg.Path)
	var got []string
	for _, b := range after.Backup {
		got = append(got, b.Label)
	}
	if want := []string{kept[0].Label, kept[1].Label}; !slices.Equal(got, want) {
		t.Fatalf("backups after expire %v, want %v", got, want)
	}
	// WAL: everything from the oldest kept backup's start is kept, everything
	// before it is gone.
	walAfter := pgbackrestArchivedWAL(t, cfg.Path)
	start := kept[0].Archive.Start
	var wantWAL []string
	removed := 0
	for _, f := range walBefore {
		if filepath.Base(f)[:24] >= start {
			wantWAL = append(wantWAL, f)
		} else {
			removed++
		}
	}
	if removed == 0 {
		t.Errorf("no WAL older than %s before expire: the test does not exercise WAL expiry", start)
	}
	if !slices.Equal(walAfter, wantWAL) {
		t.Errorf("WAL after expire:\n%v\nwant\n%v", walAfter, wantWAL)
	}
	if ours, theirs := repoFiles(t, cfg.Repo.Path), repoFiles(t, copyDir); !slices.Equal(ours, theirs) {
		t.Errorf("files left by pgsidecar expire differ from pgbackrest expire:\n%s", diffLists(ours, theirs))
	}
	for _, b := range expired {
		if _, err := os.Lstat(filepath.Join(cfg.Repo.Path, "backup", pgbackrestStanza, b.Label)); err == nil {
			t.Errorf("directory of expired backup %s still exists", b.Label)
		}
	}
	checkConsistent(t, cfg.Path, got)
	requireSameInfo(t, cfg.Path)

	// expire-auto (default y) after the next full expires the second full.
	c.Start(t)
	backup("full")
	final := pgbackrestInfoJSON(t, cfg.Path)
	if len(final.Backup) != 2 || final.Backup[0].Label != kept[1].Label {
		t.Fatalf("after an expire-auto backup: %+v, want %s and the new full", final.Backup, kept[1].Label)
	}
	for _, f := range pgbackrestArchivedWAL(t, cfg.Path) {
		if filepath.Base(f)[:24] < kept[1].Archive.Start {
			t.Errorf("WAL %s older than the oldest kept backup (%s) left after expire-auto", f, kept[1].Archive.Start)
		}
	}
	checkConsistent(t, cfg.Path, []string{final.Backup[0].Label, final.Backup[1].Label})
}

// checkConsistent runs pgbackrest verify and requires every listed backup to
// be valid and no WAL problem.
func checkConsistent(t *testing.T, confPath string, labels []string) {
	t.Helper()
	rep := pgbackrestVerify(t, confPath)
	if rep.Status != "ok" {
		t.Fatalf("pgbackrest verify: status %s\n%s", rep.Status, rep.Text)
	}
	for _, l := range labels {
		if st := rep.Backups[l]; st != "valid" {
			t.Errorf("pgbackrest verify: backup %s is %q, want valid\n%s", l, st, rep.Text)
		}
	}
	if len(rep.Backups) != len(labels) {
		t.Errorf("pgbackrest verify checked %d backups, want %d\n%s", len(rep.Backups), len(labels), rep.Text)
	}
}

// repoFiles lists the regular files of a posix repository, relative to it,
// leaving out the info files' content (both tools rewrite them) and the
// "latest" symlink.
func repoFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	slices.Sort(out)
	return out
}

// diffLists renders the entries only in a ("-") or only in b ("+").
func diffLists(a, b []string) string {
	var s strings.Builder
	for _, x := range a {
		if !slices.Contains(b, x) {
			s.WriteString("- " + x + "\n")
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			s.WriteString("+ " + x + "\n")
		}
	}
	return s.String()
}
