package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFiles writes name -> content under dir, making directories.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// CopyFile copies the file src to dst, making dst's directory.
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	WriteFiles(t, filepath.Dir(dst), map[string]string{filepath.Base(dst): string(data)})
}
