// Package azure is the storage driver for Azure Blob Storage (and the
// Azurite emulator), configured from pgBackRest's repoN-azure-* and
// repoN-storage-* options.
//
// It speaks the Blob service REST API (x-ms-version 2021-08-06) with
// net/http and encoding/xml, as pgBackRest does in C, rather than through
// the Azure SDK, whose package initialisation (with the Apache Arrow and
// other packages it pulls in) cost about 2 ms of CPU per process start:
// archive-push and archive-get run once per WAL segment. Requests are authorized with Shared Key (an HMAC-SHA256
// of the canonicalized request under the account key, key type "shared")
// or carry a SAS token in their query (key type "sas").
//
// Objects are block blobs named Prefix + "/" + key in one container. Put
// streams its input in blocks of Config.BlockSize, at most Config.Concurrency
// of them in memory and in flight, and makes them visible with a single Put
// Block List at the end (an object that fits in one block is sent with one
// Put Blob), so a failed or cancelled Put never changes what readers see;
// staged blocks that are never committed are discarded by the service.
// PutIfAbsent sends If-None-Match: * with that final request, which the
// service evaluates atomically. Error answers are *ResponseError values,
// naming the container, blob, HTTP status and x-ms-error-code, that match
// the storage sentinels (404 ErrNotExist, 401/403 ErrPermission, a refused
// conditional create ErrExist); anything else, such as a 5xx or a broken
// connection, stays transient to the retry decorator.
//
// The account key and SAS token are never logged or put in errors, and SAS
// signatures are removed from the URLs that transport errors quote.
package azure
