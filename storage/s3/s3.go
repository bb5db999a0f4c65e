package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgsidecar/pgsidecar/storage"
)

// maxKeyLen is the longest object key S3 accepts, in bytes.
const maxKeyLen = 1024

// Store is a storage.Store in an S3 bucket, below an optional key prefix.
type Store struct {
	client      *awss3.Client
	transport   *http.Transport
	bucket      string
	prefix      string // "" or the prefix followed by "/"
	partSize    int
	concurrency int
	kmsKeyID    string
	buffers     sync.Pool // of *[]byte with len partSize
}

var _ storage.Store = (*Store)(nil)

// New validates cfg and returns a store for its bucket. Configuration
// errors name the pgBackRest option at fault and match storage.ErrInvalid.
// New does not contact the bucket, which need not exist yet; ctx is used
// only to load the default credential chain for KeyType "auto".
func New(ctx context.Context, cfg Config) (*Store, error) {
	o, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(o)
	if err != nil {
		return nil, err
	}
	creds, err := credentialsProvider(ctx, o)
	if err != nil {
		return nil, err
	}
	awsCfg := aws.Config{
		Region:       o.Region,
		Credentials:  creds,
		HTTPClient:   &http.Client{Transport: tr},
		BaseEndpoint: aws.String(o.baseURL),
		// S3-compatible stores reject or mishandle the flexible checksums the
		// SDK adds by default; TLS protects the payload in transit.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	client := awss3.NewFromConfig(awsCfg, func(so *awss3.Options) {
		so.UsePathStyle = o.pathStyle
	})
	s := &Store{
		client:      client,
		transport:   tr,
		bucket:      o.Bucket,
		partSize:    int(o.PartSize),
		concurrency: o.Concurrency,
		kmsKeyID:    o.KMSKeyID,
	}
	if o.prefix != "" {
		s.prefix = o.prefix + "/"
	}
	return s, nil
}

// objectKey validates key and returns the S3 key it is stored under.
func (s *Store) objectKey(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	k := s.prefix + key
	if len(k) > maxKeyLen {
		return "", fmt.Errorf("key %q is longer than %d bytes with its prefix: %w", key, maxKeyLen, storage.ErrInvalid)
	}
	return k, nil
}

// Get implements storage.Store. A range is sent as a Range header; a range
// that starts at or past the end of an existing object yields no bytes.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	in := &awss3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(k)}
	if !rng.IsZero() {
		if rng.Offset < 0 {
			return nil, fmt.Errorf("get %s: negative offset %d: %w", key, rng.Offset, storage.ErrInvalid)
		}
		r := "bytes=" + strconv.FormatInt(rng.Offset, 10) + "-"
		if rng.Length > 0 {
			r += strconv.FormatInt(rng.Offset+rng.Length-1, 10)
		}
		in.Range = aws.String(r)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if code, status := errorCode(err); in.Range != nil && (code == codeInvalidRange || status == http.StatusRequestedRangeNotSatisfiable) {
			// S3 answers 416 only for an existing object; make sure of it
			// rather than turn some other failure into an empty object.
			if _, serr := s.Stat(ctx, key); serr != nil {
				return nil, serr
			}
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.translate("get", key, err)
	}
	return out.Body, nil
}

// Stat implements storage.Store with HeadObject.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(k)})
	if err != nil {
		return storage.ObjectInfo{}, s.translate("stat", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// List implements storage.Store with ListObjectsV2, whose pages come in
// ascending UTF-8 byte order of keys. Keys ending in "/" (folder markers
// that consoles create) are not objects and are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	p := awss3.NewListObjectsV2Paginator(s.client, &awss3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.translate("list", prefix, err)
		}
		for _, obj := range page.Contents {
			k, ok := strings.CutPrefix(aws.ToString(obj.Key), s.prefix)
			if !ok || k == "" || strings.HasSuffix(k, "/") {
				continue
			}
			if err := fn(storage.ObjectInfo{Key: k, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements storage.Store with DeleteObject, which succeeds for a
// missing key.
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(k)})
	if err != nil {
		if sentinel, bucket := classify(err); errors.Is(sentinel, storage.ErrNotExist) && !bucket {
			return nil
		}
		return s.translate("delete", key, err)
	}
	return nil
}

// Close implements storage.Store: it closes the store's idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
