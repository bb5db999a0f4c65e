package expire

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pgsidecar/pgsidecar/repo"
)

// WALStep is one step of WAL expiry: a removal, a log line, or both.
type WALStep struct {
	// Remove is the path to remove relative to archive/<stanza>/: an archive id
	// directory ("15-1"), a WAL directory ("15-1/0000000100000000") or a file
	// ("15-1/0000000100000000/000000010000000000000001-<sha1>.gz"); empty for a
	// step that only logs.
	Remove string
	// Dir is set when Remove is a directory, removed with everything in it.
	Dir bool
	// Message is pgBackRest's log line without the "repoN: " prefix; empty when
	// the step logs nothing.
	Message string
}

// archiveRange is WAL that a retained backup needs: from start through stop, or
// from start onward when stop is empty.
type archiveRange struct{ start, stop string }

// WALPolicy is the archive retention WAL applies.
type WALPolicy struct {
	// Retention is Result.ArchiveRetention; 0 means WAL is not expired.
	Retention int
	// Type is repo-retention-archive-type; empty means full.
	Type repo.BackupType
	// TimeBased is repo-retention-full-type=time (it only changes the message
	// logged when Retention is 0).
	TimeBased bool
	// Option is the name of the archive retention option ("repo1-retention-archive"),
	// for that message.
	Option string
}

// WAL is removeExpiredArchive: it decides which WAL of each archive id no
// remaining backup of bi needs under policy p. onDisk maps each
// archive id directory present under archive/<stanza>/ to the paths of its files
// relative to that directory ("0000000100000000/<file>", "00000002.history").
//
// Backups keep their own archive-start..archive-stop range when older than the
// oldest backup the archive retention keeps, which keeps everything from its
// archive-start onward. Archive ids of older clusters with no backup left are
// removed whole; the current one never is. Timeline history files older than the
// kept backup's timeline are removed.
func WAL(bi *repo.BackupInfo, ai *repo.ArchiveInfo, p WALPolicy, onDisk map[string][]string) ([]WALStep, error) {
	typ, retention := p.Type, p.Retention
	if typ == "" {
		typ = repo.BackupFull
	}
	if retention <= 0 {
		if p.TimeBased {
			return []WALStep{{Message: "time-based archive retention not met - archive logs will not be expired"}}, nil
		}
		return []WALStep{{Message: fmt.Sprintf("option '%s' is not set - archive logs will not be expired", p.Option)}}, nil
	}
	var global []string // newest first
	switch typ {
	case repo.BackupFull:
		global = labels(bi, isFull)
	case repo.BackupDiff:
		global = labels(bi, func(l string) bool { return isFull(l) || isDiff(l) })
	default:
		global = labels(bi, nil)
	}
	slices.Reverse(global)
	if len(global) == 0 || retention > len(global) {
		return nil, nil
	}
	keepGlobal := global[:retention]

	// archive.info and backup.info must describe the same clusters, compared from the newest.
	for i := 1; i <= len(ai.History); i++ {
		a := ai.History[len(ai.History)-i]
		if i > len(bi.History) {
			return nil, fmt.Errorf("%w: archive expiration cannot continue - archive and backup history lists do not match", ErrFormat)
		}
		b := bi.History[len(bi.History)-i]
		if a.ID != b.ID || a.SystemID != b.SystemID || a.Version != b.Version {
			return nil, fmt.Errorf("%w: archive expiration cannot continue - archive and backup history lists do not match", ErrFormat)
		}
	}

	var steps []WALStep
	for _, h := range ai.History { // oldest first
		archiveID := h.ArchiveID()
		files, ok := onDisk[archiveID]
		if !ok {
			continue
		}
		pgID := h.ID
		var local []string // oldest first
		for i := len(global) - 1; i >= 0; i-- {
			if b, ok := bi.Find(global[i]); ok && b.DBID == pgID {
				local = append(local, b.Label)
			}
		}
		if len(local) == 0 {
			if ai.CurrentID != pgID {
				steps = append(steps, WALStep{Remove: archiveID, Dir: true, Message: "remove archive path " + archiveID})
			}
			continue
		}
		var localKeep []string
		for i := len(keepGlobal) - 1; i >= 0; i-- {
			if slices.Contains(local, keepGlobal[i]) {
				localKeep = append(localKeep, keepGlobal[i])
			}
		}
		if len(localKeep) == 0 {
			localKeep = []string{local[len(local)-1]}
		}
		keep, _ := bi.Find(localKeep[0])
		if keep.ArchiveStart == "" {
			continue
		}
		steps = append(steps, walSteps(bi, archiveID, pgID, keep, files)...)
	}
	return steps, nil
}

