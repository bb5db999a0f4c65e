package s3

import (
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/pgsidecar/pgsidecar/storage"
)

// S3 error codes this driver acts on (the Code element of an S3 error, or
// the code the SDK derives from the status of a body-less HEAD response).
const (
	codeNoSuchBucket        = "NoSuchBucket"
	codeNoSuchKey           = "NoSuchKey"
	codeNotFound            = "NotFound"
	codeNoSuchUpload        = "NoSuchUpload"
	codeAccessDenied        = "AccessDenied"
	codePreconditionFailed  = "PreconditionFailed"
	codeConditionalConflict = "ConditionalRequestConflict"
	codeInvalidRange        = "InvalidRange"
	codeKeyTooLong          = "KeyTooLongError"
	codeInvalidBucketName   = "InvalidBucketName"
)

// errorCode returns the S3 error code and HTTP status carried by err, or ""
// and 0 when err is not a service response (a network or context error).
func errorCode(err error) (code string, status int) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	return code, status
}

// classify maps an SDK error to the storage sentinel it stands for, or nil.
// bucket reports that the sentinel is about the bucket, not the object.
func classify(err error) (sentinel error, bucket bool) {
	code, status := errorCode(err)
	switch {
	case code == codeNoSuchBucket:
		return storage.ErrNotExist, true
	case code == codeNoSuchUpload:
		// The multipart upload vanished (aborted elsewhere, lifecycle rule):
		// the Put failed, the object's existence says nothing.
		return nil, false
	case code == codeNoSuchKey || code == codeNotFound || status == http.StatusNotFound:
		return storage.ErrNotExist, false
	case code == codeAccessDenied || status == http.StatusForbidden:
		return storage.ErrPermission, false
	case code == codePreconditionFailed || status == http.StatusPreconditionFailed:
		return storage.ErrExist, false
	case code == codeKeyTooLong || code == codeInvalidBucketName:
		return storage.ErrInvalid, false
	}
	return nil, false
}

// translate wraps err from operation op on key (a key relative to the store)
// so that errors.Is matches the storage sentinel it stands for, keeping the
// SDK error in the chain. A missing bucket is named in the message.
func (s *Store) translate(op, key string, err error) error {
	sentinel, bucket := classify(err)
	switch {
	case sentinel == nil:
		return fmt.Errorf("%s %s: %w", op, key, err)
	case bucket:
		return fmt.Errorf("%s %s: bucket %q: %w: %w", op, key, s.bucket, sentinel, err)
	default:
		return fmt.Errorf("%s %s: %w: %w", op, key, sentinel, err)
	}
}
