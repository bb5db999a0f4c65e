package repo

import (
	"strconv"
	"strings"
	"time"
)

// CompressType is a pgBackRest compression type as written in option-compress-type.
type CompressType string

// Compression types. xz is only recognised by file name (pgBackRest 2.45 cannot write it).
const (
	CompressNone CompressType = "none"
	CompressBz2  CompressType = "bz2"
	CompressGz   CompressType = "gz"
	CompressLz4  CompressType = "lz4"
	CompressZst  CompressType = "zst"
	CompressXz   CompressType = "xz"
)

// compressExts lists the extensions in the order of pgBackRest's compressHelperLocal.
var compressExts = []struct {
	typ CompressType
	ext string
}{
	{CompressBz2, ".bz2"},
	{CompressGz, ".gz"},
	{CompressLz4, ".lz4"},
	{CompressZst, ".zst"},
	{CompressXz, ".xz"},
}

// ParseCompressType validates a compression type name.
func ParseCompressType(s string) (CompressType, error) {
	if CompressType(s) == CompressNone {
		return CompressNone, nil
	}
	for _, c := range compressExts {
		if string(c.typ) == s {
			return c.typ, nil
		}
	}
	return "", invalidf("invalid compression type '%s'", s)
}

// Ext returns the file extension of the compression type ("" for none, ".gz", ...).
func (c CompressType) Ext() (string, error) {
	if c == CompressNone {
		return "", nil
	}
	for _, e := range compressExts {
		if e.typ == c {
			return e.ext, nil
		}
	}
	return "", invalidf("invalid compression type '%s'", c)
}

// CompressTypeFromName returns the compression type implied by a file name's extension
// (compressTypeFromName), CompressNone when it has none of the known extensions.
func CompressTypeFromName(name string) CompressType {
	for _, e := range compressExts {
		if strings.HasSuffix(name, e.ext) {
			return e.typ
		}
	}
	return CompressNone
}

// WAL naming. pgBackRest matches WAL names with POSIX regular expressions whose class
// [0-F] is the byte range '0'..'F' (it includes ':' to '@') and whose [0-f] is '0'..'f';
// these functions use the same ranges so that they classify every name as pgBackRest does.
const (
	// WALSegmentNameSize is the length of a WAL segment name.
	WALSegmentNameSize = 24
	// PartialExt is the suffix of a partial WAL segment.
	PartialExt = ".partial"
	// HistoryExt is the suffix of a timeline history file.
	HistoryExt = ".history"
	// BackupHistoryExt is the suffix of a backup history file pushed by PostgreSQL.
	BackupHistoryExt = ".backup"
	// ArchiveDir and BackupDir are the top-level repository directories.
	ArchiveDir = "archive"
	BackupDir  = "backup"
	// HistoryDir is the directory of backup/<stanza> holding manifest copies per year.
	HistoryDir = "backup.history"
	// HistoryManifestExt is the suffix of a manifest copy in HistoryDir.
	HistoryManifestExt = ".manifest.gz"
	// LatestLink is the posix symlink to the newest backup in backup/<stanza>.
	LatestLink = "latest"
)

func isUpperHexClass(c byte) bool { return c >= '0' && c <= 'F' } // [0-F]
func isLowerHexClass(c byte) bool { return c >= '0' && c <= 'f' } // [0-f]

func allUpperHexClass(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isUpperHexClass(s[i]) {
			return false
		}
	}
	return true
}

func allLowerHexClass(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexClass(s[i]) {
			return false
		}
	}
	return true
}

// hasWALPrefix reports whether name starts with 24 [0-F] characters (^[0-F]{24}).
func hasWALPrefix(name string) bool {
	return len(name) >= WALSegmentNameSize && allUpperHexClass(name[:WALSegmentNameSize])
}

// IsWALSegment reports whether name is a WAL segment name (^[0-F]{24}$).
func IsWALSegment(name string) bool {
	return len(name) == WALSegmentNameSize && hasWALPrefix(name)
}

// IsWALSegmentOrPartial reports whether name is a segment or a partial segment
// (^[0-F]{24}(\.partial){0,1}$): the files archive-push compresses and names with their
// SHA-1.
func IsWALSegmentOrPartial(name string) bool {
	return IsWALSegment(name) || IsPartialWAL(name)
}

// IsPartialWAL reports whether name is a partial segment (^[0-F]{24}\.partial$).
func IsPartialWAL(name string) bool {
	return len(name) == WALSegmentNameSize+len(PartialExt) && hasWALPrefix(name) &&
		name[WALSegmentNameSize:] == PartialExt
}

