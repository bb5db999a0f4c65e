package integration

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// checkPgsidecarReads proves that pgsidecar reads a repository stock
// pgbackrest wrote: both info files (through info, whose JSON must equal
// pgbackrest's), the backups and the WAL archive it lists, and every file
// of the repository, decrypted, decompressed and checksummed (verify).
func checkPgsidecarReads(t *testing.T, f *pgbackrestFixture) {
	t.Helper()
	stanza := "--stanza=" + pgbackrestStanza
	ours := pgsidecarRun(t, f.Config.Path, stanza, "--output=json", "info")
	theirs := pgbackrestRun(t, f.Config.Path, stanza, "--output=json", "info")
	var a, b any
	if err := json.Unmarshal([]byte(ours), &a); err != nil {
		t.Fatalf("pgsidecar info --output=json: %v\n%s", err, ours)
	}
	if err := json.Unmarshal([]byte(theirs), &b); err != nil {
		t.Fatalf("pgbackrest info --output=json: %v\n%s", err, theirs)
	}
	if !reflect.DeepEqual(withoutPgsidecarInfoJSON(a), b) {
		t.Errorf("info JSON differs:\npgsidecar:  %s\npgbackrest: %s", ours, theirs)
	}
	if text := withoutPgsidecarInfo(t, pgsidecarRun(t, f.Config.Path, stanza, "info")); text != pgbackrestRun(t, f.Config.Path, stanza, "info") {
		t.Errorf("info text differs from pgbackrest's:\n%s", text)
	}
	for _, want := range []string{f.FullLabel, f.IncrLabel, f.Segments[0], f.Segments[len(f.Segments)-1]} {
		if !strings.Contains(ours, want) {
			t.Errorf("pgsidecar info lacks %s", want)
		}
	}

	out := pgsidecarRun(t, f.Config.Path, stanza, "--process-max=2", "verify")
	m := regexp.MustCompile(`repo1: (\d+) WAL files, 2 backups \((\d+) files\) checked: ok`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pgsidecar verify did not report a clean repository:\n%s", out)
	}
	walChecked, _ := strconv.Atoi(m[1])
	if walChecked < len(f.WALFiles) {
		t.Errorf("pgsidecar verify checked %d WAL files, the archive holds %d", walChecked, len(f.WALFiles))
	}
	filesChecked, _ := strconv.Atoi(m[2])
	rep := pgbackrestVerify(t, f.Config.Path)
	total := 0
	for _, counts := range rep.BackupFiles {
		total += counts["checked"]
	}
	// pgbackrest counts each backup's own files; ours reads every file each
	// manifest names, references included, so it checks at least as many.
	if filesChecked < total {
		t.Errorf("pgsidecar verify checked %d backup files, pgbackrest %d", filesChecked, total)
	}
}

// TestPgbackrestReadsPgsidecarStanza proves the reverse: a stanza created by
// pgsidecar is accepted by stock pgbackrest's info, check (which archives a
// segment through pgbackrest into it) and archive-get, for posix and MinIO,
// plain and encrypted.
func TestPgbackrestReadsPgsidecarStanza(t *testing.T) {
	t.Parallel()
	for _, v := range []repoVariant{
		{Storage: "posix", Cipher: "none", Compress: "gz"},
		{Storage: "posix", Cipher: "aes-256-cbc", Compress: "lz4"},
		{Storage: "s3", Cipher: "none", Compress: "zst"},
		{Storage: "s3", Cipher: "aes-256-cbc", Compress: "gz"},
	} {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			cfg := newPgbackrestConfig(t, v)
			c := newCluster(t, clusterOptions{ArchiveCommand: cfg.ArchiveCommand(), DataChecksums: true})
			cfg.Write(t, c)
			c.Start(t)
			stanza := "--stanza=" + pgbackrestStanza
			pgsidecarRun(t, cfg.Path, stanza, "stanza-create")

			info := pgbackrestInfoJSON(t, cfg.Path)
			if info.Status.Code != 2 || info.Cipher != v.Cipher {
				t.Fatalf("pgbackrest info on pgsidecar's stanza: status %d %q, cipher %q", info.Status.Code, info.Status.Message, info.Cipher)
			}
			// check switches WAL and waits until pgbackrest's archive_command
			// has pushed it into the stanza: it must read archive.info and
			// encrypt with the sub-passphrase pgsidecar generated.
			pgbackrestRun(t, cfg.Path, stanza, "check")
			seg := c.SwitchWAL(t)
			c.WaitArchived(t, seg, archiveWaitTimeout)
			dest := fmt.Sprintf("%s/%s.fetched", c.WorkDir(), seg)
			pgbackrestRun(t, cfg.Path, stanza, "archive-get", seg, dest)
			if got := pgsidecarRun(t, cfg.Path, stanza, "--output=json", "info"); !strings.Contains(got, seg) {
				t.Errorf("pgsidecar info does not list the archived %s: %s", seg, got)
			}
			out := pgsidecarRun(t, cfg.Path, stanza, "verify")
			if !strings.Contains(out, "checked: ok") {
				t.Errorf("pgsidecar verify: %s", out)
			}
		})
	}
}
