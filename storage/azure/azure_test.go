package azure_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsidecar/pgsidecar/storage"
	"github.com/pgsidecar/pgsidecar/storage/azure"
	"github.com/pgsidecar/pgsidecar/storage/storagetest"
)

// Azurite's well-known development account.
const (
	azuriteEndpoint = "http://127.0.0.1:10000/devstoreaccount1"
	azuriteAccount  = "devstoreaccount1"
	azuriteKey      = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// service is the blob service the tests use. endpoint is the service URL
// with the account in its path, as Azurite serves it.
type service struct {
	endpoint, account, key string
}

func azurite() service {
	return service{
		endpoint: strings.TrimSuffix(storagetest.Env("PGSIDECAR_TEST_AZURE_ENDPOINT", azuriteEndpoint), "/"),
		account:  storagetest.Env("PGSIDECAR_TEST_AZURE_ACCOUNT", azuriteAccount),
		key:      storagetest.Env("PGSIDECAR_TEST_AZURE_KEY", azuriteKey),
	}
}

// config returns a shared-key configuration for the container.
func (svc service) config(containerName, prefix string) azure.Config {
	return azure.Config{
		Account:   svc.account,
		Container: containerName,
		Prefix:    prefix,
		Endpoint:  svc.endpoint,
		Key:       svc.key,
		VerifyTLS: true,
	}
}

// newContainer creates a fresh container, deleted when the test ends, and
// returns its name and a store on its root with no retries. An unreachable
// service ends the test through storagetest.Unavailable.
func (svc service) newContainer(t *testing.T) (string, *azure.Store) {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "pgsidecar-" + hex.EncodeToString(b[:])
	cfg := svc.config(name, "")
	cfg.MaxRetries = -1 // so that a stopped service is reported at once
	c := newStore(t, cfg)
	if err := c.CreateContainer(t.Context()); err != nil {
		var re *azure.ResponseError
		if errors.As(err, &re) {
			t.Fatalf("create container %s at %s: %v", name, svc.endpoint, err)
		}
		storagetest.Unavailable(t, "azure", err)
	}
	t.Cleanup(func() {
		if err := c.DeleteContainer(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("delete container %s: %v", name, err)
		}
	})
	return name, c
}

func newStore(t *testing.T, cfg azure.Config) *azure.Store {
	t.Helper()
	s, err := azure.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	svc := azurite()
	storagetest.Run(t, func(t *testing.T) storage.Store {
		name, _ := svc.newContainer(t)
		return newStore(t, svc.config(name, "pgbackrest/repo1"))
	}, storagetest.Options{})
}

func rawNames(t *testing.T, c *azure.Store) []string {
	t.Helper()
	names, err := azure.RawNames(t.Context(), c)
	if err != nil {
		t.Fatalf("list container: %v", err)
	}
	return names
}

func keysOf(t *testing.T, s storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

// TestPrefixLayout checks that keys land under Prefix + "/" as pgBackRest
// lays them out, and that a store sees only its own prefix.
func TestPrefixLayout(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, raw := svc.newContainer(t)
	repo := newStore(t, svc.config(name, "/pgbackrest/"))
	root := newStore(t, svc.config(name, ""))

	for _, key := range []string{"archive/db/archive.info", "backup/db/backup.info"} {
		if err := repo.Put(t.Context(), key, strings.NewReader(key)); err != nil {
			t.Fatalf("Put(%s): %v", key, err)
		}
	}
	for _, key := range []string{"pgbackrest-other/x", "other/y"} {
		if err := root.Put(t.Context(), key, strings.NewReader(key)); err != nil {
			t.Fatalf("root Put(%s): %v", key, err)
		}
	}
	wantRaw := []string{"other/y", "pgbackrest-other/x", "pgbackrest/archive/db/archive.info", "pgbackrest/backup/db/backup.info"}
	if got := rawNames(t, raw); !slices.Equal(got, wantRaw) {
		t.Fatalf("blobs in the container = %v, want %v", got, wantRaw)
	}
	if got, want := keysOf(t, repo, ""), []string{"archive/db/archive.info", "backup/db/backup.info"}; !slices.Equal(got, want) {
		t.Errorf("prefixed store List = %v, want %v", got, want)
	}
	if got := keysOf(t, root, ""); !slices.Equal(got, wantRaw) {
		t.Errorf("root store List = %v, want %v", got, wantRaw)
	}
	info, err := root.Stat(t.Context(), "pgbackrest/archive/db/archive.info")
	if err != nil || info.Size != int64(len("archive/db/archive.info")) {
		t.Errorf("root Stat of a prefixed object = %+v, %v", info, err)
	}
	if _, err := repo.Stat(t.Context(), "x"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("prefixed Stat of an object outside the prefix = %v, want ErrNotExist", err)
	}
}

// TestBlockBoundaries round-trips sizes around the block size, where the
// upload switches from one Put Blob to staged blocks.
func TestBlockBoundaries(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	cfg := svc.config(name, "blocks")
	cfg.BlockSize = 1 << 20
	cfg.Concurrency = 2
	s := newStore(t, cfg)
	for _, size := range []int{cfg.Concurrency*int(cfg.BlockSize) - 1, int(cfg.BlockSize), int(cfg.BlockSize) + 1, 3*int(cfg.BlockSize) + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			data := make([]byte, size)
			_, _ = rand.Read(data)
			key := fmt.Sprintf("size/%d", size)
			if err := s.Put(t.Context(), key, io.MultiReader(bytes.NewReader(data))); err != nil {
				t.Fatalf("Put: %v", err)
			}
			rc, err := s.Get(t.Context(), key, storage.Range{})
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes that differ from the %d put", len(got), len(data))
			}
		})
	}
}

