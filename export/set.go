package export

import (
	"context"
	"errors"
	"strings"
	"sync"

	"portwatch/classify"
)

// SpecList is a repeatable --output flag: each Set parses one spec, so a
// bad spec is reported while flags are parsed. It satisfies pflag.Value
// and flag.Value.
type SpecList []Spec

// ToStdout returns the first spec that writes to standard output, if any:
// a command whose report also goes there (--format json) must refuse it,
// or the two would interleave.
func (l SpecList) ToStdout() (Spec, bool) {
	for _, s := range l {
		if s.Transport == TransportStdout {
			return s, true
		}
	}
	return Spec{}, false
}

// Set parses and appends one spec.
func (l *SpecList) Set(value string) error {
	spec, err := ParseSpec(value)
	if err != nil {
		return err
	}
	*l = append(*l, spec)
	return nil
}

func (l *SpecList) String() string {
	names := make([]string, len(*l))
	for i, spec := range *l {
		names[i] = spec.String()
	}
	return strings.Join(names, ",")
}

// Type names the flag's value in pflag's help.
func (l *SpecList) Type() string { return "spec" }

// Set is the sinks of all --output flags: Emit gives an event to each.
type Set struct {
	sinks []Sink
}

// OpenAll opens a sink per spec. If one fails, those already open are
// closed and the error names the failing spec.
func OpenAll(specs []Spec, opts Options) (*Set, error) {
	set := &Set{}
	for _, spec := range specs {
		sink, err := Open(spec, opts)
		if err != nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing was emitted; do not wait on anything
			_ = set.Close(ctx)
			return nil, err
		}
		set.sinks = append(set.sinks, sink)
	}
	return set, nil
}

// Emit gives ev to every sink; it never blocks.
func (s *Set) Emit(ev classify.Event) {
	for _, sink := range s.sinks {
		sink.Emit(ev)
	}
}

// Close closes every sink at once, so that they share the deadline rather
// than each waiting its turn, and joins their errors.
func (s *Set) Close(ctx context.Context) error {
	errs := make([]error, len(s.sinks))
	var wg sync.WaitGroup
	for i, sink := range s.sinks {
		wg.Go(func() { errs[i] = sink.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stats returns each sink's counters, in the order of the specs.
func (s *Set) Stats() []Stats {
	out := make([]Stats, len(s.sinks))
	for i, sink := range s.sinks {
		out[i] = sink.Stats()
	}
	return out
}
