package repo

import (
	"crypto/sha1"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Manifest section and key names (src/info/manifest.c).
const (
	sectionBackup            = "backup"
	sectionBackupDB          = "backup:db"
	sectionBackupOption      = "backup:option"
	sectionBackupTarget      = "backup:target"
	sectionManifestDB        = "db"
	sectionMetadata          = "metadata"
	sectionTargetFile        = "target:file"
	sectionTargetFileDefault = "target:file:default"
	sectionTargetLink        = "target:link"
	sectionTargetLinkDefault = "target:link:default"
	sectionTargetPath        = "target:path"
	sectionTargetPathDefault = "target:path:default"

	keyGroup = "group"
	keyMode  = "mode"
	keyUser  = "user"
)

// TargetPGData is the name of the data directory target and path; every manifest has it.
const TargetPGData = "pg_data"

// TargetPGTblspc is the prefix of tablespace targets ("pg_tblspc/<oid>").
const TargetPGTblspc = "pg_tblspc"

// BlockIncrSizeFactor is the unit of the manifest "bi" key: block sizes are stored divided
// by it.
const BlockIncrSizeFactor = 8192

// BlockIncrChecksumSizeDefault is the block checksum size implied when "bic" is absent.
const BlockIncrChecksumSizeDefault = 6

// ZeroChecksum is the SHA-1 of empty content, the implied checksum of zero-length files.
const ZeroChecksum = "da39a3ee5e6b4b0d3255bfef95601890afd80709"

// TargetType is the type of a backup target: a path (pg_data) or a link (tablespaces and
// other symlinks in the data directory).
type TargetType string

// Target types.
const (
	TargetPath TargetType = "path"
	TargetLink TargetType = "link"
)

// ManifestDB is the [backup:db] section: the cluster the backup was taken from.
type ManifestDB struct {
	// ID is the backup.info history id.
	ID uint32
	// SystemID is the cluster system identifier.
	SystemID uint64
	// Version is the PostgreSQL version string ("15").
	Version string
	// CatalogVersion is the catalog version.
	CatalogVersion uint32
	// ControlVersion is db-control-version. pgBackRest never reads it and writes the value
	// derived from Version; Save writes this value, or the derived one when it is 0.
	ControlVersion uint32
}

// ManifestOptions is the [backup:option] section. Pointer fields are optional keys that
// are omitted when nil.
type ManifestOptions struct {
	// ArchiveCheck is option-archive-check: WAL was checked to be in the archive.
	ArchiveCheck bool
	// ArchiveCopy is option-archive-copy: WAL was copied into the backup.
	ArchiveCopy bool
	// BackupStandby is option-backup-standby.
	BackupStandby *bool
	// BufferSize is option-buffer-size.
	BufferSize *uint32
	// ChecksumPage is option-checksum-page: page checksums were verified.
	ChecksumPage *bool
	// CompressType selects the extension and decompressor of every file of the backup set.
	// option-compress is written as CompressType != none; a manifest with only the legacy
	// option-compress loads as gz (true) or none (false).
	CompressType CompressType
	// CompressLevel is option-compress-level.
	CompressLevel *uint32
	// CompressLevelNetwork is option-compress-level-network.
	CompressLevelNetwork *uint32
	// Delta is option-delta.
	Delta *bool
	// Hardlink is option-hardlink.
	Hardlink bool
	// Online is option-online: the backup was taken from a running cluster.
	Online bool
	// ProcessMax is option-process-max.
	ProcessMax *uint32
}

// ManifestTarget is one [backup:target] entry.
type ManifestTarget struct {
	// Name is "pg_data", "pg_tblspc/<oid>" or "pg_data/<link path>".
	Name string
	// Path is the absolute path (or link destination directory).
	Path string
	// File is the file name for a link to a file; empty otherwise.
	File string
	// TablespaceID is the tablespace oid (written as a JSON string); 0 when absent.
	TablespaceID uint32
	// TablespaceName is the tablespace name; empty when absent.
	TablespaceName string
	// Type is path or link.
	Type TargetType
}

// ManifestDatabase is one [db] entry: a database of the cluster.
type ManifestDatabase struct {
	// Name is the database name.
	Name string
	// ID is the database oid.
	ID uint32
	// LastSystemID is the last system oid (template0's oid from PostgreSQL 15 on).
	LastSystemID uint32
}

// ManifestFile is one [target:file] entry with defaults applied.
type ManifestFile struct {
	// Name is the manifest name, starting with "pg_data/" or "pg_tblspc/".
	Name string
	// Size is the original size.
	Size uint64
	// RepoSize is the size as stored in the repository (Size when the key is absent).
	RepoSize uint64
	// Timestamp is the file's modification time in Unix seconds.
	Timestamp int64
	// Checksum is the SHA-1 (lowercase hex) of the original content: ZeroChecksum for a
	// zero-length file, empty when absent (a partial manifest saved during a backup).
	Checksum string
	// RepoChecksum is "rck": the SHA-1 of the stored bytes; empty when absent.
	RepoChecksum string
	// ChecksumPage reports that page checksums were verified ("checksum-page" present).
	ChecksumPage bool
	// ChecksumPageError reports that page checksum errors were found ("checksum-page":false).
	ChecksumPageError bool
	// ChecksumPageErrorList is the JSON text of "checksum-page-error" (page numbers and
	// [first,last] ranges), as pgBackRest renders it; empty when absent.
	ChecksumPageErrorList string
	// Reference is the label of the backup that holds the file's data; empty when the data
	// is in this backup.
	Reference string
	// BundleID is the bundle holding the file ("bni"); 0 when not bundled.
	BundleID uint64
	// BundleOffset is the offset of the file in the bundle ("bno").
	BundleOffset uint64
	// BlockIncrSize is the block-incremental block size in bytes ("bi" * 8192); 0 when the
	// file is not block incremental.
	BlockIncrSize uint64
	// BlockIncrChecksumSize is "bic" (BlockIncrChecksumSizeDefault when absent).
	BlockIncrChecksumSize uint64
	// BlockIncrMapSize is "bim": the size of the block map.
	BlockIncrMapSize uint64
	// Mode is the permission bits (e.g. 0o600).
	Mode uint32
	// User and Group are the owner names; empty means pgBackRest could not map the id to
	// a name (written as JSON false).
	User, Group string
}

// ManifestLink is one [target:link] entry with defaults applied.
type ManifestLink struct {
	// Name is the manifest name of the link ("pg_data/pg_wal", "pg_data/pg_tblspc/<oid>").
	Name string
	// Destination is the link target.
	Destination string
	// User and Group own the link; empty means unmapped (JSON false).
	User, Group string
}

// ManifestPath is one [target:path] entry with defaults applied.
type ManifestPath struct {
	// Name is the manifest name of the directory ("pg_data", "pg_data/base", ...).
	Name string
	// Mode is the permission bits (e.g. 0o700).
	Mode uint32
	// User and Group own the directory; empty means unmapped (JSON false).
	User, Group string
}

// Manifest is the content of backup/<stanza>/<label>/backup.manifest.
//
// Files, paths and links carry their effective owner and mode. On Save the defaults
// sections are computed from the "pg_data" path as pgBackRest 2.45 does (user and group
// of pg_data; file mode = pg_data mode & 0640; path mode = pg_data mode) and only values
// that differ are written per entry.
type Manifest struct {
	// BackrestVersion is the version that wrote the manifest (the [backrest] header). It
	// becomes the backup's backrest-version in backup.info. Save always writes
	// WriterVersion in the header.
	BackrestVersion string
	// CipherPass is the sub-passphrase encrypting the backup's files ([cipher]).
	CipherPass string

	// Label is backup-label.
	Label string
	// Type is backup-type.
	Type BackupType
	// Prior is backup-prior: the label of the prior backup, empty for full backups.
	Prior string
	// Reference is backup-reference: every backup of the set this one may reference, this
	// one last (for a diff/incr: the prior's Reference plus its own label, see
	// ChildReference). Save writes Label when it is empty.
	Reference []string
	// ArchiveStart and ArchiveStop are the first and last WAL segment of the backup;
	// empty for offline backups.
	ArchiveStart, ArchiveStop string
	// LSNStart and LSNStop are the start and stop LSN; empty for offline backups.
	LSNStart, LSNStop string
	// TimestampCopyStart, TimestampStart and TimestampStop are Unix seconds: when copying
	// began, when the backup command started, and when the backup stopped.
	TimestampCopyStart, TimestampStart, TimestampStop int64
	// BlockIncr, Bundle and BundleRaw are backup-block-incr, backup-bundle and
	// backup-bundle-raw (written only when true; BundleRaw only with Bundle).
	BlockIncr, Bundle, BundleRaw bool

	// DB is [backup:db].
	DB ManifestDB
	// Options is [backup:option].
	Options ManifestOptions
	// Targets is [backup:target] (written sorted by name).
	Targets []ManifestTarget
	// Databases is [db] (written sorted by name).
	Databases []ManifestDatabase
	// Annotation is [metadata] annotation; nil when absent.
	Annotation map[string]string

	// Files is [target:file] with the defaults applied (written sorted by name).
	Files []ManifestFile
	// Links is [target:link] with the defaults applied (written sorted by name).
	Links []ManifestLink
	// Paths is [target:path] with the defaults applied (written sorted by name). It must
	// contain "pg_data", whose owner and mode are the defaults written by Save.
	Paths []ManifestPath
}

// ChildReference returns the backup-reference of a differential or incremental backup
// labelled label whose prior backup is m (pgBackRest copies the prior's list and appends
// the new label).
func (m *Manifest) ChildReference(label string) []string {
	return append(slices.Clone(m.Reference), label)
}

// ownerDefault is a default owner read from a :default section.
type ownerDefault struct {
	name string
	set  bool
}

type manifestLoader struct {
	infoLoader
	m *Manifest

	fileUser, fileGroup ownerDefault
	fileMode            uint32
	fileModeSet         bool
	pathUser, pathGroup ownerDefault
	pathMode            uint32
	pathModeSet         bool
	linkUser, linkGroup ownerDefault
}

// LoadManifest parses a backup.manifest (decrypted) with pgBackRest 2.45's rules. name is
// used in error messages, which are *ParseError values naming it and a line. The file is
// parsed line by line in linear time.
func LoadManifest(name string, data []byte) (*Manifest, error) {
	doc, err := ParseInfo(name, data)
	if err != nil {
		return nil, err
	}
	l := &manifestLoader{infoLoader: infoLoader{file: name, doc: doc}, m: &Manifest{BackrestVersion: doc.BackrestVersion()}}
	if l.m.CipherPass, err = l.cipherPass(); err != nil {
		return nil, err
	}
	for _, step := range []func() error{
		l.loadDefaults, l.loadBackup, l.loadBackupDB, l.loadOptions, l.loadTargets, l.loadDatabases,
		l.loadMetadata, l.loadFiles, l.loadPaths, l.loadLinks, l.loadReferences,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return l.m, nil
}

// readOwner reads a user/group value: a string, or false for an unmapped id.
func readOwner(raw string) (string, error) {
	switch jsonKind(raw, 0) {
	case "bool":
		v, err := jsonBool(raw)
		if err != nil {
			return "", err
		}
		if v {
			return "", fmt.Errorf("owner bool must be false")
		}
		return "", nil
	case "string":
		s, err := jsonStr(raw)
		if err != nil {
			return "", err
		}
		if s == "" {
			return "", fmt.Errorf("owner must not be empty")
		}
		return s, nil
	default:
		return "", fmt.Errorf("owner must be a string or false")
	}
}

// readMode reads a mode string ("0750") as octal.
func readMode(raw string) (uint32, error) {
	s, err := jsonStr(raw)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("unable to convert base 8 string '%s' to unsigned int", s)
	}
	return uint32(v), nil
}

func (l *manifestLoader) loadDefaults() error {
	owner := func(section, key string, dst *ownerDefault) error {
		e, ok := l.doc.Section(section).Lookup(key)
		if !ok {
			return nil
		}
		v, err := readOwner(e.Value)
		if err != nil {
			return l.errEntry(section, e, err)
		}
		*dst = ownerDefault{name: v, set: true}
		return nil
	}
	mode := func(section string, dst *uint32, set *bool) error {
		e, ok := l.doc.Section(section).Lookup(keyMode)
		if !ok {
			return nil
		}
		v, err := readMode(e.Value)
		if err != nil {
			return l.errEntry(section, e, err)
		}
		*dst, *set = v, true
		return nil
	}
	for _, err := range []error{
		owner(sectionTargetFileDefault, keyUser, &l.fileUser),
		owner(sectionTargetFileDefault, keyGroup, &l.fileGroup),
		mode(sectionTargetFileDefault, &l.fileMode, &l.fileModeSet),
		owner(sectionTargetPathDefault, keyUser, &l.pathUser),
		owner(sectionTargetPathDefault, keyGroup, &l.pathGroup),
		mode(sectionTargetPathDefault, &l.pathMode, &l.pathModeSet),
		owner(sectionTargetLinkDefault, keyUser, &l.linkUser),
		owner(sectionTargetLinkDefault, keyGroup, &l.linkGroup),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func (l *manifestLoader) loadBackup() error {
	s := l.doc.Section(sectionBackup)
	if s == nil {
		return l.errEOF("section [%s] is missing", sectionBackup)
	}
	m := l.m
	for _, e := range s.Entries {
		var err error
		switch e.Key {
		case "backup-archive-start":
			m.ArchiveStart, _, err = jsonStringOrNull(e.Value)
		case "backup-archive-stop":
			m.ArchiveStop, _, err = jsonStringOrNull(e.Value)
		case "backup-block-incr":
			m.BlockIncr, err = jsonBool(e.Value)
		case "backup-bundle":
			m.Bundle, err = jsonBool(e.Value)
		case "backup-bundle-raw":
			m.BundleRaw, err = jsonBool(e.Value)
		case "backup-label":
			m.Label, err = jsonStr(e.Value)
		case "backup-lsn-start":
			m.LSNStart, _, err = jsonStringOrNull(e.Value)
		case "backup-lsn-stop":
			m.LSNStop, _, err = jsonStringOrNull(e.Value)
		case "backup-prior":
			m.Prior, _, err = jsonStringOrNull(e.Value)
		case "backup-reference":
			var ref string
			if ref, err = jsonStr(e.Value); err == nil {
				m.Reference = strings.Split(ref, ",")
			}
		case "backup-timestamp-copy-start":
			m.TimestampCopyStart, err = readTimestamp(e.Value)
		case "backup-timestamp-start":
			m.TimestampStart, err = readTimestamp(e.Value)
		case "backup-timestamp-stop":
			m.TimestampStop, err = readTimestamp(e.Value)
		case "backup-type":
			var t string
			if t, err = jsonStr(e.Value); err == nil {
				m.Type, err = parseBackupType(t)
			}
		}
		if err != nil {
			return l.errEntry(sectionBackup, e, err)
		}
	}
	if m.Label == "" {
		return formatErrorf(l.file, s.Line, "section [%s] key 'backup-label' is missing", sectionBackup)
	}
	if m.Type == "" {
		return formatErrorf(l.file, s.Line, "section [%s] key 'backup-type' is missing", sectionBackup)
	}
	return nil
}

// readTimestamp reads a non-negative number of seconds (varUInt64).
func readTimestamp(raw string) (int64, error) {
	v, err := jsonUint64(raw)
	if err != nil {
		return 0, err
	}
	if v > 1<<63-1 {
		return 0, fmt.Errorf("%d is out of range for a timestamp", v)
	}
	return int64(v), nil
}

func (l *manifestLoader) loadBackupDB() error {
	s := l.doc.Section(sectionBackupDB)
	if s == nil {
		return l.errEOF("section [%s] is missing", sectionBackupDB)
	}
	db := &l.m.DB
	for _, e := range s.Entries {
		var err error
		switch e.Key {
		case keyDBID:
			db.ID, err = uintForce(e.Value)
		case keyDBSystemID:
			db.SystemID, err = jsonUint64(e.Value)
		case keyDBCatalogVersion:
			db.CatalogVersion, err = uintForce(e.Value)
		case keyDBControlVersion:
			db.ControlVersion, err = uintForce(e.Value)
		case keyDBVersion:
			var v string
			if v, err = jsonStr(e.Value); err == nil {
				db.Version, err = canonicalPgVersion(v)
			}
		}
		if err != nil {
			return l.errEntry(sectionBackupDB, e, err)
		}
	}
	for _, key := range []string{keyDBID, keyDBSystemID, keyDBVersion} {
		if _, ok := s.Lookup(key); !ok {
			return formatErrorf(l.file, s.Line, "section [%s] key '%s' is missing", sectionBackupDB, key)
		}
	}
	return nil
}

func (l *manifestLoader) loadOptions() error {
	s := l.doc.Section(sectionBackupOption)
	if s == nil {
		return l.errEOF("section [%s] is missing", sectionBackupOption)
	}
	o := &l.m.Options
	o.CompressType = CompressNone
	compressTypeSet := false
	optBool := func(raw string, dst **bool) error {
		v, err := jsonBool(raw)
		*dst = &v
		return err
	}
	optUint := func(raw string, dst **uint32) error {
		v, err := uintForce(raw)
		*dst = &v
		return err
	}
	for _, e := range s.Entries {
		var err error
		switch e.Key {
		case "option-archive-check":
			o.ArchiveCheck, err = jsonBool(e.Value)
		case "option-archive-copy":
			o.ArchiveCopy, err = jsonBool(e.Value)
		case "option-compress":
			var c bool
			if c, err = jsonBool(e.Value); err == nil && !compressTypeSet {
				o.CompressType = CompressNone
				if c {
					o.CompressType = CompressGz
				}
			}
		case "option-compress-type":
			var t string
			if t, err = jsonStr(e.Value); err == nil {
				o.CompressType, err = ParseCompressType(t)
				compressTypeSet = true
			}
		case "option-hardlink":
			o.Hardlink, err = jsonBool(e.Value)
		case "option-online":
			o.Online, err = jsonBool(e.Value)
		case "option-backup-standby":
			err = optBool(e.Value, &o.BackupStandby)
		case "option-buffer-size":
			err = optUint(e.Value, &o.BufferSize)
		case "option-checksum-page":
			err = optBool(e.Value, &o.ChecksumPage)
		case "option-compress-level":
			err = optUint(e.Value, &o.CompressLevel)
		case "option-compress-level-network":
			err = optUint(e.Value, &o.CompressLevelNetwork)
		case "option-delta":
			err = optBool(e.Value, &o.Delta)
		case "option-process-max":
			err = optUint(e.Value, &o.ProcessMax)
		}
		if err != nil {
			return l.errEntry(sectionBackupOption, e, err)
		}
	}
	return nil
}

func (l *manifestLoader) loadTargets() error {
	s := l.doc.Section(sectionBackupTarget)
	if s == nil {
		return l.errEOF("section [%s] is missing", sectionBackupTarget)
	}
	l.m.Targets = make([]ManifestTarget, 0, len(s.Entries))
	for _, e := range s.Entries {
		t, err := parseTarget(e)
		if err != nil {
			return l.errEntry(sectionBackupTarget, e, err)
		}
		l.m.Targets = append(l.m.Targets, t)
	}
	if _, ok := s.Lookup(TargetPGData); !ok {
		return formatErrorf(l.file, s.Line, "section [%s] has no '%s' target", sectionBackupTarget, TargetPGData)
	}
	return nil
}

func parseTarget(e Entry) (ManifestTarget, error) {
	t := ManifestTarget{Name: e.Key}
	r, err := newJSONReader(e.Value)
	if err != nil {
		return t, err
	}
	if raw, ok, err := r.expect("file"); err != nil {
		return t, err
	} else if ok {
		if t.File, _, err = jsonStringOrNull(raw); err != nil {
			return t, fmt.Errorf("file: %w", err)
		}
	}
	raw, err := r.require("path")
	if err != nil {
		return t, err
	}
	if t.Path, err = jsonStr(raw); err != nil {
		return t, fmt.Errorf("path: %w", err)
	}
	if raw, ok, err := r.expect("tablespace-id"); err != nil {
		return t, err
	} else if ok {
		id, err := jsonStr(raw)
		if err != nil {
			return t, fmt.Errorf("tablespace-id: %w", err)
		}
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return t, fmt.Errorf("tablespace-id: unable to convert '%s' to unsigned int", id)
		}
		t.TablespaceID = uint32(n)
		raw, err := r.require("tablespace-name")
		if err != nil {
			return t, err
		}
		if t.TablespaceName, err = jsonStr(raw); err != nil {
			return t, fmt.Errorf("tablespace-name: %w", err)
		}
	}
	if raw, err = r.require("type"); err != nil {
		return t, err
	}
	typ, err := jsonStr(raw)
	if err != nil {
		return t, fmt.Errorf("type: %w", err)
	}
	t.Type = TargetType(typ)
	if t.Type != TargetPath && t.Type != TargetLink {
		return t, fmt.Errorf("invalid target type '%s'", typ)
	}
	return t, nil
}

func (l *manifestLoader) loadDatabases() error {
	s := l.doc.Section(sectionManifestDB)
	if s == nil {
		return nil
	}
	l.m.Databases = make([]ManifestDatabase, 0, len(s.Entries))
	for _, e := range s.Entries {
		db := ManifestDatabase{Name: e.Key}
		r, err := newJSONReader(e.Value)
		if err == nil {
			var raw string
			if raw, err = r.require("db-id"); err == nil {
				if db.ID, err = jsonUint32(raw); err == nil {
					if raw, err = r.require("db-last-system-id"); err == nil {
						db.LastSystemID, err = jsonUint32(raw)
					}
				}
			}
		}
		if err != nil {
			return l.errEntry(sectionManifestDB, e, err)
		}
		l.m.Databases = append(l.m.Databases, db)
	}
	return nil
}

func (l *manifestLoader) loadMetadata() error {
	e, ok := l.doc.Section(sectionMetadata).Lookup("annotation")
	if !ok {
		return nil
	}
	a, err := jsonStringMap(e.Value)
	if err != nil {
		return l.errEntry(sectionMetadata, e, err)
	}
	l.m.Annotation = a
	return nil
}

// decodeSHA1 checks a hex SHA-1 and returns it in lowercase.
func decodeSHA1(raw string) (string, error) {
	s, err := jsonStr(raw)
	if err != nil {
		return "", err
	}
	if err := checkSHA1(s); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

func (l *manifestLoader) needDefault(section, key string, e Entry, set bool) error {
	if set {
		return nil
	}
	return formatErrorf(l.file, e.Line, "%s of '%s' is not set and section [%s] key '%s' is missing",
		key, e.Key, section, key)
}

func (l *manifestLoader) loadFiles() error {
	s := l.doc.Section(sectionTargetFile)
	if s == nil {
		return nil
	}
	l.m.Files = make([]ManifestFile, 0, len(s.Entries))
	for _, e := range s.Entries {
		f, explicit, err := parseFile(e)
		if err != nil {
			return l.errEntry(sectionTargetFile, e, err)
		}
		if !explicit.user {
			if err := l.needDefault(sectionTargetFileDefault, keyUser, e, l.fileUser.set); err != nil {
				return err
			}
			f.User = l.fileUser.name
		}
		if !explicit.group {
			if err := l.needDefault(sectionTargetFileDefault, keyGroup, e, l.fileGroup.set); err != nil {
				return err
			}
			f.Group = l.fileGroup.name
		}
		if !explicit.mode {
			if err := l.needDefault(sectionTargetFileDefault, keyMode, e, l.fileModeSet); err != nil {
				return err
			}
			f.Mode = l.fileMode
		}
		l.m.Files = append(l.m.Files, f)
	}
	return nil
}

// explicitOwner records which of user, group and mode an entry sets itself.
type explicitOwner struct{ user, group, mode bool }

// parseFile reads one [target:file] value in the order of manifestLoadCallback().
func parseFile(e Entry) (ManifestFile, explicitOwner, error) {
	f := ManifestFile{Name: e.Key}
	var ex explicitOwner
	r, err := newJSONReader(e.Value)
	if err != nil {
		return f, ex, err
	}
	u64 := func(dst *uint64) func(string) error {
		return func(raw string) (err error) { *dst, err = jsonUint64(raw); return err }
	}
	var bi uint64
	opt := func(key string, read func(string) error) (bool, error) {
		raw, ok, err := r.expect(key)
		if err != nil || !ok {
			return false, err
		}
		if err := read(raw); err != nil {
			return true, fmt.Errorf("%s: %w", key, err)
		}
		return true, nil
	}
	if ok, err := opt("bi", u64(&bi)); err != nil {
		return f, ex, err
	} else if ok {
		if bi > (1<<64-1)/BlockIncrSizeFactor {
			return f, ex, fmt.Errorf("bi: %d is out of range", bi)
		}
		f.BlockIncrSize = bi * BlockIncrSizeFactor
		f.BlockIncrChecksumSize = BlockIncrChecksumSizeDefault
		if _, err := opt("bic", u64(&f.BlockIncrChecksumSize)); err != nil {
			return f, ex, err
		}
		if _, err := opt("bim", u64(&f.BlockIncrMapSize)); err != nil {
			return f, ex, err
		}
	}
	if ok, err := opt("bni", u64(&f.BundleID)); err != nil {
		return f, ex, err
	} else if ok {
		if _, err := opt("bno", u64(&f.BundleOffset)); err != nil {
			return f, ex, err
		}
	}
	if _, err := opt("checksum", func(raw string) (err error) { f.Checksum, err = decodeSHA1(raw); return err }); err != nil {
		return f, ex, err
	}
	var pageOK bool
	if ok, err := opt("checksum-page", func(raw string) (err error) { pageOK, err = jsonBool(raw); return err }); err != nil {
		return f, ex, err
	} else if ok {
		f.ChecksumPage, f.ChecksumPageError = true, !pageOK
		if _, err := opt("checksum-page-error", func(raw string) (err error) {
			f.ChecksumPageErrorList, err = canonicalJSON(raw)
			return err
		}); err != nil {
			return f, ex, err
		}
	}
	var err2 error
	if ex.group, err2 = opt(keyGroup, func(raw string) (err error) { f.Group, err = readOwner(raw); return err }); err2 != nil {
		return f, ex, err2
	}
	if ex.mode, err2 = opt(keyMode, func(raw string) (err error) { f.Mode, err = readMode(raw); return err }); err2 != nil {
		return f, ex, err2
	}
	if _, err := opt("rck", func(raw string) (err error) { f.RepoChecksum, err = decodeSHA1(raw); return err }); err != nil {
		return f, ex, err
	}
	if _, err := opt("reference", func(raw string) (err error) { f.Reference, _, err = jsonStringOrNull(raw); return err }); err != nil {
		return f, ex, err
	}
	repoSizeSet, err := opt("repo-size", u64(&f.RepoSize))
	if err != nil {
		return f, ex, err
	}
	if ok, err := opt("size", u64(&f.Size)); err != nil {
		return f, ex, err
	} else if !ok {
		return f, ex, fmt.Errorf("missing size for file '%s'", f.Name)
	}
	if !repoSizeSet {
		f.RepoSize = f.Size
	}
	if f.Size == 0 {
		f.Checksum = ZeroChecksum
	}
	if ok, err := opt("timestamp", func(raw string) (err error) { f.Timestamp, err = jsonInt64(raw); return err }); err != nil {
		return f, ex, err
	} else if !ok {
		return f, ex, fmt.Errorf("missing timestamp for file '%s'", f.Name)
	}
	if ex.user, err2 = opt(keyUser, func(raw string) (err error) { f.User, err = readOwner(raw); return err }); err2 != nil {
		return f, ex, err2
	}
	return f, ex, nil
}

func (l *manifestLoader) loadPaths() error {
	s := l.doc.Section(sectionTargetPath)
	if s == nil {
		return nil
	}
	l.m.Paths = make([]ManifestPath, 0, len(s.Entries))
	for _, e := range s.Entries {
		p := ManifestPath{Name: e.Key}
		var ex explicitOwner
		r, err := newJSONReader(e.Value)
		if err == nil {
			err = readOwnerFields(r, &ex, &p.User, &p.Group, &p.Mode, true)
		}
		if err != nil {
			return l.errEntry(sectionTargetPath, e, err)
		}
		if !ex.user {
			if err := l.needDefault(sectionTargetPathDefault, keyUser, e, l.pathUser.set); err != nil {
				return err
			}
			p.User = l.pathUser.name
		}
		if !ex.group {
			if err := l.needDefault(sectionTargetPathDefault, keyGroup, e, l.pathGroup.set); err != nil {
				return err
			}
			p.Group = l.pathGroup.name
		}
		if !ex.mode {
			if err := l.needDefault(sectionTargetPathDefault, keyMode, e, l.pathModeSet); err != nil {
				return err
			}
			p.Mode = l.pathMode
		}
		l.m.Paths = append(l.m.Paths, p)
	}
	return nil
}

// readOwnerFields reads group, mode (if withMode) and user in key order.
func readOwnerFields(r *jsonReader, ex *explicitOwner, user, group *string, mode *uint32, withMode bool) error {
	raw, ok, err := r.expect(keyGroup)
	if err != nil {
		return err
	}
	if ok {
		if *group, err = readOwner(raw); err != nil {
			return fmt.Errorf("group: %w", err)
		}
		ex.group = true
	}
	if withMode {
		if raw, ok, err = r.expect(keyMode); err != nil {
			return err
		}
		if ok {
			if *mode, err = readMode(raw); err != nil {
				return fmt.Errorf("mode: %w", err)
			}
			ex.mode = true
		}
	}
	if raw, ok, err = r.expect(keyUser); err != nil {
		return err
	}
	if ok {
		if *user, err = readOwner(raw); err != nil {
			return fmt.Errorf("user: %w", err)
		}
		ex.user = true
	}
	return nil
}

func (l *manifestLoader) loadLinks() error {
	s := l.doc.Section(sectionTargetLink)
	if s == nil {
		return nil
	}
	l.m.Links = make([]ManifestLink, 0, len(s.Entries))
	for _, e := range s.Entries {
		k := ManifestLink{Name: e.Key}
		var ex explicitOwner
		r, err := newJSONReader(e.Value)
		if err == nil {
			var raw string
			if raw, err = r.require("destination"); err == nil {
				if k.Destination, err = jsonStr(raw); err == nil {
					err = readOwnerFields(r, &ex, &k.User, &k.Group, nil, false)
				}
			}
		}
		if err != nil {
			return l.errEntry(sectionTargetLink, e, err)
		}
		if !ex.user {
			if err := l.needDefault(sectionTargetLinkDefault, keyUser, e, l.linkUser.set); err != nil {
				return err
			}
			k.User = l.linkUser.name
		}
		if !ex.group {
			if err := l.needDefault(sectionTargetLinkDefault, keyGroup, e, l.linkGroup.set); err != nil {
				return err
			}
			k.Group = l.linkGroup.name
		}
		l.m.Links = append(l.m.Links, k)
	}
	return nil
}

// loadReferences checks file references against backup-reference, or builds the list the
// way pgBackRest does for manifests written before 2.42 (file references in file order,
// then the label).
func (l *manifestLoader) loadReferences() error {
	m := l.m
	if m.Reference != nil {
		known := make(map[string]bool, len(m.Reference))
		for _, r := range m.Reference {
			known[r] = true
		}
		s := l.doc.Section(sectionTargetFile)
		for i, f := range m.Files {
			if f.Reference != "" && !known[f.Reference] {
				return formatErrorf(l.file, s.Entries[i].Line, "file '%s' references '%s', which is not in backup-reference",
					f.Name, f.Reference)
			}
		}
		return nil
	}
	m.Reference = []string{}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Reference != "" && !seen[f.Reference] {
			seen[f.Reference] = true
			m.Reference = append(m.Reference, f.Reference)
		}
	}
	if !seen[m.Label] {
		m.Reference = append(m.Reference, m.Label)
	}
	return nil
}

// ownerJSON renders an owner: a string, or false for "".
func ownerJSON(b []byte, owner string) []byte {
	if owner == "" {
		return append(b, "false"...)
	}
	return appendJSONString(b, owner)
}

func appendMode(b []byte, mode uint32) []byte {
	return fmt.Appendf(b, "\"%04o\"", mode)
}

// Path returns the path with the given name.
func (m *Manifest) Path(name string) (*ManifestPath, bool) {
	for i := range m.Paths {
		if m.Paths[i].Name == name {
			return &m.Paths[i], true
		}
	}
	return nil, false
}

// Target returns the target with the given name.
func (m *Manifest) Target(name string) (*ManifestTarget, bool) {
	for i := range m.Targets {
		if m.Targets[i].Name == name {
			return &m.Targets[i], true
		}
	}
	return nil, false
}

// sortedBy returns list sorted by name, cloning only when it is not sorted already.
func sortedBy[T any](list []T, name func(*T) string) []T {
	cmp := func(a, b T) int { return compareStrings(name(&a), name(&b)) }
	if slices.IsSortedFunc(list, cmp) {
		return list
	}
	out := slices.Clone(list)
	slices.SortStableFunc(out, cmp)
	return out
}

// Save renders the manifest exactly as pgBackRest 2.45 does: sections in byte order,
// entries sorted by name, defaults computed from the pg_data path, backrest-version
// WriterVersion.
func (m *Manifest) Save() ([]byte, error) {
	doc, err := m.document()
	if err != nil {
		return nil, fmt.Errorf("save manifest: %w", err)
	}
	out, err := doc.Render()
	if err != nil {
		return nil, fmt.Errorf("save manifest: %w", err)
	}
	return out, nil
}

func (m *Manifest) document() (*Document, error) {
	base, ok := m.Path(TargetPGData)
	if !ok {
		return nil, invalidf("no '%s' path", TargetPGData)
	}
	if !m.Type.Valid() {
		return nil, invalidf("invalid backup type '%s'", m.Type)
	}
	if m.Label == "" {
		return nil, invalidf("backup label is empty")
	}
	userDefault, groupDefault := base.User, base.Group
	fileModeDefault := base.Mode & 0o640
	pathModeDefault := base.Mode

	doc := NewDocument(WriterVersion)
	str := func(s string) string { return jsonString(s) }
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	u32 := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	boolean := strconv.FormatBool

	// [backup]
	s := doc.AddSection(sectionBackup)
	if m.ArchiveStart != "" {
		s.Add("backup-archive-start", str(m.ArchiveStart))
	}
	if m.ArchiveStop != "" {
		s.Add("backup-archive-stop", str(m.ArchiveStop))
	}
	if m.BlockIncr {
		s.Add("backup-block-incr", "true")
	}
	if m.Bundle {
		s.Add("backup-bundle", "true")
		if m.BundleRaw {
			s.Add("backup-bundle-raw", "true")
		}
	}
	s.Add("backup-label", str(m.Label))
	if m.LSNStart != "" {
		s.Add("backup-lsn-start", str(m.LSNStart))
	}
	if m.LSNStop != "" {
		s.Add("backup-lsn-stop", str(m.LSNStop))
	}
	if m.Prior != "" {
		s.Add("backup-prior", str(m.Prior))
	}
	reference := m.Reference
	if len(reference) == 0 {
		reference = []string{m.Label}
	}
	s.Add("backup-reference", str(strings.Join(reference, ",")))
	s.Add("backup-timestamp-copy-start", i64(m.TimestampCopyStart))
	s.Add("backup-timestamp-start", i64(m.TimestampStart))
	s.Add("backup-timestamp-stop", i64(m.TimestampStop))
	s.Add("backup-type", str(string(m.Type)))

	// [backup:db]
	version, err := canonicalPgVersion(m.DB.Version)
	if err != nil {
		return nil, err
	}
	control := m.DB.ControlVersion
	if control == 0 {
		if control, err = PgControlVersion(version); err != nil {
			return nil, err
		}
	}
	s = doc.AddSection(sectionBackupDB)
	s.Add(keyDBCatalogVersion, u32(m.DB.CatalogVersion))
	s.Add(keyDBControlVersion, u32(control))
	s.Add(keyDBID, u32(m.DB.ID))
	s.Add(keyDBSystemID, strconv.FormatUint(m.DB.SystemID, 10))
	s.Add(keyDBVersion, str(version))

	// [backup:option]
	o := &m.Options
	if _, err := o.CompressType.Ext(); err != nil {
		return nil, err
	}
	s = doc.AddSection(sectionBackupOption)
	s.Add("option-archive-check", boolean(o.ArchiveCheck))
	s.Add("option-archive-copy", boolean(o.ArchiveCopy))
	if o.BackupStandby != nil {
		s.Add("option-backup-standby", boolean(*o.BackupStandby))
	}
	if o.BufferSize != nil {
		s.Add("option-buffer-size", u32(*o.BufferSize))
	}
	if o.ChecksumPage != nil {
		s.Add("option-checksum-page", boolean(*o.ChecksumPage))
	}
	s.Add("option-compress", boolean(o.CompressType != CompressNone))
	if o.CompressLevel != nil {
		s.Add("option-compress-level", u32(*o.CompressLevel))
	}
	if o.CompressLevelNetwork != nil {
		s.Add("option-compress-level-network", u32(*o.CompressLevelNetwork))
	}
	s.Add("option-compress-type", str(string(o.CompressType)))
	if o.Delta != nil {
		s.Add("option-delta", boolean(*o.Delta))
	}
	s.Add("option-hardlink", boolean(o.Hardlink))
	s.Add("option-online", boolean(o.Online))
	if o.ProcessMax != nil {
		s.Add("option-process-max", u32(*o.ProcessMax))
	}

	// [backup:target]
	s = doc.AddSection(sectionBackupTarget)
	for _, t := range sortedBy(m.Targets, func(t *ManifestTarget) string { return t.Name }) {
		if t.Type != TargetPath && t.Type != TargetLink {
			return nil, invalidf("target '%s': invalid type '%s'", t.Name, t.Type)
		}
		b := []byte{'{'}
		if t.File != "" {
			b = append(b, `"file":`...)
			b = appendJSONString(b, t.File)
			b = append(b, ',')
		}
		b = append(b, `"path":`...)
		b = appendJSONString(b, t.Path)
		if t.TablespaceID != 0 {
			b = append(b, `,"tablespace-id":"`...)
			b = strconv.AppendUint(b, uint64(t.TablespaceID), 10)
			b = append(b, '"')
		}
		if t.TablespaceName != "" {
			b = append(b, `,"tablespace-name":`...)
			b = appendJSONString(b, t.TablespaceName)
		}
		b = append(b, `,"type":`...)
		b = appendJSONString(b, string(t.Type))
		b = append(b, '}')
		s.Add(t.Name, string(b))
	}

	// [cipher]
	if m.CipherPass != "" {
		doc.AddSection(sectionCipher).Add(keyCipherPass, str(m.CipherPass))
	}

	// [db]
	s = doc.AddSection(sectionManifestDB)
	for _, db := range sortedBy(m.Databases, func(d *ManifestDatabase) string { return d.Name }) {
		s.Add(db.Name, `{"db-id":`+u32(db.ID)+`,"db-last-system-id":`+u32(db.LastSystemID)+`}`)
	}

	// [metadata]
	if m.Annotation != nil {
		a, err := renderStringMap(m.Annotation)
		if err != nil {
			return nil, invalidf("annotation: %v", err)
		}
		doc.AddSection(sectionMetadata).Add("annotation", a)
	}

	// [target:file]
	s = doc.AddSection(sectionTargetFile)
	files := sortedBy(m.Files, func(f *ManifestFile) string { return f.Name })
	s.Entries = make([]Entry, 0, len(files))
	var b []byte
	for i := range files {
		f := &files[i]
		if b, err = appendFile(b[:0], f, userDefault, groupDefault, fileModeDefault); err != nil {
			return nil, err
		}
		s.Add(f.Name, string(b))
	}

	// [target:file:default]
	s = doc.AddSection(sectionTargetFileDefault)
	s.Add(keyGroup, string(ownerJSON(nil, groupDefault)))
	s.Add(keyMode, string(appendMode(nil, fileModeDefault)))
	s.Add(keyUser, string(ownerJSON(nil, userDefault)))

	// [target:link]
	s = doc.AddSection(sectionTargetLink)
	for _, k := range sortedBy(m.Links, func(k *ManifestLink) string { return k.Name }) {
		b = append(b[:0], `{"destination":`...)
		b = appendJSONString(b, k.Destination)
		if k.Group != groupDefault {
			b = append(b, `,"group":`...)
			b = ownerJSON(b, k.Group)
		}
		if k.User != userDefault {
			b = append(b, `,"user":`...)
			b = ownerJSON(b, k.User)
		}
		b = append(b, '}')
		s.Add(k.Name, string(b))
	}

	// [target:link:default]
	if len(m.Links) > 0 {
		s = doc.AddSection(sectionTargetLinkDefault)
		s.Add(keyGroup, string(ownerJSON(nil, groupDefault)))
		s.Add(keyUser, string(ownerJSON(nil, userDefault)))
	}

	// [target:path]
	s = doc.AddSection(sectionTargetPath)
	for _, p := range sortedBy(m.Paths, func(p *ManifestPath) string { return p.Name }) {
		b = append(b[:0], '{')
		if p.Group != groupDefault {
			b = append(b, `"group":`...)
			b = ownerJSON(b, p.Group)
		}
		if p.Mode != pathModeDefault {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, `"mode":`...)
			b = appendMode(b, p.Mode)
		}
		if p.User != userDefault {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, `"user":`...)
			b = ownerJSON(b, p.User)
		}
		b = append(b, '}')
		s.Add(p.Name, string(b))
	}

	// [target:path:default]
	s = doc.AddSection(sectionTargetPathDefault)
	s.Add(keyGroup, string(ownerJSON(nil, groupDefault)))
	s.Add(keyMode, string(appendMode(nil, pathModeDefault)))
	s.Add(keyUser, string(ownerJSON(nil, userDefault)))
	return doc, nil
}

