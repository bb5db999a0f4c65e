// Package storage defines the object-store contract that every repository
// driver (posix, s3, gcs, azure) implements, the sentinel errors drivers
// translate their failures to, and the decorators (timeouts and stall
// detection, retry, metrics) that wrap any driver.
//
// Keys are flat, slash-separated and relative ("archive/db/archive.info");
// a driver maps them below its configured root (a directory or a key prefix).
// Callers classify failures only with errors.Is against ErrNotExist, ErrExist,
// ErrPermission and ErrInvalid; the driver's own error stays in the chain.
package storage