// TestPutIfAbsentRaceMultiBlock races conditional creates that each stage
// several blocks: the first commit discards the others' staged blocks, and
// those losers must still report ErrExist.
func TestPutIfAbsentRaceMultiBlock(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	cfg := svc.config(name, "")
	cfg.BlockSize = 1 << 20
	cfg.Concurrency = 2
	s := newStore(t, cfg)
	storagetest.RacePutIfAbsent(t, s, "race/big", 4, func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 3<<20+i) })
}

func containerSAS(t *testing.T, svc service, name, perms string) string {
	t.Helper()
	token, err := azure.ContainerSAS(svc.account, svc.key, name, perms, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestSAS(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	cfg := svc.config(name, "repo")
	cfg.KeyType = azure.KeyTypeSAS
	cfg.Key = containerSAS(t, svc, name, "racwdl")
	s := newStore(t, cfg)
	ctx := t.Context()

	if err := s.Put(ctx, "a/b", strings.NewReader("sas content")); err != nil {
		t.Fatalf("Put with SAS: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "a/b", strings.NewReader("other")); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("PutIfAbsent of an existing key with SAS = %v, want ErrExist", err)
	}
	rc, err := s.Get(ctx, "a/b", storage.Range{Offset: 4})
	if err != nil {
		t.Fatalf("Get with SAS: %v", err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || string(got) != "content" {
		t.Fatalf("ranged Get with SAS = %q, %v; want \"content\"", got, err)
	}
	if keys := keysOf(t, s, "a/"); !slices.Equal(keys, []string{"a/b"}) {
		t.Fatalf("List with SAS = %v", keys)
	}
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("Delete with SAS: %v", err)
	}
	if _, err := s.Stat(ctx, "a/b"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat after Delete with SAS = %v, want ErrNotExist", err)
	}

	// A read-only token may not write.
	ro := cfg
	ro.Key = "?" + containerSAS(t, svc, name, "rl")
	rs := newStore(t, ro)
	err = rs.Put(ctx, "c", strings.NewReader("x"))
	if !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("Put with a read-only SAS = %v, want ErrPermission", err)
	}
	if strings.Contains(err.Error(), "sig=") {
		t.Fatalf("error quotes the SAS signature: %v", err)
	}
}

func TestWrongKeyIsErrPermission(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	cfg := svc.config(name, "")
	cfg.Key = base64.StdEncoding.EncodeToString([]byte("not the account key"))
	s := newStore(t, cfg)
	if _, err := s.Stat(t.Context(), "x"); !errors.Is(err, storage.ErrPermission) {
		t.Errorf("Stat with a wrong key = %v, want ErrPermission", err)
	}
	err := s.Put(t.Context(), "x", strings.NewReader("x"))
	if !errors.Is(err, storage.ErrPermission) {
		t.Errorf("Put with a wrong key = %v, want ErrPermission", err)
	}
	if err != nil && (strings.Contains(err.Error(), cfg.Key) || strings.Contains(err.Error(), svc.key)) {
		t.Errorf("error quotes a key: %v", err)
	}
	if err := s.List(t.Context(), "", func(storage.ObjectInfo) error { return nil }); !errors.Is(err, storage.ErrPermission) {
		t.Errorf("List with a wrong key = %v, want ErrPermission", err)
	}
}

func TestMissingContainerIsErrNotExist(t *testing.T) {
	t.Parallel()
	svc := azurite()
	svc.newContainer(t) // only to skip or fail when the service is down
	s := newStore(t, svc.config("pgsidecar-no-such-container", ""))
	_, err := s.Stat(t.Context(), "x")
	if !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat in a missing container = %v, want ErrNotExist", err)
	}
	var re *azure.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 404 || re.Code != "ContainerNotFound" ||
		!strings.Contains(err.Error(), "pgsidecar-no-such-container/x") || !strings.Contains(err.Error(), "404 ContainerNotFound") {
		t.Errorf("Stat error %v does not name the container, blob, status and x-ms-error-code", err)
	}
	if _, err := s.Get(t.Context(), "x", storage.Range{}); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Get in a missing container = %v, want ErrNotExist", err)
	}
	if err := s.List(t.Context(), "", func(storage.ObjectInfo) error { return nil }); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("List of a missing container = %v, want ErrNotExist", err)
	}
}

