package compress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// writable are the types NewWriter supports.
var writable = []Type{None, Gz, Lz4, Zst}

// compressed are the types with a real codec.
var compressed = []Type{Gz, Lz4, Zst, Bz2}

// pseudoWAL returns n bytes that look like WAL or relation pages: 8 KiB pages
// that are all zeros, random (incompressible), or a header followed by
// repetitive tuples with a few varying bytes and a zero tail.
func pseudoWAL(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	const page = 8192
	b := make([]byte, n)
	for off := 0; off < n; off += page {
		p := b[off:min(off+page, n)]
		switch k := rng.IntN(10); {
		case k < 3: // zero page
		case k < 5: // random page
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
		default: // tuples
			used := rng.IntN(len(p) + 1)
			for i := 0; i < used; i++ {
				if i%64 < 8 {
					p[i] = byte(rng.Uint32())
				} else {
					p[i] = "INSERT INTO accounts VALUES (42, 'alice', 1000.00);"[i%51]
				}
			}
		}
	}
	return b
}

// compressData compresses p with t at level, writing in chunks of size chunk
// (everything at once when chunk <= 0).
func compressData(tb testing.TB, p []byte, t Type, level, chunk int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, t, level)
	if err != nil {
		tb.Fatal(err)
	}
	writeChunks(tb, w, p, chunk)
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func writeChunks(tb testing.TB, w io.Writer, p []byte, chunk int) {
	tb.Helper()
	if chunk <= 0 {
		chunk = max(len(p), 1)
	}
	for rest := p; len(rest) > 0; {
		k := min(chunk, len(rest))
		n, err := w.Write(rest[:k])
		if err != nil || n != k {
			tb.Fatalf("Write(%d) = %d, %v", k, n, err)
		}
		rest = rest[k:]
	}
}

// decompressData decompresses c as type t through a reader wrapped by wrap.
func decompressData(c []byte, t Type, wrap func(io.Reader) io.Reader) ([]byte, error) {
	r, err := NewReader(wrap(bytes.NewReader(c)), t)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func identity(r io.Reader) io.Reader { return r }

func TestTypeNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		typ     Type
		ext     string
		level   int
		lo, hi  int
		wantErr bool
	}{
		{"none", None, "", 0, 0, 0, false},
		{"gz", Gz, ".gz", 6, -1, 9, false},
		{"lz4", Lz4, ".lz4", 1, -5, 12, false},
		{"zst", Zst, ".zst", 3, -7, 22, false},
		{"bz2", Bz2, ".bz2", 9, 1, 9, false},
		{"xz", None, "", 0, 0, 0, true},
		{"GZ", None, "", 0, 0, 0, true},
		{"gzip", None, "", 0, 0, 0, true},
		{"", None, "", 0, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseType(tc.name)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
					t.Fatalf("ParseType(%q) err = %v, want an error naming the value", tc.name, err)
				}
				return
			}
			if err != nil || got != tc.typ {
				t.Fatalf("ParseType(%q) = %v, %v", tc.name, got, err)
			}
			if got.String() != tc.name || got.Ext() != tc.ext || got.DefaultLevel() != tc.level {
				t.Fatalf("%v: String %q Ext %q DefaultLevel %d", got, got.String(), got.Ext(), got.DefaultLevel())
			}
			if lo, hi := got.Levels(); lo != tc.lo || hi != tc.hi {
				t.Fatalf("%v: Levels = %d..%d", got, lo, hi)
			}
			if tc.ext != "" && TypeFromExt("000000010000000000000001-0123456789abcdef0123456789abcdef01234567"+tc.ext) != got {
				t.Fatalf("TypeFromExt does not map %q to %v", tc.ext, got)
			}
		})
	}
	if s := Type(42).String(); s != "Type(42)" {
		t.Errorf("Type(42).String() = %q", s)
	}
}

