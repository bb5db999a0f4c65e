// Package storagetest is the conformance suite that every storage driver and
// every decorator must pass. A driver's test calls Run with a constructor
// that returns an empty store, so that the suite's subtests never see one
// another's objects.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
)

// LargeSize is the size of the object the LargeObject subtest streams.
const LargeSize = 64 << 20

// Options tunes the suite for a backend.
type Options struct {
	// SkipLarge leaves out the 64 MiB round trip (never set by drivers whose
	// suite is required).
	SkipLarge bool
}

// Run runs the conformance suite. newStore is called once per subtest and
// must return an empty store; it registers its own cleanup with t.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store, opts Options) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyObject", testEmptyObject},
		{"LargeObject", func(t *testing.T, s storage.Store) {
			if opts.SkipLarge {
				t.Skip("large object test disabled for this backend")
			}
			testLargeObject(t, s)
		}},
		{"Overwrite", testOverwrite},
		{"GetMissingReturnsErrNotExist", testGetMissing},
		{"StatMissingReturnsErrNotExist", testStatMissing},
		{"DeleteIsIdempotent", testDelete},
		{"RangeGet", testRangeGet},
		{"ListPrefixes", testListPrefixes},
		{"ListStopsOnCallbackError", testListStops},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"CancelledPutLeavesNothing", testCancelledPut},
		{"FailedPutKeepsOldObject", testFailedPutKeepsOld},
		{"ConcurrentPuts", testConcurrentPuts},
		{"InvalidKeyReturnsErrInvalid", testInvalidKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// onlyReader hides every method but Read, so drivers see a stream of
// unknown length, as they do for a compressed backup file.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func put(t *testing.T, s storage.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(data)}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s storage.Store, key string, rng storage.Range) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, rng)
	if err != nil {
		t.Fatalf("Get(%q, %+v): %v", key, rng, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := i; j < min(i+8, n); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

func testRoundTrip(t *testing.T, s storage.Store) {
	data := randomBytes(1, 100_000)
	key := "archive/db/15-1/0000000100000000/000000010000000000000001"
	put(t, s, key, data)
	if got := get(t, s, key, storage.Range{}); !bytes.Equal(got, data) {
		t.Fatalf("Get returned %d bytes that differ from the %d put", len(got), len(data))
	}
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, want key %q size %d", info, key, len(data))
	}
	if info.ModTime.IsZero() || time.Since(info.ModTime) > time.Hour || time.Until(info.ModTime) > time.Hour {
		t.Fatalf("Stat ModTime %v is not close to now", info.ModTime)
	}
}

func testEmptyObject(t *testing.T, s storage.Store) {
	put(t, s, "empty", nil)
	if got := get(t, s, "empty", storage.Range{}); len(got) != 0 {
		t.Fatalf("Get(empty) returned %d bytes", len(got))
	}
	info, err := s.Stat(t.Context(), "empty")
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat(empty) = %+v, %v; want size 0", info, err)
	}
}

// patternReader produces n deterministic bytes without holding them; the
// byte at position i depends only on seed and i, whatever the read sizes.
type patternReader struct {
	seed uint64
	pos  int64
	left int64
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	for i := 0; i < len(b); {
		pos := p.pos + int64(i)
		v := splitmix(p.seed^uint64(pos>>3)) >> (8 * (pos & 7))
		for j := pos & 7; j < 8 && i < len(b); j++ {
			b[i] = byte(v)
			v >>= 8
			i++
		}
	}
	p.pos += int64(len(b))
	p.left -= int64(len(b))
	return len(b), nil
}

func newPattern(seed uint64, n int64) *patternReader {
	return &patternReader{seed: seed, left: n}
}

func testLargeObject(t *testing.T, s storage.Store) {
	want := sha256.New()
	if _, err := io.Copy(want, newPattern(42, LargeSize)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "large/object", onlyReader{newPattern(42, LargeSize)}); err != nil {
		t.Fatalf("Put 64 MiB: %v", err)
	}
	rc, err := s.Get(t.Context(), "large/object", storage.Range{})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	got := sha256.New()
	n, err := io.Copy(got, rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n != LargeSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read back %d bytes with a different digest, want %d identical bytes", n, LargeSize)
	}
	info, err := s.Stat(t.Context(), "large/object")
	if err != nil || info.Size != LargeSize {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, LargeSize)
	}
	// A range in the middle of a multipart object.
	rng := storage.Range{Offset: 20<<20 + 3, Length: 1 << 20}
	part := get(t, s, "large/object", rng)
	full := newPattern(42, LargeSize)
	if _, err := io.CopyN(io.Discard, full, rng.Offset); err != nil {
		t.Fatal(err)
	}
	wantPart := make([]byte, rng.Length)
	if _, err := io.ReadFull(full, wantPart); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, wantPart) {
		t.Fatalf("range %+v of the large object differs", rng)
	}
}

