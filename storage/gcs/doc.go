// Package gcs is the storage driver for Google Cloud Storage (repo-type=gcs)
// and for GCS-compatible emulators such as fake-gcs-server.
//
// It speaks the GCS JSON API with net/http and encoding/json only, as
// pgBackRest does in C: the Google Cloud SDK would cost every process start
// (archive_command and restore_command run the binary once per WAL segment)
// the initialisation of gRPC, OpenTelemetry and their generated code.
//
// Objects live in one bucket below an optional name prefix (the repository
// path): the key "archive/db/archive.info" of a store with Prefix
// "var/lib/pgbackrest" is the object "var/lib/pgbackrest/archive/db/archive.info",
// the layout pgBackRest uses.
//
// Put buffers at most one chunk of Config.ChunkSize bytes. An object that
// fits one chunk goes up in a single multipart request; a larger one in a
// resumable upload session, one chunk per PUT with its Content-Range, the
// last of which commits the object. So an object becomes visible complete or
// not at all: a failed or cancelled Put never sends the last chunk (and
// cancels its session). A single-request upload declares its CRC32C, which
// the service checks before it commits the object, and every upload checks
// the size and CRC32C the service reports. PutIfAbsent adds the precondition
// ifGenerationMatch=0, which the service checks when the object is
// committed; "412 Precondition Failed" is storage.ErrExist. Upload requests,
// whose source the caller may be unable to replay, are retried here on
// network errors, 408, 429 and 5xx; other requests are left to the retry
// decorator.
//
// Authentication follows pgBackRest's repo-gcs-key-type: "service" (a
// service-account JSON key file: an RS256-signed JWT exchanged at the key's
// token_uri for an access token), "token" (a fixed OAuth access token) and
// "auto" (the access token of the GCE/GKE metadata server, which is how GKE
// workload identity is used). Fetched tokens are cached until shortly before
// they expire. The additional type "none" sends no credentials at all; it
// exists for emulators and public buckets. Credentials are never sent over
// plain HTTP: an http:// endpoint is accepted only with key type "none".
// Keys, tokens and upload session ids are never logged or put in errors.
//
// HTTP 404 is storage.ErrNotExist, 401 and 403 are storage.ErrPermission;
// every other failure names the bucket, the object and the HTTP status.
package gcs
