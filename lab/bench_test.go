package lab_test

import (
	"context"
	"fmt"
	"testing"

	"portwatch/lab"
	"portwatch/lab/labtest"
)

// BenchmarkUpDown measures building and removing a lab, daemons included:
//
//	go test ./lab -run '^$' -bench UpDown -benchtime 3x
func BenchmarkUpDown(b *testing.B) {
	for _, nodes := range []int{4, 50, lab.MaxNodes} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			labtest.RequirePriv(b)
			prefix := labtest.RandomPrefix()
			b.Cleanup(func() { _ = lab.Down(prefix) })
			for b.Loop() {
				l, err := lab.Up(context.Background(), lab.Config{Prefix: prefix, Nodes: nodes})
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Down(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBurst measures a provisioning burst of 50 nodes through the open
// firewall.
func BenchmarkBurst(b *testing.B) {
	l := labtest.Start(b, lab.Config{Nodes: 50})
	for b.Loop() {
		res := l.Burst(context.Background(), l.Nodes(), 0)
		for _, r := range res.Runs {
			if !r.OK() {
				b.Fatalf("%s: %+v", r.Node, r.Steps)
			}
		}
	}
}