// appendFile renders one [target:file] value in manifestSaveCallback()'s order.
func appendFile(b []byte, f *ManifestFile, userDefault, groupDefault string, modeDefault uint32) ([]byte, error) {
	b = append(b, '{')
	sep := func() {
		if len(b) > 1 {
			b = append(b, ',')
		}
	}
	key := func(k string) {
		sep()
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
	}
	if f.BlockIncrSize != 0 {
		if f.BlockIncrSize%BlockIncrSizeFactor != 0 {
			return nil, invalidf("file '%s': block incremental size %d is not a multiple of %d",
				f.Name, f.BlockIncrSize, BlockIncrSizeFactor)
		}
		key("bi")
		b = strconv.AppendUint(b, f.BlockIncrSize/BlockIncrSizeFactor, 10)
		if f.BlockIncrChecksumSize != BlockIncrChecksumSizeDefault {
			key("bic")
			b = strconv.AppendUint(b, f.BlockIncrChecksumSize, 10)
		}
		if f.BlockIncrMapSize != 0 {
			key("bim")
			b = strconv.AppendUint(b, f.BlockIncrMapSize, 10)
		}
	}
	if f.BundleID != 0 {
		key("bni")
		b = strconv.AppendUint(b, f.BundleID, 10)
		if f.BundleOffset != 0 {
			key("bno")
			b = strconv.AppendUint(b, f.BundleOffset, 10)
		}
	}
	if f.Size != 0 && f.Checksum != "" {
		if err := checkSHA1(f.Checksum); err != nil {
			return nil, invalidf("file '%s': checksum: %v", f.Name, err)
		}
		key("checksum")
		b = appendJSONString(b, strings.ToLower(f.Checksum))
	}
	if f.ChecksumPage {
		key("checksum-page")
		b = strconv.AppendBool(b, !f.ChecksumPageError)
		if f.ChecksumPageErrorList != "" {
			list, err := canonicalJSON(f.ChecksumPageErrorList)
			if err != nil {
				return nil, invalidf("file '%s': checksum-page-error: %v", f.Name, err)
			}
			key("checksum-page-error")
			b = append(b, list...)
		}
	}
	if f.Group != groupDefault {
		key(keyGroup)
		b = ownerJSON(b, f.Group)
	}
	if f.Mode != modeDefault {
		key(keyMode)
		b = appendMode(b, f.Mode)
	}
	if f.RepoChecksum != "" {
		if err := checkSHA1(f.RepoChecksum); err != nil {
			return nil, invalidf("file '%s': rck: %v", f.Name, err)
		}
		key("rck")
		b = appendJSONString(b, strings.ToLower(f.RepoChecksum))
	}
	if f.Reference != "" {
		key("reference")
		b = appendJSONString(b, f.Reference)
	}
	if f.RepoSize != f.Size {
		key("repo-size")
		b = strconv.AppendUint(b, f.RepoSize, 10)
	}
	key("size")
	b = strconv.AppendUint(b, f.Size, 10)
	key("timestamp")
	b = strconv.AppendInt(b, f.Timestamp, 10)
	if f.User != userDefault {
		key(keyUser)
		b = ownerJSON(b, f.User)
	}
	return append(b, '}'), nil
}

