// Package archive implements WAL archiving in pgBackRest 2.45's repository
// format: what archive-push and archive-get do for one file, synchronously.
// The commands run it directly and the sidecar daemon calls it for every file.
//
// A push reads the local file once. For a segment (or a .partial segment) it
// checks the long page header against the stanza and computes the SHA-1 and
// the compressed form in one pass, with the hash on a second core. The
// compressed bytes are held once, in a pooled buffer. Then every repository
// gets its copy concurrently, encrypted as it is uploaded with that
// repository's archive sub-passphrase, under
//
//	archive/<stanza>/<archive id>/<first 16 characters>/<segment>-<sha1><ext>
//
// Before the upload each repository is listed for the segment. The same SHA-1
// already there makes that repository succeed without writing. A different
// one refuses the push everywhere (DuplicateError, exit code 45), and nothing
// is overwritten. Timeline history and backup history files are stored whole,
// uncompressed and encrypted, under their own name, and a new push replaces
// them. Errors are collected per repository: every repository that works gets
// the file, and the push still fails (PushError, code 104) so that PostgreSQL
// keeps the file and retries.
//
// Get searches every repository for a file. It looks in each archive id that
// belongs to the cluster, newest first, and refuses conflicting copies. It
// tries the copies in repository order and verifies a segment's SHA-1 after
// decrypting and decompressing it. It writes the destination atomically. A
// file found nowhere gives ErrNotFound, which restore_command reports with
// exit code 1.
//
// Prefetcher is pgBackRest's asynchronous archive-get for the daemon: a
// request for segment N starts fetching the segments after it (through
// Get, so verified and written atomically) into a local queue bounded in
// bytes, and the next requests are moved from there.
//
// Errors that carry a pgBackRest exit code implement Code() int. Every code is
// between 1 and 125, as PostgreSQL's archive_command and restore_command
// contracts require.
package archive