func TestTypeFromExt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want Type
	}{
		{"pg_data/base/1/1249.gz", Gz},
		{"backup.manifest", None},
		{"backup.history/2026/20261129-081000F.manifest.gz", Gz},
		{"x.lz4", Lz4},
		{"x.zst", Zst},
		{"x.bz2", Bz2},
		{"x.xz", None},
		{"x.gzip", None},
		{"x.gz.tmp", None},
		{"", None},
	}
	for _, tc := range tests {
		if got := TypeFromExt(tc.name); got != tc.want {
			t.Errorf("TypeFromExt(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewWriterArgs(t *testing.T) {
	t.Parallel()
	if _, err := NewWriter(io.Discard, Bz2, 9); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("bz2 writer: err = %v, want ErrReadOnly", err)
	}
	for _, typ := range []Type{Gz, Lz4, Zst} {
		lo, hi := typ.Levels()
		for _, level := range []int{lo - 1, hi + 1} {
			_, err := NewWriter(io.Discard, typ, level)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint(level)) || !strings.Contains(err.Error(), typ.String()) {
				t.Errorf("%v level %d: err = %v, want out-of-range error", typ, level, err)
			}
		}
	}
	if _, err := NewWriter(io.Discard, None, 99); err != nil {
		t.Errorf("none ignores the level, got %v", err)
	}
	if _, err := NewWriter(io.Discard, Type(7), 0); err == nil {
		t.Error("NewWriter accepted Type(7)")
	}
	if _, err := NewReader(strings.NewReader(""), Type(-1)); err == nil {
		t.Error("NewReader accepted Type(-1)")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 100, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20}
	for _, typ := range writable {
		lo, hi := typ.Levels()
		levels := []int{typ.DefaultLevel()}
		if typ != None {
			levels = append(levels, lo, hi)
			if typ == Lz4 {
				levels = append(levels, 0, 3, 9) // fast/HC boundary
			}
			if typ == Zst {
				levels = append(levels, 1, 6, 10)
			}
			if typ == Gz {
				levels = append(levels, 0, 1)
			}
		}
		for _, level := range levels {
			for _, size := range sizes {
				if size == 1<<20 && level == hi && typ == Zst {
					continue // level 22 on a MiB is slow under -race; smaller sizes cover it
				}
				t.Run(fmt.Sprintf("%v/level%d/size%d", typ, level, size), func(t *testing.T) {
					t.Parallel()
					p := pseudoWAL(size, uint64(size))
					chunk := []int{0, 1000, 8192, 70000}[(size+level+10)%4]
					c := compressData(t, p, typ, level, chunk)
					wraps := []func(io.Reader) io.Reader{identity, iotest.HalfReader, iotest.DataErrReader}
					if size < 1<<17 {
						wraps = append(wraps, iotest.OneByteReader)
					}
					for i, wrap := range wraps {
						got, err := decompressData(c, typ, wrap)
						if err != nil {
							t.Fatalf("reader %d: %v", i, err)
						}
						if !bytes.Equal(got, p) {
							t.Fatalf("reader %d: round trip differs (%d bytes, want %d)", i, len(got), len(p))
						}
					}
					if typ != None && !(typ == Gz && level == 0) && size == 1<<20 && len(c) >= len(p) {
						t.Errorf("%d bytes compressed to %d", len(p), len(c))
					}
				})
			}
		}
	}
}

// TestFrameFormat checks the header fields that make our output match what
// pgBackRest writes (pgbackrest-format.md section 5).
func TestFrameFormat(t *testing.T) {
	t.Parallel()
	p := pseudoWAL(200000, 3)
	gz := compressData(t, p, Gz, 6, 0)
	if !bytes.HasPrefix(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}) || gz[9] != 3 {
		t.Errorf("gz header % x, want 1f8b 08 00 00000000 xx 03", gz[:10])
	}
	lz := compressData(t, p, Lz4, 1, 0)
	// Magic, then FLG: version 01, content checksum; BD: 64 KiB blocks.
	if !bytes.HasPrefix(lz, []byte{0x04, 0x22, 0x4d, 0x18}) || lz[4]&0xc4 != 0x44 || lz[4]&0x1b != 0 || lz[5] != 0x40 {
		t.Errorf("lz4 frame header % x, want FLG 0x44|indep and BD 0x40", lz[:6])
	}
	zs := compressData(t, p, Zst, 3, 0)
	// Magic, then FHD without checksum flag (bit 2).
	if !bytes.HasPrefix(zs, []byte{0x28, 0xb5, 0x2f, 0xfd}) || zs[4]&0x04 != 0 {
		t.Errorf("zstd frame header % x, want no checksum", zs[:6])
	}
}

