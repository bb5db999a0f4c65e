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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

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
// returns its name and a client with full rights on it. An unreachable
// service ends the test through storagetest.Unavailable.
func (svc service) newContainer(t *testing.T) (string, *container.Client) {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "pgsidecar-" + hex.EncodeToString(b[:])
	cred, err := container.NewSharedKeyCredential(svc.account, svc.key)
	if err != nil {
		t.Fatalf("shared key for %s: %v", svc.account, err)
	}
	// No retries, so that a stopped service is reported at once.
	c, err := container.NewClientWithSharedKeyCredential(svc.endpoint+"/"+name, cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(t.Context(), nil); err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) {
			t.Fatalf("create container %s at %s: %v", name, svc.endpoint, err)
		}
		storagetest.Unavailable(t, "azure", err)
	}
	t.Cleanup(func() {
		if _, err := c.Delete(context.WithoutCancel(t.Context()), nil); err != nil {
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

func rawNames(t *testing.T, c *container.Client) []string {
	t.Helper()
	var names []string
	pager := c.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		if err != nil {
			t.Fatalf("list container: %v", err)
		}
		for _, item := range page.Segment.BlobItems {
			names = append(names, *item.Name)
		}
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
	cfg.BlockSize = 1 << 20 // the SDK's smallest block
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

func containerSAS(t *testing.T, svc service, name string, perms sas.ContainerPermissions) string {
	t.Helper()
	cred, err := container.NewSharedKeyCredential(svc.account, svc.key)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		StartTime:     time.Now().Add(-time.Hour).UTC(),
		ExpiryTime:    time.Now().Add(time.Hour).UTC(),
		Permissions:   perms.String(),
		ContainerName: name,
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return qp.Encode()
}

func TestSAS(t *testing.T) {
	t.Parallel()
	svc := azurite()
	name, _ := svc.newContainer(t)
	cfg := svc.config(name, "repo")
	cfg.KeyType = azure.KeyTypeSAS
	cfg.Key = containerSAS(t, svc, name, sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true})
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
	ro.Key = "?" + containerSAS(t, svc, name, sas.ContainerPermissions{Read: true, List: true})
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
	if err := s.Put(t.Context(), "x", strings.NewReader("x")); !errors.Is(err, storage.ErrPermission) {
		t.Errorf("Put with a wrong key = %v, want ErrPermission", err)
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
	if _, err := s.Stat(t.Context(), "x"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat in a missing container = %v, want ErrNotExist", err)
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
