package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"
)

// Sentinel errors. Drivers wrap their SDK errors so that errors.Is matches
// one of these at the boundary; the SDK error stays in the chain beside it.
var (
	// ErrNotExist reports that the object does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrExist reports that a conditional create found the object already there.
	ErrExist = errors.New("object already exists")
	// ErrPermission reports that the credentials may not perform the operation.
	ErrPermission = errors.New("permission denied")
	// ErrInvalid reports an invalid key or argument; retrying cannot help.
	ErrInvalid = errors.New("invalid key or argument")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	// Key is the object's key relative to the store's root.
	Key string
	// Size is the object's length in bytes.
	Size int64
	// ModTime is the time the object was last written, as the backend reports it.
	ModTime time.Time
}

// Range selects the bytes of an object that Get returns. The zero Range is
// the whole object.
type Range struct {
	// Offset is the first byte returned.
	Offset int64
	// Length is the number of bytes returned; 0 or less means up to the end.
	Length int64
}

// IsZero reports whether r selects the whole object.
func (r Range) IsZero() bool { return r.Offset == 0 && r.Length <= 0 }

// Store is the contract of a repository backend. All methods are safe for
// concurrent use by multiple goroutines, take ctx first and stop promptly when
// it is cancelled.
type Store interface {
	// Put stores the content of r under key, replacing any existing object.
	// The length of r need not be known: large objects are uploaded in parts
	// (multipart, blocks or resumable chunks) and never held whole in memory.
	// Put is atomic: readers see the old object or the complete new one, never
	// a partial one; when Put fails or ctx is cancelled, no new content is
	// visible. Put reads r to EOF at most once; it does not close r.
	Put(ctx context.Context, key string, r io.Reader) error

	// PutIfAbsent is Put that succeeds only if key does not exist yet. When
	// another writer got there first, it returns an error matching ErrExist
	// and the existing object is unchanged. Of concurrent PutIfAbsent calls
	// for one key exactly one succeeds.
	PutIfAbsent(ctx context.Context, key string, r io.Reader) error

	// Get opens the bytes rng selects of the object at key for streaming. A
	// missing key returns an error matching ErrNotExist. A range reaching past
	// the end is cut at the end; one starting at or past the end yields no
	// bytes. The caller must Close the reader; cancelling ctx aborts it.
	Get(ctx context.Context, key string, rng Range) (io.ReadCloser, error)

	// Stat returns the object's information, or an error matching ErrNotExist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// List calls fn for every object whose key starts with prefix, in
	// ascending key order (byte order). Keys are full keys, not relative to
	// prefix, and the walk is recursive. An error from fn stops the walk and
	// is returned as is. A prefix with no objects is not an error.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error

	// Delete removes the object at key. Deleting a missing key is not an
	// error, so Delete is idempotent.
	Delete(ctx context.Context, key string) error

	// Close releases the store's resources. The store must not be used after.
	Close() error
}

// ValidateKey reports, as an error matching ErrInvalid, whether key is not a
// clean relative slash-separated key: empty, absolute, with empty, "." or
// ".." elements, a trailing slash, or a NUL byte.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty key: %w", ErrInvalid)
	}
	if strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("key %q: %w", key, ErrInvalid)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("key %q: %w", key, ErrInvalid)
		}
	}
	return nil
}

// ValidatePrefix is ValidateKey for a List prefix: the empty prefix and a
// trailing slash are allowed.
func ValidatePrefix(prefix string) error {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix == "" {
			return nil
		}
		return fmt.Errorf("prefix %q: %w", prefix, ErrInvalid)
	}
	// The last element may be partial ("wal/0000-"), so only "." and ".." are
	// ruled out among the complete elements.
	return ValidateKey(p)
}

// Permanent reports whether err can never succeed on retry: a sentinel
// condition or a cancelled or expired context.
func Permanent(err error) bool {
	return errors.Is(err, ErrNotExist) || errors.Is(err, ErrExist) ||
		errors.Is(err, ErrPermission) || errors.Is(err, ErrInvalid) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// ReadAll reads the whole object at key: for small objects such as info
// files and manifests.
func ReadAll(ctx context.Context, s Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key, Range{})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}

// Backoff waits a random time between d/2 and d (jitter spreads out the
// retries of concurrent callers) and returns nil, or ctx's error as soon as
// ctx ends. Drivers use it between the attempts of one request.
func Backoff(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
