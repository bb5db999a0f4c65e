package azure

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Store is a storage.Store on one Azure Blob Storage container.
type Store struct {
	client    *http.Client
	transport *http.Transport
	account   string
	container string
	// origin is scheme://host[:port]; basePath the escaped path of the
	// container (with the account in it for path-style URLs).
	origin, basePath string
	sharedKey        []byte // decoded account key, or nil
	sasQuery         string // SAS token without "?", or ""
	prefix           string // "" or ending in "/"
	blockSize        int64
	concurrency      int
	retries          int // retries of one request; 0 disables
	buffers          sync.Pool
}

var _ storage.Store = (*Store)(nil)

// maxBlocks is the service's limit of committed blocks per blob.
const maxBlocks = 50000

// Backoff between the retries of one request.
const (
	retryInitial = 200 * time.Millisecond
	retryMax     = 5 * time.Second
)

// New validates cfg (see Config.Validate), reads its CA file and returns a
// store. It does not contact the service: a wrong key or a missing container
// shows in the first request.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := cfg.settings()
	if err != nil {
		return nil, fmt.Errorf("configure azure repository: %w", err)
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("configure azure repository: %w", err)
	}
	u, err := url.Parse(st.containerURL)
	if err != nil {
		// settings built the URL from parsed parts; this cannot happen.
		return nil, fmt.Errorf("configure azure repository: container URL: %w", storage.ErrInvalid)
	}
	var key []byte
	if st.sharedKey != "" {
		if key, err = base64.StdEncoding.DecodeString(st.sharedKey); err != nil {
			// Not quoted: the error shows part of the key. Validate checked it.
			return nil, fmt.Errorf("configure azure repository: %s is not valid base64: %w", cfg.option("azure-key"), storage.ErrInvalid)
		}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   max(2*st.concurrency, 16),
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	retries := 3
	switch {
	case cfg.MaxRetries < 0:
		retries = 0
	case cfg.MaxRetries > 0:
		retries = min(cfg.MaxRetries, 100)
	}
	s := &Store{
		client:      &http.Client{Transport: tr},
		transport:   tr,
		account:     cfg.Account,
		container:   cfg.Container,
		origin:      u.Scheme + "://" + u.Host,
		basePath:    escapePath(u.Path),
		sharedKey:   key,
		sasQuery:    st.sasQuery,
		prefix:      st.prefix,
		blockSize:   st.blockSize,
		concurrency: st.concurrency,
		retries:     retries,
	}
	s.buffers.New = func() any {
		b := make([]byte, s.blockSize)
		return &b
	}
	return s, nil
}

