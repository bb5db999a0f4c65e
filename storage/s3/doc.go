// Package s3 is the storage driver for Amazon S3 and S3-compatible object
// stores (MinIO, Ceph RGW, ...), configured like a pgBackRest repository of
// repo-type s3.
//
// It speaks S3's REST API itself, as pgBackRest does, over net/http with
// encoding/xml and its own AWS Signature Version 4 (no AWS SDK, whose
// package initialisation would cost every archive_command process several
// milliseconds). Bodies of object data are signed as UNSIGNED-PAYLOAD over
// TLS and by their SHA-256 over plain HTTP. Credentials follow
// repo-s3-key-type: static keys, the EC2 instance role (instance metadata
// service, IMDSv2) or a web identity (STS AssumeRoleWithWebIdentity, as EKS
// sets it up); temporary ones are cached and renewed before they expire.
//
// Objects live under an optional key prefix (repoN-path without its leading
// slash). Put streams its input: an object that fits one part is stored with
// a single PutObject, a larger one with a multipart upload that holds at most
// Config.Concurrency parts of Config.PartSize bytes in memory and that is
// aborted when the upload fails or is cancelled, so a partial object is never
// visible. PutIfAbsent adds If-None-Match: * to the final request. Failures
// are translated to the storage sentinels with the service's *ResponseError
// (status, S3 error code) kept beside them; answers without a sentinel
// (5xx, SlowDown, network errors) are left for the retry decorator.
package s3
