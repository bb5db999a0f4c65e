package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/pgsidecar/pgsidecar/cipher"
)

// encryptChunk is how much plaintext encryptReader encrypts at a time.
const encryptChunk = 256 << 10

// encryptReader streams the encryption of an in-memory plaintext, so that
// each repository encrypts the shared compressed buffer with its own
// passphrase without holding a second copy of it.
//
// It implements io.Seeker only as far as the retry decorator needs. It
// reports the position with Seek(0, io.SeekCurrent). It rewinds to the start
// with Seek(0, io.SeekStart), which begins a new encryption with a fresh
// salt. The replayed bytes therefore differ, but they decrypt to the same
// content. A storage Put reads its source whole, so the replay is an
// equivalent object. Other seeks fail.
type encryptReader struct {
	src  []byte
	pass []byte
	off  int          // plaintext consumed
	pos  int64        // ciphertext returned
	out  bytes.Buffer // ciphertext not yet returned
	enc  io.WriteCloser
	done bool // enc closed, out holds the rest
}

// newEncryptReader returns a reader of the encryption of src with pass.
func newEncryptReader(src []byte, pass string) (*encryptReader, error) {
	e := &encryptReader{src: src, pass: []byte(pass)}
	if err := e.start(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *encryptReader) start() error {
	e.out.Reset()
	enc, err := cipher.NewEncrypter(&e.out, e.pass)
	if err != nil {
		return fmt.Errorf("start encryption: %w", err)
	}
	e.enc, e.off, e.pos, e.done = enc, 0, 0, false
	return nil
}

// Read implements io.Reader.
func (e *encryptReader) Read(p []byte) (int, error) {
	for e.out.Len() == 0 {
		if e.done {
			return 0, io.EOF
		}
		if e.off < len(e.src) {
			n := min(encryptChunk, len(e.src)-e.off)
			if _, err := e.enc.Write(e.src[e.off : e.off+n]); err != nil {
				return 0, fmt.Errorf("encrypt: %w", err)
			}
			e.off += n
			continue
		}
		if err := e.enc.Close(); err != nil {
			return 0, fmt.Errorf("encrypt: %w", err)
		}
		e.done = true
	}
	n, _ := e.out.Read(p)
	e.pos += int64(n)
	return n, nil
}

// errSeek is returned for the seeks encryptReader does not support.
var errSeek = errors.New("encrypted stream can only be rewound to its start")

// Seek implements io.Seeker for Seek(0, io.SeekCurrent) and
// Seek(0, io.SeekStart) only.
func (e *encryptReader) Seek(offset int64, whence int) (int64, error) {
	switch {
	case offset == 0 && whence == io.SeekCurrent:
		return e.pos, nil
	case offset == 0 && whence == io.SeekStart:
		return 0, e.start()
	}
	return e.pos, errSeek
}