// IsTimelineHistory reports whether name is a timeline history file (^[0-F]{8}.history$,
// the '.' matching any character as in pgBackRest's expression).
func IsTimelineHistory(name string) bool {
	return len(name) == 16 && allUpperHexClass(name[:8]) && name[9:] == "history"
}

// IsBackupHistoryFile reports whether name is a backup history file as PostgreSQL names
// it: <segment>.<8 hex digits of the offset>.backup.
func IsBackupHistoryFile(name string) bool {
	return len(name) == WALSegmentNameSize+1+8+len(BackupHistoryExt) && hasWALPrefix(name) &&
		name[WALSegmentNameSize] == '.' && allUpperHexClass(name[WALSegmentNameSize+1:WALSegmentNameSize+9]) &&
		strings.HasSuffix(name, BackupHistoryExt)
}

// IsWALSegmentDir reports whether name is a WAL directory of an archive id (^[0-F]{16}$).
func IsWALSegmentDir(name string) bool { return len(name) == 16 && allUpperHexClass(name) }

// ParseWALSegment splits a segment name into timeline, log and segment numbers. Unlike
// IsWALSegment it requires real uppercase hexadecimal digits.
func ParseWALSegment(name string) (timeline, log, seg uint32, err error) {
	if len(name) != WALSegmentNameSize {
		return 0, 0, 0, invalidf("'%s' is not a WAL segment name", name)
	}
	var parts [3]uint32
	for i := range parts {
		field := name[8*i : 8*i+8]
		if strings.ToUpper(field) != field {
			return 0, 0, 0, invalidf("'%s' is not a WAL segment name", name)
		}
		v, perr := strconv.ParseUint(field, 16, 32)
		if perr != nil {
			return 0, 0, 0, invalidf("'%s' is not a WAL segment name", name)
		}
		parts[i] = uint32(v)
	}
	return parts[0], parts[1], parts[2], nil
}

// ArchiveID returns "<pgVersion>-<historyID>", the directory under archive/<stanza>/ that
// holds the WAL of one cluster.
func ArchiveID(pgVersion string, historyID uint32) string {
	return pgVersion + "-" + strconv.FormatUint(uint64(historyID), 10)
}

// ParseArchiveID splits an archive id into version and history id.
func ParseArchiveID(id string) (pgVersion string, historyID uint32, err error) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return "", 0, invalidf("'%s' is not an archive id", id)
	}
	version, err := canonicalPgVersion(id[:i])
	if err != nil || version != id[:i] {
		return "", 0, invalidf("'%s' is not an archive id", id)
	}
	n, err := strconv.ParseUint(id[i+1:], 10, 32)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id[i+1:] {
		return "", 0, invalidf("'%s' is not an archive id", id)
	}
	return version, uint32(n), nil
}

// ArchivePath maps a file of an archive id to its path relative to archive/<stanza>/, as
// pgBackRest's storage path expression does: a name starting with 24 [0-F] characters
// (segments, partial segments, .backup files, and the repository names of segments) goes
// into the sub-directory named by its first 16 characters; anything else (timeline history
// files) stays directly in the archive id directory.
//
//	ArchivePath("15-1", "000000010000000000000005-<sha1>.gz") = "15-1/0000000100000000/000000010000000000000005-<sha1>.gz"
//	ArchivePath("15-1", "00000002.history")                   = "15-1/00000002.history"
func ArchivePath(archiveID, file string) string {
	if !strings.Contains(archiveID, "/") && !strings.Contains(file, "/") && hasWALPrefix(file) {
		return archiveID + "/" + file[:16] + "/" + file
	}
	return archiveID + "/" + file
}

// WALRepoFile is the parsed repository name of an archived segment:
// <segment>[.partial]-<sha1>[<compress ext>].
type WALRepoFile struct {
	// Segment is the 24-character segment name.
	Segment string
	// Partial reports a ".partial" segment.
	Partial bool
	// SHA1 is the SHA-1 of the uncompressed segment (40 characters).
	SHA1 string
	// Compress is the compression implied by the extension.
	Compress CompressType
}

// WALName returns the name PostgreSQL uses for the file: the segment, with ".partial" if
// partial.
func (w WALRepoFile) WALName() string {
	if w.Partial {
		return w.Segment + PartialExt
	}
	return w.Segment
}

