//go:build linux

package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"portwatch/internal/privtest"
)

// needTcpdump returns tcpdump's path, or skips (fails where CI, which
// installs it, demands every test).
func needTcpdump(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		privtest.SkipOrFail(t, "tcpdump is not installed (Debian package tcpdump)")
	}
	return path
}

// startTcpdump runs tcpdump in namespace ns and waits until it listens. It
// returns tcpdump's standard output too, for a capture written to "-".
func startTcpdump(t *testing.T, ns string, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	// Immediate mode: without it packets wait in libpcap's ring for up to
	// a second, and tcpdump stopped by SIGINT does not write them. A 32 MiB
	// buffer: on "any" libpcap sizes each ring slot by the snap length
	// (256 KiB), so its default 2 MiB holds eight packets and a loaded
	// machine loses the rest of a burst.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "tcpdump", "-Z", "root", "--immediate-mode", "-U", "-B", "32768"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "listening on") {
				listening <- ""
				_, _ = io.Copy(io.Discard, stderr)
				return
			}
		}
		listening <- strings.Join(lines, "\n")
	}()
	select {
	case out := <-listening:
		if out != "" {
			t.Fatalf("tcpdump %s did not start:\n%s", strings.Join(args, " "), out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump %s did not start listening", strings.Join(args, " "))
	}
	return cmd, stdout
}

// tcpdumpCount counts the packets tcpdump reads from file that match filter.
func tcpdumpCount(t *testing.T, file string, filter ...string) int {
	t.Helper()
	out, err := exec.Command("tcpdump", append([]string{"-nn", "-q", "-r", file}, filter...)...).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v", file, err)
	}
	return bytes.Count(out, []byte("\n"))
}

// transportOf parses a read packet down to its TCP or UDP ports.
func transportOf(p readPacket) (tcp *layers.TCP, udp *layers.UDP) {
	first := gopacket.LayerType(layers.LayerTypeEthernet)
	if p.Network {
		switch p.EtherType {
		case EtherTypeIPv4:
			first = layers.LayerTypeIPv4
		case EtherTypeIPv6:
			first = layers.LayerTypeIPv6
		default:
			return nil, nil
		}
	}
	pkt := gopacket.NewPacket(p.Data, first, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	// An ICMP error quotes a TCP or UDP header: count only the outer one.
	if pkt.Layer(layers.LayerTypeICMPv4) != nil || pkt.Layer(layers.LayerTypeICMPv6) != nil {
		return nil, nil
	}
	tcp, _ = pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	udp, _ = pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	return tcp, udp
}

// makeTraffic sends from namespace b to a: TCP to a listener on 3001 and to
// closed 3002, UDP to closed 50999, and a VLAN-tagged frame.
func makeTraffic(t *testing.T, n *testNet) {
	n.inNS(t, n.nsB, func() {
		for range 3 {
			send(t, n.ipA, 3001, []byte("hello xcatd"))
			send(t, n.ipA, 3002, []byte("closed"))
			if u, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: n.ipA, Port: 50999}); err == nil {
				_, _ = u.Write([]byte("to a closed UDP port"))
				u.Close()
			}
		}
		sendFrame(t, n.ifB, frame(t, &layers.Ethernet{SrcMAC: n.macB, DstMAC: n.macA, EthernetType: layers.EthernetTypeDot1Q},
			dot1q(42, layers.EthernetTypeIPv4),
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: n.ipB, DstIP: n.ipA},
			udp(5555, 3001), gopacket.Payload(lastPayload)))
	})
}

