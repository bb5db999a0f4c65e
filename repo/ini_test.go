package repo

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestGoldenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, g := range goldenFiles(t) {
		t.Run(g.path, func(t *testing.T) {
			t.Parallel()
			data := readFile(t, g.path)

			doc, err := ParseInfo(g.path, data)
			if err != nil {
				t.Fatalf("ParseInfo: %v", err)
			}
			rendered, err := doc.Render()
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if !bytes.Equal(rendered, data) {
				t.Errorf("codec round trip differs at byte %d", firstDiff(rendered, data))
			}

			saved, err := loadAndSave(g.kind, g.path, data)
			if err != nil {
				t.Fatalf("load/save: %v", err)
			}
			if !bytes.Equal(saved, data) {
				t.Errorf("typed round trip differs at byte %d:\n%s", firstDiff(saved, data), around(saved, firstDiff(saved, data)))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func around(b []byte, i int) string {
	lo, hi := max(i-80, 0), min(i+80, len(b))
	return string(b[lo:hi])
}

// TestChecksumWorkedExample checks the example of the specification (§2.3): an
// archive.info written by pgBackRest 2.45 and the SHA-1 of the JSON text it describes.
func TestChecksumWorkedExample(t *testing.T) {
	t.Parallel()
	file := "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[db]\ndb-id=1\ndb-system-id=7713501490695643153\n" +
		"db-version=\"15\"\n\n[db:history]\n1={\"db-id\":7713501490695643153,\"db-version\":\"15\"}\n\n[backrest]\n" +
		"backrest-checksum=\"023b29d0d4f9d94a26ef185e070b5966ec10f083\"\n"
	hashed := `{"backrest":{"backrest-format":5,"backrest-version":"2.45"},"db":{"db-id":1,"db-system-id":7713501490695643153,` +
		`"db-version":"15"},"db:history":{"1":{"db-id":7713501490695643153,"db-version":"15"}}}`
	sum := sha1.Sum([]byte(hashed))
	if got := hex.EncodeToString(sum[:]); !strings.Contains(file, got) {
		t.Fatalf("the specification's hashed text gives %s, not the stored checksum", got)
	}
	a, err := LoadArchiveInfo("archive.info", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if a.CurrentID != 1 || len(a.History) != 1 || a.History[0].SystemID != 7713501490695643153 || a.History[0].Version != "15" {
		t.Errorf("unexpected content: %+v", a)
	}
	out, err := a.Save()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != file {
		t.Errorf("Save:\n%s\nwant:\n%s", out, file)
	}
}

// TestChecksumFlippedByte changes one byte of every golden file in ways that keep the
// syntax valid and expects a checksum error naming the file and the checksum line.
func TestChecksumFlippedByte(t *testing.T) {
	t.Parallel()
	mutations := []struct {
		name   string
		mutate func(data []byte) bool // changes one byte; false if not applicable
	}{
		{"digit in a value", func(d []byte) bool {
			i := bytes.Index(d, []byte("db-id="))
			if i < 0 {
				return false
			}
			i += len("db-id=")
			d[i] = '0' + (d[i]-'0'+1)%10
			return true
		}},
		{"letter in a key", func(d []byte) bool {
			i := bytes.Index(d, []byte("\ndb-version="))
			if i < 0 {
				return false
			}
			d[i+1] = 'D'
			return true
		}},
		{"letter in a section name", func(d []byte) bool {
			i := bytes.Index(d, []byte("\n\n[")) // the first section after [backrest]
			if i < 0 {
				return false
			}
			d[i+3] ^= 0x20 // toggle the case of its first letter
			return true
		}},
		{"character in a string value", func(d []byte) bool {
			i := bytes.Index(d, []byte("backrest-version=\"2."))
			if i < 0 {
				return false
			}
			d[i+len("backrest-version=\"2.")] ^= 0x01
			return true
		}},
		{"hex digit of the stored checksum", func(d []byte) bool {
			i := bytes.LastIndex(d, []byte("backrest-checksum=\""))
			if i < 0 {
				return false
			}
			j := i + len("backrest-checksum=\"")
			if d[j] == 'a' {
				d[j] = 'b'
			} else {
				d[j] = 'a'
			}
			return true
		}},
	}
	for _, g := range goldenFiles(t) {
		for _, m := range mutations {
			t.Run(g.path+"/"+m.name, func(t *testing.T) {
				t.Parallel()
				data := bytes.Clone(readFile(t, g.path))
				if !m.mutate(data) {
					t.Skip("file has no such place")
				}
				lines := bytes.Split(data, []byte("\n"))
				checksumLine := 0
				for i, l := range lines {
					if bytes.HasPrefix(l, []byte("backrest-checksum=")) {
						checksumLine = i + 1
					}
				}
				_, err := ParseInfo(g.path, data)
				if !errors.Is(err, ErrChecksum) {
					t.Fatalf("want ErrChecksum, got %v", err)
				}
				var pe *ParseError
				if !errors.As(err, &pe) || pe.File != g.path || pe.Line != checksumLine {
					t.Fatalf("want a ParseError at %s:%d, got %v", g.path, checksumLine, err)
				}
				if !strings.HasPrefix(err.Error(), fmt.Sprintf("%s:%d: ", g.path, checksumLine)) {
					t.Errorf("message does not name file and line: %v", err)
				}
				if _, err := loadAndSave(g.kind, g.path, data); !errors.Is(err, ErrChecksum) {
					t.Errorf("typed loader: want ErrChecksum, got %v", err)
				}
			})
		}
	}
}

// TestParseErrors feeds malformed files to ParseInfo and checks kind, line and message.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	const head = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n"
	tests := []struct {
		name string
		data []byte
		kind error
		line int
		msg  string
	}{
		{"missing equals", signed(head + "\n[db]\ndb-id\n"), ErrFormat, 6, "missing '='"},
		{"key outside section", []byte("db-id=1\n" + head), ErrFormat, 1, "outside of section"},
		{"empty section", signed(head + "\n[]\na=1\n"), ErrFormat, 5, "invalid empty section"},
		{"bad JSON", signed(head + "\n[db]\ndb-id={\"a\":}\n"), ErrFormat, 6, "invalid JSON value"},
		{"bad JSON unterminated string", signed(head + "\n[db]\nx=\"abc\n"), ErrFormat, 6, "invalid JSON value"},
		{"bad JSON fraction", signed(head + "\n[db]\nx=1.5\n"), ErrFormat, 6, "invalid JSON value"},
		{"bad JSON trailing comma", signed(head + "\n[db]\nx=[1,]\n"), ErrFormat, 6, "invalid JSON value"},
		{"bad JSON unicode escape", signed(head + "\n[db]\nx=\"\\u0041\"\n"), ErrFormat, 6, "invalid JSON value"},
		{"zero-length key", signed(head + "\n[db]\n=1\n"), ErrFormat, 6, "key is zero-length"},
		{"duplicate key", signed(head + "\n[db]\ndb-id=1\ndb-id=2\n"), ErrFormat, 7, "duplicate key 'db-id'"},
		{"duplicate key in repeated section", signed(head + "\n[db]\na=1\n\n[x]\nb=1\n\n[db]\na=2\n"), ErrFormat, 12,
			"duplicate key 'a' in section [db] (first at line 6)"},
		{"duplicate checksum", append(signed(head), "backrest-checksum=\"00\"\n"...), ErrFormat, 7, "duplicate key"},
		{"NUL byte", signed(head + "\n[db]\na=\"x\x00\"\n"), ErrFormat, 6, "NUL byte"},
		{"format 4", signed(strings.Replace(head, "format=5", "format=4", 1)), ErrFormat, 2, "expected format 5 but found 4"},
		{"format string", signed(strings.Replace(head, "format=5", "format=\"x\"", 1)), ErrFormat, 2, "expected format 5"},
		{"format missing", signed("[backrest]\nbackrest-version=\"2.45\"\n"), ErrFormat, 5, "backrest-format is missing"},
		{"checksum missing", []byte(head + "\n[db]\ndb-id=1\n"), ErrChecksum, 6, "but no checksum found"},
		{"checksum wrong", []byte(head + "\n[backrest]\nbackrest-checksum=\"0000000000000000000000000000000000000000\"\n"),
			ErrChecksum, 6, "but expected '0000000000000000000000000000000000000000'"},
		{"checksum not a string", []byte(head + "\n[backrest]\nbackrest-checksum=1\n"), ErrFormat, 6, "invalid backrest-checksum"},
		{"CR line ending", []byte(strings.ReplaceAll(string(signed(head)), "\n", "\r\n")), ErrFormat, 1, "outside of section"},
		{"CR after section", signed(head + "\n[db]\r\nx=1\n"), ErrFormat, 5, "missing '='"},
		{"empty input", nil, ErrFormat, 1, "backrest-format is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseInfo("dir/file.info", tt.data)
			assertParseError(t, err, tt.kind, "dir/file.info", tt.line, tt.msg)
		})
	}
}

func assertParseError(t *testing.T, err error, kind error, file string, line int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error")
	}
	if !errors.Is(err, kind) {
		t.Errorf("want %v, got %v", kind, err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("want *ParseError, got %T: %v", err, err)
	}
	if pe.File != file || pe.Line != line {
		t.Errorf("error at %s:%d, want %s:%d (%v)", pe.File, pe.Line, file, line, err)
	}
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("%s:%d: ", file, line)) {
		t.Errorf("message does not start with file and line: %v", err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("message %q does not contain %q", err.Error(), msg)
	}
}

// TestParseKeySplitting checks that keys containing '=' are split at the first '=' whose
// remainder is valid JSON, and that lenient JSON is accepted as pgBackRest accepts it.
func TestParseKeySplitting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line       string
		key, value string
	}{
		{`a=1`, "a", "1"},
		{`pg_data/a=b={"size":1}`, "pg_data/a=b", `{"size":1}`},
		{`a==b=={}`, "a==b=", "{}"},
		{`x="="`, "x", `"="`},
		{`x=="=="`, "x=", `"=="`},
		{`k= { "a" : [ 1 , -2 ] } `, "k", ` { "a" : [ 1 , -2 ] } `},
		{`k="\q\u1234x"`, "k", `"\q\u1234x"`}, // skipped escapes: any character, \u + 4 digits + one more
		{`k=007`, "k", "007"},
		{`k=truex=false`, "k=truex", "false"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			t.Parallel()
			body := "[backrest]\nbackrest-format=5\n\n[s]\n" + tt.line + "\n"
			// The key may contain '=' here, so sign with the package's own checksum and
			// compare the split only.
			doc := &Document{}
			doc.AddSection("backrest").Add("backrest-format", "5")
			doc.AddSection("s").Add(tt.key, tt.value)
			data, err := doc.Render()
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if !bytes.HasPrefix(data, []byte(body)) {
				t.Fatalf("Render wrote\n%s\nwant prefix\n%s", data, body)
			}
			got, err := ParseInfo("f", data)
			if err != nil {
				t.Fatal(err)
			}
			e := got.Section("s").Entries[0]
			if e.Key != tt.key || e.Value != tt.value || e.Line != 5 {
				t.Errorf("got %q=%q at line %d, want %q=%q at line 5", e.Key, e.Value, e.Line, tt.key, tt.value)
			}
		})
	}
}

