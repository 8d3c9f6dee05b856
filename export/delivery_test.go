package export

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"portwatch/classify"
)

// fastRetry makes a sink retry within milliseconds, so tests that take a
// server down and up finish quickly.
func fastRetry(opts Options) Options {
	opts.MinBackoff = 10 * time.Millisecond
	opts.MaxBackoff = 50 * time.Millisecond
	opts.DialTimeout = 2 * time.Second
	return opts
}

func openSink(t *testing.T, raw string, opts Options) Sink {
	t.Helper()
	spec, err := ParseSpec(raw)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := Open(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = sink.Close(ctx)
	})
	return sink
}

// waitFor polls cond until it holds, and fails after a bound generous
// enough for a loaded CI machine. It waits for a state; it asserts no speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeWithin closes a sink with a deadline and returns its error.
func closeWithin(sink Sink, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return sink.Close(ctx)
}

func checkSettled(t *testing.T, st Stats) {
	t.Helper()
	if st.Emitted != st.Delivered+st.Dropped || st.Queued != 0 {
		t.Errorf("after Close: emitted %d != delivered %d + dropped %d, or %d still queued",
			st.Emitted, st.Delivered, st.Dropped, st.Queued)
	}
}

// TestSyslogReceivers sends the fixture events to real syslog listeners on
// loopback over UDP, TCP and TLS, and checks what a parser reads there.
func TestSyslogReceivers(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name  string
		start func(t *testing.T) *receiver
		spec  func(addr string) string
	}{
		{"udp", startUDPReceiver, func(a string) string { return "syslog://" + a }},
		{"tcp", func(t *testing.T) *receiver { return startStreamReceiver(t, "127.0.0.1:0", nil) },
			func(a string) string { return "syslog+tcp://" + a }},
		{"tls", func(t *testing.T) *receiver { return startStreamReceiver(t, "127.0.0.1:0", ca.serverConfig) },
			func(a string) string { return "syslog+tls://" + a + "?ca=" + ca.caFile }},
		{"tls-servername", func(t *testing.T) *receiver { return startStreamReceiver(t, "127.0.0.1:0", ca.serverConfig) },
			func(a string) string { return "syslog+tls://" + a + "?servername=localhost&ca=" + ca.caFile }},
		{"tcp-sdid", func(t *testing.T) *receiver { return startStreamReceiver(t, "127.0.0.1:0", nil) },
			func(a string) string { return "syslog+tcp://" + a + "?sdid=xcat@32473&facility=daemon" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recv := tc.start(t)
			raw := tc.spec(recv.addr)
			spec, _ := ParseSpec(raw)
			sink := openSink(t, raw, fastRetry(testOptions()))
			events := fixtureEvents()
			// Multibyte text in the structured data: a stream frame counts
			// octets, not characters, or the receiver loses the framing.
			wide := events[0]
			wide.Time = wide.Time.Add(time.Hour)
			wide.Service = "tftp-ü-節点-✓"
			events = append(events, wide)
			for _, ev := range events {
				sink.Emit(ev)
			}
			byTime := map[time.Time]*classify.Event{}
			for i := range events {
				byTime[events[i].Time.Truncate(time.Microsecond)] = &events[i]
			}
			for range events {
				msg := recv.next()
				ev := byTime[*msg.Timestamp]
				if ev == nil {
					t.Fatalf("a message with timestamp %v matches no event sent", *msg.Timestamp)
				}
				delete(byTime, *msg.Timestamp)
				if got, want := (*msg.StructuredData)[spec.SDID], expectedSD(ev); !maps.Equal(got, want) {
					t.Errorf("%s: structured data\n got %v\nwant %v", ev.Verdict, got, want)
				}
				if *msg.Appname != "portwatch" || *msg.Hostname != ev.Observer.Host || *msg.MsgID != string(ev.Verdict) {
					t.Errorf("header app %q host %q msgid %q", *msg.Appname, *msg.Hostname, *msg.MsgID)
				}
				if int(*msg.Facility) != spec.Facility || int(*msg.Severity) != SeverityOf(ev.Verdict).Syslog {
					t.Errorf("facility %d severity %d, want %d %d", *msg.Facility, *msg.Severity, spec.Facility, SeverityOf(ev.Verdict).Syslog)
				}
				if *msg.Message != ev.Message {
					t.Errorf("MSG %q, want %q", *msg.Message, ev.Message)
				}
			}
			if err := closeWithin(sink, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			st := sink.Stats()
			checkSettled(t, st)
			if st.Delivered != uint64(len(events)) || st.Dropped != 0 {
				t.Errorf("stats %+v, want %d delivered and none dropped", st, len(events))
			}
		})
	}
}

