package repo

import (
	"fmt"
	"slices"
	"strconv"
)

// BackupType is the type of a backup: full, diff or incr.
type BackupType string

// Backup types as written in backup.info and manifests.
const (
	BackupFull BackupType = "full"
	BackupDiff BackupType = "diff"
	BackupIncr BackupType = "incr"
)

// Valid reports whether t is one of the three backup types.
func (t BackupType) Valid() bool { return t == BackupFull || t == BackupDiff || t == BackupIncr }

func parseBackupType(s string) (BackupType, error) {
	t := BackupType(s)
	if !t.Valid() {
		return "", fmt.Errorf("invalid backup type '%s'", s)
	}
	return t, nil
}

const sectionBackupCurrent = "backup:current"

// Backup is one backup listed in backup.info [backup:current] (pgBackRest's
// InfoBackupData), keyed by its label.
type Backup struct {
	// Label is the backup label (the key of the entry).
	Label string
	// BackrestFormat is the repository format of the backup (5).
	BackrestFormat uint32
	// BackrestVersion is the pgBackRest version that made the backup.
	BackrestVersion string
	// Annotation holds the --annotation key/values; nil when the key is absent.
	Annotation map[string]string
	// ArchiveStart and ArchiveStop are the WAL segments holding the start and stop LSN;
	// empty (written as JSON null) for offline backups.
	ArchiveStart, ArchiveStop string
	// Error is backup-error: whether page checksum errors were found. nil when absent
	// (backups made before pgBackRest 2.36).
	Error *bool
	// RepoSize is the sum of the repository sizes of all files of the backup, including
	// referenced ones; RepoSizeDelta counts only the files stored by this backup.
	RepoSize, RepoSizeDelta uint64
	// RepoSizeMap and RepoSizeMapDelta are the block-incremental map sizes; both nil
	// unless the backup is block incremental.
	RepoSizeMap, RepoSizeMapDelta *uint64
	// Size is the sum of the original sizes of all files; SizeDelta counts only the files
	// copied by this backup.
	Size, SizeDelta uint64
	// LSNStart and LSNStop are the start/stop LSN ("0/2000028"); empty when absent.
	LSNStart, LSNStop string
	// Prior is the label of the prior backup (diff/incr only); empty when absent.
	Prior string
	// Reference lists the labels this backup depends on, sorted, excluding itself
	// (diff/incr only); nil when absent.
	Reference []string
	// TimestampStart and TimestampStop are Unix seconds.
	TimestampStart, TimestampStop int64
	// Type is the backup type.
	Type BackupType
	// DBID is the backup.info history id of the cluster the backup was taken from.
	DBID uint32
	// OptionArchiveCheck is option-archive-check.
	OptionArchiveCheck bool
	// OptionArchiveCopy is option-archive-copy.
	OptionArchiveCopy bool
	// OptionBackupStandby is option-backup-standby.
	OptionBackupStandby bool
	// OptionChecksumPage is option-checksum-page.
	OptionChecksumPage bool
	// OptionCompress is option-compress: compress-type was not none.
	OptionCompress bool
	// OptionHardlink is option-hardlink.
	OptionHardlink bool
	// OptionOnline is option-online.
	OptionOnline bool
}

// BackupInfo is the content of backup/<stanza>/backup.info.
type BackupInfo struct {
	// BackrestVersion is the backrest-version the file was written with (informational;
	// Save always writes WriterVersion).
	BackrestVersion string
	// CipherPass is the sub-passphrase that encrypts the stanza's manifests and
	// backup.history files ([cipher] cipher-pass); empty for an unencrypted repository.
	CipherPass string
	// CurrentID is [db] db-id: the history id of the current cluster.
	CurrentID uint32
	// History lists the [db:history] entries in file order (oldest first).
	History []PgHistory
	// Backups lists [backup:current] in file order (pgBackRest keeps it sorted by label;
	// Save sorts it).
	Backups []Backup
}

// NewBackupInfo returns the backup.info of a new stanza (stanza-create): history id 1 and
// no backups. The control version is derived from the PostgreSQL version.
func NewBackupInfo(pgVersion string, systemID uint64, catalogVersion uint32, cipherPass string) (*BackupInfo, error) {
	v, err := canonicalPgVersion(pgVersion)
	if err != nil {
		return nil, err
	}
	control, err := PgControlVersion(v)
	if err != nil {
		return nil, err
	}
	return &BackupInfo{
		BackrestVersion: WriterVersion,
		CipherPass:      cipherPass,
		CurrentID:       1,
		History: []PgHistory{{
			ID: 1, Version: v, SystemID: systemID, CatalogVersion: catalogVersion, ControlVersion: control,
		}},
	}, nil
}

