package export

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// receiver is a syslog server on loopback: UDP (one message a datagram) or
// TCP and TLS (octet-counted frames), parsing what arrives with go-syslog's
// RFC 5424 parser.
type receiver struct {
	t        *testing.T
	addr     string
	messages chan *rfc5424.SyslogMessage
	errs     chan error
	conns    atomic.Int32 // stream connections accepted

	mu       sync.Mutex
	closers  []interface{ Close() error }
	stopped  bool
	onAccept func(net.Conn) // test hook, runs before parsing
	wg       sync.WaitGroup
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{
		t:        t,
		messages: make(chan *rfc5424.SyslogMessage, 10000),
		errs:     make(chan error, 100),
	}
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) track(c interface{ Close() error }) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		c.Close()
		return false
	}
	r.closers = append(r.closers, c)
	return true
}

// stop closes the listener and every connection: the server goes away.
func (r *receiver) stop() {
	r.mu.Lock()
	r.stopped = true
	closers := r.closers
	r.closers = nil
	r.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	r.wg.Wait()
}

func (r *receiver) deliver(res *syslog.Result) {
	if res.Error != nil {
		// The octet-counting parser reports the end of a connection as
		// "found EOF, expecting ...": a connection closed between frames,
		// or inside one when the server went away. That is not a message
		// the sink got wrong.
		if !strings.HasPrefix(res.Error.Error(), "found EOF") {
			r.errs <- res.Error
		}
		return
	}
	r.messages <- res.Message.(*rfc5424.SyslogMessage)
}

func startUDPReceiver(t *testing.T) *receiver {
	r := newReceiver(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = pc.LocalAddr().String()
	r.track(pc)
	r.wg.Go(func() {
		parser := rfc5424.NewParser()
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := parser.Parse(buf[:n])
			r.deliver(&syslog.Result{Message: msg, Error: err})
		}
	})
	return r
}

// startStreamReceiver listens on addr ("127.0.0.1:0" for any port) for TCP,
// or TLS when cfg is set.
func startStreamReceiver(t *testing.T, addr string, cfg *tls.Config) *receiver {
	r := newReceiver(t)
	return r.listen(addr, cfg)
}

func (r *receiver) listen(addr string, cfg *tls.Config) *receiver {
	t := r.t
	var ln net.Listener
	var err error
	// A port just freed by a closed listener can be taken back at once on
	// loopback; retry briefly in case the kernel is still tearing it down.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	r.addr = ln.Addr().String()
	r.track(ln)
	r.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if !r.track(conn) {
				return
			}
			r.conns.Add(1)
			r.wg.Go(func() {
				if r.onAccept != nil {
					r.onAccept(conn)
				}
				parser := octetcounting.NewParser(syslog.WithListener(r.deliver), syslog.WithMaxMessageLength(1<<16))
				parser.Parse(conn)
			})
		}
	})
	return r
}

// next returns the next parsed message, failing on a parse error or when
// none comes within a generous bound.
func (r *receiver) next() *rfc5424.SyslogMessage {
	r.t.Helper()
	select {
	case msg := <-r.messages:
		return msg
	case err := <-r.errs:
		r.t.Fatalf("receiver could not parse a message: %v", err)
	case <-time.After(10 * time.Second):
		r.t.Fatal("no message reached the receiver")
	}
	return nil
}

// testCA is a self-signed certificate for 127.0.0.1, and the same
// certificate as a CA file the sink can trust.
type testCA struct {
	serverConfig *tls.Config
	caFile       string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "portwatch test syslog server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCA{
		serverConfig: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
			MinVersion:   tls.VersionTLS12,
		},
		caFile: caFile,
	}
}
