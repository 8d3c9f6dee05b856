package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"portwatch/classify"
)

// Defaults of Options.
const (
	// DefaultQueueSize holds a provisioning burst's worth of events (some
	// thousands of exchanges changing state at once) while a syslog server
	// restarts; an event is a few hundred bytes.
	DefaultQueueSize = 4096
	// MaxQueueSize keeps a mistyped queue= from reserving gigabytes.
	MaxQueueSize = 1 << 20

	DefaultDialTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultMinBackoff   = 250 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
)

// Options are the settings that are not part of a spec.
type Options struct {
	// QueueSize is the queue of a sink whose spec sets none.
	QueueSize int
	// Hostname, when set, is the HOSTNAME of every syslog message. By
	// default it is each event's observer host, or this machine's name.
	Hostname string
	// AppName is the syslog APP-NAME; default "portwatch".
	AppName string
	// ProcID is the syslog PROCID; default this process's id.
	ProcID string
	// Version is the product version in CEF and LEEF headers; default the
	// module version the binary was built from.
	Version string
	// Stdout is where "jsonl", "cef" and "leef" without a path write;
	// default os.Stdout.
	Stdout io.Writer
	// Dial opens syslog connections; default a net.Dialer.
	Dial DialFunc
	// DialTimeout bounds a connect, TLS handshake included.
	DialTimeout time.Duration
	// WriteTimeout bounds one write, so that a server that stops reading
	// is left and reconnected to rather than waited on forever.
	WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts after a
	// failure; it doubles from the one to the other.
	MinBackoff, MaxBackoff time.Duration

	fallbackHost string
}