func testOverwrite(t *testing.T, s storage.Store) {
	put(t, s, "over/write", randomBytes(2, 5000))
	second := []byte("short")
	put(t, s, "over/write", second)
	if got := get(t, s, "over/write", storage.Range{}); !bytes.Equal(got, second) {
		t.Fatalf("after overwrite Get = %q, want %q", got, second)
	}
	info, err := s.Stat(t.Context(), "over/write")
	if err != nil || info.Size != int64(len(second)) {
		t.Fatalf("Stat after overwrite = %+v, %v", info, err)
	}
}

func testGetMissing(t *testing.T, s storage.Store) {
	_, err := s.Get(t.Context(), "no/such/object", storage.Range{})
	if !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Get(missing) error = %v, want ErrNotExist", err)
	}
	_, err = s.Get(t.Context(), "no/such/object", storage.Range{Offset: 10, Length: 5})
	if !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("ranged Get(missing) error = %v, want ErrNotExist", err)
	}
}

func testStatMissing(t *testing.T, s storage.Store) {
	_, err := s.Stat(t.Context(), "no/such/object")
	if !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat(missing) error = %v, want ErrNotExist", err)
	}
	// A prefix of an existing key is not an object.
	put(t, s, "dir/file", []byte("x"))
	if _, err := s.Stat(t.Context(), "dir"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat(prefix of a key) error = %v, want ErrNotExist", err)
	}
}

func testDelete(t *testing.T, s storage.Store) {
	if err := s.Delete(t.Context(), "never/existed"); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
	put(t, s, "del/me", []byte("bye"))
	put(t, s, "del/keep", []byte("stay"))
	if err := s.Delete(t.Context(), "del/me"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(t.Context(), "del/me"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat after Delete = %v, want ErrNotExist", err)
	}
	if err := s.Delete(t.Context(), "del/me"); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	if got := get(t, s, "del/keep", storage.Range{}); string(got) != "stay" {
		t.Fatalf("sibling changed by Delete: %q", got)
	}
}

func testRangeGet(t *testing.T, s storage.Store) {
	data := randomBytes(3, 10_000)
	put(t, s, "range", data)
	for _, tc := range []struct {
		rng  storage.Range
		want []byte
	}{
		{storage.Range{}, data},
		{storage.Range{Offset: 0, Length: 1}, data[:1]},
		{storage.Range{Offset: 100, Length: 900}, data[100:1000]},
		{storage.Range{Offset: 9000}, data[9000:]},
		{storage.Range{Offset: 9990, Length: 100}, data[9990:]},
		{storage.Range{Offset: 10_000}, nil},
		{storage.Range{Offset: 20_000, Length: 5}, nil},
	} {
		if got := get(t, s, "range", tc.rng); !bytes.Equal(got, tc.want) {
			t.Errorf("Get range %+v: got %d bytes, want %d", tc.rng, len(got), len(tc.want))
		}
	}
}

func list(t *testing.T, s storage.Store, prefix string) []storage.ObjectInfo {
	t.Helper()
	var out []storage.ObjectInfo
	if err := s.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		out = append(out, oi)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func keys(infos []storage.ObjectInfo) []string {
	out := make([]string, len(infos))
	for i, oi := range infos {
		out[i] = oi.Key
	}
	return out
}

func testListPrefixes(t *testing.T, s storage.Store) {
	objects := map[string]int{
		"backup/db/backup.info":                 10,
		"backup/db/20260101-000000F/a":          1,
		"backup/db/20260101-000000F/pg_data/b":  2,
		"backup/db/20260101-000000F/pg_data/c":  0,
		"backup/db2/backup.info":                3,
		"backup/db-other":                       4,
		"archive/db/15-1/0000000100000000/0001": 5,
	}
	for k, n := range objects {
		put(t, s, k, randomBytes(uint64(n), n))
	}
	all := list(t, s, "")
	if len(all) != len(objects) {
		t.Fatalf("List(\"\") = %v, want %d objects", keys(all), len(objects))
	}
	for _, oi := range all {
		if want := objects[oi.Key]; oi.Size != int64(want) {
			t.Errorf("List entry %q size %d, want %d", oi.Key, oi.Size, want)
		}
	}
	if !slices.IsSorted(keys(all)) {
		t.Errorf("List(\"\") not in ascending order: %v", keys(all))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"backup/db/", []string{"backup/db/20260101-000000F/a", "backup/db/20260101-000000F/pg_data/b", "backup/db/20260101-000000F/pg_data/c", "backup/db/backup.info"}},
		{"backup/db", []string{"backup/db-other", "backup/db/20260101-000000F/a", "backup/db/20260101-000000F/pg_data/b", "backup/db/20260101-000000F/pg_data/c", "backup/db/backup.info", "backup/db2/backup.info"}},
		{"backup/db/20260101-000000F/pg_data/", []string{"backup/db/20260101-000000F/pg_data/b", "backup/db/20260101-000000F/pg_data/c"}},
		{"archive/db/15-1/0000000100000000/00", []string{"archive/db/15-1/0000000100000000/0001"}},
		{"nothing/", nil},
		{"backup/db/backup.info", []string{"backup/db/backup.info"}},
	} {
		if got := keys(list(t, s, tc.prefix)); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
}

func testListStops(t *testing.T, s storage.Store) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("stop/%d", i), []byte{byte(i)})
	}
	stop := errors.New("enough")
	calls := 0
	err := s.List(t.Context(), "stop/", func(storage.ObjectInfo) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List error = %v, want the callback's error", err)
	}
	if calls != 2 {
		t.Fatalf("callback called %d times after returning an error at call 2", calls)
	}
}

