package cipher

import (
	stdcipher "crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// decrypter is the io.Reader NewDecrypter returns.
type decrypter struct {
	r    io.Reader
	pass []byte // copy of the passphrase, dropped once the key is derived
	mode stdcipher.BlockMode
	// buf holds ciphertext read from r; blocks are decrypted in place and
	// then served from out. Its capacity is batchSize+BlockSize.
	buf []byte
	out []byte // decrypted plaintext not yet returned (a slice of buf)
	// tail holds the ciphertext kept back from the last batch: the last
	// block may only be decrypted at EOF, when its padding can be removed.
	tail  [BlockSize]byte
	ntail int
	eof   bool  // r has returned io.EOF
	err   error // sticky; io.EOF after the padding has been verified
}

// NewDecrypter returns a reader that decrypts the pgBackRest/OpenSSL salted
// format read from r with pass (raw bytes, not empty). Nothing is read from r
// until the first Read.
//
// Read returns plaintext as it is decrypted, in batches of up to 64 KiB,
// except that the last 1 to 16 bytes of ciphertext are held back until r
// reports io.EOF, because only then can the padding be checked and removed.
// Read returns ErrNotEncrypted if the input does not start with "Salted__",
// ErrTruncated if the ciphertext is shorter than the header plus one block or
// not a whole number of blocks, and ErrWrongPassphrase if the final padding is
// invalid; errors from r are wrapped. Plaintext already returned before such
// an error must be discarded by the caller. Errors are sticky. The reader is
// not safe for concurrent use.
func NewDecrypter(r io.Reader, pass []byte) (io.Reader, error) {
	if len(pass) == 0 {
		return nil, fmt.Errorf("create decrypter: %w", ErrEmptyPassphrase)
	}
	return &decrypter{r: r, pass: append([]byte(nil), pass...)}, nil
}

// Read implements io.Reader.
func (d *decrypter) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		d.fill()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// WriteTo implements io.WriterTo so that io.Copy hands whole decrypted
// batches to w instead of copying them through a small buffer. Like
// Read, it stops at the first error; it returns nil after a clean EOF.
func (d *decrypter) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(d.out) > 0 {
			n, err := w.Write(d.out)
			total += int64(n)
			d.out = d.out[n:]
			if err != nil {
				return total, err
			}
			if n == 0 {
				return total, io.ErrShortWrite
			}
			continue
		}
		if d.err != nil {
			if d.err == io.EOF {
				return total, nil
			}
			return total, d.err
		}
		d.fill()
	}
}

// fill reads the next batch of ciphertext and decrypts it into out, or sets
// err.
func (d *decrypter) fill() {
	if d.mode == nil {
		d.err = d.readHeader()
		return
	}
	d.buf = d.buf[:copy(d.buf[:cap(d.buf)], d.tail[:d.ntail])]
	d.ntail = 0
	if !d.eof {
		n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+n]
		switch {
		case errors.Is(err, io.EOF):
			d.eof = true
		case err != nil:
			d.err = fmt.Errorf("read ciphertext: %w", err)
			return
		}
	}
	n := len(d.buf)
	if d.eof {
		if n == 0 || n%BlockSize != 0 {
			d.err = ErrTruncated
			return
		}
		d.mode.CryptBlocks(d.buf, d.buf)
		pad := int(d.buf[n-1])
		if pad == 0 || pad > BlockSize {
			d.err = ErrWrongPassphrase
			return
		}
		for _, b := range d.buf[n-pad : n-1] {
			if int(b) != pad {
				d.err = ErrWrongPassphrase
				return
			}
		}
		d.out = d.buf[:n-pad]
		d.err = io.EOF
		return
	}
	if n <= BlockSize {
		// Not enough to release anything yet: keep it all back.
		d.ntail = copy(d.tail[:], d.buf)
		return
	}
	// Release every whole block but keep back 1 to BlockSize bytes.
	k := (n - 1) / BlockSize * BlockSize
	d.ntail = copy(d.tail[:], d.buf[k:])
	d.mode.CryptBlocks(d.buf[:k], d.buf[:k])
	d.out = d.buf[:k]
}

// readHeader reads and checks the magic and salt and sets up the cipher.
func (d *decrypter) readHeader() error {
	var hdr [HeaderSize]byte
	n, err := io.ReadFull(d.r, hdr[:])
	// Judge the magic on what arrived, so short plain input reports
	// ErrNotEncrypted rather than ErrTruncated.
	m := min(n, len(Magic))
	if string(hdr[:m]) != Magic[:m] {
		return ErrNotEncrypted
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrTruncated
	case err != nil:
		return fmt.Errorf("read cipher header: %w", err)
	}
	key, iv := deriveKey(d.pass, hdr[len(Magic):])
	clear(d.pass)
	d.pass = nil
	mode, err := newCBC(&key, iv, true)
	if err != nil {
		return fmt.Errorf("create decrypter: %w", err)
	}
	d.mode = mode
	d.buf = make([]byte, 0, batchSize+BlockSize)
	return nil
}
