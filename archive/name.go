package archive

import (
	"fmt"
	"strings"
)

// Kind is the kind of file PostgreSQL archives.
type Kind int

// The kinds of WAL file names.
const (
	// Segment is a WAL segment: 24 hexadecimal digits (timeline, log, segment).
	Segment Kind = iota + 1
	// Partial is the last, incomplete segment of a timeline that PostgreSQL
	// archives at promotion: a segment name followed by ".partial".
	Partial
	// History is a timeline history file: 8 hexadecimal digits followed by ".history".
	History
	// BackupHistory is a backup history file: a segment name, "." then 8
	// hexadecimal digits of the start offset, then ".backup".
	BackupHistory
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Segment:
		return "segment"
	case Partial:
		return "partial segment"
	case History:
		return "timeline history file"
	case BackupHistory:
		return "backup history file"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// IsSegment reports whether files of kind k are segments (full or partial):
// they are compressed, named with their SHA-1, and never overwritten.
func (k Kind) IsSegment() bool { return k == Segment || k == Partial }

// segmentNameSize is the length of a segment name.
const segmentNameSize = 24

// isHex reports whether s is made of uppercase hexadecimal digits, the only
// ones PostgreSQL writes in WAL file names.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// ParseName classifies a WAL file name (a base name, not a path). Anything
// that is not one of the four kinds gives an error that wraps
// ErrInvalidName, with exit code 96.
//
// The grammar is that of PostgreSQL's names. It is stricter than pgBackRest's
// expressions, whose class [0-F] also matches ':' to '@' and whose
// "^[0-F]{8}.history$" lets the dot match any character, including a slash.
// Such names are never produced by PostgreSQL. A name that reaches the
// daemon over a socket must not be able to name another path.
func ParseName(name string) (Kind, error) {
	switch {
	case len(name) == segmentNameSize && isHex(name):
		return Segment, nil
	case len(name) == segmentNameSize+len(".partial") && isHex(name[:segmentNameSize]) &&
		name[segmentNameSize:] == ".partial":
		return Partial, nil
	case len(name) == 8+len(".history") && isHex(name[:8]) && name[8:] == ".history":
		return History, nil
	case len(name) == segmentNameSize+1+8+len(".backup") && isHex(name[:segmentNameSize]) &&
		name[segmentNameSize] == '.' && isHex(name[segmentNameSize+1:segmentNameSize+9]) &&
		strings.HasSuffix(name, ".backup"):
		return BackupHistory, nil
	}
	return 0, withCode(CodeParamInvalid, fmt.Errorf("%q: %w", name, ErrInvalidName))
}