func (o Options) withDefaults() Options {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	o.QueueSize = min(o.QueueSize, MaxQueueSize)
	if o.AppName == "" {
		o.AppName = "portwatch"
	}
	if o.ProcID == "" {
		o.ProcID = strconv.Itoa(os.Getpid())
	}
	if o.Version == "" {
		o.Version = buildVersion()
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Dial == nil {
		o.Dial = (&net.Dialer{}).DialContext
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Hostname == "" {
		o.fallbackHost, _ = os.Hostname()
	}
	return o
}

func buildVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// Sink delivers events to one destination.
type Sink interface {
	// Emit queues an event and returns at once. When the queue is full,
	// or the sink is closed, the event is dropped and counted.
	Emit(ev classify.Event)
	// Close stops taking events and delivers those queued until ctx is
	// done; what is left then is dropped, and the error says how many.
	Close(ctx context.Context) error
	// Stats returns the sink's counters.
	Stats() Stats
}

// Stats are one sink's counters, for people and for the Prometheus
// collector. After Close, Emitted = Delivered + Dropped.
type Stats struct {
	// Name is the spec's canonical form, Spec.String.
	Name string `json:"name"`
	// Emitted counts events given to Emit.
	Emitted uint64 `json:"emitted"`
	// Delivered counts events written whole to the file or socket. For
	// UDP that means handed to the kernel: a datagram has no receipt.
	Delivered uint64 `json:"delivered"`
	// Dropped counts events discarded: queue full, sink closed, or still
	// queued when Close ran out of time.
	Dropped uint64 `json:"dropped"`
	// Retries counts failed connects and writes after which the sink waited
	// and tried again.
	Retries uint64 `json:"retries"`
	// Queued is the number of events waiting now, the one being written
	// included.
	Queued int `json:"queued"`
	// QueueSize is the queue's capacity.
	QueueSize int `json:"queue_size"`
	// Connected is true while the sink holds an open file or connection.
	Connected bool `json:"connected"`
	// LastError is the most recent failure, "" if none; LastErrorTime
	// says when it happened.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
}

// encoder writes one event as one message, without framing.
type encoder interface {
	encode(dst []byte, ev *classify.Event) []byte
}

// Open starts a sink for spec. It fails for what cannot improve by waiting:
// a file that cannot be opened, a CA or client certificate that cannot be
// read. A syslog server that is down is not an error: events queue until it
// comes up.
func Open(spec Spec, opts Options) (Sink, error) {
	opts = opts.withDefaults()
	name := spec.String()
	var dest destination
	switch spec.Transport {
	case TransportStdout:
		dest = stdoutDestination{w: opts.Stdout}
	case TransportFile:
		d, err := openFileDestination(spec.Path)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		dest = d
	case TransportUDP, TransportTCP, TransportTLS:
		d := &netDestination{
			address: spec.Address,
			dial:    opts.Dial,
			timeout: opts.DialTimeout,
			stream:  spec.Transport != TransportUDP,
		}
		if spec.Transport == TransportTLS {
			cfg, err := tlsConfig(spec)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", name, err)
			}
			d.tlsConfig = cfg
		}
		dest = d
	default:
		return nil, fmt.Errorf("output %s: unknown transport %q", name, spec.Transport)
	}
	enc, err := newEncoder(spec, opts)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", name, err)
	}
	queueSize := opts.QueueSize
	if spec.QueueSize > 0 {
		queueSize = spec.QueueSize
	}
	s := &sink{
		name:         name,
		dest:         dest,
		enc:          enc,
		queue:        make(chan classify.Event, queueSize),
		closing:      make(chan struct{}),
		done:         make(chan struct{}),
		writeTimeout: opts.WriteTimeout,
		minBackoff:   opts.MinBackoff,
		maxBackoff:   opts.MaxBackoff,
	}
	s.runCtx, s.abort = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

func newEncoder(spec Spec, opts Options) (encoder, error) {
	var line encoder
	switch spec.Format {
	case FormatJSONL:
		line = newJSONEncoder()
	case FormatCEF:
		line = &cefEncoder{version: opts.Version}
	case FormatLEEF:
		line = &leefEncoder{version: opts.Version}
	case FormatRFC5424:
		if !spec.Transport.IsNetwork() {
			return nil, errors.New("RFC 5424 structured data goes to a syslog server, not to a file")
		}
		sdID := spec.SDID
		if sdID == "" {
			sdID = DefaultSDID
		}
		return &rfc5424Encoder{header: newSyslogHeader(spec.Facility, rfc5424Time, opts), sdID: sdID}, nil
	default:
		return nil, fmt.Errorf("unknown format %q", spec.Format)
	}
	if spec.Transport.IsNetwork() {
		if spec.Format == FormatJSONL {
			return nil, errors.New("JSON lines go to a file or stdout; over syslog the event travels as structured data")
		}
		return &syslogLineEncoder{header: newSyslogHeader(spec.Facility, rfc5424TimeMillis, opts), line: line}, nil
	}
	return line, nil
}

// sink is a bounded queue in front of one writer goroutine. Emit only
// touches the queue, so a slow or dead destination costs the caller nothing
// but dropped events.
type sink struct {
	name  string
	dest  destination
	enc   encoder
	queue chan classify.Event

	// closeMu orders Emit against Close: once closed is set, no event
	// enters the queue, so none can be stranded there uncounted.
	closeMu sync.RWMutex
	closed  bool
	// closing is closed by Close: deliver what is queued, then stop.
	closing   chan struct{}
	closeOnce sync.Once
	// runCtx is cancelled (abort) when Close runs out of time: stop now.
	runCtx context.Context
	abort  context.CancelFunc
	// done is closed when the writer has stopped.
	done chan struct{}

	writeTimeout           time.Duration
	minBackoff, maxBackoff time.Duration

	// conn is the writer's open file or connection; Close closes it to
	// cut short a write that would wait for its deadline.
	connMu sync.Mutex
	conn   io.WriteCloser

	emitted, delivered, dropped, retries atomic.Uint64
	// abandoned counts the drops of an aborted Close, for its error.
	abandoned atomic.Uint64
	inFlight  atomic.Int32

	errMu         sync.Mutex
	lastError     string
	lastErrorTime time.Time
}

func (s *sink) Emit(ev classify.Event) {
	s.emitted.Add(1)
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		s.dropped.Add(1)
		return
	}
	select {
	case s.queue <- ev:
	default:
		s.dropped.Add(1)
	}
}

func (s *sink) Stats() Stats {
	s.errMu.Lock()
	lastError, lastErrorTime := s.lastError, s.lastErrorTime
	s.errMu.Unlock()
	s.connMu.Lock()
	connected := s.conn != nil
	if w, ok := s.conn.(interface{ alive() bool }); ok {
		connected = w.alive()
	}
	s.connMu.Unlock()
	return Stats{
		Name:          s.name,
		Emitted:       s.emitted.Load(),
		Delivered:     s.delivered.Load(),
		Dropped:       s.dropped.Load(),
		Retries:       s.retries.Load(),
		Queued:        len(s.queue) + int(s.inFlight.Load()),
		QueueSize:     cap(s.queue),
		Connected:     connected,
		LastError:     lastError,
		LastErrorTime: lastErrorTime,
	}
}

// abortGrace is how long Close waits, after cutting the connection, for the
// writer to notice. Closing a socket or file ends a pending write at once;
// a write to a stdout pipe that nobody reads cannot be cut short, and Close
// must not hang on it.
const abortGrace = time.Second