func TestGzLevels(t *testing.T) {
	t.Parallel()
	p := pseudoWAL(1<<20, 9)
	// zlib semantics: 0 stores, higher levels compress at least as well as
	// level 1, and -1 is level 6.
	l0 := compressData(t, p, Gz, 0, 0)
	if len(l0) <= len(p) {
		t.Errorf("level 0 gave %d bytes for %d: not stored", len(l0), len(p))
	}
	l1 := compressData(t, p, Gz, 1, 0)
	l9 := compressData(t, p, Gz, 9, 0)
	if len(l9) > len(l1) || len(l1) >= len(p) {
		t.Errorf("level 1: %d bytes, level 9: %d bytes", len(l1), len(l9))
	}
	if d, s := compressData(t, p, Gz, -1, 0), compressData(t, p, Gz, 6, 0); !bytes.Equal(d, s) {
		t.Error("level -1 differs from level 6")
	}
	if l9[8] != 2 || l1[8] != 4 {
		t.Errorf("XFL: level 9 %d (want 2), level 1 %d (want 4)", l9[8], l1[8])
	}
}

func TestCorrupt(t *testing.T) {
	t.Parallel()
	p := pseudoWAL(300000, 5)
	for _, typ := range compressed {
		var c []byte
		if typ == Bz2 {
			c = cliCompress(t, "bzip2", p, "-c", "-9")
		} else {
			c = compressData(t, p, typ, typ.DefaultLevel(), 0)
		}
		n := len(c)
		tests := []struct {
			name       string
			in         []byte
			unexpected bool // error must wrap io.ErrUnexpectedEOF
		}{
			{"empty", nil, true},
			{"magic-only", c[:4], true},
			{"cut-1", c[:n-1], true},
			{"cut-4", c[:n-4], true},
			{"cut-8", c[:n-8], true}, // lz4: before the end mark
			{"cut-half", c[:n/2], true},
			{"garbage-after", append(bytes.Clone(c), "garbage!"...), false},
			{"not-compressed", p[:1000], false},
		}
		if typ != Zst {
			// zstd frames written like pgBackRest's carry no checksum, so a
			// flipped bit in the data may decode to wrong bytes without error.
			flip := bytes.Clone(c)
			flip[n*2/3] ^= 0x10
			tests = append(tests, struct {
				name       string
				in         []byte
				unexpected bool
			}{"flip", flip, false})
		}
		for _, tc := range tests {
			t.Run(typ.String()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				got, err := decompressData(tc.in, typ, identity)
				if err == nil {
					t.Fatalf("no error; %d bytes decoded", len(got))
				}
				if err == io.EOF {
					t.Fatal("bare io.EOF")
				}
				if tc.unexpected && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
				}
				if !strings.Contains(err.Error(), typ.String()) {
					t.Errorf("error %q does not name the type", err)
				}
			})
		}
	}
	t.Run("zst/flip", func(t *testing.T) {
		t.Parallel()
		c := compressData(t, p, Zst, 3, 0)
		c[len(c)*2/3] ^= 0x10
		got, err := decompressData(c, Zst, identity)
		if err == nil && bytes.Equal(got, p) {
			t.Fatal("flipped bit decoded to the original data")
		}
	})
}

func TestNoneEmpty(t *testing.T) {
	t.Parallel()
	if got, err := decompressData(nil, None, identity); err != nil || len(got) != 0 {
		t.Fatalf("none of empty input = %q, %v", got, err)
	}
	if c := compressData(t, nil, None, 0, 0); len(c) != 0 {
		t.Fatalf("none of nothing wrote %d bytes", len(c))
	}
}

func TestReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	p := pseudoWAL(300000, 8)
	for _, typ := range writable {
		c := compressData(t, p, typ, typ.DefaultLevel(), 0)
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			src := io.MultiReader(bytes.NewReader(c[:len(c)/2]), iotest.ErrReader(boom))
			r, err := NewReader(src, typ)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
		})
	}
}

// failWriter accepts limit bytes and then fails.
type failWriter struct{ limit int }

var errFail = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n := f.limit
		f.limit = 0
		return n, errFail
	}
	f.limit -= len(p)
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	p := pseudoWAL(1<<20, 4)
	for _, typ := range writable {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			w, err := NewWriter(&failWriter{limit: 1000}, typ, typ.DefaultLevel())
			if err != nil {
				t.Fatal(err)
			}
			_, werr := w.Write(p)
			cerr := w.Close()
			if !errors.Is(werr, errFail) && !errors.Is(cerr, errFail) {
				t.Fatalf("Write err = %v, Close err = %v; want the writer's error", werr, cerr)
			}
		})
	}
}

