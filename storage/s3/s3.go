package s3

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// maxKeyLen is the longest object key S3 accepts, in bytes.
const maxKeyLen = 1024

// expectContinueSize is the body size from which a request asks for
// "100-continue", so that a refusal (412, 403) comes before the body is sent.
const expectContinueSize = 2 << 20

// Store is a storage.Store in an S3 bucket, below an optional key prefix.
type Store struct {
	client      *http.Client
	transport   *http.Transport
	creds       credentialSource
	now         func() time.Time
	region      string
	scheme      string // "https" or "http"
	host        string // host[:port] of request URLs: the endpoint, or bucket.endpoint
	pathStyle   bool   // the bucket is the first element of the path
	signPayload bool   // sign the SHA-256 of bodies (plain HTTP); else UNSIGNED-PAYLOAD
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
// New does not contact the bucket, which need not exist yet, nor any
// credential service: temporary credentials are fetched by the first
// request. ctx is not kept.
func New(ctx context.Context, cfg Config) (*Store, error) {
	o, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(o)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(o.baseURL)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", o.opt("s3-endpoint"), o.Endpoint, storage.ErrInvalid)
	}
	s := &Store{
		client:      &http.Client{Transport: tr},
		transport:   tr,
		creds:       newCredentialSource(o),
		now:         o.now,
		region:      o.Region,
		scheme:      base.Scheme,
		host:        base.Host,
		pathStyle:   o.pathStyle || !virtualHostable(o.Bucket, base.Hostname(), base.Scheme == "https"),
		signPayload: base.Scheme == "http",
		bucket:      o.Bucket,
		partSize:    int(o.PartSize),
		concurrency: o.Concurrency,
		kmsKeyID:    o.KMSKeyID,
	}
	if !s.pathStyle {
		s.host = o.Bucket + "." + base.Host
	}
	if o.prefix != "" {
		s.prefix = o.prefix + "/"
	}
	return s, nil
}

