package repo

import (
	"bytes"
	"errors"
	"testing"
)

// checkParseError verifies the error contract: a *ParseError naming the file and a line.
func checkParseError(t *testing.T, err error, name string) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error is not a *ParseError: %T %v", err, err)
	}
	if pe.File != name || pe.Line < 1 || (!errors.Is(err, ErrFormat) && !errors.Is(err, ErrChecksum)) {
		t.Fatalf("bad error %#v", pe)
	}
}

// trimmedManifest returns a pgBackRest manifest cut down to a few files (re-signed), a
// quicker fuzz seed than the full file.
func trimmedManifest(t testing.TB, path string, files int) []byte {
	t.Helper()
	doc, err := ParseInfo(path, readFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	s := doc.Section(sectionTargetFile)
	s.Entries = s.Entries[:min(files, len(s.Entries))]
	out, err := doc.Render()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzParseInfo(f *testing.F) {
	for _, g := range goldenFiles(f) {
		if g.kind != "manifest" {
			f.Add(readFile(f, g.path))
		}
	}
	f.Add([]byte("[backrest]\nbackrest-format=5\n\n[a]\nk=v=1\n[]\n"))
	f.Add(signed("[backrest]\nbackrest-format=5\n\n[s]\na={\"x\":[1,{\"y\":\"\\u0041z\"}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := ParseInfo("fuzz.info", data)
		if err != nil {
			checkParseError(t, err, "fuzz.info")
		} else if out, err := doc.Render(); err == nil {
			// A rendered document parses back and renders to the same bytes.
			doc2, err := ParseInfo("rendered.info", out)
			if err != nil {
				t.Fatalf("rendered document does not parse: %v\n%q", err, out)
			}
			out2, err := doc2.Render()
			if err != nil || !bytes.Equal(out, out2) {
				t.Fatalf("render is not a fixed point: %v", err)
			}
		}
		for _, kind := range []string{"archive", "backup"} {
			saved, err := loadAndSave(kind, "fuzz.info", data)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					checkParseError(t, err, "fuzz.info")
				}
				continue
			}
			again, err := loadAndSave(kind, "saved.info", saved)
			if err != nil || !bytes.Equal(again, saved) {
				t.Fatalf("%s: saved file does not load and save identically: %v", kind, err)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	for _, g := range goldenFiles(f) {
		if g.kind == "manifest" {
			f.Add(readFile(f, g.path))
		}
	}
	f.Add(trimmedManifest(f, "testdata/pgbackrest/repo1/"+firstManifest(f), 12))
	f.Fuzz(func(t *testing.T, data []byte) {
		saved, err := loadAndSave("manifest", "fuzz.manifest", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				checkParseError(t, err, "fuzz.manifest")
			}
			return
		}
		again, err := loadAndSave("manifest", "saved.manifest", saved)
		if err != nil || !bytes.Equal(again, saved) {
			t.Fatalf("saved manifest does not load and save identically: %v", err)
		}
	})
}