// Name returns the repository file name.
func (w WALRepoFile) Name() (string, error) {
	return WALRepoFileName(w.WALName(), w.SHA1, w.Compress)
}

// WALRepoFileName returns the repository name of a segment or partial segment:
// "<walName>-<sha1><ext>", sha1 being the lowercase hex SHA-1 of the uncompressed content.
func WALRepoFileName(walName, sha1Hex string, compress CompressType) (string, error) {
	if !IsWALSegmentOrPartial(walName) {
		return "", invalidf("'%s' is not a WAL segment", walName)
	}
	if len(sha1Hex) != 40 || strings.Trim(sha1Hex, "0123456789abcdef") != "" {
		return "", invalidf("'%s' is not a lowercase SHA-1", sha1Hex)
	}
	ext, err := compress.Ext()
	if err != nil {
		return "", err
	}
	return walName + "-" + sha1Hex + ext, nil
}

// ParseWALRepoFileName parses a repository segment file name
// (^[0-F]{24}(\.partial){0,1}-[0-f]{40}(\.gz|\.lz4|\.zst|\.xz|\.bz2){0,1}$).
func ParseWALRepoFileName(name string) (WALRepoFile, error) {
	bad := func() (WALRepoFile, error) {
		return WALRepoFile{}, invalidf("'%s' is not a repository WAL segment file name", name)
	}
	if !hasWALPrefix(name) {
		return bad()
	}
	w := WALRepoFile{Segment: name[:WALSegmentNameSize], Compress: CompressNone}
	rest := name[WALSegmentNameSize:]
	if strings.HasPrefix(rest, PartialExt) {
		w.Partial = true
		rest = rest[len(PartialExt):]
	}
	if len(rest) < 41 || rest[0] != '-' || !allLowerHexClass(rest[1:41]) {
		return bad()
	}
	w.SHA1 = rest[1:41]
	if ext := rest[41:]; ext != "" {
		found := false
		for _, e := range compressExts {
			if e.ext == ext {
				w.Compress, found = e.typ, true
			}
		}
		if !found {
			return bad()
		}
	}
	return w, nil
}

// StanzaArchivePath returns "archive/<stanza>", relative to the repository path.
func StanzaArchivePath(stanza string) string { return ArchiveDir + "/" + stanza }

// StanzaBackupPath returns "backup/<stanza>", relative to the repository path.
func StanzaBackupPath(stanza string) string { return BackupDir + "/" + stanza }

// Backup labels.
const labelTimeLayout = "20060102-150405"

// BackupLabel is a parsed backup label: YYYYMMDD-HHMMSSF for a full backup,
// <full timestamp>F_YYYYMMDD-HHMMSS{D|I} for a differential or incremental one.
type BackupLabel struct {
	// Label is the label text.
	Label string
	// Type is derived from the final letter.
	Type BackupType
	// FullTimestamp is the 15-character timestamp of the full backup of the set.
	FullTimestamp string
	// Timestamp is the 15-character timestamp of this backup.
	Timestamp string
}

// FullLabel returns the label of the full backup of the set.
func (l BackupLabel) FullLabel() string { return l.FullTimestamp + "F" }

// Time parses the label's own timestamp in loc (pgBackRest formats it in the local time
// zone of the host that ran the backup).
func (l BackupLabel) Time(loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation(labelTimeLayout, l.Timestamp, loc)
	if err != nil {
		return time.Time{}, invalidf("backup label '%s' has an invalid time", l.Label)
	}
	return t, nil
}

