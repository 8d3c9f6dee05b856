package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "portwatch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// portwatch runs the command in-process and returns its exit status and
// output streams.
func portwatch(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

// usageCase is a command line refused before anything starts, and what
// its message must say.
type usageCase struct {
	args []string
	want string
}

// checkUsageErrors runs each case and checks exit status 2 and the message.
func checkUsageErrors(t *testing.T, cases []usageCase) {
	t.Helper()
	for _, tc := range cases {
		code, _, stderr := portwatch(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q, want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, name+".golden", []byte(got), *update)
}

func TestUsage(t *testing.T) {
	code, out, _ := portwatch(t, "", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	golden(t, "help", out)
	for _, c := range commands {
		code, out, errOut := portwatch(t, "", c.name, "--help")
		if code != exitOK || errOut != "" {
			t.Errorf("%s --help: exit %d, stderr %q", c.name, code, errOut)
		}
		golden(t, "help-"+c.name, out)
	}
	if code, _, errOut := portwatch(t, ""); code != exitUsage || !strings.Contains(errOut, "Usage:") {
		t.Errorf("no arguments: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := portwatch(t, "", "frobnicate"); code != exitUsage || errOut != "portwatch: unknown command \"frobnicate\" (run 'portwatch --help' for the list)\n" {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := portwatch(t, "", "catalog", "--frob"); code != exitUsage || errOut != "portwatch: catalog: unknown flag: --frob (see 'portwatch catalog --help')\n" {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := portwatch(t, "", "--frob"); code != exitUsage || !strings.Contains(errOut, "unknown flag --frob: flags follow a command") {
		t.Errorf("a flag before any command: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ := portwatch(t, "", "help", "help"); code != exitOK || !strings.Contains(out, "Usage:") {
		t.Errorf("help help: exit %d, stdout %q", code, out)
	}
}

func TestCatalogCommand(t *testing.T) {
	code, out, errOut := portwatch(t, "", "catalog")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	golden(t, "catalog-default", out)

	code, out, _ = portwatch(t, "", "catalog", "--profile", "aix", "--port", "xcatdport=3011", "--format", "json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var doc catalogDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Services) != 45 || doc.Profiles[0] != "aix" {
		t.Fatalf("json: %d services, profiles %v", len(doc.Services), doc.Profiles)
	}
	for _, s := range doc.Services {
		if s.Name == "xcatdport" && s.Port != "3011" {
			t.Errorf("xcatdport/%s on port %s after --port xcatdport=3011", s.Proto, s.Port)
		}
		if s.Name == "nim" && s.Status != "required" {
			t.Errorf("nim is %s under aix", s.Status)
		}
	}

	code, out, _ = portwatch(t, "", "catalog", "--format", "yaml")
	if code != exitOK || !strings.Contains(out, "- id: 18\n    name: tftp-udp\n") {
		t.Errorf("yaml: exit %d:\n%.300s", code, out)
	}

	code, _, errOut = portwatch(t, "", "catalog", "--profile", "solaris")
	if code != exitUsage || !strings.Contains(errOut, `unknown profile "solaris"`) {
		t.Errorf("bad profile: exit %d, stderr %q", code, errOut)
	}
}

func TestCatalogCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("ports:\n  xcatiport: 3012\nservices:\n  - name: ganglia\n    proto: tcp\n    port: 8649\n    roles: [mn]\n    need: optional\n"), 0o644)
	os.WriteFile(bad, []byte("ports:\n  xcatiport: 3012\n  httpprt: 8080\n"), 0o644)

	code, out, errOut := portwatch(t, "", "catalog", "check", good)
	if code != exitOK || errOut != "" {
		t.Fatalf("good file: exit %d, stderr %q", code, errOut)
	}
	if want := good + ": ok: 1 port overrides, 1 site rows\n  xcatiport -> 3012\n  + ganglia/tcp 8649\n"; out != want {
		t.Errorf("good file:\n%s\nwant:\n%s", out, want)
	}
	code, _, errOut = portwatch(t, "", "catalog", "check", bad)
	want := "portwatch: " + bad + `:3: field "httpprt": override of an unknown key "httpprt"`
	if code != exitUsage || !strings.HasPrefix(errOut, want) {
		t.Errorf("bad file: exit %d, stderr %q, want it to start with %q", code, errOut, want)
	}
	code, _, errOut = portwatch(t, "", "catalog", "check", filepath.Join(dir, "missing.yaml"))
	if code != exitUsage || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := portwatch(t, "", "catalog", "check"); code != exitUsage {
		t.Errorf("check without a file: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := portwatch(t, "", "version")
	if code != exitOK || !strings.HasPrefix(out, "portwatch ") {
		t.Errorf("exit %d, %q", code, out)
	}
}
