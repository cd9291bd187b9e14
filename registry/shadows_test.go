package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func shadowVersions(t *testing.T, r *Registry, model string) []string {
	t.Helper()
	m := r.Snapshot().Model(model)
	if m == nil {
		t.Fatalf("model %s is not loaded", model)
	}
	var out []string
	for _, v := range m.Shadows {
		out = append(out, v.Name+"@"+v.Version)
	}
	return out
}

// TestShadows reads a model's shadows.yaml at every poll, resolves its
// references in the new snapshot, and reports what does not resolve or
// parse, keeping the last good list.
func TestShadows(t *testing.T) {
	root := t.TempDir()
	writeVersion(t, root, "1", nil)
	writeVersion(t, root, "2", nil)
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, "store_ranker", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(AliasFile, "production: 1\ncanary: 2\n")
	write(ShadowFile, "shadows:\n  - store_ranker@canary\n  - nope_ranker\n  - store_ranker@2\n")
	r, err := Open(catalog(t), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(shadowVersions(t, r, "store_ranker"), " "); got != "store_ranker@2" {
		t.Errorf("shadows %q, want store_ranker@2 once", got)
	}
	f := r.Snapshot().Failures()
	if len(f) != 1 || !strings.Contains(f[0].Error[0], "shadow nope_ranker: unknown model") {
		t.Errorf("failures %+v, want the unknown shadow", f)
	}

	// Every poll reads the list again.
	write(ShadowFile, "shadows: [store_ranker@1]\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(shadowVersions(t, r, "store_ranker"), " "); got != "store_ranker@1" {
		t.Errorf("after a change: shadows %q, want store_ranker@1", got)
	}
	if f := r.Snapshot().Failures(); len(f) != 0 {
		t.Errorf("failures %+v, want none", f)
	}

	// A list that does not parse keeps the last good one and says why.
	for _, bad := range []string{"shadows: [store_ranker@1\n", "shadow: [store_ranker@1]\n", "shadows: ['@1']\n", "shadows: [a@]\n", "shadows: [a@b@c]\n"} {
		write(ShadowFile, bad)
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(shadowVersions(t, r, "store_ranker"), " "); got != "store_ranker@1" {
			t.Errorf("%q: shadows %q, want store_ranker@1 kept", bad, got)
		}
		if f := r.Snapshot().Failures(); len(f) != 1 || !strings.HasSuffix(f[0].Dir, ShadowFile) {
			t.Errorf("%q: failures %+v, want the shadow list's", bad, f)
		}
	}

	// Without the file there are no shadows.
	if err := os.Remove(filepath.Join(root, "store_ranker", ShadowFile)); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := shadowVersions(t, r, "store_ranker"); len(got) != 0 {
		t.Errorf("without %s: shadows %q", ShadowFile, got)
	}
	if r.Snapshot().Model("nope") != nil {
		t.Error("Model of an unknown name is not nil")
	}

	// At start, a list that does not parse stops the start.
	write(ShadowFile, "shadows: {a: b}\n")
	if _, err := Open(catalog(t), Options{Root: root}); err == nil || !strings.Contains(err.Error(), ShadowFile) {
		t.Errorf("open with a bad list: %v, want an error naming %s", err, ShadowFile)
	}
}

func TestParseShadowsLimit(t *testing.T) {
	many := "shadows: [" + strings.Repeat("m@1, ", maxShadows) + "m@2]\n"
	if _, err := parseShadows([]byte(many)); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("%d shadows: %v", maxShadows+1, err)
	}
	refs, err := parseShadows(nil)
	if err != nil || refs != nil {
		t.Errorf("empty file: %v %v", refs, err)
	}
}

func FuzzParseShadows(f *testing.F) {
	f.Add([]byte("shadows: [a, b@1, c@canary]\n"))
	f.Add([]byte("shadows:\n  - x@\n"))
	f.Add([]byte("shadows: {a: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := parseShadows(data)
		if err != nil {
			return
		}
		if len(refs) > maxShadows {
			t.Fatalf("%d shadows accepted", len(refs))
		}
		for _, ref := range refs {
			name, ver, pinned := strings.Cut(ref, "@")
			if name == "" || (pinned && (ver == "" || strings.Contains(ver, "@"))) {
				t.Fatalf("accepted %q", ref)
			}
		}
	})
}
