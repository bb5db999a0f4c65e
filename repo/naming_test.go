package repo

import (
	"bufio"
	"bytes"
	"errors"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWALGrammar(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                                 string
		segment, segOrPartial, partial, hist bool
		backupHistory, dir                   bool
	}{
		{name: "000000010000000000000005", segment: true, segOrPartial: true},
		{name: "00000001000000A1000000FE", segment: true, segOrPartial: true},
		{name: "000000010000000000000005.partial", segOrPartial: true, partial: true},
		{name: "000000010000000000000005.00000028.backup", backupHistory: true},
		{name: "00000002.history", hist: true},
		{name: "0000000200000000", dir: true},
		{name: "00000001000000000000000", segment: false},                     // 23 characters
		{name: "0000000100000000000000055", segment: false},                   // 25 characters
		{name: "00000001000000000000000a", segment: false},                    // lowercase is outside [0-F]
		{name: "0000000100000000000000:@", segment: true, segOrPartial: true}, // ':' to '@' are inside pgBackRest's [0-F]
		{name: "000000010000000000000005.partiaL"},
		{name: "00000002.historyx"},
		{name: "00000002Xhistory", hist: true}, // '.' is any character in pgBackRest's expression
		{name: "0000000g.history"},
		{name: "000000010000000000000005.0000002.backup"},
		{name: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := []bool{IsWALSegment(tt.name), IsWALSegmentOrPartial(tt.name), IsPartialWAL(tt.name),
				IsTimelineHistory(tt.name), IsBackupHistoryFile(tt.name), IsWALSegmentDir(tt.name)}
			want := []bool{tt.segment, tt.segOrPartial, tt.partial, tt.hist, tt.backupHistory, tt.dir}
			if !slices.Equal(got, want) {
				t.Errorf("segment, segOrPartial, partial, history, backupHistory, dir = %v, want %v", got, want)
			}
		})
	}
}

func TestParseWALSegment(t *testing.T) {
	t.Parallel()
	tl, log, seg, err := ParseWALSegment("0000000A000000FF0000001B")
	if err != nil || tl != 10 || log != 255 || seg != 27 {
		t.Errorf("got %d %d %d %v", tl, log, seg, err)
	}
	for _, bad := range []string{"0000000100000000000000:@", "00000001000000000000000a", "0000000100000000000000"} {
		if _, _, _, err := ParseWALSegment(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", bad, err)
		}
	}
}

// TestArchivePath covers the path-mapping rule (spec §1.2, storage/helper.c).
func TestArchivePath(t *testing.T) {
	t.Parallel()
	sha := "adc049721b3e9f8066258eb1881680cc658dc818"
	tests := []struct{ archiveID, file, want string }{
		{"15-1", "000000010000000000000005-" + sha + ".gz", "15-1/0000000100000000/000000010000000000000005-" + sha + ".gz"},
		{"15-1", "000000010000000000000005.00000028.backup", "15-1/0000000100000000/000000010000000000000005.00000028.backup"},
		{"15-1", "000000010000000000000005.partial-" + sha + ".gz", "15-1/0000000100000000/000000010000000000000005.partial-" + sha + ".gz"},
		{"15-1", "000000010000000000000016-" + sha, "15-1/0000000100000000/000000010000000000000016-" + sha},
		{"9.6-2", "0000000300000001000000FF", "9.6-2/0000000300000001/0000000300000001000000FF"},
		{"15-1", "00000002.history", "15-1/00000002.history"},
		{"15-1", "archive.info", "15-1/archive.info"},
		{"15-1", "sub/000000010000000000000005", "15-1/sub/000000010000000000000005"},
	}
	for _, tt := range tests {
		if got := ArchivePath(tt.archiveID, tt.file); got != tt.want {
			t.Errorf("ArchivePath(%q, %q) = %q, want %q", tt.archiveID, tt.file, got, tt.want)
		}
	}
}