// checkSHA1 accepts 40 hexadecimal digits of either case (pgBackRest decodes them and
// writes lowercase).
func checkSHA1(s string) error {
	if len(s) != 2*sha1.Size {
		return fmt.Errorf("'%s' is not a SHA-1 checksum", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return fmt.Errorf("'%s' is not a SHA-1 checksum", s)
		}
	}
	return nil
}

// RepoPath returns where the data of file f is stored, relative to backup/<stanza>/:
// "<label>/<name><ext>" in the backup that holds it (f.Reference or m.Label), or
// "<label>/bundle/<id>" for a bundled file (the file is the slice
// [BundleOffset, BundleOffset+RepoSize) of it). Block-incremental files that are not
// bundled end in ".pgbi" instead of the compression extension.
func (m *Manifest) RepoPath(f *ManifestFile) (string, error) {
	label := m.Label
	if f.Reference != "" {
		label = f.Reference
	}
	if f.BundleID != 0 {
		return BundlePath(label, f.BundleID), nil
	}
	if f.BlockIncrSize != 0 {
		return label + "/" + f.Name + BlockIncrExt, nil
	}
	ext, err := m.Options.CompressType.Ext()
	if err != nil {
		return "", err
	}
	return label + "/" + f.Name + ext, nil
}

// BundlePath returns "<label>/bundle/<id>", relative to backup/<stanza>/.
func BundlePath(label string, id uint64) string {
	return label + "/bundle/" + strconv.FormatUint(id, 10)
}

