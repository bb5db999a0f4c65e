package s3

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pgsidecar/pgsidecar/storage"
)

// S3 error codes this driver acts on (the Code element of an S3 error
// answer; a HEAD answer has no body, only its status).
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

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// ResponseError is an error answer of the S3 service: its HTTP status and,
// when the answer had an XML body, the S3 error code, message and request
// id. The driver's errors keep it in their chain beside the storage
// sentinel it maps to.
type ResponseError struct {
	// StatusCode is the HTTP status (200 for an error inside a successful
	// CompleteMultipartUpload answer).
	StatusCode int
	// Code is the S3 error code ("NoSuchKey", "SlowDown"), "" without a body.
	Code string
	// Message is the service's explanation, "" without a body.
	Message string
	// RequestID is the x-amz-request-id of the answer, for support cases.
	RequestID string
}

func (e *ResponseError) Error() string {
	var b strings.Builder
	b.WriteString("HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		b.WriteByte(' ')
		b.WriteString(e.Code)
	} else if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id ")
		b.WriteString(e.RequestID)
		b.WriteByte(')')
	}
	return b.String()
}

// errorBody is the XML body of an S3 error answer.
type errorBody struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	RequestID string   `xml:"RequestId"`
}

// responseError reads (a bounded part of) resp's body, closes it and
// returns the error it reports.
func responseError(resp *http.Response) *ResponseError {
	e := &ResponseError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Amz-Request-Id")}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	var eb errorBody
	if len(body) > 0 && xml.Unmarshal(body, &eb) == nil {
		e.Code, e.Message = eb.Code, eb.Message
		if eb.RequestID != "" {
			e.RequestID = eb.RequestID
		}
	}
	return e
}

// errorCode returns the S3 error code and HTTP status carried by err, or ""
// and 0 when err is not a service answer (a network or context error).
func errorCode(err error) (code string, status int) {
	var re *ResponseError
	if errors.As(err, &re) {
		return re.Code, re.StatusCode
	}
	return "", 0
}

// classify maps an error to the storage sentinel it stands for, or nil.
// bucket reports that the sentinel is about the bucket, not the object.
// Everything else (5xx, SlowDown, RequestTimeout, network errors) is left
// without a sentinel, for the retry decorator to retry.
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

// translate wraps err from operation op on key (a key or prefix relative to
// the store) so that errors.Is matches the storage sentinel it stands for,
// keeping the service's error in the chain. The message names the bucket
// and the full object key; a missing bucket is said to be one.
func (s *Store) translate(op, key string, err error) error {
	if ue, ok := err.(*url.Error); ok { //nolint:errorlint // only the HTTP client's own outer wrapper
		// Drop the client's "Get <url>": the object is named below.
		err = ue.Err
	}
	obj := "s3://" + s.bucket + "/" + s.prefix + key
	sentinel, bucket := classify(err)
	switch {
	case sentinel == nil:
		return fmt.Errorf("%s %s: %w", op, obj, err)
	case bucket:
		return fmt.Errorf("%s %s: bucket %q: %w: %w", op, obj, s.bucket, sentinel, err)
	default:
		return fmt.Errorf("%s %s: %w: %w", op, obj, sentinel, err)
	}
}
