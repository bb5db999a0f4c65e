// Package azure is the storage driver for Azure Blob Storage (and the
// Azurite emulator), configured from pgBackRest's repoN-azure-* and
// repoN-storage-* options.
//
// Objects are block blobs named Prefix + "/" + key in one container. Put
// streams its input in blocks of Config.BlockSize, at most Config.Concurrency
// of them in memory and in flight, and makes them visible with a single Put
// Block List at the end (an object that fits in one block is sent with one
// Put Blob), so a failed or cancelled Put never changes what readers see;
// staged blocks that are never committed are discarded by the service.
// PutIfAbsent sends If-None-Match: * with that final request, which the
// service evaluates atomically. Failures are translated to the storage
// sentinels with errors.As on *azcore.ResponseError; the SDK error stays in
// the chain.
//
// The account key and SAS token are never logged, and SAS signatures are
// removed from the URLs that transport errors quote.
package azure
