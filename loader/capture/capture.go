// Package capture reads packets for portwatch's capture backend: pcap and
// pcapng files or streams (what `tcpdump -w -` writes on AIX), and live
// AF_PACKET capture on Linux hosts where XDP cannot be used. Every source
// normalises its link layer into a Packet that the Go twin of the BPF program
// parses like the kernel does: an Ethernet frame, or a bare network header.
package capture

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Packet is one captured packet, valid until the next call to Next or Close.
type Packet struct {
	Timestamp time.Time
	Data      []byte // the captured bytes
	WireLen   int    // the original length on the wire (>= len(Data))
	// Network is false when Data starts at an Ethernet header (VLAN tags, if
	// any, inside the frame); true when Data starts at the network header,
	// with EtherType saying which (0x0800, 0x86DD; anything else is not IP).
	Network   bool
	EtherType uint16
	Interface int    // pcapng interface id (per section), or ifindex for live capture
	Number    uint64 // 1-based packet number in the source, for messages
}

// Source yields packets one at a time.
type Source interface {
	// Next returns the next packet. It returns io.EOF at a clean end, and an
	// *InputError when the input is damaged, after every good packet before
	// the fault. Both are final: later calls return them again.
	Next() (*Packet, error)
	Close() error
}

// endian reads a capture's integers in the byte order its header gave. A
// branch, not a binary.ByteOrder: an interface call on every field of every
// record costs more than the branch the compiler inlines.
type endian struct{ bigEndian bool }

func (e endian) u16(b []byte) uint16 {
	if e.bigEndian {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (e endian) u32(b []byte) uint32 {
	if e.bigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// InputError is damaged or unsupported capture input, located by packet
// number and byte offset.
type InputError struct {
	Name   string // the file name, or the name given to OpenReader
	Packet uint64 // 1-based number of the packet at fault; 0 when it is no packet (a file header)
	Offset int64  // byte offset in the (uncompressed) input of the record or block at fault
	Msg    string
}

func (e *InputError) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(": ")
	if e.Packet > 0 {
		fmt.Fprintf(&b, "packet %d at ", e.Packet)
	}
	fmt.Fprintf(&b, "byte offset %d: %s", e.Offset, e.Msg)
	return b.String()
}

// The magic numbers that open a capture file, as read big-endian.
const (
	magicPcapMicro        = 0xa1b2c3d4
	magicPcapNano         = 0xa1b23c4d
	magicPcapModified     = 0xa1b2cd34 // Alexey Kuznetzov's patched libpcap: 8 more bytes per record
	magicPcapMicroSwapped = 0xd4c3b2a1
	magicPcapNanoSwapped  = 0x4d3cb2a1
	magicPcapModSwapped   = 0x34cdb2a1
	magicPcapngSHB        = 0x0a0d0d0a // block type of a section header, the same in both byte orders
)

// Open opens a pcap or pcapng file (gzip-compressed or not). The file format
// is told by its magic number, not by its name.
func Open(path string) (Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening capture: %w", err)
	}
	bufSize := fileBufferSize
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Size() < int64(bufSize) {
		// A small file needs no large buffer; one that grows while being
		// read makes the buffer grow.
		bufSize = max(int(info.Size()), minBufferSize)
	}
	src, err := open(path, f, f, bufSize)
	if err != nil {
		f.Close()
		return nil, err
	}
	return src, nil
}

// OpenReader reads a pcap or pcapng stream, such as standard input fed by
// `tcpdump -U -w -`. It yields each packet as soon as its bytes have
// arrived and never reads ahead waiting for more. name is used in errors
// ("stdin"). Close does not close r.
func OpenReader(name string, r io.Reader) (Source, error) {
	return open(name, r, nil, streamBufferSize)
}

// fileBufferSize is the read size for files: large enough that the syscall
// per buffer costs little per packet.
const fileBufferSize = 1 << 20

// minBufferSize is the smallest read buffer.
const minBufferSize = 512

// streamBufferSize is the first buffer size for streams; the buffer grows
// for larger records. A pipe delivers at most 64 KiB per read anyway.
const streamBufferSize = 64 << 10

func open(name string, r io.Reader, closer io.Closer, bufSize int) (Source, error) {
	s := newStream(r, bufSize)
	head, err := s.peek(4)
	if len(head) == 0 && err == io.EOF {
		return nil, &InputError{Name: name, Msg: "empty file: no capture header (was the capture stopped before it wrote anything?)"}
	}
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		// gzip, as `tcpdump -w - | gzip` or a rotated capture leaves it.
		// Offsets in errors count uncompressed bytes.
		zr, err := gzip.NewReader(s.remaining())
		if err != nil {
			return nil, &InputError{Name: name, Msg: "damaged gzip header: " + err.Error()}
		}
		s = newStream(zr, bufSize)
		if head, err = s.peek(4); len(head) == 0 && err != nil {
			return nil, &InputError{Name: name, Msg: "empty file: the gzip stream holds no capture header"}
		}
	}
	if len(head) < 4 {
		return nil, &InputError{Name: name, Msg: fmt.Sprintf("not a capture file: only %d bytes (%s)", len(head), describeBytes(head))}
	}
	base := source{name: name, s: s, closer: closer}
	switch magic := uint32(head[0])<<24 | uint32(head[1])<<16 | uint32(head[2])<<8 | uint32(head[3]); magic {
	case magicPcapMicro, magicPcapNano, magicPcapModified, magicPcapMicroSwapped, magicPcapNanoSwapped, magicPcapModSwapped:
		return newPcapSource(base)
	case magicPcapngSHB:
		return newPcapngSource(base)
	}
	head, _ = s.peek(8) // more of the start, to describe it
	return nil, &InputError{Name: name, Msg: "not a capture file: starts with " + describeBytes(head) +
		" (portwatch reads pcap and pcapng, as written by tcpdump -w, dumpcap and Wireshark)"}
}

