package repo

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// File names inside a stanza's archive and backup directories.
const (
	// ArchiveInfoFile is the archive info file name in archive/<stanza>/.
	ArchiveInfoFile = "archive.info"
	// BackupInfoFile is the backup info file name in backup/<stanza>/.
	BackupInfoFile = "backup.info"
	// ManifestFileName is the manifest file name in backup/<stanza>/<label>/.
	ManifestFileName = "backup.manifest"
	// CopyExt is appended to an info file or manifest name for its copy, which pgBackRest
	// writes with identical bytes and reads when the main file cannot be loaded.
	CopyExt = ".copy"
)

const (
	sectionDB        = "db"
	sectionDBHistory = "db:history"

	keyDBID             = "db-id"
	keyDBSystemID       = "db-system-id"
	keyDBVersion        = "db-version"
	keyDBCatalogVersion = "db-catalog-version"
	keyDBControlVersion = "db-control-version"
)

// PgHistory is one PostgreSQL cluster the stanza has served: an entry of [db:history] in
// archive.info or backup.info. A stanza-upgrade adds an entry with the next ID.
type PgHistory struct {
	// ID is the history id (the key of the [db:history] entry); archive ids end in it.
	ID uint32
	// Version is the PostgreSQL version string as pgBackRest writes it: the major version
	// for 10 and later ("15"), major.minor before ("9.6").
	Version string
	// SystemID is the cluster's system identifier from pg_control. (archive.info stores it
	// under the key "db-id", a historical typo kept by the format.)
	SystemID uint64
	// CatalogVersion is the catalog version from pg_control (backup.info only).
	CatalogVersion uint32
	// ControlVersion is the pg_control version (backup.info only).
	ControlVersion uint32
}

// pgVersionPattern is the check of pgVersionFromStr().
var pgVersionPattern = regexp.MustCompile(`^[0-9]+[.]*[0-9]+$`)

// PgVersionNum converts a PostgreSQL version string ("15", "9.6") to pgBackRest's number
// (150000, 90600).
func PgVersionNum(version string) (uint32, error) {
	if !pgVersionPattern.MatchString(version) {
		return 0, invalidf("PostgreSQL version %q format is invalid", version)
	}
	major, minor, dot := strings.Cut(version, ".")
	ma, err := strconv.ParseUint(major, 10, 32)
	if err != nil {
		return 0, invalidf("PostgreSQL version %q format is invalid", version)
	}
	var mi uint64
	if dot {
		if mi, err = strconv.ParseUint(minor, 10, 32); err != nil {
			return 0, invalidf("PostgreSQL version %q format is invalid", version)
		}
	}
	n := ma*10000 + mi*100
	if n > 1<<32-1 {
		return 0, invalidf("PostgreSQL version %q is out of range", version)
	}
	return uint32(n), nil
}

// PgVersionString converts pgBackRest's version number back to its string form.
func PgVersionString(num uint32) string {
	if num >= 100000 {
		return strconv.FormatUint(uint64(num/10000), 10)
	}
	return fmt.Sprintf("%d.%d", num/10000, num%10000/100)
}

// canonicalPgVersion normalizes a version string the way a load/save cycle in pgBackRest
// does ("9.6" stays "9.6", "15" stays "15").
func canonicalPgVersion(version string) (string, error) {
	n, err := PgVersionNum(version)
	if err != nil {
		return "", err
	}
	return PgVersionString(n), nil
}

// PgControlVersion returns the pg_control version pgBackRest 2.45 records for a
// PostgreSQL version (9.3 to 15), as written to db-control-version.
func PgControlVersion(version string) (uint32, error) {
	n, err := PgVersionNum(version)
	if err != nil {
		return 0, err
	}
	switch {
	case n >= 130000 && n < 160000:
		return 1300, nil
	case n >= 120000 && n < 130000:
		return 1201, nil
	case n >= 110000 && n < 120000:
		return 1100, nil
	case n >= 100000 && n < 110000:
		return 1002, nil
	case n == 90600:
		return 960, nil
	case n == 90400 || n == 90500:
		return 942, nil
	case n == 90300:
		return 937, nil
	}
	return 0, invalidf("PostgreSQL version %s is not supported by pgBackRest 2.45", version)
}

