package s3

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"strings"
)

// Bucket administration, beyond storage.Store: for tests and set-up tools
// (pgBackRest's repository commands never create or delete buckets). Keys
// and prefixes are relative to the store's prefix, as in storage.Store.

// CreateBucket creates the store's bucket, in the store's region. A bucket
// that the caller already owns is not an error. Transient failures (a
// server still starting answers 503) are retried a few times.
func (s *Store) CreateBucket(ctx context.Context) error {
	r := request{method: http.MethodPut, hashBody: true}
	if s.region != "us-east-1" {
		body, err := xml.Marshal(struct {
			XMLName            xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CreateBucketConfiguration"`
			LocationConstraint string   `xml:"LocationConstraint"`
		}{LocationConstraint: s.region})
		if err != nil {
			return err
		}
		r.body = body
	}
	err := withRetries(ctx, func() error {
		resp, err := s.do(ctx, r)
		if err == nil {
			discard(resp)
		}
		return err
	})
	if err != nil {
		if code, _ := errorCode(err); code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return s.translateBucket("create bucket", err)
	}
	return nil
}

// DeleteBucket deletes the store's bucket, which must be empty.
func (s *Store) DeleteBucket(ctx context.Context) error {
	err := withRetries(ctx, func() error {
		resp, err := s.do(ctx, request{method: http.MethodDelete})
		if err == nil {
			discard(resp)
		}
		return err
	})
	if err != nil {
		return s.translateBucket("delete bucket", err)
	}
	return nil
}

// Upload is a multipart upload in progress.
type Upload struct {
	// Key is the object key relative to the store's prefix.
	Key string
	// ID is the upload id.
	ID string
}

// Uploads lists the multipart uploads in progress under prefix.
func (s *Store) Uploads(ctx context.Context, prefix string) ([]Upload, error) {
	var out []Upload
	query := map[string]string{"uploads": "", "prefix": s.prefix + prefix}
	for {
		var page struct {
			IsTruncated        bool   `xml:"IsTruncated"`
			NextKeyMarker      string `xml:"NextKeyMarker"`
			NextUploadIDMarker string `xml:"NextUploadIdMarker"`
			Upload             []struct {
				Key      string `xml:"Key"`
				UploadID string `xml:"UploadId"`
			} `xml:"Upload"`
		}
		if err := s.getXML(ctx, request{method: http.MethodGet, query: query}, &page); err != nil {
			return nil, s.translate("list uploads under", prefix, err)
		}
		for _, u := range page.Upload {
			if k, ok := strings.CutPrefix(u.Key, s.prefix); ok {
				out = append(out, Upload{Key: k, ID: u.UploadID})
			}
		}
		if !page.IsTruncated {
			return out, nil
		}
		if page.NextKeyMarker == "" && page.NextUploadIDMarker == "" {
			return nil, s.translate("list uploads under", prefix, errors.New("a truncated ListMultipartUploads page has no markers"))
		}
		query["key-marker"], query["upload-id-marker"] = page.NextKeyMarker, page.NextUploadIDMarker
	}
}

// AbortUpload aborts a multipart upload; an upload that no longer exists is
// not an error.
func (s *Store) AbortUpload(ctx context.Context, u Upload) error {
	if err := s.abort(ctx, s.prefix+u.Key, u.ID); err != nil {
		return s.translate("abort multipart upload of", u.Key, err)
	}
	return nil
}

// translateBucket is translate for a request on the bucket itself.
func (s *Store) translateBucket(op string, err error) error {
	return s.translate(op, "", err)
}
