package archive

import (
	"errors"
	"fmt"
	"strings"
)

// pgBackRest error codes (src/build/error/error.yaml) that this package
// returns; each is also the exit code of the command.
const (
	CodeFormat          = 29  // FormatError: a WAL header that cannot be parsed
	CodeOptionRequired  = 37  // OptionRequiredError
	CodeFileOpen        = 41  // FileOpenError: the local file cannot be opened
	CodeFileRead        = 42  // FileReadError: no copy of a file could be read
	CodeArchiveMismatch = 44  // ArchiveMismatchError: the WAL or repository belongs to another cluster
	CodeArchiveDup      = 45  // ArchiveDuplicateError: a segment is archived with other content
	CodeFileMissing     = 55  // FileMissingError: the local file does not exist
	CodeFileWrite       = 64  // FileWriteError: the destination cannot be written
	CodeParamInvalid    = 96  // ParamInvalidError: not a WAL file name
	CodeRepoInvalid     = 103 // RepoInvalidError: no repository is usable
	CodeCommand         = 104 // CommandError: some repositories failed
)

// Sentinel errors.
var (
	// ErrNotFound reports that Get found the file in no repository. The
	// restore_command then exits with 1, which ends recovery cleanly.
	ErrNotFound = errors.New("not found in the archive")
	// ErrInvalidName reports a name that is not a WAL segment, partial
	// segment, timeline history or backup history file name.
	ErrInvalidName = errors.New("not a WAL file name")
)

// codedError is an error with a pgBackRest error code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// Code returns the pgBackRest error code, the command's exit code.
func (e *codedError) Code() int { return e.code }

// withCode attaches code to err.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: code, err: err}
}

// mismatchf returns an ArchiveMismatchError.
func mismatchf(format string, args ...any) error {
	return withCode(CodeArchiveMismatch, fmt.Errorf(format, args...))
}

// DuplicateError is pgBackRest's ArchiveDuplicateError (code 45). Push
// returns it when a repository already holds the segment with a different
// SHA-1, and then it writes nothing anywhere. Get returns it when the copies
// of a segment across repositories and archive ids differ.
type DuplicateError struct {
	// WAL is the file name, e.g. 000000010000000000000005.
	WAL string
	// Repo is the repository that holds the other content (push).
	Repo string
	// Archived is the SHA-1 of the archived content and Pushed that of the
	// file being pushed (push).
	Archived, Pushed string
	// Matches lists the conflicting copies as "repoN: <archive path>" (get).
	Matches []string
}

// Error implements error.
func (e *DuplicateError) Error() string {
	if len(e.Matches) > 0 {
		return fmt.Sprintf("duplicates found for WAL segment %s: %s\nHINT: are multiple primaries archiving to this stanza?",
			e.WAL, strings.Join(e.Matches, ", "))
	}
	return fmt.Sprintf("WAL file '%s' already exists in the %s archive with a different checksum (archived %s, pushed %s)",
		e.WAL, e.Repo, e.Archived, e.Pushed)
}

// Code returns 45.
func (e *DuplicateError) Code() int { return CodeArchiveDup }

// RepoError is the failure of one repository.
type RepoError struct {
	// Repo is the repository name, e.g. "repo2".
	Repo string
	// Err is what went wrong.
	Err error
}

// Error implements error: "repoN: <problem>".
func (e RepoError) Error() string { return repoPrefixed(e.Repo, e.Err) }

// Unwrap returns Err.
func (e RepoError) Unwrap() error { return e.Err }

// repoPrefixed formats err after the repository name, unless the message
// already starts with it (the repo package names the repository itself).
func repoPrefixed(name string, err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, name+":") || strings.HasPrefix(msg, name+" ") {
		return msg
	}
	return name + ": " + msg
}

// PushError reports repositories that did not receive a file. With
// NoneUsable it means no repository could be used at all: pgBackRest's
// RepoInvalidError, code 103. Otherwise every other repository received the
// file, and the error is CommandError, code 104. PostgreSQL keeps the file in
// both cases and retries. A retry skips the repositories that already hold
// the file.
type PushError struct {
	// WAL is the file name.
	WAL string
	// Repos lists the failed repositories in configuration order.
	Repos []RepoError
	// NoneUsable reports that no repository was usable.
	NoneUsable bool
}

// Error implements error.
func (e *PushError) Error() string {
	var b strings.Builder
	if e.NoneUsable {
		b.WriteString("unable to find a valid repository:")
	} else {
		b.WriteString("archive-push command encountered error(s):")
	}
	for _, r := range e.Repos {
		b.WriteString("\n")
		b.WriteString(r.Error())
	}
	return b.String()
}

// Code returns 103 or 104.
func (e *PushError) Code() int {
	if e.NoneUsable {
		return CodeRepoInvalid
	}
	return CodeCommand
}

// Unwrap returns each repository's error, so that errors.Is finds causes
// such as storage.ErrPermission.
func (e *PushError) Unwrap() []error {
	errs := make([]error, len(e.Repos))
	for i, r := range e.Repos {
		errs[i] = r
	}
	return errs
}