// TestRenderLayout builds a Document and checks the exact bytes against the layout rules
// of the specification, with an independently computed checksum.
func TestRenderLayout(t *testing.T) {
	t.Parallel()
	doc := NewDocument("2.45")
	doc.AddSection("empty")
	s := doc.AddSection("data")
	s.Add("path/with \"quote\"\tand\\backslash", `{"k":"v"}`)
	s.Add("caf\xe9", "\"raw\x01\xe9\"")
	doc.AddSection("more").Add("n", "18446744073709551615")
	got, err := doc.Render()
	if err != nil {
		t.Fatal(err)
	}
	body := "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[data]\npath/with \"quote\"\tand\\backslash={\"k\":\"v\"}\n" +
		"caf\xe9=\"raw\x01\xe9\"\n\n[more]\nn=18446744073709551615\n"
	if want := signed(body); !bytes.Equal(got, want) {
		t.Errorf("Render:\n%q\nwant:\n%q", got, want)
	}
	back, err := ParseInfo("f", got)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Sections) != 3 || back.Section("data").Entries[0].Key != "path/with \"quote\"\tand\\backslash" {
		t.Errorf("parsed back: %+v", back.Sections)
	}
}

func TestRenderRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		section        string
		key, value     string
		prefixSections []string
	}{
		{"invalid JSON", "s", "k", "{", nil},
		{"empty value", "s", "k", "", nil},
		{"array value", "s", "k", "[1]", nil},
		{"newline in value", "s", "k", "\"a\nb\"", nil},
		{"newline in key", "s", "a\nb", "1", nil},
		{"empty key", "s", "", "1", nil},
		{"key starting with bracket", "s", "[x", "1", nil},
		{"empty section name", "", "k", "1", nil},
		{"checksum key", "backrest", "backrest-checksum", `"x"`, nil},
		{"section twice", "s", "k", "1", []string{"s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := &Document{}
			for _, p := range tt.prefixSections {
				doc.AddSection(p).Add("other", "1")
			}
			doc.AddSection(tt.section).Add(tt.key, tt.value)
			if _, err := doc.Render(); !errors.Is(err, ErrInvalid) {
				t.Errorf("want ErrInvalid, got %v", err)
			}
		})
	}
	t.Run("duplicate key", func(t *testing.T) {
		t.Parallel()
		doc := &Document{}
		s := doc.AddSection("s")
		s.Add("k", "1")
		s.Add("k", "2")
		if _, err := doc.Render(); !errors.Is(err, ErrInvalid) {
			t.Errorf("want ErrInvalid, got %v", err)
		}
	})
}

// TestParseLargeDocument parses and renders a document with 200000 entries (a large
// manifest); with quadratic work per entry it would not finish in the test timeout.
func TestParseLargeDocument(t *testing.T) {
	t.Parallel()
	doc := NewDocument("2.45")
	s := doc.AddSection("target:file")
	const n = 200000
	for i := range n {
		s.Add(fmt.Sprintf("pg_data/base/1/%07d", i), fmt.Sprintf(`{"size":%d,"timestamp":1}`, i))
	}
	data, err := doc.Render()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseInfo("big", data)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(back.Section("target:file").Entries); got != n {
		t.Fatalf("parsed %d entries, want %d", got, n)
	}
	again, err := back.Render()
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("round trip of a large document failed: %v", err)
	}
}
