// Package pg reads the facts pgsidecar needs from a PostgreSQL data
// directory and its WAL without a database connection: the major version
// (PG_VERSION), the system identifier and catalog numbers (global/pg_control),
// and the long page header of a WAL segment (system identifier and version
// of the cluster that wrote it). It supports PostgreSQL 13 to 17.
package pg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrUnsupported reports a PostgreSQL version pgsidecar does not support.
var ErrUnsupported = errors.New("unsupported PostgreSQL version")

// Control holds the fields of pg_control that a repository records.
type Control struct {
	// SystemID is the cluster's system identifier (db-system-id).
	SystemID uint64
	// ControlVersion is pg_control_version (db-control-version).
	ControlVersion uint32
	// CatalogVersion is catalog_version_no (db-catalog-version).
	CatalogVersion uint32
}

// version facts of each supported major version: the pg_control and
// catalog version numbers it writes and the magic of its WAL pages.
type versionInfo struct {
	major          int
	controlVersion uint32
	walMagic       uint16
}

func versions() []versionInfo {
	return []versionInfo{
		{13, 1300, 0xD106},
		{14, 1300, 0xD10D},
		{15, 1300, 0xD110},
		{16, 1300, 0xD113},
		{17, 1700, 0xD116},
	}
}

// ReadVersion returns the major version in dataDir/PG_VERSION ("15").
func ReadVersion(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return "", fmt.Errorf("read PostgreSQL version: %w", err)
	}
	v := strings.TrimSpace(string(b))
	major, err := strconv.Atoi(v)
	if err != nil {
		return "", fmt.Errorf("%s: %q is not a PostgreSQL major version", filepath.Join(dataDir, "PG_VERSION"), v)
	}
	if _, ok := versionByMajor(major); !ok {
		return "", fmt.Errorf("%s: PostgreSQL %d: %w (pgsidecar supports 13 to 17)", filepath.Join(dataDir, "PG_VERSION"), major, ErrUnsupported)
	}
	return v, nil
}

func versionByMajor(major int) (versionInfo, bool) {
	for _, v := range versions() {
		if v.major == major {
			return v, true
		}
	}
	return versionInfo{}, false
}

// ReadControl reads dataDir/global/pg_control.
func ReadControl(dataDir string) (Control, error) {
	name := filepath.Join(dataDir, "global", "pg_control")
	f, err := os.Open(name)
	if err != nil {
		return Control{}, fmt.Errorf("read pg_control: %w", err)
	}
	defer f.Close()
	var b [16]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return Control{}, fmt.Errorf("read %s: %w", name, err)
	}
	return ParseControl(b[:], name)
}

// ParseControl decodes the start of a pg_control file; name is used in
// errors. The fields it reads are at the same offsets in every version.
func ParseControl(b []byte, name string) (Control, error) {
	if len(b) < 16 {
		return Control{}, fmt.Errorf("%s: %d bytes is too short for pg_control", name, len(b))
	}
	c := Control{
		SystemID:       binary.LittleEndian.Uint64(b[0:8]),
		ControlVersion: binary.LittleEndian.Uint32(b[8:12]),
		CatalogVersion: binary.LittleEndian.Uint32(b[12:16]),
	}
	if c.ControlVersion != 1300 && c.ControlVersion != 1700 {
		return Control{}, fmt.Errorf("%s: pg_control version %d: %w", name, c.ControlVersion, ErrUnsupported)
	}
	return c, nil
}

// WALHeader is what the first (long) page header of a WAL segment says.
type WALHeader struct {
	// Version is the major version of the cluster that wrote the segment.
	Version string
	// SystemID is the writer's system identifier.
	SystemID uint64
	// Timeline is the page's timeline.
	Timeline uint32
	// SegmentSize is the WAL segment size in bytes.
	SegmentSize uint32
}

// walLongHeaderSize is the size of XLogLongPageHeaderData on 64-bit builds.
const walLongHeaderSize = 40

// xlpLongHeader is the xlp_info flag of a long page header.
const xlpLongHeader = 0x0002

// ParseWALHeader decodes the long page header at the start of a WAL
// segment; name is used in errors.
func ParseWALHeader(b []byte, name string) (WALHeader, error) {
	if len(b) < walLongHeaderSize {
		return WALHeader{}, fmt.Errorf("%s: %d bytes is too short for a WAL segment header", name, len(b))
	}
	magic := binary.LittleEndian.Uint16(b[0:2])
	info := binary.LittleEndian.Uint16(b[2:4])
	var ver versionInfo
	found := false
	for _, v := range versions() {
		if v.walMagic == magic {
			ver, found = v, true
			break
		}
	}
	if !found {
		return WALHeader{}, fmt.Errorf("%s: WAL page magic 0x%04X: %w or not a WAL segment", name, magic, ErrUnsupported)
	}
	if info&xlpLongHeader == 0 {
		return WALHeader{}, fmt.Errorf("%s: the first WAL page has no long header (xlp_info 0x%04X)", name, info)
	}
	return WALHeader{
		Version:     strconv.Itoa(ver.major),
		Timeline:    binary.LittleEndian.Uint32(b[4:8]),
		SystemID:    binary.LittleEndian.Uint64(b[24:32]),
		SegmentSize: binary.LittleEndian.Uint32(b[32:36]),
	}, nil
}