func TestWALRepoFileName(t *testing.T) {
	t.Parallel()
	sha := "180fea23d9df9f991cce14777f0d715a5cbae964"
	tests := []struct {
		name string
		want WALRepoFile
		ok   bool
	}{
		{"000000010000000000000001-" + sha + ".gz", WALRepoFile{"000000010000000000000001", false, sha, CompressGz}, true},
		{"000000010000000000000001-" + sha, WALRepoFile{"000000010000000000000001", false, sha, CompressNone}, true},
		{"000000010000000000000001.partial-" + sha + ".zst", WALRepoFile{"000000010000000000000001", true, sha, CompressZst}, true},
		{"000000010000000000000001-" + sha + ".lz4", WALRepoFile{"000000010000000000000001", false, sha, CompressLz4}, true},
		{"000000010000000000000001-" + sha + ".bz2", WALRepoFile{"000000010000000000000001", false, sha, CompressBz2}, true},
		{"000000010000000000000001-" + sha + ".xz", WALRepoFile{"000000010000000000000001", false, sha, CompressXz}, true},
		{"000000010000000000000001-" + sha + ".rar", WALRepoFile{}, false},
		{"000000010000000000000001-" + sha[:39], WALRepoFile{}, false},
		{"000000010000000000000001_" + sha, WALRepoFile{}, false},
		{"000000010000000000000001-" + strings.ToUpper(sha[:10]) + sha[10:], WALRepoFile{"000000010000000000000001", false,
			strings.ToUpper(sha[:10]) + sha[10:], CompressNone}, true}, // [0-f] includes uppercase letters
		{"00000002.history", WALRepoFile{}, false},
		{"000000010000000000000001.00000028.backup", WALRepoFile{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWALRepoFileName(tt.name)
			if !tt.ok {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("want ErrInvalid, got %+v, %v", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if name, err := got.Name(); strings.ToLower(tt.name) == tt.name && (err != nil || name != tt.name) {
				t.Errorf("Name() = %q, %v", name, err)
			}
		})
	}
	if _, err := WALRepoFileName("00000002.history", sha, CompressGz); !errors.Is(err, ErrInvalid) {
		t.Errorf("history files have no checksum name: %v", err)
	}
	if _, err := WALRepoFileName("000000010000000000000001", strings.ToUpper(sha), CompressGz); !errors.Is(err, ErrInvalid) {
		t.Errorf("the written sha1 must be lowercase: %v", err)
	}
}

// TestGoldenArchiveListing maps every file pgBackRest archived back to its path.
func TestGoldenArchiveListing(t *testing.T) {
	t.Parallel()
	listings, _ := filepath.Glob("testdata/pgbackrest*/*/archive-files.txt")
	if len(listings) < 3 {
		t.Fatalf("golden listings: %v", listings)
	}
	for _, listing := range listings {
		info := filepath.Join(filepath.Dir(listing), "archive.info")
		var archiveID string
		if a, err := LoadArchiveInfo(info, readFile(t, info)); err == nil {
			archiveID, _ = a.ArchiveID()
		} else {
			archiveID = "15-1" // the encrypted repository's archive.info cannot be read here
		}
		sc := bufio.NewScanner(bytes.NewReader(readFile(t, listing)))
		segments := 0
		for sc.Scan() {
			p := strings.TrimPrefix(sc.Text(), "./")
			base := path.Base(p)
			if base == ArchiveInfoFile || base == ArchiveInfoFile+CopyExt {
				continue
			}
			if got := ArchivePath(archiveID, base); got != p {
				t.Errorf("%s: ArchivePath = %q, want %q", listing, got, p)
			}
			switch {
			case IsBackupHistoryFile(base), IsTimelineHistory(base):
			default:
				w, err := ParseWALRepoFileName(base)
				if err != nil || w.Compress != CompressGz || !IsWALSegment(w.Segment) {
					t.Errorf("%s: %s: %+v %v", listing, base, w, err)
				}
				segments++
			}
		}
		if segments == 0 {
			t.Errorf("%s: no segments", listing)
		}
	}
}

func TestArchiveID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id      string
		version string
		history uint32
	}{
		{"15-1", "15", 1}, {"9.6-12", "9.6", 12}, {"10-3", "10", 3},
		{"15", "", 0}, {"15-0", "", 0}, {"15-01", "", 0}, {"15.0-1", "", 0}, {"x-1", "", 0}, {"15-1-2", "", 0},
	}
	for _, tt := range tests {
		v, h, err := ParseArchiveID(tt.id)
		if tt.version == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: want ErrInvalid, got %s %d %v", tt.id, v, h, err)
			}
			continue
		}
		if err != nil || v != tt.version || h != tt.history || ArchiveID(v, h) != tt.id {
			t.Errorf("%s: got %s %d %v", tt.id, v, h, err)
		}
	}
	if got := (PgHistory{ID: 3, Version: "9.5"}).ArchiveID(); got != "9.5-3" {
		t.Errorf("PgHistory.ArchiveID = %q", got)
	}
}