func testPutIfAbsent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	if err := s.PutIfAbsent(ctx, "lock/backup", onlyReader{bytes.NewReader([]byte("first"))}); err != nil {
		t.Fatalf("PutIfAbsent(new key): %v", err)
	}
	err := s.PutIfAbsent(ctx, "lock/backup", onlyReader{bytes.NewReader([]byte("second"))})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("PutIfAbsent(existing key) = %v, want ErrExist", err)
	}
	if got := get(t, s, "lock/backup", storage.Range{}); string(got) != "first" {
		t.Fatalf("existing object changed to %q", got)
	}
	// Absent again after a delete.
	if err := s.Delete(ctx, "lock/backup"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "lock/backup", bytes.NewReader([]byte("third"))); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
	if got := get(t, s, "lock/backup", storage.Range{}); string(got) != "third" {
		t.Fatalf("Get = %q, want third", got)
	}
}

func testPutIfAbsentRace(t *testing.T, s storage.Store) {
	RacePutIfAbsent(t, s, "race/lease", 8, func(i int) []byte { return []byte(fmt.Sprintf("writer-%d", i)) })
	// Objects larger than one part or block: the condition then sits on the
	// final commit (CompleteMultipartUpload, Put Block List).
	RacePutIfAbsent(t, s, "race/big", 3, func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 6<<20+i) })
}

// RacePutIfAbsent starts n concurrent PutIfAbsent calls of key, writer i
// with payload(i), and checks that exactly one wins, the others get
// ErrExist, and the object holds the winner's payload. Drivers call it with
// their own part or block sizes.
func RacePutIfAbsent(t *testing.T, s storage.Store, key string, n int, payload func(i int) []byte) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.PutIfAbsent(t.Context(), key, onlyReader{bytes.NewReader(payload(i))})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("%s: writers %d and %d both won the conditional create", key, winner, i)
			}
			winner = i
		case !errors.Is(err, storage.ErrExist):
			t.Fatalf("%s: writer %d: %v, want nil or ErrExist", key, i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: no writer won the conditional create", key)
	}
	if got := get(t, s, key, storage.Range{}); !bytes.Equal(got, payload(winner)) {
		t.Fatalf("%s holds %d bytes that are not the winner's (writer %d)", key, len(got), winner)
	}
}

