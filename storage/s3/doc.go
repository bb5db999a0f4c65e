// Package s3 is the storage driver for Amazon S3 and S3-compatible object
// stores (MinIO, Ceph RGW, ...), configured like a pgBackRest repository of
// repo-type s3.
//
// Objects live under an optional key prefix (repoN-path without its leading
// slash). Put streams its input: an object that fits one part is stored with
// a single PutObject, a larger one with a multipart upload that holds at most
// Config.Concurrency parts of Config.PartSize bytes in memory and that is
// aborted when the upload fails or is cancelled, so a partial object is never
// visible. PutIfAbsent adds If-None-Match: * to the final request. Failures
// are translated to the storage sentinels with the SDK error kept beside them.
package s3
