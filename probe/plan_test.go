package probe

import (
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"

	"portwatch/catalog"
)

// TestPlanGolden keeps, for every role, each row's decision: the request
// it gets, why it is untestable, or why it is not probed. docs/probe.md
// has the same table.
func TestPlanGolden(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, role := range catalog.Roles {
		checks, skips, err := Plan(cat, role, nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "role %s\n", role)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Entry.Key(), c.Entry.PortString(), c.Request, c.Why)
		}
		for _, s := range skips {
			fmt.Fprintf(tw, "  %s\t%s\tnot probed\t%s\n", s.Entry.Key(), s.Entry.PortString(), s.Why)
		}
		tw.Flush()
	}
	golden(t, "plan", b.String())
}

func TestPlanEveryUDPRowDecided(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A UDP row of the built-in table either has its own request or is
	// named as untestable or generic on purpose; a new row must be decided.
	generic := map[string]bool{"xcatdport/udp": true, "rmc-udp/udp": true, "snmptrap/udp": true}
	for _, role := range catalog.Roles {
		checks, _, _ := Plan(cat, role, nil)
		for _, c := range checks {
			if c.Request == requestEmpty && !generic[c.Entry.Key()] {
				t.Errorf("%s gets the generic empty datagram: give it a request or mark it untestable", c.Entry.Key())
			}
		}
	}
}

func TestPlanServices(t *testing.T) {
	cat, err := catalog.Load(catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		role     catalog.Role
		services []string
		want     []string
		wantErr  string
	}{
		{catalog.RoleMN, []string{"xcatdport"}, []string{"xcatdport/tcp", "xcatdport/udp"}, ""},
		{catalog.RoleMN, []string{"tftp-udp/udp", " SSH-TCP "}, []string{"ssh-tcp/tcp", "tftp-udp/udp"}, ""},
		{catalog.RoleBMC, nil, []string{"ipmi/tcp", "ipmi/udp"}, ""},
		{catalog.RoleMN, []string{"ipmi"}, nil, `--service "ipmi": served by bmc, not by mn`},
		{catalog.RoleMN, []string{"gopher"}, nil, `--service "gopher": no such catalog row`},
		{catalog.Role("printer"), nil, nil, `role "printer": want one of mn, cn, bmc, switch`},
	}
	for _, tt := range tests {
		checks, _, err := Plan(cat, tt.role, tt.services)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s %v: error %v, want %q", tt.role, tt.services, err, tt.wantErr)
			}
			continue
		}
		var got []string
		for _, c := range checks {
			got = append(got, c.Entry.Key())
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s %v: %v, want %v", tt.role, tt.services, got, tt.want)
		}
	}
}