// TestSASNotInTransportErrors needs no service: nothing listens on port 1.
func TestSASNotInTransportErrors(t *testing.T) {
	t.Parallel()
	const secret = "c2VjcmV0LXNpZ25hdHVyZQ"
	s := newStore(t, azure.Config{
		Account:    "devstoreaccount1",
		Container:  "repo",
		Endpoint:   "http://127.0.0.1:1/devstoreaccount1",
		KeyType:    azure.KeyTypeSAS,
		Key:        "sv=2021-08-06&sp=rl&sig=" + secret,
		MaxRetries: -1,
	})
	_, err := s.Stat(t.Context(), "x")
	if err == nil {
		t.Fatal("Stat against a closed port succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("transport error quotes the SAS signature: %v", err)
	}
	if !strings.Contains(err.Error(), "sig=REDACTED") {
		t.Fatalf("transport error %q does not show the redacted URL", err)
	}
}

// TestRangeOfEmptyObject checks ranges of a zero-length blob, which the
// service answers with 416 whatever the range.
func TestRangeOfEmptyObject(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	s := newStore(t, svc.config(name, ""))
	if err := s.Put(t.Context(), "empty", strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	for _, rng := range []storage.Range{{Offset: 0, Length: 5}, {Offset: 3}, {Offset: 1, Length: 1}} {
		rc, err := s.Get(t.Context(), "empty", rng)
		if err != nil {
			t.Fatalf("Get(empty, %+v): %v", rng, err)
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || len(b) != 0 {
			t.Fatalf("Get(empty, %+v) read %d bytes, %v; want none", rng, len(b), err)
		}
	}
	if _, err := s.Get(t.Context(), "missing", storage.Range{Offset: 3}); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("ranged Get of a missing key = %v, want ErrNotExist", err)
	}
}

// faultProxy is a TCP proxy in front of the service that breaks real
// connections: it can refuse the next connections outright, or cut one
// response after a number of bytes.
type faultProxy struct {
	ln       net.Listener
	target   string
	drop     atomic.Int32 // connections still to close at once
	cutAfter atomic.Int64 // > 0: cut the next response stream after this many bytes
	cuts     atomic.Int32
}

func newFaultProxy(t *testing.T, endpoint string) (*faultProxy, string) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: u.Host}
	t.Cleanup(func() { _ = ln.Close() })
	go p.serve()
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.drop.Add(-1) >= 0 {
			_ = c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *faultProxy) forward(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, c) }()
	if limit := p.cutAfter.Swap(0); limit > 0 {
		_, _ = io.CopyN(c, up, limit)
		p.cuts.Add(1)
		return
	}
	_, _ = io.Copy(c, up)
}

