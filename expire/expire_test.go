package expire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/repo"
)

// now is the reference time of the tests.
var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// bk describes a backup for newInfo: its label, prior, history id, WAL range
// (segment numbers on timeline 1, 0 for an offline backup) and stop time.
type bk struct {
	label, prior string
	db           uint32
	tl           int // timeline of start and stop; 0 means 1
	start, stop  int
	stopAt       time.Time
}

func seg(tl, n int) string { return fmt.Sprintf("%08X%08X%08X", tl, n>>8, n&0xFF) }

func full(day int) string { return fmt.Sprintf("202611%02d-000000F", day) }
func diff(fullDay, day int) string {
	return fmt.Sprintf("202611%02d-000000F_202611%02d-000000D", fullDay, day)
}
func incr(fullDay, day int) string {
	return fmt.Sprintf("202611%02d-000000F_202611%02d-000000I", fullDay, day)
}

var hist = []repo.PgHistory{{ID: 1, Version: "14", SystemID: 11}, {ID: 2, Version: "15", SystemID: 22}}

func newInfo(backups ...bk) *repo.BackupInfo {
	bi := &repo.BackupInfo{CurrentID: 2, History: hist}
	for _, b := range backups {
		x := repo.Backup{Label: b.label, Prior: b.prior, DBID: b.db, TimestampStop: b.stopAt.Unix()}
		if x.DBID == 0 {
			x.DBID = 2
		}
		switch {
		case strings.HasSuffix(b.label, "F"):
			x.Type = repo.BackupFull
		case strings.HasSuffix(b.label, "D"):
			x.Type = repo.BackupDiff
		default:
			x.Type = repo.BackupIncr
		}
		if b.start > 0 {
			tl := max(b.tl, 1)
			x.ArchiveStart, x.ArchiveStop = seg(tl, b.start), seg(tl, b.stop)
		}
		bi.Add(x)
	}
	return bi
}

func remaining(bi *repo.BackupInfo) []string {
	var out []string
	for _, b := range bi.Backups {
		out = append(out, b.Label)
	}
	return out
}