// describeBytes renders the first bytes of a file for "not a capture file":
// the text they start with when they do ('GIF89a'), hex otherwise.
func describeBytes(b []byte) string {
	if len(b) > 8 {
		b = b[:8]
	}
	text := 0
	for text < len(b) && b[text] >= 0x20 && b[text] <= 0x7e {
		text++
	}
	if text >= 3 || text == len(b) && text > 0 {
		return "'" + string(b[:text]) + "'"
	}
	var sb strings.Builder
	sb.WriteString("0x")
	for _, c := range b {
		sb.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
		sb.WriteString(strconv.FormatUint(uint64(c)&15, 16))
	}
	return sb.String()
}

// source is what the pcap and pcapng readers share: the input, the packet
// handed out, and the final error.
type source struct {
	name   string
	s      *stream
	closer io.Closer
	pkt    Packet
	count  uint64 // packets read so far
	err    error  // io.EOF or an *InputError once the input has ended
}

// fail records the final error of the source.
func (src *source) fail(err error) error {
	src.err = err
	return err
}

// inputError builds an *InputError for the current position.
func (src *source) inputError(packet uint64, offset int64, format string, args ...any) error {
	return src.fail(&InputError{Name: src.name, Packet: packet, Offset: offset, Msg: fmt.Sprintf(format, args...)})
}

// readError reports that the input ended, or failed, inside a record that
// was being read: n bytes were there of the want bytes needed.
func (src *source) readError(err error, packet uint64, offset int64, what string, n, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return src.inputError(packet, offset, "the input ends inside the %s (%d of %d bytes): the capture was cut short", what, n, want)
	}
	return src.inputError(packet, offset, "reading the %s: %v", what, err)
}

func (src *source) Close() error {
	src.s.release()
	if src.err == nil {
		src.err = io.EOF
	}
	if src.closer != nil {
		c := src.closer
		src.closer = nil
		return c.Close()
	}
	return nil
}