// walSteps removes the WAL of one archive id outside the ranges the backups up to
// keep (the oldest backup kept by archive retention) need.
func walSteps(bi *repo.BackupInfo, archiveID string, pgID uint32, keep *repo.Backup, files []string) []WALStep {
	var ranges []archiveRange
	expireMax := ""
	for _, b := range bi.Backups {
		if b.DBID != pgID || b.Label > keep.Label || b.ArchiveStart == "" {
			continue
		}
		r := archiveRange{start: b.ArchiveStart}
		if b.Label != keep.Label {
			r.stop = b.ArchiveStop
		} else {
			expireMax = b.ArchiveStart
		}
		ranges = append(ranges, r)
	}
	inRange := func(name string, n int) bool {
		for _, r := range ranges {
			if name >= head(r.start, n) && (r.stop == "" || name <= head(r.stop, n)) {
				return true
			}
		}
		return false
	}

	dirs := map[string][]string{}
	var history []string
	for _, f := range files {
		dir, name, ok := strings.Cut(f, "/")
		switch {
		case ok && repo.IsWALSegmentDir(dir) && !strings.Contains(name, "/"):
			dirs[dir] = append(dirs[dir], name)
		case !ok && repo.IsTimelineHistory(f):
			history = append(history, f)
		}
	}
	dirNames := make([]string, 0, len(dirs))
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	slices.Sort(dirNames)

	var steps []WALStep
	total := 0
	start, stop := "", ""
	flush := func() {
		if start != "" {
			steps = append(steps, WALStep{Message: fmt.Sprintf("%s remove archive, start = %s, stop = %s", archiveID, start, stop)})
			start = ""
		}
	}
	for _, d := range dirNames {
		if !inRange(d, 16) {
			steps = append(steps, WALStep{Remove: archiveID + "/" + d, Dir: true})
			total++
			start, stop = d, d
			continue
		}
		if d > head(expireMax, 16) {
			continue
		}
		names := dirs[d]
		slices.Sort(names)
		for _, n := range names {
			if len(n) < 24 || !isUpperHex24(n[:24]) {
				continue
			}
			if !inRange(n[:24], 24) {
				steps = append(steps, WALStep{Remove: archiveID + "/" + d + "/" + n})
				total++
				stop = n[:24]
				if start == "" {
					start = n[:24]
				}
			} else {
				flush()
			}
		}
	}
	if total == 0 {
		steps = append(steps, WALStep{Message: archiveID + " no archive to remove"})
	} else {
		flush()
	}

	timeline := head(keep.ArchiveStart, 8)
	slices.Sort(history)
	for _, h := range history {
		if h[:8] < timeline {
			steps = append(steps, WALStep{Remove: archiveID + "/" + h, Message: archiveID + " remove history file " + h})
		}
	}
	return steps
}

// head returns the first n bytes of s, or s when it is shorter.
func head(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

func isUpperHex24(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > 'F' {
			return false
		}
	}
	return true
}

// ArchiveIDDir reports whether name is an archive id directory as pgBackRest
// lists them (^[0-9]+(\.[0-9]+)*-[0-9]+$).
func ArchiveIDDir(name string) bool {
	ver, id, ok := strings.Cut(name, "-")
	if !ok || ver == "" || id == "" {
		return false
	}
	if _, err := strconv.ParseUint(id, 10, 32); err != nil || strings.ContainsAny(id, "+-") {
		return false
	}
	for _, part := range strings.Split(ver, ".") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return true
}
