// Package testenv lets a test that cannot run on this machine say so where
// the person running go test sees it: under CI (the CI environment
// variable set) the test fails; elsewhere it is skipped and the reason is
// printed once per test binary, even without -v.
package testenv

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Missing fails t under CI and skips it elsewhere, saying msg (what is
// missing and how to get it) loudly: go test shows a passing package's own
// output only with -v, where t.Skip's message appears, so msg is also
// written to the go command's standard error.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	say(msg, fmt.Sprintf("SKIP %s %s (and every other test that needs it): %s", packageDir(), t.Name(), msg))
	t.Skip(msg)
}

// Notice says msg loudly, once per test binary, as Missing does, without
// skipping t (for a fuzz target that still has its committed seeds).
func Notice(t testing.TB, msg string) {
	t.Helper()
	t.Log(msg)
	say(msg, fmt.Sprintf("NOTE %s %s: %s", packageDir(), t.Name(), msg))
}

// say writes line to the console, once per test binary for each msg.
func say(msg, line string) {
	noticed.Lock()
	defer noticed.Unlock()
	if noticed.said[msg] {
		return
	}
	if noticed.said == nil {
		noticed.said = make(map[string]bool)
	}
	noticed.said[msg] = true
	w, closeFn := console()
	defer closeFn()
	fmt.Fprintln(w, line)
}

var noticed struct {
	sync.Mutex
	said map[string]bool
}

// console returns the standard error of the go command that runs this
// test binary, which go test leaves alone, or the binary's own standard
// error when its parent is not the go command (the binary run by hand)
// or that stream cannot be opened. O_APPEND: a redirected stream is
// written at its end, not over what go test wrote.
func console() (io.Writer, func()) {
	ppid := strconv.Itoa(os.Getppid())
	comm, err := os.ReadFile(filepath.Join("/proc", ppid, "comm"))
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return os.Stderr, func() {}
	}
	f, err := os.OpenFile(filepath.Join("/proc", ppid, "fd", "2"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return os.Stderr, func() {}
	}
	return f, func() { f.Close() }
}

// packageDir names the package under test: go test runs a test binary in
// its package's directory, named here from the module's root.
func packageDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if rel, err := filepath.Rel(dir, wd); err == nil {
				return filepath.ToSlash(rel)
			}
			return wd
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}
