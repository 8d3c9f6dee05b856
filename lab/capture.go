package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Capture is a tcpdump writing a pcap file inside a host's namespace.
type Capture struct {
	Path  string
	iface Interface
	pid   int
	done  chan error
	// said is what tcpdump wrote on stderr, complete once done is.
	said []string
}

// captureBufferKiB is tcpdump's kernel buffer (-B). Its default, 2 MiB,
// overflows within a second when a 50-node burst shares two cores with
// tcpdump (half the packets lost); 64 MiB holds a whole burst.
const captureBufferKiB = 65536

// StartCapture starts tcpdump on an interface of a host (its Iface when
// iface is empty) with a filter (empty: everything), writing to a file in
// the run directory, and returns once tcpdump is capturing.
func (l *Lab) StartCapture(ctx context.Context, h Host, iface, filter string) (*Capture, error) {
	if iface == "" {
		iface = h.Iface
	}
	path := l.clientFile(h, "capture") + ".pcap"
	args := []string{"-n", "-U", "-B", strconv.Itoa(captureBufferKiB), "-i", iface, "-w", path}
	if filter != "" {
		args = append(args, filter)
	}
	cmd := l.Command(context.Background(), h, "tcpdump", args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpdump in %s: %w", h.Netns, err)
	}
	c := &Capture{Path: path, iface: Interface{h.Netns, iface}, pid: cmd.Process.Pid, done: make(chan error, 1)}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var said []string
		for sc.Scan() {
			said = append(said, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				listening <- ""
			}
		}
		listening <- strings.Join(said, "\n")
		err := cmd.Wait()
		c.said = said
		c.done <- err
	}()
	select {
	case msg := <-listening:
		if msg != "" {
			return nil, fmt.Errorf("tcpdump on %s: %s", c.iface, msg)
		}
	case <-ctx.Done():
		_ = syscall.Kill(c.pid, syscall.SIGKILL)
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(c.pid, syscall.SIGKILL)
		return nil, fmt.Errorf("tcpdump on %s did not start within 10s", c.iface)
	}
	return c, nil
}

// captureSettle is how long Stop lets tcpdump read what the interface has
// seen before it is told to end. libpcap reads the kernel's packet ring
// (TPACKET_V3) in blocks, each handed over when full or when the kernel's
// block timer, run every tcpdump read timeout (1 s), finds it still open
// since its last run: up to two periods. tcpdump ends on SIGINT without
// reading a block not yet handed over, so the packets of the last second
// or two would be lost (a syslog message sent last went missing so).
// --immediate-mode would hand over each packet, but in a ring of frames
// as large as the snapshot length: it lost half a 50-node burst.
const captureSettle = 2*time.Second + 250*time.Millisecond

// Stop ends the capture once every packet the interface saw before the
// call is in the file (tcpdump flushes the file on SIGINT), and returns the
// file's path.
func (c *Capture) Stop() (string, error) {
	select {
	case <-c.done: // tcpdump already ended; nothing to wait for
	case <-time.After(captureSettle):
		_ = syscall.Kill(c.pid, syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(c.pid, syscall.SIGKILL)
			<-c.done
		}
	}
	if _, err := os.Stat(c.Path); err != nil {
		return "", fmt.Errorf("capture on %s: %w", c.iface, err)
	}
	return c.Path, nil
}

// StopCaptures stops captures at once (each Stop waits captureSettle),
// returning their files' paths in order and their errors joined.
func StopCaptures(cs ...*Capture) ([]string, error) {
	paths := make([]string, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { paths[i], errs[i] = c.Stop() })
	}
	wg.Wait()
	return paths, errors.Join(errs...)
}

var droppedWords = regexp.MustCompile(`(?m)^(\d+) packets? dropped by kernel`)

// Dropped returns, once Stop has returned, how many packets the kernel
// dropped because tcpdump did not keep up: a capture that dropped some is
// not the traffic. known is false when tcpdump did not say (it was killed).
// (tcpdump's "received by filter" less "captured" is no count of losses:
// it also counts what arrived after Stop was called, unread by design.)
func (c *Capture) Dropped() (n uint64, known bool) {
	m := droppedWords.FindStringSubmatch(strings.Join(c.said, "\n"))
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	return n, err == nil
}