// ArchiveID returns the archive id "<version>-<history id>" that names the directory
// holding the WAL of that cluster under archive/<stanza>/.
func (h PgHistory) ArchiveID() string {
	return h.Version + "-" + strconv.FormatUint(uint64(h.ID), 10)
}

// infoLoader holds what every info loader needs for error messages.
type infoLoader struct {
	file string
	doc  *Document
}

func (l *infoLoader) errEOF(format string, args ...any) error {
	return formatErrorf(l.file, max(l.doc.Lines, 1), format, args...)
}

func (l *infoLoader) errEntry(section string, e Entry, err error) error {
	return formatErrorf(l.file, e.Line, "section [%s] key '%s': %v", section, e.Key, err)
}

// required returns the entry or a "missing" error.
func (l *infoLoader) required(section, key string) (Entry, error) {
	s := l.doc.Section(section)
	if s == nil {
		return Entry{}, l.errEOF("section [%s] is missing", section)
	}
	e, ok := s.Lookup(key)
	if !ok {
		return Entry{}, formatErrorf(l.file, max(s.Line, 1), "section [%s] key '%s' is missing", section, key)
	}
	return e, nil
}

// cipherPass returns [cipher] cipher-pass, or "" if absent.
func (l *infoLoader) cipherPass() (string, error) {
	s := l.doc.Section(sectionCipher)
	e, ok := s.Lookup(keyCipherPass)
	if !ok {
		return "", nil
	}
	v, err := jsonStr(e.Value)
	if err != nil {
		return "", l.errEntry(sectionCipher, e, err)
	}
	return v, nil
}

// uintForce reads a value the way varUIntForce(jsonToVar()) does: a number or a string of
// digits, in the unsigned int range.
func uintForce(raw string) (uint32, error) {
	if jsonKind(raw, 0) == "string" {
		s, err := jsonStr(raw)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, jsonErrorf("unable to convert '%s' to unsigned int", s)
		}
		return uint32(n), nil
	}
	return jsonUint32(raw)
}

// loadPgHistory reads [db] db-id and [db:history] (infoPgNewLoad). backup selects the
// backup.info flavour (catalog and control versions, system id under "db-system-id").
// Like pgBackRest it ignores the other [db] keys: the current cluster is the history entry
// with id db-id.
func (l *infoLoader) loadPgHistory(backup bool) (uint32, []PgHistory, error) {
	dbID, err := l.required(sectionDB, keyDBID)
	if err != nil {
		return 0, nil, err
	}
	current, err := uintForce(dbID.Value)
	if err != nil {
		return 0, nil, l.errEntry(sectionDB, dbID, err)
	}
	if current == 0 {
		return 0, nil, l.errEntry(sectionDB, dbID, fmt.Errorf("current id is missing"))
	}
	hist := l.doc.Section(sectionDBHistory)
	if hist == nil || len(hist.Entries) == 0 {
		return 0, nil, l.errEOF("section [%s] is missing: history is missing", sectionDBHistory)
	}
	history := make([]PgHistory, 0, len(hist.Entries))
	seen := map[uint32]int{}
	found := false
	for _, e := range hist.Entries {
		h, err := parseHistoryEntry(e, backup)
		if err != nil {
			return 0, nil, l.errEntry(sectionDBHistory, e, err)
		}
		if prev, dup := seen[h.ID]; dup {
			return 0, nil, l.errEntry(sectionDBHistory, e, fmt.Errorf("duplicate history id %d (first at line %d)", h.ID, prev))
		}
		seen[h.ID] = e.Line
		if h.ID == current {
			found = true
		}
		history = append(history, h)
	}
	if !found {
		return 0, nil, l.errEntry(sectionDB, dbID, fmt.Errorf("unable to find current id %d in history", current))
	}
	return current, history, nil
}

