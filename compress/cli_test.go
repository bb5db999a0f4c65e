package compress

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// toolPath returns the path of a compression CLI. The interoperability tests
// fail rather than skip without it (Debian: apt-get install gzip lz4 zstd
// bzip2).
func toolPath(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s CLI is required for the interoperability tests (apt-get install gzip lz4 zstd bzip2): %v", name, err)
	}
	return p
}

// cliRun runs tool with args, feeding stdin, and returns stdout.
func cliRun(tb testing.TB, tool string, stdin []byte, args ...string) ([]byte, error) {
	tb.Helper()
	cmd := exec.CommandContext(tb.Context(), toolPath(tb, tool), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// cliCompress compresses p with tool and args and fails the test on error.
func cliCompress(tb testing.TB, tool string, p []byte, args ...string) []byte {
	tb.Helper()
	out, err := cliRun(tb, tool, p, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

var cliTool = map[Type]string{Gz: "gzip", Lz4: "lz4", Zst: "zstd", Bz2: "bzip2"}

var cliSizes = []int{0, 1, 1 << 20}

// TestCLIDecodesOurs checks that the command-line tools (which use the same C
// libraries as pgBackRest) decompress our output.
func TestCLIDecodesOurs(t *testing.T) {
	t.Parallel()
	for _, typ := range []Type{Gz, Lz4, Zst} {
		lo, hi := typ.Levels()
		for _, level := range []int{typ.DefaultLevel(), lo, hi} {
			for _, size := range cliSizes {
				if typ == Zst && level == hi && size > 1<<16 {
					continue // level 22 on a MiB is slow under -race
				}
				t.Run(fmt.Sprintf("%v/level%d/size%d", typ, level, size), func(t *testing.T) {
					t.Parallel()
					p := pseudoWAL(size, uint64(size)+7)
					c := compressData(t, p, typ, level, 10000)
					got, err := cliRun(t, cliTool[typ], c, "-d", "-c")
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, p) {
						t.Fatalf("%s decompressed %d bytes that differ from the %d-byte input", cliTool[typ], len(got), size)
					}
				})
			}
		}
	}
}

// TestWeDecodeCLI checks our readers against the tools' output, including
// the frame options pgBackRest's libraries use (lz4: 64 KiB linked blocks
// with a content checksum).
func TestWeDecodeCLI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ  Type
		args []string
	}{
		{Gz, []string{"-1"}},
		{Gz, []string{"-6"}},
		{Gz, []string{"-9"}},
		{Lz4, []string{"-B7"}},            // 4 MiB independent blocks, content checksum (the CLI's default)
		{Lz4, []string{"-B4", "-BD"}},     // 64 KiB linked blocks: pgBackRest's LZ4F settings
		{Lz4, []string{"-BD", "-9"}},      // linked 4 MiB blocks, HC
		{Lz4, []string{"--no-frame-crc"}}, // the "raw" variant's framing
		{Lz4, []string{"-BX", "-B5"}},     // block checksums, 256 KiB blocks
		{Lz4, []string{"--content-size"}},
		{Zst, []string{"-1"}},
		{Zst, []string{"-3"}},
		{Zst, []string{"-19"}},
		{Zst, []string{"-3", "--no-check"}},
		{Zst, []string{"--ultra", "-22"}},
		{Zst, []string{"--long=27"}},
		{Bz2, []string{"-1"}},
		{Bz2, []string{"-9"}},
	}
	for _, tc := range tests {
		for _, size := range cliSizes {
			if tc.args[0] == "--ultra" && size < 1<<20 {
				continue // the CLI takes seconds to set up level 22 whatever the size
			}
			t.Run(fmt.Sprintf("%v%v/size%d", tc.typ, tc.args, size), func(t *testing.T) {
				t.Parallel()
				p := pseudoWAL(size, uint64(size)+13)
				c := cliCompress(t, cliTool[tc.typ], p, append([]string{"-c"}, tc.args...)...)
				got, err := decompressData(c, tc.typ, identity)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("decompressed %d bytes that differ from the %d-byte input", len(got), size)
				}
			})
		}
	}
}

// TestConcatenated checks that concatenated streams decode to the
// concatenation, as the tools do.
func TestConcatenated(t *testing.T) {
	t.Parallel()
	a, b := pseudoWAL(100000, 21), pseudoWAL(70001, 22)
	for _, typ := range compressed {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			c := append(cliCompress(t, cliTool[typ], a, "-c"), cliCompress(t, cliTool[typ], b, "-c")...)
			got, err := decompressData(c, typ, identity)
			if err != nil {
				t.Fatal(err)
			}
			want := append(bytes.Clone(a), b...)
			if !bytes.Equal(got, want) {
				t.Fatalf("decompressed %d bytes, want %d", len(got), len(want))
			}
			cli, err := cliRun(t, cliTool[typ], c, "-d", "-c")
			if err != nil || !bytes.Equal(cli, want) {
				t.Fatalf("the CLI itself disagrees: %v", err)
			}
		})
	}
}

// TestZstdWindowLimit checks that a frame asking for a window beyond the
// 128 MiB limit is refused instead of allocated.
func TestZstdWindowLimit(t *testing.T) {
	t.Parallel()
	c := cliCompress(t, "zstd", pseudoWAL(100000, 1), "-c", "--long=28")
	if got, err := decompressData(c, Zst, identity); err == nil {
		t.Fatalf("256 MiB window accepted (%d bytes)", len(got))
	}
}