// LoadBackupInfo parses a backup.info (decrypted) with pgBackRest 2.45's rules. name is
// used in error messages, which are *ParseError values naming it and a line.
func LoadBackupInfo(name string, data []byte) (*BackupInfo, error) {
	doc, err := ParseInfo(name, data)
	if err != nil {
		return nil, err
	}
	l := &infoLoader{file: name, doc: doc}
	b := &BackupInfo{BackrestVersion: doc.BackrestVersion()}
	if b.CipherPass, err = l.cipherPass(); err != nil {
		return nil, err
	}
	if b.CurrentID, b.History, err = l.loadPgHistory(true); err != nil {
		return nil, err
	}
	if s := doc.Section(sectionBackupCurrent); s != nil {
		b.Backups = make([]Backup, 0, len(s.Entries))
		for _, e := range s.Entries {
			bk, err := parseBackupEntry(e)
			if err != nil {
				return nil, l.errEntry(sectionBackupCurrent, e, err)
			}
			b.Backups = append(b.Backups, bk)
		}
	}
	return b, nil
}

// parseBackupEntry reads one [backup:current] value in the order of
// infoBackupLoadCallback().
func parseBackupEntry(e Entry) (Backup, error) {
	bk := Backup{Label: e.Key}
	r, err := newJSONReader(e.Value)
	if err != nil {
		return bk, err
	}
	var raw string
	var ok bool
	field := func(key string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	req := func(key string) error {
		raw, err = r.require(key)
		return err
	}
	opt := func(key string) (bool, error) {
		raw, ok, err = r.expect(key)
		return ok, err
	}
	u64 := func(key string, dst *uint64) error {
		if err := req(key); err != nil {
			return err
		}
		v, err := jsonUint64(raw)
		*dst = v
		return field(key, err)
	}
	optStr := func(key string, dst *string) error {
		if ok, err := opt(key); err != nil || !ok {
			return err
		}
		v, _, err := jsonStringOrNull(raw)
		*dst = v
		return field(key, err)
	}
	boolean := func(key string, dst *bool) error {
		if err := req(key); err != nil {
			return err
		}
		v, err := jsonBool(raw)
		*dst = v
		return field(key, err)
	}

	if err := req(keyFormat); err != nil {
		return bk, err
	}
	if bk.BackrestFormat, err = jsonUint32(raw); err != nil {
		return bk, field(keyFormat, err)
	}
	if err := req(keyVersion); err != nil {
		return bk, err
	}
	if bk.BackrestVersion, _, err = jsonStringOrNull(raw); err != nil {
		return bk, field(keyVersion, err)
	}
	if ok, err := opt("backup-annotation"); err != nil {
		return bk, err
	} else if ok {
		if bk.Annotation, err = jsonStringMap(raw); err != nil {
			return bk, field("backup-annotation", err)
		}
	}
	if err := optStr("backup-archive-start", &bk.ArchiveStart); err != nil {
		return bk, err
	}
	if err := optStr("backup-archive-stop", &bk.ArchiveStop); err != nil {
		return bk, err
	}
	if ok, err := opt("backup-error"); err != nil {
		return bk, err
	} else if ok {
		v, err := jsonBool(raw)
		if err != nil {
			return bk, field("backup-error", err)
		}
		bk.Error = &v
	}
	if err := u64("backup-info-repo-size", &bk.RepoSize); err != nil {
		return bk, err
	}
	if err := u64("backup-info-repo-size-delta", &bk.RepoSizeDelta); err != nil {
		return bk, err
	}
	if ok, err := opt("backup-info-repo-size-map"); err != nil {
		return bk, err
	} else if ok {
		m, err := jsonUint64(raw)
		if err != nil {
			return bk, field("backup-info-repo-size-map", err)
		}
		var md uint64
		if err := u64("backup-info-repo-size-map-delta", &md); err != nil {
			return bk, err
		}
		bk.RepoSizeMap, bk.RepoSizeMapDelta = &m, &md
	}
	if err := u64("backup-info-size", &bk.Size); err != nil {
		return bk, err
	}
	if err := u64("backup-info-size-delta", &bk.SizeDelta); err != nil {
		return bk, err
	}
	if err := optStr("backup-lsn-start", &bk.LSNStart); err != nil {
		return bk, err
	}
	if err := optStr("backup-lsn-stop", &bk.LSNStop); err != nil {
		return bk, err
	}
	if err := optStr("backup-prior", &bk.Prior); err != nil {
		return bk, err
	}
	if ok, err := opt("backup-reference"); err != nil {
		return bk, err
	} else if ok {
		if bk.Reference, err = jsonStrList(raw); err != nil {
			return bk, field("backup-reference", err)
		}
	}
	var ts uint64
	if err := u64("backup-timestamp-start", &ts); err != nil {
		return bk, err
	}
	if ts > 1<<63-1 {
		return bk, field("backup-timestamp-start", fmt.Errorf("%d is out of range", ts))
	}
	bk.TimestampStart = int64(ts)
	if err := u64("backup-timestamp-stop", &ts); err != nil {
		return bk, err
	}
	if ts > 1<<63-1 {
		return bk, field("backup-timestamp-stop", fmt.Errorf("%d is out of range", ts))
	}
	bk.TimestampStop = int64(ts)
	if err := req("backup-type"); err != nil {
		return bk, err
	}
	s, err := jsonStr(raw)
	if err != nil {
		return bk, field("backup-type", err)
	}
	if bk.Type, err = parseBackupType(s); err != nil {
		return bk, err
	}
	if err := req(keyDBID); err != nil {
		return bk, err
	}
	if bk.DBID, err = jsonUint32(raw); err != nil {
		return bk, field(keyDBID, err)
	}
	for _, o := range []struct {
		key string
		dst *bool
	}{
		{"option-archive-check", &bk.OptionArchiveCheck},
		{"option-archive-copy", &bk.OptionArchiveCopy},
		{"option-backup-standby", &bk.OptionBackupStandby},
		{"option-checksum-page", &bk.OptionChecksumPage},
		{"option-compress", &bk.OptionCompress},
		{"option-hardlink", &bk.OptionHardlink},
		{"option-online", &bk.OptionOnline},
	} {
		if err := boolean(o.key, o.dst); err != nil {
			return bk, err
		}
	}
	return bk, nil
}

// appendNullableString writes s, or null for "" (jsonWriteStr of a NULL string).
func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// renderBackupEntry renders a [backup:current] value in infoBackupSaveCallback()'s order.
func renderBackupEntry(bk *Backup) (string, error) {
	if !bk.Type.Valid() {
		return "", invalidf("backup %s: invalid backup type '%s'", bk.Label, bk.Type)
	}
	if (bk.RepoSizeMap == nil) != (bk.RepoSizeMapDelta == nil) {
		return "", invalidf("backup %s: RepoSizeMap and RepoSizeMapDelta must be set together", bk.Label)
	}
	if bk.TimestampStart < 0 || bk.TimestampStop < 0 {
		return "", invalidf("backup %s: negative timestamp", bk.Label)
	}
	b := make([]byte, 0, 768)
	b = append(b, `{"backrest-format":`...)
	b = strconv.AppendUint(b, uint64(bk.BackrestFormat), 10)
	b = append(b, `,"backrest-version":`...)
	b = appendNullableString(b, bk.BackrestVersion)
	if bk.Annotation != nil {
		a, err := renderStringMap(bk.Annotation)
		if err != nil {
			return "", invalidf("backup %s: annotation: %v", bk.Label, err)
		}
		b = append(b, `,"backup-annotation":`...)
		b = append(b, a...)
	}
	b = append(b, `,"backup-archive-start":`...)
	b = appendNullableString(b, bk.ArchiveStart)
	b = append(b, `,"backup-archive-stop":`...)
	b = appendNullableString(b, bk.ArchiveStop)
	if bk.Error != nil {
		b = append(b, `,"backup-error":`...)
		b = strconv.AppendBool(b, *bk.Error)
	}
	b = append(b, `,"backup-info-repo-size":`...)
	b = strconv.AppendUint(b, bk.RepoSize, 10)
	b = append(b, `,"backup-info-repo-size-delta":`...)
	b = strconv.AppendUint(b, bk.RepoSizeDelta, 10)
	if bk.RepoSizeMap != nil {
		b = append(b, `,"backup-info-repo-size-map":`...)
		b = strconv.AppendUint(b, *bk.RepoSizeMap, 10)
		b = append(b, `,"backup-info-repo-size-map-delta":`...)
		b = strconv.AppendUint(b, *bk.RepoSizeMapDelta, 10)
	}
	b = append(b, `,"backup-info-size":`...)
	b = strconv.AppendUint(b, bk.Size, 10)
	b = append(b, `,"backup-info-size-delta":`...)
	b = strconv.AppendUint(b, bk.SizeDelta, 10)
	if bk.LSNStart != "" {
		b = append(b, `,"backup-lsn-start":`...)
		b = appendJSONString(b, bk.LSNStart)
	}
	if bk.LSNStop != "" {
		b = append(b, `,"backup-lsn-stop":`...)
		b = appendJSONString(b, bk.LSNStop)
	}
	if bk.Prior != "" {
		b = append(b, `,"backup-prior":`...)
		b = appendJSONString(b, bk.Prior)
	}
	if bk.Reference != nil {
		b = append(b, `,"backup-reference":[`...)
		for i, ref := range bk.Reference {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, ref)
		}
		b = append(b, ']')
	}
	b = append(b, `,"backup-timestamp-start":`...)
	b = strconv.AppendInt(b, bk.TimestampStart, 10)
	b = append(b, `,"backup-timestamp-stop":`...)
	b = strconv.AppendInt(b, bk.TimestampStop, 10)
	b = append(b, `,"backup-type":`...)
	b = appendJSONString(b, string(bk.Type))
	b = append(b, `,"db-id":`...)
	b = strconv.AppendUint(b, uint64(bk.DBID), 10)
	for _, o := range []struct {
		key string
		v   bool
	}{
		{"option-archive-check", bk.OptionArchiveCheck},
		{"option-archive-copy", bk.OptionArchiveCopy},
		{"option-backup-standby", bk.OptionBackupStandby},
		{"option-checksum-page", bk.OptionChecksumPage},
		{"option-compress", bk.OptionCompress},
		{"option-hardlink", bk.OptionHardlink},
		{"option-online", bk.OptionOnline},
	} {
		b = append(b, ',', '"')
		b = append(b, o.key...)
		b = append(b, '"', ':')
		b = strconv.AppendBool(b, o.v)
	}
	b = append(b, '}')
	return string(b), nil
}

