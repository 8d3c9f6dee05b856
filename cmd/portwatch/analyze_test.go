package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"portwatch/bpf/packets"
	"portwatch/classify"
	"portwatch/internal/privtest"
)

// verdictKey is what a test expects of an event.
type verdictKey struct {
	verdict    classify.Verdict
	service    string
	reason     classify.Reason
	returnPath bool
}

func analyzeJSON(t *testing.T, args ...string) (analyzeReport, int, string) {
	t.Helper()
	code, out, errOut := portwatch(t, "", append([]string{"analyze", "--format", "json"}, args...)...)
	var rep analyzeReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("analyze --format json: %v\nstdout: %.500s\nstderr: %s", err, out, errOut)
	}
	return rep, code, errOut
}

// TestAnalyzeLabCaptures checks the verdicts on real captures of each firewall
// scenario (testdata/captures/README.md says how they were made).
func TestAnalyzeLabCaptures(t *testing.T) {
	blocked := func(service string, reason classify.Reason, returnPath bool, n int) map[verdictKey]int {
		return map[verdictKey]int{{classify.RequiredPortBlocked, service, reason, returnPath}: n}
	}
	tests := []struct {
		file string
		want map[verdictKey]int
	}{
		{"drop-tftp-fw.pcap", blocked("tftp-udp", classify.ReasonNoReply, false, 4)},
		{"drop-tftp-mn.pcap", nil},
		{"tftp-no-helper-fw.pcap", blocked("tftp-udp", classify.ReasonNoReply, false, 4)},
		{"tftp-no-helper-mn.pcap", blocked("tftp-udp", classify.ReasonNoReply, true, 4)},
		{"prohibit-status-fw.pcap.gz", blocked("xcatiport", classify.ReasonICMPAdminProhibited, false, 4)},
		{"reject-xcatd-fw.pcap.gz", blocked("xcatdport", classify.ReasonReset, false, 1)},
		{"open-mn.pcap.gz", nil},
		{"unexpected-open-mn.pcap", map[verdictKey]int{{verdict: classify.UnexpectedPortOpen}: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rep, code, errOut := analyzeJSON(t, filepath.Join("..", "..", "testdata", "captures", tt.file))
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			got := map[verdictKey]int{}
			for _, ev := range rep.Events {
				got[verdictKey{ev.Verdict, ev.Service, ev.Reason, ev.ReturnPath}]++
			}
			if len(got) != len(tt.want) {
				t.Errorf("verdicts %v, want %v", got, tt.want)
			}
			for k, n := range tt.want {
				if got[k] != n {
					t.Errorf("%+v: %d events, want %d (all: %v)", k, got[k], n, got)
				}
			}
			if rep.Input.Packets == 0 || rep.Input.Damaged != "" {
				t.Errorf("input %+v", rep.Input)
			}
			// Every required service that was blocked is blocked in the summary too.
			for k := range tt.want {
				if k.verdict != classify.RequiredPortBlocked {
					continue
				}
				i := slices.IndexFunc(rep.Summary.Services, func(s classify.ServiceSummary) bool { return s.Service == k.service })
				if i < 0 || rep.Summary.Services[i].State != classify.StateBlocked || rep.Summary.Services[i].Reason != k.reason {
					t.Errorf("summary of %s: %+v", k.service, rep.Summary.Services)
				}
			}
		})
	}
}

func TestAnalyzeTable(t *testing.T) {
	code, out, errOut := portwatch(t, "", "analyze", filepath.Join("..", "..", "testdata", "captures", "drop-tftp-fw.pcap"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// The host name and the run's path vary; the rest is stable.
	out = strings.ReplaceAll(out, hostname(), "HOST")
	golden(t, "analyze-drop-tftp-fw", out)
}

// writePcap writes Ethernet frames, one every step from start, to a pcap.
func writePcap(t testing.TB, w io.Writer, frames [][]byte, start time.Time, step time.Duration) {
	t.Helper()
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * step), CaptureLength: len(f), Length: len(f)}
		if err := pw.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
}

// blockedStatusFrames are SYNs from a node to 3002 that nothing answers:
// four attempts, one a second.
func blockedStatusFrames() [][]byte {
	var frames [][]byte
	for i := range 4 {
		frames = append(frames, packets.TCP(packets.Node, packets.MN, uint16(40000+i), 3002, packets.SYN, packets.Options{Seq: uint32(i)}))
	}
	return frames
}

