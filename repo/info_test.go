package repo

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestArchiveInfoNew(t *testing.T) {
	t.Parallel()
	// The stanza-create result must be the specification's worked example, byte for byte.
	a, err := NewArchiveInfo("15", 7713501490695643153, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Save()
	if err != nil {
		t.Fatal(err)
	}
	want := signed("[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\ndb-id=1\ndb-system-id=7713501490695643153\n" +
		"db-version=\"15\"\n\n[db:history]\n1={\"db-id\":7713501490695643153,\"db-version\":\"15\"}\n")
	if !bytes.Equal(got, want) {
		t.Errorf("Save:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(string(got), "023b29d0d4f9d94a26ef185e070b5966ec10f083") {
		t.Errorf("checksum differs from the one pgBackRest wrote for this content")
	}

	enc, err := NewArchiveInfo("9.6", 42, "sub/pass+64chars")
	if err != nil {
		t.Fatal(err)
	}
	data, err := enc.Save()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadArchiveInfo("archive.info", data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, enc) {
		t.Errorf("round trip: got %+v, want %+v", back, enc)
	}
	if !bytes.Contains(data, []byte("\n[cipher]\ncipher-pass=\"sub/pass+64chars\"\n\n[db]\n")) {
		t.Errorf("[cipher] not written before [db]:\n%s", data)
	}
	if id, _ := back.ArchiveID(); id != "9.6-1" {
		t.Errorf("ArchiveID = %q, want 9.6-1", id)
	}
}

func TestArchiveInfoHistory(t *testing.T) {
	t.Parallel()
	path := "testdata/crafted/archive-multi-history.info"
	a, err := LoadArchiveInfo(path, readFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if a.CurrentID != 11 || len(a.History) != 11 || a.CipherPass == "" {
		t.Fatalf("unexpected content: %+v", a)
	}
	for i, h := range a.History {
		if h.ID != uint32(i+1) {
			t.Errorf("history[%d].ID = %d, want file order", i, h.ID)
		}
	}
	cur, _ := a.Current()
	first := a.History[0]
	tests := []struct {
		name     string
		id       uint32
		version  string
		systemID uint64
		want     string
	}{
		{"current exact", 11, "15", cur.SystemID, "15-11"},
		{"older exact", 10, "15", a.History[9].SystemID, "15-10"},
		{"oldest", 1, "9.3", first.SystemID, "9.3-1"},
		{"id mismatch falls back to the newest match", 99, "9.3", first.SystemID, "9.3-1"},
		{"mismatch", 11, "15", 12345, ""},
		{"version mismatch", 11, "14", cur.SystemID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := a.ArchiveIDMatch(tt.id, tt.version, tt.systemID)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("want ErrInvalid, got %q, %v", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	up := *a
	up.History = slices.Clone(a.History)
	if err := up.AddHistory("16", 777); err != nil {
		t.Fatal(err)
	}
	data, err := up.Save()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("\n11={\"db-id\":")) || !bytes.HasSuffix(bytes.SplitN(data, []byte("\n[backrest]\nbackrest-checksum"), 2)[0],
		[]byte("\n12={\"db-id\":777,\"db-version\":\"16\"}\n")) {
		t.Errorf("new history entry not appended last:\n%s", data)
	}
	back, err := LoadArchiveInfo("up", data)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := back.ArchiveID(); id != "16-12" {
		t.Errorf("ArchiveID after upgrade = %q, want 16-12", id)
	}
}

func TestBackupInfoNew(t *testing.T) {
	t.Parallel()
	// stanza-create output, compared with the file of the independent Python renderer.
	path := "testdata/crafted/backup-empty.info"
	want := readFile(t, path)
	ref, err := LoadBackupInfo(path, want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBackupInfo("15", ref.History[0].SystemID, ref.History[0].CatalogVersion, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Save()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Save:\n%s\nwant:\n%s", got, want)
	}
	if bytes.Contains(got, []byte("[backup:current]")) {
		t.Errorf("an empty backup list must not write [backup:current]")
	}
	if _, err := NewBackupInfo("17", 1, 1, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("PostgreSQL 17 is unknown to pgBackRest 2.45's control versions: got %v", err)
	}
}

func TestBackupInfoVaried(t *testing.T) {
	t.Parallel()
	path := "testdata/crafted/backup-varied.info"
	b, err := LoadBackupInfo(path, readFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Backups) != 4 || b.CurrentID != 2 || len(b.History) != 2 || b.History[0].Version != "9.6" {
		t.Fatalf("unexpected content: %+v", b)
	}
	offline := b.Backups[0]
	if offline.ArchiveStart != "" || offline.ArchiveStop != "" || offline.Error != nil || offline.LSNStart != "" ||
		offline.OptionOnline || offline.BackrestVersion != "2.30" {
		t.Errorf("offline backup: %+v", offline)
	}
	full := b.Backups[1]
	if full.Annotation["quote"] != `say "hi" \ bye` || full.Annotation["key with space"] != "tab\there" {
		t.Errorf("annotation: %q", full.Annotation)
	}
	diff, incr := b.Backups[2], b.Backups[3]
	if diff.Error == nil || !*diff.Error || diff.Prior != full.Label || !slices.Equal(diff.Reference, []string{full.Label}) {
		t.Errorf("diff: %+v", diff)
	}
	if incr.RepoSizeMap == nil || *incr.RepoSizeMap != 4096 || *incr.RepoSizeMapDelta != 512 || incr.Type != BackupIncr {
		t.Errorf("incr: %+v", incr)
	}
	if deps := b.Dependents(full.Label); !slices.Equal(deps, []string{full.Label, diff.Label, incr.Label}) {
		t.Errorf("Dependents = %v", deps)
	}
	if deps := b.Dependents(incr.Label); !slices.Equal(deps, []string{incr.Label}) {
		t.Errorf("Dependents(incr) = %v", deps)
	}

	// Backups added out of order are saved sorted; a removed one disappears.
	shuffled := &BackupInfo{CipherPass: b.CipherPass, CurrentID: b.CurrentID, History: b.History}
	for _, i := range []int{3, 0, 2, 1} {
		shuffled.Add(b.Backups[i])
	}
	got, err := shuffled.Save()
	if err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, path); !bytes.Equal(got, want) {
		t.Errorf("Add in another order then Save differs from the file")
	}
	shuffled.Remove(diff.Label)
	if _, ok := shuffled.Find(diff.Label); ok || len(shuffled.Backups) != 3 {
		t.Errorf("Remove did not remove %s", diff.Label)
	}
	unsorted := &BackupInfo{CurrentID: b.CurrentID, History: b.History, Backups: []Backup{incr, full}}
	data, err := unsorted.Save()
	if err != nil {
		t.Fatal(err)
	}
	if i, j := bytes.Index(data, []byte(full.Label+"=")), bytes.Index(data, []byte(incr.Label+"=")); i < 0 || j < 0 || i > j {
		t.Errorf("Save does not sort backups by label")
	}
}

// TestBackupFromManifest computes the backup.info entry of every manifest pgBackRest wrote
// and compares it with the entry pgBackRest wrote to backup.info.
func TestBackupFromManifest(t *testing.T) {
	t.Parallel()
	infos, err := filepath.Glob("testdata/pgbackrest/*/backup.info")
	if err != nil || len(infos) < 3 {
		t.Fatalf("golden backup.info files: %v %v", infos, err)
	}
	for _, path := range infos {
		b, err := LoadBackupInfo(path, readFile(t, path))
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Backups) < 2 {
			t.Fatalf("%s: expected several backups", path)
		}
		for _, want := range b.Backups {
			t.Run(filepath.Join(filepath.Dir(path), want.Label), func(t *testing.T) {
				t.Parallel()
				mpath := filepath.Join(filepath.Dir(path), want.Label+".manifest")
				m, err := LoadManifest(mpath, readFile(t, mpath))
				if err != nil {
					t.Fatal(err)
				}
				got, err := BackupFromManifest(m)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("BackupFromManifest:\n%+v\nbackup.info:\n%+v", got, want)
				}
			})
		}
	}
}

func TestInfoLoadErrors(t *testing.T) {
	t.Parallel()
	const head = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n"
	const archiveDB = "[db]\ndb-id=1\ndb-system-id=7\ndb-version=\"15\"\n\n"
	const backupDB = "[db]\ndb-catalog-version=202209061\ndb-control-version=1300\ndb-id=1\ndb-system-id=7\ndb-version=\"15\"\n\n"
	const backupHist = "[db:history]\n1={\"db-catalog-version\":202209061,\"db-control-version\":1300,\"db-system-id\":7,\"db-version\":\"15\"}\n"
	entry := `{"backrest-format":5,"backrest-version":"2.45","backup-archive-start":"000000010000000000000002",` +
		`"backup-archive-stop":"000000010000000000000002","backup-info-repo-size":1,"backup-info-repo-size-delta":1,` +
		`"backup-info-size":1,"backup-info-size-delta":1,"backup-timestamp-start":1,"backup-timestamp-stop":2,` +
		`"backup-type":"full","db-id":1,"option-archive-check":true,"option-archive-copy":false,"option-backup-standby":false,` +
		`"option-checksum-page":true,"option-compress":true,"option-hardlink":false,"option-online":true}`
	current := func(e string) string {
		return head + "[backup:current]\n20250101-000000F=" + e + "\n\n" + backupDB + backupHist
	}
	tests := []struct {
		name   string
		backup bool
		body   string
		line   int
		msg    string
	}{
		{"archive history missing", false, head + archiveDB, -1, "section [db:history] is missing"},
		{"archive db missing", false, head + "[db:history]\n1={\"db-id\":7,\"db-version\":\"15\"}\n", -1, "section [db] is missing"},
		{"archive db-id missing", false, head + "[db]\ndb-version=\"15\"\n\n[db:history]\n1={\"db-id\":7,\"db-version\":\"15\"}\n", 5,
			"section [db] key 'db-id' is missing"},
		{"archive db-id not a number", false, head + strings.Replace(archiveDB, "db-id=1", "db-id=true", 1) +
			"[db:history]\n1={\"db-id\":7,\"db-version\":\"15\"}\n", 6, "expected number but found bool"},
		{"archive current id not in history", false, head + strings.Replace(archiveDB, "db-id=1", "db-id=2", 1) +
			"[db:history]\n1={\"db-id\":7,\"db-version\":\"15\"}\n", 6, "unable to find current id 2 in history"},
		{"archive history system id under the backup key", false, head + archiveDB +
			"[db:history]\n1={\"db-system-id\":7,\"db-version\":\"15\"}\n", 11, "required key 'db-id' not found"},
		{"archive history keys out of order", false, head + archiveDB +
			"[db:history]\n1={\"db-version\":\"15\",\"db-id\":7}\n", 11, "required key 'db-id' not found"},
		{"archive bad version", false, head + archiveDB + "[db:history]\n1={\"db-id\":7,\"db-version\":\"x5\"}\n", 11,
			"format is invalid"},
		{"archive history id not numeric", false, head + archiveDB + "[db:history]\nx={\"db-id\":7,\"db-version\":\"15\"}\n", 11,
			"history id is not an unsigned int"},
		{"archive duplicate history id", false, head + archiveDB +
			"[db:history]\n1={\"db-id\":7,\"db-version\":\"15\"}\n01={\"db-id\":7,\"db-version\":\"15\"}\n", 12, "duplicate history id 1"},
		{"archive cipher-pass not a string", false, head + "[cipher]\ncipher-pass=1\n\n" + archiveDB +
			"[db:history]\n1={\"db-id\":7,\"db-version\":\"15\"}\n", 6, "expected string"},
		{"backup history without catalog", true, head + backupDB + "[db:history]\n1={\"db-system-id\":7,\"db-version\":\"15\"}\n", 13,
			"required key 'db-catalog-version' not found"},
		{"backup entry missing size", true, current(strings.Replace(entry, `"backup-info-size":1,`, "", 1)), 6,
			"required key 'backup-info-size' not found"},
		{"backup entry bad type", true, current(strings.Replace(entry, `"full"`, `"partial"`, 1)), 6, "invalid backup type"},
		{"backup entry negative timestamp", true, current(strings.Replace(entry, `"backup-timestamp-start":1`,
			`"backup-timestamp-start":-1`, 1)), 6, "out of range for uint64"},
		{"backup entry option not bool", true, current(strings.Replace(entry, `"option-online":true`, `"option-online":1`, 1)), 6,
			"option-online: invalid JSON: expected bool"},
		{"backup entry annotation not strings", true, current(strings.Replace(entry, `"backup-archive-start"`,
			`"backup-annotation":{"a":1},"backup-archive-start"`, 1)), 6, "expected a string value for key 'a'"},
		{"backup entry not an object", true, current(`"x"`), 6, "expected object but found string"},
		{"backup entry escaped key", true, current(strings.Replace(entry, `"backup-archive-start"`, `"a\"b":1,"backup-archive-start"`, 1)),
			6, "escape character not allowed in key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := signed(tt.body)
			if tt.line < 0 { // problems of the whole file are reported at its last line
				tt.line = bytes.Count(data, []byte("\n"))
			}
			var err error
			if tt.backup {
				_, err = LoadBackupInfo("backup/demo/backup.info", data)
			} else {
				_, err = LoadArchiveInfo("backup/demo/backup.info", data)
			}
			assertParseError(t, err, ErrFormat, "backup/demo/backup.info", tt.line, tt.msg)
		})
	}
}

func TestPgVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		num     uint32
		str     string
		control uint32
	}{
		{"9.3", 90300, "9.3", 937},
		{"9.4", 90400, "9.4", 942},
		{"9.5", 90500, "9.5", 942},
		{"9.6", 90600, "9.6", 960},
		{"10", 100000, "10", 1002},
		{"11", 110000, "11", 1100},
		{"12", 120000, "12", 1201},
		{"13", 130000, "13", 1300},
		{"15", 150000, "15", 1300},
		{"8.4", 80400, "8.4", 0},
		{"9", 0, "", 0},
		{"x", 0, "", 0},
		{"15.", 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			n, err := PgVersionNum(tt.in)
			if tt.num == 0 {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("want ErrInvalid, got %d, %v", n, err)
				}
				return
			}
			if err != nil || n != tt.num || PgVersionString(n) != tt.str {
				t.Errorf("got %d (%q), %v", n, PgVersionString(n), err)
			}
			c, err := PgControlVersion(tt.in)
			if tt.control == 0 {
				if err == nil {
					t.Errorf("want an error for an unsupported version, got %d", c)
				}
			} else if err != nil || c != tt.control {
				t.Errorf("PgControlVersion = %d, %v; want %d", c, err, tt.control)
			}
		})
	}
}

// TestEncryptedGoldenShape checks that the encrypted files pgBackRest wrote (kept for
// decryption tests elsewhere) are in the OpenSSL salted format and have the length
// AES-256-CBC with PKCS#7 padding gives their decrypted copies.
func TestEncryptedGoldenShape(t *testing.T) {
	t.Parallel()
	encrypted, _ := filepath.Glob("testdata/pgbackrest-enc/repo2/*")
	checked := 0
	for _, enc := range encrypted {
		base := filepath.Base(enc)
		if !strings.HasSuffix(base, ".info") && !strings.HasSuffix(base, ".manifest") {
			continue
		}
		data := readFile(t, enc)
		plain := readFile(t, filepath.Join("testdata/pgbackrest/repo2-decrypted", base))
		if !bytes.HasPrefix(data, []byte("Salted__")) || len(data) != 16+(len(plain)/16+1)*16 {
			t.Errorf("%s: %d bytes for %d plaintext bytes", enc, len(data), len(plain))
		}
		checked++
	}
	if checked < 4 {
		t.Errorf("only %d encrypted files found", checked)
	}
}
