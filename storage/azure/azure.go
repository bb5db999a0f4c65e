package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Store is a storage.Store on one Azure Blob Storage container.
type Store struct {
	client      *container.Client
	transport   *http.Transport
	prefix      string // "" or ending in "/"
	blockSize   int64
	concurrency int
}

var _ storage.Store = (*Store)(nil)

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
	retries := int32(min(max(cfg.MaxRetries, -1), 100)) //nolint:gosec // clamped to a small range
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: redactingTransport{client: &http.Client{Transport: tr}},
		Retry:     policy.RetryOptions{MaxRetries: retries},
		Telemetry: policy.TelemetryOptions{ApplicationID: "pgsidecar"},
	}}
	var client *container.Client
	if st.sasQuery != "" {
		client, err = container.NewClientWithNoCredential(st.containerURL+"?"+st.sasQuery, opts)
	} else {
		var cred *container.SharedKeyCredential
		if cred, err = container.NewSharedKeyCredential(cfg.Account, st.sharedKey); err == nil {
			client, err = container.NewClientWithSharedKeyCredential(st.containerURL, cred, opts)
		}
	}
	if err != nil {
		tr.CloseIdleConnections()
		// Not wrapped with %w: SDK errors here may quote the key or token.
		return nil, fmt.Errorf("create azure client for %s: invalid credentials: %w", st.containerURL, storage.ErrInvalid)
	}
	return &Store{
		client:      client,
		transport:   tr,
		prefix:      st.prefix,
		blockSize:   st.blockSize,
		concurrency: st.concurrency,
	}, nil
}

// blobName maps a key to its blob name.
func (s *Store) blobName(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// translate maps service errors to the storage sentinels, keeping err in
// the chain. ConditionNotMet is left alone: only a conditional create may
// read it as ErrExist (a read that fails If-Match saw the object change).
func translate(err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound, bloberror.ResourceNotFound),
		re.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", storage.ErrNotExist, err)
	case bloberror.HasCode(err, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch,
		bloberror.AuthenticationFailed, bloberror.InsufficientAccountPermissions, bloberror.AccountIsDisabled),
		re.StatusCode == http.StatusForbidden, re.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w: %w", storage.ErrPermission, err)
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists):
		return fmt.Errorf("%w: %w", storage.ErrExist, err)
	}
	return err
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
	opts := &blockblob.UploadStreamOptions{BlockSize: s.blockSize, Concurrency: s.concurrency}
	if exclusive {
		opts.AccessConditions = &blob.AccessConditions{
			ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)},
		}
	}
	bc := s.client.NewBlockBlobClient(name)
	_, err = bc.UploadStream(ctx, ctxReader{ctx: ctx, r: r}, opts)
	switch {
	case err == nil:
		return nil
	case exclusive && s.lostRace(ctx, bc.BlobClient(), err):
		return fmt.Errorf("create %s: %w: %w", key, storage.ErrExist, err)
	}
	return fmt.Errorf("upload %s: %w", key, translate(err))
}

// lostRace reports whether a conditional create failed because the blob
// exists. Besides the 409/412 answers, a concurrent writer that committed
// first discards this writer's staged blocks, so its commit fails with
// InvalidBlockList while the blob now exists.
func (s *Store) lostRace(ctx context.Context, bc *blob.Client, err error) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch {
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet),
		re.StatusCode == http.StatusPreconditionFailed:
		return true
	case bloberror.HasCode(err, bloberror.InvalidBlockList):
		_, perr := bc.GetProperties(ctx, nil)
		return perr == nil
	}
	return false
}

// ctxReader stops reading the caller's stream as soon as ctx is done.
type ctxReader struct {
	ctx context.Context //nolint:containedctx // lives for one Put call
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
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
	bc := s.client.NewBlobClient(name)
	opts := &blob.DownloadStreamOptions{}
	if !rng.IsZero() {
		opts.Range = blob.HTTPRange{Offset: rng.Offset, Count: max(rng.Length, 0)}
	}
	resp, err := bc.DownloadStream(ctx, opts)
	if err != nil {
		var re *azcore.ResponseError
		if !rng.IsZero() && (bloberror.HasCode(err, bloberror.InvalidRange) ||
			errors.As(err, &re) && re.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
			if _, perr := bc.GetProperties(ctx, nil); perr != nil {
				return nil, fmt.Errorf("get %s: %w", key, translate(perr))
			}
			return http.NoBody, nil
		}
		return nil, fmt.Errorf("get %s: %w", key, translate(err))
	}
	body := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{EarlyCloseAsError: true})
	return &blobReader{key: key, body: body}, nil
}

// blobReader adds the key and the storage sentinels to read errors.
type blobReader struct {
	key  string
	body io.ReadCloser
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		return n, io.EOF
	}
	return n, fmt.Errorf("read %s: %w", b.key, translate(err))
}

func (b *blobReader) Close() error { return b.body.Close() }

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := s.blobName(key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, err
	}
	props, err := s.client.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, translate(err))
	}
	info := storage.ObjectInfo{Key: key}
	if props.ContentLength != nil {
		info.Size = *props.ContentLength
	}
	if props.LastModified != nil {
		info.ModTime = *props.LastModified
	}
	return info, nil
}

// List implements storage.Store with List Blobs (flat), whose names come
// in ascending order. Blob names below Prefix that are not valid keys
// (directory markers such as "dir/") are skipped. A missing container is
// an error matching storage.ErrNotExist.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return err
	}
	opts := &container.ListBlobsFlatOptions{}
	if full := s.prefix + prefix; full != "" {
		opts.Prefix = &full
	}
	pager := s.client.NewListBlobsFlatPager(opts)
	for pager.More() {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, translate(err))
		}
		if page.Segment == nil {
			continue
		}
		for _, item := range page.Segment.BlobItems {
			if item == nil || item.Name == nil {
				continue
			}
			key, ok := strings.CutPrefix(*item.Name, s.prefix)
			if !ok || !strings.HasPrefix(key, prefix) || storage.ValidateKey(key) != nil {
				continue
			}
			info := storage.ObjectInfo{Key: key}
			if p := item.Properties; p != nil {
				if p.ContentLength != nil {
					info.Size = *p.ContentLength
				}
				if p.LastModified != nil {
					info.ModTime = *p.LastModified
				}
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
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
	_, err = s.client.NewBlobClient(name).Delete(ctx, nil)
	var re *azcore.ResponseError
	switch {
	case err == nil, bloberror.HasCode(err, bloberror.BlobNotFound):
		return nil
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound && re.ErrorCode == "":
		return nil
	}
	return fmt.Errorf("delete %s: %w", key, translate(err))
}

// Close implements storage.Store; it closes idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// redactingTransport sends requests with client and removes the SAS
// signature from the URL that a transport error quotes.
type redactingTransport struct{ client *http.Client }

func (t redactingTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
	}
	return resp, err
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
