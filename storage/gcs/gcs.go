package gcs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Store is a storage.Store in a Google Cloud Storage bucket.
type Store struct {
	client      *http.Client // storage and token requests
	transports  []*http.Transport
	auth        authorizer // nil for KeyTypeNone
	bucket      string
	apiBase     string // .../storage/v1/b/BUCKET/o
	uploadBase  string // .../upload/storage/v1/b/BUCKET/o
	root        string // Prefix + "/", or "" for the bucket root
	chunkSize   int
	userProject string
	crcTable    *crc32.Table
}

var _ storage.Store = (*Store)(nil)

// New validates cfg and returns a store. It reads the CA files and the
// service-account key file but does not contact the service: tokens are
// fetched and the bucket is reached on first use.
func New(ctx context.Context, cfg Config) (*Store, error) {
	return newStore(ctx, cfg, hooks{})
}

// newStore is New with test hooks.
func newStore(ctx context.Context, cfg Config, h hooks) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	base, err := newTransport(&cfg)
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = base
	if h.wrapTransport != nil {
		rt = h.wrapTransport(rt)
	}
	s := &Store{
		client:      &http.Client{Transport: rt, CheckRedirect: noRedirect},
		transports:  []*http.Transport{base},
		bucket:      cfg.Bucket,
		apiBase:     st.apiBase,
		uploadBase:  st.uploadBase,
		root:        st.root,
		chunkSize:   st.chunkSize,
		userProject: cfg.UserProject,
		crcTable:    crc32.MakeTable(crc32.Castagnoli),
	}
	switch st.keyType {
	case KeyTypeToken:
		s.auth = newStaticToken(cfg.Key)
	case KeyTypeService:
		sa, err := loadServiceAccount(cfg.Key, s.client)
		if err != nil {
			base.CloseIdleConnections()
			return nil, fmt.Errorf("%s: %w", cfg.opt("gcs-key"), err)
		}
		s.auth = newCachedToken(sa.fetch, time.Now)
	case KeyTypeAuto:
		mc, mt := newMetadataClient()
		s.transports = append(s.transports, mt)
		u := metadataTokenURL
		if h.metadataURL != "" {
			u = h.metadataURL
		}
		s.auth = newCachedToken((&metadataToken{url: u, client: mc}).fetch, time.Now)
	}
	return s, nil
}

// apiError is a failed request: the service's HTTP status and, when its
// answer says so, the reason and message.
type apiError struct {
	method  string
	bucket  string
	object  string // "" for requests on the bucket
	status  int
	reason  string
	message string
	session bool // a request of a resumable upload session
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gcs %s bucket %q", e.method, e.bucket)
	if e.object != "" {
		fmt.Fprintf(&b, " object %q", e.object)
	}
	if e.session {
		b.WriteString(" (upload session)")
	}
	fmt.Fprintf(&b, ": HTTP %d %s", e.status, http.StatusText(e.status))
	if e.reason != "" {
		fmt.Fprintf(&b, " [%s]", clip(e.reason))
	}
	if e.message != "" {
		fmt.Fprintf(&b, ": %s", clip(e.message))
	}
	return b.String()
}