func TestBackups(t *testing.T) {
	t.Parallel()
	days := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
	chain := []bk{
		{label: full(1), stopAt: days(28)},
		{label: diff(1, 2), prior: full(1), stopAt: days(27)},
		{label: incr(1, 3), prior: diff(1, 2), stopAt: days(26)},
		{label: full(10), stopAt: days(19)},
		{label: diff(10, 11), prior: full(10), stopAt: days(18)},
		{label: diff(10, 12), prior: full(10), stopAt: days(17)},
		{label: incr(10, 13), prior: diff(10, 12), stopAt: days(16)},
		{label: full(20), stopAt: days(9)},
	}
	tests := []struct {
		name        string
		policy      Policy
		backups     []bk
		wantSets    []string
		wantArchive int
	}{
		{"no retention", Policy{}, chain, nil, 0},
		{"full count 2 expires oldest set", Policy{Full: 2, Archive: 2}, chain,
			[]string{"expire full backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3)}, 2},
		{"full count 1", Policy{Full: 1, Archive: 1}, chain, []string{
			"expire full backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3),
			"expire full backup set " + full(10) + ", " + diff(10, 11) + ", " + diff(10, 12) + ", " + incr(10, 13),
		}, 1},
		{"full count 3 keeps all", Policy{Full: 3, Archive: 3}, chain, nil, 3},
		// Fulls count as differentials: F1 D2 F10 D11 D12 F20 with diff=2 keeps D12, F20.
		{"diff 2", Policy{Diff: 2}, chain, []string{
			"expire diff backup set " + diff(1, 2) + ", " + incr(1, 3),
			"expire diff backup " + diff(10, 11),
		}, 0},
		{"full 2 then diff 2", Policy{Full: 2, Diff: 2, Archive: 2}, chain, []string{
			"expire full backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3),
			"expire diff backup " + diff(10, 11),
		}, 2},
		// F10 stopped 19 days ago, before the 15-day cutoff: it is the newest older one, kept.
		{"time 15 days", Policy{Full: 15, FullTime: true}, chain,
			[]string{"expire time-based backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3)}, 2},
		{"time 15 days archive set", Policy{Full: 15, FullTime: true, Archive: 5}, chain,
			[]string{"expire time-based backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3)}, 5},
		{"time 15 days archive type diff", Policy{Full: 15, FullTime: true, ArchiveType: repo.BackupDiff}, chain,
			[]string{"expire time-based backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3)}, 0},
		{"time 5 days", Policy{Full: 5, FullTime: true}, chain, []string{
			"expire time-based backup set " + full(1) + ", " + diff(1, 2) + ", " + incr(1, 3),
			"expire time-based backup set " + full(10) + ", " + diff(10, 11) + ", " + diff(10, 12) + ", " + incr(10, 13),
		}, 1},
		{"time 40 days keeps all", Policy{Full: 40, FullTime: true}, chain, nil, 0},
		{"time without days", Policy{FullTime: true}, chain, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bi := newInfo(tc.backups...)
			before := remaining(bi)
			res := Backups(bi, tc.policy, now)
			var got []string
			for _, s := range res.Sets {
				got = append(got, s.Message())
			}
			if !slices.Equal(got, tc.wantSets) {
				t.Errorf("sets:\n got %q\nwant %q", got, tc.wantSets)
			}
			if res.ArchiveRetention != tc.wantArchive {
				t.Errorf("archive retention = %d, want %d", res.ArchiveRetention, tc.wantArchive)
			}
			// Every backup is either kept or expired, never both.
			left := remaining(bi)
			all := append(slices.Clone(left), res.Labels()...)
			slices.Sort(all)
			if !slices.Equal(all, before) {
				t.Errorf("kept %v + expired %v != %v", left, res.Labels(), before)
			}
		})
	}
}

func TestAdhoc(t *testing.T) {
	t.Parallel()
	base := []bk{
		{label: full(1), db: 1},
		{label: full(5)},
		{label: diff(5, 6), prior: full(5)},
		{label: incr(5, 7), prior: diff(5, 6)},
		{label: full(10)},
		{label: incr(10, 11), prior: full(10)},
	}
	tests := []struct {
		name, label string
		backups     []bk
		wantMsg     string
		wantLatest  string
		wantErr     error
	}{
		{"diff with incr", diff(5, 6), base, "expire adhoc backup set " + diff(5, 6) + ", " + incr(5, 7), "", nil},
		{"old full with dependents", full(5), base,
			"expire adhoc backup set " + full(5) + ", " + diff(5, 6) + ", " + incr(5, 7), "", nil},
		{"latest incr", incr(10, 11), base, "expire adhoc backup " + incr(10, 11), incr(10, 11), nil},
		{"newest full", full(10), base, "expire adhoc backup set " + full(10) + ", " + incr(10, 11), incr(10, 11), nil},
		{"only full", full(1), base[:1], "", "", ErrBackupSetInvalid},
		{"prior full of another cluster", full(5), []bk{{label: full(1), db: 1}, {label: full(5)}}, "", "", ErrBackupSetInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bi := newInfo(tc.backups...)
			set, latest, err := Adhoc(bi, tc.label)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if len(bi.Backups) != len(tc.backups) {
					t.Errorf("refused expiry changed backup.info: %v", remaining(bi))
				}
				if !strings.Contains(err.Error(), "cannot be expired until another full backup has been created on this repo") {
					t.Errorf("message %q", err)
				}
				return
			}
			if got := set.Message(); got != tc.wantMsg {
				t.Errorf("message %q, want %q", got, tc.wantMsg)
			}
			if latest != tc.wantLatest {
				t.Errorf("latest removed %q, want %q", latest, tc.wantLatest)
			}
			for _, l := range set.Labels {
				if _, ok := bi.Find(l); ok {
					t.Errorf("%s still in backup.info", l)
				}
			}
		})
	}
	if _, _, err := Adhoc(newInfo(base...), full(3)); err == nil {
		t.Error("expiring a missing label succeeded")
	}
}

func TestStaleBackupDirs(t *testing.T) {
	t.Parallel()
	bi := newInfo(bk{label: full(5)}, bk{label: incr(5, 6), prior: full(5)})
	disk := []string{full(1), full(5), incr(5, 6), incr(5, 7), "backup.history", diff(1, 2)}
	got := StaleBackupDirs(bi, disk, "")
	want := []string{incr(5, 7), diff(1, 2), full(1)}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := StaleBackupDirs(bi, disk, incr(5, 7)); !slices.Equal(got, want[1:]) {
		t.Errorf("with keep: got %v, want %v", got, want[1:])
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	bi := newInfo(bk{label: "20261101-000000F"})
	files := []string{
		"2025/20250101-000000F.manifest.gz",
		"2025/20251231-000000F_20251231-010000I.manifest.gz",
		"2026/20260101-000000F.manifest.gz",
		"2026/20261101-000000F.manifest.gz", // still in backup.info
		"2026/20261120-000000F.manifest.gz", // newer than the cutoff
		"2026/20261001-000000F_20261002-000000D.manifest.gz",
		"2026/README",
	}
	got := History(bi, 30, now, time.UTC, files) // cutoff label 20261030-120000F
	want := []HistoryStep{
		{Path: "2025", Dir: true, Message: "remove expired backup history path 2025"},
		{Path: "2026/20261001-000000F_20261002-000000D.manifest.gz", Message: "remove expired backup history manifest 20261001-000000F_20261002-000000D.manifest.gz"},
		{Path: "2026/20260101-000000F.manifest.gz", Message: "remove expired backup history manifest 20260101-000000F.manifest.gz"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%v\nwant\n%v", got, want)
	}
	if got := History(bi, 1000, now, time.UTC, files); len(got) != 0 {
		t.Errorf("1000 days: %v", got)
	}
}

func TestArchiveIDDir(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"15-1": true, "9.6-2": true, "10-12": true, "15": false, "-1": false, "15-": false,
		"15-1a": false, "a-1": false, "9..6-1": false, "archive.info": false,
	} {
		if got := ArchiveIDDir(name); got != want {
			t.Errorf("ArchiveIDDir(%q) = %v", name, got)
		}
	}
}
