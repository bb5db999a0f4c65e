// Package expire decides what pgBackRest 2.45's expire command removes from a
// repository: which backups retention expires (repo-retention-full, -full-type,
// -diff), which WAL no remaining backup needs (repo-retention-archive,
// -archive-type), which backup directories are not in backup.info and which
// backup.history manifests are too old (repo-retention-history).
//
// The functions are pure: they work on loaded info files and on listings of
// the repository, and return what to remove with the messages pgBackRest logs.
// The caller performs the I/O.
package expire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgsidecar/pgsidecar/repo"
)

// ErrBackupSetInvalid reports an adhoc expiry that pgBackRest refuses
// (BackupSetInvalidError): the only full backup of the current cluster.
var ErrBackupSetInvalid = errors.New("backup set invalid")

// setInvalidError is the refusal of an adhoc expiry, with pgBackRest's message; it
// matches ErrBackupSetInvalid.
type setInvalidError string

func (e setInvalidError) Error() string {
	return "full backup " + string(e) + " cannot be expired until another full backup has been created on this repo"
}

func (e setInvalidError) Is(target error) bool { return target == ErrBackupSetInvalid }

// ErrFormat reports archive.info and backup.info histories that do not match
// (pgBackRest's FormatError).
var ErrFormat = errors.New("format error")

// Policy is the retention of one repository (repoN-retention-*).
type Policy struct {
	// Full is repo-retention-full: a count of full backups, or days when FullTime
	// is set; 0 when not set.
	Full int
	// FullTime is repo-retention-full-type=time.
	FullTime bool
	// Diff is repo-retention-diff; 0 when not set.
	Diff int
	// Archive is repo-retention-archive as configured or derived by the
	// configuration (from Full in count mode or Diff); 0 when not set.
	Archive int
	// ArchiveType is repo-retention-archive-type; empty means full.
	ArchiveType repo.BackupType
}

// Set is one expiry decision: a backup and its dependents, oldest first.
type Set struct {
	// Kind is what expired it: "full", "diff", "time-based" or "adhoc".
	Kind string
	// Labels are the backups removed, oldest first.
	Labels []string
}

// Message returns pgBackRest's log line for the set, without the "repoN: " prefix,
// for example "expire full backup set 20261129-080624F, 20261129-080624F_20261129-080724I".
func (s Set) Message() string {
	set := ""
	if len(s.Labels) > 1 {
		set = "set "
	}
	return fmt.Sprintf("expire %s backup %s%s", s.Kind, set, strings.Join(s.Labels, ", "))
}

// Result is what Backups expired.
type Result struct {
	// Sets are the expired sets in the order pgBackRest expires them.
	Sets []Set
	// ArchiveRetention is the repo-retention-archive that WAL expiry must use: the
	// policy's, or with time-based full retention the number of full backups left
	// when full backups were expired and the archive retention was not set.
	ArchiveRetention int
}

// Labels returns every expired label, in expiry order.
func (r Result) Labels() []string {
	var out []string
	for _, s := range r.Sets {
		out = append(out, s.Labels...)
	}
	return out
}

// isFull, isDiff and isIncr classify a label as pgBackRest's backupRegExp does.
func isFull(label string) bool { return strings.HasSuffix(label, "F") }
func isDiff(label string) bool { return strings.HasSuffix(label, "D") }

// labels returns the labels of bi's backups selected by keep, in label order.
func labels(bi *repo.BackupInfo, keep func(string) bool) []string {
	var out []string
	for _, b := range bi.Backups {
		if keep == nil || keep(b.Label) {
			out = append(out, b.Label)
		}
	}
	slices.Sort(out)
	return out
}

// expireSet removes label and its dependents from bi (expireBackup) and returns
// them oldest first.
func expireSet(bi *repo.BackupInfo, kind, label string) Set {
	dep := bi.Dependents(label)
	for _, l := range dep {
		bi.Remove(l)
	}
	slices.Sort(dep)
	return Set{Kind: kind, Labels: dep}
}

// Backups applies full and differential retention to bi, removing the expired
// backups from it, as pgBackRest 2.45's expire does without --set: count-based
// (or time-based, against now) full retention, then differential retention.
func Backups(bi *repo.BackupInfo, p Policy, now time.Time) Result {
	res := Result{ArchiveRetention: p.Archive}
	if p.FullTime {
		if p.Full > 0 {
			res.Sets = append(res.Sets, expireTime(bi, p, now, &res.ArchiveRetention)...)
		}
	} else if p.Full > 0 {
		fulls := labels(bi, isFull)
		for i := 0; i < len(fulls)-p.Full; i++ {
			res.Sets = append(res.Sets, expireSet(bi, "full", fulls[i]))
		}
	}
	if p.Diff > 0 {
		list := labels(bi, func(l string) bool { return isFull(l) || isDiff(l) })
		for i := 0; i < len(list)-p.Diff; i++ {
			if isFull(list[i]) {
				continue
			}
			if _, ok := bi.Find(list[i]); !ok {
				continue
			}
			res.Sets = append(res.Sets, expireSet(bi, "diff", list[i]))
		}
	}
	return res
}

