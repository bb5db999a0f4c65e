package repo

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/pgsidecar/pgsidecar/cipher"
	"github.com/pgsidecar/pgsidecar/compress"
	"github.com/pgsidecar/pgsidecar/storage"
)

// Sentinel errors of repository access. Each is wrapped with the repository
// name and the object concerned.
var (
	// ErrWrongPassphrase: repoN-cipher-pass does not decrypt the repository.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrEncrypted: the repository is encrypted but no passphrase is configured.
	ErrEncrypted = errors.New("repository is encrypted but no repo cipher passphrase is configured")
	// ErrNotEncrypted: a passphrase is configured but the repository is not encrypted.
	ErrNotEncrypted = errors.New("repository is not encrypted but a repo cipher type is configured")
	// ErrChecksumMismatch: content does not match the checksum that names or describes it.
	ErrChecksumMismatch = errors.New("checksum mismatch")
)

// Repository is one stanza in one repository: it reads and writes the info
// files, manifests and data files through a storage.Store, encrypting and
// decrypting with the passphrase hierarchy pgBackRest uses (the user's
// passphrase for archive.info and backup.info, their sub-passphrases for
// WAL and manifests, each manifest's own for its backup's files).
type Repository struct {
	store  storage.Store
	name   string
	stanza string
	pass   string
}

// Open returns the stanza's view of a repository. name ("repo1") is used in
// errors; pass is repoN-cipher-pass, empty when repoN-cipher-type is none.
func Open(store storage.Store, name, stanza, pass string) *Repository {
	return &Repository{store: store, name: name, stanza: stanza, pass: pass}
}

// Name returns the repository's name, e.g. "repo1".
func (r *Repository) Name() string { return r.name }

// Stanza returns the stanza name.
func (r *Repository) Stanza() string { return r.stanza }

// Encrypted reports whether the repository is configured with a cipher.
func (r *Repository) Encrypted() bool { return r.pass != "" }

// Store returns the underlying store.
func (r *Repository) Store() storage.Store { return r.store }

// ArchiveKey returns the key of file (relative to archive/<stanza>/).
func (r *Repository) ArchiveKey(file string) string { return "archive/" + r.stanza + "/" + file }

// BackupKey returns the key of file (relative to backup/<stanza>/).
func (r *Repository) BackupKey(file string) string { return "backup/" + r.stanza + "/" + file }

// decrypt decrypts data read from key with pass ("" for plain repositories),
// turning cipher failures into the repository's sentinels.
func (r *Repository) decrypt(key string, data []byte, pass string) ([]byte, error) {
	encrypted := cipher.IsEncrypted(data)
	switch {
	case pass == "" && encrypted:
		return nil, fmt.Errorf("%s: %s: %w", r.name, key, ErrEncrypted)
	case pass == "":
		return data, nil
	case !encrypted:
		return nil, fmt.Errorf("%s: %s: %w", r.name, key, ErrNotEncrypted)
	}
	plain, err := cipher.Decrypt(data, []byte(pass))
	if err != nil {
		if errors.Is(err, cipher.ErrWrongPassphrase) {
			return nil, fmt.Errorf("%w for %s (%s)", ErrWrongPassphrase, r.name, key)
		}
		return nil, fmt.Errorf("%s: decrypt %s: %w", r.name, key, err)
	}
	return plain, nil
}

// loadInfo reads an info file with the fallback to its copy that pgBackRest
// uses: the main file first, then the copy; both failing is an error naming
// both problems.
func (r *Repository) loadInfo(ctx context.Context, key string, parse func(name string, data []byte) error) error {
	var errs []error
	for _, k := range []string{key, key + CopyExt} {
		data, err := storage.ReadAll(ctx, r.store, k)
		if err == nil {
			data, err = r.decrypt(k, data, r.pass)
		}
		if err == nil {
			err = parse(k, data)
			if err != nil && r.pass != "" {
				// A wrong passphrase has a 1 in 256 chance of valid padding:
				// the garbage then fails to parse.
				err = fmt.Errorf("%w (or %w for %s)", err, ErrWrongPassphrase, r.name)
			}
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, err)
	}
	if errors.Is(errs[0], storage.ErrNotExist) && errors.Is(errs[1], storage.ErrNotExist) {
		return fmt.Errorf("%s: %s and its copy do not exist: %w", r.name, key, storage.ErrNotExist)
	}
	return fmt.Errorf("%s: unable to load %s or its copy: %w", r.name, key, errors.Join(errs...))
}

// saveInfo encrypts data once and writes the file, then its byte-identical
// copy, as pgBackRest does.
func (r *Repository) saveInfo(ctx context.Context, key string, data []byte) error {
	if r.pass != "" {
		var err error
		if data, err = cipher.Encrypt(data, []byte(r.pass)); err != nil {
			return fmt.Errorf("%s: encrypt %s: %w", r.name, key, err)
		}
	}
	for _, k := range []string{key, key + CopyExt} {
		if err := r.store.Put(ctx, k, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("%s: write %s: %w", r.name, k, err)
		}
	}
	return nil
}

