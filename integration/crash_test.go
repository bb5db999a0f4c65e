package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// crashStatus is the daemon's answer to the socket's op "status".
type crashStatus struct {
	V      int  `json:"v"`
	OK     bool `json:"ok"`
	Status *struct {
		Running *struct {
			Repo  int    `json:"repo"`
			Type  string `json:"type"`
			State string `json:"state"`
			Done  uint64 `json:"done"`
			Total uint64 `json:"total"`
		} `json:"running"`
	} `json:"status"`
	Message string `json:"message"`
}

// daemonRequest sends one request line to the daemon's socket and decodes
// the answer into resp; it waits at most timeout (0: no limit).
func daemonRequest(socket, req string, timeout time.Duration, resp any) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(timeout))
	}
	if _, err := c.Write([]byte(req + "\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, resp)
}

// backupDirLabel matches a backup directory name.
var backupDirLabel = regexp.MustCompile(`^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$`)

// unfinishedBackups lists the backup directories of the stanza in a posix
// repository that have no backup.manifest.
func unfinishedBackups(t *testing.T, repoDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoDir, "backup", pgbackrestStanza))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && backupDirLabel.MatchString(e.Name()) &&
			!fileExists(filepath.Join(repoDir, "backup", pgbackrestStanza, e.Name(), "backup.manifest")) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestDaemonKilledMidBackup kills the daemon (`pgsidecar run`) with SIGKILL