// blobName maps a key to its blob name.
func (s *Store) blobName(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// ResponseError is an error answer of the service. It matches
// storage.ErrNotExist for 404, storage.ErrPermission for 401 and 403, and
// storage.ErrExist for the refusal of a conditional create; any other
// answer, such as a 5xx, is transient to the retry decorator.
type ResponseError struct {
	// Op names the operation ("put block list", "stat", ...).
	Op string
	// Container and Blob name the resource; Blob is "" for the container.
	Container, Blob string
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the x-ms-error-code of the answer, such as BlobNotFound.
	Code string
	// Message is the first line of the service's message, if any.
	Message string

	sentinel error
}

func (e *ResponseError) Error() string {
	var b strings.Builder
	b.WriteString("azure ")
	b.WriteString(e.Op)
	b.WriteByte(' ')
	b.WriteString(e.Container)
	if e.Blob != "" {
		b.WriteByte('/')
		b.WriteString(e.Blob)
	}
	b.WriteString(": HTTP ")
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
	return b.String()
}

// Is matches the storage sentinel of the answer.
func (e *ResponseError) Is(target error) bool { return e.sentinel != nil && target == e.sentinel }

// newResponseError reads the error answer resp (and closes its body).
func (s *Store) newResponseError(op, blob string, resp *http.Response) *ResponseError {
	e := &ResponseError{Op: op, Container: s.container, Blob: blob, StatusCode: resp.StatusCode, Code: resp.Header.Get("x-ms-error-code")}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	var doc struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if len(body) > 0 && xml.Unmarshal(body, &doc) == nil {
		if e.Code == "" {
			e.Code = doc.Code
		}
		// The first line only: the rest is the request id and time. The
		// authentication detail (the string to sign) is never read.
		msg, _, _ := strings.Cut(strings.TrimSpace(doc.Message), "\n")
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		e.Message = strings.TrimSpace(msg)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		e.sentinel = storage.ErrNotExist
	case resp.StatusCode == http.StatusForbidden, resp.StatusCode == http.StatusUnauthorized:
		e.sentinel = storage.ErrPermission
	case e.Code == "BlobAlreadyExists":
		e.sentinel = storage.ErrExist
	}
	return e
}

// request is one REST call.
type request struct {
	op     string // for errors
	method string
	blob   string            // blob name; "" addresses the container
	query  []string          // name, value pairs
	header map[string]string // extra headers
	body   []byte            // nil for none
}

// retryable reports whether a request that drew status may succeed when
// sent again.
func retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// do sends r, retrying connection failures and 408, 429 and 5xx answers
// up to s.retries times, and returns a 2xx response. Any other answer is a
// *ResponseError; a transport failure names the blob and carries the
// *url.Error, with any SAS signature removed from its URL.
func (s *Store) do(ctx context.Context, r *request) (*http.Response, error) {
	backoff := retryInitial
	for attempt := 0; ; attempt++ {
		resp, err := s.send(ctx, r)
		if err == nil && resp.StatusCode < 300 {
			return resp, nil
		}
		if err == nil {
			err = s.newResponseError(r.op, r.blob, resp)
		}
		if attempt >= s.retries || ctx.Err() != nil || !s.transient(err) {
			return nil, err
		}
		if storage.Backoff(ctx, backoff) != nil {
			return nil, err
		}
		backoff = min(2*backoff, retryMax)
	}
}

// transient reports whether err, from do, may go away on a new attempt.
func (s *Store) transient(err error) bool {
	var re *ResponseError
	if errors.As(err, &re) {
		return retryable(re.StatusCode)
	}
	var cv *tls.CertificateVerificationError
	return !errors.As(err, &cv)
}

// send makes one attempt of r.
func (s *Store) send(ctx context.Context, r *request) (*http.Response, error) {
	var u strings.Builder
	u.WriteString(s.origin)
	u.WriteString(s.basePath)
	if r.blob != "" {
		u.WriteByte('/')
		u.WriteString(escapePath(r.blob))
	}
	sep := byte('?')
	for i := 0; i+1 < len(r.query); i += 2 {
		u.WriteByte(sep)
		u.WriteString(escapeQuery(r.query[i]))
		u.WriteByte('=')
		u.WriteString(escapeQuery(r.query[i+1]))
		sep = '&'
	}
	if s.sasQuery != "" {
		u.WriteByte(sep)
		u.WriteString(s.sasQuery)
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("azure %s %s/%s: %w", r.op, s.container, r.blob, redactError(err))
	}
	req.Header.Set("User-Agent", "pgsidecar")
	req.Header.Set("x-ms-version", serviceVersion)
	req.Header.Set("x-ms-date", time.Now().UTC().Format(http.TimeFormat))
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if s.sharedKey != nil {
		signSharedKey(req, s.account, s.sharedKey)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("azure %s %s/%s: %w", r.op, s.container, r.blob, redactError(err))
	}
	return resp, nil
}

// redactError removes the SAS signature from the URL a *url.Error quotes.
func redactError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return err
}

// redactURL replaces the value of a sig query parameter with REDACTED.
func redactURL(raw string) string {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return base + "?REDACTED"
	}
	if v.Has("sig") {
		v.Set("sig", "REDACTED")
	}
	return base + "?" + v.Encode()
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	return s.upload(ctx, key, r, false)
}

// PutIfAbsent implements storage.Store. The final Put Blob or Put Block
// List carries If-None-Match: *, so the service creates the blob only if it
// does not exist when the content is committed.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	return s.upload(ctx, key, r, true)
}