// TestAnalyzeStream feeds analyze a capture through a pipe, slowly: the
// verdict must come out while the writer is still writing, as it does when
// tcpdump -w - feeds portwatch analyze -.
func TestAnalyzeStream(t *testing.T) {
	pr, pw := io.Pipe()
	out := &lineWatcher{lines: make(chan string, 64)}
	done := make(chan int)
	go func() {
		done <- run([]string{"analyze", "--window", "2s", "-"}, &env{stdin: pr, stdout: out, stderr: io.Discard})
	}()

	start := time.Unix(1700000000, 0)
	var hdr bytes.Buffer
	writePcap(t, &hdr, blockedStatusFrames(), start, time.Second)
	if _, err := pw.Write(hdr.Bytes()); err != nil {
		t.Fatal(err)
	}
	// A later packet closes the window in capture time; the writer keeps
	// the pipe open and waits for the verdict.
	var later bytes.Buffer
	writePcap(t, &later, [][]byte{packets.ARP()}, start.Add(10*time.Second), 0)
	if _, err := pw.Write(later.Bytes()[24:]); err != nil { // without a second file header
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case l := <-out.lines:
			seen = strings.Contains(l, "required_port_blocked") && strings.Contains(l, "xcatiport")
		case <-deadline:
			t.Fatal("no verdict while the stream was still open")
		}
	}
	pw.Close()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d", code)
	}
}

// TestAnalyzeTinyWindowLongGap: the shortest windows over a capture with a
// quiet gap of 80 years (as far as pcap's 32-bit seconds reach) end in one
// step, not in one per window, 25 billion of them.
func TestAnalyzeTinyWindowLongGap(t *testing.T) {
	start := time.Unix(1700000000, 0)
	var b bytes.Buffer
	writePcap(t, &b, blockedStatusFrames(), start, time.Second)
	var later bytes.Buffer
	writePcap(t, &later, [][]byte{packets.ARP()}, start.Add(80*365*24*time.Hour), 0)
	b.Write(later.Bytes()[24:]) // without a second file header
	file := filepath.Join(t.TempDir(), "gap.pcap")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"analyze", "--window", classify.MinWindow.String(), file}, &env{stdout: &out, stderr: &errOut}); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "required_port_blocked") || !strings.Contains(out.String(), "xcatiport") {
		t.Errorf("no xcatiport block reported:\n%s", out.String())
	}
}

// TestAnalyzeUndeliveredEventsFail: an --output that cannot take the
// events (a full disk) fails the command, and the message says why.
func TestAnalyzeUndeliveredEventsFail(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	var b bytes.Buffer
	writePcap(t, &b, blockedStatusFrames(), time.Unix(1700000000, 0), time.Second)
	file := filepath.Join(t.TempDir(), "blocked.pcap")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"analyze", "-q", "--output", "jsonl:/dev/full", file}, &env{stdout: &out, stderr: &errOut})
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(errOut.String(), "no space left on device") {
		t.Errorf("stderr does not say why the events were lost:\n%s", errOut.String())
	}
}

// TestAnalyzeSummarySpansCapture: the summary's window starts at the first
// packet (an ARP here, no exchange) and ends at the last, not one window
// after the start.
func TestAnalyzeSummarySpansCapture(t *testing.T) {
	start := time.Unix(1700000000, 0)
	var b bytes.Buffer
	writePcap(t, &b, append([][]byte{packets.ARP()}, blockedStatusFrames()...), start, time.Second)
	file := filepath.Join(t.TempDir(), "span.pcap")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, code, errOut := analyzeJSON(t, "--window", "2s", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !rep.Summary.Start.Equal(rep.Input.First) || !rep.Summary.End.Equal(rep.Input.Last) {
		t.Errorf("summary window %v to %v, capture %v to %v", rep.Summary.Start, rep.Summary.End, rep.Input.First, rep.Input.Last)
	}
}

// TestAnalyzeTimestampJump: a packet stamped decades ahead (a bad clock, a
// damaged record) is told on stderr and counted in the JSON input report.
func TestAnalyzeTimestampJump(t *testing.T) {
	start := time.Unix(1700000000, 0)
	frames := blockedStatusFrames()
	var b bytes.Buffer
	writePcap(t, &b, frames[:2], start, time.Second)
	var jump, rest bytes.Buffer
	writePcap(t, &jump, [][]byte{packets.ARP()}, start.Add(80*365*24*time.Hour), 0)
	writePcap(t, &rest, frames[2:], start.Add(2*time.Second), time.Second)
	b.Write(jump.Bytes()[24:])
	b.Write(rest.Bytes()[24:])
	file := filepath.Join(t.TempDir(), "jump.pcap")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, code, errOut := analyzeJSON(t, file)
	if code != exitOK || rep.Input.OutOfOrder != 1 || !strings.Contains(errOut, "timestamps jump back (1 times") {
		t.Errorf("exit %d, out_of_order %d, stderr %q", code, rep.Input.OutOfOrder, errOut)
	}
}

// lineWatcher is a stdout that hands each complete line to a channel.
type lineWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- line:
		default:
		}
	}
}

