package expire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgsidecar/pgsidecar/repo"
)

// walFiles lists segments first..last of timeline 1 as an archive id holds them
// ("<16 hex>/<24 hex>-<sha1>.gz") plus extra files.
func walFiles(first, last int, extra ...string) []string {
	var out []string
	for n := first; n <= last; n++ {
		s := seg(1, n)
		out = append(out, s[:16]+"/"+s+"-"+strings.Repeat("a", 40)+".gz")
	}
	return append(out, extra...)
}

var archiveInfo = &repo.ArchiveInfo{CurrentID: 2, History: []repo.PgHistory{
	{ID: 1, Version: "14", SystemID: 11}, {ID: 2, Version: "15", SystemID: 22},
}}

// describe renders steps as "rm <path>[/]" and "log <message>" lines, collapsing
// runs of file removals to "rm <first>..<last> (n)".
func describe(steps []WALStep) []string {
	var out []string
	runStart, runEnd, runN := "", "", 0
	flush := func() {
		if runN > 0 {
			out = append(out, fmt.Sprintf("rm %s..%s (%d)", runStart, runEnd, runN))
			runN = 0
		}
	}
	for _, s := range steps {
		if s.Remove != "" && !s.Dir && s.Message == "" {
			name := s.Remove[strings.LastIndex(s.Remove, "/")+1:][:24]
			if runN == 0 {
				runStart = name
			}
			runEnd = name
			runN++
			continue
		}
		flush()
		switch {
		case s.Dir:
			out = append(out, "rm "+s.Remove+"/")
		case s.Remove != "":
			out = append(out, "rm "+s.Remove)
		}
		if s.Message != "" {
			out = append(out, "log "+s.Message)
		}
	}
	flush()
	return out
}