// in the middle of the copy of a full backup it runs, and checks what
// follows: neither pgsidecar's nor pgbackrest's info lists the half-written
// backup; a restarted daemon takes the dead daemon's backup lease over at
// once (no wait for its 5-minute expiry), removes the unfinished directory
// before it backs up (expire-auto is off, so nothing else removes it), and
// its full backup passes pgsidecar's and pgbackrest's verify and restores
// with pgbackrest to the data it was taken from.
func TestDaemonKilledMidBackup(t *testing.T) {
	t.Parallel()
	u := requirePostgres(t)
	cfg := newPgbackrestConfig(t, repoVariant{Storage: storagePosix, Cipher: cipherNone, Compress: "gz"})
	// One file at a time, gz: the copy of pgbench -s 20 takes seconds.
	cfg.Options = map[string]string{"process-max": "1", "expire-auto": "n", "archive-async": "y"}
	c := newCluster(t, clusterOptions{ArchiveCommand: cfg.PgsidecarArchiveCommand(), DataChecksums: true})
	cfg.Write(t, c)
	c.Start(t)
	stanza := "--stanza=" + pgbackrestStanza
	pgsidecarRun(t, cfg.Path, stanza, "stanza-create")
	c.Pgbench(t, "-i", "-s", "20", "-q")
	c.SQL(t, "CREATE TABLE crash_marks (phase text NOT NULL); INSERT INTO crash_marks VALUES ('before the crash')")

	socket := filepath.Join(cfg.Dir, "spool", "pgsidecar-"+pgbackrestStanza+".sock")
	log1 := filepath.Join(cfg.Dir, "daemon1.log")
	d := startWALDaemon(t, u, cfg.Path, log1)
	d.waitSocket(t, socket)

	// A one-off full backup through the socket (a `pgsidecar backup` client
	// would run the backup itself once the daemon is gone).
	answered := make(chan error, 1)
	go func() {
		var resp crashStatus
		err := daemonRequest(socket, `{"v":1,"op":"backup","repo":1,"type":"full"}`, 0, &resp)
		if err == nil {
			err = fmt.Errorf("%w (ok %v): %s", errAnswered, resp.OK, resp.Message)
		}
		answered <- err
	}()
	var total uint64
	sawInfo := false
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var resp crashStatus
		if err := daemonRequest(socket, `{"v":1,"op":"status"}`, 5*time.Second, &resp); err != nil || !resp.OK || resp.Status == nil {
			t.Fatalf("status: %+v, %v", resp, err)
		}
		// The copy is under way once the total is known (progress counts
		// whole files: pgbench_accounts alone is most of it).
		r := resp.Status.Running
		if r != nil && r.Total > 0 && !sawInfo {
			// info shows the running backup and its progress.
			text := pgsidecarRun(t, cfg.Path, stanza, "info")
			lines := pgsidecarInfoLines(text)
			if len(lines) != 1 || !regexp.MustCompile(`^backup running: repo1 full \(one-off\) since [0-9-]+ [0-9:]+, \S+ of \S+ copied \(\d+%\)$`).MatchString(lines[0]) {
				t.Fatalf("info during the backup: pgsidecar lines %q\n%s", lines, text)
			}
			t.Logf("info during the backup: %s", lines[0])
			sawInfo = true
			continue
		}
		if r != nil && r.Total > 0 && len(unfinishedBackups(t, cfg.Repo.Path)) == 1 {
			if r.Done >= r.Total {
				t.Fatalf("the copy ended before the kill (%d of %d bytes): the backup is too fast for this test", r.Done, r.Total)
			}
			total = r.Total
			t.Logf("killing the daemon at %d of %d bytes copied", r.Done, r.Total)
			break
		}
		select {
		case err := <-answered:
			t.Fatalf("the backup ended before the kill: %v\n%s", err, tail(log1, 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backup did not get under way; daemon log:\n%s", tail(log1, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := d.cmd.Process.Pid
	d.kill()
	if err := <-answered; errors.Is(err, errAnswered) {
		t.Fatalf("backup request: %v", err)
	}
	partial := unfinishedBackups(t, cfg.Repo.Path)
	if len(partial) != 1 || !fileExists(filepath.Join(cfg.Repo.Path, "backup", pgbackrestStanza, partial[0], "backup.manifest.copy")) {
		t.Fatalf("unfinished backups after the kill: %v", partial)
	}
	// It holds what was being copied (written under temporary names until
	// complete).
	var written []string
	_ = filepath.WalkDir(filepath.Join(cfg.Repo.Path, "backup", pgbackrestStanza, partial[0], "pg_data"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			written = append(written, filepath.Base(p))
		}
		return nil
	})
	if len(written) == 0 {
		t.Fatalf("the unfinished backup %s holds no file of pg_data: the kill came before the copy", partial[0])
	}
	t.Logf("the dead daemon (pid %d) left %s (%d bytes to copy) with %d files in pg_data, e.g. %s", pid, partial[0], total, len(written), written[0])
	var lease struct {
		Holder  string `json:"holder"`
		Process struct {
			PID int `json:"pid"`
		} `json:"process"`
	}
	leaseFile := filepath.Join(cfg.Repo.Path, "backup", pgbackrestStanza, "pgsidecar.lease")
	if b, err := os.ReadFile(leaseFile); err != nil || json.Unmarshal(b, &lease) != nil || lease.Process.PID != pid {
		t.Fatalf("lease left by the dead daemon %q (%v): want its pid %d", b, err, pid)
	}

	// Neither info lists the half-written backup.
	ours, theirs := pgsidecarRun(t, cfg.Path, stanza, "info"), pgbackrestRun(t, cfg.Path, stanza, "info")
	if ours != theirs {
		t.Errorf("pgsidecar info after the kill differs from pgbackrest's:\n%s\n---\n%s", ours, theirs)
	}
	if strings.Contains(ours, partial[0]) || strings.Contains(theirs, partial[0]) {
		t.Fatalf("info lists the unfinished backup %s:\n%s\n---\n%s", partial[0], ours, theirs)
	}
	if info := pgbackrestInfoJSON(t, cfg.Path); len(info.Backup) != 0 {
		t.Fatalf("pgbackrest info lists %d backups after the kill", len(info.Backup))
	}
	if out := pgsidecarRun(t, cfg.Path, stanza, "--output=json", "info"); strings.Contains(out, partial[0]) {
		t.Fatalf("pgsidecar info --output=json lists the unfinished backup: %s", out)
	}

	// A new daemon; the next backup goes through it.
	c.SQL(t, "INSERT INTO crash_marks VALUES ('after the crash')")
	want := c.SQL(t, crashDataQuery)
	log2 := filepath.Join(cfg.Dir, "daemon2.log")
	d2 := startWALDaemon(t, u, cfg.Path, log2)
	d2.waitSocket(t, socket)
	began := time.Now()
	pgsidecarRun(t, cfg.Path, stanza, "--type=full", "backup")
	elapsed := time.Since(began)
	dlog := readString(log2)
	if !strings.Contains(dlog, "taking over the backup lease of an agent that no longer runs") {
		t.Errorf("the new daemon did not take the dead daemon's lease over; its log:\n%s", tail(log2, 30))
	}
	if strings.Contains(dlog, "backup lease held by another agent, waiting") {
		t.Errorf("the new daemon waited for the dead daemon's lease (backup took %v); its log:\n%s", elapsed, tail(log2, 30))
	}
	if !strings.Contains(dlog, "backup '"+partial[0]+"' cannot be resumed") {
		t.Errorf("the new daemon did not report removing %s; its log:\n%s", partial[0], tail(log2, 30))
	}
	t.Logf("backup after the crash took %v", elapsed)
	if left := unfinishedBackups(t, cfg.Repo.Path); len(left) != 0 {
		t.Fatalf("unfinished backups after the next backup: %v", left)
	}
	if fileExists(leaseFile) {
		t.Errorf("lease left after the backup: %s", readString(leaseFile))
	}

	info := pgbackrestInfoJSON(t, cfg.Path)
	if len(info.Backup) != 1 || info.Backup[0].Type != "full" || info.Backup[0].Label == partial[0] {
		t.Fatalf("pgbackrest info after the next backup: %+v", info.Backup)
	}
	label := info.Backup[0].Label
	text := pgsidecarRun(t, cfg.Path, stanza, "info")
	if got := withoutPgsidecarInfo(t, text); got != pgbackrestRun(t, cfg.Path, stanza, "info") {
		t.Errorf("pgsidecar info after the next backup differs from pgbackrest's:\n%s", text)
	}
	if lines := pgsidecarInfoLines(text); len(lines) != 1 || !strings.HasPrefix(lines[0], "recovery window (repo1): ") ||
		!strings.Contains(lines[0], " (backup "+label+") - ") {
		t.Errorf("pgsidecar lines after the next backup: %q", lines)
	}
	if out := pgsidecarRun(t, cfg.Path, stanza, "verify"); !strings.Contains(out, "1 backups") || !strings.Contains(out, "checked: ok") {
		t.Errorf("pgsidecar verify: %s", out)
	}
	if rep := requireVerified(t, cfg.Path, label); len(rep.Backups) != 1 {
		t.Fatalf("pgbackrest verify: backups %v, want only %s\n%s", rep.Backups, label, rep.Text)
	}

	// pgbackrest restores the new backup to the data it was taken from.
	r := pgbackrestRestoreStarted(t, cfg.Path, label)
	if got := r.SQL(t, crashDataQuery); got != want {
		t.Errorf("restored data %q, want %q", got, want)
	}
	if got := r.SQL(t, "SELECT string_agg(phase, ',' ORDER BY phase) FROM crash_marks"); got != "after the crash,before the crash" {
		t.Errorf("restored marks %q", got)
	}
	r.Stop(t)
}

// errAnswered reports that the daemon answered a request it should have
// died in.
var errAnswered = errors.New("the daemon answered the backup request")

// crashDataQuery sums up the pgbench tables and the marks.
const crashDataQuery = "SELECT (SELECT count(*) || '/' || sum(aid) || '/' || sum(abalance) FROM pgbench_accounts) || ' ' || " +
	"(SELECT count(*) || '/' || sum(bbalance) FROM pgbench_branches) || ' ' || (SELECT count(*) FROM crash_marks)"
