// Package repo implements the pgBackRest 2.45 repository format (repository format 5) as
// pure, I/O-free Go: it parses and renders the bytes of the files and computes the names
// and paths, and leaves reading, writing, compression and encryption to its callers.
//
// The files:
//
//   - The info-file codec: ParseInfo and Document.Render implement pgBackRest's "strict
//     INI" with JSON values (src/common/ini.c, src/info/info.c), including the
//     backrest-checksum (a SHA-1 over a JSON rendering of every key/value), the JSON
//     dialect of src/common/type/json.c and the byte-exact layout pgBackRest writes.
//   - archive.info (ArchiveInfo), backup.info (BackupInfo) and backup.manifest
//     (Manifest), each with Load* (from decrypted bytes) and Save (to bytes). Saving a
//     file that pgBackRest 2.45 wrote reproduces it byte for byte.
//   - Naming: WAL segment grammar and repository names (ArchivePath, WALRepoFileName,
//     ParseWALRepoFileName), archive ids, backup labels (FormatBackupLabel,
//     NextBackupLabel) and backup.history paths.
//
// Every parse error is a *ParseError naming the file and line, wrapping ErrFormat or
// ErrChecksum. The parsers are linear in the input size and never panic. Nothing here
// reads the clock or the environment: times are arguments.
//
// Paths returned by this package are relative and use '/': archive paths are relative to
// archive/<stanza>/ and backup paths to backup/<stanza>/ (see StanzaArchivePath and
// StanzaBackupPath).
package repo
