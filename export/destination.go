package export

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// destination is where a sink's writer puts its messages: a file, stdout, or
// a connection to a syslog server. connect is called again after a failed
// write, so it is also how a sink reconnects.
type destination interface {
	connect(ctx context.Context) (io.WriteCloser, error)
	// frame appends one message, framed for this destination, to dst.
	frame(dst, msg []byte) []byte
}

// lineFraming ends each message with a newline: files and stdout.
type lineFraming struct{}

func (lineFraming) frame(dst, msg []byte) []byte {
	dst = append(dst, msg...)
	return append(dst, '\n')
}

// fileDestination appends to a file. The file is opened once by Open, so
// that a bad path is an error at startup, and again after a failed write.
type fileDestination struct {
	lineFraming
	path   string
	opened *os.File
}

// fileMode: events name hosts and services of the management network,
// which is not for every local user to read.
const fileMode = 0o640

func openFileDestination(path string) (*fileDestination, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &fileDestination{path: path, opened: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("%w (check that the directory exists and is writable)", err)
	}
	return f, nil
}

func (d *fileDestination) connect(context.Context) (io.WriteCloser, error) {
	if f := d.opened; f != nil {
		d.opened = nil
		return f, nil
	}
	return openAppend(d.path)
}

// stdoutDestination writes to a stream the sink does not own: closing the
// sink leaves it open.
type stdoutDestination struct {
	lineFraming
	w io.Writer
}

func (d stdoutDestination) connect(context.Context) (io.WriteCloser, error) {
	return nopCloser{d.w}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// DialFunc opens a network connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// netDestination is a syslog server over UDP, TCP or TLS.
type netDestination struct {
	address   string
	dial      DialFunc
	timeout   time.Duration
	tlsConfig *tls.Config // nil for plain UDP and TCP
	// stream is true for TCP and TLS: octet-counted framing, and a watch
	// for the server closing the connection.
	stream bool
}

// frame: a datagram carries one message as it is (RFC 5426); a stream
// carries "MSG-LEN SP SYSLOG-MSG" (RFC 6587 section 3.4.1, RFC 5425
// section 4.3), which holds any byte, newlines included.
func (d *netDestination) frame(dst, msg []byte) []byte {
	if d.stream {
		dst = fmt.Appendf(dst, "%d ", len(msg))
	}
	return append(dst, msg...)
}

func (d *netDestination) connect(ctx context.Context) (io.WriteCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	network := "udp"
	if d.stream {
		network = "tcp"
	}
	conn, err := d.dial(ctx, network, d.address)
	if err != nil {
		return nil, err
	}
	raw := conn
	if d.tlsConfig != nil {
		tlsConn := tls.Client(conn, d.tlsConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, explainTLSError(d.address, err)
		}
		conn = tlsConn
	}
	if d.stream {
		return watchConn(conn, raw), nil
	}
	return conn, nil
}

// explainTLSError says what to change when the server's certificate is
// not accepted.
func explainTLSError(address string, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hostname):
		return fmt.Errorf("TLS handshake with %s: %w (set servername=NAME to a name the certificate holds)", address, err)
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		return fmt.Errorf("TLS handshake with %s: %w (give the CA that signed the server's certificate with ca=PATH)", address, err)
	}
	return fmt.Errorf("TLS handshake with %s: %w", address, err)
}

// watchedConn notices that the server closed or reset a stream connection.
// A syslog server never sends anything back, so a read that returns means
// the connection is over; without this, writes would go on succeeding into
// the kernel's buffer for a while and those messages would be lost.
type watchedConn struct {
	net.Conn
	// raw is the TCP connection under TLS (or Conn itself).
	raw  net.Conn
	gone atomic.Pointer[error]
}

func watchConn(conn, raw net.Conn) *watchedConn {
	w := &watchedConn{Conn: conn, raw: raw}
	go w.watch()
	return w
}

// alive reports whether the server has not closed the connection.
func (w *watchedConn) alive() bool { return w.gone.Load() == nil }

// abort closes the TCP connection at once. Closing a TLS connection
// first sends close_notify, which can wait seconds for a server that
// stopped reading; Close(ctx) must not.
func (w *watchedConn) abort() { w.raw.Close() }

func (w *watchedConn) watch() {
	var buf [512]byte
	for {
		_, err := w.Conn.Read(buf[:])
		if err == nil {
			continue // a TLS server may send session tickets; nothing else is expected
		}
		if errors.Is(err, net.ErrClosed) {
			return // our own Close
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the server closed the connection")
		} else {
			err = fmt.Errorf("connection lost: %w", err)
		}
		w.gone.Store(&err)
		w.Conn.Close()
		return
	}
}

func (w *watchedConn) Write(p []byte) (int, error) {
	if err := w.gone.Load(); err != nil {
		return 0, *err
	}
	n, err := w.Conn.Write(p)
	if err != nil {
		if gone := w.gone.Load(); gone != nil {
			return n, *gone
		}
	}
	return n, err
}

// tlsConfig builds the client configuration of a syslog+tls sink, reading
// the CA and client certificate files now so that a bad file is an error
// at startup rather than a retry loop.
func tlsConfig(spec Spec) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(spec.Address)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12, // TLS 1.0 and 1.1 are deprecated (RFC 8996)
		ServerName:         host,
		InsecureSkipVerify: spec.TLS.InsecureSkipVerify,
	}
	if spec.TLS.ServerName != "" {
		cfg.ServerName = spec.TLS.ServerName
	}
	if spec.TLS.CAFile != "" {
		pem, err := os.ReadFile(spec.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca=%s: %w", spec.TLS.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca=%s: no PEM certificate in the file", spec.TLS.CAFile)
		}
		cfg.RootCAs = pool
	}
	if spec.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(spec.TLS.CertFile, spec.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert=%s key=%s: %w", spec.TLS.CertFile, spec.TLS.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
