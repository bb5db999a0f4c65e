package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// infoExtraLine matches a line of pgsidecar's additions to the text report.
var infoExtraLine = regexp.MustCompile(`^    (recovery window \(repo[1-4]\)|backup running|backup queued): \S`)

// infoWithoutExtras returns report without pgsidecar's additions: in text,
// the block of infoExtraLine lines that a blank line sets off at the end of
// a stanza; in JSON, the "pgsidecar" key of each stanza. Lines or keys of
// another shape stay, and so does a block anywhere but at the end of a
// stanza, so that comparing the rest with pgBackRest's report still catches
// every difference.
func infoWithoutExtras(t *testing.T, isJSON bool, report []byte) []byte {
	t.Helper()
	if isJSON {
		key := []byte(`,"` + infoExtrasKey + `":{`)
		out := report
		for {
			i := bytes.Index(out, key)
			if i < 0 {
				return out
			}
			end := infoJSONObjectEnd(out, i+len(key)-1)
			if end < 0 {
				t.Fatalf("unterminated %s object in %s", infoExtrasKey, report)
			}
			out = append(out[:i:i], out[end:]...)
		}
	}
	lines := strings.SplitAfter(string(report), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); i++ {
		if lines[i] == "\n" && i+1 < len(lines) && infoExtraLine.MatchString(lines[i+1]) {
			j := i + 1
			for j < len(lines) && infoExtraLine.MatchString(lines[j]) {
				j++
			}
			// The block ends the stanza: the report ends, or the next stanza starts.
			if j == len(lines) || (lines[j] == "" && j == len(lines)-1) ||
				(lines[j] == "\n" && j+1 < len(lines) && strings.HasPrefix(lines[j+1], "stanza: ")) {
				i = j - 1
				continue
			}
		}
		out.WriteString(lines[i])
	}
	return []byte(out.String())
}