func parseHistoryEntry(e Entry, backup bool) (PgHistory, error) {
	id, err := strconv.ParseUint(e.Key, 10, 32)
	if err != nil {
		return PgHistory{}, fmt.Errorf("history id is not an unsigned int")
	}
	h := PgHistory{ID: uint32(id)}
	r, err := newJSONReader(e.Value)
	if err != nil {
		return PgHistory{}, err
	}
	read := func(key string) (string, error) {
		v, err := r.require(key)
		if err != nil {
			return "", err
		}
		return v, nil
	}
	if backup {
		raw, err := read(keyDBCatalogVersion)
		if err != nil {
			return PgHistory{}, err
		}
		if h.CatalogVersion, err = jsonUint32(raw); err != nil {
			return PgHistory{}, fmt.Errorf("%s: %w", keyDBCatalogVersion, err)
		}
		if raw, err = read(keyDBControlVersion); err != nil {
			return PgHistory{}, err
		}
		if h.ControlVersion, err = jsonUint32(raw); err != nil {
			return PgHistory{}, fmt.Errorf("%s: %w", keyDBControlVersion, err)
		}
	}
	sysKey := keyDBID // archive.info's historical typo
	if backup {
		sysKey = keyDBSystemID
	}
	raw, err := read(sysKey)
	if err != nil {
		return PgHistory{}, err
	}
	if h.SystemID, err = jsonUint64(raw); err != nil {
		return PgHistory{}, fmt.Errorf("%s: %w", sysKey, err)
	}
	if raw, err = read(keyDBVersion); err != nil {
		return PgHistory{}, err
	}
	v, err := jsonStr(raw)
	if err != nil {
		return PgHistory{}, fmt.Errorf("%s: %w", keyDBVersion, err)
	}
	if h.Version, err = canonicalPgVersion(v); err != nil {
		return PgHistory{}, fmt.Errorf("%s: %w", keyDBVersion, err)
	}
	return h, nil
}

// findHistory returns the history entry with the given id.
func findHistory(history []PgHistory, id uint32) (PgHistory, bool) {
	for _, h := range history {
		if h.ID == id {
			return h, true
		}
	}
	return PgHistory{}, false
}

// savePg appends [cipher], [db] and [db:history] in pgBackRest's order (infoPgSave): [db]
// is derived from the current history entry, history entries are written in slice order.
func savePg(doc *Document, cipherPass string, current uint32, history []PgHistory, backup bool) error {
	cur, ok := findHistory(history, current)
	if !ok {
		return invalidf("current history id %d is not in the history", current)
	}
	if cipherPass != "" {
		doc.AddSection(sectionCipher).Add(keyCipherPass, jsonString(cipherPass))
	}
	version, err := canonicalPgVersion(cur.Version)
	if err != nil {
		return err
	}
	db := doc.AddSection(sectionDB)
	if backup {
		db.Add(keyDBCatalogVersion, strconv.FormatUint(uint64(cur.CatalogVersion), 10))
		db.Add(keyDBControlVersion, strconv.FormatUint(uint64(cur.ControlVersion), 10))
	}
	db.Add(keyDBID, strconv.FormatUint(uint64(cur.ID), 10))
	db.Add(keyDBSystemID, strconv.FormatUint(cur.SystemID, 10))
	db.Add(keyDBVersion, jsonString(version))

	hist := doc.AddSection(sectionDBHistory)
	seen := map[uint32]bool{}
	for _, h := range history {
		if seen[h.ID] {
			return invalidf("duplicate history id %d", h.ID)
		}
		seen[h.ID] = true
		v, err := canonicalPgVersion(h.Version)
		if err != nil {
			return err
		}
		b := []byte{'{'}
		if backup {
			b = append(b, `"db-catalog-version":`...)
			b = strconv.AppendUint(b, uint64(h.CatalogVersion), 10)
			b = append(b, `,"db-control-version":`...)
			b = strconv.AppendUint(b, uint64(h.ControlVersion), 10)
			b = append(b, `,"db-system-id":`...)
		} else {
			b = append(b, `"db-id":`...)
		}
		b = strconv.AppendUint(b, h.SystemID, 10)
		b = append(b, `,"db-version":`...)
		b = appendJSONString(b, v)
		b = append(b, '}')
		hist.Add(strconv.FormatUint(uint64(h.ID), 10), string(b))
	}
	return nil
}

// nextHistoryID is infoPgSet's id rule: one more than the current id (1 for none).
func nextHistoryID(history []PgHistory, current uint32) uint32 {
	if len(history) == 0 {
		return 1
	}
	return current + 1
}

