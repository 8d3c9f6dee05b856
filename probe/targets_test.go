package probe

import (
	"fmt"
	"strings"
	"testing"
)

func TestReadTargets(t *testing.T) {
	in := `# BMCs of rack 1
10.77.2.10
bmc-r01-02.cluster.test   # a name
fd00::10

this is not a host
10.77.2.300
-bad-.cluster
node_07
bmc1,bmc2
[fd00::11]
`
	targets, errs := ReadTargets(strings.NewReader(in), "bmcs.txt")
	var got []string
	for _, tg := range targets {
		got = append(got, tg.Origin+"="+tg.Name)
	}
	want := "bmcs.txt:2=10.77.2.10 bmcs.txt:3=bmc-r01-02.cluster.test bmcs.txt:4=fd00::10 " +
		"bmcs.txt:9=node_07 bmcs.txt:11=fd00::11"
	if strings.Join(got, " ") != want {
		t.Errorf("targets\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	wantErrs := []string{
		`bmcs.txt:6: "this is not a host": one target a line`,
		`bmcs.txt:7: "10.77.2.300" is not an IP address or a host name: not a valid IP address`,
		`bmcs.txt:8: "-bad-.cluster" is not an IP address or a host name: a label starts or ends with '-'`,
		`bmcs.txt:10: "bmc1,bmc2": one target a line`,
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("errors %v, want %d", errs, len(wantErrs))
	}
	for i, err := range errs {
		if !strings.HasPrefix(err.Error(), wantErrs[i]) {
			t.Errorf("error %d: %q, want it to start with %q", i, err, wantErrs[i])
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, ok := range []string{"10.0.0.1", "::1", "fe80::1%eth0", "mn", "MN.Cluster.Test.", "a-b"} {
		if _, err := ParseTarget(ok, "argument 1"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a..b", "a b", strings.Repeat("x", 64), strings.Repeat("abc.", 64), "héllo", "a/b"} {
		if _, err := ParseTarget(bad, "argument 1"); err == nil {
			t.Errorf("%q accepted", bad)
		} else if !strings.HasPrefix(err.Error(), fmt.Sprintf("argument 1: %q", strings.TrimSpace(bad))) {
			t.Errorf("%q: message %q does not name it", bad, err)
		}
	}
}