// BlockIncrExt is the extension of a non-bundled block-incremental file.
const BlockIncrExt = ".pgbi"

// BackupFromManifest returns the backup.info [backup:current] entry for a completed
// manifest, computed as pgBackRest's infoBackupDataAdd() does.
func BackupFromManifest(m *Manifest) (Backup, error) {
	bk := Backup{
		Label:           m.Label,
		BackrestFormat:  RepositoryFormat,
		BackrestVersion: m.BackrestVersion,
		Annotation:      m.Annotation,
		ArchiveStart:    m.ArchiveStart,
		ArchiveStop:     m.ArchiveStop,
		LSNStart:        m.LSNStart,
		LSNStop:         m.LSNStop,
		TimestampStart:  m.TimestampStart,
		TimestampStop:   m.TimestampStop,
		Type:            m.Type,
		DBID:            m.DB.ID,

		OptionArchiveCheck:  m.Options.ArchiveCheck,
		OptionArchiveCopy:   m.Options.ArchiveCopy,
		OptionBackupStandby: m.Options.BackupStandby != nil && *m.Options.BackupStandby,
		OptionChecksumPage:  m.Options.ChecksumPage != nil && *m.Options.ChecksumPage,
		OptionCompress:      m.Options.CompressType != CompressNone,
		OptionHardlink:      m.Options.Hardlink,
		OptionOnline:        m.Options.Online,
	}
	if m.Annotation != nil {
		bk.Annotation = make(map[string]string, len(m.Annotation))
		for k, v := range m.Annotation {
			bk.Annotation[k] = v
		}
	}
	var mapSize, mapDelta uint64
	backupError := false
	for i := range m.Files {
		f := &m.Files[i]
		repoSize := f.RepoSize
		if repoSize == 0 {
			repoSize = f.Size
		}
		bk.Size += f.Size
		bk.RepoSize += repoSize
		mapSize += f.BlockIncrMapSize
		if f.Reference == "" {
			bk.SizeDelta += f.Size
			bk.RepoSizeDelta += repoSize
			mapDelta += f.BlockIncrMapSize
		}
		if f.ChecksumPageError {
			backupError = true
		}
	}
	bk.Error = &backupError
	if m.BlockIncr {
		bk.RepoSizeMap, bk.RepoSizeMapDelta = &mapSize, &mapDelta
	}
	if m.Type != BackupFull {
		refs := slices.Clone(m.Reference)
		slices.Sort(refs)
		if len(refs) == 0 || refs[len(refs)-1] != m.Label {
			return Backup{}, invalidf("backup %s: the newest backup-reference must be the backup itself", m.Label)
		}
		bk.Reference = refs[:len(refs)-1]
		bk.Prior = m.Prior
	}
	return bk, nil
}