// expireTime is expireTimeBasedBackup: keep the full backups that stopped after
// now - Full days and the newest one that stopped before, expiring every older
// backup.
func expireTime(bi *repo.BackupInfo, p Policy, now time.Time, archive *int) []Set {
	fulls := labels(bi, isFull)
	if len(fulls) == 0 {
		return nil
	}
	minStop := now.Unix() - int64(p.Full)*86400
	keep := ""
	for i := len(fulls) - 1; i >= 0; i-- {
		b, _ := bi.Find(fulls[i])
		keep = b.Label
		if b.TimestampStop < minStop {
			break
		}
	}
	var sets []Set
	expired := 0
	for len(bi.Backups) > 0 && labels(bi, nil)[0] != keep {
		sets = append(sets, expireSet(bi, "time-based", labels(bi, nil)[0]))
		expired++
	}
	if archiveType(p) == repo.BackupFull && p.Archive == 0 && expired > 0 {
		*archive = len(fulls) - expired
	}
	return sets
}

func archiveType(p Policy) repo.BackupType {
	if p.ArchiveType == "" {
		return repo.BackupFull
	}
	return p.ArchiveType
}

// Adhoc expires one backup and its dependents (expire --set), whatever the
// retention. It refuses the newest full backup when it is the only one or the
// full before it belongs to another cluster (history id). latestRemoved is the
// label of the newest backup when the set removed it ("" otherwise): pgBackRest
// then warns that point-in-time recovery may be affected.
func Adhoc(bi *repo.BackupInfo, label string) (set Set, latestRemoved string, err error) {
	if _, ok := bi.Find(label); !ok {
		return Set{}, "", fmt.Errorf("backup %s does not exist", label)
	}
	fulls := labels(bi, isFull)
	slices.Reverse(fulls)
	if len(fulls) > 0 && fulls[0] == label {
		cur, _ := bi.Find(label)
		if len(fulls) == 1 || mustFind(bi, fulls[1]).DBID != cur.DBID {
			return Set{}, "", setInvalidError(label)
		}
	}
	all := labels(bi, nil)
	latest := all[len(all)-1]
	set = expireSet(bi, "adhoc", label)
	if _, ok := bi.Find(latest); !ok {
		latestRemoved = latest
	}
	return set, latestRemoved, nil
}

func mustFind(bi *repo.BackupInfo, label string) *repo.Backup {
	b, _ := bi.Find(label)
	return b
}

// StaleBackupDirs returns, newest first, the backup directories (labels listed
// under backup/<stanza>/) that are not in bi and must be removed
// (removeExpiredBackup). keep, when not empty, is a directory to leave alone: the
// resumable latest backup that the caller decided to protect.
func StaleBackupDirs(bi *repo.BackupInfo, onDisk []string, keep string) []string {
	dirs := slices.Clone(onDisk)
	slices.Sort(dirs)
	slices.Reverse(dirs)
	var out []string
	for _, d := range slices.Compact(dirs) {
		if !repo.IsBackupLabel(d) || d == keep {
			continue
		}
		if _, ok := bi.Find(d); !ok {
			out = append(out, d)
		}
	}
	return out
}

// HistoryStep is one removal under backup/<stanza>/backup.history/.
type HistoryStep struct {
	// Path is relative to backup.history: a year directory ("2025") or a file
	// ("2026/20260101-000000F.manifest.gz").
	Path string
	// Dir is set when Path is a whole year directory.
	Dir bool
	// Message is pgBackRest's log line, without the "repoN: " prefix.
	Message string
}

// History is removeExpiredHistory: with repo-retention-history=days, it removes
// the backup.history manifests of backups no longer in bi whose label is older
// than the full label of now - days (in loc, as pgBackRest formats labels in local
// time), and whole year directories older than that label's year. files are
// the paths relative to backup.history ("2026/<label>.manifest.gz").
func History(bi *repo.BackupInfo, days int, now time.Time, loc *time.Location, files []string) []HistoryStep {
	minLabel := now.Add(-time.Duration(days)*24*time.Hour).In(loc).Format("20060102-150405") + "F"
	minYear := minLabel[:4]
	years := map[string][]string{}
	for _, f := range files {
		year, name, ok := strings.Cut(f, "/")
		if !ok || !repo.IsHistoryYearDir(year) {
			continue
		}
		years[year] = append(years[year], name)
	}
	ys := make([]string, 0, len(years))
	for y := range years {
		ys = append(ys, y)
	}
	slices.Sort(ys)
	var out []HistoryStep
	for _, y := range ys {
		switch {
		case y < minYear:
			out = append(out, HistoryStep{Path: y, Dir: true, Message: "remove expired backup history path " + y})
		case y == minYear:
			names := years[y]
			slices.Sort(names)
			slices.Reverse(names)
			for _, n := range names {
				label, ok := repo.ParseHistoryManifestName(n)
				if !ok {
					continue
				}
				if _, cur := bi.Find(label); !cur && label < minLabel {
					out = append(out, HistoryStep{Path: y + "/" + n, Message: "remove expired backup history manifest " + n})
				}
			}
		default:
			return out
		}
	}
	return out
}
