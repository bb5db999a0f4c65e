package compress

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Type is a compression type, one of pgBackRest's compress-type values.
type Type int

// The compression types, in the order pgBackRest lists them in its manual.
const (
	// None stores data as it is, without extension.
	None Type = iota
	// Gz is gzip, extension ".gz" (pgBackRest's default compress-type).
	Gz
	// Lz4 is the LZ4 frame format, extension ".lz4".
	Lz4
	// Zst is Zstandard, extension ".zst".
	Zst
	// Bz2 is bzip2, extension ".bz2"; pgsidecar reads it but cannot write it.
	Bz2

	numTypes = iota
)

// ErrReadOnly is returned by NewWriter for a type pgsidecar can decompress but
// not compress (bz2).
var ErrReadOnly = errors.New("compress-type=bz2 is read-only in pgsidecar (no pure-Go bzip2 compressor); use gz, lz4, zst or none")

// typeInfo holds pgBackRest's settings for one type
// (src/common/compress/helper.c and */compress.h at release 2.45).
type typeInfo struct {
	name       string
	ext        string
	level      int // default level
	minL, maxL int // allowed level range
}

var types = [numTypes]typeInfo{
	None: {name: "none"},
	Gz:   {name: "gz", ext: ".gz", level: 6, minL: -1, maxL: 9},
	Lz4:  {name: "lz4", ext: ".lz4", level: 1, minL: -5, maxL: 12},
	Zst:  {name: "zst", ext: ".zst", level: 3, minL: -7, maxL: 22},
	Bz2:  {name: "bz2", ext: ".bz2", level: 9, minL: 1, maxL: 9},
}

// valid reports whether t is one of the defined types.
func (t Type) valid() bool { return t >= 0 && t < numTypes }

// String returns the compress-type name ("none", "gz", "lz4", "zst" or
// "bz2"), or "Type(n)" for an undefined value.
func (t Type) String() string {
	if !t.valid() {
		return fmt.Sprintf("Type(%d)", int(t))
	}
	return types[t].name
}

// Ext returns the file extension pgBackRest appends for t, with its leading
// dot (".gz"), or "" for None and undefined values.
func (t Type) Ext() string {
	if !t.valid() {
		return ""
	}
	return types[t].ext
}

// DefaultLevel returns pgBackRest's default compress-level for t: gz 6, lz4 1,
// zst 3, bz2 9, and 0 for None.
func (t Type) DefaultLevel() int {
	if !t.valid() {
		return 0
	}
	return types[t].level
}

// Levels returns the range of compress-level values pgBackRest accepts for t:
// gz -1..9, lz4 -5..12, zst -7..22, bz2 1..9, and 0..0 for None.
func (t Type) Levels() (lo, hi int) {
	if !t.valid() {
		return 0, 0
	}
	return types[t].minL, types[t].maxL
}

// ParseType parses a compress-type option value. Names are case-sensitive,
// as in pgBackRest.
func ParseType(s string) (Type, error) {
	for t := range Type(numTypes) {
		if types[t].name == s {
			return t, nil
		}
	}
	return None, fmt.Errorf("invalid compress-type %q: must be one of none, gz, lz4, zst, bz2", s)
}

// TypeFromExt returns the type whose extension name ends with, or None when
// no extension matches. Like pgBackRest's compressTypeFromName, it decides how
// an existing repository file is decompressed, whatever the current
// compress-type setting.
func TypeFromExt(name string) Type {
	for t := None + 1; t < numTypes; t++ {
		if strings.HasSuffix(name, types[t].ext) {
			return t
		}
	}
	return None
}

// Writer is a compressing stream, returned by NewWriter.
type Writer interface {
	// Write compresses p. Output may be buffered until Close. Errors from the
	// underlying writer are returned wrapped and make the stream unusable
	// until Reset.
	Write(p []byte) (int, error)
	// Close flushes buffered data and writes the end of the stream. It does
	// not close the underlying writer. The stream is incomplete until Close
	// returns nil. Calling Close again returns nil; Write after Close fails.
	Close() error
	// Reset starts a new stream to w with the same type and level, reusing
	// the writer's buffers. Anything not yet closed is discarded.
	Reset(w io.Writer)
}

// Reader is a decompressing stream, returned by NewReader.
type Reader interface {
	// Read returns decompressed data. It returns io.EOF only after the
	// whole compressed stream has been read and checked; an empty or
	// truncated stream gives an error wrapping io.ErrUnexpectedEOF, and
	// corrupt data another error. Errors are sticky until Reset.
	Read(p []byte) (int, error)
	// Close releases the decoder's resources. It does not close the
	// underlying reader. Read after Close fails; Reset makes the reader
	// usable again. Close always returns nil.
	Close() error
	// Reset starts decompressing a new stream from r with the same type,
	// reusing buffers where the codec allows. It performs no I/O.
	Reset(r io.Reader) error
}

// NewWriter returns a writer that compresses to w with type t at the given
// level, which must lie in t.Levels() (use t.DefaultLevel() for pgBackRest's
// default); the level is ignored for None. Bz2 gives ErrReadOnly.
func NewWriter(w io.Writer, t Type, level int) (Writer, error) {
	if !t.valid() {
		return nil, fmt.Errorf("create compressor: unknown compression type %v", t)
	}
	if t == Bz2 {
		return nil, ErrReadOnly
	}
	if lo, hi := t.Levels(); t != None && (level < lo || level > hi) {
		return nil, fmt.Errorf("create compressor: level %d is out of range [%d, %d] for compress-type %s", level, lo, hi, t)
	}
	switch t {
	case Gz:
		return newGzWriter(w, level)
	case Lz4:
		return newLz4Writer(w, level)
	case Zst:
		return newZstWriter(w, level)
	default:
		return &noneWriter{w: w}, nil
	}
}

// NewReader returns a reader that decompresses the stream of type t read
// from r. Nothing is read from r until the first Read.
func NewReader(r io.Reader, t Type) (Reader, error) {
	if !t.valid() {
		return nil, fmt.Errorf("create decompressor: unknown compression type %v", t)
	}
	if t == None {
		return &noneReader{r: r}, nil
	}
	d := &reader{t: t}
	if err := d.Reset(r); err != nil {
		return nil, err
	}
	return d, nil
}

// noneWriter passes data through unchanged.
type noneWriter struct {
	w      io.Writer
	closed bool
}

func (n *noneWriter) Write(p []byte) (int, error) {
	if n.closed {
		return 0, errWriteClosed
	}
	return n.w.Write(p)
}

func (n *noneWriter) Close() error { n.closed = true; return nil }

func (n *noneWriter) Reset(w io.Writer) { n.w, n.closed = w, false }

// noneReader passes data through unchanged; an empty stream is valid.
type noneReader struct {
	r      io.Reader
	closed bool
}

func (n *noneReader) Read(p []byte) (int, error) {
	if n.closed {
		return 0, errReadClosed
	}
	return n.r.Read(p)
}

func (n *noneReader) Close() error { n.closed = true; return nil }

func (n *noneReader) Reset(r io.Reader) error { n.r, n.closed = r, false; return nil }

var (
	errWriteClosed = errors.New("write to closed compressor")
	errReadClosed  = errors.New("read from closed decompressor")
)
