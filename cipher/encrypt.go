package cipher

import (
	stdcipher "crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
)

// encrypter is the io.WriteCloser NewEncrypter returns.
type encrypter struct {
	w    io.Writer
	mode stdcipher.BlockMode
	// out holds ciphertext (and, before the first flush, the header) waiting
	// to be written; its capacity is fixed at HeaderSize+batchSize.
	out []byte
	// pend holds the plaintext of an incomplete block.
	pend  [BlockSize]byte
	npend int
	err   error // sticky: a failed write to w or errClosed
}

// NewEncrypter returns a writer that encrypts everything written to it to w
// in pgBackRest's format, with a salt from crypto/rand. pass is used as raw
// bytes and must not be empty.
//
// Output is buffered and written to w in batches of about 64 KiB; the header
// is written together with the first batch. Close pads and writes the final
// block and flushes; it does not close w, and must be called for the output
// to be complete (an empty input still yields 32 bytes). After an error from
// w, every later Write and Close returns that error. Close is idempotent:
// after a successful Close it returns nil, and Write returns an error. The
// writer is not safe for concurrent use.
func NewEncrypter(w io.Writer, pass []byte) (io.WriteCloser, error) {
	if len(pass) == 0 {
		return nil, fmt.Errorf("create encrypter: %w", ErrEmptyPassphrase)
	}
	var salt [SaltSize]byte
	if _, err := io.ReadFull(rand.Reader, salt[:]); err != nil {
		return nil, fmt.Errorf("create encrypter: generate salt: %w", err)
	}
	return newEncrypter(w, pass, salt)
}

// newEncrypter returns an encrypter with the given salt; tests use it to
// reproduce known-answer vectors.
func newEncrypter(w io.Writer, pass []byte, salt [SaltSize]byte) (*encrypter, error) {
	key, iv := deriveKey(pass, salt[:])
	mode, err := newCBC(&key, iv, false)
	if err != nil {
		return nil, fmt.Errorf("create encrypter: %w", err)
	}
	e := &encrypter{
		w:    w,
		mode: mode,
		out:  make([]byte, 0, HeaderSize+batchSize),
	}
	e.out = append(e.out, Magic...)
	e.out = append(e.out, salt[:]...)
	return e, nil
}

// Write encrypts p. Whole blocks are encrypted straight from p into the
// output buffer; a trailing partial block waits for more data or Close.
func (e *encrypter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n := len(p)
	for len(p) > 0 {
		// Complete a pending partial block first.
		if e.npend > 0 || len(p) < BlockSize {
			c := copy(e.pend[e.npend:], p)
			e.npend += c
			p = p[c:]
			if e.npend < BlockSize {
				break
			}
			if err := e.reserve(BlockSize); err != nil {
				return n - len(p), err
			}
			l := len(e.out)
			e.out = e.out[:l+BlockSize]
			e.mode.CryptBlocks(e.out[l:], e.pend[:])
			e.npend = 0
			continue
		}
		if err := e.reserve(BlockSize); err != nil {
			return n - len(p), err
		}
		l := len(e.out)
		k := min(len(p), cap(e.out)-l)
		k -= k % BlockSize
		e.out = e.out[:l+k]
		e.mode.CryptBlocks(e.out[l:], p[:k])
		p = p[k:]
	}
	return n, nil
}

// reserve flushes the output buffer if it has less than size bytes free.
func (e *encrypter) reserve(size int) error {
	if cap(e.out)-len(e.out) >= size {
		return nil
	}
	return e.flush()
}

// flush writes the output buffer to w.
func (e *encrypter) flush() error {
	if len(e.out) == 0 {
		return nil
	}
	if _, err := e.w.Write(e.out); err != nil {
		e.err = fmt.Errorf("write ciphertext: %w", err)
		return e.err
	}
	e.out = e.out[:0]
	return nil
}

// Close pads the final block as PKCS#7 does (1 to 16 bytes, each holding the
// pad length), encrypts it and flushes everything to w.
func (e *encrypter) Close() error {
	if e.err == errClosed {
		return nil
	}
	if e.err != nil {
		return e.err
	}
	pad := byte(BlockSize - e.npend)
	for i := e.npend; i < BlockSize; i++ {
		e.pend[i] = pad
	}
	if err := e.reserve(BlockSize); err != nil {
		return err
	}
	l := len(e.out)
	e.out = e.out[:l+BlockSize]
	e.mode.CryptBlocks(e.out[l:], e.pend[:])
	e.npend = 0
	if err := e.flush(); err != nil {
		return err
	}
	e.err = errClosed
	return nil
}