// LoadArchiveInfo reads archive/<stanza>/archive.info (or its copy).
func (r *Repository) LoadArchiveInfo(ctx context.Context) (*ArchiveInfo, error) {
	var ai *ArchiveInfo
	err := r.loadInfo(ctx, r.ArchiveKey(ArchiveInfoFile), func(name string, data []byte) error {
		var err error
		ai, err = LoadArchiveInfo(name, data)
		return err
	})
	return ai, err
}

// SaveArchiveInfo writes archive/<stanza>/archive.info and its copy.
func (r *Repository) SaveArchiveInfo(ctx context.Context, ai *ArchiveInfo) error {
	data, err := ai.Save()
	if err != nil {
		return err
	}
	return r.saveInfo(ctx, r.ArchiveKey(ArchiveInfoFile), data)
}

// LoadBackupInfo reads backup/<stanza>/backup.info (or its copy).
func (r *Repository) LoadBackupInfo(ctx context.Context) (*BackupInfo, error) {
	var bi *BackupInfo
	err := r.loadInfo(ctx, r.BackupKey(BackupInfoFile), func(name string, data []byte) error {
		var err error
		bi, err = LoadBackupInfo(name, data)
		return err
	})
	return bi, err
}

// SaveBackupInfo writes backup/<stanza>/backup.info and its copy.
func (r *Repository) SaveBackupInfo(ctx context.Context, bi *BackupInfo) error {
	data, err := bi.Save()
	if err != nil {
		return err
	}
	return r.saveInfo(ctx, r.BackupKey(BackupInfoFile), data)
}

// LoadManifest reads the manifest of backup label (or its copy), encrypted
// with pass, backup.info's sub-passphrase.
func (r *Repository) LoadManifest(ctx context.Context, label, pass string) (*Manifest, error) {
	key := r.BackupKey(BackupManifestPath(label))
	var m *Manifest
	var errs []error
	for _, k := range []string{key, key + CopyExt} {
		data, err := storage.ReadAll(ctx, r.store, k)
		if err == nil {
			data, err = r.decrypt(k, data, pass)
		}
		if err == nil {
			m, err = LoadManifest(k, data)
		}
		if err == nil {
			return m, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%s: unable to load the manifest of backup %s or its copy: %w", r.name, label, errors.Join(errs...))
}

// Exists reports whether key exists.
func (r *Repository) Exists(ctx context.Context, key string) (bool, error) {
	_, err := r.store.Stat(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("%s: %w", r.name, err)
}

// OpenFile streams the content of the bytes rng selects of key (a whole
// object, or one file of a bundle), decrypted with pass ("" for none) and
// decompressed with ct. The caller closes the reader.
func (r *Repository) OpenFile(ctx context.Context, key string, rng storage.Range, pass string, ct compress.Type) (io.ReadCloser, error) {
	rc, err := r.store.Get(ctx, key, rng)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	var src io.Reader = rc
	if pass != "" {
		if src, err = cipher.NewDecrypter(rc, []byte(pass)); err != nil {
			_ = rc.Close()
			return nil, fmt.Errorf("%s: decrypt %s: %w", r.name, key, err)
		}
	}
	dr, err := compress.NewReader(src, ct)
	if err != nil {
		_ = rc.Close()
		return nil, fmt.Errorf("%s: decompress %s: %w", r.name, key, err)
	}
	return &fileReader{r: r, key: key, dr: dr, rc: rc}, nil
}

// fileReader names the repository and object in read errors and maps the
// cipher's wrong-passphrase error to the repository's.
type fileReader struct {
	r   *Repository
	key string
	dr  compress.Reader
	rc  io.ReadCloser
}

func (f *fileReader) Read(p []byte) (int, error) {
	n, err := f.dr.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, cipher.ErrWrongPassphrase) {
			return n, fmt.Errorf("%w for %s (%s)", ErrWrongPassphrase, f.r.name, f.key)
		}
		return n, fmt.Errorf("%s: read %s: %w", f.r.name, f.key, err)
	}
	return n, err
}

func (f *fileReader) Close() error {
	err := f.dr.Close()
	if cerr := f.rc.Close(); err == nil {
		err = cerr
	}
	return err
}

// FileCheck is the result of reading a whole file back.
type FileCheck struct {
	// Size is the decrypted, decompressed size.
	Size int64
	// SHA1 is the lowercase hex SHA-1 of the content.
	SHA1 string
}

// CheckFile reads the file OpenFile opens to the end and returns its size
// and SHA-1.
func (r *Repository) CheckFile(ctx context.Context, key string, rng storage.Range, pass string, ct compress.Type) (FileCheck, error) {
	rc, err := r.OpenFile(ctx, key, rng, pass, ct)
	if err != nil {
		return FileCheck{}, err
	}
	defer rc.Close()
	var h hash.Hash = sha1.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return FileCheck{}, err
	}
	return FileCheck{Size: n, SHA1: hex.EncodeToString(h.Sum(nil))}, nil
}

// Codec returns the stream codec of compression type c.
func (c CompressType) Codec() (compress.Type, error) {
	t, err := compress.ParseType(string(c))
	if err != nil {
		return 0, fmt.Errorf("compression %q: %w", string(c), err)
	}
	return t, nil
}