// stallReader yields size bytes, then blocks until ctx is done and fails.
type stallReader struct {
	ctx  context.Context //nolint:containedctx // test reader tied to one call
	data *bytes.Reader
	sent chan struct{}
	once sync.Once
}

func (r *stallReader) Read(p []byte) (int, error) {
	if r.data.Len() > 0 {
		return r.data.Read(p)
	}
	r.once.Do(func() { close(r.sent) })
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

func testCancelledPut(t *testing.T, s storage.Store) {
	for _, size := range []int{1000, 12 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := &stallReader{ctx: ctx, data: bytes.NewReader(randomBytes(4, size)), sent: make(chan struct{})}
			done := make(chan error, 1)
			key := fmt.Sprintf("cancel/%d", size)
			go func() { done <- s.Put(ctx, key, r) }()
			select {
			case <-r.sent:
			case err := <-done:
				t.Fatalf("Put returned before its reader ended: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("Put did not read its input within a minute")
			}
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Put with a cancelled context returned nil")
				}
			case <-time.After(time.Minute):
				t.Fatal("Put did not return within a minute of its context being cancelled")
			}
			if _, err := s.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotExist) {
				t.Fatalf("Stat after cancelled Put = %v, want ErrNotExist", err)
			}
			if got := list(t, s, ""); len(got) != 0 {
				t.Fatalf("cancelled Put left objects visible: %v", keys(got))
			}
		})
	}
}

// failReader yields data, then fails with errBroken.
type failReader struct{ data *bytes.Reader }

var errBroken = errors.New("source broke")

func (r *failReader) Read(p []byte) (int, error) {
	if r.data.Len() > 0 {
		return r.data.Read(p)
	}
	return 0, errBroken
}

func testFailedPutKeepsOld(t *testing.T, s storage.Store) {
	old := []byte("the old content")
	put(t, s, "keep/me", old)
	for _, size := range []int{100, 7 << 20} {
		err := s.Put(t.Context(), "keep/me", &failReader{bytes.NewReader(randomBytes(5, size))})
		if err == nil {
			t.Fatalf("Put from a failing reader (%d bytes then error) returned nil", size)
		}
		if got := get(t, s, "keep/me", storage.Range{}); !bytes.Equal(got, old) {
			t.Fatalf("failed Put of %d bytes changed the object to %d bytes", size, len(got))
		}
		err = s.PutIfAbsent(t.Context(), "fresh/key", &failReader{bytes.NewReader(randomBytes(6, size))})
		if err == nil {
			t.Fatal("PutIfAbsent from a failing reader returned nil")
		}
		if _, err := s.Stat(t.Context(), "fresh/key"); !errors.Is(err, storage.ErrNotExist) {
			t.Fatalf("failed PutIfAbsent left an object: %v", err)
		}
	}
	if got := keys(list(t, s, "")); !slices.Equal(got, []string{"keep/me"}) {
		t.Fatalf("failed Puts left objects behind: %v", got)
	}
}

func testConcurrentPuts(t *testing.T, s storage.Store) {
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Put(t.Context(), fmt.Sprintf("many/%02d", i), onlyReader{bytes.NewReader(randomBytes(uint64(i), 1000+i*1000))})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	got := list(t, s, "many/")
	if len(got) != n {
		t.Fatalf("List after %d concurrent Puts = %v", n, keys(got))
	}
	for i := range n {
		key := fmt.Sprintf("many/%02d", i)
		if b := get(t, s, key, storage.Range{}); !bytes.Equal(b, randomBytes(uint64(i), 1000+i*1000)) {
			t.Fatalf("%s holds other content", key)
		}
	}
}

func testInvalidKey(t *testing.T, s storage.Store) {
	for _, key := range []string{"", "/abs", "a/../b", "../escape", "a//b", "trailing/", "./x"} {
		if err := s.Put(t.Context(), key, bytes.NewReader(nil)); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Put(%q) = %v, want ErrInvalid", key, err)
		}
		if _, err := s.Get(t.Context(), key, storage.Range{}); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", key, err)
		}
	}
}