// TestGetResumesBrokenDownload cuts a download mid-body: the reader
// resumes on a new connection and returns the exact bytes, and refuses to
// mix versions when the blob changed in between.
func TestGetResumesBrokenDownload(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, direct := svc.newContainer(t)
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	if err := direct.Put(t.Context(), "blob", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	proxy, endpoint := newFaultProxy(t, svc.endpoint)
	cfg := svc.config(name, "")
	cfg.Endpoint = endpoint

	// A new store each time, so that each download opens a new connection,
	// the one the proxy cuts.
	for _, rng := range []storage.Range{{}, {Offset: 1000, Length: 600000}, {Offset: 5}} {
		proxy.cutAfter.Store(300 << 10)
		rc, err := newStore(t, cfg).Get(t.Context(), "blob", rng)
		if err != nil {
			t.Fatalf("Get(%+v): %v", rng, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("read %+v across a cut connection: %v", rng, err)
		}
		want := data[rng.Offset:]
		if rng.Length > 0 {
			want = want[:rng.Length]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %+v: %d bytes that differ from the %d stored", rng, len(got), len(want))
		}
	}
	if n := proxy.cuts.Load(); n != 3 {
		t.Fatalf("proxy cut %d downloads, want 3: the test did not break anything", n)
	}

	// The blob changes while the download is broken: no mixed content.
	proxy.cutAfter.Store(300 << 10)
	rc, err := newStore(t, cfg).Get(t.Context(), "blob", storage.Range{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := direct.Put(t.Context(), "blob", bytes.NewReader(bytes.Repeat([]byte{'n'}, len(data)))); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err == nil {
		t.Fatalf("read across a cut connection of a blob replaced meanwhile returned %d bytes and no error", len(got))
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("read mixed the bytes of two versions")
	}
	if !strings.Contains(err.Error(), "ConditionNotMet") {
		t.Errorf("error %v does not show the failed If-Match", err)
	}
}

// TestConnectionFailures checks that a refused connection is retried when
// retries are on, and that without retries the error is transient to the
// retry decorator (storage.Permanent is false).
func TestConnectionFailures(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	proxy, endpoint := newFaultProxy(t, svc.endpoint)
	cfg := svc.config(name, "")
	cfg.Endpoint = endpoint

	proxy.drop.Store(2)
	s := newStore(t, cfg) // default: 3 retries
	if err := s.Put(t.Context(), "x", strings.NewReader("content")); err != nil {
		t.Fatalf("Put through two dropped connections: %v", err)
	}
	if d := proxy.drop.Load(); d >= 0 {
		t.Fatalf("proxy dropped only %d of 2 connections", 2-d)
	}

	cfg.MaxRetries = -1
	one := newStore(t, cfg)
	proxy.drop.Store(1)
	_, err := one.Stat(t.Context(), "x")
	if err == nil {
		t.Fatal("Stat through a dropped connection without retries succeeded")
	}
	if storage.Permanent(err) {
		t.Fatalf("connection failure %v is permanent to the retry decorator", err)
	}
	if !strings.Contains(err.Error(), name+"/x") {
		t.Errorf("error %v does not name the container and blob", err)
	}
}