// Current returns the history entry of the current cluster.
func (b *BackupInfo) Current() (PgHistory, bool) { return findHistory(b.History, b.CurrentID) }

// AddHistory records a new current cluster (stanza-upgrade): a history entry with the
// next id, which becomes CurrentID.
func (b *BackupInfo) AddHistory(pgVersion string, systemID uint64, catalogVersion uint32) error {
	v, err := canonicalPgVersion(pgVersion)
	if err != nil {
		return err
	}
	control, err := PgControlVersion(v)
	if err != nil {
		return err
	}
	id := nextHistoryID(b.History, b.CurrentID)
	b.History = append(b.History, PgHistory{
		ID: id, Version: v, SystemID: systemID, CatalogVersion: catalogVersion, ControlVersion: control,
	})
	b.CurrentID = id
	return nil
}

// Find returns the backup with the given label.
func (b *BackupInfo) Find(label string) (*Backup, bool) {
	for i := range b.Backups {
		if b.Backups[i].Label == label {
			return &b.Backups[i], true
		}
	}
	return nil, false
}

// Add adds (or replaces) a backup, keeping Backups sorted by label.
func (b *BackupInfo) Add(bk Backup) {
	if cur, ok := b.Find(bk.Label); ok {
		*cur = bk
		return
	}
	i, _ := slices.BinarySearchFunc(b.Backups, bk.Label, func(x Backup, label string) int {
		return compareStrings(x.Label, label)
	})
	b.Backups = slices.Insert(b.Backups, i, bk)
}