func TestAnalyzeDamagedCapture(t *testing.T) {
	var b bytes.Buffer
	frames := append(blockedStatusFrames(), packets.ARP())
	writePcap(t, &b, frames, time.Unix(1700000000, 0), time.Second)
	damaged := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(damaged, b.Bytes()[:b.Len()-10], 0o644); err != nil { // the last record cut short
		t.Fatal(err)
	}
	code, out, errOut := portwatch(t, "", "analyze", damaged)
	if code != exitDamagedInput {
		t.Errorf("exit %d, want %d", code, exitDamagedInput)
	}
	if !strings.Contains(errOut, damaged+": packet 5 at byte offset") || !strings.Contains(errOut, "the 4 packets before it were analysed") {
		t.Errorf("stderr %q", errOut)
	}
	if !strings.Contains(out, "4 packets") || !strings.Contains(out, "xcatiport") {
		t.Errorf("the good packets were not reported:\n%s", out)
	}
	rep, code, _ := analyzeJSON(t, damaged)
	if code != exitDamagedInput || rep.Input.Packets != 4 || rep.Input.Damaged == "" {
		t.Errorf("json: exit %d, input %+v", code, rep.Input)
	}

	notCapture := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notCapture, []byte("GIF89a not a capture"), 0o644)
	code, _, errOut = portwatch(t, "", "analyze", notCapture)
	if code != exitDamagedInput || !strings.Contains(errOut, "not a capture file") {
		t.Errorf("not a capture: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = portwatch(t, "", "analyze", filepath.Join(t.TempDir(), "missing.pcap"))
	if code != exitFailure || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestAnalyzeUsage(t *testing.T) {
	for _, args := range [][]string{{"analyze"}, {"analyze", "a", "b"}, {"analyze", "--format", "xml", "x"}, {"analyze", "--window", "0s", "x"}, {"analyze", "--output", "carrier-pigeon://x", "x"}} {
		if code, _, errOut := portwatch(t, "", args...); code != exitUsage || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	// A capture that cannot be opened leaves no empty output file.
	out := filepath.Join(t.TempDir(), "events.jsonl")
	if code, _, _ := portwatch(t, "", "analyze", "--output", "jsonl:"+out, filepath.Join(t.TempDir(), "nosuch.pcap")); code != exitFailure {
		t.Errorf("a missing capture: exit %d, want %d", code, exitFailure)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing capture left %s behind (%v)", out, err)
	}
	// Events on stdout would interleave with the JSON document.
	code, stdout, errOut := portwatch(t, "", "analyze", "--format", "json", "--output", "jsonl", "x")
	if code != exitUsage || stdout != "" || !strings.Contains(errOut, "--output jsonl writes to stdout") {
		t.Errorf("--format json --output jsonl: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
}

// TestPortTallyMatchesTcpdump compares analyze's port tally with tcpdump's
// own counts, `tcpdump -nn -r FILE 'udp port P'` and its VLAN forms, on the
// lab captures and on crafted frames with VLAN tags, IPv6 and fragments.
func TestPortTallyMatchesTcpdump(t *testing.T) {
	privtest.RequireCommand(t, "tcpdump", "make deps installs it")
	dir := t.TempDir()
	var files []string
	entries, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "captures", "*.pcap*"))
	for _, src := range entries {
		dst := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".gz"))
		if err := copyMaybeGunzip(src, dst); err != nil {
			t.Fatal(err)
		}
		files = append(files, dst)
	}
	var crafted bytes.Buffer
	var frames [][]byte
	for _, c := range packets.Corpus() {
		frames = append(frames, c.Frames...)
	}
	for _, c := range packets.Mixed() {
		frames = append(frames, c.Frame)
	}
	writePcap(t, &crafted, frames, time.Unix(1700000000, 0), time.Millisecond)
	craftedPath := filepath.Join(dir, "crafted.pcap")
	os.WriteFile(craftedPath, crafted.Bytes(), 0o644)
	files = append(files, craftedPath)

	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			rep, _, _ := analyzeJSON(t, f)
			if len(rep.PortTally) == 0 {
				t.Fatal("empty port tally")
			}
			checked := 0
			for _, pc := range rep.PortTally {
				// Ports with the most packets, and every catalog port.
				if pc.Packets < 3 && pc.Port > 4096 {
					continue
				}
				want := tcpdumpCount(t, f, fmt.Sprintf("%s port %d", pc.Proto, pc.Port)) +
					tcpdumpCount(t, f, fmt.Sprintf("vlan and %s port %d", pc.Proto, pc.Port)) +
					tcpdumpCount(t, f, fmt.Sprintf("vlan and vlan and %s port %d", pc.Proto, pc.Port))
				if pc.Packets != want {
					t.Errorf("%s/%d: tally %d, tcpdump %d", pc.Proto, pc.Port, pc.Packets, want)
				}
				if checked++; checked == 12 {
					break
				}
			}
		})
	}
}

func tcpdumpCount(t *testing.T, file, filter string) uint64 {
	t.Helper()
	cmd := exec.Command("tcpdump", "-nn", "-r", file, filter)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s %q: %v", file, filter, err)
	}
	var n uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		n++
	}
	return n
}

func copyMaybeGunzip(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var r io.Reader = in
	if strings.HasSuffix(src, ".gz") {
		z, err := gzip.NewReader(in)
		if err != nil {
			return err
		}
		r = z
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
