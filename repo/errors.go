package repo

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned while parsing a file is a *ParseError that wraps
// one of ErrFormat or ErrChecksum, so callers can test the class with errors.Is.
var (
	// ErrFormat reports a file that is not a valid pgBackRest info file or manifest:
	// bad syntax, invalid JSON, a missing section or key, a value of the wrong type, or a
	// repository format other than 5.
	ErrFormat = errors.New("invalid repository file format")

	// ErrChecksum reports a file whose backrest-checksum is missing or does not match its
	// content (pgBackRest's ChecksumError).
	ErrChecksum = errors.New("repository file checksum error")

	// ErrInvalid reports a value that cannot be written or a name that does not follow
	// pgBackRest's naming rules (backup labels, WAL file names, archive ids).
	ErrInvalid = errors.New("invalid repository value")

	// ErrClock reports that no backup label later than the newest existing one can be
	// formed from the given time (pgBackRest's ClockError).
	ErrClock = errors.New("backup label is not later than the latest backup label")
)

// ParseError describes a problem found while parsing a repository file. Error() has the
// form "<file>:<line>: <message>".
type ParseError struct {
	// File is the name passed to the parser (usually the repository path of the file).
	File string
	// Line is the 1-based line of the offending entry. Problems of the file as a whole
	// (a missing section, key or checksum) report the last line of the file.
	Line int
	// Kind is ErrFormat or ErrChecksum.
	Kind error
	// Msg describes the problem.
	Msg string
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Unwrap returns Kind, so errors.Is(err, ErrFormat) and errors.Is(err, ErrChecksum) work.
func (e *ParseError) Unwrap() error { return e.Kind }

func formatErrorf(file string, line int, format string, args ...any) *ParseError {
	return &ParseError{File: file, Line: line, Kind: ErrFormat, Msg: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