// infoJSONObjectEnd returns the index after the JSON object that starts at
// b[start] ('{'), -1 when it does not end.
func infoJSONObjectEnd(b []byte, start int) int {
	depth := 0
	inString := false
	for i := start; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// pgTimestamptz formats t as PostgreSQL prints a timestamptz in the local
// zone (written apart from infoTargetTime, which it checks).
func pgTimestamptz(t time.Time) string {
	t = t.Local()
	_, off := t.Zone()
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	s := t.Format("2006-01-02 15:04:05") + fmt.Sprintf("%c%02d", sign, off/3600)
	if off%3600 != 0 {
		s += fmt.Sprintf(":%02d", off%3600/60)
	}
	return s
}

// infoExtras returns the pgsidecar lines at the end of a text report.
func infoExtras(report []byte) []string {
	var out []string
	for _, l := range strings.Split(string(report), "\n") {
		if infoExtraLine.MatchString(l + "\n") {
			out = append(out, strings.TrimPrefix(l, "    "))
		}
	}
	return out
}

func TestInfoRecoveryWindow(t *testing.T) {
	t.Parallel()
	bin := infoStock(t)
	root := t.TempDir()
	dir := func(name string) string { return filepath.Join(root, name) }
	walDir := func(name string) string {
		return filepath.Join(dir(name), "archive", "golden", "15-1", "0000000100000000")
	}
	// The golden repository: its oldest backup 20261129-102857F stopped at
	// 1795948145 in WAL ...03; the archive ends at ...11, archived (by its
	// modification time) at walTime.
	walTime := time.Unix(1795950000, 0)
	infoRepoDir(t, dir("repo1"), "pgbackrest/repo1", "golden")
	last, err := filepath.Glob(filepath.Join(walDir("repo1"), "000000010000000000000011-*"))
	if err != nil || len(last) != 1 {
		t.Fatalf("newest WAL of the golden repository: %v %v", last, err)
	}
	if err := os.Chtimes(last[0], walTime, walTime); err != nil {
		t.Fatal(err)
	}
	// The same backups with an archive that stops before the oldest
	// backup's stop segment, and with no WAL at all.
	infoRepoDir(t, dir("short"), "pgbackrest/repo1", "golden")
	infoRepoDir(t, dir("nowal"), "pgbackrest/repo1", "golden")
	for name, keep := range map[string]string{"short": "000000010000000000000002-", "nowal": "none"} {
		entries, err := os.ReadDir(walDir(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), keep) {
				if err := os.Remove(filepath.Join(walDir(name), e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	start := pgTimestamptz(time.Unix(1795948145, 0))
	window := "recovery window (repo1): " + start + " (backup 20261129-102857F) - " + pgTimestamptz(walTime) + " (wal 000000010000000000000011)"
	plain := func(name string) map[string]string { return map[string]string{"path": dir(name)} }
	for _, c := range []struct {
		infoCase
		want []string
	}{
		{infoCase{"one-repo", []map[string]string{plain("repo1")}, []string{"--stanza=golden"}}, []string{window}},
		{infoCase{"short-archive", []map[string]string{plain("repo1"), plain("short"), plain("nowal")}, []string{"--stanza=golden"}}, []string{
			window,
			"recovery window (repo2): none: backup 20261129-102857F needs WAL up to 000000010000000000000003, the archive ends at 000000010000000000000002",
			"recovery window (repo3): none: backup 20261129-102857F needs WAL up to 000000010000000000000003, no WAL is archived",
		}},
		// Without --stanza the window is shown too (no daemon is asked).
		{infoCase{"all-stanzas", []map[string]string{plain("repo1")}, nil}, []string{window}},
		{infoCase{"repo-selected", []map[string]string{plain("short"), plain("repo1")}, []string{"--stanza=golden", "--repo=2"}},
			[]string{strings.Replace(window, "(repo1)", "(repo2)", 1)}},
		// --set reports one backup: no window.
		{infoCase{"set", []map[string]string{plain("repo1")}, []string{"--stanza=golden", "--set=20261129-102857F"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			text := c.infoCase
			text.args = append(append([]string{}, c.args...), "--output=text")
			stock, ours := infoBoth(t, bin, text)
			infoCompare(t, false, stock, ours)
			if got := infoExtras(ours); !slices.Equal(got, c.want) {
				t.Fatalf("pgsidecar lines\n%q\nwant\n%q\nreport:\n%s", got, c.want, ours)
			}
			if c.want != nil && !bytes.HasSuffix(ours, []byte("\n\n    "+strings.Join(c.want, "\n    ")+"\n")) {
				t.Fatalf("the pgsidecar lines do not end the report after a blank line:\n%s", ours)
			}

			js := c.infoCase
			js.args = append(append([]string{}, c.args...), "--output=json")
			stock, ours = infoBoth(t, bin, js)
			infoCompare(t, true, stock, ours)
			var report []map[string]any
			if err := infoDecode(ours, &report); err != nil {
				t.Fatal(err)
			}
			extras, ok := report[0][infoExtrasKey].(map[string]any)
			if ok != (c.want != nil) {
				t.Fatalf("JSON %s key present %v, want %v: %s", infoExtrasKey, ok, c.want != nil, ours)
			}
			if !ok {
				return
			}
			windows, _ := extras["recovery-window"].([]any)
			if len(windows) != len(c.want) {
				t.Fatalf("JSON recovery windows %v, want %d", windows, len(c.want))
			}
			w := windows[0].(map[string]any)
			st, _ := w["start"].(map[string]any)
			if st["backup"] != "20261129-102857F" || fmt.Sprint(st["time"]) != "1795948145" || st["wal"] != "000000010000000000000003" {
				t.Errorf("JSON window start %v", st)
			}
			sp, _ := w["stop"].(map[string]any)
			if sp["wal"] != "000000010000000000000011" || fmt.Sprint(sp["time"]) != fmt.Sprint(walTime.Unix()) {
				t.Errorf("JSON window stop %v", sp)
			}
			for i, win := range windows[1:] {
				if stop := win.(map[string]any)["stop"]; stop != nil {
					t.Errorf("JSON window %d: stop %v, want null (the archive does not reach the backup)", i+2, stop)
				}
			}
		})
	}
}

// TestInfoTargetTime checks that the window's times read back as the same
// instant in PostgreSQL's timestamptz layouts.
func TestInfoTargetTime(t *testing.T) {
	t.Parallel()
	for _, sec := range []int64{0, 1795948145, 1795950000, 1700000000} {
		in := time.Unix(sec, 0)
		s := infoTargetTime(in)
		if s != pgTimestamptz(in) {
			t.Errorf("infoTargetTime(%d) = %q, want %q", sec, s, pgTimestamptz(in))
		}
		layout := "2006-01-02 15:04:05-07"
		if len(s) > len("2006-01-02 15:04:05-07") {
			layout = "2006-01-02 15:04:05-07:00"
		}
		back, err := time.Parse(layout, s)
		if err != nil || !back.Equal(in) {
			t.Errorf("%q reads back as %v (%v), want %v", s, back, err, in)
		}
	}
}

func TestInfoQueueText(t *testing.T) {
	t.Parallel()
	started := time.Unix(1795948200, 0)
	since := infoTime(started.Unix())
	run := func(j JobStatus) JobStatus {
		j.ID, j.State, j.Requests, j.Submitted, j.Started = 3, JobRunning, 1, started.Add(-time.Minute), started
		if j.Source == "" {
			j.Source = SourceOneOff
		}
		return j
	}
	for _, c := range []struct {
		job  JobStatus
		want string
	}{
		{run(JobStatus{BackupRequest: BackupRequest{Repo: 1, Type: "incr"}, Done: 1288490188, Total: 3650722201}),
			"repo1 incr (one-off) since " + since + ", 1.2GB of 3.4GB copied (35%)"},
		{run(JobStatus{BackupRequest: BackupRequest{Repo: 2, Type: "full", Source: SourceSchedule}}),
			"repo2 full (schedule) since " + since + ", size not known yet"},
		{run(JobStatus{BackupRequest: BackupRequest{Repo: 1, Type: "full"}, Done: 10, Total: 10}),
			"repo1 full (one-off) since " + since + ", 10B of 10B copied (100%)"},
	} {
		if got := infoRunningText(c.job); got != c.want {
			t.Errorf("running text %q, want %q", got, c.want)
		}
	}
	waiting := run(JobStatus{BackupRequest: BackupRequest{Repo: 3, Type: "diff"}})
	waiting.State, waiting.Requests = JobWaitingLease, 2
	if got, want := infoRunningText(waiting), "repo3 diff (one-off, 2 requests) since "+since+", waiting for the repo3 lease"; got != want {
		t.Errorf("running text %q, want %q", got, want)
	}

	var w strings.Builder
	infoTextExtras(&w, infoStanzaOut{daemon: &QueueStatus{Queued: []JobStatus{
		{BackupRequest: BackupRequest{Repo: 2, Type: "full", Source: SourceSchedule}, State: JobQueued, Requests: 1},
		{BackupRequest: BackupRequest{Repo: 1, Type: "diff", Source: SourceOneOff}, State: JobQueued, Requests: 1},
	}}})
	if got, want := w.String(), "\n    backup queued: repo2 full (schedule), repo1 diff (one-off)\n"; got != want {
		t.Errorf("queued text %q, want %q", got, want)
	}
	w.Reset()
	infoTextExtras(&w, infoStanzaOut{daemon: &QueueStatus{}})
	if w.Len() != 0 {
		t.Errorf("an idle daemon adds %q, want nothing", w.String())
	}
	if v := infoExtrasValue(infoStanzaOut{daemon: &QueueStatus{}}); v != nil {
		t.Errorf("an idle daemon adds JSON %v, want none", v)
	}
}

// infoFakePostgres listens on the unix socket of a PostgreSQL server on
// port 5432 in a new directory and never answers: a backup that connects
// there hangs (running, in its primary check) until it is cancelled.
func infoFakePostgres(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgsc-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, ".s.PGSQL.5432"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return dir
}

// TestInfoShowsDaemonQueue runs the daemon with a backup in progress (it
// hangs on a PostgreSQL that does not answer) and two more requests queued:
// info asks the daemon over the socket and shows them after pgBackRest's
// lines, in text and JSON; with the daemon stopped, the report has no
// pgsidecar lines and is otherwise the same.
func TestInfoShowsDaemonQueue(t *testing.T) {
	t.Parallel()
	pgSocket := infoFakePostgres(t)
	f := newDaemonFixture(t, "")
	cfg := f.cfg(t, "--pg1-socket-path="+pgSocket, "--pg1-user=postgres", "run")
	d := startDaemon(t, cfg, openTestRepos(t, cfg), Deps{Log: zaptest.NewLogger(t)}, testDaemonOptions())
	socket, err := SocketPath(cfg)
	if err != nil {
		t.Fatal(err)
	}
	status := func() QueueStatus {
		t.Helper()
		resp, err := callDaemon(t.Context(), socket, request{Op: "status"}, 5*time.Second)
		if err != nil || !resp.OK || resp.Status == nil {
			t.Fatalf("status: %+v, %v", resp, err)
		}
		return *resp.Status
	}
	if st := status(); st.Running != nil || len(st.Queued) != 0 {
		t.Fatalf("idle daemon: status %+v", st)
	}
	info := func(output string) []byte {
		t.Helper()
		c := f.cfg(t, "--output="+output, "info")
		var out bytes.Buffer
		if err := Info(t.Context(), c, openTestRepos(t, c), &out); err != nil {
			t.Fatalf("Info: %v", err)
		}
		return out.Bytes()
	}
	idle := info("text")
	if extras := infoExtras(idle); extras != nil {
		t.Fatalf("idle daemon, stanza without backups: pgsidecar lines %q", extras)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	requests := make(chan error, 3)
	ask := func(typ string) {
		go func() {
			resp, err := callDaemon(ctx, socket, request{Op: "backup", Repo: 1, Type: typ}, 0)
			if err == nil {
				err = resp.err()
			}
			requests <- err
		}()
	}
	ask("full")
	waitFor(t, 10*time.Second, "the full backup to run", func() bool { return status().Running != nil })
	ask("diff")
	ask("diff")
	waitFor(t, 10*time.Second, "two diff requests to queue", func() bool {
		st := status()
		return len(st.Queued) == 1 && st.Queued[0].Requests == 2
	})
	st := status()
	if r := st.Running; r.Type != "full" || r.Repo != 1 || r.Source != SourceOneOff || r.State != JobRunning || r.Started.IsZero() {
		t.Fatalf("running %+v", r)
	}
	if q := st.Queued[0]; q.Type != "diff" || q.State != JobQueued || q.Source != SourceOneOff {
		t.Fatalf("queued %+v", q)
	}

	text := info("text")
	want := []string{
		"backup running: repo1 full (one-off) since " + infoTime(st.Running.Started.Unix()) + ", size not known yet",
		"backup queued: repo1 diff (one-off, 2 requests)",
	}
	if got := infoExtras(text); !slices.Equal(got, want) {
		t.Fatalf("pgsidecar lines %q, want %q\n%s", got, want, text)
	}
	if rest := infoWithoutExtras(t, false, text); !bytes.Equal(rest, idle) {
		t.Fatalf("report without pgsidecar lines:\n%s\nwant the idle report:\n%s", rest, idle)
	}
	var report []map[string]any
	if err := json.Unmarshal(info("json"), &report); err != nil || len(report) != 1 {
		t.Fatalf("JSON report %v: %v", report, err)
	}
	extras, _ := report[0][infoExtrasKey].(map[string]any)
	running, _ := extras["running"].(map[string]any)
	queued, _ := extras["queued"].([]any)
	if running["type"] != "full" || running["state"] != JobRunning || running["repo-key"] != 1.0 ||
		running["started"] != float64(st.Running.Started.Unix()) || len(queued) != 1 {
		t.Fatalf("JSON %s: %v", infoExtrasKey, extras)
	}
	if q := queued[0].(map[string]any); q["type"] != "diff" || q["requests"] != 2.0 || q["state"] != JobQueued {
		t.Fatalf("JSON queued %v", q)
	}
	if _, ok := extras["recovery-window"]; ok {
		t.Fatalf("a recovery window without backups: %v", extras)
	}

	if err := d.stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	for range 3 {
		if err := <-requests; err == nil {
			t.Errorf("a backup request succeeded against a PostgreSQL that does not answer")
		}
	}
	if after := info("text"); !bytes.Equal(after, idle) {
		t.Fatalf("without daemon:\n%s\nwant:\n%s", after, idle)
	}
	if after := info("json"); bytes.Contains(after, []byte(infoExtrasKey)) {
		t.Fatalf("without daemon, JSON has pgsidecar's key: %s", after)
	}
}