// isLabelTimestamp checks [0-9]{8}\-[0-9]{6}.
func isLabelTimestamp(s string) bool {
	if len(s) != 15 || s[8] != '-' {
		return false
	}
	for i := 0; i < 15; i++ {
		if i != 8 && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// ParseBackupLabel parses a label matching
// ^[0-9]{8}\-[0-9]{6}F(\_[0-9]{8}\-[0-9]{6}(D|I)){0,1}$ (dates are not validated, as in
// pgBackRest).
func ParseBackupLabel(s string) (BackupLabel, error) {
	bad := func() (BackupLabel, error) { return BackupLabel{}, invalidf("'%s' is not a backup label", s) }
	if len(s) < 16 || !isLabelTimestamp(s[:15]) || s[15] != 'F' {
		return bad()
	}
	l := BackupLabel{Label: s, Type: BackupFull, FullTimestamp: s[:15], Timestamp: s[:15]}
	if len(s) == 16 {
		return l, nil
	}
	if len(s) != 33 || s[16] != '_' || !isLabelTimestamp(s[17:32]) {
		return bad()
	}
	switch s[32] {
	case 'D':
		l.Type = BackupDiff
	case 'I':
		l.Type = BackupIncr
	default:
		return bad()
	}
	l.Timestamp = s[17:32]
	return l, nil
}

// IsBackupLabel reports whether s is a backup label.
func IsBackupLabel(s string) bool {
	_, err := ParseBackupLabel(s)
	return err == nil
}

// FormatBackupLabel formats the label of a backup started at t, formatted in t's location
// (pass a time in time.Local, as pgBackRest uses localtime_r). For diff and incr backups
// prior is the label of the prior backup, whose full part is kept.
func FormatBackupLabel(typ BackupType, prior string, t time.Time) (string, error) {
	if t.Unix() <= 0 {
		return "", invalidf("backup time %v is not after the epoch", t)
	}
	stamp := t.Format(labelTimeLayout)
	switch typ {
	case BackupFull:
		if prior != "" {
			return "", invalidf("a full backup has no prior backup")
		}
		return stamp + "F", nil
	case BackupDiff, BackupIncr:
		p, err := ParseBackupLabel(prior)
		if err != nil {
			return "", err
		}
		suffix := "I"
		if typ == BackupDiff {
			suffix = "D"
		}
		return p.FullTimestamp + "F_" + stamp + suffix, nil
	}
	return "", invalidf("invalid backup type '%s'", typ)
}

// LatestBackupLabel returns the greatest (byte order) valid label among names, or "" if
// none is one. Pass the backup directory names of backup/<stanza>/ and the labels of
// ParseHistoryManifestName for the newest backup.history year directory, as pgBackRest
// considers both.
func LatestBackupLabel(names ...string) string {
	latest := ""
	for _, n := range names {
		if IsBackupLabel(n) && n > latest {
			latest = n
		}
	}
	return latest
}

// NextBackupLabel returns the label for a backup started at start that sorts strictly
// after latest (see LatestBackupLabel; "" for none), as backupLabelCreate() does: if the
// label formatted from start is not later, one second is added; if that is still not
// later, it fails with ErrClock (a time zone change or clock skew).
func NextBackupLabel(typ BackupType, prior string, start time.Time, latest string) (string, error) {
	label, err := FormatBackupLabel(typ, prior, start)
	if err != nil {
		return "", err
	}
	if latest == "" || label > latest {
		return label, nil
	}
	if label, err = FormatBackupLabel(typ, prior, start.Add(time.Second)); err != nil {
		return "", err
	}
	if label > latest {
		return label, nil
	}
	return "", &labelClockError{label: label, latest: latest}
}

// labelClockError is the ErrClock error of NextBackupLabel.
type labelClockError struct{ label, latest string }

// Error implements error.
func (e *labelClockError) Error() string {
	return "new backup label '" + e.label + "' is not later than latest backup label '" + e.latest +
		"' (has the timezone changed? is there clock skew?)"
}

// Unwrap returns ErrClock.
func (e *labelClockError) Unwrap() error { return ErrClock }

// BackupManifestPath returns "<label>/backup.manifest" relative to backup/<stanza>/.
func BackupManifestPath(label string) string { return label + "/" + ManifestFileName }

// HistoryManifestPath returns "backup.history/<YYYY>/<label>.manifest.gz" relative to
// backup/<stanza>/. YYYY is the first four characters of the label, i.e. the year of the
// full backup of the set, as pgBackRest takes it.
func HistoryManifestPath(label string) (string, error) {
	if !IsBackupLabel(label) {
		return "", invalidf("'%s' is not a backup label", label)
	}
	return HistoryDir + "/" + label[:4] + "/" + label + HistoryManifestExt, nil
}

// IsHistoryYearDir reports whether name is a backup.history year directory (^2[0-9]{3}$).
func IsHistoryYearDir(name string) bool {
	return len(name) == 4 && name[0] == '2' && isDigit(name[1]) && isDigit(name[2]) && isDigit(name[3])
}

// ParseHistoryManifestName returns the label of a backup.history file name
// "<label>.manifest.gz".
func ParseHistoryManifestName(name string) (string, bool) {
	label, ok := strings.CutSuffix(name, HistoryManifestExt)
	if !ok || !IsBackupLabel(label) {
		return "", false
	}
	return label, true
}
