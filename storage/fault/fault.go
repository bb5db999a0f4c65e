// Package fault is a storage.Store decorator for tests that injects
// failures and delays into an inner store through function fields, the way
// restic's mock backend does. It never appears outside tests.
package fault

import (
	"context"
	"io"

	"github.com/pgsidecar/pgsidecar/storage"
)

// Store forwards every call to Inner unless the hook for that call is set
// and returns a non-nil error (or, for Get, a non-nil reader). Hooks are
// set before the store is shared and must be safe for concurrent use.
type Store struct {
	Inner storage.Store

	// BeforePut runs before Put and PutIfAbsent; a non-nil error is returned
	// without calling Inner. It may wrap r (the returned reader is used).
	BeforePut func(ctx context.Context, key string, r io.Reader) (io.Reader, error)
	// BeforeGet runs before Get; a non-nil error is returned as is.
	BeforeGet func(ctx context.Context, key string, rng storage.Range) error
	// WrapGet wraps the reader returned by Inner.Get.
	WrapGet func(rc io.ReadCloser) io.ReadCloser
	// BeforeStat, BeforeList and BeforeDelete run before their call.
	BeforeStat   func(ctx context.Context, key string) error
	BeforeList   func(ctx context.Context, prefix string) error
	BeforeDelete func(ctx context.Context, key string) error
}

var _ storage.Store = (*Store)(nil)

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	if s.BeforePut != nil {
		var err error
		if r, err = s.BeforePut(ctx, key, r); err != nil {
			return err
		}
	}
	return s.Inner.Put(ctx, key, r)
}

// PutIfAbsent implements storage.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	if s.BeforePut != nil {
		var err error
		if r, err = s.BeforePut(ctx, key, r); err != nil {
			return err
		}
	}
	return s.Inner.PutIfAbsent(ctx, key, r)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string, rng storage.Range) (io.ReadCloser, error) {
	if s.BeforeGet != nil {
		if err := s.BeforeGet(ctx, key, rng); err != nil {
			return nil, err
		}
	}
	rc, err := s.Inner.Get(ctx, key, rng)
	if err != nil || s.WrapGet == nil {
		return rc, err
	}
	return s.WrapGet(rc), nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if s.BeforeStat != nil {
		if err := s.BeforeStat(ctx, key); err != nil {
			return storage.ObjectInfo{}, err
		}
	}
	return s.Inner.Stat(ctx, key)
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if s.BeforeList != nil {
		if err := s.BeforeList(ctx, prefix); err != nil {
			return err
		}
	}
	return s.Inner.List(ctx, prefix, fn)
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if s.BeforeDelete != nil {
		if err := s.BeforeDelete(ctx, key); err != nil {
			return err
		}
	}
	return s.Inner.Delete(ctx, key)
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.Inner.Close() }