func TestReuse(t *testing.T) {
	t.Parallel()
	a, b := pseudoWAL(200000, 11), pseudoWAL(150001, 12)
	for _, typ := range writable {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			var ca, cb bytes.Buffer
			w, err := NewWriter(&ca, typ, typ.DefaultLevel())
			if err != nil {
				t.Fatal(err)
			}
			writeChunks(t, w, a, 5000)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := w.Write([]byte("x")); err == nil {
				t.Fatal("Write after Close succeeded")
			}
			w.Reset(&cb)
			writeChunks(t, w, b, 7000)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			r, err := NewReader(bytes.NewReader(ca.Bytes()), typ)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, a) {
				t.Fatalf("first stream: %d bytes, %v", len(got), err)
			}
			if err := r.Reset(bytes.NewReader(cb.Bytes())); err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(r)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("second stream after Reset: %d bytes, %v", len(got), err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Read(make([]byte, 1)); err == nil {
				t.Fatal("Read after Close succeeded")
			}
			// A reader that failed, then Close, then Reset works again.
			if err := r.Reset(bytes.NewReader(ca.Bytes()[:len(ca.Bytes())/2])); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); err == nil && typ != None {
				t.Fatal("half a stream read without error")
			}
			r.Close()
			if err := r.Reset(bytes.NewReader(cb.Bytes())); err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(r)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("after Close and Reset: %d bytes, %v", len(got), err)
			}
		})
	}
}

// FuzzReader feeds arbitrary bytes to every decoder (the first argument picks
// the type): it must not panic or hang, and errors must name the type. The
// output is capped so that decompression bombs stay cheap.
func FuzzReader(f *testing.F) {
	p := pseudoWAL(20000, 1)
	for _, typ := range []Type{Gz, Lz4, Zst} {
		f.Add(uint8(typ), compressData(f, p, typ, typ.DefaultLevel(), 0))
		f.Add(uint8(typ), compressData(f, nil, typ, typ.DefaultLevel(), 0))
	}
	f.Add(uint8(Bz2), cliCompress(f, "bzip2", p, "-c", "-9"))
	f.Add(uint8(None), []byte("plain"))
	f.Fuzz(func(t *testing.T, typ uint8, in []byte) {
		tp := Type(typ % uint8(numTypes))
		r, err := NewReader(bytes.NewReader(in), tp)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.CopyN(io.Discard, r, 64<<20)
		if err == nil && n < 64<<20 {
			t.Fatal("CopyN returned early without error")
		}
		if err != nil && err != io.EOF && !strings.Contains(err.Error(), tp.String()) {
			t.Fatalf("error %q does not name the type", err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func benchTypes(b *testing.B, fn func(b *testing.B, typ Type)) {
	for _, typ := range []Type{None, Gz, Lz4, Zst, Bz2} {
		b.Run(typ.String(), func(b *testing.B) { fn(b, typ) })
	}
}

// benchData is 16 MiB of pseudo-WAL, one WAL segment.
func benchData() []byte { return pseudoWAL(16<<20, 2026) }

func BenchmarkCompress(b *testing.B) {
	p := benchData()
	benchTypes(b, func(b *testing.B, typ Type) {
		if typ == Bz2 {
			b.Skip("bz2 is read-only")
		}
		var out bytes.Buffer
		out.Grow(len(p) + 1<<20)
		w, err := NewWriter(&out, typ, typ.DefaultLevel())
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			out.Reset()
			w.Reset(&out)
			if _, err := w.Write(p); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(out.Len())/float64(len(p)), "ratio")
	})
}

func BenchmarkDecompress(b *testing.B) {
	p := benchData()
	benchTypes(b, func(b *testing.B, typ Type) {
		var c []byte
		if typ == Bz2 {
			c = cliCompress(b, "bzip2", p, "-c", "-9")
		} else {
			c = compressData(b, p, typ, typ.DefaultLevel(), 0)
		}
		src := bytes.NewReader(c)
		r, err := NewReader(src, typ)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			src.Reset(c)
			if err := r.Reset(src); err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(p)) {
				b.Fatalf("decompressed %d bytes, %v", n, err)
			}
		}
	})
}