// virtualHostable reports whether requests may name the bucket in the
// host name (host-style URIs): not when the endpoint is an IP address, nor
// for a bucket name that is not a DNS label sequence (or, over TLS, that
// has dots, which the endpoint's wildcard certificate does not cover).
// Such buckets are reached with path-style URIs instead.
func virtualHostable(bucket, endpointHost string, tls bool) bool {
	if net.ParseIP(endpointHost) != nil {
		return false
	}
	if len(bucket) < 3 || len(bucket) > 63 || (tls && strings.Contains(bucket, ".")) {
		return false
	}
	for _, label := range strings.Split(bucket, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
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

// objectURL returns the URL of the S3 key k ("" for the bucket itself),
// its path escaped as signed.
func (s *Store) objectURL(k string) *url.URL {
	p := "/" + k
	if s.pathStyle {
		p = "/" + s.bucket + p
	}
	return &url.URL{Scheme: s.scheme, Host: s.host, Path: p, RawPath: encodePath(p)}
}

// request is one S3 request.
type request struct {
	method string
	key    string            // S3 key, "" for a bucket request
	query  map[string]string // query parameters
	header http.Header       // extra headers, signed
	body   []byte            // nil: no body
	// hashBody signs the SHA-256 of the body even over TLS (small XML
	// bodies); object data is signed only over plain HTTP.
	hashBody bool
}

// do signs and sends r. It returns the answer of a 2xx status, whose body
// the caller must close; any other status is returned as a *ResponseError
// with the body consumed.
func (s *Store) do(ctx context.Context, r request) (*http.Response, error) {
	c, err := s.creds.retrieve(ctx)
	if err != nil {
		return nil, err
	}
	u := s.objectURL(r.key)
	u.RawQuery = canonicalQuery(r.query)
	var (
		body    io.Reader
		bodySrc *bodySource
	)
	switch {
	case len(r.body) > 0:
		bodySrc = &bodySource{data: r.body}
		body, _ = bodySrc.reader()
	case r.body != nil:
		body = http.NoBody // sent with Content-Length: 0
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if bodySrc != nil {
		// Lets the transport resend the body on a fresh connection when a
		// pooled one turned out to be closed before anything was written.
		req.GetBody = bodySrc.reader
	}
	// NewRequest parses the URL again: keep the exact escaping signed.
	req.URL = u
	req.Host = u.Host
	for k, v := range r.header {
		req.Header[k] = v
	}
	payload := emptySHA256
	switch {
	case len(r.body) == 0:
	case s.signPayload || r.hashBody:
		payload = sha256Hex(r.body)
	default:
		payload = unsignedPayload
	}
	if r.body != nil {
		req.ContentLength = int64(len(r.body))
		if len(r.body) >= expectContinueSize {
			req.Header.Set("Expect", "100-continue")
		}
	}
	signRequest(req, c, s.region, "s3", payload, s.now())
	resp, err := s.client.Do(req)
	if err != nil {
		bodySrc.wait()
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		rerr := responseError(resp)
		bodySrc.wait()
		return nil, rerr
	}
	return resp, nil
}

// bodySource hands out the readers of a request body held in memory and
// tells when the transport has closed them all. After a failed request the
// transport may still be writing a body from its own goroutine; the caller
// waits for the close before it sends the buffer again or reuses it for
// other data.
type bodySource struct {
	data    []byte
	mu      sync.Mutex
	readers []*trackedBody
}

// trackedBody is one reader of a bodySource.
type trackedBody struct {
	*bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// reader returns a new reader of the body (http.Request.GetBody).
func (b *bodySource) reader() (io.ReadCloser, error) {
	t := &trackedBody{Reader: bytes.NewReader(b.data), closed: make(chan struct{})}
	b.mu.Lock()
	b.readers = append(b.readers, t)
	b.mu.Unlock()
	return t, nil
}

// bodyCloseWait bounds the wait for the transport to close a failed
// request's body (it closes it as soon as its connection is dropped).
const bodyCloseWait = 30 * time.Second

// wait waits until the transport has closed every reader, or bodyCloseWait.
func (b *bodySource) wait() {
	if b == nil {
		return
	}
	b.mu.Lock()
	readers := append([]*trackedBody(nil), b.readers...)
	b.mu.Unlock()
	t := time.NewTimer(bodyCloseWait)
	defer t.Stop()
	for _, r := range readers {
		select {
		case <-r.closed:
		case <-t.C:
			return
		}
	}
}

// Transient failures of the requests whose body the driver holds in memory
// (PutObject, and the requests of a multipart upload) are retried here,
// because the retry decorator cannot replay a stream the driver has already
// consumed: up to bodyAttempts attempts with jittered, growing waits. Other
// requests are left to the decorator.
const (
	bodyAttempts = 3
	bodyBackoff  = 250 * time.Millisecond
)

// transient reports a failure that another attempt of the same request
// may not meet: a network error, 5xx, 429, SlowDown, RequestTimeout or an
// expired token (credentials are renewed for the next attempt).
func transient(err error) bool {
	if err == nil || storage.Permanent(err) {
		return false
	}
	code, status := errorCode(err)
	switch {
	case status == 0:
		return true // no answer: a network error
	case status >= 500, status == http.StatusTooManyRequests:
		return true
	case code == "SlowDown", code == "RequestTimeout", code == "ExpiredToken", code == "InternalError":
		return true
	}
	return false
}

// withRetries runs op, a request with an in-memory body, again while it
// fails transiently, at most bodyAttempts times in all.
func withRetries(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if attempt >= bodyAttempts || !transient(err) || ctx.Err() != nil {
			return err
		}
		if storage.Backoff(ctx, bodyBackoff<<(attempt-1)) != nil {
			return err
		}
	}
}

// discard drains (a bounded part of) an answer's body and closes it, so
// that its connection is reused.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
}

// Get implements storage.Store. A range is sent as a Range header; a range
// that starts at or past the end of an existing object yields no bytes.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	r := request{method: http.MethodGet, key: k}
	if !rng.IsZero() {
		if rng.Offset < 0 {
			return nil, fmt.Errorf("get %s: negative offset %d: %w", key, rng.Offset, storage.ErrInvalid)
		}
		v := "bytes=" + strconv.FormatInt(rng.Offset, 10) + "-"
		if rng.Length > 0 {
			v += strconv.FormatInt(rng.Offset+rng.Length-1, 10)
		}
		r.header = http.Header{"Range": {v}}
	}
	resp, err := s.do(ctx, r)
	if err != nil {
		if code, status := errorCode(err); r.header != nil && (code == codeInvalidRange || status == http.StatusRequestedRangeNotSatisfiable) {
			// S3 answers 416 only for an existing object; make sure of it
			// rather than turn some other failure into an empty object.
			if _, serr := s.Stat(ctx, key); serr != nil {
				return nil, serr
			}
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.translate("get", key, err)
	}
	return resp.Body, nil
}

// Stat implements storage.Store with HeadObject.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	resp, err := s.do(ctx, request{method: http.MethodHead, key: k})
	if err != nil {
		return storage.ObjectInfo{}, s.translate("stat", key, err)
	}
	discard(resp)
	if resp.ContentLength < 0 {
		return storage.ObjectInfo{}, s.translate("stat", key, errors.New("the answer has no Content-Length"))
	}
	mod, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return storage.ObjectInfo{Key: key, Size: resp.ContentLength, ModTime: mod}, nil
}

// listPage is the answer of ListObjectsV2.
type listPage struct {
	IsTruncated           bool   `xml:"IsTruncated"`
	NextContinuationToken string `xml:"NextContinuationToken"`
	Contents              []struct {
		Key          string    `xml:"Key"`
		Size         int64     `xml:"Size"`
		LastModified time.Time `xml:"LastModified"`
	} `xml:"Contents"`
}

// List implements storage.Store with ListObjectsV2, whose pages come in
// ascending UTF-8 byte order of keys. Keys ending in "/" (folder markers
// that consoles create) are not objects and are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	query := map[string]string{"list-type": "2"}
	if p := s.prefix + prefix; p != "" {
		query["prefix"] = p
	}
	for {
		var page listPage
		if err := s.getXML(ctx, request{method: http.MethodGet, query: query}, &page); err != nil {
			return s.translate("list", prefix, err)
		}
		for _, obj := range page.Contents {
			k, ok := strings.CutPrefix(obj.Key, s.prefix)
			if !ok || k == "" || strings.HasSuffix(k, "/") {
				continue
			}
			if err := fn(storage.ObjectInfo{Key: k, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
				return err
			}
		}
		if !page.IsTruncated {
			return nil
		}
		if page.NextContinuationToken == "" || page.NextContinuationToken == query["continuation-token"] {
			return s.translate("list", prefix, errors.New("a truncated ListObjectsV2 page has no new continuation token"))
		}
		query["continuation-token"] = page.NextContinuationToken
	}
}

// getXML sends r and decodes the XML document of its answer into v. An
// <Error> document in a 200 answer (CompleteMultipartUpload sends one when
// it fails after starting its answer) is returned as a *ResponseError.
func (s *Store) getXML(ctx context.Context, r request, v any) error {
	resp, err := s.do(ctx, r)
	if err != nil {
		return err
	}
	defer discard(resp)
	dec := xml.NewDecoder(resp.Body)
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("the answer (HTTP %d) is not an XML document: %w", resp.StatusCode, err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue // the declaration, whitespace S3 sends while it works
		}
		if start.Name.Local == "Error" {
			var eb errorBody
			_ = dec.DecodeElement(&eb, &start)
			return &ResponseError{StatusCode: resp.StatusCode, Code: eb.Code, Message: eb.Message, RequestID: eb.RequestID}
		}
		if err := dec.DecodeElement(v, &start); err != nil {
			return fmt.Errorf("decode the %s answer: %w", start.Name.Local, err)
		}
		return nil
	}
}

// Delete implements storage.Store with DeleteObject, which succeeds for a
// missing key.
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return err
	}
	resp, err := s.do(ctx, request{method: http.MethodDelete, key: k})
	if err != nil {
		if sentinel, bucket := classify(err); errors.Is(sentinel, storage.ErrNotExist) && !bucket {
			return nil
		}
		return s.translate("delete", key, err)
	}
	discard(resp)
	return nil
}

// Close implements storage.Store: it closes the store's idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