// TestCEFAndLEEFOverSyslog: the lines travel as MSG and parse back whole.
func TestCEFAndLEEFOverSyslog(t *testing.T) {
	ca := newTestCA(t)
	for _, scheme := range []string{"cef+syslog+tls", "leef+syslog+tcp"} {
		t.Run(scheme, func(t *testing.T) {
			var cfg = ca.serverConfig
			query := "?ca=" + ca.caFile
			if !strings.HasSuffix(scheme, "tls") {
				cfg, query = nil, ""
			}
			recv := startStreamReceiver(t, "127.0.0.1:0", cfg)
			sink := openSink(t, scheme+"://"+recv.addr+query, fastRetry(testOptions()))
			// A hostile value too: over TCP a line break would be harmless
			// to the framing, but CEF and LEEF must still escape it.
			events := append(fixtureEvents(), hostileEvent("x|y=z^w\r\nv\\"))
			for _, ev := range events {
				sink.Emit(ev)
			}
			for i := range events {
				line := messageOf(t, recv.next())
				if strings.HasPrefix(scheme, "cef") {
					header, ext := mustParseCEF(t, line)
					checkCEF(t, &events[i], header, ext)
				} else {
					header, attrs := mustParseLEEF(t, line)
					checkLEEF(t, &events[i], header, attrs)
				}
			}
		})
	}
}

// freePort returns a loopback address nobody listens on (now).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestServerDownThenUp: events emitted while the server is down wait in the
// queue, the sink retries, and all arrive in order once the server is up.
func TestServerDownThenUp(t *testing.T) {
	ca := newTestCA(t)
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			addr := freePort(t)
			raw := "syslog+" + transport + "://" + addr
			var cfg = ca.serverConfig
			if transport == "tls" {
				raw += "?ca=" + ca.caFile
			} else {
				cfg = nil
			}
			sink := openSink(t, raw, fastRetry(testOptions()))
			events := fixtureEvents()
			// Multibyte text in the structured data: a stream frame counts
			// octets, not characters, or the receiver loses the framing.
			wide := events[0]
			wide.Time = wide.Time.Add(time.Hour)
			wide.Service = "tftp-ü-節点-✓"
			events = append(events, wide)
			for _, ev := range events {
				sink.Emit(ev)
			}
			waitFor(t, "two failed connects", func() bool { return sink.Stats().Retries >= 2 })
			st := sink.Stats()
			if st.Delivered != 0 || st.Queued != len(events) || st.Dropped != 0 {
				t.Fatalf("while down: %+v, want all %d queued", st, len(events))
			}
			if !strings.Contains(st.LastError, "refused") || st.LastErrorTime.IsZero() {
				t.Errorf("LastError %q at %v, want the refused connect", st.LastError, st.LastErrorTime)
			}

			recv := startStreamReceiver(t, addr, cfg)
			for i := range events {
				msg := recv.next()
				if !msg.Timestamp.Equal(events[i].Time.Truncate(time.Microsecond)) {
					t.Errorf("message %d is from %v, want %v: order lost", i, msg.Timestamp, events[i].Time)
				}
			}
			waitFor(t, "delivered count", func() bool { return sink.Stats().Delivered == uint64(len(events)) })
			if st := sink.Stats(); !st.Connected || st.Queued != 0 {
				t.Errorf("after delivery: %+v", st)
			}
			if err := closeWithin(sink, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			checkSettled(t, sink.Stats())
		})
	}
}

