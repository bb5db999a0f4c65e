package agent

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/repo"
)

// verifySegSize is the WAL segment size of the test repositories (1 MiB,
// the smallest PostgreSQL allows: 4096 segments per log).
const verifySegSize = 1 << 20

// verifySysID is the system id of the test cluster.
const verifySysID = 7000000000000000001

// verifyRepo is a posix repository built file by file the way pgBackRest
// lays it out: info files, gzip-compressed WAL named by its SHA-1, backups
// with manifests, everything encrypted with the passphrase hierarchy when
// the repository is.
type verifyRepo struct {
	t    *testing.T
	dir  string
	ini  string
	pass string
	ai   *repo.ArchiveInfo
	bi   *repo.BackupInfo
	// wal maps segment names to their object paths.
	wal map[string]string
	// files maps "<label>/<name>" to the path of the backup file.
	files map[string]string
	// filePass maps labels to the passphrase of the backup's files.
	filePass map[string]string
}

func newVerifyRepo(t *testing.T, encrypted bool) *verifyRepo {
	t.Helper()
	r := &verifyRepo{t: t, dir: t.TempDir(), wal: map[string]string{}, files: map[string]string{}, filePass: map[string]string{}}
	var walPass, backupPass string
	if encrypted {
		var err error
		if r.pass, err = cipher.NewPassphrase(); err != nil {
			t.Fatal(err)
		}
		walPass, backupPass = r.newPass(), r.newPass()
	}
	var err error
	if r.ai, err = repo.NewArchiveInfo("15", verifySysID, walPass); err != nil {
		t.Fatal(err)
	}
	if r.bi, err = repo.NewBackupInfo("15", verifySysID, 202209061, backupPass); err != nil {
		t.Fatal(err)
	}
	r.saveInfo("archive/db/archive.info", r.ai.Save)
	r.saveInfo("backup/db/backup.info", r.bi.Save)
	r.ini = "[global]\nrepo1-path=" + r.dir + "\n"
	if encrypted {
		r.ini += "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=" + r.pass + "\n"
	}
	r.ini += "[db]\npg1-path=/nonexistent\n"
	return r
}

func (r *verifyRepo) newPass() string {
	r.t.Helper()
	p, err := cipher.NewPassphrase()
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// object returns data compressed with ct and encrypted with pass ("" for
// none).
func (r *verifyRepo) object(data []byte, ct compress.Type, pass string) []byte {
	r.t.Helper()
	var buf bytes.Buffer
	w, err := compress.NewWriter(&buf, ct, ct.DefaultLevel())
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		r.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		r.t.Fatal(err)
	}
	if pass == "" {
		return buf.Bytes()
	}
	enc, err := cipher.Encrypt(buf.Bytes(), []byte(pass))
	if err != nil {
		r.t.Fatal(err)
	}
	return enc
}

func (r *verifyRepo) saveInfo(key string, save func() ([]byte, error)) {
	r.t.Helper()
	data, err := save()
	if err != nil {
		r.t.Fatal(err)
	}
	if r.pass != "" {
		if data, err = cipher.Encrypt(data, []byte(r.pass)); err != nil {
			r.t.Fatal(err)
		}
	}
	for _, ext := range []string{"", repo.CopyExt} {
		infoWrite(r.t, filepath.Join(r.dir, filepath.FromSlash(key+ext)), data)
	}
}