func TestWAL(t *testing.T) {
	t.Parallel()
	threeFulls := []bk{
		{label: full(1), start: 0x02, stop: 0x03},
		{label: incr(1, 2), prior: full(1), start: 0x05, stop: 0x05},
		{label: full(3), start: 0x08, stop: 0x09},
		{label: diff(3, 4), prior: full(3), start: 0x0C, stop: 0x0C},
		{label: full(5), start: 0x10, stop: 0x11},
	}
	tests := []struct {
		name    string
		backups []bk
		policy  WALPolicy
		disk    map[string][]string
		want    []string
	}{
		{
			name: "retention not set", backups: threeFulls, policy: WALPolicy{Option: "repo1-retention-archive"},
			disk: map[string][]string{"15-2": walFiles(1, 0x12)},
			want: []string{"log option 'repo1-retention-archive' is not set - archive logs will not be expired"},
		},
		{
			name: "time-based not met", backups: threeFulls, policy: WALPolicy{TimeBased: true},
			disk: map[string][]string{"15-2": walFiles(1, 0x12)},
			want: []string{"log time-based archive retention not met - archive logs will not be expired"},
		},
		{
			name: "too few backups", backups: threeFulls, policy: WALPolicy{Retention: 4},
			disk: map[string][]string{"15-2": walFiles(1, 0x12)},
		},
		{
			// F1 and F3 stay consistent (their own start..stop); F5 keeps everything onward.
			name: "full 1 keeps older backup ranges", backups: threeFulls, policy: WALPolicy{Retention: 1},
			disk: map[string][]string{"15-2": walFiles(1, 0x12)},
			want: []string{
				"rm " + seg(1, 1) + ".." + seg(1, 1) + " (1)",
				"log 15-2 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 1),
				"rm " + seg(1, 4) + ".." + seg(1, 4) + " (1)",
				"log 15-2 remove archive, start = " + seg(1, 4) + ", stop = " + seg(1, 4),
				"rm " + seg(1, 6) + ".." + seg(1, 7) + " (2)",
				"log 15-2 remove archive, start = " + seg(1, 6) + ", stop = " + seg(1, 7),
				"rm " + seg(1, 0xA) + ".." + seg(1, 0xB) + " (2)",
				"log 15-2 remove archive, start = " + seg(1, 0xA) + ", stop = " + seg(1, 0xB),
				"rm " + seg(1, 0xD) + ".." + seg(1, 0xF) + " (3)",
				"log 15-2 remove archive, start = " + seg(1, 0xD) + ", stop = " + seg(1, 0xF),
			},
		},
		{
			name: "full 2", backups: threeFulls[2:], policy: WALPolicy{Retention: 2},
			disk: map[string][]string{"15-2": walFiles(1, 0x12, "00000001.history")},
			want: []string{
				"rm " + seg(1, 1) + ".." + seg(1, 7) + " (7)",
				"log 15-2 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 7),
			},
		},
		{
			name: "nothing to remove", backups: threeFulls, policy: WALPolicy{Retention: 3},
			disk: map[string][]string{"15-2": walFiles(2, 0x12)},
			want: []string{"log 15-2 no archive to remove"},
		},
		{
			// Diffs count: the retention backup is D4 (start 0C); F3 keeps 08..09.
			name: "diff type", backups: threeFulls[2:4], policy: WALPolicy{Retention: 1, Type: repo.BackupDiff},
			disk: map[string][]string{"15-2": walFiles(1, 0x0D)},
			want: []string{
				"rm " + seg(1, 1) + ".." + seg(1, 7) + " (7)",
				"log 15-2 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 7),
				"rm " + seg(1, 0xA) + ".." + seg(1, 0xB) + " (2)",
				"log 15-2 remove archive, start = " + seg(1, 0xA) + ", stop = " + seg(1, 0xB),
			},
		},
		{
			// Incrementals count: the retention backup is I2 (05); F1 keeps 02..03.
			name: "incr type", backups: threeFulls[:2], policy: WALPolicy{Retention: 1, Type: repo.BackupIncr},
			disk: map[string][]string{"15-2": walFiles(1, 0x06)},
			want: []string{
				"rm " + seg(1, 1) + ".." + seg(1, 1) + " (1)",
				"log 15-2 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 1),
				"rm " + seg(1, 4) + ".." + seg(1, 4) + " (1)",
				"log 15-2 remove archive, start = " + seg(1, 4) + ", stop = " + seg(1, 4),
			},
		},
		{
			// Whole WAL directories before the oldest range go at once; .backup and
			// .partial files are segments for this purpose; old timeline history goes.
			name: "directories and history", policy: WALPolicy{Retention: 1},
			backups: []bk{{label: full(9), start: 0x201, stop: 0x202}},
			disk: map[string][]string{"15-2": append(walFiles(0xFE, 0x203,
				"0000000100000002/000000010000000200000000.00000028.backup",
				"0000000100000002/000000010000000200000000.partial-"+strings.Repeat("b", 40)+".gz"),
				"00000001.history", "00000002.history")},
			want: []string{
				"rm 15-2/0000000100000000/",
				"rm 15-2/0000000100000001/",
				"rm 000000010000000200000000..000000010000000200000000 (3)",
				"log 15-2 remove archive, start = 0000000100000001, stop = 000000010000000200000000",
			},
		},
		{
			name: "timeline history older than the kept backup", policy: WALPolicy{Retention: 1},
			backups: []bk{{label: full(9), tl: 2, start: 0x02, stop: 0x03}},
			disk:    map[string][]string{"15-2": {"00000001.history", "00000002.history"}},
			want: []string{"log 15-2 no archive to remove",
				"rm 15-2/00000001.history", "log 15-2 remove history file 00000001.history"},
		},
		{
			// The old cluster's archive id has no backup left: removed whole. The
			// current one is handled normally.
			name: "old archive id without backups", backups: threeFulls[4:], policy: WALPolicy{Retention: 1},
			disk: map[string][]string{"14-1": walFiles(1, 0x30), "15-2": walFiles(0x10, 0x12)},
			want: []string{"rm 14-1/", "log remove archive path 14-1", "log 15-2 no archive to remove"},
		},
		{
			// A backup of the old cluster is still kept (retention 2 covers it): that
			// archive id keeps WAL from its start onward.
			name: "old archive id with a kept backup", policy: WALPolicy{Retention: 2},
			backups: []bk{{label: full(1), db: 1, start: 0x05, stop: 0x06}, {label: full(5), start: 0x02, stop: 0x03}},
			disk:    map[string][]string{"14-1": walFiles(1, 0x09), "15-2": walFiles(1, 0x04)},
			want: []string{
				"rm " + seg(1, 1) + ".." + seg(1, 4) + " (4)",
				"log 14-1 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 4),
				"rm " + seg(1, 1) + ".." + seg(1, 1) + " (1)",
				"log 15-2 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 1),
			},
		},
		{
			// Retention 1 only covers F5 (current cluster); 14-1 still has F1, its newest
			// backup, which then keeps everything from its start.
			name: "old archive id falls back to its newest backup", policy: WALPolicy{Retention: 1},
			backups: []bk{{label: full(1), db: 1, start: 0x05, stop: 0x06}, {label: full(5), start: 0x02, stop: 0x03}},
			disk:    map[string][]string{"14-1": walFiles(1, 0x09), "15-2": walFiles(1, 0x04)},
			want: []string{
				"rm " + seg(1, 1) + ".." + seg(1, 4) + " (4)",
				"log 14-1 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 4),
				"rm " + seg(1, 1) + ".." + seg(1, 1) + " (1)",
				"log 15-2 remove archive, start = " + seg(1, 1) + ", stop = " + seg(1, 1),
			},
		},
		{
			name: "current archive id without backups is kept", policy: WALPolicy{Retention: 1},
			backups: []bk{{label: full(1), db: 1, start: 0x05, stop: 0x06}},
			disk:    map[string][]string{"14-1": walFiles(5, 0x09), "15-2": walFiles(1, 0x04)},
			want:    []string{"log 14-1 no archive to remove"},
		},
		{
			name: "offline backup keeps all WAL", policy: WALPolicy{Retention: 1},
			backups: []bk{{label: full(1), start: 0x02, stop: 0x03}, {label: full(5)}},
			disk:    map[string][]string{"15-2": walFiles(1, 0x09)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bi := newInfo(tc.backups...)
			steps, err := WAL(bi, archiveInfo, tc.policy, tc.disk)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(steps); !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			// Never remove a segment that a remaining backup needs.
			for _, s := range steps {
				for _, b := range bi.Backups {
					if b.ArchiveStart == "" || s.Remove == "" {
						continue
					}
					id := fmt.Sprintf("%s-%d", map[uint32]string{1: "14", 2: "15"}[b.DBID], b.DBID)
					name := s.Remove[strings.LastIndex(s.Remove, "/")+1:]
					if !strings.HasPrefix(s.Remove, id+"/") && s.Remove != id {
						continue
					}
					if s.Dir && (s.Remove == id || (name <= b.ArchiveStop[:16] && name >= b.ArchiveStart[:16])) {
						t.Errorf("removes %s needed by %s", s.Remove, b.Label)
					}
					if !s.Dir && len(name) >= 24 && name[:24] >= b.ArchiveStart && name[:24] <= b.ArchiveStop {
						t.Errorf("removes %s needed by %s", s.Remove, b.Label)
					}
				}
			}
		})
	}
}

func TestWALHistoryMismatch(t *testing.T) {
	t.Parallel()
	bi := newInfo(bk{label: full(1), start: 2, stop: 3})
	ai := &repo.ArchiveInfo{CurrentID: 2, History: []repo.PgHistory{
		{ID: 1, Version: "14", SystemID: 11}, {ID: 2, Version: "15", SystemID: 99},
	}}
	if _, err := WAL(bi, ai, WALPolicy{Retention: 1}, nil); !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v, want ErrFormat", err)
	}
}
