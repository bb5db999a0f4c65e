package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/archive"
	"github.com/pgsidecar/pgsidecar/pg"
)

// walSegment builds a 16 MiB PostgreSQL 15 WAL segment of system sysID: a
// long page header, 3 MiB of records (random bytes with repeats), zeros
// after, as after a pg_switch_wal.
func walSegment(sysID, seed uint64) []byte {
	const size, page = 16 << 20, 8192
	b := make([]byte, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rnd := rand.NewChaCha8(key)
	for off := 0; off < size; off += page {
		p := b[off : off+page]
		binary.LittleEndian.PutUint16(p[0:], 0xD110)
		binary.LittleEndian.PutUint32(p[4:], 1)
		binary.LittleEndian.PutUint64(p[8:], uint64(off))
		if off == 0 {
			binary.LittleEndian.PutUint16(p[2:], 0x0002)
			binary.LittleEndian.PutUint64(p[24:], sysID)
			binary.LittleEndian.PutUint32(p[32:], size)
			binary.LittleEndian.PutUint32(p[36:], page)
		}
		if off < 3<<20 {
			_, _ = rnd.Read(p[40 : page/2])
			copy(p[page/2:], p[40:page/2]) // a repeat, compressible
		}
	}
	return b
}

// codeOf returns the exit code an error carries, 0 if none.
func codeOf(err error) int {
	var ce CodedError
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

// archiveINI is a configuration for pgsidecar and stock pgbackrest alike.
func archiveINI(t *testing.T, data, repoDir, cipherPass, compressType string) string {
	t.Helper()
	work := t.TempDir()
	ini := "[global]\nrepo1-path=" + repoDir + "\nlog-path=" + work + "\nlock-path=" + work + "\nspool-path=" + work +
		"\nlog-level-file=off\ncompress-type=" + compressType + "\n"
	if cipherPass != "" {
		ini += "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=" + cipherPass + "\n"
	}
	return ini + "[db]\npg1-path=" + data + "\n"
}

// stanzaFor creates the stanza described by ini with pgsidecar.
func stanzaFor(t *testing.T, ini string) {
	t.Helper()
	cfg := loadCfg(t, ini, "--stanza=db", "stanza-create")
	if err := StanzaCreate(t.Context(), cfg, openTestRepos(t, cfg), zap.NewNop()); err != nil {
		t.Fatal(err)
	}
}

// runCommand runs an archive command of pgsidecar with the configuration ini.
func runCommand(t *testing.T, ini string, args ...string) error {
	t.Helper()
	cfg := loadCfg(t, ini, append([]string{"--stanza=db"}, args...)...)
	repos := openTestRepos(t, cfg)
	switch cfg.Command {
	case "archive-push":
		return ArchivePush(t.Context(), cfg, repos, zap.NewNop())
	case "archive-get":
		return ArchiveGet(t.Context(), cfg, repos, zap.NewNop())
	}
	t.Fatalf("unknown command %s", cfg.Command)
	return nil
}

func TestWalPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	other := filepath.Join(dir, "other")
	link := filepath.Join(dir, "link")
	for _, d := range []string{data, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, pg, cwd, want string
		code                      int
	}{
		{"absolute", "/x/pg_wal/000000010000000000000001", "", "/", "/x/pg_wal/000000010000000000000001", 0},
		{"relative without pg1-path", "pg_wal/000000010000000000000001", "", data, "", codeOptionMissing},
		{"relative in pg1-path", "pg_wal/000000010000000000000001", data, data, data + "/pg_wal/000000010000000000000001", 0},
		{"pg1-path through a symlink", "pg_wal/000000010000000000000001", link, data, link + "/pg_wal/000000010000000000000001", 0},
		{"another working directory", "pg_wal/000000010000000000000001", data, other, "", codeOptionInvalid},
	} {
		got, err := walPath(tc.file, tc.pg, "archive-push", tc.cwd)
		if got != tc.want || codeOf(err) != tc.code {
			t.Errorf("%s: walPath = %q, %v; want %q, code %d", tc.name, got, err, tc.want, tc.code)
		}
	}
}

func TestArchivePushGet(t *testing.T) {
	t.Parallel()
	data := initdb(t)
	ctl, err := pg.ReadControl(data)
	if err != nil {
		t.Fatal(err)
	}
	// Two repositories, the second encrypted.
	r1, r2 := t.TempDir(), t.TempDir()
	work := t.TempDir()
	ini := "[global]\nrepo1-path=" + r1 + "\nrepo2-path=" + r2 + "\nrepo2-cipher-type=aes-256-cbc\nrepo2-cipher-pass=agent-archive-test\n" +
		"compress-type=lz4\n[db]\npg1-path=" + data + "\n"
	stanzaFor(t, ini)

	seg := "000000010000000000000003"
	segment := walSegment(ctl.SystemID, 1)
	walPath := filepath.Join(work, seg)
	if err := os.WriteFile(walPath, segment, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runCommand(t, ini, "archive-push", walPath); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{r1, r2} {
		m, _ := filepath.Glob(filepath.Join(r, "archive/db/15-1/0000000100000000", seg+"-*.lz4"))
		if len(m) != 1 {
			t.Fatalf("%s holds %v", r, m)
		}
	}
	// Pushing it again is fine.
	if err := runCommand(t, ini, "archive-push", walPath); err != nil {
		t.Fatalf("second push: %v", err)
	}

	// Get it back from the encrypted repository alone, then from both.
	for _, repoArg := range []string{"--repo=2", ""} {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		args := []string{"archive-get", seg, dest}
		if repoArg != "" {
			args = append([]string{repoArg}, args...)
		}
		if err := runCommand(t, ini, args...); err != nil {
			t.Fatalf("archive-get %s: %v", repoArg, err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, segment) {
			t.Fatalf("archive-get %s: content differs", repoArg)
		}
	}

	// A segment of another cluster is refused.
	if err := os.WriteFile(filepath.Join(work, "000000010000000000000004"), walSegment(ctl.SystemID+1, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	err = runCommand(t, ini, "archive-push", filepath.Join(work, "000000010000000000000004"))
	if codeOf(err) != archive.CodeArchiveMismatch {
		t.Fatalf("foreign segment: %v, want code 44", err)
	}

	// A history file round trip.
	hist := []byte("1\t0/3000000\tno recovery target specified\n")
	if err := os.WriteFile(filepath.Join(work, "00000002.history"), hist, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runCommand(t, ini, "archive-push", filepath.Join(work, "00000002.history")); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYHISTORY")
	if err := runCommand(t, ini, "archive-get", "00000002.history", dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, hist) {
		t.Fatal("history file differs")
	}

	// The end of the archive: exit code 1 and no file.
	missing := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	err = runCommand(t, ini, "archive-get", "000000010000000000000009", missing)
	if codeOf(err) != codeNotFound || !errors.Is(err, archive.ErrNotFound) {
		t.Fatalf("missing segment: %v (code %d), want code 1", err, codeOf(err))
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("destination of a missing segment: %v", err)
	}

	// Parameters.
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"archive-push"}, codeParamRequired},
		{[]string{"archive-push", walPath, walPath}, codeParamRequired},
		{[]string{"archive-push", filepath.Join(work, "not-a-wal-file")}, archive.CodeParamInvalid},
		{[]string{"archive-get"}, codeParamRequired},
		{[]string{"archive-get", seg}, codeParamRequired},
		{[]string{"archive-get", seg, dest, "extra"}, codeParamInvalid},
		{[]string{"archive-get", "RECOVERYXLOG", dest}, archive.CodeParamInvalid},
	} {
		if err := runCommand(t, ini, tc.args...); codeOf(err) != tc.code {
			t.Errorf("%v: %v (code %d), want code %d", tc.args, err, codeOf(err), tc.code)
		}
	}
}

func TestArchivePushQueueMax(t *testing.T) {
	t.Parallel()
	data := initdb(t)
	repoDir := t.TempDir()
	ini := archiveINI(t, data, repoDir, "", "lz4")
	stanzaFor(t, ini)
	ctl, err := pg.ReadControl(data)
	if err != nil {
		t.Fatal(err)
	}
	walDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(walDir, "archive_status"), 0o700); err != nil {
		t.Fatal(err)
	}
	segs := []string{"000000010000000000000001", "000000010000000000000002"}
	for _, s := range segs {
		if err := os.WriteFile(filepath.Join(walDir, s), walSegment(ctl.SystemID, 3), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(walDir, "archive_status", s+".ready"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// 32 MiB are waiting: a 20MB queue drops the file, a 32MB queue keeps it.
	for _, tc := range []struct {
		limit   string
		dropped bool
	}{{"20MB", true}, {"32MB", false}} {
		if err := runCommand(t, ini, "--archive-push-queue-max="+tc.limit, "archive-push", filepath.Join(walDir, segs[0])); err != nil {
			t.Fatal(err)
		}
		m, _ := filepath.Glob(filepath.Join(repoDir, "archive/db/15-1/0000000100000000", segs[0]+"-*"))
		if (len(m) == 0) != tc.dropped {
			t.Fatalf("queue max %s: archived %v, want dropped=%v", tc.limit, m, tc.dropped)
		}
	}
}

// pgbackrest runs stock pgbackrest with the configuration ini.
func pgbackrest(t *testing.T, ini string, args ...string) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "pgbackrest.conf")
	if err := os.WriteFile(conf, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "/usr/bin/pgbackrest", append([]string{"--config=" + conf, "--stanza=db"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgbackrest %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestArchiveInteropPgbackrest checks both directions against stock
// pgbackrest 2.45: segments pushed by pgsidecar are restored by pgbackrest
// archive-get byte for byte, and segments pushed by pgbackrest are restored by
// pgsidecar, for plain and encrypted repositories and every compression
// type both write.
func TestArchiveInteropPgbackrest(t *testing.T) {
	t.Parallel()
	requireTool(t, "/usr/bin/pgbackrest")
	data := initdb(t)
	ctl, err := pg.ReadControl(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, cipherPass := range []string{"", "interop-test-pass"} {
		for _, ct := range []string{"gz", "lz4", "zst"} {
			name := ct + "/plain"
			if cipherPass != "" {
				name = ct + "/aes-256-cbc"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				repoDir := t.TempDir()
				ini := archiveINI(t, data, repoDir, cipherPass, ct)
				stanzaFor(t, ini)
				work := t.TempDir()

				// pgsidecar pushes, pgbackrest gets.
				ours := "000000010000000000000005"
				segment := walSegment(ctl.SystemID, 5)
				if err := os.WriteFile(filepath.Join(work, ours), segment, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := runCommand(t, ini, "archive-push", filepath.Join(work, ours)); err != nil {
					t.Fatal(err)
				}
				dest := filepath.Join(work, "from-pgbackrest")
				pgbackrest(t, ini, "archive-get", ours, dest)
				if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, segment) {
					t.Fatalf("pgbackrest archive-get of a pgsidecar segment: content differs (%v)", err)
				}

				// pgbackrest pushes, pgsidecar gets.
				theirs := "000000010000000000000006"
				segment = walSegment(ctl.SystemID, 6)
				if err := os.WriteFile(filepath.Join(work, theirs), segment, 0o600); err != nil {
					t.Fatal(err)
				}
				pgbackrest(t, ini, "archive-push", filepath.Join(work, theirs))
				m, _ := filepath.Glob(filepath.Join(repoDir, "archive/db/15-1/0000000100000000", theirs+"-*."+ct))
				if len(m) != 1 {
					t.Fatalf("pgbackrest stored %v", m)
				}
				dest = filepath.Join(work, "from-pgsidecar")
				if err := runCommand(t, ini, "archive-get", theirs, dest); err != nil {
					t.Fatal(err)
				}
				if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, segment) {
					t.Fatalf("pgsidecar archive-get of a pgbackrest segment: content differs (%v)", err)
				}

				// pgbackrest sees pgsidecar's copy as the same segment: a
				// re-push of identical content succeeds.
				pgbackrest(t, ini, "archive-push", filepath.Join(work, ours))
			})
		}
	}
}