// content returns size deterministic pseudo-random bytes (half zeros).
func verifyContent(size int, seed uint64) []byte {
	b := make([]byte, size)
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < size/2; i += 8 {
		v := rnd.Uint64()
		for j := 0; j < 8 && i+j < size/2; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func sha1Hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// segName returns the name of segment n of timeline 1 (1 MiB segments).
func segName(n int) string { return fmt.Sprintf("00000001%08X%08X", n/4096, n%4096) }

// putWAL archives segment n.
func (r *verifyRepo) putWAL(n int) string {
	r.t.Helper()
	seg := segName(n)
	data := verifyContent(verifySegSize, uint64(n))
	name, err := repo.WALRepoFileName(seg, sha1Hex(data), repo.CompressGz)
	if err != nil {
		r.t.Fatal(err)
	}
	key := "archive/db/" + repo.ArchivePath("15-1", name)
	p := filepath.Join(r.dir, filepath.FromSlash(key))
	infoWrite(r.t, p, r.object(data, compress.Gz, r.ai.CipherPass))
	r.wal[seg] = p
	return key
}

// addBackup stores a full backup of nfiles files whose WAL runs from
// segment start to stop.
func (r *verifyRepo) addBackup(label string, start, stop, nfiles int) {
	r.t.Helper()
	m := &repo.Manifest{
		BackrestVersion: "2.45", Label: label, Type: repo.BackupFull,
		ArchiveStart: segName(start), ArchiveStop: segName(stop),
		LSNStart: fmt.Sprintf("0/%X", start*verifySegSize), LSNStop: fmt.Sprintf("0/%X", stop*verifySegSize+40),
		TimestampCopyStart: 1764410000, TimestampStart: 1764410000, TimestampStop: 1764410100,
		DB:      repo.ManifestDB{ID: 1, SystemID: verifySysID, Version: "15", CatalogVersion: 202209061, ControlVersion: 1300},
		Options: repo.ManifestOptions{ArchiveCheck: true, CompressType: repo.CompressGz, Online: true},
		Targets: []repo.ManifestTarget{{Name: "pg_data", Path: "/nonexistent", Type: repo.TargetPath}},
		Paths:   []repo.ManifestPath{{Name: "pg_data", Mode: 0o700, User: "postgres", Group: "postgres"}},
	}
	if r.pass != "" {
		m.CipherPass = r.newPass()
		r.filePass[label] = m.CipherPass
	}
	for i := range nfiles {
		data := verifyContent(10000+i*1000, uint64(1000+i)+uint64(len(label)))
		name := fmt.Sprintf("pg_data/base/1/%d", 16384+i)
		obj := r.object(data, compress.Gz, m.CipherPass)
		p := filepath.Join(r.dir, "backup", "db", label, filepath.FromSlash(name)+".gz")
		infoWrite(r.t, p, obj)
		r.files[label+"/"+name] = p
		m.Files = append(m.Files, repo.ManifestFile{
			Name: name, Size: uint64(len(data)), RepoSize: uint64(len(obj)), Timestamp: 1764410000,
			Checksum: sha1Hex(data), Mode: 0o600, User: "postgres", Group: "postgres",
		})
	}
	b, err := repo.BackupFromManifest(m)
	if err != nil {
		r.t.Fatal(err)
	}
	data, err := m.Save()
	if err != nil {
		r.t.Fatal(err)
	}
	if r.pass != "" {
		if data, err = cipher.Encrypt(data, []byte(r.bi.CipherPass)); err != nil {
			r.t.Fatal(err)
		}
	}
	for _, ext := range []string{"", repo.CopyExt} {
		infoWrite(r.t, filepath.Join(r.dir, "backup", "db", label, "backup.manifest"+ext), data)
	}
	r.bi.Add(b)
	r.saveInfo("backup/db/backup.info", r.bi.Save)
}

// verify runs verify over the repository with args.
func (r *verifyRepo) verify(args ...string) (VerifyReport, string, error) {
	r.t.Helper()
	cfg := loadCfg(r.t, r.ini, append([]string{"--stanza=db", "--process-max=3"}, append(args, "verify")...)...)
	repos := openTestRepos(r.t, cfg)
	rep, err := VerifyRepo(r.t.Context(), cfg, repos[0], zap.NewNop())
	if err != nil {
		r.t.Fatalf("VerifyRepo: %v", err)
	}
	var out bytes.Buffer
	verr := Verify(r.t.Context(), cfg, repos, zap.NewNop(), &out)
	return rep, out.String(), verr
}

// rewrite replaces the file at p, with a modification time unlike the
// previous one.
func rewrite(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// standardVerifyRepo has WAL segments 1..8 and two backups: A (WAL 2..3)
// and B (WAL 6..7), three files each.
func standardVerifyRepo(t *testing.T, encrypted bool) *verifyRepo {
	t.Helper()
	r := newVerifyRepo(t, encrypted)
	for n := 1; n <= 8; n++ {
		r.putWAL(n)
	}
	r.addBackup("20251129-100000F", 2, 3, 3)
	r.addBackup("20251129-110000F", 6, 7, 3)
	return r
}

var verifySummary = regexp.MustCompile(`(?m)^repo1: (\d+) WAL files, (\d+) backups \((\d+) files\) checked: (ok|\d+ problems)$`)

func TestVerifyFindsProblems(t *testing.T) {
	t.Parallel()
	const a, b = "20251129-100000F", "20251129-110000F"
	for _, tc := range []struct {
		name      string
		encrypted bool
		damage    func(t *testing.T, r *verifyRepo)
		// want lists, per expected problem, substrings its line holds.
		want [][]string
	}{
		{name: "clean"},
		{name: "clean encrypted", encrypted: true},
		{
			name: "corrupted backup file",
			damage: func(t *testing.T, r *verifyRepo) {
				p := r.files[a+"/pg_data/base/1/16385"]
				data := readFile(t, p)
				data[len(data)/2] ^= 0xFF
				rewrite(t, p, data)
			},
			want: [][]string{{"backup " + a, "pg_data/base/1/16385", "backup/db/" + a + "/pg_data/base/1/16385.gz"}},
		},
		{
			name: "truncated WAL file",
			damage: func(t *testing.T, r *verifyRepo) {
				p := r.wal[segName(5)]
				rewrite(t, p, readFile(t, p)[:100])
			},
			want: [][]string{{segName(5) + "-"}},
		},
		{
			name: "truncated WAL file a backup needs",
			damage: func(t *testing.T, r *verifyRepo) {
				p := r.wal[segName(6)]
				rewrite(t, p, readFile(t, p)[:1000])
			},
			want: [][]string{{segName(6) + "-"}, {"backup " + b, "not consistent", segName(6), "is bad"}},
		},
		{
			name: "missing WAL segment",
			damage: func(t *testing.T, r *verifyRepo) {
				if err := os.Remove(r.wal[segName(3)]); err != nil {
					t.Fatal(err)
				}
			},
			want: [][]string{
				{"timeline 1", segName(3), "is missing", "gap between " + segName(2) + " and " + segName(4)},
				{"backup " + a, "not consistent", segName(3), "missing from archive 15-1"},
			},
		},
		{
			name: "gap of several segments",
			damage: func(t *testing.T, r *verifyRepo) {
				for _, n := range []int{4, 5} {
					if err := os.Remove(r.wal[segName(n)]); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: [][]string{{"2 WAL segments " + segName(4) + " to " + segName(5) + " are missing"}},
		},
		{
			name: "backup without its WAL",
			damage: func(t *testing.T, r *verifyRepo) {
				r.addBackup("20251129-120000F", 9, 10, 1)
			},
			want: [][]string{{"backup 20251129-120000F", "not consistent", segName(9) + ", " + segName(10), "missing"}},
		},
		{
			name:      "plaintext objects in an encrypted repository",
			encrypted: true,
			damage: func(t *testing.T, r *verifyRepo) {
				data := verifyContent(verifySegSize, 4)
				rewrite(t, r.wal[segName(4)], r.object(data, compress.Gz, ""))
				data = verifyContent(10000, 1000+uint64(len(b)))
				rewrite(t, r.files[b+"/pg_data/base/1/16384"], r.object(data, compress.Gz, ""))
			},
			want: [][]string{
				{segName(4) + "-", "not encrypted in an encrypted repository"},
				{"backup " + b, "pg_data/base/1/16384", "not encrypted in an encrypted repository"},
			},
		},
		{
			name:      "file encrypted with another passphrase",
			encrypted: true,
			damage: func(t *testing.T, r *verifyRepo) {
				data := verifyContent(10000+1000, 1001+uint64(len(b)))
				// One in 256 wrong passphrases yields valid padding: use
				// one that does not.
				for {
					obj := r.object(data, compress.Gz, r.newPass())
					if _, err := cipher.Decrypt(obj, []byte(r.filePass[b])); errors.Is(err, cipher.ErrWrongPassphrase) {
						rewrite(t, r.files[b+"/pg_data/base/1/16385"], obj)
						break
					}
				}
			},
			want: [][]string{{"backup " + b, "pg_data/base/1/16385", "does not decrypt with the passphrase"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := standardVerifyRepo(t, tc.encrypted)
			if tc.damage != nil {
				tc.damage(t, r)
			}
			rep, out, err := r.verify()
			if len(rep.Problems) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(rep.Problems), len(tc.want), strings.Join(rep.Problems, "\n"))
			}
			for _, want := range tc.want {
				found := false
				for _, p := range rep.Problems {
					ok := true
					for _, w := range want {
						ok = ok && strings.Contains(p, w)
					}
					found = found || ok
				}
				if !found {
					t.Errorf("no problem mentions all of %q:\n%s", want, strings.Join(rep.Problems, "\n"))
				}
			}
			t.Logf("verify output:\n%s", out)
			m := verifySummary.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no summary line in\n%s", out)
			}
			if len(tc.want) == 0 {
				if err != nil || m[4] != "ok" {
					t.Errorf("clean repository: %v\n%s", err, out)
				}
			} else if codeOf(err) != codeVerify || m[4] != fmt.Sprintf("%d problems", len(tc.want)) {
				t.Errorf("exit code %d (%v), summary %q; want %d and %d problems", codeOf(err), err, m[0], codeVerify, len(tc.want))
			}
			for _, p := range rep.Problems {
				if !strings.Contains(out, "  "+p+"\n") {
					t.Errorf("output does not list problem %q:\n%s", p, out)
				}
			}
		})
	}
}

func TestVerifyIncremental(t *testing.T) {
	t.Parallel()
	for _, encrypted := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			t.Parallel()
			r := standardVerifyRepo(t, encrypted)
			type counts struct{ wal, walSkipped, files, filesSkipped, problems int }
			check := func(step string, rep VerifyReport, want counts) {
				t.Helper()
				got := counts{rep.WAL, rep.WALSkipped, rep.Files, rep.FilesSkipped, len(rep.Problems)}
				if got != want {
					t.Errorf("%s: got %+v, want %+v\n%s", step, got, want, strings.Join(rep.Problems, "\n"))
				}
			}
			// VerifyRepo and Verify both run: the second skips what the
			// first read.
			rep, out, err := r.verify()
			check("first run", rep, counts{8, 0, 6, 0, 0})
			if err != nil {
				t.Fatalf("second run over a clean repository: %v\n%s", err, out)
			}
			if !strings.Contains(out, "repo1: 8 WAL files and 6 backup files unchanged since the last verify were not read again") {
				t.Errorf("output does not report the files skipped:\n%s", out)
			}
			state := filepath.Join(r.dir, "backup", "db", VerifyStateFile)
			if data := readFile(t, state); cipher.IsEncrypted(data) != encrypted {
				t.Errorf("state file encrypted %v in a repository encrypted %v", cipher.IsEncrypted(data), encrypted)
			}

			rep, _, _ = r.verify()
			check("unchanged", rep, counts{8, 8, 6, 6, 0})

			// New WAL and a new backup: only those are read.
			r.putWAL(9)
			r.putWAL(10)
			r.addBackup("20251129-120000F", 9, 10, 2)
			rep, _, _ = r.verify()
			check("after new objects", rep, counts{10, 8, 8, 6, 0})

			// A changed object is read again, and found bad.
			p := r.files["20251129-100000F/pg_data/base/1/16384"]
			data := readFile(t, p)
			data[len(data)-5] ^= 0x55
			rewrite(t, p, data)
			rep, _, _ = r.verify()
			check("after a change", rep, counts{10, 10, 8, 7, 1})
			// A bad object is never recorded: it is read and reported again.
			rep, _, _ = r.verify()
			check("bad again", rep, counts{10, 10, 8, 7, 1})

			// --set reads everything again.
			rep, _, _ = r.verify("--set=20251129-110000F")
			check("--set", rep, counts{10, 0, 3, 0, 0})
			if len(rep.Backups) != 1 || rep.Backups[0] != "20251129-110000F" {
				t.Errorf("--set checked backups %v", rep.Backups)
			}
			// ... and leaves the record of what it did not look at.
			rep, _, _ = r.verify()
			check("after --set", rep, counts{10, 10, 8, 7, 1})

			// A damaged state is ignored: everything is read.
			rewrite(t, state, []byte("garbage"))
			rep, _, _ = r.verify()
			check("damaged state", rep, counts{10, 0, 8, 0, 1})
		})
	}
}

// TestVerifyStateIgnoredByExpire checks that expire's listing of backup
// directories does not take the state file for a backup.
func TestVerifyStateIgnoredByExpire(t *testing.T) {
	t.Parallel()
	r := standardVerifyRepo(t, false)
	if _, _, err := r.verify(); err != nil {
		t.Fatal(err)
	}
	cfg := loadCfg(t, r.ini, "--stanza=db", "verify")
	rs := openStanza(cfg, openTestRepos(t, cfg)[0])
	d, err := listBackupDirs(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.manifest) != 2 {
		t.Errorf("expire sees backup directories %v, want the two backups", d.manifest)
	}
}