func (s *Store) upload(ctx context.Context, key string, r io.Reader, exclusive bool) error {
	name, err := s.blobName(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	src := &chunker{ctx: ctx, r: r, what: s.container + "/" + name}
	first := s.buffers.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only these
	n, last, err := src.next(*first)
	if err != nil {
		s.buffers.Put(first)
		return err
	}
	if last {
		err = s.putBlob(ctx, name, (*first)[:n], exclusive)
		s.buffers.Put(first)
	} else {
		err = s.putBlocks(ctx, name, src, first, n, exclusive)
	}
	if err == nil {
		return nil
	}
	var re *ResponseError
	if exclusive && errors.As(err, &re) && s.lostRace(ctx, name, re) {
		re.sentinel = storage.ErrExist
	}
	return err // names the container and blob
}

func (s *Store) putBlob(ctx context.Context, name string, data []byte, exclusive bool) error {
	h := map[string]string{"x-ms-blob-type": "BlockBlob"}
	if exclusive {
		h["If-None-Match"] = "*"
	}
	resp, err := s.do(ctx, &request{op: "put blob", method: http.MethodPut, blob: name, header: h, body: data})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// putBlocks stages the source in blocks, at most s.concurrency of them
// held and in flight at once, and commits them with one Put Block List.
// first holds the first n bytes, already read.
func (s *Store) putBlocks(parent context.Context, name string, src *chunker, first *[]byte, n int, exclusive bool) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	// Ids are a random tag of this Put and the block number, so that
	// concurrent writers of one blob never stage over each other's blocks.
	tag := rand.Uint64()
	blockID := func(i int) string {
		var id [12]byte
		binary.BigEndian.PutUint64(id[:8], tag)
		binary.BigEndian.PutUint32(id[8:], uint32(i)) //nolint:gosec // i < maxBlocks
		return base64.StdEncoding.EncodeToString(id[:])
	}

	// A slot is taken before a buffer is, so that at most s.concurrency
	// buffers are filled or in flight at once.
	slots := make(chan struct{}, s.concurrency)
	slots <- struct{}{}
	var wg sync.WaitGroup
	var ids []string
	buf, last := first, false
	var err error
	for i := 0; ; i++ {
		if i >= maxBlocks {
			s.buffers.Put(buf)
			<-slots
			err = fmt.Errorf("object needs more than %d blocks of %d bytes (raise the storage-upload-chunk-size option): %w", maxBlocks, s.blockSize, storage.ErrInvalid)
			break
		}
		id, block, size := blockID(i), buf, n
		ids = append(ids, id)
		wg.Go(func() {
			defer func() {
				s.buffers.Put(block)
				<-slots
			}()
			resp, err := s.do(ctx, &request{
				op: "put block", method: http.MethodPut, blob: name,
				query: []string{"comp", "block", "blockid", id}, body: (*block)[:size],
			})
			if err != nil {
				cancel(err)
				return
			}
			drain(resp)
		})
		if last {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break // the slot, if taken, is never released: nothing waits for it
		}
		buf = s.buffers.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only these
		n, last, err = src.next(*buf)
		if err != nil {
			s.buffers.Put(buf)
			break
		}
	}
	if err != nil {
		cancel(err)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if parent.Err() != nil {
			return fmt.Errorf("azure upload %s/%s: %w", s.container, name, err)
		}
		return err // a block's or the source's error, naming the blob
	}

	var list bytes.Buffer
	list.WriteString(`<?xml version="1.0" encoding="utf-8"?><BlockList>`)
	for _, id := range ids {
		// Latest rather than Uncommitted: a retried commit whose first
		// attempt succeeded finds the blocks committed.
		list.WriteString("<Latest>")
		list.WriteString(id) // base64: nothing to escape
		list.WriteString("</Latest>")
	}
	list.WriteString("</BlockList>")
	h := map[string]string{}
	if exclusive {
		h["If-None-Match"] = "*"
	}
	resp, err := s.do(ctx, &request{
		op: "put block list", method: http.MethodPut, blob: name,
		query: []string{"comp", "blocklist"}, header: h, body: list.Bytes(),
	})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// lostRace reports whether a conditional create failed because the blob
// exists. Besides the 409/412 answers, a concurrent writer that committed
// first discards this writer's staged blocks, so its commit fails with
// InvalidBlockList while the blob now exists.
func (s *Store) lostRace(ctx context.Context, name string, re *ResponseError) bool {
	switch {
	case re.Code == "BlobAlreadyExists", re.Code == "ConditionNotMet", re.StatusCode == http.StatusPreconditionFailed:
		return true
	case re.Code == "InvalidBlockList":
		_, perr := s.head(ctx, name)
		return perr == nil
	}
	return false
}

// chunker cuts a stream into blocks. After a full block it reads one byte
// ahead, so that it knows whether that block was the last.
type chunker struct {
	ctx   context.Context //nolint:containedctx // lives for one Put call
	r     io.Reader
	what  string // container/blob, for errors
	ahead [1]byte
	has   bool
}

// next fills buf and reports the number of bytes and whether the stream
// ended. Only the first block may be empty.
func (c *chunker) next(buf []byte) (int, bool, error) {
	n := 0
	if c.has {
		buf[0] = c.ahead[0]
		n, c.has = 1, false
	}
	for n < len(buf) {
		if err := c.ctx.Err(); err != nil {
			return 0, false, fmt.Errorf("azure upload %s: %w", c.what, err)
		}
		m, err := c.r.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("azure upload %s: read source: %w", c.what, err)
		}
	}
	for {
		if err := c.ctx.Err(); err != nil {
			return 0, false, fmt.Errorf("azure upload %s: %w", c.what, err)
		}
		m, err := c.r.Read(c.ahead[:])
		if m > 0 {
			c.has = true
			return n, false, nil
		}
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("azure upload %s: read source: %w", c.what, err)
		}
	}
}

