package gcs

import (
	"context"
	"net/http"
)

// NewWithTransport is New with wrap applied to the HTTP transport below the
// authentication layer, for fault injection in tests.
func NewWithTransport(ctx context.Context, cfg Config, wrap func(http.RoundTripper) http.RoundTripper) (*Store, error) {
	return newStore(ctx, cfg, hooks{wrapTransport: wrap})
}

// NewWithMetadataServer is New with metadataURL in place of the GCE/GKE
// metadata server's token URL.
func NewWithMetadataServer(ctx context.Context, cfg Config, metadataURL string) (*Store, error) {
	return newStore(ctx, cfg, hooks{metadataURL: metadataURL})
}

// ParseEndpoint exposes parseEndpoint to the tests.
var ParseEndpoint = parseEndpoint

// Translate exposes translate to the tests.
var Translate = translate

// APIError returns the error of a request on object that got status; a
// session error is one of a resumable upload session.
func APIError(object string, status int, session bool) error {
	return &apiError{method: http.MethodGet, bucket: "bucket", object: object, status: status, session: session}
}