func TestBackupLabels(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("UTC+9", 9*3600)
	start := time.Date(2026, 11, 29, 8, 6, 24, 999, time.UTC) // 17:06:24 in the fixed zone
	tests := []struct {
		name  string
		typ   BackupType
		prior string
		at    time.Time
		want  string
	}{
		{"full in UTC", BackupFull, "", start, "20261129-080624F"},
		{"full in another zone", BackupFull, "", start.In(zone), "20261129-170624F"},
		{"diff keeps the full part", BackupDiff, "20261129-080624F", start.Add(time.Hour), "20261129-080624F_20261129-090624D"},
		{"incr of a diff keeps the full part", BackupIncr, "20261129-080624F_20261129-090624D", start.Add(2 * time.Hour),
			"20261129-080624F_20261129-100624I"},
		{"incr across midnight", BackupIncr, "20261129-080624F", start.Add(16 * time.Hour), "20261129-080624F_20261130-000624I"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := FormatBackupLabel(tt.typ, tt.prior, tt.at)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			l, err := ParseBackupLabel(got)
			if err != nil || l.Type != tt.typ || l.Label != got {
				t.Fatalf("ParseBackupLabel: %+v %v", l, err)
			}
			when, err := l.Time(tt.at.Location())
			if err != nil || !when.Equal(tt.at.Truncate(time.Second)) {
				t.Errorf("Time = %v, %v; want %v", when, err, tt.at.Truncate(time.Second))
			}
			if tt.prior != "" && l.FullLabel() != tt.prior[:16] {
				t.Errorf("FullLabel = %q", l.FullLabel())
			}
		})
	}
	for _, bad := range []struct {
		typ   BackupType
		prior string
		at    time.Time
	}{
		{BackupFull, "20261129-080624F", start}, {BackupIncr, "", start}, {BackupDiff, "garbage", start},
		{"partial", "", start}, {BackupFull, "", time.Unix(0, 0)},
	} {
		if got, err := FormatBackupLabel(bad.typ, bad.prior, bad.at); !errors.Is(err, ErrInvalid) {
			t.Errorf("FormatBackupLabel(%s, %q, %v) = %q, %v; want ErrInvalid", bad.typ, bad.prior, bad.at, got, err)
		}
	}
}

func TestParseBackupLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		label string
		typ   BackupType
	}{
		{"20261129-080624F", BackupFull},
		{"20261129-080624F_20261129-080724I", BackupIncr},
		{"20261129-080624F_20261129-080734D", BackupDiff},
		{"99999999-999999F", BackupFull}, // dates are not validated, as in pgBackRest
		{"20261129-080624I", ""},
		{"20261129-080624", ""},
		{"20261129080624F", ""},
		{"20261129-080624F_", ""},
		{"20261129-080624F_20261129-080724F", ""},
		{"20261129-080624F-20261129-080724I", ""},
		{"20261129-080624F_20261129-080724Ix", ""},
		{"latest", ""},
	}
	for _, tt := range tests {
		l, err := ParseBackupLabel(tt.label)
		if tt.typ == "" {
			if !errors.Is(err, ErrInvalid) || IsBackupLabel(tt.label) {
				t.Errorf("%s: want ErrInvalid, got %+v %v", tt.label, l, err)
			}
			continue
		}
		if err != nil || l.Type != tt.typ || !IsBackupLabel(tt.label) {
			t.Errorf("%s: got %+v %v", tt.label, l, err)
		}
	}
}