// translate adds the storage sentinel that matches err, keeping err in the
// chain. It never inspects message text.
func translate(err error) error {
	var ae *apiError
	if err == nil || !errors.As(err, &ae) {
		return err
	}
	var sentinel error
	switch ae.status {
	case http.StatusNotFound:
		// A vanished upload session says nothing about the object.
		if !ae.session {
			sentinel = storage.ErrNotExist
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		sentinel = storage.ErrPermission
	case http.StatusPreconditionFailed:
		// The only precondition the driver sends is ifGenerationMatch=0.
		sentinel = storage.ErrExist
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// hasStatus reports whether err is a service answer with status code.
func hasStatus(err error, code int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == code
}

// retryableStatus reports whether a request that got code may succeed when
// sent again.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// name maps key to its object name.
func (s *Store) name(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	n := s.root + key
	if !utf8.ValidString(n) || len(n) > maxNameLen {
		return "", fmt.Errorf("key %q: object names are at most %d bytes of UTF-8: %w", key, maxNameLen, storage.ErrInvalid)
	}
	return n, nil
}

// objectURL is the JSON API URL of object name with query q.
func (s *Store) objectURL(name string, q url.Values) string {
	return s.apiBase + "/" + url.PathEscape(name) + s.query(q)
}

// query encodes q with the billing project added.
func (s *Store) query(q url.Values) string {
	if s.userProject != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("userProject", s.userProject)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// request is one HTTP request to the service.
type request struct {
	method  string
	url     string
	object  string // the object's name, for errors
	header  http.Header
	body    [][]byte // the body's parts in order; nil: no body
	session bool     // the URL holds an upload session id, a credential
}

// do sends r with credentials and returns the response of any status. The
// caller closes its body. Once do has returned an error, or the caller has
// closed the response body, the transport no longer reads r.body, so its
// buffers may be reused. A transport error never quotes a session URL.
func (s *Store) do(ctx context.Context, r request) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, nil)
	if err != nil {
		if r.session { // the error would quote the session id
			err = errors.New("invalid upload session URL")
		}
		return nil, fmt.Errorf("gcs %s bucket %q object %q: %w", r.method, s.bucket, r.object, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	var body *trackedBody
	if r.body != nil {
		readers := make([]io.Reader, len(r.body))
		for i, b := range r.body {
			readers[i] = bytes.NewReader(b)
			req.ContentLength += int64(len(b))
		}
		req.Body = http.NoBody
		if req.ContentLength > 0 {
			body = &trackedBody{Reader: io.MultiReader(readers...), closed: make(chan struct{})}
			req.Body = body
		}
	}
	var auth string
	if s.auth != nil {
		if auth, err = s.auth.authorization(ctx); err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		body.wait(ctx.Done())
		if r.session {
			var ue *url.Error
			if errors.As(err, &ue) {
				ue.URL = redactSession(ue.URL)
			}
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && s.auth != nil {
		s.auth.reject(auth)
	}
	if body != nil {
		resp.Body = &waitingBody{ReadCloser: resp.Body, req: body, stop: ctx.Done()}
	}
	return resp, nil
}

// trackedBody is a request body that reports when the transport is done
// with it: the transport closes a request body after sending it or when
// the request fails.
type trackedBody struct {
	io.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// wait returns once the transport has closed b, or stop is closed (when
// the request's context is done: the upload then fails and its buffers are
// dropped).
func (b *trackedBody) wait(stop <-chan struct{}) {
	if b == nil {
		return
	}
	select {
	case <-b.closed:
	case <-stop:
	}
}

// waitingBody is a response body whose Close also waits until the
// transport is done with the request body.
type waitingBody struct {
	io.ReadCloser
	req  *trackedBody
	stop <-chan struct{} // the request context's Done
}

func (b *waitingBody) Close() error {
	err := b.ReadCloser.Close()
	b.req.wait(b.stop)
	return err
}

// redactSession removes the upload session id from a URL.
func redactSession(raw string) string {
	base, _, _ := strings.Cut(raw, "?")
	return base + "?upload_id=REDACTED"
}

// failure reads the error answer in resp, closes it and returns it as an
// *apiError.
func (s *Store) failure(r request, resp *http.Response) error {
	defer resp.Body.Close()
	ae := &apiError{method: r.method, bucket: s.bucket, object: r.object, status: resp.StatusCode, session: r.session}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var answer struct {
		Error struct {
			Message string `json:"message"`
			Errors  []struct {
				Reason string `json:"reason"`
			} `json:"errors"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &answer) == nil {
		ae.message = answer.Error.Message
		if len(answer.Error.Errors) > 0 {
			ae.reason = answer.Error.Errors[0].Reason
		}
	}
	return ae
}

// object is the part of an object resource the driver reads.
type object struct {
	Name        string            `json:"name"`
	Size        int64             `json:"size,string"`
	Updated     time.Time         `json:"updated"`
	TimeCreated time.Time         `json:"timeCreated"`
	CRC32C      string            `json:"crc32c"`
	Generation  int64             `json:"generation,string"`
	Metadata    map[string]string `json:"metadata"`
}

// modTime is the object's last update, or its creation when the service
// reports no update time.
func (o *object) modTime() time.Time {
	if !o.Updated.IsZero() {
		return o.Updated
	}
	return o.TimeCreated
}

// decodeObject reads the object resource in resp and closes it.
func (s *Store) decodeObject(r request, resp *http.Response) (*object, error) {
	defer resp.Body.Close()
	var o object
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&o); err != nil {
		return nil, fmt.Errorf("gcs %s bucket %q object %q: decode answer: %w", r.method, s.bucket, r.object, err)
	}
	return &o, nil
}

// attrs returns the resource of object name.
func (s *Store) attrs(ctx context.Context, name, fields string) (*object, error) {
	r := request{method: http.MethodGet, url: s.objectURL(name, url.Values{"fields": {fields}}), object: name}
	resp, err := s.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, s.failure(r, resp)
	}
	return s.decodeObject(r, resp)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	if rng.Offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d: %w", key, rng.Offset, storage.ErrInvalid)
	}
	r := request{method: http.MethodGet, url: s.objectURL(name, url.Values{"alt": {"media"}}), object: name}
	if !rng.IsZero() {
		v := "bytes=" + strconv.FormatInt(rng.Offset, 10) + "-"
		if rng.Length > 0 {
			v += strconv.FormatInt(rng.Offset+rng.Length-1, 10)
		}
		r.header = http.Header{"Range": {v}}
	}
	resp, err := s.do(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		return resp.Body, nil
	case http.StatusOK:
		if rng.IsZero() {
			return resp.Body, nil
		}
		// The range was ignored: cut it out of the whole object.
		if _, err := io.CopyN(io.Discard, resp.Body, rng.Offset); err != nil && !errors.Is(err, io.EOF) {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("get %s: skip to offset %d: %w", key, rng.Offset, err)
		}
		if rng.Length <= 0 {
			return resp.Body, nil
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, rng.Length), resp.Body}, nil
	case http.StatusRequestedRangeNotSatisfiable:
		// The object exists (a missing one is 404) and the range starts at
		// or past its end: no bytes.
		_ = resp.Body.Close()
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	return nil, fmt.Errorf("get %s: %w", key, translate(s.failure(r, resp)))
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	o, err := s.attrs(ctx, name, "size,updated,timeCreated")
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, translate(err))
	}
	return storage.ObjectInfo{Key: key, Size: o.Size, ModTime: o.modTime()}, nil
}

// List implements storage.Store. GCS lists names in ascending byte order,
// a page of at most 1000 at a time. Names below the prefix that are not
// valid keys (such as the "folder/" placeholders the console creates) are
// skipped: no key could address them.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	q := url.Values{"fields": {"nextPageToken,items(name,size,updated,timeCreated)"}}
	if p := s.root + prefix; p != "" {
		q.Set("prefix", p)
	}
	for {
		r := request{method: http.MethodGet, url: s.apiBase + s.query(q)}
		resp, err := s.do(ctx, r)
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("list %s: %w", prefix, translate(s.failure(r, resp)))
		}
		var page struct {
			NextPageToken string   `json:"nextPageToken"`
			Items         []object `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		_ = resp.Body.Close()
		if err != nil {
			return fmt.Errorf("list %s: gcs bucket %q: decode answer: %w", prefix, s.bucket, err)
		}
		for i := range page.Items {
			o := &page.Items[i]
			key, ok := strings.CutPrefix(o.Name, s.root)
			if !ok || storage.ValidateKey(key) != nil {
				continue
			}
			if err := fn(storage.ObjectInfo{Key: key, Size: o.Size, ModTime: o.modTime()}); err != nil {
				return err
			}
		}
		if page.NextPageToken == "" {
			return nil
		}
		q.Set("pageToken", page.NextPageToken)
	}
}

// Delete implements storage.Store. A missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	return s.delete(ctx, name, key, 0)
}

// delete removes object name; generation, when not 0, is a precondition.
func (s *Store) delete(ctx context.Context, name, key string, generation int64) error {
	var q url.Values
	if generation != 0 {
		q = url.Values{"ifGenerationMatch": {strconv.FormatInt(generation, 10)}}
	}
	r := request{method: http.MethodDelete, url: s.objectURL(name, q), object: name}
	resp, err := s.do(ctx, r)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		return nil
	}
	return fmt.Errorf("delete %s: %w", key, translate(s.failure(r, resp)))
}

// Close implements storage.Store; it closes idle connections.
func (s *Store) Close() error {
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
	return nil
}