// ArchiveInfo is the content of archive/<stanza>/archive.info.
type ArchiveInfo struct {
	// BackrestVersion is the backrest-version the file was written with (informational;
	// Save always writes WriterVersion).
	BackrestVersion string
	// CipherPass is the sub-passphrase that encrypts the stanza's archived WAL, history and
	// .backup files ([cipher] cipher-pass); empty for an unencrypted repository.
	CipherPass string
	// CurrentID is [db] db-id: the history id of the current cluster.
	CurrentID uint32
	// History lists the [db:history] entries in file order (oldest first, as pgBackRest
	// writes them). CatalogVersion and ControlVersion are not used.
	History []PgHistory
}

// NewArchiveInfo returns the archive.info of a new stanza (stanza-create): history id 1.
func NewArchiveInfo(pgVersion string, systemID uint64, cipherPass string) (*ArchiveInfo, error) {
	v, err := canonicalPgVersion(pgVersion)
	if err != nil {
		return nil, err
	}
	return &ArchiveInfo{
		BackrestVersion: WriterVersion,
		CipherPass:      cipherPass,
		CurrentID:       1,
		History:         []PgHistory{{ID: 1, Version: v, SystemID: systemID}},
	}, nil
}

// LoadArchiveInfo parses an archive.info (decrypted) with pgBackRest 2.45's rules. name is
// used in error messages, which are *ParseError values naming it and a line.
func LoadArchiveInfo(name string, data []byte) (*ArchiveInfo, error) {
	doc, err := ParseInfo(name, data)
	if err != nil {
		return nil, err
	}
	l := &infoLoader{file: name, doc: doc}
	a := &ArchiveInfo{BackrestVersion: doc.BackrestVersion()}
	if a.CipherPass, err = l.cipherPass(); err != nil {
		return nil, err
	}
	if a.CurrentID, a.History, err = l.loadPgHistory(false); err != nil {
		return nil, err
	}
	return a, nil
}

// Current returns the history entry of the current cluster.
func (a *ArchiveInfo) Current() (PgHistory, bool) { return findHistory(a.History, a.CurrentID) }

// ArchiveID returns the archive id of the current cluster, e.g. "15-1".
func (a *ArchiveInfo) ArchiveID() (string, error) {
	h, ok := a.Current()
	if !ok {
		return "", invalidf("current history id %d is not in the history", a.CurrentID)
	}
	return h.ArchiveID(), nil
}

// ArchiveIDMatch returns the archive id for a cluster the way infoArchiveIdHistoryMatch()
// does: the entry matching historyID, version and systemID exactly, else the newest entry
// matching version and systemID.
func (a *ArchiveInfo) ArchiveIDMatch(historyID uint32, pgVersion string, systemID uint64) (string, error) {
	v, err := canonicalPgVersion(pgVersion)
	if err != nil {
		return "", err
	}
	for i := len(a.History) - 1; i >= 0; i-- {
		if h := a.History[i]; h.ID == historyID && h.Version == v && h.SystemID == systemID {
			return h.ArchiveID(), nil
		}
	}
	for i := len(a.History) - 1; i >= 0; i-- {
		if h := a.History[i]; h.Version == v && h.SystemID == systemID {
			return h.ArchiveID(), nil
		}
	}
	return "", invalidf("unable to retrieve the archive id for database version '%s' and system-id '%d'", v, systemID)
}

// AddHistory records a new current cluster (stanza-upgrade): a history entry with the
// next id, which becomes CurrentID.
func (a *ArchiveInfo) AddHistory(pgVersion string, systemID uint64) error {
	v, err := canonicalPgVersion(pgVersion)
	if err != nil {
		return err
	}
	id := nextHistoryID(a.History, a.CurrentID)
	a.History = append(a.History, PgHistory{ID: id, Version: v, SystemID: systemID})
	a.CurrentID = id
	return nil
}

// Save renders the file exactly as pgBackRest 2.45 does (see Document.Render), with
// backrest-version WriterVersion.
func (a *ArchiveInfo) Save() ([]byte, error) {
	doc := NewDocument(WriterVersion)
	if err := savePg(doc, a.CipherPass, a.CurrentID, a.History, false); err != nil {
		return nil, fmt.Errorf("save archive info: %w", err)
	}
	out, err := doc.Render()
	if err != nil {
		return nil, fmt.Errorf("save archive info: %w", err)
	}
	return out, nil
}
