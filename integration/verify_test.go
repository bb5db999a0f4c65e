package integration

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// walObjectName matches the repository name of a full WAL segment.
var walObjectName = regexp.MustCompile(`^([0-9A-F]{24})-[0-9a-f]{40}(\.\w+)?$`)

// TestVerifyNamesDamage archives and backs up with pgsidecar, checks that
// verify passes (and that stock pgbackrest's info and verify accept the
// state file verify leaves), then corrupts one backup file, truncates one
// WAL file and deletes one WAL segment: verify names all three and exits
// 104, reading again only what changed.
func TestVerifyNamesDamage(t *testing.T) {
	t.Parallel()
	for _, v := range []repoVariant{
		{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"},
		{Storage: storagePosix, Cipher: cipherAES, Compress: "lz4"},
	} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			cfg := newPgbackrestConfig(t, v)
			archiveCommand := fmt.Sprintf("%s --config=%s --stanza=%s archive-push %%p", pgsidecarBin, cfg.Path, pgbackrestStanza)
			c := newCluster(t, clusterOptions{ArchiveCommand: archiveCommand, DataChecksums: true})
			cfg.Write(t, c)
			c.Start(t)
			stanza := "--stanza=" + pgbackrestStanza
			pgsidecarRun(t, cfg.Path, stanza, "stanza-create")
			c.Pgbench(t, "-i", "-s", "1", "-q")
			pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")
			var seg string
			for range 4 {
				seg = c.SwitchWAL(t)
			}
			c.WaitArchived(t, seg, archiveWaitTimeout)
			c.Stop(t) // nothing is archived between the two verifies

			out := pgsidecarRun(t, cfg.Path, stanza, "--process-max=2", "verify")
			if !regexp.MustCompile(`repo1: \d+ WAL files, 1 backups \(\d+ files\) checked: ok`).MatchString(out) {
				t.Fatalf("pgsidecar verify of a clean repository:\n%s", out)
			}
			backupDir := filepath.Join(cfg.Repo.Path, "backup", pgbackrestStanza)
			if _, err := os.Stat(filepath.Join(backupDir, "pgsidecar-verify.state")); err != nil {
				t.Fatalf("verify left no state: %v", err)
			}
			// Stock pgbackrest ignores the state file.
			if rep := pgbackrestVerify(t, cfg.Path); rep.Status != "ok" {
				t.Errorf("pgbackrest verify with the state file present: %s", rep.Text)
			}
			if info := pgbackrestInfoJSON(t, cfg.Path); info.Status.Code != 0 {
				t.Errorf("pgbackrest info with the state file present: status %d %q", info.Status.Code, info.Status.Message)
			}

			// The largest backup file, corrupted in its middle.
			var victim string
			var victimSize int64
			if err := filepath.WalkDir(backupDir, func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() || !strings.Contains(p, "/pg_data/") {
					return err
				}
				fi, err := e.Info()
				if err == nil && fi.Size() > victimSize {
					victim, victimSize = p, fi.Size()
				}
				return err
			}); err != nil || victim == "" {
				t.Fatalf("no backup file to corrupt: %v", err)
			}
			data, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xFF
			if err := os.WriteFile(victim, data, 0o640); err != nil {
				t.Fatal(err)
			}
			victimRel := strings.TrimPrefix(victim, filepath.Join(cfg.Repo.Path)+"/")

			// WAL: the second-to-last segment truncated, the one before deleted
			// (a gap: the last one is still there).
			walPaths := map[string]string{}
			if err := filepath.WalkDir(filepath.Join(cfg.Repo.Path, "archive", pgbackrestStanza), func(p string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					if m := walObjectName.FindStringSubmatch(e.Name()); m != nil {
						walPaths[m[1]] = p
					}
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			segs := make([]string, 0, len(walPaths))
			for s := range walPaths {
				segs = append(segs, s)
			}
			slices.Sort(segs)
			if len(segs) < 4 {
				t.Fatalf("only %d WAL segments archived: %v", len(segs), segs)
			}
			truncated, deleted := segs[len(segs)-2], segs[len(segs)-3]
			fi, err := os.Stat(walPaths[truncated])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(walPaths[truncated], fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(walPaths[deleted]); err != nil {
				t.Fatal(err)
			}

			res := pgsidecarTry(t, cfg.Path, stanza, "--process-max=2", "verify")
			if res.Code != 104 {
				t.Fatalf("pgsidecar verify of a damaged repository: %s", res)
			}
			t.Logf("pgsidecar verify of the damaged repository:\n%s", res.Stdout)
			lines := strings.Split(res.Stdout, "\n")
			for _, want := range []struct{ what, name, also string }{
				{"corrupted backup file", victimRel, ""},
				{"truncated WAL file", filepath.Base(walPaths[truncated]), ""},
				{"missing WAL segment", deleted, "is missing"},
			} {
				if !slices.ContainsFunc(lines, func(l string) bool {
					return strings.Contains(l, want.name) && strings.Contains(l, want.also)
				}) {
					t.Errorf("verify does not name the %s %s:\n%s", want.what, want.name, res)
				}
			}
			// Only the two changed objects were read again.
			m := regexp.MustCompile(`repo1: (\d+) WAL files, 1 backups \((\d+) files\) checked: \d+ problems`).FindStringSubmatch(res.Stdout)
			if m == nil {
				t.Fatalf("no summary line:\n%s", res)
			}
			wantSkipped := fmt.Sprintf("repo1: %s WAL files and %s backup files unchanged since the last verify were not read again",
				decr(m[1]), decr(m[2]))
			if !strings.Contains(res.Stdout, wantSkipped) {
				t.Errorf("want %q in\n%s", wantSkipped, res)
			}
		})
	}
}

// decr returns the decimal string n minus one.
func decr(n string) string {
	var i int
	_, _ = fmt.Sscan(n, &i)
	return fmt.Sprint(i - 1)
}