// Remove removes the backup with the given label, if present.
func (b *BackupInfo) Remove(label string) {
	b.Backups = slices.DeleteFunc(b.Backups, func(x Backup) bool { return x.Label == label })
}

// Dependents returns label followed by every backup that depends on it directly or
// through a chain of priors, oldest first (infoBackupDataDependentList).
func (b *BackupInfo) Dependents(label string) []string {
	out := []string{label}
	for _, bk := range b.Backups {
		if bk.Prior != "" && slices.Contains(out, bk.Prior) {
			out = append(out, bk.Label)
		}
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Save renders the file exactly as pgBackRest 2.45 does, with backups sorted by label and
// backrest-version WriterVersion.
func (b *BackupInfo) Save() ([]byte, error) {
	doc := NewDocument(WriterVersion)
	if len(b.Backups) > 0 {
		sorted := slices.IsSortedFunc(b.Backups, func(x, y Backup) int { return compareStrings(x.Label, y.Label) })
		backups := b.Backups
		if !sorted {
			backups = slices.Clone(b.Backups)
			slices.SortStableFunc(backups, func(x, y Backup) int { return compareStrings(x.Label, y.Label) })
		}
		s := doc.AddSection(sectionBackupCurrent)
		for i := range backups {
			v, err := renderBackupEntry(&backups[i])
			if err != nil {
				return nil, fmt.Errorf("save backup info: %w", err)
			}
			s.Add(backups[i].Label, v)
		}
	}
	if err := savePg(doc, b.CipherPass, b.CurrentID, b.History, true); err != nil {
		return nil, fmt.Errorf("save backup info: %w", err)
	}
	out, err := doc.Render()
	if err != nil {
		return nil, fmt.Errorf("save backup info: %w", err)
	}
	return out, nil
}