// drain reads what is left of a small answer and closes it, so that the
// connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// rangeHeader returns the x-ms-range value for the bytes from offset to
// end (exclusive; -1 means the end of the blob).
func rangeHeader(offset, end int64) string {
	if end < 0 {
		return "bytes=" + strconv.FormatInt(offset, 10) + "-"
	}
	return "bytes=" + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(end-1, 10)
}

// Get implements storage.Store. A range starting at or past the end draws
// 416 from the service; Get then checks that the blob exists and returns an
// empty reader. The reader resumes a broken download at most three times,
// with If-Match on the first response's ETag so that it never mixes the
// bytes of two versions.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	name, err := s.blobName(key)
	if err != nil {
		return nil, err
	}
	if rng.Offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d: %w", key, rng.Offset, storage.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	end := int64(-1)
	if rng.Length > 0 {
		end = rng.Offset + rng.Length
	}
	r := &request{op: "get", method: http.MethodGet, blob: name}
	if !rng.IsZero() {
		r.header = map[string]string{"x-ms-range": rangeHeader(rng.Offset, end)}
	}
	resp, err := s.do(ctx, r)
	if err != nil {
		var re *ResponseError
		if !rng.IsZero() && errors.As(err, &re) && (re.StatusCode == http.StatusRequestedRangeNotSatisfiable || re.Code == "InvalidRange") {
			if _, herr := s.head(ctx, name); herr != nil {
				return nil, herr
			}
			return http.NoBody, nil
		}
		return nil, err
	}
	return &blobReader{ctx: ctx, s: s, name: name, body: resp.Body, etag: resp.Header.Get("ETag"), pos: rng.Offset, end: end}, nil
}

// maxResumes is the number of times a reader reopens a broken download.
const maxResumes = 3