func (s *sink) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		s.closeMu.Unlock()
		close(s.closing)
	})
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	s.abort()
	s.connMu.Lock()
	if a, ok := s.conn.(interface{ abort() }); ok {
		a.abort()
	}
	s.connMu.Unlock()
	s.closeConn()
	stuck := false
	select {
	case <-s.done:
	case <-time.After(abortGrace):
		stuck = true
	}
	for drained := false; !drained; {
		select {
		case <-s.queue:
			s.abandon()
		default:
			drained = true
		}
	}
	if stuck {
		return fmt.Errorf("output %s: a write is blocked and was left behind; %d events not delivered%s: %w",
			s.name, s.abandoned.Load()+1, s.lastErrorClause(), ctx.Err())
	}
	if n := s.abandoned.Load(); n > 0 {
		return fmt.Errorf("output %s: %d events not delivered in time%s: %w", s.name, n, s.lastErrorClause(), ctx.Err())
	}
	return nil
}

// lastErrorClause is the sink's Stats().LastErrorClause.
func (s *sink) lastErrorClause() string {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return Stats{LastError: s.lastError}.LastErrorClause()
}

// LastErrorClause says why the writer kept retrying, as " (last error:
// ...)", or "" if it never failed: a full disk or a refused connection is
// what the user must mend, not the deadline that ended the wait.
func (st Stats) LastErrorClause() string {
	if st.LastError == "" {
		return ""
	}
	return " (last error: " + st.LastError + ")"
}

// abandon counts an event given up because Close ran out of time.
func (s *sink) abandon() {
	s.dropped.Add(1)
	s.abandoned.Add(1)
}

func (s *sink) closeConn() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// noteError records a failed attempt that will be retried.
func (s *sink) noteError(err error) {
	s.errMu.Lock()
	s.lastError = err.Error()
	s.lastErrorTime = time.Now()
	s.errMu.Unlock()
	s.retries.Add(1)
}

// run is the writer: take an event, encode it, write it; on failure drop
// the connection, wait, reconnect and write the same message again.
func (s *sink) run() {
	defer close(s.done)
	defer s.closeConn()
	var msg, framed []byte
	backoff := s.minBackoff
	for {
		ev, ok := s.next()
		if !ok {
			return
		}
		msg = s.enc.encode(msg[:0], &ev)
		framed = s.dest.frame(framed[:0], msg)
		for {
			err := s.write(framed)
			if err == nil {
				s.delivered.Add(1)
				s.inFlight.Store(0)
				backoff = s.minBackoff
				break
			}
			if s.runCtx.Err() == nil {
				s.noteError(err)
				if s.sleep(backoff) {
					backoff = min(2*backoff, s.maxBackoff)
					continue
				}
			}
			s.abandon() // Close ran out of time
			s.inFlight.Store(0)
			return
		}
	}
}

// next returns the next queued event. After Close it returns what is still
// queued, then false; after an abort, false at once.
func (s *sink) next() (classify.Event, bool) {
	take := func(ev classify.Event) (classify.Event, bool) {
		s.inFlight.Store(1)
		return ev, true
	}
	select {
	case ev := <-s.queue:
		return take(ev)
	case <-s.runCtx.Done():
		return classify.Event{}, false
	case <-s.closing:
		select {
		case ev := <-s.queue:
			if s.runCtx.Err() == nil {
				return take(ev)
			}
			s.abandon()
		default:
		}
		return classify.Event{}, false
	}
}

func (s *sink) write(framed []byte) error {
	s.connMu.Lock()
	conn := s.conn
	s.connMu.Unlock()
	if conn == nil {
		c, err := s.dest.connect(s.runCtx)
		if err != nil {
			return err
		}
		s.connMu.Lock()
		if s.runCtx.Err() != nil { // aborted while connecting
			s.connMu.Unlock()
			c.Close()
			return s.runCtx.Err()
		}
		s.conn, conn = c, c
		s.connMu.Unlock()
	}
	if d, ok := conn.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
	_, err := conn.Write(framed)
	if err != nil {
		// The stream may hold part of this message: start over on a new
		// connection (or a reopened file) so the next frame is whole.
		s.connMu.Lock()
		if s.conn == conn {
			s.conn = nil
		}
		s.connMu.Unlock()
		conn.Close()
	}
	return err
}

// sleep waits d with ±20% jitter, so that many observers that lost the
// same server do not all come back at the same instant. It returns false
// if the sink is aborted meanwhile.
func (s *sink) sleep(d time.Duration) bool {
	jitter := time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
	t := time.NewTimer(d + jitter)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.runCtx.Done():
		return false
	}
}