func TestTcpdumpCaptures(t *testing.T) {
	needTcpdump(t)
	n := newTestNet(t)
	n.inNS(t, n.nsA, func() { listen(t, n.ipA, 3001) })
	dir := t.TempDir()
	files := []struct {
		name     string
		args     []string
		linkType []uint32 // what tcpdump may write: SLL2 for any on 4.99, SLL before
		magic    uint32
	}{
		{"any.pcap", []string{"-i", "any"}, []uint32{linktypeSLL2, linktypeSLL}, magicPcapMicro},
		{"any-sll.pcap", []string{"-i", "any", "-y", "LINUX_SLL"}, []uint32{linktypeSLL}, magicPcapMicro},
		{"eth.pcap", []string{"-i", n.ifA, "-y", "EN10MB"}, []uint32{linktypeEthernet}, magicPcapMicro},
		{"eth-nano.pcap", []string{"-i", n.ifA, "--time-stamp-precision=nano"}, []uint32{linktypeEthernet}, magicPcapNano},
	}
	var cmds []*exec.Cmd
	for _, f := range files {
		cmd, _ := startTcpdump(t, n.nsA, append(f.args, "-w", filepath.Join(dir, f.name))...)
		cmds = append(cmds, cmd)
	}
	makeTraffic(t, n)
	// tcpdump -U writes each packet as it reads it, but on a loaded machine
	// it can be seconds behind: stop it only when every file holds the last
	// frame sent (or give up after a while and let the checks below say
	// what is missing).
	waitForPayload(dir, files[0].name, files[1].name, files[2].name, files[3].name)
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGINT)
		_ = c.Wait()
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(dir, f.name)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lt := fileLinkTypes(raw)
			if len(lt) != 1 || !containsUint32(f.linkType, lt[0]) || (binary.LittleEndian.Uint32(raw) != f.magic && binary.BigEndian.Uint32(raw) != f.magic) {
				t.Fatalf("tcpdump wrote link type %v magic %#x, want one of %v and %#x", lt, binary.LittleEndian.Uint32(raw), f.linkType, f.magic)
			}
			got, err := readFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := tcpdumpCount(t, path); len(got) != want || want == 0 {
				t.Errorf("read %d packets, tcpdump -r reads %d", len(got), want)
			}
			var port3001, udpAll, vlan int
			for _, p := range got {
				tcp, udp := transportOf(p)
				if tcp != nil && (tcp.SrcPort == 3001 || tcp.DstPort == 3001) {
					port3001++
				}
				tagged := !p.Network && len(p.Data) >= 14 && binary.BigEndian.Uint16(p.Data[12:]) == etherTypeVLAN
				if tagged {
					vlan++
				} else if udp != nil {
					udpAll++
				}
			}
			if want := tcpdumpCount(t, path, "tcp port 3001"); port3001 != want || want == 0 {
				t.Errorf("%d packets on tcp port 3001, tcpdump counts %d", port3001, want)
			}
			// tcpdump's "udp" does not look through a VLAN tag.
			if want := tcpdumpCount(t, path, "udp"); udpAll != want || want == 0 {
				t.Errorf("%d untagged udp packets, tcpdump counts %d", udpAll, want)
			}
			switch lt[0] {
			case linktypeEthernet:
				if want := tcpdumpCount(t, path, "vlan 42"); vlan != want || want == 0 {
					t.Errorf("%d VLAN-tagged packets, tcpdump counts %d", vlan, want)
				}
			case linktypeSLL:
				// libpcap puts the tag back into SLL (not SLL2) headers.
				if vlan != 1 {
					t.Errorf("%d VLAN-tagged packets as Ethernet frames, want the 1 sent", vlan)
				}
			}
		})
	}
}

// lastPayload is the payload of the last frame makeTraffic sends.
const lastPayload = "tagged 42"

// waitForPayload waits up to 20 seconds until each file in dir holds the
// last frame makeTraffic sends.
func waitForPayload(dir string, names ...string) {
	deadline := time.Now().Add(20 * time.Second)
	for _, name := range names {
		for time.Now().Before(deadline) {
			raw, _ := os.ReadFile(filepath.Join(dir, name))
			if bytes.Contains(raw, []byte(lastPayload)) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func containsUint32(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestTcpdumpStream is the AIX way, on Linux: tcpdump -U -w - piped into the
// reader, which must hand out packets while tcpdump still runs.
func TestTcpdumpStream(t *testing.T) {
	needTcpdump(t)
	n := newTestNet(t)
	n.inNS(t, n.nsA, func() { listen(t, n.ipA, 3001) })
	cmd, stdout := startTcpdump(t, n.nsA, "-w", "-", "-i", n.ifA, "tcp port 3001")
	first := make(chan error, 1)
	go func() {
		src, err := OpenReader("stdin", stdout)
		if err != nil {
			first <- err
			return
		}
		p, err := src.Next()
		if err == nil {
			if tcp, _ := transportOf(readPacket{Data: p.Data}); tcp == nil || tcp.DstPort != 3001 {
				t.Errorf("first packet is not to tcp port 3001")
			}
		}
		first <- err
	}()
	makeTraffic(t, n)
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no packet from the tcpdump stream while tcpdump runs")
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("tcpdump had ended before the first packet was read: %v", err)
	}
}