// TestServerResetsConnection: the server resets the connection after the
// first message; the sink reconnects and delivers the rest.
func TestServerResetsConnection(t *testing.T) {
	recv := newReceiver(t)
	var once sync.Once
	reset := make(chan struct{})
	recv.onAccept = func(conn net.Conn) {
		once.Do(func() {
			// First connection: read one frame, then reset (SO_LINGER 0
			// makes Close send RST instead of FIN).
			msg := readFrame(t, conn)
			if _, err := rfc5424.NewParser().Parse(msg); err != nil {
				t.Errorf("first message: %v", err)
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			close(reset)
		})
	}
	recv.listen("127.0.0.1:0", nil)
	sink := openSink(t, "syslog+tcp://"+recv.addr, fastRetry(testOptions()))
	events := fixtureEvents()
	sink.Emit(events[0])
	<-reset
	for _, ev := range events[1:] {
		sink.Emit(ev)
	}
	for i := range events[1:] {
		msg := recv.next()
		if !msg.Timestamp.Equal(events[i+1].Time.Truncate(time.Microsecond)) {
			t.Fatalf("after the reset got %v, want event %d at %v", msg.Timestamp, i+1, events[i+1].Time)
		}
	}
	st := sink.Stats()
	if recv.conns.Load() != 2 || st.Retries == 0 {
		t.Errorf("%d connections and %d retries; want a reconnect", recv.conns.Load(), st.Retries)
	}
	if !strings.Contains(st.LastError, "reset") && !strings.Contains(st.LastError, "closed") && !strings.Contains(st.LastError, "broken pipe") {
		t.Errorf("LastError %q does not tell of the lost connection", st.LastError)
	}
}

// readFrame reads one octet-counted frame.
func readFrame(t *testing.T, conn net.Conn) []byte {
	t.Helper()
	var n int
	buf := make([]byte, 1)
	for {
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
		if buf[0] == ' ' {
			break
		}
		n = n*10 + int(buf[0]-'0')
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(conn, msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestServerGoesAway: once the server is gone the queue fills, further
// events are dropped and counted, and Close gives up at its deadline.
func TestServerGoesAway(t *testing.T) {
	recv := startStreamReceiver(t, "127.0.0.1:0", nil)
	const queue = 16
	sink := openSink(t, "syslog+tcp://"+recv.addr+"?queue=16", fastRetry(testOptions()))
	ev := fixtureEvents()[0]
	sink.Emit(ev)
	recv.next()
	recv.stop()

	const more = 1000
	for range more {
		sink.Emit(ev)
	}
	// The writer holds one event and retries it; the queue behind it is
	// full, or one short if the writer took its event after the last Emit.
	retries := sink.Stats().Retries
	waitFor(t, "retries against the dead server", func() bool { return sink.Stats().Retries >= retries+2 })
	st := sink.Stats()
	if st.Queued < queue {
		t.Errorf("%d queued, want the queue of %d full", st.Queued, queue)
	}
	if st.Emitted != more+1 || st.Delivered+st.Dropped+uint64(st.Queued) != st.Emitted {
		t.Fatalf("counters do not add up: %+v", st)
	}
	// Some events may have been written into the dying connection before
	// the sink saw it close (syslog over TCP has no receipts); the rest of
	// the 1000 were dropped.
	if st.Dropped < more-queue-1-(st.Delivered-1) || st.Dropped == 0 {
		t.Errorf("dropped %d of %d with %d delivered after the server left", st.Dropped, more, st.Delivered-1)
	}
	err := closeWithin(sink, 100*time.Millisecond)
	if want := fmt.Sprintf("%d events not delivered", st.Queued); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) {
		t.Errorf("Close: %v, want %s", err, want)
	}
	checkSettled(t, sink.Stats())
	sink.Emit(ev) // after Close: dropped, not queued, no panic
	if st := sink.Stats(); st.Dropped != st.Emitted-st.Delivered {
		t.Errorf("an event emitted after Close was not counted as dropped: %+v", st)
	}
}

// TestEmitNeverBlocks: a dead TCP sink with a tiny queue takes ten
// thousand events; Emit returns every time and the overflow is counted.
func TestEmitNeverBlocks(t *testing.T) {
	sink := openSink(t, "syslog+tcp://"+freePort(t)+"?queue=2", fastRetry(testOptions()))
	ev := fixtureEvents()[0]
	const n = 10000
	for range n {
		sink.Emit(ev)
	}
	st := sink.Stats()
	if st.Emitted != n || st.Delivered != 0 || st.Dropped < n-3 || st.QueueSize != 2 {
		t.Errorf("after %d emits into a dead sink: %+v", n, st)
	}
	err := closeWithin(sink, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want the deadline", err)
	}
	st = sink.Stats()
	checkSettled(t, st)
	if st.Dropped != n {
		t.Errorf("dropped %d, want all %d", st.Dropped, n)
	}
}

// TestTLSHandshakeFailure: a server whose certificate the sink does not
// trust is retried, never written to, and the error says what to do.
func TestTLSHandshakeFailure(t *testing.T) {
	ca := newTestCA(t)
	recv := startStreamReceiver(t, "127.0.0.1:0", ca.serverConfig)
	other := newTestCA(t) // a CA that did not sign the server's certificate
	sink := openSink(t, "syslog+tls://"+recv.addr+"?ca="+other.caFile, fastRetry(testOptions()))
	sink.Emit(fixtureEvents()[0])
	waitFor(t, "failed handshakes", func() bool { return sink.Stats().Retries >= 2 })
	st := sink.Stats()
	if st.Delivered != 0 || st.Connected {
		t.Errorf("delivered through a failed handshake: %+v", st)
	}
	if !strings.Contains(st.LastError, "TLS handshake") || !strings.Contains(st.LastError, "ca=PATH") {
		t.Errorf("LastError %q does not explain the handshake failure", st.LastError)
	}
	if err := closeWithin(sink, 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v", err)
	}
	checkSettled(t, sink.Stats())
	select {
	case msg := <-recv.messages:
		t.Errorf("the server got a message through an untrusted handshake: %v", msg)
	default:
	}
}

// TestCloseFlushes: Close delivers everything queued when it has time.
func TestCloseFlushes(t *testing.T) {
	recv := startStreamReceiver(t, "127.0.0.1:0", nil)
	sink := openSink(t, "syslog+tcp://"+recv.addr, fastRetry(testOptions()))
	const n = 500
	ev := fixtureEvents()[0]
	for range n {
		sink.Emit(ev)
	}
	if err := closeWithin(sink, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st := sink.Stats()
	checkSettled(t, st)
	if st.Delivered != n {
		t.Errorf("delivered %d of %d", st.Delivered, n)
	}
	for range n {
		recv.next()
	}
}

// TestCloseCutsStuckWrite: the server accepts but never reads, so the
// socket buffers fill and a write waits (for WriteTimeout, a minute here).
// Close must cut it at its own deadline and count what was left.
func TestCloseCutsStuckWrite(t *testing.T) {
	ca := newTestCA(t)
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			recv := newReceiver(t)
			recv.onAccept = func(conn net.Conn) {
				if tlsConn, ok := conn.(*tls.Conn); ok {
					if err := tlsConn.Handshake(); err != nil {
						t.Errorf("handshake: %v", err)
						return
					}
					conn = tlsConn.NetConn()
				}
				conn.(*net.TCPConn).SetReadBuffer(4096)
				<-t.Context().Done() // never read
			}
			raw := "syslog+tcp://"
			var cfg *tls.Config
			query := "?queue=64"
			if transport == "tls" {
				raw, cfg, query = "syslog+tls://", ca.serverConfig, query+"&ca="+ca.caFile
			}
			recv.listen("127.0.0.1:0", cfg)
			opts := fastRetry(testOptions())
			opts.WriteTimeout = time.Minute
			opts.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
				conn, err := (&net.Dialer{}).DialContext(ctx, network, address)
				if err == nil {
					err = conn.(*net.TCPConn).SetWriteBuffer(4096) // fill up sooner
				}
				return conn, err
			}
			sink := openSink(t, raw+recv.addr+query, opts)
			ev := hostileEvent(strings.Repeat("z", 300)) // about 2 kB a message
			// Keep the queue full until the writer makes no progress: the
			// socket buffers are full and a write is waiting. The server
			// never reads, so this must happen.
			var lastDelivered uint64
			still := 0
			waitFor(t, "a stuck writer", func() bool {
				for range 8 {
					sink.Emit(ev)
				}
				st := sink.Stats()
				if st.Delivered > 0 && st.Delivered == lastDelivered {
					still++
				} else {
					still, lastDelivered = 0, st.Delivered
				}
				return still >= 20
			})
			err := closeWithin(sink, 200*time.Millisecond)
			if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "left behind") {
				t.Errorf("Close: %v, want the deadline and a write cut short", err)
			}
			st := sink.Stats()
			checkSettled(t, st)
			if st.Connected {
				t.Error("the connection is still open after Close")
			}
		})
	}
}

func TestFileSinkAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte("kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := openSink(t, "jsonl:"+path, Options{})
	events := fixtureEvents()
	for _, ev := range events {
		sink.Emit(ev)
	}
	if err := closeWithin(sink, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "kept\n" + string(encodeAll(t, Spec{Format: FormatJSONL, Transport: TransportFile}, events))
	if string(got) != want {
		t.Errorf("file holds\n%s\nwant\n%s", got, want)
	}
}

func TestNewFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.cef")
	sink := openSink(t, "cef:"+path, Options{})
	if err := closeWithin(sink, time.Second); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm&^fileMode != 0 {
		t.Errorf("new file mode %v, want at most %v", perm, os.FileMode(fileMode))
	}
}

func TestStdoutSink(t *testing.T) {
	var out strings.Builder
	opts := testOptions()
	opts.Stdout = &out
	sink := openSink(t, "leef", opts)
	events := fixtureEvents()
	for _, ev := range events {
		sink.Emit(ev)
	}
	if err := closeWithin(sink, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := string(encodeAll(t, Spec{Format: FormatLEEF, Transport: TransportStdout}, events)); out.String() != want {
		t.Errorf("stdout got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		raw, want string
	}{
		{"jsonl:" + filepath.Join(dir, "missing", "events.jsonl"), "check that the directory exists"},
		{"syslog+tls://127.0.0.1:6514?ca=" + filepath.Join(dir, "absent.pem"), "no such file"},
		{"syslog+tls://127.0.0.1:6514?ca=" + notPEM, "no PEM certificate"},
		{"syslog+tls://127.0.0.1:6514?cert=" + notPEM + "&key=" + notPEM, "cert="},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			spec, err := ParseSpec(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Open(spec, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), spec.String()) {
				t.Errorf("Open: %v, want an error naming %s and saying %q", err, spec.String(), tc.want)
			}
		})
	}
}

// TestSet: OpenAll opens each spec, Emit reaches each, Stats keeps the
// order; a bad spec fails the whole set.
func TestSet(t *testing.T) {
	dir := t.TempDir()
	var specs SpecList
	for _, raw := range []string{"jsonl:" + filepath.Join(dir, "a.jsonl"), "cef:" + filepath.Join(dir, "b.cef")} {
		if err := specs.Set(raw); err != nil {
			t.Fatal(err)
		}
	}
	set, err := OpenAll(specs, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range fixtureEvents() {
		set.Emit(ev)
	}
	if err := set.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats := set.Stats()
	if len(stats) != 2 || stats[0].Name != specs[0].String() || stats[1].Name != specs[1].String() {
		t.Fatalf("stats %+v", stats)
	}
	for _, st := range stats {
		if st.Delivered != uint64(len(fixtureEvents())) {
			t.Errorf("%s delivered %d", st.Name, st.Delivered)
		}
	}

	bad := append(specs, Spec{Format: FormatJSONL, Transport: TransportFile, Path: filepath.Join(dir, "no", "such", "dir")})
	if _, err := OpenAll(bad, testOptions()); err == nil || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("OpenAll with a bad path: %v", err)
	}
}