// blobReader streams a blob, resuming a broken body.
type blobReader struct {
	ctx     context.Context //nolint:containedctx // lives as long as the reader
	s       *Store
	name    string
	body    io.ReadCloser
	etag    string
	pos     int64 // offset of the next byte
	end     int64 // exclusive end, or -1 for the end of the blob
	resumes int
	err     error // sticky failure
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.body.Read(p)
		b.pos += int64(n)
		if err == nil || errors.Is(err, io.EOF) {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			return n, err
		}
		readErr := fmt.Errorf("azure read %s/%s at %d: %w", b.s.container, b.name, b.pos, redactError(err))
		if b.ctx.Err() != nil || b.resumes >= maxResumes || b.etag == "" || (b.end >= 0 && b.pos >= b.end) {
			b.err = readErr
		} else if rerr := b.resume(); rerr != nil {
			b.err = errors.Join(readErr, rerr)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume reopens the download at b.pos, on the same version of the blob.
func (b *blobReader) resume() error {
	b.resumes++
	_ = b.body.Close()
	b.body = http.NoBody
	resp, err := b.s.do(b.ctx, &request{
		op: "get", method: http.MethodGet, blob: b.name,
		header: map[string]string{"x-ms-range": rangeHeader(b.pos, b.end), "If-Match": b.etag},
	})
	if err != nil {
		return err
	}
	b.body = resp.Body
	return nil
}

func (b *blobReader) Close() error { return b.body.Close() }

// head returns the properties of a blob.
func (s *Store) head(ctx context.Context, name string) (*http.Response, error) {
	resp, err := s.do(ctx, &request{op: "stat", method: http.MethodHead, blob: name})
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	return resp, nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.blobName(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, err
	}
	resp, err := s.head(ctx, name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	info := storage.ObjectInfo{Key: key, Size: resp.ContentLength}
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		if info.Size, err = strconv.ParseInt(cl, 10, 64); err != nil {
			return storage.ObjectInfo{}, fmt.Errorf("azure stat %s/%s: bad Content-Length %q", s.container, name, cl)
		}
	}
	if info.Size < 0 {
		return storage.ObjectInfo{}, fmt.Errorf("azure stat %s/%s: no Content-Length", s.container, name)
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if info.ModTime, err = http.ParseTime(lm); err != nil {
			return storage.ObjectInfo{}, fmt.Errorf("azure stat %s/%s: bad Last-Modified %q", s.container, name, lm)
		}
	}
	return info, nil
}

// listPage is the part of a List Blobs answer the driver reads.
type listPage struct {
	Blobs []struct {
		Name struct {
			Encoded bool   `xml:"Encoded,attr"`
			Value   string `xml:",chardata"`
		} `xml:"Name"`
		Properties struct {
			LastModified  string `xml:"Last-Modified"`
			ContentLength string `xml:"Content-Length"`
		} `xml:"Properties"`
	} `xml:"Blobs>Blob"`
	NextMarker string `xml:"NextMarker"`
}

// List implements storage.Store with List Blobs (flat), whose names come
// in ascending order. Blob names below Prefix that are not valid keys
// (directory markers such as "dir/") are skipped. A missing container is
// an error matching storage.ErrNotExist.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	full := s.prefix + prefix
	marker := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		q := []string{"restype", "container", "comp", "list"}
		if full != "" {
			q = append(q, "prefix", full)
		}
		if marker != "" {
			q = append(q, "marker", marker)
		}
		resp, err := s.do(ctx, &request{op: "list", method: http.MethodGet, query: q, blob: ""})
		if err != nil {
			return err
		}
		var page listPage
		err = xml.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if err != nil {
			return fmt.Errorf("azure list %s prefix %q: read answer: %w", s.container, full, err)
		}
		for _, item := range page.Blobs {
			name := item.Name.Value
			if item.Name.Encoded {
				if name, err = url.PathUnescape(name); err != nil {
					continue
				}
			}
			key, ok := strings.CutPrefix(name, s.prefix)
			if !ok || !strings.HasPrefix(key, prefix) || storage.ValidateKey(key) != nil {
				continue
			}
			info := storage.ObjectInfo{Key: key}
			if info.Size, err = strconv.ParseInt(item.Properties.ContentLength, 10, 64); err != nil {
				return fmt.Errorf("azure list %s: blob %s: bad Content-Length %q", s.container, name, item.Properties.ContentLength)
			}
			if lm := item.Properties.LastModified; lm != "" {
				if info.ModTime, err = http.ParseTime(lm); err != nil {
					return fmt.Errorf("azure list %s: blob %s: bad Last-Modified %q", s.container, name, lm)
				}
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		if page.NextMarker == "" {
			return nil
		}
		marker = page.NextMarker
	}
}

// Delete implements storage.Store. A blob that has snapshots is not
// deleted (the service refuses), as with pgBackRest.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.blobName(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	resp, err := s.do(ctx, &request{op: "delete", method: http.MethodDelete, blob: name})
	if err == nil {
		drain(resp)
		return nil
	}
	var re *ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && (re.Code == "BlobNotFound" || re.Code == "") {
		return nil
	}
	return err
}

// CreateContainer creates the store's container (Create Container), for
// tests and set-up tools: pgBackRest expects it to exist. A container that
// exists already is an error matching storage.ErrExist.
func (s *Store) CreateContainer(ctx context.Context) error {
	resp, err := s.do(ctx, &request{op: "create container", method: http.MethodPut, query: []string{"restype", "container"}, body: []byte{}})
	if err != nil {
		var re *ResponseError
		if errors.As(err, &re) && re.Code == "ContainerAlreadyExists" {
			re.sentinel = storage.ErrExist
		}
		return err
	}
	drain(resp)
	return nil
}

// DeleteContainer deletes the store's container and every blob in it
// (Delete Container), for tests and tools.
func (s *Store) DeleteContainer(ctx context.Context) error {
	resp, err := s.do(ctx, &request{op: "delete container", method: http.MethodDelete, query: []string{"restype", "container"}})
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// Close implements storage.Store; it closes idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