// TestNextBackupLabel covers the "strictly after the newest label" rule with +1 second.
func TestNextBackupLabel(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 8, 6, 24, 0, time.UTC)
	tests := []struct {
		name   string
		typ    BackupType
		prior  string
		latest string
		want   string
		clock  bool
	}{
		{"no backups", BackupFull, "", "", "20261129-080624F", false},
		{"older latest", BackupFull, "", "20261129-080623F", "20261129-080624F", false},
		{"same second adds one", BackupFull, "", "20261129-080624F", "20261129-080625F", false},
		{"latest one second ahead", BackupFull, "", "20261129-080625F", "", true},
		{"latest is an incr of the same full second", BackupFull, "", "20261129-080624F_20261129-090000I", "20261129-080625F", false},
		{"incr after its full", BackupIncr, "20261129-080000F", "20261129-080000F", "20261129-080000F_20261129-080624I", false},
		{"incr same second as the latest incr", BackupIncr, "20261129-080000F", "20261129-080000F_20261129-080624I",
			"20261129-080000F_20261129-080625I", false},
		{"clock went back", BackupIncr, "20261129-080000F", "20261129-080000F_20261129-090000D", "", true},
		{"newer full exists", BackupIncr, "20261129-080000F", "20261129-080500F", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NextBackupLabel(tt.typ, tt.prior, at, tt.latest)
			if tt.clock {
				if !errors.Is(err, ErrClock) {
					t.Errorf("want ErrClock, got %q, %v", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			if tt.latest != "" && got <= tt.latest {
				t.Errorf("%q does not sort after %q", got, tt.latest)
			}
		})
	}
}

func TestLatestBackupLabel(t *testing.T) {
	t.Parallel()
	dirs := []string{"backup.history", "latest", "20261129-080624F", "20261129-080624F_20261129-080724I", "backup.info"}
	history := []string{"20261129-080624F.manifest.gz", "20261130-000000F.manifest.gz", "junk.manifest.gz", "20261129-080624F.manifest"}
	var historyLabels []string
	for _, h := range history {
		if l, ok := ParseHistoryManifestName(h); ok {
			historyLabels = append(historyLabels, l)
		}
	}
	if !slices.Equal(historyLabels, []string{"20261129-080624F", "20261130-000000F"}) {
		t.Errorf("history labels = %v", historyLabels)
	}
	if got := LatestBackupLabel(dirs...); got != "20261129-080624F_20261129-080724I" {
		t.Errorf("latest of dirs = %q", got)
	}
	if got := LatestBackupLabel(append(dirs, historyLabels...)...); got != "20261130-000000F" {
		t.Errorf("latest with history = %q", got)
	}
	if got := LatestBackupLabel("latest"); got != "" {
		t.Errorf("latest of nothing = %q", got)
	}
	for name, want := range map[string]bool{"2026": true, "2999": true, "1999": false, "202": false, "20261": false, "2a26": false} {
		if IsHistoryYearDir(name) != want {
			t.Errorf("IsHistoryYearDir(%q) != %v", name, want)
		}
	}
}

// TestGoldenBackupListing checks the history and manifest paths against the files
// pgBackRest created.
func TestGoldenBackupListing(t *testing.T) {
	t.Parallel()
	listings, _ := filepath.Glob("testdata/pgbackrest*/*/backup-files.txt")
	if len(listings) < 3 {
		t.Fatalf("golden listings: %v", listings)
	}
	for _, listing := range listings {
		files := map[string]bool{}
		var labels []string
		sc := bufio.NewScanner(bytes.NewReader(readFile(t, listing)))
		for sc.Scan() {
			p := strings.TrimPrefix(sc.Text(), "./")
			files[p] = true
			if dir, file := path.Split(p); file == ManifestFileName && IsBackupLabel(strings.TrimSuffix(dir, "/")) {
				labels = append(labels, strings.TrimSuffix(dir, "/"))
			}
		}
		if len(labels) < 2 || !files[LatestLink] || !files[BackupInfoFile] || !files[BackupInfoFile+CopyExt] {
			t.Fatalf("%s: unexpected listing %v", listing, files)
		}
		for _, label := range labels {
			h, err := HistoryManifestPath(label)
			if err != nil || !files[h] {
				t.Errorf("%s: history path %q (%v) not in the listing", listing, h, err)
			}
			if !files[BackupManifestPath(label)] || !files[BackupManifestPath(label)+CopyExt] {
				t.Errorf("%s: manifest of %s not in the listing", listing, label)
			}
		}
	}
	if _, err := HistoryManifestPath("x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("HistoryManifestPath(x): %v", err)
	}
	if h, _ := HistoryManifestPath("20261231-235959F_20270101-000001I"); h != "backup.history/2026/20261231-235959F_20270101-000001I.manifest.gz" {
		t.Errorf("an incr is filed under its full backup's year: %s", h)
	}
}

func TestCompressType(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		typ CompressType
		ext string
	}{{CompressNone, ""}, {CompressGz, ".gz"}, {CompressBz2, ".bz2"}, {CompressLz4, ".lz4"}, {CompressZst, ".zst"}, {CompressXz, ".xz"}} {
		ext, err := tt.typ.Ext()
		if err != nil || ext != tt.ext {
			t.Errorf("%s.Ext() = %q, %v", tt.typ, ext, err)
		}
		if p, err := ParseCompressType(string(tt.typ)); err != nil || p != tt.typ {
			t.Errorf("ParseCompressType(%s) = %s, %v", tt.typ, p, err)
		}
		if got := CompressTypeFromName("f" + tt.ext); got != tt.typ {
			t.Errorf("CompressTypeFromName(f%s) = %s", tt.ext, got)
		}
	}
	if _, err := ParseCompressType("zstd"); !errors.Is(err, ErrInvalid) {
		t.Errorf("zstd: %v", err)
	}
	if _, err := CompressType("").Ext(); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty type: %v", err)
	}
}
