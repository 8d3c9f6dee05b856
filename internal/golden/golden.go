// Package golden compares a test's output for people with a file under the
// package's testdata, or rewrites the file when the test runs with -update.
package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Check compares got with testdata/name, or writes it there when update.
func Check(tb testing.TB, name string, got []byte, update bool) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run `go test -run '%s' -update` to create it)", err, tb.Name())
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("output differs from %s (run `go test -run '%s' -update` if the change is intended):\n--- got\n%s\n--- want\n%s",
			path, tb.Name(), got, want)
	}
}
